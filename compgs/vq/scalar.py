"""Scalar quantizers: every value on its own, per tensor or per channel.

* uniform (absmax, symmetric): codes in [-(2^(b-1) - 1), 2^(b-1) - 1], value = code x scale;
* k-means (non-uniform): 2^b levels fitted by one-dimensional k-means (the exact
  sorted d = 1 path), value = levels[code], levels ascending.

`quantize_*` return integer codes plus what decoding needs; `dequantize` undoes
them; `fake_quantize_*` are the straight-through versions for quantization-aware
training (forward: the dequantized values; backward: identity).

``axis=None`` quantizes the whole tensor with one set of parameters;
``axis=a`` gives every index along dimension a (a channel) its own.
"""

from __future__ import annotations

import dataclasses

import torch

from compgs.errors import InputError
from compgs.vq._checks import check_finite, work_dtype
from compgs.vq.kmeans import kmeans
from compgs.vq.onedim import assign_1d, sorted_levels


@dataclasses.dataclass(frozen=True)
class UniformCodes:
    """codes: int8 (bits <= 8) or int16, the input's shape; scale: float, shape [] for
    one tensor, or the input's rank with the channel count along ``axis`` and 1 elsewhere."""

    codes: torch.Tensor
    scale: torch.Tensor
    bits: int
    axis: int | None

    def dequantize(self) -> torch.Tensor:
        return self.codes.to(self.scale.dtype) * self.scale


@dataclasses.dataclass(frozen=True)
class LevelCodes:
    """codes: uint8 (<= 256 levels), int16 or int32, the input's shape, values in
    [0, L); levels: ascending, [L] for one tensor or [C, L] per channel along ``axis``."""

    codes: torch.Tensor
    levels: torch.Tensor
    bits: int
    axis: int | None

    def dequantize(self) -> torch.Tensor:
        idx = self.codes.long()
        if self.axis is None:
            return self.levels[idx]
        moved = idx.movedim(self.axis, 0)
        rows = moved.reshape(moved.shape[0], -1)
        values = self.levels.gather(1, rows).reshape(moved.shape)
        return values.movedim(0, self.axis)


def dequantize(codes: UniformCodes | LevelCodes) -> torch.Tensor:
    """The values that ``codes`` stand for."""
    if not isinstance(codes, (UniformCodes, LevelCodes)):
        raise InputError(f"expected UniformCodes or LevelCodes, got {type(codes).__name__}")
    return codes.dequantize()


# --- uniform ----------------------------------------------------------------


def quantize_uniform(x: torch.Tensor, bits: int = 8, *, axis: int | None = None) -> UniformCodes:
    """Symmetric absmax quantization to ``bits`` in [2, 16] bits."""
    axis = _check(x, bits, axis, low=2)
    with torch.no_grad():
        xw = x.detach().to(work_dtype(x.dtype))
        qmax = 2 ** (bits - 1) - 1
        if axis is None:
            absmax = xw.abs().amax()
        else:
            dims = [i for i in range(x.dim()) if i != axis]
            absmax = xw.abs().amax(dim=dims, keepdim=True) if dims else xw.abs()
        # An all-zero channel gets scale 1: its codes are 0 and decode to 0.
        scale = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
        codes = torch.round(xw / scale).clamp(-qmax, qmax)
        dtype = torch.int8 if bits <= 8 else torch.int16
        return UniformCodes(codes.to(dtype), scale, bits, axis)


def fake_quantize_uniform(
    x: torch.Tensor, bits: int = 8, *, axis: int | None = None
) -> torch.Tensor:
    """Straight-through uniform quantization: values of `quantize_uniform`, gradient of ``x``."""
    q = quantize_uniform(x, bits, axis=axis).dequantize().to(x.dtype)
    return x - x.detach() + q


# --- k-means (non-uniform) -----------------------------------------------------


def fit_levels(
    x: torch.Tensor, bits: int = 4, *, axis: int | None = None, iters: int = 30, seed: int = 0
) -> torch.Tensor:
    """Ascending k-means levels of the values of ``x``: [L] or, per channel, [C, L].

    L = 2^bits, fewer for a tensor with fewer distinct values; channels with
    fewer distinct values repeat their top level (a repeat is never chosen).
    """
    axis = _check(x, bits, axis, low=1)
    with torch.no_grad():
        xw = x.detach().to(work_dtype(x.dtype))
        if axis is None:
            return _fit_row(xw.reshape(-1), bits, iters, seed)
        rows = xw.movedim(axis, 0).reshape(x.shape[axis], -1)
        fitted = [_fit_row(r, bits, iters, seed) for r in rows]
        width = max(len(f) for f in fitted)
        return torch.stack([torch.cat([f, f[-1:].expand(width - len(f))]) for f in fitted])


def _fit_row(values: torch.Tensor, bits: int, iters: int, seed: int) -> torch.Tensor:
    k = min(2**bits, int(torch.unique(values).numel()))
    result = kmeans(values[:, None], k, iters, seed=seed)
    return torch.sort(result.centroids[:, 0]).values


def quantize_levels(
    x: torch.Tensor, levels: torch.Tensor, *, axis: int | None = None
) -> LevelCodes:
    """Codes of the nearest level (ties: the lower level) for every value of ``x``.

    ``levels``: [L] for ``axis=None``, [C, L] per channel (C = x.shape[axis]).
    """
    axis = _check(x, 1, axis, low=1)
    expected = 1 if axis is None else 2
    if not isinstance(levels, torch.Tensor) or levels.dim() != expected or levels.shape[-1] < 1:
        raise InputError(f"levels must be a tensor of rank {expected} with >= 1 level")
    if axis is not None and levels.shape[0] != x.shape[axis]:
        raise InputError(f"levels has {levels.shape[0]} rows but x has {x.shape[axis]} channels")
    if levels.device != x.device:
        raise InputError(f"levels are on {levels.device} but x is on {x.device}")
    check_finite(levels, "levels")
    with torch.no_grad():
        lv = levels.detach()
        if axis is None:
            idx = assign_1d(x.detach().reshape(1, -1), sorted_levels(lv[None]))
            idx = idx.reshape(x.shape)
        else:
            moved = x.detach().movedim(axis, 0)
            idx = assign_1d(moved.reshape(moved.shape[0], -1), sorted_levels(lv))
            idx = idx.reshape(moved.shape).movedim(0, axis)
        count = lv.shape[-1]
        dtype = torch.uint8 if count <= 256 else torch.int16 if count <= 32768 else torch.int32
        bits = max(1, (count - 1).bit_length())
        return LevelCodes(idx.to(dtype), lv.to(work_dtype(lv.dtype)), bits, axis)


def quantize_kmeans(
    x: torch.Tensor, bits: int = 4, *, axis: int | None = None, iters: int = 30, seed: int = 0
) -> LevelCodes:
    """k-means (non-uniform) scalar quantization with at most 2^bits levels."""
    levels = fit_levels(x, bits, axis=axis, iters=iters, seed=seed)
    return quantize_levels(x, levels, axis=axis)


def fake_quantize_levels(
    x: torch.Tensor, levels: torch.Tensor, *, axis: int | None = None
) -> torch.Tensor:
    """Straight-through quantization to fixed ``levels`` (fit them once with `fit_levels`)."""
    q = quantize_levels(x, levels, axis=axis).dequantize().to(x.dtype)
    return x - x.detach() + q


def _check(x: object, bits: object, axis: object, *, low: int) -> int | None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.numel() == 0:
        raise InputError("x must be a non-empty floating tensor")
    if isinstance(bits, bool) or not isinstance(bits, int) or not low <= bits <= 16:
        raise InputError(f"bits must be an int in [{low}, 16], got {bits!r}")
    check_finite(x, "x")
    if axis is None:
        return None
    if isinstance(axis, bool) or not isinstance(axis, int) or not -x.dim() <= axis < x.dim():
        raise InputError(f"axis must be None or an int in [{-x.dim()}, {x.dim()}), got {axis!r}")
    return axis % x.dim()
