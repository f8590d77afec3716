"""`compgs export X --format html -o DIR`: the viewer and one scene as a static site.

The folder holds index.html (set to open the scene), the viewer's assets, the
scene file itself and a small manifest; any static web host can serve it (a
browser will not fetch the scene from a file:// page, so it needs a server).
The folder appears complete or not at all: it is built next to its final
place and renamed into it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.parse
from pathlib import Path

from compgs.errors import InputError
from compgs.view.server import STATIC_DIR, static_files, viewer_page

MANIFEST = "compgs-export.json"


def export_html(src: str | Path, out_dir: str | Path) -> Path:
    """Write the static viewer site for ``src`` into ``out_dir``; returns index.html's path.

    ``out_dir`` must not exist, be empty, or hold an earlier export (replaced).
    """
    from compgs import __version__
    from compgs.io import detect_format

    src, out_dir = Path(src), Path(out_dir)
    fmt = detect_format(src)  # a file the viewer can read, or a clear error
    if out_dir.exists() and not _replaceable(out_dir):
        raise InputError(f"{out_dir}: exists and is not an earlier export; choose a new folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        for url_path, file in static_files().items():
            target = build / url_path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(file, target)
        scene_name = (
            src.name if src.name not in ("index.html", MANIFEST, "assets") else f"scene{src.suffix}"
        )
        shutil.copyfile(src, build / scene_name)
        (build / "index.html").write_bytes(viewer_page(urllib.parse.quote(scene_name)))
        manifest = {
            "creator": f"compgs {__version__}",
            "scene": scene_name,
            "format": fmt.name,
            "bytes": src.stat().st_size,
            "viewer": sorted(
                p.relative_to(STATIC_DIR).as_posix() for p in STATIC_DIR.rglob("*") if p.is_file()
            ),
        }
        (build / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _move_into_place(build, out_dir)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return out_dir / "index.html"


def _replaceable(out_dir: Path) -> bool:
    return out_dir.is_dir() and (not any(out_dir.iterdir()) or (out_dir / MANIFEST).is_file())


def _move_into_place(build: Path, out_dir: Path) -> None:
    """Rename the finished folder into place; an earlier export is swapped out, then removed."""
    if not out_dir.exists():
        build.replace(out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
    old.rmdir()
    out_dir.replace(old)
    try:
        build.replace(out_dir)
    except BaseException:
        old.replace(out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)
