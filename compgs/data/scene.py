"""`Scene` and `load_scene`: any supported folder -> train/test cameras, images, initial points.

The steps are the same for every format: parse (metadata only), sort frames
by name, split, pick each image's file at the requested downscale, normalise
the world (centre and scale recorded), choose the initial points, and hand
out images through an in-memory cache.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from compgs.data.cameras import Cameras
from compgs.data.detect import parse
from compgs.data.frames import PINHOLE, ParsedScene
from compgs.data.geometry import Normalization, camera_extent
from compgs.data.images import ImageStore, build_views, default_cache_dir, scene_cache_dir
from compgs.errors import InputError

log = logging.getLogger(__name__)

POINT_SOURCES = ("sfm", "depth", "triangulated", "random", "ply")
MIN_IMAGE_SIDE = 4  # below this a downscale factor has left nothing to train on


@dataclasses.dataclass
class Scene:
    """A loaded scene, in normalised scene coordinates (see ``normalization``).

    Cameras follow the OpenCV convention of `Cameras`; once undistorted (the
    default) they are all PINHOLE. Images: ``scene.image(i, "train")`` is the
    i-th training view as float32 [H,W,3] in [0,1], matching
    ``scene.train[i]``; masked pixels already hold ``background``.
    """

    root: Path
    parser: str
    train: Cameras
    test: Cameras
    points: torch.Tensor  # [P,3] float32, initial point positions
    point_colors: torch.Tensor  # [P,3] float32 in [0,1]
    point_source: str  # one of POINT_SOURCES
    normalization: Normalization  # scene = scale * (world - center)
    extent: float  # 3DGS cameras_extent: 1.1 x max camera distance from their mean (train)
    background: torch.Tensor  # [3] colour rendered where nothing is (masked pixels use it)
    has_masks: bool
    downscale: int
    split_rule: str
    up: torch.Tensor  # [3] mean camera up direction (for viewers)
    skipped: list[str]
    store: ImageStore
    views: dict[str, list[int]]  # split -> indices into ``store``

    def cameras(self, split: str = "train") -> Cameras:
        return {"train": self.train, "test": self.test}[_check_split(split)]

    def num_images(self, split: str = "train") -> int:
        return len(self.views[_check_split(split)])

    def image(self, i: int, split: str = "train") -> torch.Tensor:
        """View ``i`` of ``split``: float32 [H,W,3] in [0,1] (cached; do not modify in place)."""
        return self.store.get(self.views[_check_split(split)][i])[0]

    def mask(self, i: int, split: str = "train") -> torch.Tensor | None:
        """Object mask [H,W] in [0,1] (1 = object) of view ``i``, or None without masks."""
        return self.store.get(self.views[_check_split(split)][i])[1]

    def preload(self, split: str | None = None, progress: bool = False) -> None:
        """Decode (and make any missing downscaled copies of) the images now."""
        splits = [split] if split else ["train", "test"]
        jobs = [(s, i) for s in splits for i in range(self.num_images(s))]
        if progress:
            from rich.progress import track

            jobs = track(jobs, description="loading images")
        for s, i in jobs:
            self.image(i, s)

    def summary(self) -> dict:
        """What was loaded, JSON-ready (trainers record it next to their outputs)."""
        sizes = sorted(
            {(int(w), int(h)) for c in (self.train, self.test) for w, h in zip(c.width, c.height)}
        )
        return {
            "root": str(self.root),
            "parser": self.parser,
            "downscale": self.downscale,
            "resolutions": [f"{w}x{h}" for w, h in sizes],
            "num_train": len(self.train),
            "num_test": len(self.test),
            "split_rule": self.split_rule,
            "train_names": list(self.train.names or []),
            "test_names": list(self.test.names or []),
            "point_source": self.point_source,
            "num_points": int(len(self.points)),
            "normalization": {
                "center": list(self.normalization.center),
                "scale": self.normalization.scale,
            },
            "extent": self.extent,
            "background": [float(c) for c in self.background],
            "masks": self.has_masks,
            "skipped_images": len(self.skipped),
        }


def _check_split(split: str) -> str:
    if split not in ("train", "test"):
        raise InputError(f"split must be 'train' or 'test', not {split!r}")
    return split


def load_scene(
    path: str | Path,
    *,
    parser: str = "auto",
    downscale: int = 1,
    masks: bool | None = None,
    test_every: int = 8,
    dataset_split: bool = True,
    init: str = "auto",
    num_random_points: int = 100_000,
    normalize: bool = True,
    background: tuple[float, float, float] | None = None,
    undistort: bool = True,
    cache_dir: str | Path | None = None,
    cache_bytes: int = 2 << 30,
    frame_stride: int = 1,
    pose_tolerance: float = 0.05,
    depth_voxel: float | None = None,
    seed: int = 0,
) -> Scene:
    """Load the scene folder ``path``.

    Args:
        parser: ``auto`` (from the folder's contents) or one of nerfstudio,
            blender, colmap, llff, arkit.
        downscale: image size divisor; reads ``images_<d>/`` when present,
            otherwise makes (once) and caches a copy in ``cache_dir``.
        masks: None = use masks when the folder has them, True = require,
            False = ignore mask files (an RGBA alpha channel is still used).
        test_every: hold out every n-th image (by sorted name, from the first)
            for testing, the 3DGS protocol; 0 = no test split.
        dataset_split: use the dataset's own train/test split when it has one.
        init: initial points: ``auto`` (the format's SfM/PLY points, else
            depth, else random), ``sfm``, ``depth``, ``triangulate``,
            ``random``, or a path to a point-cloud PLY (world coordinates).
        num_random_points: how many points ``random`` draws.
        normalize: centre the training cameras on the origin and scale the
            farthest to distance 1 (recorded in ``Scene.normalization``).
        background: colour behind masked pixels [0,1]; default: the
            dataset's (Blender, synthetic), white with masks, black otherwise.
        undistort: resample OpenCV / fisheye images to pinhole cameras.
        cache_dir: where downscaled copies go (default `default_cache_dir`).
        cache_bytes: memory budget of the decoded-image cache.
        frame_stride: use every n-th frame of video captures (ARKit).
        pose_tolerance: seconds between a video frame and its pose (ARKit).
        depth_voxel: voxel size (world units) for depth points; default
            1/100 of the camera extent.
        seed: seed of every random choice (random points).
    """
    if int(downscale) != downscale or downscale < 1:
        raise InputError(f"downscale must be a whole number >= 1, got {downscale}")
    if test_every < 0 or test_every == 1:
        raise InputError(f"test_every must be 0 (no test split) or >= 2, got {test_every}")
    root = Path(path)
    parsed = parse(root, parser, tolerance=pose_tolerance, frame_stride=frame_stride)
    frames = sorted(parsed.frames, key=lambda f: f.name)
    has_mask_files = any(f.mask is not None for f in frames)
    if masks is True and not (has_mask_files or any(f.alpha_is_mask for f in frames)):
        raise InputError(
            f"{root}: masks were asked for but none found (expected masks/<image stem>.png)"
        )
    if masks is False:
        for f in frames:
            f.mask = None

    train_idx, test_idx, rule = _split([f.name for f in frames], parsed, test_every, dataset_split)
    cache = scene_cache_dir(Path(cache_dir) if cache_dir else default_cache_dir(), root)
    views = build_views(parsed.root, frames, downscale, cache)
    K = np.stack([v.K for v in views])
    sizes = np.array([v.image.size for v in views])
    if sizes.min() < MIN_IMAGE_SIDE:
        raise InputError(
            f"{root}: --downscale {downscale} leaves {sizes.min()} px images "
            f"(at least {MIN_IMAGE_SIDE} px needed); use a smaller factor"
        )
    c2w_world = np.stack([f.c2w for f in frames])

    norm = (
        Normalization.from_camera_centres(c2w_world[train_idx, :3, 3])
        if normalize
        else Normalization()
    )
    c2w = norm.apply_to_poses(c2w_world)
    extent = camera_extent(c2w[train_idx, :3, 3])
    masked = any(v.mask is not None or v.alpha_is_mask for v in views)
    bg = background or parsed.background or ((1.0, 1.0, 1.0) if masked else (0.0, 0.0, 0.0))
    store = ImageStore(
        views, torch.tensor(bg, dtype=torch.float32), undistort=undistort, max_bytes=cache_bytes
    )

    model = _camera_model(frames, undistort)
    names = [f.name for f in frames]

    def cams(idx: list[int]) -> Cameras:
        dist = None
        if model != PINHOLE:
            rows = np.zeros((len(idx), 6))
            for row, i in enumerate(idx):
                if frames[i].distortion is not None:
                    rows[row] = frames[i].distortion
            dist = torch.tensor(rows, dtype=torch.float32)
        return Cameras(
            K=torch.tensor(K[idx].reshape(-1, 3, 3), dtype=torch.float32),
            camtoworld=torch.tensor(c2w[idx].reshape(-1, 4, 4), dtype=torch.float32),
            width=torch.tensor(sizes[idx, 0].reshape(-1), dtype=torch.long),
            height=torch.tensor(sizes[idx, 1].reshape(-1), dtype=torch.long),
            distortion=dist,
            camera_model=model,
            names=[names[i] for i in idx],
        )

    from compgs.data.init_points import initial_points

    def train_views_at(max_side: int) -> tuple[ImageStore, np.ndarray]:
        """The training views at most ``max_side`` pixels wide/high (for initialisation)."""
        if sizes[train_idx].max() <= max_side:
            return store.subset(train_idx), K[train_idx]
        factor = downscale * int(np.ceil(sizes[train_idx].max() / max_side))
        small = build_views(parsed.root, [frames[i] for i in train_idx], factor, cache)
        return ImageStore(small, store.background, undistort=undistort), np.stack(
            [v.K for v in small]
        )

    xyz, rgb, source = initial_points(
        init,
        parsed=parsed,
        frames=frames,
        train_idx=train_idx,
        train_views_at=train_views_at,
        c2w=c2w,
        norm=norm,
        num_random=num_random_points,
        depth_voxel=depth_voxel,
        seed=seed,
    )
    up = -c2w[train_idx, :3, 1].mean(axis=0)
    up /= max(np.linalg.norm(up), 1e-12)
    scene = Scene(
        root=root,
        parser=parsed.parser,
        train=cams(train_idx),
        test=cams(test_idx),
        points=torch.tensor(xyz, dtype=torch.float32).reshape(-1, 3),
        point_colors=torch.tensor(rgb, dtype=torch.float32).reshape(-1, 3),
        point_source=source,
        normalization=norm,
        extent=extent,
        background=store.background,
        has_masks=masked,
        downscale=int(downscale),
        split_rule=rule,
        up=torch.tensor(up, dtype=torch.float32),
        skipped=list(parsed.skipped),
        store=store,
        views={"train": train_idx, "test": test_idx},
    )
    log.info(
        "%s: %s scene, %d train + %d test images, %d %s points",
        root,
        parsed.parser,
        len(train_idx),
        len(test_idx),
        len(xyz),
        source,
    )
    return scene


def _split(names: list[str], parsed: ParsedScene, test_every: int, dataset_split: bool):
    """(train indices, test indices, rule) over frames sorted by name."""
    if dataset_split and parsed.split is not None:
        train_names, test_names = set(parsed.split["train"]), set(parsed.split["test"])
        train = [i for i, n in enumerate(names) if n in train_names]
        test = [i for i, n in enumerate(names) if n in test_names and n not in train_names]
        if train:
            return train, test, "dataset"
        log.warning(
            "%s: the dataset's own split names no existing training image; ignoring it", parsed.root
        )
    if test_every == 0 or len(names) < 2:
        return list(range(len(names))), [], "none (all images train)"
    test = [i for i in range(len(names)) if i % test_every == 0]
    train = [i for i in range(len(names)) if i % test_every != 0]
    return train, test, f"every {test_every}th image by name held out (index % {test_every} == 0)"


def _camera_model(frames, undistort: bool) -> str:
    if undistort:
        return PINHOLE
    models = {f.model for f in frames if f.distortion is not None} or {PINHOLE}
    if len(models) > 1:
        raise InputError(f"cameras mix the models {sorted(models)}; load with undistort=True")
    return models.pop()
