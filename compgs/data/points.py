"""Initial point clouds: PLY files, back-projected depth, and random points in the frusta."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from compgs.data.frames import Frame
from compgs.data.geometry import focus_point, project
from compgs.errors import CorruptFileError, InputError

log = logging.getLogger(__name__)


def read_point_ply(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(xyz [P,3], colours [P,3] in [0,1]) of a point-cloud PLY (grey when it has no colour)."""
    import plyfile

    if not Path(path).is_file():
        raise InputError(f"{path}: point cloud file does not exist")
    try:
        v = plyfile.PlyData.read(str(path))["vertex"].data
        xyz = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float64)
    except (OSError, KeyError, ValueError, plyfile.PlyParseError) as e:
        raise CorruptFileError(f"{path}: not a point-cloud PLY with x, y, z ({e})") from e
    names = v.dtype.names or ()
    for keys in (("red", "green", "blue"), ("r", "g", "b")):
        if all(k in names for k in keys):
            rgb = np.stack([v[k] for k in keys], axis=1).astype(np.float64)
            if np.issubdtype(v.dtype[keys[0]], np.integer):
                rgb /= 255.0
            break
    else:
        rgb = np.full_like(xyz, 0.5)
    keep = np.isfinite(xyz).all(axis=1)
    return xyz[keep], np.clip(rgb[keep], 0.0, 1.0)


def write_point_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """Binary PLY with float x y z and uchar red green blue (what nerfstudio writes)."""
    import plyfile

    from compgs.atomic import atomic_open

    rows = np.empty(
        len(xyz), dtype=[(k, "<f4") for k in "xyz"] + [(k, "u1") for k in ("red", "green", "blue")]
    )
    for i, k in enumerate("xyz"):
        rows[k] = xyz[:, i]
    for i, k in enumerate(("red", "green", "blue")):
        rows[k] = np.clip(np.round(rgb[:, i] * 255.0), 0, 255).astype(np.uint8)
    with atomic_open(path, "wb") as f:
        plyfile.PlyData([plyfile.PlyElement.describe(rows, "vertex")]).write(f)


def voxel_downsample(
    xyz: np.ndarray, rgb: np.ndarray, voxel: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mean point and colour per occupied voxel of size ``voxel`` (open3d's grid and rule).

    Uses open3d when it imports; the numpy path computes the same voxels
    (grid anchored at the minimum corner minus half a voxel). Rows come out
    sorted by voxel index either way.
    """
    if len(xyz) == 0 or voxel <= 0:
        return xyz, rgb
    try:
        import open3d as o3d
    except (ImportError, OSError):  # not installed, or a missing system library (libusb)
        o3d = None
    if o3d is not None:
        pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz.astype(np.float64)))
        pcd.colors = o3d.utility.Vector3dVector(rgb.astype(np.float64))
        down = pcd.voxel_down_sample(float(voxel))
        pts, cols = np.asarray(down.points), np.asarray(down.colors)
        # open3d returns hash-map order: sort by voxel index, as the numpy path does.
        cell = np.floor((pts - (xyz.min(axis=0) - voxel * 0.5)) / voxel).astype(np.int64)
        order = np.lexsort(cell.T[::-1])
        return pts[order], cols[order]
    return voxel_downsample_numpy(xyz, rgb, voxel)


def voxel_downsample_numpy(xyz: np.ndarray, rgb: np.ndarray, voxel: float):
    """`voxel_downsample` without open3d (rows sorted by voxel index)."""
    origin = xyz.min(axis=0) - voxel * 0.5
    idx = np.floor((xyz - origin) / voxel).astype(np.int64)
    _, inverse, counts = np.unique(idx, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    out_xyz = np.zeros((len(counts), 3))
    out_rgb = np.zeros((len(counts), 3))
    np.add.at(out_xyz, inverse, xyz)
    np.add.at(out_rgb, inverse, rgb)
    return out_xyz / counts[:, None], out_rgb / counts[:, None]


def depth_points(
    frames: list[Frame],
    *,
    voxel: float,
    pixel_stride: int = 2,
    max_frames: int = 300,
    min_confidence: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Back-project the depth maps of ``frames`` (world units) and voxel-downsample them.

    Depth pixels with confidence below ``min_confidence`` (ARKit: 0 low,
    1 medium, 2 high) are dropped; colours come from the frame's image.
    """
    from PIL import Image

    from compgs.data.images import read_level

    with_depth = [f for f in frames if f.depth is not None]
    if not with_depth:
        raise InputError("no frame has a depth map to back-project")
    picked = np.linspace(0, len(with_depth) - 1, min(max_frames, len(with_depth)))
    all_xyz, all_rgb = [], []
    for f in (with_depth[i] for i in np.unique(np.round(picked).astype(int))):
        depth = np.asarray(read_level(f.depth, mode="I"), dtype=np.float64) * f.depth_scale
        h, w = depth.shape
        valid = depth > 0
        if f.confidence is not None and f.confidence.is_file():
            conf = np.asarray(read_level(f.confidence, mode="L"))
            if conf.shape == depth.shape:
                valid &= conf >= min_confidence
        rgb = read_level(f.image, mode="RGB").resize((w, h), Image.Resampling.BILINEAR)
        rgb = np.asarray(rgb, dtype=np.float64) / 255.0
        v, u = np.mgrid[0:h:pixel_stride, 0:w:pixel_stride]
        keep = valid[v, u]
        u, v = u[keep], v[keep]
        z = depth[v, u]
        K = f.K.copy()
        K[0] *= w / f.width  # the depth map may be smaller than the image
        K[1] *= h / f.height
        cam = np.stack(
            [(u + 0.5 - K[0, 2]) / K[0, 0] * z, (v + 0.5 - K[1, 2]) / K[1, 1] * z, z], axis=1
        )
        all_xyz.append(cam @ f.c2w[:3, :3].T + f.c2w[:3, 3])
        all_rgb.append(rgb[v, u])
    xyz, rgb = np.concatenate(all_xyz), np.concatenate(all_rgb)
    down = voxel_downsample(xyz, rgb, voxel)
    log.info(
        "depth: %d points from %d frames -> %d after %.3g voxels",
        len(xyz),
        len(all_xyz),
        len(down[0]),
        voxel,
    )
    return down


def _depth_ranges(c2w: np.ndarray, near_far: np.ndarray | None) -> np.ndarray:
    """[C,2] depth range to sample per camera: the bounds, else around the focus point."""
    if near_far is not None:
        return np.asarray(near_far, dtype=np.float64)
    centres = c2w[:, :3, 3]
    focus = focus_point(c2w)
    if focus is not None:
        d = np.maximum(((focus - centres) * c2w[:, :3, 2]).sum(axis=1), 1e-6)
        return np.stack([0.5 * d, 1.5 * d], axis=1)
    radius = float(np.linalg.norm(centres - centres.mean(axis=0), axis=1).max()) or 1.0
    return np.tile([0.05 * radius, 3.0 * radius], (len(c2w), 1))


def visible_counts(points: np.ndarray, K: np.ndarray, c2w: np.ndarray, sizes: np.ndarray):
    """Per point, in how many cameras it projects inside the image in front of the camera;
    also the pixel coordinates [C,N,2] and the in-frame flags [C,N]."""
    uv, z = project(points, K, c2w)
    inside = (
        (z > 1e-9)
        & (uv[..., 0] >= 0)
        & (uv[..., 1] >= 0)
        & (uv[..., 0] < sizes[:, None, 0])
        & (uv[..., 1] < sizes[:, None, 1])
    )
    return inside.sum(axis=0), uv, inside


def random_points(
    K: np.ndarray,
    c2w: np.ndarray,
    sizes: np.ndarray,
    n: int,
    *,
    seed: int = 0,
    near_far: np.ndarray | None = None,
    masks: list[np.ndarray] | None = None,
    images: list[np.ndarray] | None = None,
    min_views: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points drawn uniformly along random pixel rays within each camera's depth range,
    kept when at least ``min_views`` cameras see them.

    With ``masks`` ([H,W] per camera, 1 = object) the points are carved to the
    visual hull: a point survives only if it falls on the object in every
    camera that sees it; with ``images`` the colours are the mean of the
    pixels it projects to, otherwise uniform random (as 3DGS does).
    """
    rng = np.random.default_rng(seed)
    ranges = _depth_ranges(c2w, near_far)
    need = min(min_views, len(c2w))
    got, tries = [], 0
    total = 0
    m = 20_000  # proposals per round: the projections are [C, m, 2]
    while total < n and tries < max(50, 100 * n // m):
        tries += 1
        cam = rng.integers(0, len(c2w), m)
        u = rng.random(m) * sizes[cam, 0]
        v = rng.random(m) * sizes[cam, 1]
        depth = ranges[cam, 0] + rng.random(m) * (ranges[cam, 1] - ranges[cam, 0])
        x = (u - K[cam, 0, 2]) / K[cam, 0, 0] * depth
        y = (v - K[cam, 1, 2]) / K[cam, 1, 1] * depth
        local = np.stack([x, y, depth], axis=1)
        pts = np.einsum("nij,nj->ni", c2w[cam, :3, :3], local) + c2w[cam, :3, 3]
        count, uv, inside = visible_counts(pts, K, c2w, sizes)
        keep = count >= need
        if masks is not None:
            keep &= _on_object(uv, inside, masks)
        got.append(pts[keep])
        total += int(keep.sum())
    pts = np.concatenate(got)[:n]
    if len(pts) == 0:
        raise InputError("random initialisation found no point seen by enough cameras")
    if len(pts) < n:
        log.warning("random init: only %d of %d points after %d rounds", len(pts), n, tries)
    if images is not None:
        colors = _mean_colours(pts, K, c2w, sizes, images)
    else:
        colors = rng.random((len(pts), 3))
    return pts, colors


def _on_object(uv: np.ndarray, inside: np.ndarray, masks: list[np.ndarray]) -> np.ndarray:
    ok = np.ones(uv.shape[1], dtype=bool)
    for c, mask in enumerate(masks):
        sel = inside[c]
        px = np.clip(uv[c, sel].astype(np.int64), 0, [mask.shape[1] - 1, mask.shape[0] - 1])
        ok[sel] &= mask[px[:, 1], px[:, 0]] > 0.5
    return ok


def _mean_colours(pts, K, c2w, sizes, images) -> np.ndarray:
    _, uv, inside = visible_counts(pts, K, c2w, sizes)
    acc = np.zeros((len(pts), 3))
    num = np.zeros(len(pts))
    for c, image in enumerate(images):
        sel = inside[c]
        px = np.clip(uv[c, sel].astype(np.int64), 0, [image.shape[1] - 1, image.shape[0] - 1])
        acc[sel] += image[px[:, 1], px[:, 0]]
        num[sel] += 1
    return acc / np.maximum(num, 1)[:, None]
