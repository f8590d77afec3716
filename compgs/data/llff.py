"""LLFF scenes: ``poses_bounds.npy`` (N x 17) next to ``images/`` (and optional ``masks/``).

Each row is a 3x5 matrix flattened row-major: columns 0-2 the camera-to-world
rotation whose columns are the camera's [down, right, backwards] axes, column
3 the camera centre, column 4 [height, width, focal]; then near and far
depth bounds. Images pair with rows in sorted file-name order (as in LLFF's
own loader).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compgs.data.frames import Frame, ParsedScene, find_mask, intrinsics, list_images
from compgs.errors import CorruptFileError


def llff_to_opencv(poses: np.ndarray) -> np.ndarray:
    """[N,3,5] LLFF matrices -> [N,4,4] OpenCV camera-to-world.

    OpenCV x (right) is LLFF's column 1, y (down) is column 0, z (forward)
    is minus column 2 (backwards).
    """
    c2w = np.zeros((len(poses), 4, 4))
    c2w[:, :3, 0] = poses[:, :, 1]
    c2w[:, :3, 1] = poses[:, :, 0]
    c2w[:, :3, 2] = -poses[:, :, 2]
    c2w[:, :3, 3] = poses[:, :, 3]
    c2w[:, 3, 3] = 1.0
    return c2w


def parse_llff(root: Path) -> ParsedScene:
    path = root / "poses_bounds.npy"
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CorruptFileError(f"{path}: not a readable .npy file ({e})") from e
    if arr.ndim != 2 or arr.shape[1] != 17 or not np.isfinite(arr).all():
        raise CorruptFileError(f"{path}: expected an N x 17 array of finite poses, got {arr.shape}")
    poses = arr[:, :15].reshape(-1, 3, 5).astype(np.float64)
    bounds = arr[:, 15:].astype(np.float64)
    images = list_images(root / "images")
    if len(images) != len(poses):
        raise CorruptFileError(
            f"{root}: poses_bounds.npy has {len(poses)} poses but images/ holds "
            f"{len(images)} images; LLFF pairs them one to one in name order"
        )
    c2w = llff_to_opencv(poses)
    frames = []
    for image, pose, m in zip(images, poses, c2w):
        h, w, f = pose[:, 4]
        frames.append(
            Frame(
                name=image.name,
                image=image,
                K=intrinsics(f, f, w / 2, h / 2),
                c2w=m,
                width=int(round(w)),
                height=int(round(h)),
                mask=find_mask(root, image),
            )
        )
    return ParsedScene(parser="llff", root=root, frames=frames, near_far=bounds)
