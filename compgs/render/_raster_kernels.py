"""Numba kernels: front-to-back compositing over tile lists, and its backward.

The image is cut into square tiles whose Gaussian lists, front to back, come
from `compgs.render._binning.bin_tiles`.

`raster_forward` walks each pixel front to back with early termination; it
records each pixel's final transmittance and the index of its last
contributing Gaussian. Pixels go in 4x4 lane groups whose inner loop is
branch-free, so LLVM turns it into SIMD code (with a polynomial exp, as no
vector exp is available without SVML); a scalar loop with a cut-off before
exp() was 2-4x slower, its branches being unpredictable. Each group skips the
Gaussians whose pixel rectangle misses it.

`raster_backward` walks the same lists back to front from each pixel's last
contributor, recovering the transmittance by division as the 3DGS CUDA
rasterizer does, so it costs about 1.5x the forward. Gradients are summed per
(tile, Gaussian) pair, so no two threads ever write the same memory;
`reduce_grads` then adds up each Gaussian's pairs. Results do not depend on
the number of threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from compgs.render import constants as K
from compgs.render._binning import N_GRAD

F32 = np.float32
ZERO = F32(0.0)
HALF = F32(0.5)
ONE = F32(1.0)
TWO = F32(2.0)
ALPHA_MIN = F32(K.ALPHA_MIN)
ALPHA_MAX = F32(K.ALPHA_MAX)
T_MIN = F32(K.T_MIN)
# Pixels are processed in GROUP_W x GROUP_H blocks of LANES lanes; 16 float32
# lanes is what LLVM vectorises well (smaller groups fall back to scalar code).
GROUP_W = 4
GROUP_H = 4
LANES = GROUP_W * GROUP_H
CHECK_EVERY = 8  # Gaussians between checks for a fully terminated lane group
EXP_CLAMP = F32(16.0)
INV16 = F32(1.0 / 16.0)
E2, E3, E4 = F32(1.0 / 2.0), F32(1.0 / 6.0), F32(1.0 / 24.0)
E5, E6, E7 = F32(1.0 / 120.0), F32(1.0 / 720.0), F32(1.0 / 5040.0)


@njit(cache=True, error_model="numpy")
def _exp_neg(x):
    """exp(-x) for x >= 0, branch-free so that the lane loops vectorise.

    exp(-x) = exp(-x/16)^16 with a degree-7 Taylor polynomial for exp(-x/16); the
    relative error is below 2e-6 wherever alpha can pass the 1/255 cut-off
    (x <= log(255) ~ 5.5). Inputs are clamped so that far-away lanes stay finite.
    """
    y = min(x, EXP_CLAMP) * INV16
    p = ONE - y * (ONE - y * (E2 - y * (E3 - y * (E4 - y * (E5 - y * (E6 - y * E7))))))
    p = p * p
    p = p * p
    p = p * p
    return p * p


@njit(cache=True, error_model="numpy")
def _splat(mx, my, half_a, b, half_c, px, py):
    """Offset, Mahalanobis power and exp(-power) of a Gaussian at a pixel centre.

    Shared by the forward and the backward so that both take the same skip
    decisions. Takes scalars: loads from the scratch arrays inside the lane loop
    could alias the lane stores and stop LLVM from vectorising.
    """
    dx = mx - px
    dy = my - py
    power = half_a * dx * dx + half_c * dy * dy + b * dx * dy
    return dx, dy, power, _exp_neg(power)


@njit(cache=True)
def _gather(tile_gauss, start, n, means2d, conics, colors, opac, thr, depths, rects, geo, box):
    """Copy one tile's Gaussians, front to back, into structure-of-arrays scratch."""
    for k in range(n):
        g = tile_gauss[start + k]
        geo[0, k] = means2d[g, 0]
        geo[1, k] = means2d[g, 1]
        geo[2, k] = HALF * conics[g, 0]
        geo[3, k] = conics[g, 1]
        geo[4, k] = HALF * conics[g, 2]
        geo[5, k] = thr[g]
        geo[6, k] = opac[g]
        geo[7, k] = colors[g, 0]
        geo[8, k] = colors[g, 1]
        geo[9, k] = colors[g, 2]
        geo[10, k] = depths[g]
        for q in range(4):
            box[q, k] = rects[g, q]


@njit(cache=True)
def _max_tile_len(offsets):
    out = 0
    for t in range(offsets.shape[0] - 1):
        out = max(out, offsets[t + 1] - offsets[t])
    return out


@njit(cache=True)
def _misses(box, k, gx, gy):
    """True when Gaussian k's pixel rectangle misses the lane group at (gx, gy)."""
    return (
        box[1, k] < gx
        or box[0, k] > gx + GROUP_W - 1
        or box[3, k] < gy
        or box[2, k] > gy + GROUP_H - 1
    )


@njit(parallel=True, cache=True, error_model="numpy")
def raster_forward(
    offsets, tile_gauss, tile_order, n_workers,
    means2d, conics, colors, opac, thr, depths, rects,
    width, height, tile_size, tiles_x,
    out_rgb, out_alpha, out_depth, out_trans, out_last,
):  # fmt: skip
    """Composite one camera; every output pixel is written.

    Pixels are processed in groups of LANES (a GROUP_W x GROUP_H block) that walk
    the tile's list together: the loop over lanes is branch-free and vectorises,
    each lane keeps its own early termination, and a group stops when all its
    lanes have (checked every CHECK_EVERY Gaussians).
    """
    n_tiles = offsets.shape[0] - 1
    maxn = _max_tile_len(offsets)
    for w in prange(n_workers):
        geo = np.empty((11, maxn), np.float32)
        box = np.empty((4, maxn), np.int32)
        lx = np.empty(LANES, np.float32)
        ly = np.empty(LANES, np.float32)
        trans = np.empty(LANES, np.float32)
        acc_r = np.empty(LANES, np.float32)
        acc_g = np.empty(LANES, np.float32)
        acc_b = np.empty(LANES, np.float32)
        acc_d = np.empty(LANES, np.float32)
        active = np.empty(LANES, np.int32)
        last = np.empty(LANES, np.int32)
        for j in range(w, n_tiles, n_workers):
            t = tile_order[j]
            start = offsets[t]
            n = offsets[t + 1] - start
            x0 = (t % tiles_x) * tile_size
            y0 = (t // tiles_x) * tile_size
            _gather(
                tile_gauss, start, n, means2d, conics, colors, opac, thr, depths, rects, geo, box
            )
            for gy in range(y0, min(y0 + tile_size, height), GROUP_H):
                for gx in range(x0, min(x0 + tile_size, width), GROUP_W):
                    for lane in range(LANES):
                        px = gx + lane % GROUP_W
                        py = gy + lane // GROUP_W
                        lx[lane] = F32(px) + HALF
                        ly[lane] = F32(py) + HALF
                        active[lane] = 1 if px < width and py < height else 0
                        trans[lane] = ONE
                        acc_r[lane] = ZERO
                        acc_g[lane] = ZERO
                        acc_b[lane] = ZERO
                        acc_d[lane] = ZERO
                        last[lane] = 0
                    since_check = 0
                    for k in range(n):
                        if _misses(box, k, gx, gy):
                            continue
                        mx, my = geo[0, k], geo[1, k]
                        a2_k, b2_k, c2_k = geo[2, k], geo[3, k], geo[4, k]
                        thr_k, op_k = geo[5, k], geo[6, k]
                        r_k, g_k, b_k, z_k = geo[7, k], geo[8, k], geo[9, k], geo[10, k]
                        k1 = np.int32(k + 1)
                        for lane in range(LANES):
                            _, _, power, gauss = _splat(
                                mx, my, a2_k, b2_k, c2_k, lx[lane], ly[lane]
                            )
                            alpha = min(ALPHA_MAX, op_k * gauss)
                            # power <= thr is alpha >= 1/255 up to rounding; both are
                            # tested so that the decision is exactly the reference's.
                            ok = (power <= thr_k) & (alpha >= ALPHA_MIN) & (active[lane] != 0)
                            next_t = trans[lane] * (ONE - alpha)
                            use = ok & (next_t >= T_MIN)
                            weight = alpha * trans[lane] if use else ZERO
                            acc_r[lane] += r_k * weight
                            acc_g[lane] += g_k * weight
                            acc_b[lane] += b_k * weight
                            acc_d[lane] += z_k * weight
                            trans[lane] = next_t if use else trans[lane]
                            last[lane] = k1 if use else last[lane]
                            active[lane] = 0 if ok & (next_t < T_MIN) else active[lane]
                        since_check += 1
                        if since_check == CHECK_EVERY:
                            since_check = 0
                            alive = 0
                            for lane in range(LANES):
                                alive += active[lane]
                            if alive == 0:
                                break
                    for lane in range(LANES):
                        px = gx + lane % GROUP_W
                        py = gy + lane // GROUP_W
                        if px < width and py < height:
                            out_rgb[py, px, 0] = acc_r[lane]
                            out_rgb[py, px, 1] = acc_g[lane]
                            out_rgb[py, px, 2] = acc_b[lane]
                            out_depth[py, px] = acc_d[lane]
                            out_alpha[py, px] = ONE - trans[lane]
                            out_trans[py, px] = trans[lane]
                            out_last[py, px] = last[lane]


@njit(parallel=True, cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def raster_backward(
    offsets, tile_gauss, tile_order, n_workers,
    means2d, conics, colors, opac, thr, depths, rects,
    width, height, tile_size, tiles_x,
    out_trans, out_last, v_rgb, v_alpha, v_depth, pair_grads,
):  # fmt: skip
    """Per (tile, Gaussian) pair gradients [I, 10] from pixel gradients.

    Columns: d mean2d (x, y), d conic (a, b, c), d colour (r, g, b), d depth, d opacity.
    Lane groups walk back to front from their last contributing Gaussian; the sums
    over lanes are reassociated (fastmath) so that they vectorise, while the skip
    decisions come from `_splat`, compiled without fastmath, as in the forward.
    """
    n_tiles = offsets.shape[0] - 1
    maxn = _max_tile_len(offsets)
    for w in prange(n_workers):
        geo = np.empty((11, maxn), np.float32)
        box = np.empty((4, maxn), np.int32)
        acc = np.empty((maxn, N_GRAD), np.float32)
        lx = np.empty(LANES, np.float32)
        ly = np.empty(LANES, np.float32)
        trans = np.empty(LANES, np.float32)
        t_final = np.empty(LANES, np.float32)
        g_r = np.empty(LANES, np.float32)
        g_g = np.empty(LANES, np.float32)
        g_b = np.empty(LANES, np.float32)
        g_a = np.empty(LANES, np.float32)
        g_d = np.empty(LANES, np.float32)
        s_r = np.empty(LANES, np.float32)
        s_g = np.empty(LANES, np.float32)
        s_b = np.empty(LANES, np.float32)
        s_d = np.empty(LANES, np.float32)
        last = np.empty(LANES, np.int32)
        for j in range(w, n_tiles, n_workers):
            t = tile_order[j]
            start = offsets[t]
            n = offsets[t + 1] - start
            x0 = (t % tiles_x) * tile_size
            y0 = (t // tiles_x) * tile_size
            _gather(
                tile_gauss, start, n, means2d, conics, colors, opac, thr, depths, rects, geo, box
            )
            acc[:n] = ZERO
            for gy in range(y0, min(y0 + tile_size, height), GROUP_H):
                for gx in range(x0, min(x0 + tile_size, width), GROUP_W):
                    k_end = 0
                    for lane in range(LANES):
                        px = gx + lane % GROUP_W
                        py = gy + lane // GROUP_W
                        lx[lane] = F32(px) + HALF
                        ly[lane] = F32(py) + HALF
                        s_r[lane] = ZERO
                        s_g[lane] = ZERO
                        s_b[lane] = ZERO
                        s_d[lane] = ZERO
                        if px < width and py < height:
                            last[lane] = out_last[py, px]
                            trans[lane] = out_trans[py, px]
                            g_r[lane] = v_rgb[py, px, 0]
                            g_g[lane] = v_rgb[py, px, 1]
                            g_b[lane] = v_rgb[py, px, 2]
                            g_a[lane] = v_alpha[py, px]
                            g_d[lane] = v_depth[py, px]
                        else:
                            last[lane] = 0
                            trans[lane] = ONE
                            g_r[lane] = ZERO
                            g_g[lane] = ZERO
                            g_b[lane] = ZERO
                            g_a[lane] = ZERO
                            g_d[lane] = ZERO
                        t_final[lane] = trans[lane]
                        k_end = max(k_end, last[lane])
                    for k in range(k_end - 1, -1, -1):
                        if _misses(box, k, gx, gy):
                            continue
                        mx, my = geo[0, k], geo[1, k]
                        a2_k, b2_k, c2_k = geo[2, k], geo[3, k], geo[4, k]
                        thr_k, op_k = geo[5, k], geo[6, k]
                        r_k, g_k, b_k, z_k = geo[7, k], geo[8, k], geo[9, k], geo[10, k]
                        k32 = np.int32(k)
                        d_mx = ZERO
                        d_my = ZERO
                        d_a = ZERO
                        d_b = ZERO
                        d_c = ZERO
                        d_r = ZERO
                        d_g = ZERO
                        d_bl = ZERO
                        d_z = ZERO
                        d_op = ZERO
                        for lane in range(LANES):
                            dx, dy, power, gauss = _splat(
                                mx, my, a2_k, b2_k, c2_k, lx[lane], ly[lane]
                            )
                            raw = op_k * gauss
                            alpha = min(ALPHA_MAX, raw)
                            ok = (k32 < last[lane]) & (power <= thr_k) & (alpha >= ALPHA_MIN)
                            ratio = ONE / (ONE - alpha)
                            t_front = trans[lane] * ratio  # transmittance in front of k
                            weight = alpha * t_front if ok else ZERO
                            trans[lane] = t_front if ok else trans[lane]
                            d_r += weight * g_r[lane]
                            d_g += weight * g_g[lane]
                            d_bl += weight * g_b[lane]
                            d_z += weight * g_d[lane]
                            v_alpha_k = (
                                (r_k * t_front - s_r[lane] * ratio) * g_r[lane]
                                + (g_k * t_front - s_g[lane] * ratio) * g_g[lane]
                                + (b_k * t_front - s_b[lane] * ratio) * g_b[lane]
                                + (z_k * t_front - s_d[lane] * ratio) * g_d[lane]
                                + g_a[lane] * t_final[lane] * ratio
                            )
                            s_r[lane] += r_k * weight
                            s_g[lane] += g_k * weight
                            s_b[lane] += b_k * weight
                            s_d[lane] += z_k * weight
                            # The 0.99 clamp passes no gradient to opacity or power.
                            v_al = v_alpha_k if ok & (raw <= ALPHA_MAX) else ZERO
                            d_op += v_al * gauss
                            v_pow = -v_al * alpha
                            d_mx += v_pow * (TWO * a2_k * dx + b2_k * dy)
                            d_my += v_pow * (TWO * c2_k * dy + b2_k * dx)
                            d_a += v_pow * HALF * dx * dx
                            d_b += v_pow * dx * dy
                            d_c += v_pow * HALF * dy * dy
                        acc[k, 0] += d_mx
                        acc[k, 1] += d_my
                        acc[k, 2] += d_a
                        acc[k, 3] += d_b
                        acc[k, 4] += d_c
                        acc[k, 5] += d_r
                        acc[k, 6] += d_g
                        acc[k, 7] += d_bl
                        acc[k, 8] += d_z
                        acc[k, 9] += d_op
            pair_grads[start : start + n] = acc[:n]
