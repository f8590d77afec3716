"""Poses of prepared ARKit frames from COLMAP structure from motion (`prepare arkit --sfm`).

The CompGS paper ran SfM on its ARKit-200 frames rather than using ARKit's
poses. Here COLMAP (pycolmap) extracts SIFT features with ARKit's intrinsics
as a calibrated prior (kept fixed: they are the phone's factory calibration),
matches frames in sequence (a video) or exhaustively (few frames), and runs
incremental mapping. The largest model is then aligned to the ARKit
trajectory by a similarity (the rotation from all camera orientations, scale
and shift from the centres), so that the scene keeps ARKit's metric,
gravity-aligned world and its orientation handling. Frames COLMAP could not register are dropped.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from compgs.data.geometry import invert_rigid
from compgs.data.triangulate import match_calibrated
from compgs.errors import InputError

log = logging.getLogger(__name__)

EXHAUSTIVE_LIMIT = 60  # more frames than this: match each with its neighbours in time
MIN_REGISTERED = 3  # fewer cameras make no model worth training


def align_similarity(
    src_c2w: np.ndarray, dst_c2w: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """(s, R, t) mapping the cameras ``src_c2w`` [N,4,4] onto ``dst_c2w``: x -> s R x + t.

    R is the rotation nearest to sum_i R_dst,i R_src,i^T (the orientations of all
    cameras, so that it stays well determined when the centres lie near a line,
    as along a walk); s and t are then the least-squares fit of the centres.
    """
    M = np.einsum("nij,nkj->ik", dst_c2w[:, :3, :3], src_c2w[:, :3, :3])
    U, _, Vt = np.linalg.svd(M)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    R = U @ D @ Vt
    src, dst = src_c2w[:, :3, 3], dst_c2w[:, :3, 3]
    a, b = (src - src.mean(axis=0)) @ R.T, dst - dst.mean(axis=0)
    s = float((a * b).sum() / (a * a).sum()) if (a * a).sum() > 0 else 1.0
    return s, R, dst.mean(axis=0) - s * R @ src.mean(axis=0)


def sfm_poses(folder: Path, entries: list, *, seed: int = 0, num_threads: int = -1):
    """SfM on ``folder/images`` for ``entries`` [(name, K, c2w, w, h)] (ARKit poses, used for
    the alignment only). Returns (entries with SfM poses, (xyz, rgb) points, info dict)."""
    import pycolmap

    pycolmap.set_random_seed(seed)
    names = [Path(name).name for name, *_ in entries]
    by_name = dict(zip(names, entries))
    saved = pycolmap.logging.minloglevel
    if not log.isEnabledFor(logging.DEBUG):
        pycolmap.logging.minloglevel = 2  # COLMAP logs every image and pair at INFO
    try:
        with tempfile.TemporaryDirectory(prefix="compgs-sfm-") as tmp:
            rec = _reconstruct(Path(tmp), folder / "images", names, by_name, num_threads)
    finally:
        pycolmap.logging.minloglevel = saved
    registered = sorted(
        ((img.name, img) for img in rec.images.values() if img.has_pose), key=lambda x: x[0]
    )
    if len(registered) < MIN_REGISTERED:
        raise InputError(
            f"{folder}: SfM registered {len(registered)} of {len(entries)} frames; "
            "prepare without --sfm (ARKit poses)"
        )
    sfm_c2w = np.stack([invert_rigid(_w2c(img)) for _, img in registered])
    arkit_c2w = np.stack([by_name[n][2] for n, _ in registered])
    s, R, t = align_similarity(sfm_c2w, arkit_c2w)
    aligned = sfm_c2w.copy()
    aligned[:, :3, :3] = R @ sfm_c2w[:, :3, :3]
    aligned[:, :3, 3] = s * sfm_c2w[:, :3, 3] @ R.T + t
    residual = float(np.sqrt(((aligned[:, :3, 3] - arkit_c2w[:, :3, 3]) ** 2).sum(1).mean()))
    out = []
    for (name, img), c2w in zip(registered, aligned):
        cam = rec.cameras[img.camera_id]
        fx, fy, cx, cy = cam.params[:4]
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        out.append((by_name[name][0], K, c2w, cam.width, cam.height))
    pts = list(rec.points3D.values())
    xyz = np.array([p.xyz for p in pts], dtype=np.float64).reshape(-1, 3)
    rgb = np.array([p.color for p in pts], dtype=np.float64).reshape(-1, 3) / 255.0
    xyz = s * xyz @ R.T + t
    dropped = sorted(set(names) - {n for n, _ in registered})
    if dropped:
        log.warning("SfM: %d of %d frames not registered, dropped (first: %s)",
                    len(dropped), len(names), dropped[0])  # fmt: skip
    info = {
        "registered": len(registered),
        "dropped": dropped,
        "points": len(xyz),
        "alignment_scale": s,
        "alignment_rms_m": residual,
    }
    log.info("SfM: %d frames, %d points; aligned to ARKit (scale %.4f, RMS %.4f m)",
             len(out), len(xyz), s, residual)  # fmt: skip
    return out, (xyz, rgb), info


def _w2c(image) -> np.ndarray:
    m = np.eye(4)
    m[:3, :4] = np.asarray(image.cam_from_world().matrix())
    return m


def _reconstruct(tmp: Path, image_dir: Path, names: list[str], by_name: dict, num_threads: int):
    import pycolmap

    db_path = tmp / "database.db"
    # ARKit's calibration as a fixed prior
    K_by_name = {name: by_name[name][1] for name in names}
    match_calibrated(db_path, image_dir, names, K_by_name, num_threads=num_threads,
                     exhaustive_limit=EXHAUSTIVE_LIMIT)  # fmt: skip
    options = pycolmap.IncrementalPipelineOptions()
    options.ba_refine_focal_length = False
    options.ba_refine_principal_point = False
    options.ba_refine_extra_params = False
    options.num_threads = num_threads
    options.random_seed = 0
    models = pycolmap.incremental_mapping(db_path, image_dir, tmp / "sparse", options)
    if not models:
        raise InputError(f"{image_dir}: SfM found no model; prepare without --sfm (ARKit poses)")
    return max(models.values(), key=lambda r: r.num_reg_images())
