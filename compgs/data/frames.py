"""What every parser returns: full-resolution frames in one convention, plus extras.

A parser only reads metadata; it never decodes an image. `compgs.data.scene`
turns a `ParsedScene` into a `Scene` (downscaling, undistortion, masks, split,
initial points, normalisation), the same way for every format.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from compgs.errors import InputError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".JPG", ".JPEG", ".PNG", ".webp", ".bmp", ".tif")
# Camera models a `Frame` may carry; parsers map their formats' names onto these.
PINHOLE, OPENCV, OPENCV_FISHEYE = "PINHOLE", "OPENCV", "OPENCV_FISHEYE"


@dataclasses.dataclass
class Frame:
    """One posed image at full resolution.

    ``K`` [3,3] and ``width``/``height`` describe the image at ``image``;
    ``c2w`` [4,4] is camera-to-world in the OpenCV convention;
    ``distortion`` is (k1, k2, p1, p2, k3, k4) for OPENCV (k4 unused) or
    (k1, k2, 0, 0, k3, k4) for OPENCV_FISHEYE, as in `Cameras`.
    """

    name: str
    image: Path
    K: np.ndarray
    c2w: np.ndarray
    width: int
    height: int
    model: str = PINHOLE
    distortion: np.ndarray | None = None
    mask: Path | None = None
    alpha_is_mask: bool = False  # RGBA image whose alpha channel is the object mask
    depth: Path | None = None
    depth_scale: float = 1.0  # depth file value x depth_scale = metres / world units
    confidence: Path | None = None


@dataclasses.dataclass
class ParsedScene:
    """A scene as read from disk, before any image is touched."""

    parser: str
    root: Path
    frames: list[Frame]
    points: np.ndarray | None = None  # [P,3] world
    point_colors: np.ndarray | None = None  # [P,3] in [0,1]
    point_source: str | None = None  # "sfm" or "ply"
    split: dict[str, list[str]] | None = None  # the dataset's own frame names per split
    background: tuple[float, float, float] | None = None  # the dataset's preferred colour
    near_far: np.ndarray | None = None  # [N,2] depth bounds per frame (LLFF), world units
    skipped: list[str] = dataclasses.field(default_factory=list)

    def keep_existing(self) -> None:
        """Drop frames whose image file is missing, with one warning and a count."""
        if not self.frames:
            raise InputError(f"{self.root}: the {self.parser} poses list no images")
        exists = [f.image.is_file() for f in self.frames]
        keep = [i for i, ok in enumerate(exists) if ok]
        missing = [f for f, ok in zip(self.frames, exists) if not ok]
        if missing:
            self.skipped += [str(f.image) for f in missing]
            log.warning(
                "%s: skipped %d of %d images that do not exist (first: %s)",
                self.root,
                len(missing),
                len(self.frames),
                missing[0].image,
            )
        if not keep:
            raise InputError(
                f"{self.root}: none of the {len(self.frames)} images named by the "
                f"{self.parser} poses exist (first missing: {missing[0].image})"
            )
        if self.near_far is not None:
            self.near_far = self.near_far[keep]
        self.frames = [self.frames[i] for i in keep]


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in IMAGE_EXTENSIONS)


def find_by_stem(folder: Path, stems: tuple[str, ...]) -> Path | None:
    """The first image file in ``folder`` whose stem is one of ``stems`` (any extension)."""
    if not folder.is_dir():
        return None
    for stem in stems:
        for ext in IMAGE_EXTENSIONS:
            p = folder / f"{stem}{ext}"
            if p.is_file():
                return p
    return None


def find_mask(root: Path, image: Path) -> Path | None:
    """The mask of ``image`` in ``root/masks``: same stem, ``<stem>_mask`` or ``<name>.png``."""
    folder = root / "masks"
    if not folder.is_dir():
        return None
    found = find_by_stem(folder, (image.stem, f"{image.stem}_mask", image.name))
    return found


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size
    except (UnidentifiedImageError, OSError) as e:
        from compgs.errors import CorruptFileError

        raise CorruptFileError(f"{path}: not a readable image ({e})") from e


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
