"""The committed viewer bundle: built from the current sources, and shipped in the wheel."""

from __future__ import annotations

import fnmatch
import hashlib
import json
from pathlib import Path

import pytest

from compgs.view.server import STATIC_DIR

ROOT = Path(__file__).resolve().parents[2]
VIEWER = ROOT / "viewer"
# Must match SOURCES in viewer/vite.config.ts.
SOURCES = [
    "index.html",
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "vite.config.ts",
    "src",
]


def sources_hash(root: Path) -> str:
    files = sorted(
        p.relative_to(root).as_posix()
        for name in SOURCES
        for p in ([root / name] if (root / name).is_file() else (root / name).rglob("*"))
        if p.is_file()
    )
    h = hashlib.sha256()
    for rel in files:
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256((root / rel).read_bytes()).digest())
    return h.hexdigest()


def test_bundle_is_built_from_the_current_sources():
    if not VIEWER.is_dir():
        pytest.skip("viewer/ sources are not in this tree")
    info = json.loads((STATIC_DIR / "assets" / "build-info.json").read_text())
    assert info["sources_sha256"] == sources_hash(VIEWER), (
        "compgs/view/static is older than viewer/: run `npm ci && npm run build` in viewer/"
    )


def test_package_data_ships_every_bundle_file():
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["compgs.view"]
    package = STATIC_DIR.parent
    files = [p.relative_to(package).as_posix() for p in STATIC_DIR.rglob("*") if p.is_file()]
    assert files
    missing = [f for f in files if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)]
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
