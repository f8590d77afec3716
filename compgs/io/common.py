"""Helpers shared by the format readers: reading a user-named file safely."""

from __future__ import annotations

import os
from pathlib import Path

from compgs.errors import CorruptFileError, InputError
from compgs.splats import Splats


def read_input_bytes(path: str | os.PathLike) -> bytes:
    """The bytes of ``path``, or an `InputError`/`CorruptFileError` naming what is wrong."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, expected a file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot read: {e.strerror or e}") from e
    if not data:
        raise CorruptFileError(f"{path}: file is empty")
    return data


def checked_finite(path: str | os.PathLike, splats: Splats) -> Splats:
    """Reject files whose values decode to NaN/Inf, naming the file."""
    try:
        return splats.validate_finite()
    except InputError as e:
        raise CorruptFileError(f"{path}: {e}") from e
