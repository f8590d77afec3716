"""Sums and means of the members of every code: the cheap half of a Lloyd step.

`centroid_means` is one scatter-add (index_add_) over the N vectors, no one-hot
matrix. A `Membership` prepares a partition that will be averaged many times
(a codebook during quantization-aware training updates its centroids every
step but re-assigns only every t steps): on CPU, for wide vectors, it is a
sparse CSR [K, N] matrix of ones whose product with x is a multithreaded
segmented sum, about twice as fast as the (serial) CPU index_add_.
"""

from __future__ import annotations

import dataclasses
import warnings
from functools import partial

import torch

from compgs.vq._checks import work_dtype
from compgs.vq._threads import run_parallel

# Rows per independent part of a CPU scatter-add (see `scatter_sums`).
SUM_PART = 1 << 17
# The CSR matrix costs a stable sort of the assignments to build (about 0.3 s per
# million on 2 cores) and saves about half of index_add_'s time per update for
# wide vectors only; narrow ones (d = 3, 4) gain nothing.
SPARSE_MIN_DIM = 16


@dataclasses.dataclass
class Membership:
    """A fixed partition of N vectors into K codes.

    assignments [N] int64; counts [K] members per code (float); matrix: sparse
    CSR [K, N] of ones on CPU for wide vectors, None otherwise (index_add_ is
    fast on GPUs and for narrow vectors).
    """

    assignments: torch.Tensor
    counts: torch.Tensor
    matrix: torch.Tensor | None

    @classmethod
    def build(
        cls, assignments: torch.Tensor, k: int, dtype: torch.dtype, dim: int = SPARSE_MIN_DIM
    ) -> Membership:
        """Prepare ``assignments`` [N] for sums of [N, dim] tensors of ``dtype``."""
        dtype = work_dtype(dtype)
        counts = torch.bincount(assignments, minlength=k)
        matrix = None
        if assignments.device.type == "cpu" and dim >= SPARSE_MIN_DIM:
            order = torch.argsort(assignments, stable=True)
            rows = torch.zeros(k + 1, dtype=torch.long)
            rows[1:] = torch.cumsum(counts, dim=0)
            ones = torch.ones(assignments.shape[0], dtype=dtype)
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                matrix = torch.sparse_csr_tensor(
                    rows, order, ones, size=(k, assignments.shape[0]), check_invariants=False
                )
        return cls(assignments, counts.to(dtype), matrix)

    def sums(self, x: torch.Tensor) -> torch.Tensor:
        """[K, d] sum of the members of every code (x in the working dtype)."""
        if self.matrix is not None and self.matrix.dtype == x.dtype:
            return self.matrix @ x
        return scatter_sums(x, self.assignments, self.counts.shape[0])


def scatter_sums(x: torch.Tensor, a: torch.Tensor, k: int) -> torch.Tensor:
    """[K, d]: row j is the sum of the rows i of ``x`` [N, d] with a[i] = j (index_add_).

    On CPU, index_add_ runs on one thread: large inputs are cut into parts of a
    fixed size, summed on all threads, and the partial sums added in order, so
    the result does not depend on the number of threads.
    """
    n = x.shape[0]
    if x.device.type != "cpu" or n <= SUM_PART:
        return x.new_zeros(k, x.shape[1]).index_add_(0, a, x)
    parts, jobs = [], []
    for start in range(0, n, SUM_PART):
        rows = slice(start, start + SUM_PART)
        parts.append(x.new_zeros(k, x.shape[1]))
        jobs.append(partial(parts[-1].index_add_, 0, a[rows], x[rows]))
    run_parallel(jobs)
    total = parts[0]
    for part in parts[1:]:
        total += part
    return total


def centroid_means(
    x: torch.Tensor,
    a: torch.Tensor,
    k: int,
    w: torch.Tensor | None,
    previous: torch.Tensor | None,
    members: Membership | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(means [K, d] in x.dtype, total weight [K]) without input checks.

    Accumulates in float32 (float64 for float64 input). Codes with zero total
    weight take the row of ``previous`` (zeros without it). ``members``, when
    given for unweighted data, must describe the partition ``a``.
    """
    dtype = work_dtype(x.dtype)
    xw = x.to(dtype)
    if w is None and members is not None:
        sums, counts = members.sums(xw), members.counts
    elif w is None:
        sums = scatter_sums(xw, a, k)
        counts = torch.bincount(a, minlength=k).to(dtype)
    else:
        sums = scatter_sums(xw * w[:, None], a, k)
        counts = scatter_sums(w[:, None], a, k)[:, 0]
    # The K x d division in float64 rounds once, like the d = 1 path's float64 means.
    safe = counts.to(torch.float64).clamp(min=1e-300)[:, None]
    means = sums.to(torch.float64) / safe
    empty = (counts == 0)[:, None]
    fallback = previous.to(torch.float64) if previous is not None else torch.zeros_like(means)
    return torch.where(empty, fallback, means).to(x.dtype), counts
