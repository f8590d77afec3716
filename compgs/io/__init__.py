"""Exchange formats for Gaussian splats: one `load` / `save` for all of them.

The format is chosen from the file's content when it has a recognisable
signature (PLY, SPZ, and formats registered later such as `.cgs`), otherwise
from the suffix; `.splat` has no header and is recognised by suffix (or, with
no known suffix, by a size that is a multiple of 32 bytes).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

from compgs.codec import files as cgs_files
from compgs.errors import CorruptFileError, InputError, UnsupportedFormatError
from compgs.io import ply, spz
from compgs.io import splat as splat_format
from compgs.splats import Splats

SNIFF_BYTES = 16


@dataclasses.dataclass(frozen=True)
class Format:
    name: str
    suffixes: tuple[str, ...]
    read: Callable[[str | os.PathLike], Splats]
    write: Callable[..., None]
    sniff: Callable[[bytes], bool] | None = None  # None: no signature (suffix only)
    # Extra (title, rows) sections for `compgs info`, e.g. the .cgs size breakdown.
    describe: Callable[[Path], list[tuple[str, list[tuple[str, str]]]]] | None = None


FORMATS: dict[str, Format] = {}


def register_format(fmt: Format) -> None:
    """Add a format (the codec registers `.cgs` this way)."""
    FORMATS[fmt.name] = fmt


register_format(Format("ply", (".ply",), ply.read_ply, ply.write_ply, ply.sniff))
register_format(Format("spz", (".spz",), spz.read_spz, spz.write_spz, spz.sniff))
register_format(
    Format("splat", (".splat",), splat_format.read_splat, splat_format.write_splat, None)
)


def _write_cgs(splats: Splats, path: str | os.PathLike, **options) -> None:
    # Any Splats -> .cgs needs codebooks: post-training k-means (compgs compress).
    from compgs.quantize import compress_file_default

    compress_file_default(splats, path, **options)


register_format(
    Format("cgs", (".cgs",), cgs_files.read_cgs, _write_cgs, cgs_files.sniff, cgs_files.describe)
)


def format_for_suffix(path: str | os.PathLike) -> Format | None:
    suffix = Path(path).suffix.lower()
    return next((f for f in FORMATS.values() if suffix in f.suffixes), None)


def _known_suffixes() -> str:
    return ", ".join(s for f in FORMATS.values() for s in f.suffixes)


def detect_format(path: str | os.PathLike) -> Format:
    """The format of an existing file: by signature first, then by suffix."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    for fmt in FORMATS.values():
        if fmt.sniff is not None and fmt.sniff(head):
            return fmt
    by_suffix = format_for_suffix(path)
    if by_suffix is not None and by_suffix.sniff is None:
        return by_suffix
    if by_suffix is None and head and path.stat().st_size % splat_format.RECORD.itemsize == 0:
        return FORMATS["splat"]
    if not head:
        raise CorruptFileError(f"{path}: file is empty")
    what = f"a {by_suffix.name} file" if by_suffix else "any known format"
    raise UnsupportedFormatError(f"{path}: content does not look like {what} ({_known_suffixes()})")


def load(path: str | os.PathLike, format: str | None = None) -> Splats:
    """Read Gaussians from PLY, .splat, .spz (or any registered format)."""
    fmt = _named(format) if format else detect_format(path)
    return fmt.read(path)


def save(splats: Splats, path: str | os.PathLike, format: str | None = None, **options) -> None:
    """Write Gaussians atomically in the format named or implied by the suffix."""
    fmt = _named(format) if format else format_for_suffix(path)
    if fmt is None:
        raise InputError(f"{path}: unknown output suffix; use one of {_known_suffixes()}")
    fmt.write(splats, path, **options)


def _named(name: str) -> Format:
    if name not in FORMATS:
        raise InputError(f"unknown format {name!r}; known: {', '.join(FORMATS)}")
    return FORMATS[name]


__all__ = ["FORMATS", "Format", "detect_format", "load", "register_format", "save"]
