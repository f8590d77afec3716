"""Numba kernels: project Gaussians into cameras and evaluate their SH colour.

Forward and hand-derived backward of the same maths as `reference.project`
and `sh.sh_to_color` (the tests hold them to the reference's autograd).
Per-Gaussian work is done in float64 scalars (cheap on a CPU, and it keeps
huge or nearly degenerate covariances finite); arrays are float32.
Parallel over Gaussians, with the cameras in the inner loop so that the
backward can sum over cameras without races.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from compgs.render import constants as K
from compgs.render._sh_kernels import sh_basis, sh_dir_grad

ALPHA_MIN = K.ALPHA_MIN
EPS2D = K.EPS2D
FOV_CLAMP = K.FOV_CLAMP
REL_MARGIN = K.EXTENT_REL_MARGIN
ABS_MARGIN = K.EXTENT_ABS_MARGIN
CHUNK = 256  # Gaussians per parallel work item (its scratch is allocated once)


@njit(cache=True)
def _rotation(qw, qx, qy, qz):
    """Normalised quaternion and its rotation matrix (row-major), as torch normalize does."""
    norm = max(math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz), 1e-12)
    inv = 1.0 / norm
    w, x, y, z = qw * inv, qx * inv, qy * inv, qz * inv
    rot = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )  # fmt: skip
    return w, x, y, z, norm, rot


@njit(cache=True)
def _sandwich(r, s):
    """R S R^T for a row-major 3x3 ``r`` (9-tuple) and symmetric ``s`` (upper 6-tuple)."""
    s00, s01, s02, s11, s12, s22 = s
    t00 = r[0] * s00 + r[1] * s01 + r[2] * s02
    t01 = r[0] * s01 + r[1] * s11 + r[2] * s12
    t02 = r[0] * s02 + r[1] * s12 + r[2] * s22
    t10 = r[3] * s00 + r[4] * s01 + r[5] * s02
    t11 = r[3] * s01 + r[4] * s11 + r[5] * s12
    t12 = r[3] * s02 + r[4] * s12 + r[5] * s22
    t20 = r[6] * s00 + r[7] * s01 + r[8] * s02
    t21 = r[6] * s01 + r[7] * s11 + r[8] * s12
    t22 = r[6] * s02 + r[7] * s12 + r[8] * s22
    return (
        t00 * r[0] + t01 * r[1] + t02 * r[2],
        t00 * r[3] + t01 * r[4] + t02 * r[5],
        t00 * r[6] + t01 * r[7] + t02 * r[8],
        t10 * r[3] + t11 * r[4] + t12 * r[5],
        t10 * r[6] + t11 * r[7] + t12 * r[8],
        t20 * r[6] + t21 * r[7] + t22 * r[8],
    )


@njit(cache=True)
def _transpose(r):
    return (r[0], r[3], r[6], r[1], r[4], r[7], r[2], r[5], r[8])


@njit(cache=True)
def _world_cov(r, s0, s1, s2):
    """R diag(s)^2 R^T as an upper 6-tuple."""
    return _sandwich(r, (s0 * s0, 0.0, 0.0, s1 * s1, 0.0, s2 * s2))


@njit(cache=True)
def _view(V, c):
    """Rotation (9-tuple) and translation of viewmat c."""
    rot = (
        V[c, 0, 0], V[c, 0, 1], V[c, 0, 2],
        V[c, 1, 0], V[c, 1, 1], V[c, 1, 2],
        V[c, 2, 0], V[c, 2, 1], V[c, 2, 2],
    )  # fmt: skip
    return rot, V[c, 0, 3], V[c, 1, 3], V[c, 2, 3]


@njit(cache=True)
def _camera_table(Ks, width, height):
    """Per camera: fx, fy, cx, cy and the x/z, y/z range the Jacobian is clamped to."""
    out = np.empty((Ks.shape[0], 8))
    for c in range(Ks.shape[0]):
        fx, fy, cx, cy = Ks[c, 0, 0], Ks[c, 1, 1], Ks[c, 0, 2], Ks[c, 1, 2]
        widen_x = FOV_CLAMP * 0.5 * width / fx
        widen_y = FOV_CLAMP * 0.5 * height / fy
        out[c, 0], out[c, 1], out[c, 2], out[c, 3] = fx, fy, cx, cy
        out[c, 4] = -(cx / fx + widen_x)
        out[c, 5] = (width - cx) / fx + widen_x
        out[c, 6] = -(cy / fy + widen_y)
        out[c, 7] = (height - cy) / fy + widen_y
    return out


@njit(cache=True)
def _cov2d(rot, cov, x, y, z, fx, fy, lo_u, hi_u, lo_v, hi_v):
    """EWA projection: x/z, y/z, their clamped values, the Jacobian's entries, the
    camera-space covariance and the 2D covariance (a, b, c) + eps."""
    iz = 1.0 / z
    xz, yz = x * iz, y * iz
    u = min(max(xz, lo_u), hi_u)
    v = min(max(yz, lo_v), hi_v)
    j00, j02 = fx * iz, -fx * u * iz
    j11, j12 = fy * iz, -fy * v * iz
    w = _sandwich(rot, cov)  # camera-space covariance, upper 6-tuple
    a = j00 * j00 * w[0] + 2 * j00 * j02 * w[2] + j02 * j02 * w[5] + EPS2D
    b = j00 * j11 * w[1] + j00 * j12 * w[2] + j02 * j11 * w[4] + j02 * j12 * w[5]
    c = j11 * j11 * w[3] + 2 * j11 * j12 * w[4] + j12 * j12 * w[5] + EPS2D
    return xz, yz, u, v, j00, j02, j11, j12, w, a, b, c


@njit(parallel=True, cache=True)
def project_forward(
    means, quats, scales, thresholds, sh0, shN, sh_degree, viewmats, Ks, campos,
    width, height, near, far,
    means2d, conics, depths, colors, radii, rects,
):  # fmt: skip
    """Fill means2d/conics/depths/colors [C,N,...], radii [C,N] and pixel rects [C,N,4].

    ``scales`` are activated (exp of the log-scales) and ``thresholds`` are
    log(255 * opacity): both come from numpy's vectorised exp/log, which are
    much cheaper than scalar libm calls here.

    A rect is the inclusive pixel range (x_lo, x_hi, y_lo, y_hi) whose centres can
    get alpha >= 1/255; invisible Gaussians get radius 0 and an empty rect.
    """
    n = means.shape[0]
    n_cams = viewmats.shape[0]
    n_used = (sh_degree + 1) ** 2
    cams = _camera_table(Ks, width, height)
    n_chunks = (n + CHUNK - 1) // CHUNK
    for chunk in prange(n_chunks):
        basis = np.zeros(16)
        for i in range(chunk * CHUNK, min(n, (chunk + 1) * CHUNK)):
            _, _, _, _, _, r = _rotation(quats[i, 0], quats[i, 1], quats[i, 2], quats[i, 3])
            cov = _world_cov(r, float(scales[i, 0]), float(scales[i, 1]), float(scales[i, 2]))
            thr = float(thresholds[i])  # alpha can reach 1/255 only if thr > 0
            pw = (float(means[i, 0]), float(means[i, 1]), float(means[i, 2]))
            for c in range(n_cams):
                rot, tx, ty, tz = _view(viewmats, c)
                x = rot[0] * pw[0] + rot[1] * pw[1] + rot[2] * pw[2] + tx
                y = rot[3] * pw[0] + rot[4] * pw[1] + rot[5] * pw[2] + ty
                z = rot[6] * pw[0] + rot[7] * pw[1] + rot[8] * pw[2] + tz
                depths[c, i] = z
                radii[c, i] = 0
                means2d[c, i, 0] = 0.0
                means2d[c, i, 1] = 0.0
                for k in range(3):
                    conics[c, i, k] = 0.0
                    colors[c, i, k] = 0.0
                rects[c, i, 0] = 0
                rects[c, i, 1] = -1
                rects[c, i, 2] = 0
                rects[c, i, 3] = -1
                if not (z > near and z < far and thr > 0.0):  # (NaN fails too)
                    continue
                fx, fy, cx, cy = cams[c, 0], cams[c, 1], cams[c, 2], cams[c, 3]
                xz, yz, _, _, _, _, _, _, _, a, b, cc = _cov2d(
                    rot, cov, x, y, z, fx, fy, cams[c, 4], cams[c, 5], cams[c, 6], cams[c, 7]
                )
                det = a * cc - b * b
                if not det > 0.0:
                    continue
                mx = fx * xz + cx
                my = fy * yz + cy
                ext_x = math.sqrt(2 * thr * a)
                ext_y = math.sqrt(2 * thr * cc)
                pad_x = ext_x * (1 + REL_MARGIN) + ABS_MARGIN
                pad_y = ext_y * (1 + REL_MARGIN) + ABS_MARGIN
                # Pixel centres j + 0.5 within [m - pad, m + pad]; the comparisons are
                # written so that NaN or huge values fall out as "not visible".
                xl, xh = mx - pad_x - 0.5, mx + pad_x - 0.5
                yl, yh = my - pad_y - 0.5, my + pad_y - 0.5
                if not (xl <= width - 1 and xh >= 0 and yl <= height - 1 and yh >= 0):
                    continue
                x_lo = 0 if xl < 0 else int(math.ceil(xl))
                x_hi = width - 1 if xh > width - 1 else int(math.floor(xh))
                y_lo = 0 if yl < 0 else int(math.ceil(yl))
                y_hi = height - 1 if yh > height - 1 else int(math.floor(yh))
                if x_lo > x_hi or y_lo > y_hi:
                    continue
                rects[c, i, 0], rects[c, i, 1] = x_lo, x_hi
                rects[c, i, 2], rects[c, i, 3] = y_lo, y_hi
                radii[c, i] = max(1, int(math.ceil(max(ext_x, ext_y))))
                means2d[c, i, 0] = mx
                means2d[c, i, 1] = my
                idet = 1.0 / det
                conics[c, i, 0] = cc * idet
                conics[c, i, 1] = -b * idet
                conics[c, i, 2] = a * idet
                # Colour seen from this camera.
                dx, dy, dz = pw[0] - campos[c, 0], pw[1] - campos[c, 1], pw[2] - campos[c, 2]
                inv = 1.0 / max(math.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
                sh_basis(dx * inv, dy * inv, dz * inv, sh_degree, basis)
                raw0 = basis[0] * sh0[i, 0, 0]
                raw1 = basis[0] * sh0[i, 0, 1]
                raw2 = basis[0] * sh0[i, 0, 2]
                for k in range(1, n_used):
                    raw0 += basis[k] * shN[i, k - 1, 0]
                    raw1 += basis[k] * shN[i, k - 1, 1]
                    raw2 += basis[k] * shN[i, k - 1, 2]
                colors[c, i, 0] = max(raw0 + 0.5, 0.0)
                colors[c, i, 1] = max(raw1 + 0.5, 0.0)
                colors[c, i, 2] = max(raw2 + 0.5, 0.0)


@njit(parallel=True, cache=True)
def project_backward(
    means, quats, scales, sh0, shN, sh_degree, viewmats, Ks, campos, width, height, radii,
    colors, v_means2d, v_conics, v_depths, v_colors,
    v_means, v_quats, v_log_scales, v_sh0, v_shN,
):  # fmt: skip
    """Gradients w.r.t. means, raw quats, log-scales and SH, summed over cameras.

    Only visible (radii > 0) entries contribute, as in the forward. Every output
    element is written. ``colors`` are the forward's: a colour clamped to 0
    passes no gradient.
    """
    n = means.shape[0]
    n_cams = viewmats.shape[0]
    n_used = (sh_degree + 1) ** 2
    cams = _camera_table(Ks, width, height)
    n_chunks = (n + CHUNK - 1) // CHUNK
    for chunk in prange(n_chunks):
        basis = np.zeros(16)
        weights = np.zeros(16)
        v_coef = np.empty((16, 3))  # SH gradient of one Gaussian, summed over cameras
        n_rest = shN.shape[1]
        for i in range(chunk * CHUNK, min(n, (chunk + 1) * CHUNK)):
            qw, qx, qy, qz, qnorm, r = _rotation(quats[i, 0], quats[i, 1], quats[i, 2], quats[i, 3])
            s0, s1, s2 = float(scales[i, 0]), float(scales[i, 1]), float(scales[i, 2])
            cov = _world_cov(r, s0, s1, s2)
            v_coef[:] = 0.0
            pw = (float(means[i, 0]), float(means[i, 1]), float(means[i, 2]))
            # Gradient w.r.t. the world covariance (upper 6-tuple), summed over cameras.
            vs00, vs01, vs02, vs11, vs12, vs22 = 0.0, 0.0, 0.0, 0.0, 0.0, 0.0
            vpx, vpy, vpz = 0.0, 0.0, 0.0
            for c in range(n_cams):
                if radii[c, i] == 0:
                    continue
                rot, tx, ty, tz = _view(viewmats, c)
                x = rot[0] * pw[0] + rot[1] * pw[1] + rot[2] * pw[2] + tx
                y = rot[3] * pw[0] + rot[4] * pw[1] + rot[5] * pw[2] + ty
                z = rot[6] * pw[0] + rot[7] * pw[1] + rot[8] * pw[2] + tz
                fx, fy = cams[c, 0], cams[c, 1]
                lo_u, hi_u, lo_v, hi_v = cams[c, 4], cams[c, 5], cams[c, 6], cams[c, 7]
                xz, yz, u, v, j00, j02, j11, j12, w, a, b, cc = _cov2d(
                    rot, cov, x, y, z, fx, fy, lo_u, hi_u, lo_v, hi_v
                )
                det = a * cc - b * b
                # conic (A, B, C) = (c, -b, a) / det  ->  gradient w.r.t. (a, b, c).
                vA, vB, vC = v_conics[c, i, 0], v_conics[c, i, 1], v_conics[c, i, 2]
                id2 = 1.0 / (det * det)
                va = (-vA * cc * cc + vB * b * cc - vC * b * b) * id2
                vb = (2 * vA * b * cc - vB * (a * cc + b * b) + 2 * vC * a * b) * id2
                vc = (-vA * b * b + vB * a * b - vC * a * a) * id2
                # cov2d = J W J^T with J = [[j00, 0, j02], [0, j11, j12]]:
                # dW (symmetrised) = va J0 J0^T + vc J1 J1^T + vb (J0 J1^T + J1 J0^T) / 2.
                hb = 0.5 * vb
                vw = (
                    va * j00 * j00,
                    hb * j00 * j11,
                    va * j00 * j02 + hb * j00 * j12,
                    vc * j11 * j11,
                    vc * j11 * j12 + hb * j02 * j11,
                    va * j02 * j02 + vc * j12 * j12 + 2 * hb * j02 * j12,
                )
                # dJ0 = 2 va W J0 + vb W J1, dJ1 = 2 vc W J1 + vb W J0 (W symmetric).
                wj0_0 = w[0] * j00 + w[2] * j02
                wj0_1 = w[1] * j00 + w[4] * j02
                wj0_2 = w[2] * j00 + w[5] * j02
                wj1_0 = w[1] * j11 + w[2] * j12
                wj1_1 = w[3] * j11 + w[4] * j12
                wj1_2 = w[4] * j11 + w[5] * j12
                v_j00 = 2 * va * wj0_0 + vb * wj1_0
                v_j02 = 2 * va * wj0_2 + vb * wj1_2
                v_j11 = 2 * vc * wj1_1 + vb * wj0_1
                v_j12 = 2 * vc * wj1_2 + vb * wj0_2
                iz = 1.0 / z
                iz2 = iz * iz
                vx, vy = 0.0, 0.0
                vz = (
                    -fx * iz2 * v_j00
                    - fy * iz2 * v_j11
                    + fx * u * iz2 * v_j02
                    + fy * v * iz2 * v_j12
                )
                v_u = -fx * iz * v_j02
                v_v = -fy * iz * v_j12
                if lo_u <= xz <= hi_u:  # the clamp passes gradient only inside
                    vx += v_u * iz
                    vz -= x * iz2 * v_u
                if lo_v <= yz <= hi_v:
                    vy += v_v * iz
                    vz -= y * iz2 * v_v
                vmx, vmy = v_means2d[c, i, 0], v_means2d[c, i, 1]
                vx += fx * iz * vmx
                vy += fy * iz * vmy
                vz += -fx * x * iz2 * vmx - fy * y * iz2 * vmy + v_depths[c, i]
                # Back to world space: p_cam = R p + t and W = R S R^T.
                vpx += rot[0] * vx + rot[3] * vy + rot[6] * vz
                vpy += rot[1] * vx + rot[4] * vy + rot[7] * vz
                vpz += rot[2] * vx + rot[5] * vy + rot[8] * vz
                vs = _sandwich(_transpose(rot), vw)
                vs00 += vs[0]
                vs01 += vs[1]
                vs02 += vs[2]
                vs11 += vs[3]
                vs12 += vs[4]
                vs22 += vs[5]
                # SH colour: d colour / d coefficients and d colour / d direction.
                dx, dy, dz = pw[0] - campos[c, 0], pw[1] - campos[c, 1], pw[2] - campos[c, 2]
                inv_nrm = 1.0 / max(math.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
                ux, uy, uz = dx * inv_nrm, dy * inv_nrm, dz * inv_nrm
                sh_basis(ux, uy, uz, sh_degree, basis)
                g0 = v_colors[c, i, 0] if colors[c, i, 0] > 0.0 else 0.0
                g1 = v_colors[c, i, 1] if colors[c, i, 1] > 0.0 else 0.0
                g2 = v_colors[c, i, 2] if colors[c, i, 2] > 0.0 else 0.0
                for k in range(n_used):
                    v_coef[k, 0] += basis[k] * g0
                    v_coef[k, 1] += basis[k] * g1
                    v_coef[k, 2] += basis[k] * g2
                if sh_degree == 0:
                    continue
                for k in range(1, n_used):
                    weights[k] = (
                        shN[i, k - 1, 0] * g0 + shN[i, k - 1, 1] * g1 + shN[i, k - 1, 2] * g2
                    )
                vux, vuy, vuz = sh_dir_grad(ux, uy, uz, sh_degree, weights)
                dot = ux * vux + uy * vuy + uz * vuz
                vpx += (vux - ux * dot) * inv_nrm
                vpy += (vuy - uy * dot) * inv_nrm
                vpz += (vuz - uz * dot) * inv_nrm
            for ch in range(3):
                v_sh0[i, 0, ch] = v_coef[0, ch]
                for k in range(n_rest):
                    v_shN[i, k, ch] = v_coef[k + 1, ch] if k + 1 < n_used else 0.0
            v_means[i, 0] = vpx
            v_means[i, 1] = vpy
            v_means[i, 2] = vpz
            # S = R diag(s^2) R^T: with P = dS R, dR = 2 P diag(s^2) and
            # d log s_k = 2 s_k^2 (R^T P)_kk.
            p = _mul_sym(vs00, vs01, vs02, vs11, vs12, vs22, r)
            sq = (s0 * s0, s1 * s1, s2 * s2)
            for k in range(3):
                v_log_scales[i, k] = (
                    2 * sq[k] * (r[k] * p[k] + r[3 + k] * p[3 + k] + r[6 + k] * p[6 + k])
                )
            g00, g01, g02 = 2 * p[0] * sq[0], 2 * p[1] * sq[1], 2 * p[2] * sq[2]
            g10, g11, g12 = 2 * p[3] * sq[0], 2 * p[4] * sq[1], 2 * p[5] * sq[2]
            g20, g21, g22 = 2 * p[6] * sq[0], 2 * p[7] * sq[1], 2 * p[8] * sq[2]
            vw_ = 2 * (-qz * g01 + qy * g02 + qz * g10 - qx * g12 - qy * g20 + qx * g21)
            vx_ = 2 * (
                qy * g01
                + qz * g02
                + qy * g10
                - 2 * qx * g11
                - qw * g12
                + qz * g20
                + qw * g21
                - 2 * qx * g22
            )
            vy_ = 2 * (
                -2 * qy * g00
                + qx * g01
                + qw * g02
                + qx * g10
                + qz * g12
                - qw * g20
                + qz * g21
                - 2 * qy * g22
            )
            vz_ = 2 * (
                -2 * qz * g00
                - qw * g01
                + qx * g02
                + qw * g10
                - 2 * qz * g11
                + qy * g12
                + qx * g20
                + qy * g21
            )
            # Through the normalisation q / |q|.
            dot = qw * vw_ + qx * vx_ + qy * vy_ + qz * vz_
            inv_q = 1.0 / qnorm
            v_quats[i, 0] = (vw_ - qw * dot) * inv_q
            v_quats[i, 1] = (vx_ - qx * dot) * inv_q
            v_quats[i, 2] = (vy_ - qy * dot) * inv_q
            v_quats[i, 3] = (vz_ - qz * dot) * inv_q


@njit(cache=True)
def _mul_sym(s00, s01, s02, s11, s12, s22, r):
    """S R for symmetric S (upper entries) and row-major R, as a 9-tuple."""
    return (
        s00 * r[0] + s01 * r[3] + s02 * r[6],
        s00 * r[1] + s01 * r[4] + s02 * r[7],
        s00 * r[2] + s01 * r[5] + s02 * r[8],
        s01 * r[0] + s11 * r[3] + s12 * r[6],
        s01 * r[1] + s11 * r[4] + s12 * r[7],
        s01 * r[2] + s11 * r[5] + s12 * r[8],
        s02 * r[0] + s12 * r[3] + s22 * r[6],
        s02 * r[1] + s12 * r[4] + s22 * r[7],
        s02 * r[2] + s12 * r[5] + s22 * r[8],
    )
