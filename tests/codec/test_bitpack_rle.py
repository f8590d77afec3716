import numpy as np
import pytest

from compgs.codec.bitpack import bits_for, pack_bits, packed_size, unpack_bits
from compgs.codec.morton import morton_codes
from compgs.codec.rle import expand_runs, run_lengths


def slow_pack(values, bits):
    """Reference: one bit at a time, LSB first."""
    out = bytearray(packed_size(len(values), bits))
    for i, v in enumerate(values):
        for b in range(bits):
            if (int(v) >> b) & 1:
                pos = i * bits + b
                out[pos // 8] |= 1 << (pos % 8)
    return bytes(out)


@pytest.mark.parametrize("bits", [0, 1, 2, 3, 5, 7, 8, 9, 12, 13, 14, 15, 16, 17, 24, 25, 31, 32])
def test_pack_matches_reference_and_round_trips(bits):
    rng = np.random.default_rng(bits)
    values = rng.integers(0, 1 << bits, size=61, dtype=np.int64) if bits else np.zeros(61, np.int64)
    values[:2] = [0, (1 << bits) - 1 if bits else 0]
    packed = pack_bits(values, bits)
    assert packed == slow_pack(values, bits)
    assert len(packed) == packed_size(61, bits)
    np.testing.assert_array_equal(unpack_bits(packed, 61, bits), values)


def test_bits_for():
    assert [bits_for(k) for k in (1, 2, 3, 4, 4096, 4097, 16384, 32768)] == [
        0,
        1,
        2,
        2,
        12,
        13,
        14,
        15,
    ]


def test_pack_rejects_out_of_range_and_short_input():
    with pytest.raises(ValueError, match="values must lie"):
        pack_bits(np.array([8]), 3)
    with pytest.raises(ValueError, match="need 4 bytes"):
        unpack_bits(b"\0\0", 3, 10)


def test_run_lengths():
    idx = np.array([0, 0, 2, 2, 2, 5])
    counts = run_lengths(idx, 7)
    np.testing.assert_array_equal(counts, [2, 0, 3, 0, 0, 1, 0])
    np.testing.assert_array_equal(expand_runs(counts), idx)
    with pytest.raises(ValueError, match="non-decreasing"):
        run_lengths(np.array([1, 0]), 3)


def test_morton_orders_locally():
    grid = np.stack(np.meshgrid(*[np.arange(4)] * 3, indexing="ij"), -1).reshape(-1, 3)
    codes = morton_codes(grid)
    assert len(np.unique(codes)) == 64
    first_octant = np.argsort(codes)[:8]
    assert (grid[first_octant] <= 1).all()  # the first 8 codes are the 2x2x2 corner cube
