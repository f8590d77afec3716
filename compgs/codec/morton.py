"""Morton (Z-order) codes of 3D points: nearby points get nearby codes."""

from __future__ import annotations

import numpy as np

BITS_PER_AXIS = 21


def _spread(v: np.ndarray) -> np.ndarray:
    """Insert two zero bits between each of the low 21 bits of v."""
    v = v.astype(np.uint64) & np.uint64(0x1FFFFF)
    for shift, mask in (
        (32, 0x1F00000000FFFF),
        (16, 0x1F0000FF0000FF),
        (8, 0x100F00F00F00F00F),
        (4, 0x10C30C30C30C30C3),
        (2, 0x1249249249249249),
    ):
        v = (v | (v << np.uint64(shift))) & np.uint64(mask)
    return v


def morton_codes(points: np.ndarray) -> np.ndarray:
    """uint64 codes of [N,3] points, quantised on their own bounding box."""
    p = np.asarray(points, dtype=np.float64)
    if len(p) == 0:
        return np.zeros(0, np.uint64)
    lo, hi = p.min(axis=0), p.max(axis=0)
    q = (p - lo) / np.maximum(hi - lo, 1e-30) * ((1 << BITS_PER_AXIS) - 1)
    q = np.round(q).astype(np.uint64)
    return (
        _spread(q[:, 0]) | (_spread(q[:, 1]) << np.uint64(1)) | (_spread(q[:, 2]) << np.uint64(2))
    )
