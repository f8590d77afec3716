"""Bit packing of unsigned integers at any width, vectorised (no per-element loops).

Bit order is little-endian throughout: value i occupies bits [i*b, (i+1)*b) of the
stream, bit j of the stream is bit (j % 8) of byte j // 8. An independent reader
(the JavaScript viewer, docs/format.md) relies on exactly this.
"""

from __future__ import annotations

import math

import numpy as np

MAX_BITS = 32


def bits_for(k: int) -> int:
    """Bits to index K codes: ceil(log2 K) (0 for K = 1)."""
    if k < 1:
        raise ValueError(f"need at least one code, got {k}")
    return math.ceil(math.log2(k)) if k > 1 else 0


def packed_size(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Pack non-negative integers < 2**bits into ceil(N * bits / 8) bytes."""
    if not 0 <= bits <= MAX_BITS:
        raise ValueError(f"bit width must be 0..{MAX_BITS}, got {bits}")
    v = np.asarray(values).reshape(-1)
    if v.size and (v.min() < 0 or int(v.max()) >> bits):
        raise ValueError(f"values must lie in [0, 2**{bits}), got [{v.min()}, {v.max()}]")
    if bits == 0 or v.size == 0:
        return b""
    if bits in (8, 16, 32):
        return v.astype(f"<u{bits // 8}").tobytes()
    # One row of bits per value, LSB first; packbits then concatenates the rows.
    as_bytes = v.astype("<u4").view(np.uint8).reshape(-1, 4)
    matrix = np.unpackbits(as_bytes, axis=1, bitorder="little")[:, :bits]
    return np.packbits(matrix.reshape(-1), bitorder="little").tobytes()


def unpack_bits(data: bytes | memoryview, count: int, bits: int) -> np.ndarray:
    """Inverse of `pack_bits`: ``count`` values as int64. ``data`` must hold enough bytes."""
    if not 0 <= bits <= MAX_BITS:
        raise ValueError(f"bit width must be 0..{MAX_BITS}, got {bits}")
    need = packed_size(count, bits)
    if len(data) < need:
        raise ValueError(f"{count} values of {bits} bits need {need} bytes, got {len(data)}")
    if bits == 0 or count == 0:
        return np.zeros(count, dtype=np.int64)
    if bits in (8, 16, 32):
        return np.frombuffer(data, dtype=f"<u{bits // 8}", count=count).astype(np.int64)
    # Gather the (at most 5) bytes that hold each value and shift it out: a few
    # vectorised gathers instead of expanding every bit.
    raw = np.frombuffer(data, dtype=np.uint8, count=need)
    padded = np.concatenate([raw, np.zeros(8, np.uint8)])
    start = np.arange(count, dtype=np.int64) * bits
    byte, shift = start >> 3, (start & 7).astype(np.uint64)
    word = np.zeros(count, dtype=np.uint64)
    for j in range((7 + bits + 7) // 8):
        word |= padded[byte + j].astype(np.uint64) << np.uint64(8 * j)
    return ((word >> shift) & np.uint64((1 << bits) - 1)).astype(np.int64)
