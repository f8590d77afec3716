"""Shared fixtures: the real data folder (../shared/data) when present."""

from __future__ import annotations

import os
from pathlib import Path

# As compgs/__init__.py does, but before any test module imports torch first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("COMPGS_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data of ../shared/data; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set COMPGS_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def maryrose_dir(shared_data: Path) -> Path:
    """The real 69-photo capture (LLFF poses, masks)."""
    path = shared_data / "maryrose"
    if not (path / "poses_bounds.npy").is_file():
        pytest.skip(f"the real capture is not at {path}")
    return path


@pytest.fixture
def real_splat_files(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "splats").glob("*/*.splat"))
    if len(files) < 3:
        pytest.skip(f"expected 3 .splat files under {shared_data / 'splats'}")
    return files
