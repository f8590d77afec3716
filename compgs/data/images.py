"""Image files -> float tensors: downscaled copies, undistortion, masks, an in-memory cache.

Downscaling by ``d`` reads ``<folder>_<d>/`` next to the original folder when
it holds the image (``images/a.jpg`` -> ``images_4/a.*``, as COLMAP, LLFF,
nerfstudio and DL3DV ship them). Otherwise the copy is made, once, from the
nearest existing smaller level (``images_8`` for ``d=16``, else the
original) and kept as a lossless PNG in the cache folder:
``$COMPGS_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/compgs`` or
``~/.cache/compgs``, under ``scenes/<folder name>-<hash of its path>/``.
Scene folders are never written to (they may be read-only).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import logging
import os
from pathlib import Path

import numpy as np
import torch

from compgs.atomic import atomic_write_bytes
from compgs.data.frames import PINHOLE, find_by_stem, image_size
from compgs.data.undistort import undistort
from compgs.errors import CorruptFileError

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    if os.environ.get("COMPGS_CACHE_DIR"):
        return Path(os.environ["COMPGS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "compgs"


def scene_cache_dir(cache_root: Path, scene_root: Path) -> Path:
    resolved = Path(scene_root).resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:10]
    return Path(cache_root) / "scenes" / f"{resolved.name}-{digest}"


@dataclasses.dataclass
class Level:
    """Where one file of a view comes from at the requested downscale factor."""

    source: Path  # the file to read (or to resize into ``cache``)
    cache: Path | None  # the resized copy to make and read; None: ``source`` is final
    size: tuple[int, int]  # (width, height) of the final image


def resolve_level(
    root: Path, path: Path, full_size: tuple[int, int], factor: int, cache_dir: Path
) -> Level:
    """The file for ``path`` downscaled by ``factor`` (see the module docstring)."""
    if factor == 1:
        return Level(path, None, full_size)
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = None
    source = path
    if rel is not None and len(rel.parts) > 1:
        top, rest = rel.parts[0], Path(*rel.parts[1:])
        existing = find_by_stem((root / f"{top}_{factor}" / rest).parent, (path.stem,))
        if existing is not None:
            return Level(existing, None, image_size(existing))
        for k in sorted((k for k in range(2, factor) if factor % k == 0), reverse=True):
            smaller = find_by_stem((root / f"{top}_{k}" / rest).parent, (path.stem,))
            if smaller is not None:
                source = smaller
                break
        cache = cache_dir / f"{top}_{factor}" / rest.parent / f"{path.stem}.png"
    else:  # images outside a sub-folder (or outside the scene): key them by path
        key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        cache = cache_dir / f"files_{factor}" / f"{path.stem}-{key}.png"
    w, h = full_size
    return Level(source, cache, (max(1, w // factor), max(1, h // factor)))


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        im = Image.open(path)
        im.load()
    except (UnidentifiedImageError, OSError) as e:
        raise CorruptFileError(f"{path}: not a readable image ({e})") from e
    return im


def read_level(level: Path | Level, *, mode: str):
    """A PIL image in ``mode`` ('RGB', 'RGBA' or 'L') at the level's size (cached copy made once)."""
    from PIL import Image

    if isinstance(level, Path):
        level = Level(level, None, image_size(level))
    if level.cache is None:
        im = _open(level.source)
    elif level.cache.is_file() and level.cache.stat().st_mtime >= level.source.stat().st_mtime:
        im = _open(level.cache)
    else:
        im = _open(level.source)
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB" if mode != "L" else "L")
        im = im.resize(level.size, Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        atomic_write_bytes(level.cache, buf.getvalue())
        log.debug("cached %s -> %s", level.source, level.cache)
    if mode == "RGBA" and "A" not in im.getbands():
        mode = "RGB"
    return im.convert(mode)


@dataclasses.dataclass
class View:
    """Everything needed to produce one view's pixels."""

    image: Level
    mask: Level | None
    alpha_is_mask: bool
    K: np.ndarray  # at the final size
    model: str
    distortion: np.ndarray | None


def build_views(root: Path, frames: list, factor: int, cache_dir: Path) -> list[View]:
    """A `View` per `Frame` at ``factor`` times smaller than full resolution."""
    views = []
    for f in frames:
        level = resolve_level(root, f.image, (f.width, f.height), factor, cache_dir)
        mask = None
        if f.mask is not None:
            mask = resolve_level(root, f.mask, (f.width, f.height), factor, cache_dir)
        K = f.K.copy()
        K[0] *= level.size[0] / f.width  # exact for resizers that map image extent to extent
        K[1] *= level.size[1] / f.height
        views.append(View(level, mask, f.alpha_is_mask, K, f.model, f.distortion))
    return views


class _LRU:
    """Decoded (image, mask) pairs by view identity, dropping the oldest over a byte budget."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.items: collections.OrderedDict[int, tuple] = collections.OrderedDict()
        self.bytes = 0

    @staticmethod
    def _size(item) -> int:
        return sum(t.numel() * t.element_size() for t in item if t is not None)

    def get(self, key: int):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        return None

    def put(self, key: int, item) -> None:
        self.items[key] = item
        self.bytes += self._size(item)
        while self.bytes > self.max_bytes and len(self.items) > 1:
            _, old = self.items.popitem(last=False)
            self.bytes -= self._size(old)


class ImageStore:
    """Decoded views as float32 [H,W,3] in [0,1], kept in an LRU cache of ``max_bytes``.

    With a mask (a mask file, or the alpha channel of RGBA images) the image
    is composited onto ``background``: pixels outside the object take that
    colour in training and in evaluation alike.
    """

    def __init__(
        self,
        views: list[View],
        background: torch.Tensor,
        *,
        undistort: bool = True,
        max_bytes: int = 2 << 30,
    ):
        self.views = views
        self.background = background.to(torch.float32)
        self.undistort = undistort
        self._cache = _LRU(max_bytes)

    def __len__(self) -> int:
        return len(self.views)

    def subset(self, indices: list[int]) -> ImageStore:
        """A store over ``views[indices]`` sharing this one's decoded images."""
        sub = ImageStore(
            [self.views[i] for i in indices], self.background, undistort=self.undistort
        )
        sub._cache = self._cache
        return sub

    def get(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(image [H,W,3], mask [H,W] or None) of view ``i``; treat both as read-only."""
        key = id(self.views[i])  # views live as long as the store: ids are stable keys
        item = self._cache.get(key)
        if item is None:
            item = self._load(i)
            self._cache.put(key, item)
        return item

    def _load(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        from PIL import Image

        v = self.views[i]
        im = read_level(v.image, mode="RGBA" if v.alpha_is_mask else "RGB")
        if im.size != v.image.size:
            raise CorruptFileError(
                f"{v.image.cache or v.image.source}: image is {im.size[0]}x{im.size[1]}, "
                f"the cameras expect {v.image.size[0]}x{v.image.size[1]}"
            )
        arr = torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0)
        mask = arr[..., 3] if arr.shape[-1] == 4 else None
        rgb = arr[..., :3].contiguous()
        if v.mask is not None:
            m = read_level(v.mask, mode="L")
            if m.size != im.size:
                m = m.resize(im.size, Image.Resampling.BILINEAR)
            m = torch.from_numpy(np.asarray(m, dtype=np.float32) / 255.0)
            mask = m if mask is None else mask * m
        if self.undistort and v.model != PINHOLE and v.distortion is not None:
            K = torch.from_numpy(v.K)
            d = torch.from_numpy(v.distortion)
            stacked = rgb if mask is None else torch.cat([rgb, mask[..., None]], dim=-1)
            stacked = undistort(stacked, K, v.model, d)
            rgb, mask = stacked[..., :3], (None if mask is None else stacked[..., 3])
        if mask is not None:
            rgb = rgb * mask[..., None] + self.background * (1 - mask[..., None])
        return rgb.contiguous(), (None if mask is None else mask.contiguous())
