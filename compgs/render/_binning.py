"""Numba kernels: tile lists in depth order, and summing per-pair gradients.

`bin_tiles` lists, per tile, the Gaussians whose pixel rectangle touches it,
already in depth order (the Gaussians are visited front to back, so no
per-tile sort is needed), plus the inverse map from Gaussians to their
(tile, Gaussian) pairs that `reduce_grads` uses after the backward.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

ZERO = np.float32(0.0)
N_GRAD = 10  # per pair: mean2d (2), conic (3), colour (3), depth, opacity


@njit(parallel=True, cache=True)
def bin_tiles(order, rects, tile_size, tiles_x, tiles_y, n_workers):
    """Tile lists for the Gaussians ``order`` (visible ones, front to back).

    Returns ``tile_offsets`` [T+1] and ``tile_gauss`` [I] (Gaussian ids per tile,
    front to back), plus ``g_offsets`` [len(order)+1] and ``g_slots`` [I]: for the
    k-th Gaussian of ``order``, the positions in ``tile_gauss`` that hold it.

    The tile rows are cut into bands dealt round-robin to the workers; every band
    scans all the Gaussians in depth order (cheap: their tile rectangles are first
    copied into depth order), so every tile list comes out sorted.
    """
    n_tiles = tiles_x * tiles_y
    n = order.shape[0]
    trect = np.empty((n, 4), np.int32)
    g_offsets = np.zeros(n + 1, np.int64)
    for k in prange(n):
        g = order[k]
        for q in range(4):
            trect[k, q] = rects[g, q] // tile_size
        g_offsets[k + 1] = (trect[k, 1] - trect[k, 0] + 1) * (trect[k, 3] - trect[k, 2] + 1)
    for k in range(n):
        g_offsets[k + 1] += g_offsets[k]
    n_bands = min(4 * n_workers, tiles_y)
    offsets = np.zeros(n_tiles + 1, np.int64)
    for w in prange(n_workers):
        for band in range(w, n_bands, n_workers):
            r0 = band * tiles_y // n_bands
            r1 = (band + 1) * tiles_y // n_bands
            for k in range(n):
                for ty in range(max(trect[k, 2], r0), min(trect[k, 3] + 1, r1)):
                    for tx in range(trect[k, 0], trect[k, 1] + 1):
                        offsets[ty * tiles_x + tx + 1] += 1
    for t in range(n_tiles):
        offsets[t + 1] += offsets[t]
    n_pairs = offsets[n_tiles]
    tile_gauss = np.empty(n_pairs, np.int32)
    g_slots = np.empty(n_pairs, np.int64)
    for w in prange(n_workers):
        for band in range(w, n_bands, n_workers):
            r0 = band * tiles_y // n_bands
            r1 = (band + 1) * tiles_y // n_bands
            cursor = offsets[r0 * tiles_x : r1 * tiles_x].copy()
            for k in range(n):
                tx0, row0 = trect[k, 0], trect[k, 2]
                width_k = trect[k, 1] - tx0 + 1
                for ty in range(max(row0, r0), min(trect[k, 3] + 1, r1)):
                    for tx in range(tx0, tx0 + width_k):
                        local = (ty - r0) * tiles_x + tx
                        slot = cursor[local]
                        cursor[local] += 1
                        tile_gauss[slot] = order[k]
                        g_slots[g_offsets[k] + (ty - row0) * width_k + (tx - tx0)] = slot
    return offsets, tile_gauss, g_offsets, g_slots


@njit(parallel=True, cache=True)
def reduce_grads(
    order, g_offsets, g_slots, pair_grads, v_means2d, v_conics, v_colors, v_depths, v_opac
):
    """Sum each Gaussian's pair gradients; ``v_opac`` is accumulated (+=) across calls."""
    n = order.shape[0]
    chunk = 1024
    for c in prange((n + chunk - 1) // chunk):
        for k in range(c * chunk, min(n, (c + 1) * chunk)):
            s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = s8 = s9 = ZERO
            for p in range(g_offsets[k], g_offsets[k + 1]):
                row = pair_grads[g_slots[p]]
                s0 += row[0]
                s1 += row[1]
                s2 += row[2]
                s3 += row[3]
                s4 += row[4]
                s5 += row[5]
                s6 += row[6]
                s7 += row[7]
                s8 += row[8]
                s9 += row[9]
            g = order[k]
            v_means2d[g, 0] = s0
            v_means2d[g, 1] = s1
            v_conics[g, 0] = s2
            v_conics[g, 1] = s3
            v_conics[g, 2] = s4
            v_colors[g, 0] = s5
            v_colors[g, 1] = s6
            v_colors[g, 2] = s7
            v_depths[g] = s8
            v_opac[g] += s9
