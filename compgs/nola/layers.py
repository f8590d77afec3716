"""Adapter layers: NOLA (seeded random-basis factors) and plain LoRA, for linear and conv layers.

Both re-parameterise a weight update dW = (c / r) A B, A: m x r, B: r x n, on the
matrix view of a frozen layer's weight (`compgs.nola.views`):

* NOLA (Koohpayegani et al., ICLR 2024): A = sum_i alpha_i A_i, B = sum_j beta_j B_j
  with frozen pseudo-random A_i, B_j regenerated from a seed; only alpha (k values)
  and beta (l values) are trained, whatever the layer's shape or the rank.
* LoRA (Hu et al., ICLR 2022): A and B themselves are trained, (m + n) r values.

As in LoRA, one factor starts at zero (alpha, or LoRA's A) so the adapted model
starts out equal to the base model. A merged adapter has its dW added to the
base weight and costs nothing at inference.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from compgs.errors import InputError
from compgs.nola import generator
from compgs.nola.views import MatrixView, matrix_view

# Called on every coefficient tensor before use (quantization-aware training):
# (adapter, coefficient name, tensor) -> tensor of the same shape.
CoefficientHook = Callable[["Adapter", str, torch.Tensor], torch.Tensor]


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{name} must be an int >= {low}, got {value!r}")
    return value


class Adapter(nn.Module):
    """A frozen base layer plus a low-rank update (subclasses say how A and B are made).

    Attributes:
        base: the wrapped layer (its parameters are frozen by `apply_nola`).
        view: how the base weight is seen as an m x n matrix.
        rank, scale: r and c / r.
        name: the layer's module path in the model (seeds per-layer streams).
        hook: optional `CoefficientHook` (set by quantization-aware training).
    """

    method = "adapter"

    def __init__(self, base: nn.Module, rank: int, *, c: float, name: str, conv_layout: str):
        super().__init__()
        self.view: MatrixView = matrix_view(base, name, conv_layout)
        _check_int("rank", rank, 1)
        if rank > min(self.view.rows, self.view.cols):
            raise InputError(
                f"rank {rank} is larger than layer '{name}' allows: its weight is a "
                f"{self.view.rows} x {self.view.cols} matrix (rank <= {min(self.view.rows, self.view.cols)})"
            )
        if not isinstance(c, (int, float)) or isinstance(c, bool) or not c > 0:
            raise InputError(f"c (LoRA's alpha) must be a positive number, got {c!r}")
        self.base = base
        self.rank, self.c, self.scale, self.name = rank, float(c), float(c) / rank, name
        self.merged = False
        self.hook: CoefficientHook | None = None
        self._merge_versions: tuple[int, ...] = ()

    # --- what subclasses provide -------------------------------------------------

    def coefficients(self) -> dict[str, nn.Parameter]:
        """The trained tensors, by name, in a fixed order."""
        raise NotImplementedError

    def _factors(self, coef: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def config(self) -> dict:
        """What a checkpoint needs to rebuild this adapter around the same base layer."""
        return {"method": self.method, "rank": self.rank, "c": self.c, "layout": self.view.layout}

    # --- the update ----------------------------------------------------------------

    @property
    def num_trained(self) -> int:
        return sum(p.numel() for p in self.coefficients().values())

    def effective_coefficients(self) -> dict[str, torch.Tensor]:
        """The coefficients the forward pass uses (after the QAT hook, if any)."""
        coef = dict(self.coefficients())
        if self.hook is not None:
            coef = {k: self.hook(self, k, v) for k, v in coef.items()}
        return coef

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(A [m, r], B [r, n]) as the forward pass uses them."""
        return self._factors(self.effective_coefficients())

    def delta_matrix(self) -> torch.Tensor:
        """dW = (c / r) A B as an m x n matrix."""
        a, b = self.factors()
        return self.scale * (a @ b)

    def delta_weight(self) -> torch.Tensor:
        """dW in the layout of the base weight."""
        return self.view.from_matrix(self.delta_matrix())

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.merged:
            return self.base(x, *args, **kwargs)
        if self.view.kind == "conv2d":
            # dW of a reshaped conv weight is not a low-rank conv: add it to the weight
            # and run the base layer's own forward (keeps e.g. "same" padding subclasses).
            weight = self.base.weight + self.delta_weight().to(self.base.weight.dtype)
            return torch.func.functional_call(self.base, {"weight": weight}, (x, *args), kwargs)
        a, b = self.factors()
        y = self.base(x, *args, **kwargs)
        return y + self.scale * ((x @ b.t().to(x.dtype)) @ a.t().to(x.dtype))

    # --- merge ---------------------------------------------------------------------

    @torch.no_grad()
    def merge(self) -> None:
        """Add dW to the base weight; the forward pass is then the base layer alone."""
        if self.merged:
            raise InputError(f"adapter '{self.name}' is already merged")
        weight = self.base.weight
        weight.add_(self.delta_weight().to(weight.dtype))
        self.merged = True
        self._merge_versions = self._versions()

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract dW again (exact up to float rounding of the add and subtract)."""
        if not self.merged:
            raise InputError(f"adapter '{self.name}' is not merged")
        if self._versions() != self._merge_versions:
            raise InputError(
                f"coefficients of '{self.name}' changed while merged: the merged dW is unknown"
            )
        weight = self.base.weight
        weight.sub_(self.delta_weight().to(weight.dtype))
        self.merged = False

    def _versions(self) -> tuple[int, ...]:
        return tuple(p._version for p in self.coefficients().values())

    def extra_repr(self) -> str:
        v = self.view
        return (
            f"name={self.name!r}, matrix={v.rows}x{v.cols} ({v.kind}, {v.layout}), "
            f"rank={self.rank}, scale={self.scale:g}, trained={self.num_trained}, merged={self.merged}"
        )


class NOLAAdapter(Adapter):
    """NOLA on any supported layer; use `NOLALinear` / `NOLAConv2d` or `apply_nola`.

    Args:
        base: nn.Linear, transformers' Conv1D (GPT-2) or nn.Conv2d (any subclass).
        rank, k, l: r, the number of A_i and of B_j.
        seed: seed of every random basis (and of beta's initial values).
        c: scale numerator (LoRA's alpha): dW = (c / r) A B.
        name: the layer's path in the model; per-layer bases depend on it.
        shared_basis: bases depend only on (seed, matrix shape, rank), so layers of
            the same shape share them (``basis_cache`` lets them share memory too).
        conv_layout: "square" (most nearly square reshape) or "out_in" (o x i kh kw).
        cache_basis: keep the bases in memory (fast); False regenerates them in
            chunks at every forward and backward pass (memory ~ one chunk, slower).
    """

    method = "nola"

    def __init__(
        self,
        base: nn.Module,
        rank: int,
        k: int,
        l: int,
        *,
        seed: int = 0,
        c: float = 1.0,
        name: str = "layer",
        shared_basis: bool = False,
        conv_layout: str = "square",
        basis_cache: dict | None = None,
        backend: str = "torch",
        cache_basis: bool = True,
    ):
        super().__init__(base, rank, c=c, name=name, conv_layout=conv_layout)
        _check_int("k", k, 1)
        _check_int("l", l, 1)
        self.k, self.l, self.seed, self.shared_basis = k, l, seed, bool(shared_basis)
        m, n, device = self.view.rows, self.view.cols, base.weight.device
        stream_a = f"shared/A/{m}x{rank}" if shared_basis else f"{name}/A"
        stream_b = f"shared/B/{rank}x{n}" if shared_basis else f"{name}/B"

        def make(stream: str, count: int, rows: int, cols: int) -> torch.Tensor:
            key = (seed, stream, count, rows, cols, str(device))
            if basis_cache is not None and key in basis_cache:
                return basis_cache[key]
            made = generator.basis(seed, stream, count, rows, cols, device=device, backend=backend)
            if basis_cache is not None:
                basis_cache[key] = made
            return made

        self.streams = (stream_a, stream_b)
        self.cache_basis = bool(cache_basis)
        if self.cache_basis:
            # Buffers, not parameters, and not persistent: bases never enter a state dict.
            self.register_buffer("basis_a", make(stream_a, k, m, rank), persistent=False)
            self.register_buffer("basis_b", make(stream_b, l, rank, n), persistent=False)
        self.alpha = nn.Parameter(torch.zeros(k, device=device))
        init = generator.uniform(seed, f"{name}/beta0", l, device=device, backend=backend)
        self.beta = nn.Parameter(init * (3.0 / l) ** 0.5)  # ||beta|| ~ 1: B ~ one unit basis

    def coefficients(self) -> dict[str, nn.Parameter]:
        return {"alpha": self.alpha, "beta": self.beta}

    def _factors(self, coef: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.cache_basis:  # regenerate chunk by chunk, forward and backward
            m, n, r = self.view.rows, self.view.cols, self.rank
            a = generator.mix_basis(coef["alpha"], self.seed, self.streams[0], m, r)
            b = generator.mix_basis(coef["beta"], self.seed, self.streams[1], r, n)
            return a, b
        k, m, r = self.basis_a.shape
        l, _, n = self.basis_b.shape
        a = (coef["alpha"].to(self.basis_a.dtype) @ self.basis_a.reshape(k, m * r)).reshape(m, r)
        b = (coef["beta"].to(self.basis_b.dtype) @ self.basis_b.reshape(l, r * n)).reshape(r, n)
        return a, b

    def config(self) -> dict:
        return {**super().config(), "k": self.k, "l": self.l, "shared_basis": self.shared_basis}


class NOLALinear(NOLAAdapter):
    """NOLA around an nn.Linear (or transformers' Conv1D, which stores the weight in x out)."""

    def __init__(self, base: nn.Module, rank: int, k: int, l: int, **kwargs):
        if isinstance(base, nn.Conv2d):
            raise InputError("NOLALinear wraps linear layers; use NOLAConv2d for nn.Conv2d")
        super().__init__(base, rank, k, l, **kwargs)


class NOLAConv2d(NOLAAdapter):
    """NOLA around an nn.Conv2d, whose weight is viewed as its most nearly square matrix."""

    def __init__(self, base: nn.Module, rank: int, k: int, l: int, **kwargs):
        if not isinstance(base, nn.Conv2d):
            raise InputError(f"NOLAConv2d wraps nn.Conv2d, got {type(base).__name__}")
        super().__init__(base, rank, k, l, **kwargs)


class LoRAAdapter(Adapter):
    """Plain LoRA (the baseline): A [m, r] starts at zero, B [r, n] uniform (+-1/sqrt(n))."""

    method = "lora"

    def __init__(
        self,
        base: nn.Module,
        rank: int,
        *,
        seed: int = 0,
        c: float = 1.0,
        name: str = "layer",
        conv_layout: str = "square",
    ):
        super().__init__(base, rank, c=c, name=name, conv_layout=conv_layout)
        m, n, device = self.view.rows, self.view.cols, base.weight.device
        self.seed = seed
        self.lora_a = nn.Parameter(torch.zeros(m, rank, device=device))
        init = generator.uniform(seed, f"{name}/lora-B", rank * n, device=device)
        self.lora_b = nn.Parameter((init * n**-0.5).reshape(rank, n))

    def coefficients(self) -> dict[str, nn.Parameter]:
        return {"A": self.lora_a, "B": self.lora_b}

    def _factors(self, coef: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return coef["A"], coef["B"]
