"""The compiled CPU backend: numba kernels wrapped in two autograd Functions.

`_Project` maps the pre-activation Gaussians to per-camera 2D means, conics,
depths and SH colours; `_Rasterize` composites those into images. They are
split where gsplat splits them, so that ``means2d`` is an ordinary
intermediate tensor whose ``.grad`` (retained) gives the view-space gradient
that 3DGS densification needs. Both accept any tensors (non-leaf ones, e.g.
straight-through-quantized values, included); work is done in float32 on the
CPU and results come back in the inputs' dtype and device.
"""

from __future__ import annotations

import os

# numba's OpenMP workers busy-wait after every parallel region by default; on a
# small machine they then steal the cores from torch and from the next kernel
# (forward+backward measured 2-4x slower). numba loads its OpenMP runtime at the
# first parallel launch, so this reaches it even when torch (which has its own
# runtime, already initialised and unaffected) was imported first.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numba  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from compgs.errors import CompgsError  # noqa: E402
from compgs.render import _binning as bk  # noqa: E402
from compgs.render import _project_kernels as pk  # noqa: E402
from compgs.render import _raster_kernels as rk  # noqa: E402
from compgs.render import constants as K  # noqa: E402

TILE_SIZE = 8  # a multiple of the 4x4 lane groups; 8 beat 16 on every scene measured

# GNU OpenMP cannot run parallel regions in a child forked after it started: the
# child would be killed (or a pool hang). Remember whether that happened, so that
# the child gets a clear error instead. numba's TBB layer has no such limit.
_fork_state = {"launched": False, "forked_after_launch": False}


def _after_fork_in_child() -> None:
    _fork_state["forked_after_launch"] = _fork_state["launched"]


os.register_at_fork(after_in_child=_after_fork_in_child)


def _check_fork_safety() -> None:
    if _fork_state["forked_after_launch"] and numba.threading_layer() == "omp":
        raise CompgsError(
            "the cpu renderer cannot run in a process forked after it was used "
            "(numba's OpenMP layer is not fork-safe): start worker processes with the "
            "'spawn' method, or install tbb (pip install tbb)"
        )


def _np32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


def _np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).contiguous().numpy()


def _back(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(a).to(device=like.device, dtype=like.dtype)


def _campos(viewmats: np.ndarray) -> np.ndarray:
    """Camera centres [C,3] from world-to-camera matrices: -R^T t."""
    R = viewmats[:, :3, :3]
    t = viewmats[:, :3, 3]
    return -np.einsum("cji,cj->ci", R, t)


class _Project(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, log_scales, opacities, sh0, shN, viewmats, Ks, settings):
        width, height, sh_degree, near, far = settings
        m, q, c0, cn = (_np32(t) for t in (means, quats, sh0, shN))
        scales = np.exp(_np32(log_scales))
        thresholds = _thresholds(_np32(opacities))
        view = _np64(viewmats)
        intr = _np64(Ks)
        campos = _campos(view)
        C, N = view.shape[0], m.shape[0]
        means2d = np.empty((C, N, 2), np.float32)
        conics = np.empty((C, N, 3), np.float32)
        depths = np.empty((C, N), np.float32)
        colors = np.empty((C, N, 3), np.float32)
        radii = np.empty((C, N), np.int32)
        rects = np.empty((C, N, 4), np.int32)
        pk.project_forward(
            m, q, scales, thresholds, c0, cn, sh_degree, view, intr, campos,
            width, height, near, far,
            means2d, conics, depths, colors, radii, rects,
        )  # fmt: skip
        ctx.arrays = (m, q, scales, c0, cn, view, intr, campos, radii, colors)
        ctx.settings = settings
        ctx.likes = (means, quats, log_scales, sh0, shN)
        radii_t = torch.from_numpy(radii).to(means.device)
        rects_t = torch.from_numpy(rects).to(means.device)
        ctx.mark_non_differentiable(radii_t, rects_t)
        ctx.set_materialize_grads(False)
        return (
            _back(means2d, means),
            _back(conics, means),
            _back(colors, means),
            _back(depths, means),
            radii_t,
            rects_t,
        )

    @staticmethod
    def backward(ctx, v_means2d, v_conics, v_colors, v_depths, _radii, _rects):
        m, q, scales, c0, cn, view, intr, campos, radii, colors = ctx.arrays
        width, height, sh_degree, _, _ = ctx.settings
        C, N = radii.shape

        def grad_or_zeros(g, shape):
            return np.zeros(shape, np.float32) if g is None else _np32(g)

        v_m2 = grad_or_zeros(v_means2d, (C, N, 2))
        v_co = grad_or_zeros(v_conics, (C, N, 3))
        v_cl = grad_or_zeros(v_colors, (C, N, 3))
        v_dp = grad_or_zeros(v_depths, (C, N))
        out = [np.empty(a.shape, np.float32) for a in (m, q, scales, c0, cn)]
        pk.project_backward(
            m, q, scales, c0, cn, sh_degree, view, intr, campos, width, height, radii,
            colors, v_m2, v_co, v_dp, v_cl, *out,
        )  # fmt: skip
        means, quats, log_scales, sh0, shN = (_back(a, like) for a, like in zip(out, ctx.likes))
        return means, quats, log_scales, None, sh0, shN, None, None, None


def _thresholds(opacities: np.ndarray) -> np.ndarray:
    """log(255 * opacity): alpha = opacity * exp(-power) >= 1/255 iff power <= this."""
    with np.errstate(divide="ignore"):
        return np.log(np.float32(255.0) * opacities)


def _depth_order(visible: np.ndarray, depths: np.ndarray) -> np.ndarray:
    """Visible ids sorted front to back, ties by id (a stable argsort, 5-10x faster).

    Visible Gaussians have depth > near > 0, and positive float32s order like their
    bit patterns, so one sort of (depth bits << 32 | id) does it.
    """
    bits = depths[visible].view(np.uint32).astype(np.uint64)
    keys = (bits << np.uint64(32)) | visible.astype(np.uint64)
    return (np.sort(keys) & np.uint64(0xFFFFFFFF)).astype(np.int32)


class _Rasterize(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means2d, conics, colors, opacities, depths, radii, rects, settings):
        width, height, tile_size = settings
        tiles_x = (width + tile_size - 1) // tile_size
        tiles_y = (height + tile_size - 1) // tile_size
        n_workers = numba.get_num_threads()
        m2, co, cl, dp = (_np32(t) for t in (means2d, conics, colors, depths))
        op = _np32(opacities)
        thr = _thresholds(op)
        rad = radii.cpu().numpy()
        rec = rects.cpu().numpy()
        C = m2.shape[0]
        rgb = np.empty((C, height, width, 3), np.float32)
        alpha = np.empty((C, height, width), np.float32)
        depth = np.empty((C, height, width), np.float32)
        trans = np.empty((C, height, width), np.float32)
        last = np.empty((C, height, width), np.int32)
        bins = []
        for c in range(C):
            order = _depth_order(np.flatnonzero(rad[c] > 0), dp[c])
            offsets, tile_gauss, g_offsets, g_slots = bk.bin_tiles(
                order, rec[c], tile_size, tiles_x, tiles_y, n_workers
            )
            # Heaviest tiles first, dealt round-robin: a cheap static load balance.
            tile_order = np.argsort(-np.diff(offsets), kind="stable")
            rk.raster_forward(
                offsets, tile_gauss, tile_order, n_workers,
                m2[c], co[c], cl[c], op, thr, dp[c], rec[c],
                width, height, tile_size, tiles_x,
                rgb[c], alpha[c], depth[c], trans[c], last[c],
            )  # fmt: skip
            bins.append((order, offsets, tile_gauss, g_offsets, g_slots, tile_order))
        ctx.arrays = (m2, co, cl, op, thr, dp, rec, trans, last)
        ctx.bins = bins
        ctx.settings = (width, height, tile_size, tiles_x, n_workers)
        ctx.likes = (means2d, conics, colors, opacities, depths)
        ctx.set_materialize_grads(False)
        like = means2d
        return _back(rgb, like), _back(alpha[..., None], like), _back(depth[..., None], like)

    @staticmethod
    def backward(ctx, v_rgb, v_alpha, v_depth):
        m2, co, cl, op, thr, dp, rec, trans, last = ctx.arrays
        width, height, tile_size, tiles_x, n_workers = ctx.settings
        C, N = dp.shape
        shape = (C, height, width)
        g_rgb = np.zeros(shape + (3,), np.float32) if v_rgb is None else _np32(v_rgb)
        g_alpha = np.zeros(shape, np.float32) if v_alpha is None else _np32(v_alpha[..., 0])
        g_depth = np.zeros(shape, np.float32) if v_depth is None else _np32(v_depth[..., 0])
        v_m2 = np.zeros((C, N, 2), np.float32)
        v_co = np.zeros((C, N, 3), np.float32)
        v_cl = np.zeros((C, N, 3), np.float32)
        v_dp = np.zeros((C, N), np.float32)
        v_op = np.zeros(N, np.float32)
        for c, (order, offsets, tile_gauss, g_offsets, g_slots, tile_order) in enumerate(ctx.bins):
            pair_grads = np.empty((tile_gauss.shape[0], bk.N_GRAD), np.float32)
            rk.raster_backward(
                offsets, tile_gauss, tile_order, n_workers,
                m2[c], co[c], cl[c], op, thr, dp[c], rec[c],
                width, height, tile_size, tiles_x,
                trans[c], last[c], g_rgb[c], g_alpha[c], g_depth[c], pair_grads,
            )  # fmt: skip
            bk.reduce_grads(
                order, g_offsets, g_slots, pair_grads, v_m2[c], v_co[c], v_cl[c], v_dp[c], v_op
            )
        grads = (_back(a, like) for a, like in zip((v_m2, v_co, v_cl, v_op, v_dp), ctx.likes))
        return (*grads, None, None, None)


def render_cpu(
    means: torch.Tensor,
    quats: torch.Tensor,
    log_scales: torch.Tensor,
    opacity_logits: torch.Tensor,
    sh0: torch.Tensor,
    shN: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    sh_degree: int,
    near: float = K.NEAR_PLANE,
    far: float = K.FAR_PLANE,
    tile_size: int = TILE_SIZE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """rgb [C,H,W,3], alpha [C,H,W,1], summed depth [C,H,W,1] and the projection."""
    _check_fork_safety()
    opacities = torch.sigmoid(opacity_logits)
    settings = (int(width), int(height), int(sh_degree), float(near), float(far))
    means2d, conics, colors, depths, radii, rects = _Project.apply(
        means, quats, log_scales, opacities, sh0, shN, viewmats, Ks, settings
    )
    rgb, alpha, depth = _Rasterize.apply(
        means2d,
        conics,
        colors,
        opacities,
        depths,
        radii,
        rects,
        (int(width), int(height), tile_size),
    )
    _fork_state["launched"] = True
    proj = {
        "means2d": means2d,
        "conics": conics,
        "depths": depths,
        "radii": radii,
        "visible": radii > 0,
    }
    return rgb, alpha, depth, proj
