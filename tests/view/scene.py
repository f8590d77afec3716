"""A small deterministic splat scene for the viewer tests, and its quantized .cgs.

Flat Gaussians (discs tangent to the surface) on a checkered ground plane and
three striped spheres, in RDF axes (y down), seen by a camera at the origin
looking down +z. The quantization is a few Lloyd iterations per attribute
group, enough to make a realistic .cgs without the project's k-means engine.
"""

from __future__ import annotations

import math

import torch

from compgs.codec import CodecOptions, encode, group_vectors
from compgs.data.cameras import Cameras
from compgs.splats import Splats, rgb_to_sh0

WIDTH, HEIGHT = 256, 192


def _quat_from_normal(normal: torch.Tensor) -> torch.Tensor:
    """wxyz quaternions turning +z onto each unit normal [N, 3]."""
    z = torch.tensor([0.0, 0.0, 1.0]).expand_as(normal)
    axis = torch.cross(z, normal, dim=1)
    w = 1.0 + (normal * z).sum(1, keepdim=True)
    q = torch.cat([w, axis], dim=1)
    flipped = w[:, 0] < 1e-6  # normal = -z: any half turn about x
    q[flipped] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    return torch.nn.functional.normalize(q, dim=1)


def scene_splats(sh_degree: int = 3, seed: int = 0) -> Splats:
    g = torch.Generator().manual_seed(seed)
    # ground plane y = 1 (below the camera), x in [-3, 3], z in [1.5, 7.5]
    ticks = torch.linspace(-3, 3, 36)
    gx, gz = torch.meshgrid(ticks, ticks + 4.5, indexing="ij")
    ground = torch.stack([gx.flatten(), torch.ones(gx.numel()), gz.flatten()], 1)
    checker = ((gx.flatten() // 1 + gz.flatten() // 1) % 2)[:, None]
    ground_rgb = 0.25 + 0.5 * checker * torch.tensor([0.9, 0.8, 0.5]) + 0.1
    ground_n = torch.tensor([0.0, -1.0, 0.0]).expand(len(ground), 3)
    parts = [(ground, ground_rgb, ground_n, 6 / 36 * 0.6)]
    # three spheres (Fibonacci points), striped by height
    m = 700
    i = torch.arange(m, dtype=torch.float32) + 0.5
    phi = torch.acos(1 - 2 * i / m)
    theta = math.pi * (1 + 5**0.5) * i
    unit = torch.stack(
        [torch.cos(theta) * torch.sin(phi), torch.cos(phi), torch.sin(theta) * torch.sin(phi)], 1
    )
    for center, radius, base in (
        ((-1.3, 0.35, 4.2), 0.65, (0.9, 0.2, 0.15)),
        ((0.2, 0.2, 5.0), 0.8, (0.15, 0.7, 0.25)),
        ((1.5, 0.45, 3.8), 0.55, (0.2, 0.35, 0.95)),
    ):
        stripes = (torch.sin(unit[:, 1] * 9) > 0).float()[:, None]
        rgb = torch.tensor(base) * (0.55 + 0.45 * stripes)
        pts = torch.tensor(center) + radius * unit
        parts.append((pts, rgb, unit, radius * 0.13))
    means = torch.cat([p[0] for p in parts])
    rgb = torch.cat([p[1] for p in parts])
    normals = torch.cat([p[2] for p in parts])
    sizes = torch.cat([torch.full((len(p[0]),), p[3]) for p in parts])
    n = len(means)
    scales = torch.stack([sizes, sizes, sizes * 0.15], 1).log()
    scales += 0.05 * torch.randn(n, 3, generator=g)
    k = (sh_degree + 1) ** 2 - 1
    return Splats(
        means=means + 0.003 * torch.randn(n, 3, generator=g),
        quats=_quat_from_normal(normals) * (1 + torch.rand(n, 1, generator=g)),
        scales=scales,
        opacities=torch.full((n,), 3.0) + 0.5 * torch.randn(n, generator=g),
        sh0=rgb_to_sh0(rgb).reshape(n, 1, 3),
        shN=0.04 * torch.randn(n, k, 3, generator=g),
    )


def quantize(splats: Splats, sizes: dict[str, int], seed: int = 0, iters: int = 8):
    """Codebooks and assignments (Lloyd's k-means) for the default groups, and quantized splats."""
    g = torch.Generator().manual_seed(seed)
    groups = {k: v for k, v in CodecOptions().groups.items() if k in sizes}
    out = splats.clone()
    codebooks, assignments = {}, {}
    for name, fields in groups.items():
        x = group_vectors(splats, fields)
        centers = x[torch.randperm(len(x), generator=g)[: sizes[name]]].clone()
        for _ in range(iters):
            idx = torch.cdist(x, centers).argmin(1)
            sums = torch.zeros_like(centers).index_add_(0, idx, x)
            counts = torch.bincount(idx, minlength=len(centers))[:, None]
            centers = torch.where(counts > 0, sums / counts.clamp(min=1), centers)
        idx = torch.cdist(x, centers).argmin(1)
        codebooks[name], assignments[name] = centers, idx
        start = 0
        for f in fields:
            width = getattr(splats, f)[0].numel()
            shape = getattr(splats, f).shape
            setattr(out, f, centers[idx][:, start : start + width].reshape(shape).clone())
            start += width
    return out, codebooks, assignments


def scene_cgs(sh_degree: int = 3, options: CodecOptions | None = None) -> tuple[bytes, Splats]:
    """The quantized scene as .cgs bytes, with the Splats it decodes to (in input order)."""
    splats = scene_splats(sh_degree)
    sizes = {"dc": 64, "scale": 64, "rot": 128} | ({"sh": 32} if sh_degree else {})
    quantized, codebooks, assignments = quantize(splats, sizes)
    data = encode(quantized, codebooks, assignments, options or CodecOptions.bitq())
    return data, quantized


def scene_camera() -> Cameras:
    """A camera at the origin, tilted down a little, looking down +z (OpenCV axes)."""
    tilt = math.radians(8)
    c2w = torch.eye(4)
    c2w[1, 1], c2w[1, 2] = math.cos(tilt), math.sin(tilt)
    c2w[2, 1], c2w[2, 2] = -math.sin(tilt), math.cos(tilt)
    c2w[1, 3] = -0.3
    f = 0.9 * WIDTH
    K = torch.tensor([[f, 0.0, WIDTH / 2], [0.0, f, HEIGHT / 2], [0.0, 0.0, 1.0]])
    return Cameras(K=K[None], camtoworld=c2w[None], width=WIDTH, height=HEIGHT)
