"""Small scenes and cameras for the render tests (deterministic in their seed)."""

from __future__ import annotations

import math

import torch

from compgs.splats import SH_C0, Splats


def look_at(eye, target, up=(0.0, -1.0, 0.0)) -> torch.Tensor:
    """World-to-camera [4,4] (OpenCV: x right, y down, z forward) looking from eye at target."""
    eye = torch.as_tensor(eye, dtype=torch.float64)
    forward = torch.as_tensor(target, dtype=torch.float64) - eye
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, torch.as_tensor(up, dtype=torch.float64))
    right = right / right.norm()
    down = torch.linalg.cross(forward, right)
    c2w = torch.eye(4, dtype=torch.float64)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, forward, eye
    return torch.linalg.inv(c2w)


def intrinsics(width: int, height: int, fov_x_deg: float = 60.0) -> torch.Tensor:
    f = 0.5 * width / math.tan(math.radians(fov_x_deg) / 2)
    return torch.tensor([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], dtype=torch.float64)


def orbit_views(n: int, width: int, height: int, radius: float = 3.0):
    """``n`` cameras on a ring around the origin: viewmats [n,4,4], Ks [n,3,3]."""
    views = []
    for i in range(n):
        angle = 2 * math.pi * i / max(n, 1) + 0.3
        eye = (
            radius * math.sin(angle),
            0.4 * radius * math.cos(3 * angle),
            -radius * math.cos(angle),
        )
        views.append(look_at(eye, (0.0, 0.0, 0.0)))
    return torch.stack(views), intrinsics(width, height).expand(n, 3, 3).clone()


def random_scene(n: int, sh_degree: int = 3, seed: int = 0) -> Splats:
    """Mid-sized Gaussians in [-1,1]^3 with varied opacities (float64)."""
    s = Splats.random(n, sh_degree, seed=seed, extent=1.0, dtype=torch.float64)
    s.scales = s.scales + 2.3  # ~0.1 units: a few pixels to tens of pixels at our sizes
    return s


def edge_cases(viewmat: torch.Tensor, sh_degree: int = 3) -> Splats:
    """Gaussians that test culling and numerics, placed relative to one camera."""
    c2w = torch.linalg.inv(viewmat)

    def world(p):
        return (c2w[:3, :3] @ torch.tensor(p, dtype=torch.float64)) + c2w[:3, 3]

    cases = [
        # (camera-space position, log-scales, opacity logit)
        ((0.0, 0.0, -1.0), (-1.5, -1.5, -1.5), 3.0),  # behind the camera
        ((0.1, 0.0, 0.005), (-2.0, -2.0, -2.0), 3.0),  # centre before the near plane
        ((0.05, 0.02, 0.02), (-2.0, -2.0, -2.0), 2.0),  # straddles the near plane
        ((40.0, 0.0, 2.0), (-2.0, -2.0, -2.0), 3.0),  # far off-screen
        ((-1.3, 0.9, 2.0), (-2.0, -2.0, -2.0), 3.0),  # just off the corner, partly in
        ((0.0, 0.0, 3.0), (1.5, 1.5, 1.5), -1.0),  # huge: covers the whole image
        ((0.3, -0.2, 2.5), (-15.0, -15.0, -15.0), 4.0),  # degenerate: a point
        ((-0.3, 0.2, 2.5), (0.0, -15.0, -15.0), 4.0),  # degenerate: a needle
        ((0.2, 0.3, 2.5), (-1.0, -1.0, -18.0), 4.0),  # degenerate: a flat disc
        ((0.0, 0.1, 2.0), (-1.0, -1.0, -1.0), -30.0),  # zero opacity
        ((0.1, 0.1, 2.2), (-1.2, -1.4, -1.3), 9.0),  # opaque: alpha clamps at 0.99
    ]
    g = torch.Generator().manual_seed(7)
    n = len(cases)
    k = (sh_degree + 1) ** 2 - 1
    return Splats(
        means=torch.stack([world(p) for p, _, _ in cases]),
        quats=torch.randn(n, 4, generator=g, dtype=torch.float64),
        scales=torch.tensor([s for _, s, _ in cases], dtype=torch.float64),
        opacities=torch.tensor([o for _, _, o in cases], dtype=torch.float64),
        sh0=torch.randn(n, 1, 3, generator=g, dtype=torch.float64) * 0.8,
        shN=torch.randn(n, k, 3, generator=g, dtype=torch.float64) * 0.2,
    )


def params_of(splats: Splats, dtype=torch.float32) -> Splats:
    """A copy whose fields are fresh leaves that require grad."""
    return splats.map(lambda t: t.detach().to(dtype).clone().requires_grad_(True))


def color_to_sh0(rgb) -> torch.Tensor:
    return ((torch.as_tensor(rgb, dtype=torch.float64) - 0.5) / SH_C0).reshape(1, 1, 3)
