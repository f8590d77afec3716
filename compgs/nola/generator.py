"""Seeded random bases that come out bit-identical on every device and platform.

NOLA never stores its random matrices: a checkpoint holds the seed, and every
reader must regenerate exactly the matrices the writer trained with. Library
RNGs (torch's Mersenne Twister on CPU, Philox on CUDA, numpy's PCG) differ
between devices and may change between releases, so the bases come from a
counter-based generator of our own: value i of a stream is a pure function
hash(seed, stream, i) built from 32-bit integer operations only.

Every intermediate fits in a signed 64-bit integer (the 32 x 32-bit multiply is
split into two 16-bit halves), so the same code gives the same bits on Python
ints, numpy int64 arrays and torch int64 tensors on any device. The integer
becomes a float without rounding: a 23-bit integer j maps to (2j + 1) / 2^23 - 1,
exactly representable in float32, so no transcendental function (whose last
bit differs between math libraries) is ever involved. That is also why the
distribution is uniform rather than Gaussian.

Because value i depends on i alone, any slice of a stream can be produced on
its own: bases are filled chunk by chunk, keeping the integer temporaries small.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import torch

from compgs.errors import InputError

MASK32 = 0xFFFFFFFF
DEFAULT_CHUNK = 1 << 18  # elements per generation chunk (~10 MB of int64 temporaries)
MAX_SEED = 2**63 - 1


def stream_key(seed: int, stream: str) -> tuple[int, int, int]:
    """Three 32-bit keys for (seed, stream): a stable digest, the same on every platform."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"seed must be an int in [0, 2^63), got {seed!r}")
    digest = hashlib.blake2b(f"{seed}:{stream}".encode(), digest_size=12).digest()
    return tuple(int.from_bytes(digest[i : i + 4], "little") for i in (0, 4, 8))  # type: ignore[return-value]


def _mul32(x, c: int):
    """(x * c) mod 2^32 for 0 <= x < 2^32 without any intermediate >= 2^63."""
    lo, hi = c & 0xFFFF, c >> 16
    return (x * lo + (((x * hi) & 0xFFFF) << 16)) & MASK32


def _fmix32(x):
    """MurmurHash3's 32-bit finaliser: a bijection of [0, 2^32) with full avalanche."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x85EBCA6B)
    x = x ^ (x >> 13)
    x = _mul32(x, 0xC2B2AE35)
    return x ^ (x >> 16)


def hash_counter(counter, keys: tuple[int, int, int]):
    """32-bit hash of the non-negative counter(s) under ``keys``.

    ``counter`` may be a Python int, a numpy int64 array or a torch int64 tensor
    (any device); the result has the same type and, for equal inputs, equal bits.
    """
    k0, k1, k2 = keys
    lo, hi = counter & MASK32, counter >> 32
    h = _fmix32(lo ^ k0)
    h = _fmix32(h ^ hi ^ k1)
    return _fmix32(((h + 0x9E3779B9) & MASK32) ^ k2)


def _to_unit(h: torch.Tensor) -> torch.Tensor:
    """Exact map of 32-bit hashes to float32 in (-1, 1): (2 (h >> 9) + 1) / 2^23 - 1."""
    j = ((h >> 9) * 2 + 1).to(torch.float32)  # < 2^24: exact in float32
    return j * (2.0**-23) - 1.0  # power-of-two scale and a representable difference: exact


def uniform(
    seed: int,
    stream: str,
    count: int,
    *,
    start: int = 0,
    device: torch.device | str | None = None,
    backend: str = "torch",
    chunk: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """Values ``start .. start + count - 1`` of stream (seed, stream), float32 in (-1, 1).

    ``backend="torch"`` hashes with int64 tensors on ``device``; ``"numpy"`` hashes
    on the CPU with numpy and moves the result. Both give identical bits.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise InputError(f"count must be an int >= 0, got {count!r}")
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < 2**62 - count:
        raise InputError(f"start must be an int in [0, 2^62 - count), got {start!r}")
    if backend not in ("torch", "numpy"):
        raise InputError(f"backend must be 'torch' or 'numpy', got {backend!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise InputError(f"chunk must be an int >= 1, got {chunk!r}")
    keys = stream_key(seed, stream)
    device = torch.device("cpu") if device is None else torch.device(device)
    out = torch.empty(count, dtype=torch.float32, device=device)
    for begin in range(0, count, chunk):
        n = min(chunk, count - begin)
        if backend == "torch":
            counter = torch.arange(
                start + begin, start + begin + n, dtype=torch.int64, device=device
            )
            h = hash_counter(counter, keys)
        else:
            counter = np.arange(start + begin, start + begin + n, dtype=np.int64)
            h = torch.from_numpy(hash_counter(counter, keys)).to(device)
        out[begin : begin + n] = _to_unit(h)
    return out


def uniform_reference(seed: int, stream: str, index: int) -> float:
    """Value ``index`` of a stream with plain Python integers (slow; the oracle for tests)."""
    h = hash_counter(index, stream_key(seed, stream))
    return (2 * (h >> 9) + 1) / 2**23 - 1.0


def basis(
    seed: int,
    stream: str,
    count: int,
    rows: int,
    cols: int,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    backend: str = "torch",
    chunk: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """``count`` random matrices [count, rows, cols] with unit expected Frobenius norm.

    Entries are uniform in (-b, b) with b = sqrt(3 / (rows cols)), so a mixture
    sum_i c_i M_i has norm ~ ||c||_2 whatever the layer's shape. Matrix i is a
    prefix-stable slice of the stream: the first 32 of 64 matrices equal the 32
    of a 32-matrix basis.
    """
    for name, value in (("count", count), ("rows", rows), ("cols", cols)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"basis {name} must be an int >= 1, got {value!r}")
    values = uniform(seed, stream, count * rows * cols, device=device, backend=backend, chunk=chunk)
    # A float32 tensor times a float32 tensor: one correctly rounded IEEE product
    # per entry, the same on every device (a Python float scalar might not be).
    values.mul_(
        torch.tensor(math.sqrt(3.0 / (rows * cols)), dtype=torch.float32, device=values.device)
    )
    return values.to(dtype).reshape(count, rows, cols)


class _MixBasis(torch.autograd.Function):
    """sum_i c_i M_i over a basis that is regenerated chunk by chunk, never held whole.

    Backward regenerates the same chunks: d out / d c_i = <grad, M_i>.
    """

    @staticmethod
    def forward(ctx, coef, seed, stream, rows, cols, chunk_matrices):
        ctx.save_for_backward(coef)
        ctx.args = (seed, stream, rows, cols, chunk_matrices)
        out = torch.zeros(rows * cols, dtype=torch.float32, device=coef.device)
        for begin, mats in _chunks(
            seed, stream, coef.shape[0], rows, cols, chunk_matrices, coef.device
        ):
            out += coef[begin : begin + mats.shape[0]].float() @ mats
        return out.reshape(rows, cols)

    @staticmethod
    def backward(ctx, grad):
        (coef,) = ctx.saved_tensors
        seed, stream, rows, cols, chunk_matrices = ctx.args
        g = torch.empty(coef.shape[0], dtype=torch.float32, device=coef.device)
        flat = grad.reshape(-1).float()
        for begin, mats in _chunks(
            seed, stream, coef.shape[0], rows, cols, chunk_matrices, coef.device
        ):
            g[begin : begin + mats.shape[0]] = mats @ flat
        return g.to(coef.dtype), None, None, None, None, None


def _chunks(seed, stream, count, rows, cols, chunk_matrices, device):
    scale = torch.tensor(math.sqrt(3.0 / (rows * cols)), dtype=torch.float32, device=device)
    size = rows * cols
    for begin in range(0, count, chunk_matrices):
        n = min(chunk_matrices, count - begin)
        values = uniform(seed, stream, n * size, start=begin * size, device=device)
        yield begin, values.mul_(scale).reshape(n, size)


def mix_basis(
    coef: torch.Tensor, seed: int, stream: str, rows: int, cols: int, *, chunk: int = DEFAULT_CHUNK
) -> torch.Tensor:
    """sum_i coef_i basis(seed, stream, len(coef), rows, cols)[i], differentiable in ``coef``,
    with at most ~``chunk`` basis entries in memory at a time (forward and backward)."""
    if not isinstance(coef, torch.Tensor) or coef.dim() != 1 or coef.numel() == 0:
        raise InputError("coef must be a non-empty 1-D tensor")
    chunk_matrices = max(1, chunk // (rows * cols))
    return _MixBasis.apply(coef, seed, stream, rows, cols, chunk_matrices)
