"""Run-length coding of a sorted index: N entries in [0, K) become K counts.

This is CompGS's trick for the sort key: once the Gaussians are ordered by one
index, that index costs no per-Gaussian bits, only K run lengths.
"""

from __future__ import annotations

import numpy as np


def run_lengths(sorted_index: np.ndarray, k: int) -> np.ndarray:
    """Counts [K] of each code in a non-decreasing index array."""
    idx = np.asarray(sorted_index).reshape(-1)
    if idx.size and (np.any(np.diff(idx) < 0) or idx[0] < 0 or idx[-1] >= k):
        raise ValueError("run-length coding needs a non-decreasing index in [0, K)")
    return np.bincount(idx, minlength=k).astype(np.int64)


def expand_runs(counts: np.ndarray, dtype=np.int64) -> np.ndarray:
    """The sorted index [sum(counts)] that the run lengths describe, as ``dtype``."""
    counts = np.asarray(counts).reshape(-1)
    return np.repeat(np.arange(len(counts), dtype=dtype), counts)
