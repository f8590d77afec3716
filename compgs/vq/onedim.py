"""The exact fast path for one-dimensional data (d = 1).

On a line the nearest centroid is decided by the midpoints between consecutive
distinct centroid values, so:

* `assign_1d` is a binary search of every value among the K sorted midpoints
  (O(N log K), no N x K distance matrix);
* `SortedRows` sorts the data once and keeps float64 prefix sums, after which a
  whole Lloyd step (assignment + centroid update) is K binary searches in the
  sorted data plus differences of prefix sums: O(K log N), independent of N.

Everything is batched over rows: data [C, M] and centroids [C, K] give C
independent one-dimensional problems (per-channel scalar quantization), and
C = 1 is plain k-means on [N, 1] vectors.

Exactness: midpoints and comparisons are computed in float64, where the
midpoint of two float32 (or float16) values is exact, so the result is the
exact nearest centroid, ties going to the lowest centroid index -- the same
rule as `compgs.vq.nearest`.
"""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class SortedLevels:
    """Centroids of C rows sorted ascending, with the decision bounds between them.

    All tensors are [C, K]. ``bounds[:, s]`` is the midpoint between sorted
    position s and the next *distinct* value (+inf for the last run of equal
    values); positions that repeat an earlier value share the bound of their
    run and never win a point. ``right_wins[:, s]`` says whether a value lying
    exactly on the bound belongs to the next run (it has the lower centroid index).
    """

    order: torch.Tensor  # original centroid index at each sorted position
    values: torch.Tensor  # float64 sorted values
    bounds: torch.Tensor  # float64
    right_wins: torch.Tensor  # bool
    run_end: torch.Tensor  # head of the next run: where a value passing this bound lands


def sorted_levels(centroids: torch.Tensor) -> SortedLevels:
    """`SortedLevels` of ``centroids`` [C, K] (any float dtype)."""
    values, order = torch.sort(centroids.to(torch.float64), dim=1, stable=True)
    c, k = values.shape
    pos = torch.arange(k, device=values.device).expand(c, k)
    is_head = torch.ones_like(values, dtype=torch.bool)
    is_head[:, 1:] = values[:, 1:] != values[:, :-1]
    # Head of the run each position belongs to, and the head of the next run.
    head = torch.cummax(torch.where(is_head, pos, 0), dim=1).values
    heads_only = torch.where(is_head, pos, k)
    after = torch.cat([heads_only[:, 1:], torch.full_like(heads_only[:, :1], k)], dim=1)
    next_head = torch.cummin(after.flip(1), dim=1).values.flip(1)
    has_next = next_head < k
    next_head = next_head.clamp(max=k - 1)
    mid = (values + values.gather(1, next_head)) * 0.5
    bounds = torch.where(has_next, mid, torch.full_like(mid, float("inf")))
    right_wins = has_next & (order.gather(1, next_head) < order.gather(1, head))
    run_end = torch.where(has_next, next_head, k - 1)
    return SortedLevels(order, values, bounds.contiguous(), right_wins, run_end)


def assign_1d(values: torch.Tensor, levels: SortedLevels) -> torch.Tensor:
    """Index [C, M] of the nearest centroid for every entry of ``values`` [C, M]."""
    if values.dtype == torch.float64:
        v, strictly_below, at_most = values.contiguous(), levels.bounds, levels.bounds
    else:
        # Compare in float32 (no float64 copy of the data): for a float32 v,
        # bound < v  <=>  round_down32(bound) < v  and  bound <= v  <=>  round_up32(bound) <= v.
        v = values.to(torch.float32).contiguous()
        strictly_below, at_most = _float32_brackets(levels.bounds)
    k = levels.bounds.shape[1]
    below = torch.searchsorted(strictly_below, v, side="left")  # bounds strictly below v
    # v lies exactly on the next bound: it goes past that bound (and past the equal
    # bounds of a run of repeated centroids) when the right side has the lower index.
    nxt = below.clamp(max=k - 1)
    on_bound = at_most.gather(1, nxt) <= v
    passes = on_bound & levels.right_wins.gather(1, nxt)
    slot = torch.where(passes, levels.run_end.gather(1, nxt), below)
    return levels.order.gather(1, slot)


def _float32_brackets(bounds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 ``bounds`` rounded down and up to float32 (equal when representable)."""
    nearest = bounds.to(torch.float32)
    wide = nearest.to(torch.float64)
    down = torch.where(
        wide > bounds, torch.nextafter(nearest, nearest.new_tensor(-torch.inf)), nearest
    )
    up = torch.where(
        wide < bounds, torch.nextafter(nearest, nearest.new_tensor(torch.inf)), nearest
    )
    return down.contiguous(), up.contiguous()


class SortedRows:
    """C rows of one-dimensional data, sorted once, with float64 prefix sums.

    Args:
        x: [C, M] data (any float dtype).
        weights: optional [C, M] non-negative weights.
    """

    def __init__(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> None:
        self.sorted, self.order = torch.sort(x.to(torch.float64), dim=1, stable=True)
        c, m = self.sorted.shape
        zero = torch.zeros(c, 1, dtype=torch.float64, device=x.device)
        if weights is None:
            self.weights = None
            w_sorted = torch.ones_like(self.sorted)
        else:
            w_sorted = weights.to(torch.float64).gather(1, self.order)
            self.weights = w_sorted
        self.cum_w = torch.cat([zero, torch.cumsum(w_sorted, dim=1)], dim=1)
        self.cum_wx = torch.cat([zero, torch.cumsum(w_sorted * self.sorted, dim=1)], dim=1)

    def upper_ends(self, levels: SortedLevels) -> torch.Tensor:
        """[C, K]: sorted position s owns the sorted data in [ends[s-1], ends[s])."""
        right = torch.searchsorted(self.sorted, levels.bounds, side="right")
        left = torch.searchsorted(self.sorted, levels.bounds, side="left")
        return torch.where(levels.right_wins, left, right)

    def step(self, centroids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One Lloyd step without touching the N points.

        Returns (means [C, K] float64 with empty codes keeping their value,
        total weight [C, K] per code, ends [C, K] to compare steps with).
        """
        levels = sorted_levels(centroids)
        ends = self.upper_ends(levels)
        starts = torch.cat([torch.zeros_like(ends[:, :1]), ends[:, :-1]], dim=1)
        weight = self.cum_w.gather(1, ends) - self.cum_w.gather(1, starts)
        total = self.cum_wx.gather(1, ends) - self.cum_wx.gather(1, starts)
        means_sorted = torch.where(weight > 0, total / weight.clamp(min=1e-300), levels.values)
        means = torch.empty_like(means_sorted).scatter_(1, levels.order, means_sorted)
        counts = torch.empty_like(weight).scatter_(1, levels.order, weight)
        return means, counts, ends

    def sorted_labels(self, centroids: torch.Tensor) -> torch.Tensor:
        """[C, M]: index of the nearest centroid of every *sorted* entry."""
        return assign_1d(self.sorted, sorted_levels(centroids))

    def labels(self, centroids: torch.Tensor) -> torch.Tensor:
        """[C, M]: index of the nearest centroid of every entry, in the input order."""
        out = torch.empty_like(self.order)
        return out.scatter_(1, self.order, self.sorted_labels(centroids))

    def distances(self, centroids: torch.Tensor, row: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sorted values [M, 1], weighted squared distance [M] to the nearest centroid) of ``row``."""
        labels = self.sorted_labels(centroids[row : row + 1])[0]
        xs = self.sorted[row]
        dist = (xs - centroids[row].to(torch.float64)[labels]) ** 2
        if self.weights is not None:
            dist = dist * self.weights[row]
        return xs[:, None], dist
