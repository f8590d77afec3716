"""`prepare_arkit`: one raw ARKitScenes video -> a nerfstudio scene folder ready to train.

The raw video is read with the ARKit parser of `compgs.data.arkit` (``.pincam``
intrinsics, ``lowres_wide.traj`` world-to-camera poses inverted, each frame
matched to the nearest pose in time). Then:

1. **frames**: the posed frames, in time order, are cut into ``frames``
   equal windows and the sharpest frame of each is kept (variance of the
   Laplacian), so the blurriest frames of this handheld footage, the paper's
   complaint about these videos, are the ones skipped;
2. **orientation**: the sensor is landscape whatever way the phone was held;
   the side of the image that looks at the sky (world up: +z in ARKitScenes'
   trajectories) is found from the poses and the images are turned by a
   multiple of 90 degrees so that it is at the top, the intrinsics and poses
   turned with them (exactly: the same rays through the same pixels);
3. **points**: ``lowres_depth`` (millimetres, confident pixels only) of the
   kept frames is back-projected and fused on a voxel grid (open3d when it
   is installed, `compgs.data.points.voxel_downsample`) into ``sparse_pc.ply``;
4. ``transforms.json`` is written last, and the whole folder is built under
   a temporary name and renamed into place, so a folder with that name is a
   complete scene.

With ``sfm=True`` the poses come from COLMAP structure from motion on the
kept frames instead (as the CompGS paper did), aligned to the ARKit
trajectory by a similarity transform (see `compgs.batch.arkit_sfm`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from compgs.atomic import atomic_write_bytes, atomic_write_text
from compgs.data import arkit
from compgs.data.frames import Frame
from compgs.data.geometry import GL_TO_CV, camera_extent
from compgs.errors import InputError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
WORLD_UP = (0.0, 0.0, 1.0)  # ARKitScenes trajectories are gravity-aligned with z up
# Image side that looks at the sky -> counter-clockwise quarter turns that bring it to the top.
SKY_TURNS = {"up": 0, "right": 1, "down": 2, "left": 3}
ROOT_LAYOUTS = ("", "Training", "Validation", "raw/Training", "raw/Validation")


def find_raw_video(raw_root: Path, video_id: str) -> Path:
    """The folder of ``video_id`` under ``raw_root`` (flat, or ARKitScenes' <fold>/ layout)."""
    raw_root = Path(raw_root)
    if not raw_root.is_dir():
        raise InputError(f"{raw_root}: no such folder (--raw-root)")
    tried = []
    for sub in ROOT_LAYOUTS:
        candidate = raw_root / sub / str(video_id)
        tried.append(str(candidate))
        if candidate.is_dir() and arkit.find_video(candidate) is not None:
            return candidate
    raise InputError(
        f"video {video_id}: no raw ARKitScenes folder with lowres_wide.traj and lowres_wide/ "
        f"(tried {', '.join(tried)})"
    )


def sharpness(gray: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian of a grey image: low for blurred frames."""
    g = np.asarray(gray, dtype=np.float64)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def _gray(path: Path) -> np.ndarray:
    from compgs.data.images import read_level

    return np.asarray(read_level(path, mode="L"), dtype=np.float64)


def pick_sharpest(frames: list[Frame], count: int) -> tuple[list[int], list[float]]:
    """Indices of the sharpest frame in each of ``count`` equal windows over ``frames``
    (all of them when there are no more than ``count``), and every frame's sharpness
    (NaN where it was not needed)."""
    n = len(frames)
    scores = [float("nan")] * n
    if n <= count:
        return list(range(n)), scores
    bounds = np.round(np.linspace(0, n, count + 1)).astype(int)
    picked = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        for i in range(lo, hi):
            scores[i] = sharpness(_gray(frames[i].image))
        picked.append(lo + int(np.argmax(scores[lo:hi])))  # first of equals: deterministic
    return picked, scores


def sky_direction(c2w: np.ndarray, world_up=WORLD_UP) -> str:
    """The image side (up, down, left, right) that the cameras' mean orientation points at
    world up: image up is the camera's -y axis, image right its +x axis (OpenCV)."""
    up = np.asarray(world_up, dtype=np.float64)
    mean_right = c2w[:, :3, 0].mean(axis=0)
    mean_down = c2w[:, :3, 1].mean(axis=0)
    scores = {
        "up": -mean_down @ up,
        "down": mean_down @ up,
        "right": mean_right @ up,
        "left": -mean_right @ up,
    }
    return max(scores, key=lambda k: scores[k])


# One counter-clockwise quarter turn of the image (np.rot90): pixel (u, v) of a W-wide image
# goes to (v, W - u), so x_new = y_old and y_new = -x_old in camera coordinates.
_QUARTER = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def turn_camera(
    K: np.ndarray, c2w: np.ndarray, width: int, height: int, turns: int
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(K, c2w, width, height) of the camera after ``turns`` CCW quarter turns of its image."""
    K, c2w = K.copy(), c2w.copy()
    for _ in range(turns % 4):
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        K = np.array([[fy, 0.0, cy], [0.0, fx, width - cx], [0.0, 0.0, 1.0]])
        c2w[:3, :3] = c2w[:3, :3] @ _QUARTER
        width, height = height, width
    return K, c2w, width, height


def _turned_png(path: Path, turns: int) -> bytes:
    """The image at ``path`` turned ``turns`` CCW quarter turns, as PNG bytes (lossless)."""
    from PIL import Image

    from compgs.data.images import read_level

    im = read_level(path, mode="RGB")
    if turns % 4:
        im = Image.fromarray(np.ascontiguousarray(np.rot90(np.asarray(im), turns % 4)))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def prepare_arkit(raw_root: Path, video_id: str, out: Path, **options) -> Path:
    """Prepare video ``video_id`` found under ``raw_root`` (see `prepare_video`)."""
    return prepare_video(find_raw_video(raw_root, str(video_id)), out, **options)


def prepare_video(
    video: Path,
    out: Path,
    *,
    frames: int = 300,
    sfm: bool = False,
    sky: str = "auto",
    tolerance: float = 0.05,
    depth_voxel: float | None = None,
    overwrite: bool = False,
    seed: int = 0,
) -> Path:
    """Turn the raw video folder ``video`` (``<video_id>/``) into the scene folder ``out``.

    Args:
        frames: how many frames to keep (one per window of the video).
        sfm: poses from COLMAP SfM on the kept frames instead of the ARKit trajectory.
        sky: ``auto`` (from the poses) or the image side that shows the sky in
            the raw frames: up (no turn), down, left, right.
        tolerance: seconds between a frame and its pose (see `compgs.data.arkit`).
        depth_voxel: voxel size in metres of the fused depth points (default:
            1/100 of the camera extent, as `compgs.data.load_scene` does).
        overwrite: replace ``out`` if it exists.
    Returns ``out``.
    """
    if frames < 1:
        raise InputError(f"--frames must be at least 1, got {frames}")
    if sky != "auto" and sky not in SKY_TURNS:
        raise InputError(f"--sky must be auto or one of {', '.join(SKY_TURNS)}, not {sky!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise InputError(f"{out}: already exists and is not empty (pass --overwrite to replace)")
    video = Path(video)
    if arkit.find_video(video) is None:
        raise InputError(
            f"{video}: not a raw ARKitScenes video (no lowres_wide.traj and lowres_wide/)"
        )
    video_id = video.name
    parsed = arkit.parse_arkit(video, tolerance=tolerance)
    timed = sorted(parsed.frames, key=lambda f: arkit.timestamp(f.image))
    picked, scores = pick_sharpest(timed, frames)
    kept = [timed[i] for i in picked]
    c2w = np.stack([f.c2w for f in kept])
    side = sky_direction(c2w) if sky == "auto" else sky
    turns = SKY_TURNS[side]
    log.info(
        "%s: %d posed frames -> %d kept (sharpest per window); sky %s: %d quarter turn(s)",
        video,
        len(timed),
        len(kept),
        side,
        turns,
    )
    with _building(out, overwrite) as tmp:
        entries = []
        for f in kept:
            name = f"images/{Path(f.name).stem}.png"
            if turns == 0 and f.image.suffix.lower() == ".png":
                (tmp / "images").mkdir(exist_ok=True)
                shutil.copyfile(f.image, tmp / name)
            else:
                atomic_write_bytes(tmp / name, _turned_png(f.image, turns))
            K, pose, w, h = turn_camera(f.K, f.c2w, f.width, f.height, turns)
            entries.append((name, K, pose, w, h))
        sfm_info = None
        if sfm:
            from compgs.batch.arkit_sfm import sfm_poses

            entries, points, sfm_info = sfm_poses(tmp, entries, seed=seed)
        else:
            points = _depth_points(kept, depth_voxel)
        from compgs.data.points import write_point_ply

        write_point_ply(tmp / "sparse_pc.ply", *points)
        meta = {
            "camera_model": "PINHOLE",
            "frames": [
                {
                    "file_path": name,
                    "fl_x": K[0, 0],
                    "fl_y": K[1, 1],
                    "cx": K[0, 2],
                    "cy": K[1, 2],
                    "w": int(w),
                    "h": int(h),
                    "transform_matrix": (pose @ GL_TO_CV).tolist(),
                }  # fmt: skip
                for name, K, pose, w, h in entries
            ],
            "ply_file_path": "sparse_pc.ply",
            "compgs_arkit": {
                "version": FORMAT_VERSION,
                "video_id": str(video_id),
                "raw_folder": str(video),
                "posed_frames": len(timed),
                "dropped_without_pose": len(parsed.skipped),
                "kept_frames": len(kept),
                "sky_direction": side,
                "quarter_turns_ccw": turns,
                "poses": "sfm" if sfm else "arkit",
                "points": "sfm" if sfm else "depth",
                "sfm": sfm_info,
                "sharpness": [None if np.isnan(scores[i]) else scores[i] for i in picked],
            },
        }
        atomic_write_text(tmp / "transforms.json", json.dumps(meta, indent=1) + "\n")
    return out


def _depth_points(kept: list[Frame], voxel: float | None) -> tuple[np.ndarray, np.ndarray]:
    from compgs.data.points import depth_points

    if not any(f.depth is not None for f in kept):
        raise InputError(f"{kept[0].image.parent.parent}: no lowres_depth/ maps to make points")
    size = voxel or camera_extent(np.stack([f.c2w[:3, 3] for f in kept])) / 100
    return depth_points(kept, voxel=size, max_frames=len(kept))


@contextlib.contextmanager
def _building(out: Path, overwrite: bool):
    """A fresh temporary folder next to ``out``, renamed to ``out`` when the block succeeds."""
    import tempfile

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            if not overwrite and any(out.iterdir()):
                raise InputError(f"{out}: appeared while preparing; not replaced")
            trash = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.rename(out, trash)
            shutil.rmtree(trash)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
