"""Choose and compute a scene's initial point cloud (in normalised scene coordinates)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from compgs.data.frames import Frame, ParsedScene
from compgs.data.geometry import Normalization, camera_extent
from compgs.data.images import ImageStore
from compgs.errors import InputError

log = logging.getLogger(__name__)

INIT_MODES = ("auto", "sfm", "depth", "triangulate", "random")
CARVING_SIDE = 512  # masks for carving random points: plenty at this size
TRIANGULATION_SIDE = 1600  # SIFT on larger images adds time, not points that matter


def initial_points(
    init: str,
    *,
    parsed: ParsedScene,
    frames: list[Frame],
    train_idx: list[int],
    train_views_at: Callable[[int], tuple[ImageStore, np.ndarray]],
    c2w: np.ndarray,
    norm: Normalization,
    num_random: int,
    depth_voxel: float | None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, str]:
    """(xyz [P,3] scene coordinates, colours [P,3], source name) for ``init``.

    Only the training frames ``train_idx`` are used, with poses from ``c2w``
    (already normalised); ``train_views_at(n)`` gives their images (and K) at
    most n pixels on a side, so that initialising from full-size photos
    neither takes long nor fills the memory.
    """
    has_depth = any(frames[i].depth is not None for i in train_idx)
    if init == "auto":
        init = "sfm" if parsed.points is not None else "depth" if has_depth else "random"
    if init == "sfm":
        if parsed.points is None or len(parsed.points) == 0:
            raise InputError(
                f"{parsed.root}: the {parsed.parser} scene has no SfM points; use --init random or triangulate"
            )
        return norm.apply(parsed.points), parsed.point_colors, parsed.point_source or "sfm"
    if init == "depth":
        if not has_depth:
            raise InputError(
                f"{parsed.root}: no depth maps to back-project; use --init random or triangulate"
            )
        from compgs.data.points import depth_points

        world_extent = camera_extent(np.stack([frames[i].c2w[:3, 3] for i in train_idx]))
        voxel = depth_voxel or world_extent / 100
        xyz, rgb = depth_points([frames[i] for i in train_idx], voxel=voxel)
        return norm.apply(xyz), rgb, "depth"
    if init == "triangulate":
        from compgs.data.triangulate import triangulate

        store, K = train_views_at(TRIANGULATION_SIDE)
        images = [
            np.round(store.get(i)[0].numpy() * 255).astype(np.uint8) for i in range(len(store))
        ]
        xyz, rgb = triangulate(images, K, c2w[train_idx], seed=seed)
        if len(xyz) == 0:
            raise InputError(f"{parsed.root}: triangulation found no points; use --init random")
        return xyz, rgb, "triangulated"
    if init == "random":
        from compgs.data.points import random_points

        masks = images = None
        rows = _frame_rows(parsed, frames, train_idx)
        near_far = None if parsed.near_far is None else parsed.near_far[rows] * norm.scale
        store, K = train_views_at(CARVING_SIDE)
        sizes = np.array([v.image.size for v in store.views])
        if all(v.mask is not None or v.alpha_is_mask for v in store.views):
            loaded = [store.get(i) for i in range(len(store))]
            if all(m is not None for _, m in loaded):
                masks = [m.numpy() for _, m in loaded]
                images = [im.numpy() for im, _ in loaded]
        try:
            xyz, rgb = random_points(
                K, c2w[train_idx], sizes, num_random,
                seed=seed, near_far=near_far, masks=masks, images=images,
            )  # fmt: skip
        except InputError as e:  # name the scene: the message alone does not
            raise InputError(f"{parsed.root}: {e}") from e
        log.info("random init: %d points%s", len(xyz), " carved by the masks" if masks else "")
        return xyz, rgb, "random"
    path = Path(init)
    if path.suffix.lower() != ".ply":
        raise InputError(
            f"--init must be one of {', '.join(INIT_MODES)} or a .ply file, not {init!r}"
        )
    from compgs.data.points import read_point_ply

    xyz, rgb = read_point_ply(path)
    return norm.apply(xyz), rgb, "ply"


def _frame_rows(parsed: ParsedScene, frames: list[Frame], idx: list[int]) -> list[int]:
    """Rows of ``parsed.near_far`` (parser order) for sorted ``frames[idx]``."""
    order = {id(f): r for r, f in enumerate(parsed.frames)}
    return [order[id(frames[i])] for i in idx]
