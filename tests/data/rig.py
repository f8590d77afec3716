"""Ground truth for the parser tests, written independently of compgs.data's own helpers.

A rig is a set of pinhole cameras given by eye, look-at target and intrinsics;
the tests write it into each format's own convention and check that the
loaded `Scene` projects known world points to the pixels computed here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

UP = np.array([0.0, 0.0, 1.0])


@dataclasses.dataclass
class Cam:
    eye: np.ndarray
    right: np.ndarray  # camera axes in world coordinates
    down: np.ndarray
    forward: np.ndarray
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def pixel(self, X: np.ndarray) -> np.ndarray:
        """Pixel [N,2] of world points [N,3] (pixel centres at +0.5)."""
        p = X - self.eye
        z = p @ self.forward
        return np.stack(
            [self.cx + self.fx * (p @ self.right) / z, self.cy + self.fy * (p @ self.down) / z], 1
        )

    def rows_cv(self) -> np.ndarray:
        """World-to-camera rotation (rows: right, down, forward), COLMAP/OpenCV."""
        return np.stack([self.right, self.down, self.forward])


def make_cam(eye, target, *, fx=60.0, fy=None, width=64, height=48, cx=None, cy=None) -> Cam:
    eye, target = np.asarray(eye, float), np.asarray(target, float)
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, UP)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    return Cam(
        eye, right, down, forward, fx, fy or fx,
        width / 2 if cx is None else cx, height / 2 if cy is None else cy, width, height,
    )  # fmt: skip


def ring(n: int, *, radius=4.0, z=1.5, target=(0.1, -0.2, 0.3), **kw) -> list[Cam]:
    """``n`` cameras around ``target``, with slightly different intrinsics each."""
    cams = []
    for i in range(n):
        a = 2 * np.pi * i / n
        eye = np.array([radius * np.cos(a), radius * np.sin(a), z + 0.2 * np.sin(3 * a)])
        cams.append(make_cam(eye, target, fx=kw.get("fx", 60.0) + i, fy=kw.get("fy", 62.0) + i,
                             cx=32.5 + 0.1 * i, cy=23.5 - 0.1 * i, width=64, height=48))  # fmt: skip
    return cams


POINTS = np.array([[0.1, -0.2, 0.3], [0.5, 0.1, 0.2], [-0.3, 0.2, 0.6], [0.0, 0.4, -0.1]])


def write_image(path: Path, width: int, height: int, value: int = 128, mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = np.full((height, width, channels), value, np.uint8)
    Image.fromarray(arr[..., 0] if mode == "L" else arr, mode).save(path)


def scene_pixels(cameras, X_world: np.ndarray, normalization) -> np.ndarray:
    """Pixels [C,N,2] of world points through loaded `Cameras` (the renderer's maths)."""
    import torch

    X = torch.tensor(normalization.apply(X_world), dtype=torch.float64)
    view = cameras.viewmats().double()
    cam = X @ view[:, :3, :3].transpose(1, 2) + view[:, None, :3, 3]
    uv = cam @ cameras.K.double().transpose(1, 2)
    return (uv[..., :2] / uv[..., 2:3]).numpy()


def assert_projects(scene_cams, cams: list[Cam], normalization, tol=1e-3) -> None:
    got = scene_pixels(scene_cams, POINTS, normalization)
    want = np.stack([c.pixel(POINTS) for c in cams])
    np.testing.assert_allclose(got, want, atol=tol)
