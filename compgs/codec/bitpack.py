"""Bit packing of unsigned integers at any width, vectorised (no per-element loops).

Bit order is little-endian throughout: value i occupies bits [i*b, (i+1)*b) of the
stream, bit j of the stream is bit (j % 8) of byte j // 8. An independent reader
(the JavaScript viewer, docs/format.md) relies on exactly this.
"""

from __future__ import annotations

import math

import numpy as np

MAX_BITS = 32
UNPACK_BLOCK = 16384  # groups of 8 values per block: 512 KB of int32 output


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


def unpack_bits(data: bytes | memoryview, count: int, bits: int, dtype=np.int64) -> np.ndarray:
    """Inverse of `pack_bits`: ``count`` values. ``data`` must hold enough bytes.

    ``dtype`` is the integer type of the result (int64 by default); a narrower one
    (e.g. int32 for bit widths up to 31) saves the decoder wide temporaries.
    """
    if not 0 <= bits <= MAX_BITS:
        raise ValueError(f"bit width must be 0..{MAX_BITS}, got {bits}")
    need = packed_size(count, bits)
    if len(data) < need:
        raise ValueError(f"{count} values of {bits} bits need {need} bytes, got {len(data)}")
    if bits == 0 or count == 0:
        return np.zeros(count, dtype=dtype)
    if bits in (8, 16, 32):
        return np.frombuffer(data, dtype=f"<u{bits // 8}", count=count).astype(dtype)
    # Eight values fill exactly `bits` bytes. Value j of every such group starts at the
    # same bit offset j * bits of its group, so it is one little-endian word read at a
    # fixed byte offset with stride `bits` (an unaligned strided view), shifted by
    # (j * bits) % 8 < 8 and masked: eight vectorised steps. They write every eighth
    # output value, so they run over blocks of groups whose output stays in cache
    # (a third faster at 1M values than eight passes over the whole output).
    groups = -(-count // 8)
    word = np.dtype("<u4" if bits <= 25 else "<u8")  # shift + bits fit in the word
    padded = np.zeros(groups * bits + word.itemsize, np.uint8)
    padded[:need] = np.frombuffer(data, dtype=np.uint8, count=need)
    out = np.empty((groups, 8), dtype=dtype)
    # values < 2**bits fit both types: write through a same-width unsigned view when there is one
    target = out.view(word) if out.itemsize == word.itemsize else out
    mask = word.type((1 << bits) - 1)
    shifted = np.empty(min(groups, UNPACK_BLOCK), word)
    for first in range(0, groups, UNPACK_BLOCK):
        size = min(UNPACK_BLOCK, groups - first)
        for j in range(8):
            offset = first * bits + (j * bits >> 3)
            words = np.ndarray((size,), word, buffer=padded, offset=offset, strides=(bits,))
            np.right_shift(words, word.type(j * bits & 7), out=shifted[:size])
            np.bitwise_and(
                shifted[:size], mask, out=target[first : first + size, j], casting="unsafe"
            )
    return out.reshape(-1)[:count]
