"""The embedded default scene: ray-traced analytic primitives written as a nerfstudio folder.

`generate(out)` writes, deterministically (bit-identical for a given seed and
parameters) and in seconds on a CPU:

- ``images/frame_00001.png`` ... one RGB view per camera on a hemisphere;
- ``sparse_pc.ply``: points sampled on the surfaces that at least two
  cameras see, with their view-independent colour and some noise (what SfM
  would give);
- ``transforms.json`` (written last; OpenGL camera-to-world as nerfstudio
  expects) with ``ply_file_path`` and the compgs extension
  ``background_color`` (the colour of rays that miss everything).

The images are made by the ray tracer in `raytrace`, never by the project's
Gaussian rasterizer, so they are an independent ground truth. `default_spec`,
`make_cameras` and `SyntheticSpec.surface_distance` give tests the true
geometry.
"""

from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path

import numpy as np

from compgs.atomic import atomic_write_bytes, atomic_write_text
from compgs.data.frames import intrinsics
from compgs.data.geometry import GL_TO_CV, look_at
from compgs.data.synthetic.raytrace import SyntheticSpec, default_spec

__all__ = [
    "DEFAULT_SUPERSAMPLE",
    "SyntheticSpec",
    "default_spec",
    "generate",
    "make_cameras",
    "render",
    "sample_points",
]

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
# Rays per pixel along each axis. A camera integrates light over the pixel; with
# 2x2 point samples the fine floor and box textures alias, and the aliasing
# differs from view to view, so no 3D model can reproduce it: 2x2 renders are
# 33 dB from 8x8 ones and held that much noise in every test image (3dgs-fast
# tested at 29.1 dB). 4x4 renders are 40 dB from 8x8 (the same model: 31.9 dB).
DEFAULT_SUPERSAMPLE = 4
TARGET = np.array([0.0, 0.0, 0.3])


def make_cameras(
    num_views: int, width: int, height: int, *, seed: int = 0, fov_x_deg: float = 55.0
) -> tuple[np.ndarray, np.ndarray]:
    """(K [3,3], OpenCV camera-to-world [N,4,4]) on a hemisphere looking at the objects.

    Elevations spread evenly in sin(elevation) between 20 and 65 degrees,
    azimuths follow the golden angle; the seed jitters radius and aim a little.
    """
    rng = np.random.default_rng(seed)
    f = 0.5 * width / math.tan(math.radians(fov_x_deg) / 2)
    K = intrinsics(f, f, width / 2, height / 2)
    frac = (np.arange(num_views) + 0.5) / max(num_views, 1)
    lo, hi = math.sin(math.radians(20)), math.sin(math.radians(65))
    elev = np.arcsin(lo + (hi - lo) * frac)
    azim = np.arange(num_views) * math.pi * (3 - math.sqrt(5)) + rng.uniform(-0.1, 0.1, num_views)
    radius = 4.2 * (1 + rng.uniform(-0.05, 0.05, num_views))
    aim = TARGET + rng.uniform(-0.1, 0.1, (num_views, 3))
    eye = aim + radius[:, None] * np.stack(
        [np.cos(elev) * np.cos(azim), np.cos(elev) * np.sin(azim), np.sin(elev)], axis=1
    )
    c2w = np.stack([look_at(e, a, np.array([0.0, 0.0, 1.0])) for e, a in zip(eye, aim)])
    return K, c2w


def pixel_rays(K, c2w, width, height, offsets) -> tuple[np.ndarray, np.ndarray]:
    """World rays [S,H,W,3] through sub-pixel ``offsets`` [S,2] (pixel fractions)."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    uu = u[None] + offsets[:, 0, None, None]
    vv = v[None] + offsets[:, 1, None, None]
    dirs = np.stack([(uu - K[0, 2]) / K[0, 0], (vv - K[1, 2]) / K[1, 1], np.ones_like(uu)], -1)
    dirs = dirs @ c2w[:3, :3].T
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    return np.broadcast_to(c2w[:3, 3], dirs.shape), dirs


def render(
    spec: SyntheticSpec,
    K: np.ndarray,
    c2w: np.ndarray,
    width: int,
    height: int,
    supersample: int = 2,
) -> np.ndarray:
    """One view as uint8 [H,W,3]: ``supersample`` x ``supersample`` rays per pixel, averaged."""
    ss = max(1, supersample)
    grid = (np.arange(ss) + 0.5) / ss
    offsets = np.stack(np.meshgrid(grid, grid, indexing="xy"), -1).reshape(-1, 2)
    o, d = pixel_rays(K, c2w, width, height, offsets)
    rgb = spec.shade(o.reshape(-1, 3).copy(), d.reshape(-1, 3)).reshape(
        len(offsets), height, width, 3
    )
    return np.round(rgb.mean(axis=0) * 255.0).astype(np.uint8)


def _visible_from(spec, p, normal, K, c2w, width, height) -> np.ndarray:
    """How many cameras see each surface point (inside the image and not occluded)."""
    count = np.zeros(len(p), dtype=np.int64)
    origin = p + normal * 1e-4
    for cam in c2w:
        w2c_R, centre = cam[:3, :3].T, cam[:3, 3]
        local = (p - centre) @ w2c_R.T
        with np.errstate(divide="ignore", invalid="ignore"):
            u = K[0, 0] * local[:, 0] / local[:, 2] + K[0, 2]
            v = K[1, 1] * local[:, 1] / local[:, 2] + K[1, 2]
        inside = (local[:, 2] > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        to_cam = centre - origin
        dist = np.linalg.norm(to_cam, axis=1)
        t, _, _ = spec.intersect(origin, to_cam / dist[:, None])
        count += inside & (t >= dist - 1e-6)
    return count


def sample_points(
    spec: SyntheticSpec,
    K: np.ndarray,
    c2w: np.ndarray,
    width: int,
    height: int,
    n: int,
    *,
    seed: int = 0,
    position_noise: float = 0.01,
    colour_noise: float = 0.02,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy points on surfaces seen by >= 2 cameras, with their diffuse colours."""
    rng = np.random.default_rng(seed + 1)
    pts, nrms, prims = [], [], []
    total = 0
    while total < n:
        m = 2 * n
        cam = rng.integers(0, len(c2w), m)
        u, v = rng.random(m) * width, rng.random(m) * height
        d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones(m)], axis=1)
        d = np.einsum("nij,nj->ni", c2w[cam, :3, :3], d)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        o = c2w[cam, :3, 3]
        t, prim, normal = spec.intersect(o, d)
        hit = np.isfinite(t)
        p = o[hit] + t[hit, None] * d[hit]
        seen = _visible_from(spec, p, normal[hit], K, c2w, width, height) >= 2
        pts.append(p[seen])
        nrms.append(normal[hit][seen])
        prims.append(prim[hit][seen])
        total += int(seen.sum())
    p, nrm, prim = (np.concatenate(a)[:n] for a in (pts, nrms, prims))
    colour = spec.diffuse_colour(p, nrm, prim)
    p = p + rng.normal(0.0, position_noise, p.shape)
    colour = np.clip(colour + rng.normal(0.0, colour_noise, colour.shape), 0.0, 1.0)
    return p, colour


def generate(
    out_dir: Path,
    *,
    seed: int = 0,
    width: int = 160,
    height: int = 120,
    num_views: int = 60,
    num_points: int = 4000,
    supersample: int = DEFAULT_SUPERSAMPLE,
) -> Path:
    """Write the default scene to ``out_dir`` (a nerfstudio folder); return ``out_dir``."""
    from PIL import Image

    from compgs.data.points import write_point_ply

    out_dir = Path(out_dir)
    spec = default_spec(seed)
    K, c2w = make_cameras(num_views, width, height, seed=seed)
    frames = []
    for i, cam in enumerate(c2w):
        rgb = render(spec, K, cam, width, height, supersample)
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format="PNG")
        name = f"images/frame_{i + 1:05d}.png"
        atomic_write_bytes(out_dir / name, buf.getvalue())
        frames.append({"file_path": name, "transform_matrix": (cam @ GL_TO_CV).tolist()})
    xyz, rgb = sample_points(spec, K, c2w, width, height, num_points, seed=seed)
    write_point_ply(out_dir / "sparse_pc.ply", xyz, rgb)
    meta = {
        "camera_model": "OPENCV",
        "fl_x": K[0, 0],
        "fl_y": K[1, 1],
        "cx": K[0, 2],
        "cy": K[1, 2],
        "w": width,
        "h": height,
        "k1": 0.0,
        "k2": 0.0,
        "p1": 0.0,
        "p2": 0.0,
        "frames": frames,
        "ply_file_path": "sparse_pc.ply",
        "background_color": list(spec.background),
        "compgs_synthetic": {
            "version": FORMAT_VERSION,
            "seed": seed,
            "supersample": supersample,
            "num_points": num_points,
        },
    }
    atomic_write_text(out_dir / "transforms.json", json.dumps(meta, indent=2) + "\n")
    log.info(
        "wrote %d views of %dx%d and %d points to %s", num_views, width, height, len(xyz), out_dir
    )
    return out_dir
