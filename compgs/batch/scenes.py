"""Which scenes a batch runs: a list file, a glob, or a folder of scene folders.

``--scenes`` is, in this order of checks:

- a **list file**: one scene per line, blank lines and ``#`` comments
  ignored; each line a path (or a glob) relative to ``--root`` when given,
  else to the list file's folder (the lists written by ``compgs datasets``
  hold ``Training/<video_id>`` or ``<hash>`` lines meant for ``--root``);
- a **folder**: the scene itself when it looks like one, else every
  sub-folder (sorted; hidden ones skipped);
- a **glob** (``data/dl3dv/*``), relative to ``--root`` or the current folder.

Each entry is a scene folder any parser reads, a raw ARKitScenes video
(prepared on the fly), or a folder holding one of the release layouts:
``nerfstudio/`` or ``gaussian_splat/`` (DL3DV's benchmark download), ``colmap/``.
Scene names (the output folder of each scene) are the shortest unique tail
of the entries' paths, joined with ``-``.
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import re
from pathlib import Path

from compgs.errors import InputError

log = logging.getLogger(__name__)

RELEASE_SUBFOLDERS = ("nerfstudio", "gaussian_splat", "colmap")


@dataclasses.dataclass(frozen=True)
class SceneEntry:
    name: str  # unique within the batch: the scene's folder name under DIR/scenes/
    path: Path  # absolute path as listed (resolved to the scene folder in the worker)


def is_scene(path: Path) -> bool:
    """Whether ``path`` holds something a parser (or the ARKit preparation) reads."""
    from compgs.data.detect import MARKERS

    path = Path(path)
    return path.is_dir() and any(present(path) for _, present in MARKERS.values())


def resolve_scene_dir(path: Path) -> Path:
    """The folder to load for entry ``path``: itself, or its release sub-folder."""
    path = Path(path)
    if is_scene(path):
        return path
    for sub in RELEASE_SUBFOLDERS:
        if is_scene(path / sub):
            return path / sub
    return path  # the loader then says what is missing


def collect_scenes(spec: str, root: Path | None = None) -> list[SceneEntry]:
    """The scenes named by ``spec`` (see the module docstring), in order, without duplicates."""
    if not str(spec).strip():
        raise InputError("--scenes is empty")
    base = Path(root) if root is not None else None
    if base is not None and not base.is_dir():
        raise InputError(f"{base}: no such folder (--root)")
    given = Path(spec)
    spec_path = given
    if not given.exists() and base is not None and not given.is_absolute():
        spec_path = base / given
    if spec_path.is_file():
        paths = _read_list(spec_path, base or spec_path.parent)
    elif spec_path.is_dir():
        if is_scene(spec_path) or any(is_scene(spec_path / s) for s in RELEASE_SUBFOLDERS):
            paths = [spec_path]
        else:
            paths = sorted(
                p for p in spec_path.iterdir() if p.is_dir() and not p.name.startswith(".")
            )
            if not paths:
                raise InputError(f"{spec_path}: no scene folders inside")
    else:
        if not glob.has_magic(str(spec)):
            raise InputError(f"--scenes {spec}: no such list file or folder")
        paths = _expand(spec, base or Path.cwd())
        if not paths:
            raise InputError(
                f"--scenes {spec}: no such list file or folder, and the glob matches nothing"
            )
    unique, seen = [], set()
    for p in (q.resolve() for q in paths):
        if p in seen:
            log.warning("%s is listed twice; running it once", p)
            continue
        seen.add(p)
        unique.append(p)
    return [SceneEntry(n, p) for n, p in zip(unique_names(unique), unique)]


def _expand(pattern: str, base: Path) -> list[Path]:
    full = pattern if Path(pattern).is_absolute() else str(base / pattern)
    if glob.has_magic(full):
        return sorted(Path(p) for p in glob.glob(full) if Path(p).is_dir())
    return [Path(full)]


def _read_list(path: Path, base: Path) -> list[Path]:
    paths = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        found = _expand(entry, base)
        if not found:
            raise InputError(f"{path}:{n}: {entry!r} matches no folder")
        paths += found
    if not paths:
        raise InputError(f"{path}: the scene list is empty")
    return paths


def unique_names(paths: list[Path]) -> list[str]:
    """For each path the shortest tail of its components (joined by '-') that no other
    path shares, made safe as a folder name."""
    parts = [
        [_safe(p) for p in Path(path).parts if p not in ("/", "")] or ["scene"] for path in paths
    ]
    depth = [1] * len(paths)
    while True:
        names = ["-".join(p[-d:]) for p, d in zip(parts, depth)]
        clashes = {n for n in names if names.count(n) > 1}
        if not clashes:
            return names
        grew = False
        for i, n in enumerate(names):
            if n in clashes and depth[i] < len(parts[i]):
                depth[i] += 1
                grew = True
        if not grew:  # identical tails all the way up cannot happen for distinct paths
            return [f"{n}-{i}" for i, n in enumerate(names)]


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", part).strip("._") or "_"
