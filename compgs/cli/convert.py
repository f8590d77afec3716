"""`compgs convert IN OUT`: read any splat format, write another."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import tyro


def convert(
    src: Annotated[Path, tyro.conf.Positional],
    dst: Annotated[Path, tyro.conf.Positional],
    format: str | None = None,
) -> None:
    """Convert a splat file to another format (chosen by OUT's suffix or --format).

    Args:
        src: input file (.ply, .splat, .spz, .cgs; detected from content).
        dst: output file; written atomically.
        format: output format name when the suffix does not say it (ply, splat, spz, cgs).
    """
    from compgs import io

    splats = io.load(src)
    io.save(splats, dst, format=format)
    print(
        f"{src} ({splats.num_gaussians} Gaussians, SH degree {splats.sh_degree}) -> {dst} "
        f"({dst.stat().st_size:,} bytes)"
    )
