import pytest
import torch

from compgs import io
from compgs.errors import CorruptFileError, InputError, UnsupportedFormatError
from compgs.splats import Splats


@pytest.mark.parametrize(
    "real,wrong", [("ply", ".spz"), ("spz", ".ply"), ("ply", ""), ("spz", ".bin")]
)
def test_content_wins_over_suffix(tmp_path, real, wrong):
    s = Splats.random(64, sh_degree=1)
    path = tmp_path / f"file{wrong}"
    io.save(s, path, format=real)
    assert io.detect_format(path).name == real
    assert io.load(path).num_gaussians == 64


def test_headerless_splat_without_suffix(tmp_path):
    s = Splats.random(64, sh_degree=0)
    path = tmp_path / "noext"
    io.save(s, path, format="splat")
    assert io.detect_format(path).name == "splat"


def test_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        io.load(tmp_path / "missing.ply")
    with pytest.raises(InputError, match="is a directory|not a file"):
        io.load(tmp_path)
    (tmp_path / "empty.ply").write_bytes(b"")
    with pytest.raises(CorruptFileError, match="empty"):
        io.load(tmp_path / "empty.ply")
    (tmp_path / "junk.ply").write_bytes(b"hello world, not a splat")
    with pytest.raises(UnsupportedFormatError, match="does not look like a ply file"):
        io.load(tmp_path / "junk.ply")
    with pytest.raises(InputError, match="unknown output suffix"):
        io.save(Splats.random(2), tmp_path / "x.obj")


@pytest.mark.parametrize("fmt", ["ply", "splat", "spz"])
def test_outputs_are_atomic(tmp_path, fmt, monkeypatch):
    """A failure mid-write leaves no file under the final name and no temp file."""
    import numpy as np

    path = tmp_path / f"out.{fmt}"

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("os.fsync", boom)
    with pytest.raises(RuntimeError):
        io.save(Splats.random(10), path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    io.save(Splats.random(10), path)
    assert np.isfinite(io.load(path).means.numpy()).all()


def test_real_files_convert_and_back(tmp_path, real_splat_files):
    """The real splats load, go to PLY and SPZ and back with counts and values kept."""
    from tests.io.test_spz import assert_within_spz_bounds

    for path in real_splat_files:
        s = io.load(path)
        assert s.num_gaussians in (113_648, 100_000) and s.sh_degree == 0
        io.save(s, tmp_path / "r.ply")
        back = io.load(tmp_path / "r.ply")
        for name in ("means", "quats", "scales", "opacities", "sh0"):
            assert torch.equal(getattr(back, name), getattr(s, name))
        io.save(s, tmp_path / "r.spz")
        spz = io.load(tmp_path / "r.spz")
        clamped = s.clone()
        clamped.sh0.clamp_(-3.3, 3.3)
        assert_within_spz_bounds(spz, clamped)
        # back to .splat in the stored order: the file's bytes, every one of them
        io.save(s, tmp_path / "r.splat", sort=False)
        assert (tmp_path / "r.splat").read_bytes() == path.read_bytes()


def test_outputs_get_the_mode_of_an_ordinary_file(tmp_path):
    """Temporary files are private; the published file is readable as umask allows."""
    import os
    import stat

    from compgs.atomic import atomic_write_bytes

    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        os.umask(0o077)
        atomic_write_bytes(tmp_path / "b.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o600
