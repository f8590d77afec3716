"""The m x n matrix a low-rank update lives on, for each kind of layer.

* ``linear``: nn.Linear, weight [out, in]: the matrix is the weight itself;
* ``conv1d``: transformers' Conv1D (GPT-2), weight [in, out]: its transpose;
* ``conv2d``: nn.Conv2d, weight [o, i / groups, kh, kw] with N entries: layout
  "square" reshapes the row-major weight to p x q, p q = N, p <= q, p the largest
  divisor of N not above sqrt(N) (the most nearly square matrix, which maximises
  the rank a factorisation can have); layout "out_in" uses o x (i kh kw) as PEFT's
  LoRA does.

Detecting Conv1D by its attributes keeps transformers an optional dependency.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from compgs.errors import InputError

CONV_LAYOUTS = ("square", "out_in")


@dataclasses.dataclass(frozen=True)
class MatrixView:
    kind: str  # "linear", "conv1d" or "conv2d"
    layout: str  # "natural" for linear kinds, a CONV_LAYOUTS entry for conv2d
    weight_shape: tuple[int, ...]
    rows: int
    cols: int

    def to_matrix(self, weight: torch.Tensor) -> torch.Tensor:
        """The m x n matrix of a tensor in the weight's layout (a view where possible)."""
        if tuple(weight.shape) != self.weight_shape:
            raise InputError(
                f"expected a weight of shape {self.weight_shape}, got {tuple(weight.shape)}"
            )
        if self.kind == "conv1d":
            return weight.t()
        return weight.reshape(self.rows, self.cols)

    def from_matrix(self, matrix: torch.Tensor) -> torch.Tensor:
        """Inverse of `to_matrix`."""
        if tuple(matrix.shape) != (self.rows, self.cols):
            raise InputError(
                f"expected a {self.rows} x {self.cols} matrix, got {tuple(matrix.shape)}"
            )
        if self.kind == "conv1d":
            return matrix.t()
        return matrix.reshape(self.weight_shape)


def nearly_square(count: int) -> tuple[int, int]:
    """(p, q) with p q = count, p <= q and p as large as possible."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InputError(f"count must be an int >= 1, got {count!r}")
    p = math.isqrt(count)
    while count % p:
        p -= 1
    return p, count // p


def is_conv1d(module: nn.Module) -> bool:
    """transformers.pytorch_utils.Conv1D (y = x W + b, W [in, out]), without importing it."""
    weight = getattr(module, "weight", None)
    return (
        type(module).__name__ == "Conv1D"
        and isinstance(weight, torch.Tensor)
        and weight.dim() == 2
        and getattr(module, "nf", None) == weight.shape[1]
    )


def layer_kind(module: nn.Module) -> str | None:
    """ "linear", "conv1d", "conv2d", or None for a layer no adapter can wrap."""
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.Conv2d):
        return "conv2d"
    if is_conv1d(module):
        return "conv1d"
    return None


def matrix_view(module: nn.Module, name: str = "layer", conv_layout: str = "square") -> MatrixView:
    kind = layer_kind(module)
    if kind is None:
        raise InputError(
            f"layer '{name}' is a {type(module).__name__}: adapters wrap nn.Linear, "
            "nn.Conv2d and transformers' Conv1D"
        )
    shape = tuple(module.weight.shape)
    if kind == "linear":
        return MatrixView(kind, "natural", shape, shape[0], shape[1])
    if kind == "conv1d":
        return MatrixView(kind, "natural", shape, shape[1], shape[0])
    if conv_layout not in CONV_LAYOUTS:
        raise InputError(f"conv_layout must be one of {CONV_LAYOUTS}, got {conv_layout!r}")
    if conv_layout == "out_in":
        return MatrixView(kind, conv_layout, shape, shape[0], math.prod(shape[1:]))
    rows, cols = nearly_square(math.prod(shape))
    return MatrixView(kind, conv_layout, shape, rows, cols)
