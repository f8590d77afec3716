"""`compgs export X --format html -o DIR`: a self-contained static viewer site."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import tyro


def export(
    src: Annotated[Path, tyro.conf.Positional],
    output: Annotated[Path, tyro.conf.arg(aliases=["-o"])],
    format: Literal["html"] = "html",
) -> None:
    """Write the browser viewer and SRC into the folder OUTPUT, ready for any static web host.

    Args:
        src: the scene: a .cgs (or .ply, .splat, .spz) file.
        output: the folder to create (an earlier export there is replaced).
        format: what to export: `html`, the viewer as static files plus the scene.
    """
    from compgs.view.export import export_html

    index = export_html(src, output)
    size = sum(p.stat().st_size for p in output.rglob("*") if p.is_file())
    print(f"wrote {output}/ ({size:,} bytes): serve it with any static web host, open {index.name}")
