"""Slow, obviously-correct references for the codebook engine tests."""

from __future__ import annotations

import torch


def brute_sq_dist(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """[N, K] float64 squared distances, coordinates summed in order (the engine's rule)."""
    x64, c64 = x.double(), c.double()
    out = torch.zeros(x.shape[0], c.shape[0], dtype=torch.float64)
    for i in range(x.shape[1]):
        diff = x64[:, i, None] - c64[None, :, i]
        out = out + diff * diff
    return out


def brute_assign(x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Nearest centroid, lowest index on ties (torch.argmin returns the first minimum)."""
    return brute_sq_dist(x, c).argmin(dim=1)


def blobs(n: int, k: int, d: int, *, seed: int = 0, spread: float = 0.05):
    """``n`` points around ``k`` well-separated centres in ``d`` dimensions -> (x, labels)."""
    g = torch.Generator().manual_seed(seed)
    scale = 4.0
    centres = torch.randn(k, d, generator=g) * scale
    while k > 1 and float(torch.pdist(centres).min()) < 2.0:  # keep the blobs apart
        scale *= 1.5
        centres = torch.randn(k, d, generator=g) * scale
    labels = torch.arange(n) % k
    x = centres[labels] + spread * torch.randn(n, d, generator=g)
    return x, labels


def agreement(labels: torch.Tensor, found: torch.Tensor, k: int) -> float:
    """Fraction of points whose found cluster is the one-to-one match of their true cluster."""
    table = torch.zeros(k, k, dtype=torch.long)
    table.index_put_((labels, found), torch.ones_like(labels), accumulate=True)
    match = table.argmax(dim=1)
    if len(set(match.tolist())) < k:  # not a one-to-one matching: clusters merged
        return 0.0
    return float(table.max(dim=1).values.sum()) / labels.numel()
