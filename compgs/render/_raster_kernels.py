"""Numba kernels: tile binning, front-to-back compositing and its backward.

The image is cut into square tiles. `bin_tiles` lists, per tile, the
Gaussians whose pixel rectangle touches it, already in depth order (the
Gaussians are visited in depth order, so no per-tile sort is needed).

`raster_forward` walks each pixel front to back with early termination and a
cheap cut-off (power > log(255 * opacity) means alpha < 1/255, so exp() is
skipped); it records each pixel's final transmittance and the index of its
last contributing Gaussian. `raster_backward` walks the same list back to
front from that index, recovering the transmittance by division as the 3DGS
CUDA rasterizer does, so the backward costs about what the forward does.
Gradients are accumulated per (tile, Gaussian) pair, so no two threads ever
write the same memory; `reduce_grads` then sums each Gaussian's pairs. The
result does not depend on the number of threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from compgs.render import constants as K

F32 = np.float32
ZERO = F32(0.0)
HALF = F32(0.5)
ONE = F32(1.0)
TWO = F32(2.0)
ALPHA_MIN = F32(K.ALPHA_MIN)
ALPHA_MAX = F32(K.ALPHA_MAX)
T_MIN = F32(K.T_MIN)
N_GRAD = 10  # per pair: mean2d (2), conic (3), colour (3), depth, opacity


@njit(cache=True)
def bin_tiles(order, rects, tile_size, tiles_x, tiles_y):
    """Tile lists for the Gaussians ``order`` (visible ones, front to back).

    Returns ``tile_offsets`` [T+1] and ``tile_gauss`` [I] (Gaussian ids per tile,
    front to back), plus ``g_offsets`` [len(order)+1] and ``g_slots`` [I]: for the
    k-th Gaussian of ``order``, the positions in ``tile_gauss`` that hold it.
    """
    n_tiles = tiles_x * tiles_y
    n = order.shape[0]
    offsets = np.zeros(n_tiles + 1, np.int64)
    for k in range(n):
        g = order[k]
        for ty in range(rects[g, 2] // tile_size, rects[g, 3] // tile_size + 1):
            for tx in range(rects[g, 0] // tile_size, rects[g, 1] // tile_size + 1):
                offsets[ty * tiles_x + tx + 1] += 1
    for t in range(n_tiles):
        offsets[t + 1] += offsets[t]
    n_pairs = offsets[n_tiles]
    cursor = offsets[:n_tiles].copy()
    tile_gauss = np.empty(n_pairs, np.int32)
    g_offsets = np.empty(n + 1, np.int64)
    g_slots = np.empty(n_pairs, np.int64)
    pos = 0
    for k in range(n):
        g = order[k]
        g_offsets[k] = pos
        for ty in range(rects[g, 2] // tile_size, rects[g, 3] // tile_size + 1):
            for tx in range(rects[g, 0] // tile_size, rects[g, 1] // tile_size + 1):
                t = ty * tiles_x + tx
                slot = cursor[t]
                cursor[t] += 1
                tile_gauss[slot] = g
                g_slots[pos] = slot
                pos += 1
    g_offsets[n] = pos
    return offsets, tile_gauss, g_offsets, g_slots


@njit(cache=True)
def _gather(tile_gauss, start, n, means2d, conics, colors, opac, thr, depths, geo, feat):
    """Copy one tile's Gaussians into contiguous scratch (front to back)."""
    for k in range(n):
        g = tile_gauss[start + k]
        geo[k, 0] = means2d[g, 0]
        geo[k, 1] = means2d[g, 1]
        geo[k, 2] = HALF * conics[g, 0]
        geo[k, 3] = conics[g, 1]
        geo[k, 4] = HALF * conics[g, 2]
        geo[k, 5] = thr[g]
        geo[k, 6] = opac[g]
        feat[k, 0] = colors[g, 0]
        feat[k, 1] = colors[g, 1]
        feat[k, 2] = colors[g, 2]
        feat[k, 3] = depths[g]


@njit(cache=True)
def _max_tile_len(offsets):
    out = 0
    for t in range(offsets.shape[0] - 1):
        out = max(out, offsets[t + 1] - offsets[t])
    return out


@njit(parallel=True, cache=True)
def raster_forward(
    offsets, tile_gauss, tile_order, n_workers,
    means2d, conics, colors, opac, thr, depths,
    width, height, tile_size, tiles_x,
    out_rgb, out_alpha, out_depth, out_trans, out_last,
):  # fmt: skip
    """Composite one camera; every output pixel is written."""
    n_tiles = offsets.shape[0] - 1
    maxn = _max_tile_len(offsets)
    for w in prange(n_workers):
        geo = np.empty((maxn, 8), np.float32)
        feat = np.empty((maxn, 4), np.float32)
        for j in range(w, n_tiles, n_workers):
            t = tile_order[j]
            start = offsets[t]
            n = offsets[t + 1] - start
            x0 = (t % tiles_x) * tile_size
            y0 = (t // tiles_x) * tile_size
            x1 = min(x0 + tile_size, width)
            y1 = min(y0 + tile_size, height)
            _gather(tile_gauss, start, n, means2d, conics, colors, opac, thr, depths, geo, feat)
            for py in range(y0, y1):
                fy = F32(py) + HALF
                for px in range(x0, x1):
                    fx = F32(px) + HALF
                    trans = ONE
                    r = ZERO
                    g = ZERO
                    b = ZERO
                    d = ZERO
                    last = 0
                    for k in range(n):
                        dx = geo[k, 0] - fx
                        dy = geo[k, 1] - fy
                        power = geo[k, 2] * dx * dx + geo[k, 4] * dy * dy + geo[k, 3] * dx * dy
                        if power > geo[k, 5]:
                            continue  # alpha would be < 1/255: skip exp()
                        alpha = min(ALPHA_MAX, geo[k, 6] * math.exp(-power))
                        if alpha < ALPHA_MIN:
                            continue
                        next_trans = trans * (ONE - alpha)
                        if next_trans < T_MIN:
                            break
                        weight = alpha * trans
                        r += feat[k, 0] * weight
                        g += feat[k, 1] * weight
                        b += feat[k, 2] * weight
                        d += feat[k, 3] * weight
                        trans = next_trans
                        last = k + 1
                    out_rgb[py, px, 0] = r
                    out_rgb[py, px, 1] = g
                    out_rgb[py, px, 2] = b
                    out_depth[py, px] = d
                    out_alpha[py, px] = ONE - trans
                    out_trans[py, px] = trans
                    out_last[py, px] = last


@njit(parallel=True, cache=True)
def raster_backward(
    offsets, tile_gauss, tile_order, n_workers,
    means2d, conics, colors, opac, thr, depths,
    width, height, tile_size, tiles_x,
    out_trans, out_last, v_rgb, v_alpha, v_depth, pair_grads,
):  # fmt: skip
    """Per (tile, Gaussian) pair gradients [I, 10] from pixel gradients.

    Columns: d mean2d (x, y), d conic (a, b, c), d colour (r, g, b), d depth, d opacity.
    """
    n_tiles = offsets.shape[0] - 1
    maxn = _max_tile_len(offsets)
    for w in prange(n_workers):
        geo = np.empty((maxn, 8), np.float32)
        feat = np.empty((maxn, 4), np.float32)
        acc = np.empty((maxn, N_GRAD), np.float32)
        for j in range(w, n_tiles, n_workers):
            t = tile_order[j]
            start = offsets[t]
            n = offsets[t + 1] - start
            x0 = (t % tiles_x) * tile_size
            y0 = (t // tiles_x) * tile_size
            x1 = min(x0 + tile_size, width)
            y1 = min(y0 + tile_size, height)
            _gather(tile_gauss, start, n, means2d, conics, colors, opac, thr, depths, geo, feat)
            acc[:n] = ZERO
            for py in range(y0, y1):
                fy = F32(py) + HALF
                for px in range(x0, x1):
                    last = out_last[py, px]
                    if last == 0:
                        continue
                    fx = F32(px) + HALF
                    t_final = out_trans[py, px]
                    trans = t_final
                    vr, vg, vb = v_rgb[py, px, 0], v_rgb[py, px, 1], v_rgb[py, px, 2]
                    va = v_alpha[py, px]
                    vd = v_depth[py, px]
                    # Colour (and depth) composited behind the current Gaussian.
                    sr = ZERO
                    sg = ZERO
                    sb = ZERO
                    sd = ZERO
                    for k in range(last - 1, -1, -1):
                        dx = geo[k, 0] - fx
                        dy = geo[k, 1] - fy
                        power = geo[k, 2] * dx * dx + geo[k, 4] * dy * dy + geo[k, 3] * dx * dy
                        if power > geo[k, 5]:
                            continue
                        gauss = math.exp(-power)
                        raw = geo[k, 6] * gauss
                        alpha = min(ALPHA_MAX, raw)
                        if alpha < ALPHA_MIN:
                            continue
                        ratio = ONE / (ONE - alpha)
                        trans = trans * ratio  # transmittance in front of this Gaussian
                        weight = alpha * trans
                        cr, cg, cb, cz = feat[k, 0], feat[k, 1], feat[k, 2], feat[k, 3]
                        acc[k, 5] += weight * vr
                        acc[k, 6] += weight * vg
                        acc[k, 7] += weight * vb
                        acc[k, 8] += weight * vd
                        v_al = (
                            (cr * trans - sr * ratio) * vr
                            + (cg * trans - sg * ratio) * vg
                            + (cb * trans - sb * ratio) * vb
                            + (cz * trans - sd * ratio) * vd
                            + va * t_final * ratio
                        )
                        sr += cr * weight
                        sg += cg * weight
                        sb += cb * weight
                        sd += cz * weight
                        if raw <= ALPHA_MAX:  # the clamp passes no gradient
                            acc[k, 9] += v_al * gauss
                            v_pow = -v_al * alpha
                            acc[k, 0] += v_pow * (TWO * geo[k, 2] * dx + geo[k, 3] * dy)
                            acc[k, 1] += v_pow * (TWO * geo[k, 4] * dy + geo[k, 3] * dx)
                            acc[k, 2] += v_pow * HALF * dx * dx
                            acc[k, 3] += v_pow * dx * dy
                            acc[k, 4] += v_pow * HALF * dy * dy
            pair_grads[start : start + n] = acc[:n]


@njit(parallel=True, cache=True)
def reduce_grads(
    order, g_offsets, g_slots, pair_grads, v_means2d, v_conics, v_colors, v_depths, v_opac
):
    """Sum each Gaussian's pair gradients; ``v_opac`` is accumulated (+=) across calls."""
    n = order.shape[0]
    chunk = 1024
    for c in prange((n + chunk - 1) // chunk):
        s = np.empty(N_GRAD, np.float32)
        for k in range(c * chunk, min(n, (c + 1) * chunk)):
            g = order[k]
            s[:] = ZERO
            for p in range(g_offsets[k], g_offsets[k + 1]):
                slot = g_slots[p]
                for q in range(N_GRAD):
                    s[q] += pair_grads[slot, q]
            v_means2d[g, 0] = s[0]
            v_means2d[g, 1] = s[1]
            v_conics[g, 0] = s[2]
            v_conics[g, 1] = s[3]
            v_conics[g, 2] = s[4]
            v_colors[g, 0] = s[5]
            v_colors[g, 1] = s[6]
            v_colors[g, 2] = s[7]
            v_depths[g] = s[8]
            v_opac[g] += s[9]
