"""Tiny raw ARKitScenes videos ray-traced from the synthetic scene, with known poses.

Written independently of `compgs.batch.arkit_prepare` (scipy for the axis-angle,
the camera turned by its axes, the ray tracer for images and depth), so the
tests compare the preparation against ground truth, not against itself.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from scipy.spatial.transform import Rotation

from compgs.data.synthetic import default_spec, make_cameras, pixel_rays, render

W, H = 40, 30  # default upright image size (landscape)


@dataclasses.dataclass
class RawVideo:
    folder: Path
    video_id: str
    times: list[float]
    K_up: np.ndarray  # [3,3] upright intrinsics (what preparation must recover)
    c2w_up: np.ndarray  # [N,4,4] upright OpenCV camera-to-world
    upright: list[np.ndarray]  # [N] upright renders (uint8 [H,W,3])
    blurred: set[int]


def arc_camera(azimuth: float) -> np.ndarray:
    """OpenCV camera-to-world on a circle of radius 3.5 at height 2, looking at the objects."""
    eye = np.array([3.5 * np.cos(azimuth), 3.5 * np.sin(azimuth), 2.0])
    forward = np.array([0.0, 0.0, 0.3]) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, np.cross(forward, right), forward, eye
    return c2w


def raw_camera(K_up: np.ndarray, c2w_up: np.ndarray, sky: str, w: int = W, h: int = H):
    """The sensor's camera when the sky shows on the ``sky`` side of the raw image.

    "right": the raw x axis is the upright up (-y), the raw y axis the upright x.
    A raw pixel's ray then reaches upright pixel (u, v) = (v_r, W_r - u_r) exactly
    when fx_r = fy, fy_r = fx, cx_r = H - cy, cy_r = cx (equating the two rays).
    """
    if sky == "up":
        return K_up.copy(), c2w_up.copy(), w, h
    assert sky == "right"
    fx, fy, cx, cy = K_up[0, 0], K_up[1, 1], K_up[0, 2], K_up[1, 2]
    K = np.array([[fy, 0, h - cy], [0, fx, cx], [0, 0, 1.0]])
    c2w = c2w_up.copy()
    c2w[:3, 0], c2w[:3, 1] = -c2w_up[:3, 1], c2w_up[:3, 0]
    return K, c2w, h, w


def write_raw_video(
    root: Path,
    video_id: str = "41069021",
    *,
    num_frames: int = 12,
    sky: str = "up",
    blur: tuple[int, ...] = (),
    depth: bool = True,
    seed: int = 0,
    width: int = W,
    height: int = H,
    arc_degrees: float | None = None,
    supersample: int = 1,
) -> RawVideo:
    """A video of ``num_frames``: cameras spread over the hemisphere (default), or, with
    ``arc_degrees``, a smooth walk that far around the objects (what SfM needs)."""
    spec = default_spec(seed)
    K_up, c2w_up = make_cameras(num_frames, width, height, seed=seed)
    if arc_degrees is not None:
        c2w_up = np.stack(
            [arc_camera(np.radians(a)) for a in np.linspace(0, arc_degrees, num_frames)]
        )
    K_up = K_up.copy()
    K_up[0, 0] *= 1.02  # fx != fy and an off-centre principal point: nothing symmetric
    K_up[0, 2] += 0.75
    K_up[1, 2] -= 0.5
    folder = Path(root) / video_id
    for sub in ("lowres_wide", "lowres_wide_intrinsics", "lowres_depth", "confidence"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    times = [round(100.0 + 0.1 * i, 3) for i in range(num_frames)]
    traj, upright = [], []
    for i, (t, cam) in enumerate(zip(times, c2w_up)):
        upright.append(render(spec, K_up, cam, width, height, supersample=supersample))
        K, c2w, w, h = raw_camera(K_up, cam, sky, width, height)
        rgb = render(spec, K, c2w, w, h, supersample=supersample)
        im = Image.fromarray(rgb)
        if i in blur:
            im = im.filter(ImageFilter.BoxBlur(2))
        stem = f"{video_id}_{t:.3f}"
        im.save(folder / "lowres_wide" / f"{stem}.png")
        (folder / "lowres_wide_intrinsics" / f"{stem}.pincam").write_text(
            " ".join(
                str(x)
                for x in (w, h, *(float(K[i, j]) for i, j in ((0, 0), (1, 1), (0, 2), (1, 2))))
            )
            + "\n"
        )
        w2c = np.linalg.inv(c2w)
        rotvec = Rotation.from_matrix(w2c[:3, :3]).as_rotvec()
        traj.append(" ".join(f"{x:.12f}" for x in [t, *rotvec, *w2c[:3, 3]]))
        if depth:
            o, d = pixel_rays(K, c2w, w, h, np.array([[0.5, 0.5]]))
            dist, _, _ = spec.intersect(o.reshape(-1, 3).copy(), d.reshape(-1, 3))
            z = dist * (d.reshape(-1, 3) @ c2w[:3, 2])
            mm = np.where(np.isfinite(z), np.round(z * 1000), 0).astype(np.uint16).reshape(h, w)
            conf = np.full((h, w), 2, np.uint8)
            mm[:2, :2], conf[:2, :2] = 300, 0  # low-confidence garbage that must be dropped
            Image.fromarray(mm).save(folder / "lowres_depth" / f"{stem}.png")
            Image.fromarray(conf).save(folder / "confidence" / f"{stem}.png")
    (folder / "lowres_wide.traj").write_text("\n".join(traj) + "\n")
    return RawVideo(folder, video_id, times, K_up, c2w_up, upright, set(blur))
