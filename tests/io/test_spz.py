import gzip
import struct
import tracemalloc

import numpy as np
import pytest
import torch

from compgs import io
from compgs.errors import CorruptFileError, UnsupportedFormatError
from compgs.io.spz import FLIP_SH, encode_spz, read_spz, write_spz
from compgs.splats import Splats

# Error bounds that follow from SPZ's bit widths (half a quantisation step).
POS_BOUND = 0.5 / (1 << 12) + 1e-6  # 12 fractional bits
ALPHA_BOUND = 0.5 / 255 + 1e-6  # u8 of sigmoid(opacity)
COLOR_BOUND = 0.5 / (0.15 * 255) + 1e-5  # u8 of f_dc * 0.15 * 255 + 127.5
SCALE_BOUND = 0.5 / 16 + 1e-6  # u8 of (log-scale + 10) * 16
# 9-bit magnitudes of the smallest three; the largest, derived from unit length, errs up to 3x that
QUAT_BOUND = 3 * 0.5 / 511 * 2**-0.5 + 1e-5
SH1_BOUND = (4 + 0.5) / 128 + 1e-6  # 5-bit buckets of round(x * 128)
SHN_BOUND = (8 + 0.5) / 128 + 1e-6  # 4-bit buckets


def in_range(s: Splats) -> Splats:
    """Keep values inside what SPZ can represent, so that bounds apply."""
    s = s.clone()
    s.shN.clamp_(-1, 127 / 128)
    s.sh0.clamp_(-3.3, 3.3)
    return s


def assert_within_spz_bounds(back: Splats, s: Splats) -> None:
    assert back.num_gaussians == s.num_gaussians and back.sh_degree == s.sh_degree
    assert (back.means - s.means).abs().max() <= POS_BOUND
    assert (back.activated_opacities() - s.activated_opacities()).abs().max() <= ALPHA_BOUND
    assert (back.sh0 - s.sh0).abs().max() <= COLOR_BOUND
    assert (back.scales - s.scales).abs().max() <= SCALE_BOUND
    qa, qb = s.normalized_quats(), back.normalized_quats()
    sign = torch.sign((qa * qb).sum(dim=1, keepdim=True))
    assert (qa - sign * qb).abs().max() <= QUAT_BOUND
    if s.sh_degree >= 1:
        assert (back.shN[:, :3] - s.shN[:, :3]).abs().max() <= SH1_BOUND
    if s.sh_degree >= 2:
        assert (back.shN[:, 3:] - s.shN[:, 3:]).abs().max() <= SHN_BOUND


@pytest.mark.parametrize("version", [3, 4])
@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_round_trip_within_bit_widths(tmp_path, degree, version):
    s = in_range(Splats.random(3000, sh_degree=degree, seed=degree))
    path = tmp_path / "a.spz"
    write_spz(s, path, version=version)
    assert_within_spz_bounds(read_spz(path), s)


def test_independent_reader_sees_rub_axes(tmp_path):
    """gsply reads our files; the values it sees are ours turned into SPZ's RUB axes."""
    gsply = pytest.importorskip("gsply")
    s = in_range(Splats.random(2000, sh_degree=3, seed=7))
    path = tmp_path / "a.spz"
    write_spz(s, path)
    g = gsply.read_spz(path)
    a = s.numpy()
    assert np.abs(g.means - a["means"] * [1, -1, -1]).max() <= POS_BOUND
    assert np.abs(g.shN - a["shN"] * FLIP_SH[:, None]).max() <= SHN_BOUND
    q = s.normalized_quats().numpy() * [1, 1, -1, -1]
    assert np.abs(np.abs((g.quats * q).sum(axis=1)) - 1).max() < 1e-5


@pytest.mark.parametrize("version", [3, 4])
def test_reads_independent_writer(tmp_path, version):
    gsply = pytest.importorskip("gsply")
    s = in_range(Splats.random(1500, sh_degree=2, seed=8))
    a = s.numpy()
    rub = gsply.GSData(
        means=a["means"] * np.float32([1, -1, -1]),
        scales=a["scales"],
        quats=(s.normalized_quats().numpy() * [1, 1, -1, -1]).astype(np.float32),
        opacities=a["opacities"],
        sh0=a["sh0"][:, 0],
        shN=(a["shN"] * FLIP_SH[:8, None]).astype(np.float32),
    )
    path = tmp_path / "theirs.spz"
    gsply.write_spz(path, rub, version=version)
    assert_within_spz_bounds(io.load(path), s)


def _v2_bytes(s: Splats) -> tuple[bytes, np.ndarray]:
    """A version-2 file written straight from the spec (xyz rotation bytes, RUB axes)."""
    a = s.numpy()
    n = s.num_gaussians
    fixed = np.round(a["means"] * [1, -1, -1] * 4096).astype(np.int64).reshape(-1)
    pos = np.stack([(fixed >> k) & 0xFF for k in (0, 8, 16)], 1).astype(np.uint8)
    q = s.normalized_quats().numpy() * [1, 1, -1, -1]
    q = q * np.sign(q[:, :1])  # w >= 0
    rot = np.clip(np.round((q[:, 1:] + 1) * 127.5), 0, 255).astype(np.uint8)
    alpha = np.round(255 / (1 + np.exp(-a["opacities"]))).astype(np.uint8)
    col = np.clip(np.round(a["sh0"][:, 0] * 0.15 * 255 + 127.5), 0, 255).astype(np.uint8)
    scl = np.clip(np.round((a["scales"] + 10) * 16), 0, 255).astype(np.uint8)
    header = struct.pack("<IIIBBBB", 0x5053474E, 2, n, 0, 12, 0, 0)
    return gzip.compress(header + b"".join(x.tobytes() for x in (pos, alpha, col, scl, rot))), rot


def test_reads_version_2(tmp_path):
    s = in_range(Splats.random(1000, sh_degree=0, seed=9))
    path = tmp_path / "v2.spz"
    data, rot = _v2_bytes(s)
    path.write_bytes(data)
    back = read_spz(path)
    # the spec's decode: xyz = byte / 127.5 - 1, w = sqrt(1 - |xyz|^2), then RUB -> RDF
    xyz = rot / 127.5 - 1
    w = np.sqrt(np.maximum(0, 1 - (xyz**2).sum(1, keepdims=True)))
    expected = np.concatenate([w, xyz * [1, -1, -1]], axis=1)
    np.testing.assert_allclose(back.quats.numpy(), expected, atol=1e-6)
    dot = (s.normalized_quats() * back.normalized_quats()).sum(dim=1).abs().clamp(max=1)
    assert (2 * torch.acos(dot)).median() < 0.02  # 8-bit xyz: about a degree
    assert (back.means - s.means).abs().max() <= POS_BOUND


def _header_patched(data: bytes, **fields) -> bytes:
    raw = bytearray(gzip.decompress(data))
    names = ["magic", "version", "count"]
    for name, value in fields.items():
        struct.pack_into("<I", raw, 4 * names.index(name), value)
    return gzip.compress(bytes(raw))


@pytest.mark.parametrize(
    "patch,error,message",
    [
        ({"magic": 0x12345678}, CorruptFileError, "wrong magic"),
        ({"count": 10**9}, CorruptFileError, "declares 1000000000 Gaussians"),
        ({"version": 9}, UnsupportedFormatError, "version 9"),
    ],
)
def test_bad_headers(tmp_path, patch, error, message):
    path = tmp_path / "bad.spz"
    path.write_bytes(_header_patched(encode_spz(Splats.random(50)), **patch))
    tracemalloc.start()
    with pytest.raises(error, match=message):
        io.load(path)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 4 << 20  # nothing sized from the declared count


def test_truncated_and_corrupt_streams(tmp_path):
    data = encode_spz(Splats.random(500, sh_degree=1))
    path = tmp_path / "t.spz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError):
        io.load(path)
    path.write_bytes(data[:12])
    with pytest.raises(CorruptFileError):
        io.load(path)
    v4 = bytearray(encode_spz(Splats.random(500, sh_degree=1), version=4))
    struct.pack_into("<I", v4, 8, 10**8)  # count
    path.write_bytes(bytes(v4))
    with pytest.raises(CorruptFileError, match="stream"):
        io.load(path)
