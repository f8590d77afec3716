"""`Codebook`: K centroids for one group of N vectors, with quantization-aware training.

The forward pass replaces every vector by its centroid; the gradient is copied
straight through to the full-precision vector (the straight-through estimator),
which is what the optimizer keeps updating. See `compgs.vq.schedule` for when
a trainer fits, re-assigns and updates.

Several attribute groups can share one codebook: `join_groups` concatenates
them along the vector dimension ("concat", e.g. DC + SH as one 48-d vector) or
stacks them as more vectors of the same dimension ("stack"), and the returned
`GroupLayout` splits the quantized tensor back.

A codebook learnt elsewhere (e.g. on another scene) can be frozen: its
centroids never change, vectors are only assigned to them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from compgs.errors import InputError
from compgs.vq._checks import check_finite, check_weights
from compgs.vq.kmeans import Init, kmeans
from compgs.vq.members import Membership, centroid_means
from compgs.vq.nearest import Backend, assign
from compgs.vq.schedule import QATAction


class Codebook(nn.Module):
    """K centroids [K, d] and the code of each of N vectors [N].

    Args:
        num_codes: K >= 1.
        dim: d, the vector dimension.
        iters: Lloyd iterations of `fit`.
        lloyd_iters: Lloyd iterations of each re-assignment (`QATAction.ASSIGN`).
        init, seed, backend: passed to `compgs.vq.kmeans`.
        dtype, device: of the centroids (float32 default; inputs of other float
            dtypes are converted for fitting and assignment).

    Buffers (in the state dict): ``centroids`` [K, d], ``assignments`` [N]
    int64 (empty until fitted or assigned), plus extra state {frozen, ready}.
    """

    centroids: torch.Tensor
    assignments: torch.Tensor

    def __init__(
        self,
        num_codes: int,
        dim: int,
        *,
        iters: int = 10,
        lloyd_iters: int = 1,
        init: Init = "kmeans++",
        seed: int = 0,
        backend: Backend = "auto",
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        for name, value, low in (("num_codes", num_codes, 1), ("dim", dim, 1), ("iters", iters, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"Codebook {name} must be an int >= {low}, got {value!r}")
        if isinstance(lloyd_iters, bool) or not isinstance(lloyd_iters, int) or lloyd_iters < 1:
            raise InputError(f"Codebook lloyd_iters must be an int >= 1, got {lloyd_iters!r}")
        if not dtype.is_floating_point:
            raise InputError(f"Codebook dtype must be floating, got {dtype}")
        self.iters, self.lloyd_iters, self.init, self.seed = iters, lloyd_iters, init, seed
        self.backend = backend
        self.register_buffer("centroids", torch.zeros(num_codes, dim, dtype=dtype, device=device))
        self.register_buffer("assignments", torch.zeros(0, dtype=torch.long, device=device))
        self._frozen = False
        self._ready = False  # centroids hold a fitted or loaded codebook
        self._members: Membership | None = None  # prepared `assignments` for `update`

    @classmethod
    def from_centroids(cls, centroids: torch.Tensor, *, frozen: bool = True, **kwargs) -> Codebook:
        """A codebook holding ``centroids`` [K, d] (e.g. learnt on another scene), frozen by default."""
        if not isinstance(centroids, torch.Tensor) or centroids.dim() != 2:
            raise InputError("centroids must be a [K, d] tensor")
        check_finite(centroids, "centroids")
        book = cls(*centroids.shape, dtype=centroids.dtype, device=centroids.device, **kwargs)
        book.centroids.copy_(centroids.detach())
        book._ready = True
        book._frozen = frozen
        return book

    # --- properties ---------------------------------------------------------

    @property
    def num_codes(self) -> int:
        return self.centroids.shape[0]

    @property
    def dim(self) -> int:
        return self.centroids.shape[1]

    @property
    def num_bits(self) -> int:
        """Bits of one index: ceil(log2 K) (0 for K = 1)."""
        return (self.num_codes - 1).bit_length()

    @property
    def frozen(self) -> bool:
        return self._frozen

    @property
    def ready(self) -> bool:
        return self._ready

    def freeze(self) -> Codebook:
        """Fix the centroids: `fit`/`update` refuse, `assign` and `step` only assign."""
        self._frozen = True
        return self

    def unfreeze(self) -> Codebook:
        self._frozen = False
        return self

    # --- the verbs ----------------------------------------------------------

    def fit(self, x: torch.Tensor, *, weights: torch.Tensor | None = None) -> torch.Tensor:
        """K-means of ``x`` [N, d] from scratch; returns the assignments [N]."""
        self._refuse_if_frozen("fit")
        xw = self._prepare(x)
        result = kmeans(
            xw, self.num_codes, self.iters, init=self.init, seed=self.seed,
            weights=weights, backend=self.backend,
        )  # fmt: skip
        self._store(result.centroids, result.assignments)
        return self.assignments

    def assign(self, x: torch.Tensor) -> torch.Tensor:
        """Assign every vector of ``x`` [N, d] to its nearest centroid; returns [N]."""
        self._require_ready("assign")
        a = assign(self._prepare(x), self.centroids, backend=self.backend)
        self._store(None, a)
        return a

    def update(self, x: torch.Tensor, *, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Move every centroid to the mean of its members in ``x`` [N, d] (cheap: one scatter-add).

        Codes without members keep their centroid. Returns the centroids [K, d].
        """
        self._refuse_if_frozen("update")
        xw = self._prepare(x)
        self._require_assignments(xw.shape[0])
        check_finite(xw, "x")
        w = check_weights(weights, xw)
        with torch.no_grad():
            if w is None and self._members is None:
                self._members = Membership.build(
                    self.assignments, self.num_codes, xw.dtype, self.dim
                )
            means, _ = centroid_means(
                xw, self.assignments, self.num_codes, w, self.centroids, self._members
            )
        self.centroids.copy_(means)
        return self.centroids

    def lloyd(
        self, x: torch.Tensor, iters: int | None = None, *, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``iters`` (default ``lloyd_iters``) Lloyd iterations from the current centroids.

        Assign, update, re-seed empty codes, and a final assignment; returns [N].
        """
        self._refuse_if_frozen("lloyd")
        self._require_ready("lloyd")
        iters = self.lloyd_iters if iters is None else iters
        result = kmeans(
            self._prepare(x), self.num_codes, iters, init=self.centroids,
            weights=weights, backend=self.backend,
        )  # fmt: skip
        self._store(result.centroids, result.assignments)
        return self.assignments

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Straight-through quantization of ``x`` [N, d]: the values of centroids[assignments],
        the gradient of x (d out / d x = identity). Same dtype as ``x``."""
        self._check_input(x)
        self._require_assignments(x.shape[0])
        q = self.centroids[self.assignments].to(x.dtype)
        return x - x.detach() + q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.quantize(x)

    def decode(self, indices: torch.Tensor | None = None) -> torch.Tensor:
        """centroids[indices] ([M, d]); the stored assignments when ``indices`` is None."""
        self._require_ready("decode")
        return self.centroids[self.assignments if indices is None else indices]

    def step(
        self, x: torch.Tensor, action: QATAction, *, weights: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Do what a `QATSchedule` says for this step, then return the quantized ``x``.

        OFF returns ``x`` untouched. A codebook that is not fitted yet (e.g. a run
        resumed without its codebooks) fits whatever the action; a frozen one only
        assigns (FIT, ASSIGN) or keeps everything (UPDATE).
        """
        if action is QATAction.OFF:
            return x
        if not isinstance(action, QATAction):
            raise InputError(f"action must be a QATAction, got {action!r}")
        if self._frozen:
            self._require_ready("step")
            if action is not QATAction.UPDATE or self.assignments.shape[0] != x.shape[0]:
                self.assign(x)
        elif not self._ready or action is QATAction.FIT:
            self.fit(x, weights=weights)
        elif action is QATAction.ASSIGN:
            self.lloyd(x, weights=weights)
        else:
            self.update(x, weights=weights)
        return self.quantize(x)

    def select(self, index: torch.Tensor) -> Codebook:
        """Keep the assignments of the vectors ``index`` selects (bool mask [N] or int64 indices),
        e.g. after pruning the vectors themselves."""
        n = self.assignments.shape[0]
        if not isinstance(index, torch.Tensor) or (
            index.dtype == torch.bool and index.shape != (n,)
        ):
            raise InputError(f"select needs a bool mask of shape [{n}] or an index tensor")
        self.assignments = self.assignments[index]
        self._members = None
        return self

    # --- state dict and device moves -----------------------------------------

    def _apply(self, fn, *args, **kwargs):
        self._members = None  # prepared on the old device / dtype
        return super()._apply(fn, *args, **kwargs)

    def get_extra_state(self) -> dict[str, Any]:
        return {"frozen": self._frozen, "ready": self._ready}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._frozen = bool(state["frozen"])
        self._ready = bool(state["ready"])
        self._members = None

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # K and N are data, not architecture: take the shapes of the incoming buffers.
        for name in ("centroids", "assignments"):
            incoming = state_dict.get(prefix + name)
            if isinstance(incoming, torch.Tensor):
                current = getattr(self, name)
                self._buffers[name] = torch.empty(
                    incoming.shape, dtype=current.dtype, device=current.device
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"num_codes={self.num_codes}, dim={self.dim}, vectors={self.assignments.shape[0]}, "
            f"frozen={self._frozen}, ready={self._ready}"
        )

    # --- helpers ------------------------------------------------------------

    def _check_input(self, x: object) -> None:
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.dim:
            shape = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"codebook expects vectors [N, {self.dim}], got {shape}")
        if not x.is_floating_point():
            raise InputError(f"codebook expects floating vectors, got {x.dtype}")
        if x.device != self.centroids.device:
            raise InputError(
                f"vectors are on {x.device} but the codebook is on {self.centroids.device}"
            )

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        """x detached in the centroids' dtype, validated."""
        self._check_input(x)
        return x.detach().to(self.centroids.dtype)

    def _store(self, centroids: torch.Tensor | None, assignments: torch.Tensor) -> None:
        if centroids is not None:
            self.centroids.copy_(centroids)
        self.assignments = assignments.to(self.centroids.device)
        self._ready = True
        self._members = None

    def _refuse_if_frozen(self, verb: str) -> None:
        if self._frozen:
            raise InputError(f"codebook is frozen: cannot {verb}; use assign() or unfreeze()")

    def _require_ready(self, verb: str) -> None:
        if not self._ready:
            raise InputError(f"codebook is not fitted: fit() it or load centroids before {verb}()")

    def _require_assignments(self, n: int) -> None:
        if not self._ready or self.assignments.shape[0] != n:
            raise InputError(
                f"codebook holds assignments for {self.assignments.shape[0]} vectors, got {n}; "
                "call fit(), assign() or select() first"
            )


# --- several groups, one codebook ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class GroupLayout:
    """How `join_groups` laid several tensors out as one [N, d] tensor."""

    mode: Literal["concat", "stack"]
    shapes: tuple[torch.Size, ...]

    def split(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Inverse of `join_groups` (differentiable: views of ``x``)."""
        if self.mode == "concat":
            widths = [math.prod(s[1:]) for s in self.shapes]
            parts = torch.split(x, widths, dim=1)
        else:
            parts = torch.split(x, [s[0] for s in self.shapes], dim=0)
        return [p.reshape(s) for p, s in zip(parts, self.shapes)]


def join_groups(
    groups: Sequence[torch.Tensor], mode: Literal["concat", "stack"] = "concat"
) -> tuple[torch.Tensor, GroupLayout]:
    """One [N, d] tensor from several groups, for one shared codebook.

    "concat": every group is [N, ...] with the same N; each vector is the
    concatenation of the flattened rows (d = sum of widths), e.g. DC [N, 1, 3]
    and SH [N, 15, 3] give [N, 48].
    "stack": every group is [N_g, ...] with the same row width; the rows are
    stacked (N = sum of N_g), e.g. two groups of 3-vectors sharing one palette.
    """
    if mode not in ("concat", "stack"):
        raise InputError(f"mode must be 'concat' or 'stack', got {mode!r}")
    if not groups or not all(isinstance(g, torch.Tensor) and g.dim() >= 1 for g in groups):
        raise InputError("join_groups needs a non-empty sequence of tensors")
    flat = [g.reshape(g.shape[0], -1) for g in groups]
    shapes = tuple(g.shape for g in groups)
    if mode == "concat":
        if len({f.shape[0] for f in flat}) != 1:
            raise InputError(f"concat needs the same number of rows, got {[s[0] for s in shapes]}")
        joined = torch.cat(flat, dim=1)
    else:
        if len({f.shape[1] for f in flat}) != 1:
            raise InputError(f"stack needs the same row width, got {[f.shape[1] for f in flat]}")
        joined = torch.cat(flat, dim=0)
    return joined, GroupLayout(mode, shapes)
