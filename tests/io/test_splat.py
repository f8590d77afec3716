import numpy as np
import pytest
import torch

from compgs import io
from compgs.errors import CorruptFileError
from compgs.io.splat import encode_splat, importance_order, read_splat, write_splat
from compgs.splats import SH_C0, Splats


def test_round_trip_within_format_precision(tmp_path):
    s = Splats.random(2000, sh_degree=2, seed=1)
    path = tmp_path / "a.splat"
    write_splat(s, path, sort=False)
    assert path.stat().st_size == 32 * 2000
    back = read_splat(path)
    assert back.sh_degree == 0
    assert torch.equal(back.means, s.means)
    torch.testing.assert_close(back.scales.exp(), s.scales.exp(), rtol=1e-6, atol=0)
    # colour, opacity: 8 bits of the activated value, rounded to nearest
    rgb = (0.5 + SH_C0 * s.sh0).clamp(0, 1)
    assert ((0.5 + SH_C0 * back.sh0) - rgb).abs().max() <= 0.5 / 255 + 1e-6
    assert (back.activated_opacities() - s.activated_opacities()).abs().max() <= 0.5 / 255 + 1e-6
    # rotation: each normalised component within half a step of 1/128, except +1,
    # which the byte range clips to 127/128
    qa, qb = s.normalized_quats(), back.quats
    assert (qa - qb).abs().max() <= 1 / 128 + 1e-6
    assert (qa - qb).abs().median() <= 0.25 / 128


def test_bytes_are_a_fixed_point(tmp_path):
    """What the format stores survives decode + encode exactly."""
    data = encode_splat(Splats.random(5000, sh_degree=0, seed=2), sort=False)
    path = tmp_path / "a.splat"
    path.write_bytes(data)
    again = encode_splat(read_splat(path), sort=False)
    a = np.frombuffer(data, np.uint8).reshape(-1, 32)
    b = np.frombuffer(again, np.uint8).reshape(-1, 32)
    assert np.array_equal(a[:, :12], b[:, :12])  # positions: exact
    assert np.array_equal(a[:, 24:], b[:, 24:])  # colour, opacity, rotation bytes: exact
    sa = a[:, 12:24].copy().view("<f4")
    sb = b[:, 12:24].copy().view("<f4")
    np.testing.assert_allclose(sb, sa, rtol=1e-6)  # scales pass through log: within 1e-6


def test_sorted_by_importance(tmp_path):
    s = Splats.random(300, seed=4)
    order = importance_order(s)
    path = tmp_path / "s.splat"
    write_splat(s, path)
    back = read_splat(path)
    assert torch.equal(back.means, s.means[order])
    importance = (s.scales.double().sum(1).exp() * s.activated_opacities().double()).numpy()
    assert np.all(np.diff(importance[order]) <= 0)
    assert not np.all(np.diff(importance) <= 0)  # the input was not already sorted


def test_bad_size(tmp_path):
    path = tmp_path / "bad.splat"
    path.write_bytes(b"\0" * 33)
    with pytest.raises(CorruptFileError, match="not a multiple of 32"):
        io.load(path)


def test_empty(tmp_path):
    path = tmp_path / "empty.splat"
    path.write_bytes(b"")
    with pytest.raises(CorruptFileError, match="empty"):
        io.load(path)
