"""K-means (Lloyd) over tensors of vectors: initialisation, centroid update, the loop.

Nothing here knows what the vectors mean. Shapes: x [N, d], centroids [K, d],
assignments [N] int64, weights [N].
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Literal

import torch

from compgs.errors import InputError
from compgs.vq._checks import (
    check_assignments,
    check_finite,
    check_num_codes,
    check_pair,
    check_vectors,
    check_weights,
    work_dtype,
)
from compgs.vq.members import centroid_means
from compgs.vq.nearest import Backend, nearest_unchecked
from compgs.vq.onedim import SortedRows

log = logging.getLogger(__name__)

Init = Literal["kmeans++", "random"]

# k-means++ runs on a random subset of this many points per code (at least
# KMEANSPP_MIN_SAMPLE): its K sequential steps then cost O(K^2 d), not O(N K d).
KMEANSPP_SAMPLES_PER_CODE = 4
KMEANSPP_MIN_SAMPLE = 4096
# Rounds of re-seeding after the last step before giving up on an empty code.
MAX_REPAIR_ROUNDS = 8


@dataclasses.dataclass
class KMeansResult:
    """centroids [K, d] (dtype of x), assignments [N] int64 (nearest centroid of each
    vector under the final centroids), inertia = sum of weighted squared distances
    (float64 sum), iterations = centroid updates performed."""

    centroids: torch.Tensor
    assignments: torch.Tensor
    inertia: float
    iterations: int


def kmeans(
    x: torch.Tensor,
    k: int,
    iters: int = 20,
    *,
    init: Init | torch.Tensor = "kmeans++",
    seed: int = 0,
    weights: torch.Tensor | None = None,
    backend: Backend = "auto",
    chunk_size: int | None = None,
) -> KMeansResult:
    """Lloyd's k-means of ``x`` [N, d] into ``k`` codes.

    Stops early when an iteration changes no assignment. Codes left empty are
    re-seeded deterministically with the vectors farthest from their centroid,
    so every code is used whenever x has at least k distinct vectors. For d = 1
    (and ``backend="auto"``) the data is sorted once and every step costs
    O(K log N) (see `compgs.vq.onedim`).

    Args:
        x: [N, d] float vectors, finite.
        k: number of codes, 1 <= k <= N.
        iters: maximum number of Lloyd iterations (0: initialisation only).
        init: "kmeans++" (D^2 sampling on a subset), "random" (k distinct
            vectors), or a [k, d] tensor of initial centroids.
        seed: seed of every random choice (results are deterministic on CPU).
        weights: optional [N] non-negative weights (weighted means and inertia).
        backend, chunk_size: passed to `assign` (`compgs.vq.nearest`).
    """
    check_vectors(x, "x")
    n, d = x.shape
    k = check_num_codes(k, n)
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise InputError(f"iters must be an int >= 0, got {iters!r}")
    w = check_weights(weights, x)
    if backend not in ("auto", "torch", "faiss"):
        raise InputError(f"backend must be 'auto', 'torch' or 'faiss', got {backend!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or chunk_size < 1):
        raise InputError(f"chunk_size must be a positive int, got {chunk_size!r}")
    x = x.detach()
    with torch.no_grad():
        c = _initial_centroids(x, k, init, seed, w)
        if d == 1 and backend == "auto":
            c, a, done = _lloyd_sorted(x, c, iters, w)
        else:

            def nearest(cents: torch.Tensor) -> torch.Tensor:
                return nearest_unchecked(x, cents, backend, chunk_size)

            c, a, done = _lloyd(x, c, iters, w, nearest)
        return KMeansResult(c, a, inertia(x, c, a, weights=w), done)


def update_centroids(
    x: torch.Tensor,
    assignments: torch.Tensor,
    k: int,
    *,
    weights: torch.Tensor | None = None,
    previous: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean of the members of every code: [K, d] in the dtype of ``x``.

    One scatter-add (index_add_) over the N vectors, accumulated in float32
    (float64 for float64 input); no one-hot matrix. Codes without members (or
    whose members all have zero weight) take the row of ``previous`` [K, d]
    when given, else zeros.
    """
    check_vectors(x, "x")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InputError(f"number of codes must be an int >= 1, got {k!r}")
    a = check_assignments(assignments, x.shape[0], k, x.device)
    w = check_weights(weights, x)
    if previous is not None:
        check_vectors(previous, "previous", finite=False)
        check_pair(x, previous)
        check_finite(previous, "previous")
        if previous.shape[0] != k:
            raise InputError(f"previous centroids must have {k} rows, got {previous.shape[0]}")
    with torch.no_grad():
        return centroid_means(x.detach(), a, k, w, previous)[0]


def inertia(
    x: torch.Tensor,
    centroids: torch.Tensor,
    assignments: torch.Tensor,
    *,
    weights: torch.Tensor | None = None,
) -> float:
    """Sum over vectors of (weight x) squared distance to the assigned centroid, in float64."""
    diff = x.to(torch.float64) - centroids.to(torch.float64)[assignments]
    dist = (diff * diff).sum(dim=1)
    if weights is not None:
        dist = dist * weights.to(torch.float64)
    return float(dist.sum())


# --- initialisation ---------------------------------------------------------


def _initial_centroids(
    x: torch.Tensor, k: int, init: Init | torch.Tensor, seed: int, w: torch.Tensor | None
) -> torch.Tensor:
    if isinstance(init, torch.Tensor):
        check_vectors(init, "init", finite=False)
        check_pair(x, init)
        check_finite(init, "init")
        if init.shape[0] != k:
            raise InputError(f"init must have shape [{k}, {x.shape[1]}], got {list(init.shape)}")
        return init.detach().clone()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    if init == "random":
        return x[_random_indices(x.shape[0], k, gen, w)].clone()
    if init == "kmeans++":
        return _kmeanspp(x, k, gen, w)
    raise InputError(f"init must be 'kmeans++', 'random' or a tensor, got {init!r}")


def _random_indices(n: int, k: int, gen: torch.Generator, w: torch.Tensor | None) -> torch.Tensor:
    if w is not None and int((w > 0).sum()) >= k:
        return torch.multinomial(w, k, replacement=False, generator=gen)
    return torch.randperm(n, generator=gen, device=gen.device)[:k]


def _kmeanspp(
    x: torch.Tensor, k: int, gen: torch.Generator, w: torch.Tensor | None
) -> torch.Tensor:
    """k-means++ (D^2 sampling, Arthur & Vassilvitskii 2007) on a random subset."""
    n = x.shape[0]
    size = min(n, max(KMEANSPP_SAMPLES_PER_CODE * k, KMEANSPP_MIN_SAMPLE))
    sub = _random_indices(n, size, gen, None) if size < n else None
    dtype = work_dtype(x.dtype)
    xs = (x if sub is None else x[sub]).to(dtype)
    ws = None if w is None else (w if sub is None else w[sub]).to(torch.float64)
    sq = (xs * xs).sum(dim=1)
    u = torch.rand(k, generator=gen, device=x.device, dtype=torch.float64)
    chosen = torch.empty(k, dtype=torch.long, device=x.device)
    nearest = torch.full((xs.shape[0],), float("inf"), dtype=dtype, device=x.device)
    for j in range(k):
        # Uniform (weighted) pick first, then proportional to weight x squared distance.
        p = torch.ones_like(sq, dtype=torch.float64) if j == 0 else nearest.to(torch.float64)
        if ws is not None:
            p = p * ws
        cum = torch.cumsum(p, dim=0)
        pick = torch.searchsorted(cum, (u[j] * cum[-1]).reshape(1), right=True)
        pick = pick.clamp(max=xs.shape[0] - 1)
        chosen[j] = pick[0]
        c = xs[pick[0]]
        dist = (sq - 2.0 * (xs @ c) + (c * c).sum()).clamp(min=0)
        nearest = torch.minimum(nearest, dist)
    return xs[chosen].to(x.dtype)


# --- Lloyd loops -------------------------------------------------------------


def _lloyd(x, c, iters, w, nearest) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Generic Lloyd: assignment by ``nearest``, update by scatter-add."""
    k = c.shape[0]
    prev = None
    done = 0
    a = None
    for _ in range(iters):
        a = nearest(c)
        if prev is not None and torch.equal(a, prev):
            break  # c is already the mean of this partition
        c, counts = centroid_means(x, a, k, w, previous=c)
        done += 1
        prev = a
        a = None  # c moved: the partition must be recomputed
        if bool((counts == 0).any()):
            c = _reseed(x, c, prev, counts, w)
            prev = None
    if a is None:
        a = nearest(c)
    for _ in range(MAX_REPAIR_ROUNDS):
        counts = _member_weight(a, k, w)
        if bool((counts > 0).all()):
            break
        c = _reseed(x, c, a, counts, w)
        a = nearest(c)
    else:
        _warn_empty(int((_member_weight(a, k, w) == 0).sum()), k)
    return c, a, done


def _lloyd_sorted(x, c, iters, w) -> tuple[torch.Tensor, torch.Tensor, int]:
    """d = 1: sort once, then every step is K binary searches (`SortedRows`)."""
    rows = SortedRows(x.t(), None if w is None else w[None])
    c = c.t()  # [1, K]
    prev = None
    done = 0
    for _ in range(iters + MAX_REPAIR_ROUNDS):
        means, counts, ends = rows.step(c)
        empty = bool((counts == 0).any())
        if done >= iters or (prev is not None and torch.equal(ends, prev)):
            if not empty:
                break  # converged, or out of iterations with every code used
        else:
            c = means.to(x.dtype)
            done += 1
            prev = ends
        if empty:
            points, dist = rows.distances(c, 0)
            c = _fill_empty(c[0][:, None], (counts[0] == 0).nonzero()[:, 0], points, dist).t()
            prev = None
    else:
        _warn_empty(int((rows.step(c)[1] == 0).sum()), c.shape[1])
    return c.t().contiguous(), rows.labels(c)[0], done


def _member_weight(a: torch.Tensor, k: int, w: torch.Tensor | None) -> torch.Tensor:
    if w is None:
        return torch.bincount(a, minlength=k)
    return torch.zeros(k, dtype=w.dtype, device=a.device).index_add_(0, a, w)


def _reseed(x, c, a, counts, w) -> torch.Tensor:
    dtype = work_dtype(x.dtype)
    diff = x.to(dtype) - c.to(dtype)[a]
    dist = (diff * diff).sum(dim=1)
    if w is not None:
        dist = dist * w
    return _fill_empty(c, (counts == 0).nonzero()[:, 0], x, dist)


def _fill_empty(
    c: torch.Tensor, empty: torch.Tensor, points: torch.Tensor, dist: torch.Tensor
) -> torch.Tensor:
    """Move the ``empty`` codes onto the distinct points farthest from their centroid.

    Deterministic: points are taken by decreasing distance, ties by position.
    """
    order = torch.sort(dist, descending=True, stable=True).indices
    order = order[dist[order] > 0][: 4 * len(empty) + 16]
    candidates = points[order]
    unique, inverse = torch.unique(candidates, dim=0, return_inverse=True)
    position = torch.arange(len(order), device=order.device)
    first = torch.full((unique.shape[0],), len(order), device=order.device)
    first = first.scatter_reduce_(0, inverse, position, "amin")
    picks = candidates[torch.sort(first).values[: len(empty)]]
    c = c.clone()
    c[empty[: len(picks)]] = picks.to(c.dtype)
    return c


def _warn_empty(count: int, k: int) -> None:
    if count:
        log.warning("%d of %d codes stay empty: the data has too few distinct vectors", count, k)
