import numpy as np
import pytest
import torch

from compgs import io
from compgs.errors import CorruptFileError
from compgs.io.splat import encode_splat, importance_order, read_splat, write_splat
from compgs.splats import FIELDS, SH_C0, Splats


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
    assert np.array_equal(a, b)  # every byte, scales included


def test_scales_the_log_cannot_reach_are_still_written_exactly(tmp_path):
    """Many float32 scales are not exp() of any float32 log: the file's own value is kept."""
    eps = np.finfo(np.float32).eps
    scales = np.float32(0.01) * (1 + np.arange(3000, dtype=np.float32) * eps)  # neighbours
    data = encode_splat(Splats.random(1000, sh_degree=0, seed=3), sort=False)
    raw = np.frombuffer(data, np.uint8).reshape(-1, 32).copy()
    raw[:, 12:24] = scales.view(np.uint8).reshape(-1, 12)
    path = tmp_path / "ulp.splat"
    path.write_bytes(raw.tobytes())
    back = read_splat(path)
    assert np.unique(back.scales.numpy()).size < scales.size  # the log alone loses them
    assert encode_splat(back, sort=False) == raw.tobytes()
    # subsets and concatenations keep them; reordering on write keeps them
    both = Splats.cat([back.index(slice(0, 400)), back.index(slice(400, None))])
    assert encode_splat(both, sort=False) == raw.tobytes()
    order = importance_order(back)
    assert encode_splat(back, sort=True) == raw[order].tobytes()


def test_edited_scales_are_not_overridden_by_the_stored_ones(tmp_path):
    path = tmp_path / "a.splat"
    write_splat(Splats.random(500, sh_degree=0, seed=5), path, sort=False)
    back = read_splat(path)
    back.scales[:10] += 0.5  # an edit after loading, in place
    out = np.frombuffer(encode_splat(back, sort=False), np.uint8).reshape(-1, 32)
    written = out[:, 12:24].copy().view("<f4")
    expected = np.exp(back.scales.numpy().astype(np.float64)).astype(np.float32)
    assert np.array_equal(written[:10], expected[:10])
    original = np.frombuffer(path.read_bytes(), np.uint8).reshape(-1, 32)
    assert np.array_equal(out[10:], original[10:])
    # a Splats built from fields alone has no stored scales and writes exp(log)
    fresh = Splats(**{name: getattr(back, name) for name in FIELDS})
    assert fresh.source_scales is None
    out = np.frombuffer(encode_splat(fresh, sort=False), np.uint8).reshape(-1, 32)
    assert np.array_equal(out[:, 12:24].copy().view("<f4"), expected)


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
