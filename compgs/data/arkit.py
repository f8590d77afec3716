"""ARKitScenes raw videos: ``lowres_wide/`` frames, ``.pincam`` intrinsics, ``lowres_wide.traj``.

The trajectory holds one line per timestamp, ``t ax ay az tx ty tz``: an
axis-angle rotation (radians) and a translation (metres) mapping world to
camera, with OpenCV camera axes (as ARKitScenes' own loaders back-project
depth). Frame, intrinsics and pose timestamps need not coincide: each frame
takes the pose at its timestamp, interpolated between the two trajectory
samples around it when both are within ``tolerance`` seconds, or the nearest
sample within ``tolerance``; frames with no sample that close are dropped
(and counted). ``lowres_depth/`` (uint16 millimetres, aligned with
``lowres_wide``) and ``confidence/`` feed the depth initialisation.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from compgs.data.frames import Frame, ParsedScene, intrinsics, list_images
from compgs.data.geometry import axis_angle_to_matrix, interpolate_pose, invert_rigid
from compgs.errors import CorruptFileError, InputError

log = logging.getLogger(__name__)

EXACT = 1e-3  # timestamps are written with 3 decimals


def find_video(root: Path) -> Path | None:
    """``root`` or ``root/<name>_frames`` when it holds lowres_wide.traj and lowres_wide/."""
    for folder in (root, root / f"{root.name}_frames"):
        if (folder / "lowres_wide.traj").is_file() and (folder / "lowres_wide").is_dir():
            return folder
    return None


def timestamp(path: Path) -> float:
    """``<video_id>_<timestamp>.<ext>`` -> timestamp in seconds."""
    try:
        return float(path.stem.rsplit("_", 1)[-1])
    except ValueError as e:
        raise CorruptFileError(f"{path}: file name has no _<timestamp> suffix") from e


def read_traj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps [T] (sorted) and camera-to-world OpenCV poses [T,4,4]."""
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            values = [float(x) for x in line.split()]
        except ValueError:
            values = []
        if len(values) != 7:
            raise CorruptFileError(f"{path}:{n}: expected 't ax ay az tx ty tz', got {line!r}")
        rows.append(values)
    if not rows:
        raise CorruptFileError(f"{path}: empty trajectory")
    arr = np.array(rows)[np.argsort([r[0] for r in rows], kind="stable")]
    w2c = np.tile(np.eye(4), (len(arr), 1, 1))
    w2c[:, :3, :3] = axis_angle_to_matrix(arr[:, 1:4])
    w2c[:, :3, 3] = arr[:, 4:7]
    return arr[:, 0], invert_rigid(w2c)


def pose_at(times: np.ndarray, poses: np.ndarray, t: float, tolerance: float) -> np.ndarray | None:
    """The pose at time ``t`` (see the module docstring), or None when none is close enough."""
    j = int(np.searchsorted(times, t))
    before, after = j - 1, j
    nearest = min(
        (k for k in (before, after) if 0 <= k < len(times)), key=lambda k: abs(times[k] - t)
    )
    gap = abs(times[nearest] - t)
    if gap <= EXACT:
        return poses[nearest]
    if gap > tolerance:
        return None
    if 0 <= before and after < len(times) and times[after] - times[before] <= 2 * tolerance:
        w = (t - times[before]) / (times[after] - times[before])
        return interpolate_pose(poses[before], poses[after], float(w))
    return poses[nearest]


def read_pincam(path: Path) -> tuple[int, int, np.ndarray]:
    try:
        w, h, fx, fy, cx, cy = (float(x) for x in path.read_text().split())
    except ValueError as e:
        raise CorruptFileError(f"{path}: expected one line 'width height fx fy cx cy'") from e
    return int(w), int(h), intrinsics(fx, fy, cx, cy)


def parse_arkit(root: Path, *, tolerance: float = 0.05, frame_stride: int = 1) -> ParsedScene:
    video = find_video(root)
    if video is None:
        raise InputError(f"{root}: no lowres_wide.traj with a lowres_wide/ folder")
    times, poses = read_traj(video / "lowres_wide.traj")
    pincams = sorted((video / "lowres_wide_intrinsics").glob("*.pincam"))
    if not pincams:
        raise InputError(f"{video}: no lowres_wide_intrinsics/*.pincam files")
    pin_times = np.array([timestamp(p) for p in pincams])
    order = np.argsort(pin_times, kind="stable")
    pin_times, pincams = pin_times[order], [pincams[i] for i in order]

    images = list_images(video / "lowres_wide")[:: max(1, frame_stride)]
    frames, dropped = [], []
    for image in images:
        t = timestamp(image)
        c2w = pose_at(times, poses, t, tolerance)
        k = int(np.abs(pin_times - t).argmin())
        if c2w is None or abs(pin_times[k] - t) > tolerance:
            dropped.append(image.name)
            continue
        w, h, K = read_pincam(pincams[k])
        depth = video / "lowres_depth" / image.name
        conf = video / "confidence" / image.name
        frames.append(
            Frame(
                name=image.name,
                image=image,
                K=K,
                c2w=c2w,
                width=w,
                height=h,
                depth=depth if depth.is_file() else None,
                depth_scale=1e-3,
                confidence=conf if conf.is_file() else None,
            )
        )
    if dropped:
        log.warning(
            "%s: dropped %d of %d frames with no pose or intrinsics within %.3f s (first: %s)",
            video,
            len(dropped),
            len(images),
            tolerance,
            dropped[0],
        )
    if not frames:
        raise InputError(
            f"{video}: none of the {len(images)} lowres_wide frames has a pose in "
            f"lowres_wide.traj within {tolerance} s"
        )
    # Paths resolve against the folder holding lowres_wide/ (for images_<d>-style lookups).
    return ParsedScene(parser="arkit", root=video, frames=frames, skipped=dropped)
