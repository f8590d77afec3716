"""Input validation shared by the codebook engine: one clear `InputError` per mistake."""

from __future__ import annotations

import torch

from compgs.errors import InputError


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype arithmetic runs in: float64 stays float64, every narrower float becomes float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_vectors(x: object, name: str = "x", *, finite: bool = True) -> torch.Tensor:
    """``x`` must be a (finite) floating tensor of shape [N, d] with N >= 1 and d >= 1."""
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor of shape [N, d], got {type(x).__name__}")
    if x.dim() != 2:
        raise InputError(f"{name} must have shape [N, d], got {list(x.shape)}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a floating tensor, got {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise InputError(
            f"{name} must hold at least one vector of dimension >= 1, got {list(x.shape)}"
        )
    if finite:
        check_finite(x, name)
    return x


def check_finite(x: torch.Tensor, name: str) -> None:
    # A finite sum proves every entry finite (NaN and Inf propagate) in one cheap
    # reduction; only a non-finite sum (or an overflow) pays for the elementwise test.
    if x.is_floating_point() and bool(torch.isfinite(x.sum(dtype=work_dtype(x.dtype)))):
        return
    if not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(dim=-1).sum()) if x.dim() > 1 else -1
        where = f" ({bad} vectors)" if bad > 0 else ""
        raise InputError(f"{name} holds NaN or Inf values{where}")


def check_pair(x: torch.Tensor, centroids: torch.Tensor) -> None:
    """Vectors and centroids must agree on dimension, dtype and device."""
    if centroids.shape[1] != x.shape[1]:
        raise InputError(
            f"centroids have dimension {centroids.shape[1]} but vectors have {x.shape[1]}"
        )
    if centroids.dtype != x.dtype:
        raise InputError(f"centroids are {centroids.dtype} but vectors are {x.dtype}")
    if centroids.device != x.device:
        raise InputError(f"centroids are on {centroids.device} but vectors are on {x.device}")


def check_num_codes(k: object, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise InputError(f"number of codes must be an int, got {k!r}")
    if k < 1:
        raise InputError(f"number of codes must be >= 1, got {k}")
    if k > n:
        raise InputError(f"number of codes K={k} exceeds the number of vectors N={n}")
    return k


def check_weights(weights: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """Optional per-vector weights: finite, >= 0, shape [N], same device, positive total."""
    if weights is None:
        return None
    if not isinstance(weights, torch.Tensor) or weights.shape != (x.shape[0],):
        shape = list(weights.shape) if isinstance(weights, torch.Tensor) else type(weights).__name__
        raise InputError(f"weights must have shape [{x.shape[0]}], got {shape}")
    if weights.device != x.device:
        raise InputError(f"weights are on {weights.device} but vectors are on {x.device}")
    w = weights.to(work_dtype(x.dtype))
    check_finite(w, "weights")
    if bool((w < 0).any()):
        raise InputError("weights must be >= 0")
    if not bool((w > 0).any()):
        raise InputError("weights are all zero")
    return w


def check_assignments(assignments: object, n: int, k: int, device: torch.device) -> torch.Tensor:
    if not isinstance(assignments, torch.Tensor) or assignments.shape != (n,):
        shape = (
            list(assignments.shape)
            if isinstance(assignments, torch.Tensor)
            else type(assignments).__name__
        )
        raise InputError(f"assignments must have shape [{n}], got {shape}")
    if assignments.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise InputError(f"assignments must be an integer tensor, got {assignments.dtype}")
    if assignments.device != device:
        raise InputError(f"assignments are on {assignments.device} but vectors are on {device}")
    lo, hi = (int(v) for v in torch.aminmax(assignments))
    if lo < 0 or hi >= k:
        raise InputError(f"assignments must lie in [0, {k}), got values in [{lo}, {hi}]")
    return assignments.long()
