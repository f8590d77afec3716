"""Nearest-centroid assignment: the expensive half of a Lloyd step.

The rule (``backend="torch"`` and the d = 1 path): vector i goes to the
centroid j minimising the squared distance evaluated in float64 as
sum_c (x_ic - m_jc)^2 (coordinates summed in order); exact ties go to the
lowest index. The result does not depend on the chunk size, the device or
the BLAS, which is what makes chunked == unchunked an honest statement:

1. screen in the working precision with the matmul form
   ||m_j||^2 - 2 x.m_j (row-constant ||x||^2 dropped) on data centred on the
   centroid mean, one chunk of rows at a time (memory bounded, no N x K matrix);
2. a row whose best and second-best screened distances differ by more than a
   rigorous bound on the rounding error of step 1 has a certain winner;
3. the rare remaining rows (near-ties, duplicate centroids) are re-decided in
   float64 among the candidates within the bound.

``backend="faiss"`` (CPU, optional dependency) hands the search to faiss'
fused distance + argmin kernels, which beat any unfused torch code when d is
small. Its answer is the nearest centroid up to float32 rounding: it can differ
from the rule above only between distinct centroids whose squared distances
differ by less than ~1e-6 (|x| + |c|)^2 (norms taken after centring on the
centroid mean); exact duplicates go to the lowest index, as in the rule.
Certifying every row would need faiss' two nearest, which leaves its fast
k = 1 path (4x slower at d = 4, measured), more than the whole torch path
costs.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from functools import partial
from typing import Literal

import torch

from compgs.errors import InputError
from compgs.vq._checks import check_finite, check_pair, check_vectors, work_dtype
from compgs.vq._threads import run_parallel
from compgs.vq.onedim import assign_1d, sorted_levels

log = logging.getLogger(__name__)

Backend = Literal["auto", "torch", "faiss"]

# Memory for one chunk of screened distances (rows x K x 4 bytes). A few MB keeps
# the chunk in cache while making Python overhead per chunk negligible.
CHUNK_BYTES = 8 << 20
# faiss pays off once the N x K work is large; below this torch is as fast and exact.
FAISS_MIN_WORK = 1 << 24
FAISS_MAX_DIM = 32  # faiss has fused (no N x K buffer) kernels up to this dimension
# Row minima are found block by block (see `_best_two`) when K > 2 blocks.
REDUCE_BLOCK = 128


def faiss_available() -> bool:
    return importlib.util.find_spec("faiss") is not None


def assign(
    x: torch.Tensor,
    centroids: torch.Tensor,
    *,
    chunk_size: int | None = None,
    backend: Backend = "auto",
) -> torch.Tensor:
    """Index of the nearest centroid of every vector.

    Args:
        x: [N, d] vectors (float16, bfloat16, float32 or float64; arithmetic in
            float32, or float64 for float64 input).
        centroids: [K, d], same dtype and device as ``x``.
        chunk_size: rows screened at once (default: sized to a few MB); results
            never depend on it.
        backend: "torch" (exact rule above, any device), "faiss" (CPU, needs
            faiss-cpu), or "auto": the d = 1 sorted path for d = 1, faiss for
            large CPU problems with d <= 32 when installed, torch otherwise.

    Returns:
        [N] int64 indices in [0, K).
    """
    check_vectors(x, "x", finite=False)
    check_vectors(centroids, "centroids", finite=False)
    check_pair(x, centroids)
    check_finite(x, "x")
    check_finite(centroids, "centroids")
    if chunk_size is not None and (isinstance(chunk_size, bool) or chunk_size < 1):
        raise InputError(f"chunk_size must be a positive int, got {chunk_size!r}")
    return nearest_unchecked(x, centroids, backend, chunk_size)


def nearest_unchecked(
    x: torch.Tensor, centroids: torch.Tensor, backend: Backend, chunk_size: int | None
) -> torch.Tensor:
    """`assign` without input checks, for loops that validated their input once."""
    choice = _choose_backend(x, centroids, backend)
    with torch.no_grad():
        if choice == "sorted":
            return assign_1d(x.detach().t(), sorted_levels(centroids.detach().t()))[0]
        if choice == "faiss":
            return _assign_faiss(x.detach(), centroids.detach())
        return _assign_torch(x.detach(), centroids.detach(), chunk_size)


def _choose_backend(x: torch.Tensor, centroids: torch.Tensor, backend: str) -> str:
    if backend not in ("auto", "torch", "faiss"):
        raise InputError(f"backend must be 'auto', 'torch' or 'faiss', got {backend!r}")
    n, d = x.shape
    if backend == "faiss":
        if x.device.type != "cpu":
            raise InputError(f"the faiss backend runs on CPU tensors, got {x.device}")
        if not faiss_available():
            raise InputError("backend='faiss' needs faiss-cpu (pip install faiss-cpu)")
        return "faiss"
    if backend == "torch":
        return "torch"
    if d == 1 and x.dtype != torch.float64:
        return "sorted"
    big = n * centroids.shape[0] >= FAISS_MIN_WORK
    if x.device.type == "cpu" and d <= FAISS_MAX_DIM and big and faiss_available():
        return "faiss"
    return "torch"


def chunk_rows(k: int, budget: int = CHUNK_BYTES) -> int:
    """Rows per chunk so that a [rows, k] float32 block fits ``budget`` bytes."""
    return max(1, budget // (4 * k))


def unit_roundoff(dtype: torch.dtype, device: torch.device) -> float:
    """Unit roundoff of a matmul in ``dtype`` under torch's current precision settings."""
    if dtype == torch.float64:
        return 2.0**-53
    if device.type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return 2.0**-11
    precision = torch.get_float32_matmul_precision()
    return {"highest": 2.0**-24, "high": 2.0**-11}.get(precision, 2.0**-8)


def _assign_torch(x: torch.Tensor, centroids: torch.Tensor, chunk_size: int | None) -> torch.Tensor:
    n, d = x.shape
    k = centroids.shape[0]
    dtype = work_dtype(x.dtype)
    c = centroids.to(dtype)
    # Centring on the centroid mean shrinks the norms that the rounding bound scales with.
    mean = c.to(torch.float64).mean(dim=0).to(dtype)
    c = c - mean
    c_sq = (c * c).sum(dim=1)
    # One matmul gives |c|^2 - 2 x.c: x gets a column of ones, the centroids a row of
    # squared norms (a bias added by addmm would cost one more pass over the chunk).
    c_aug = torch.cat([-2.0 * c.t(), c_sq[None]], dim=0)  # [d + 1, K]
    block = REDUCE_BLOCK if k > 2 * REDUCE_BLOCK else None
    if block is not None and k % block:
        # Pad to whole blocks with centroids at infinite distance (they never win).
        pad = c_aug.new_zeros(d + 1, block - k % block)
        pad[d] = float("inf")
        c_aug = torch.cat([c_aug, pad], dim=1)
    screen = _Screen(
        x, centroids, mean, c_aug, block, float(c_sq.max().sqrt()),
        # |computed - exact| <= (d + 6) u (|x| + |c|max)^2 for every screened entry
        # (matmul, squared norms, centring); two entries are compared, and 2x spare.
        4.0 * (d + 8) * unit_roundoff(dtype, x.device),
    )  # fmt: skip
    rows = min(n, chunk_size or chunk_rows(k))
    starts = list(range(0, n, rows))
    out = torch.empty(n, dtype=torch.long, device=x.device)
    if x.device.type != "cpu":
        screen.run(starts, rows, out)
        return out
    # On CPU every thread takes its own chunks (see `compgs.vq._threads`).
    workers = max(1, min(torch.get_num_threads(), len(starts)))
    run_parallel([partial(screen.run, starts[i::workers], rows, out) for i in range(workers)])
    return out


@dataclasses.dataclass
class _Screen:
    """What every chunk of `_assign_torch` needs (see the module docstring)."""

    x: torch.Tensor
    centroids: torch.Tensor
    mean: torch.Tensor  # [d] centroid mean, in the working dtype
    c_aug: torch.Tensor  # [d + 1, K'] -2 (c - mean)^T over |c - mean|^2, padded to blocks
    block: int | None
    c_max: float  # largest |c - mean|
    coef: float  # rounding bound = coef (|x - mean| + c_max)^2

    def run(self, starts: list[int], rows: int, out: torch.Tensor) -> None:
        """Assign the chunks of ``rows`` vectors beginning at ``starts`` into ``out``."""
        n, d = self.x.shape
        k = self.centroids.shape[0]
        # Buffers reused by every chunk: fresh multi-MB allocations would page-fault.
        x_aug = self.c_aug.new_ones(rows, d + 1)
        dist_buf = self.c_aug.new_empty(rows, self.c_aug.shape[1])
        for start in starts:
            m = min(rows, n - start)
            xb = torch.sub(self.x[start : start + m], self.mean, out=x_aug[:m, :d])
            dist = torch.mm(x_aug[:m], self.c_aug, out=dist_buf[:m])
            best, idx, second = _best_two(dist, self.block)
            tol = (torch.linalg.vector_norm(xb, dim=1) + self.c_max).square_().mul_(self.coef)
            # "not >" also catches NaN from float32 overflow (|x| > ~1e19): then every
            # centroid is a candidate and float64 decides.
            unsure = ~((second - best) > tol)
            if bool(unsure.any()):
                r = unsure.nonzero()[:, 0]
                limit = best[r] + tol[r]
                candidates = (dist[r] <= limit[:, None]) | ~torch.isfinite(limit)[:, None]
                idx[r] = _decide_exactly(self.x[start + r], self.centroids, candidates[:, :k])
            out[start : start + m] = idx


def _best_two(
    dist: torch.Tensor, block: int | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(smallest value, its index, second smallest value) of every row of ``dist`` [B, K].

    torch's min-with-index is several times slower than a plain min, so with
    ``block`` the rows are cut into blocks: plain block minima over the whole
    matrix, then indices only within the winning block ([B, block] values).
    """
    rows = dist.shape[0]
    if block is None:
        best, idx = dist.min(dim=1)
        second = dist.scatter(1, idx[:, None], float("inf")).amin(dim=1)  # K is small: copy
        return best, idx, second
    blocks = dist.view(rows, -1, block)
    block_min = blocks.amin(dim=2)
    best, which = block_min.min(dim=1)
    first_block = torch.arange(0, rows * blocks.shape[1], blocks.shape[1], device=dist.device)
    inside = dist.view(-1, block).index_select(0, first_block + which)  # a copy, [B, block]
    pos = inside.min(dim=1).indices
    inside.scatter_(1, pos[:, None], float("inf"))
    block_min.scatter_(1, which[:, None], float("inf"))
    second = torch.minimum(inside.amin(dim=1), block_min.amin(dim=1))
    return best, which * block + pos, second


def _decide_exactly(
    xr: torch.Tensor, centroids: torch.Tensor, candidates: torch.Tensor
) -> torch.Tensor:
    """Nearest centroid in float64 among the ``candidates`` [R, K'] (bool) of each unsure row."""
    pair_row, pair_col = candidates.nonzero(as_tuple=True)
    exact = exact_sq_dist(xr, centroids, pair_row, pair_col)
    k = centroids.shape[0]
    rows = xr.shape[0]
    best = exact.new_full((rows,), float("inf")).scatter_reduce_(0, pair_row, exact, "amin")
    winners = torch.where(exact == best[pair_row], pair_col, k)
    return pair_col.new_full((rows,), k).scatter_reduce_(0, pair_row, winners, "amin")


def exact_sq_dist(
    x: torch.Tensor, centroids: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """float64 squared distance between x[rows] and centroids[cols], summed in coordinate order.

    Plain elementwise multiply and add (no fused multiply-add, no reduction
    kernel), so the value is the same whatever the number of pairs.
    """
    diff = x[rows].to(torch.float64) - centroids[cols].to(torch.float64)
    squares = (diff * diff).t().contiguous()  # [d, P]: one contiguous row per coordinate
    acc = squares[0].clone()
    for coord in range(1, x.shape[1]):
        acc += squares[coord]
    return acc


def _assign_faiss(x: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """faiss' fused nearest-centroid search (k = 1: its fast path; asking for the second
    nearest too, to certify each answer, costs it 4x at d = 4)."""
    import faiss

    d = x.shape[1]
    faiss.omp_set_num_threads(torch.get_num_threads())
    c = centroids.to(torch.float32)
    # faiss expands |x|^2 + |c|^2 - 2 x.c: centring bounds its rounding by the spread
    # of the data instead of its distance from the origin.
    mean = c.to(torch.float64).mean(dim=0).to(torch.float32)
    c = c - mean
    # Identical centroids tie for every vector: faiss keeps the first of equal distances,
    # the lowest index, as the rule does (tested); merging them first would cost a sort of
    # the centroids (9 ms at 16384 x 4, a whole faiss iteration's margin).
    index = faiss.IndexFlatL2(d)
    index.add(c.contiguous().numpy())
    _, nearest = index.search((x.to(torch.float32) - mean).contiguous().numpy(), 1)
    return torch.from_numpy(nearest[:, 0]).to(torch.long)
