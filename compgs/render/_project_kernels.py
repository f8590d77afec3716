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
from compgs.render.sh import SH_C0, SH_C1, SH_C2, SH_C3

ALPHA_MIN = K.ALPHA_MIN
EPS2D = K.EPS2D
FOV_CLAMP = K.FOV_CLAMP
REL_MARGIN = K.EXTENT_REL_MARGIN
ABS_MARGIN = K.EXTENT_ABS_MARGIN
C1 = SH_C1
C20, C21, C22, C23, C24 = SH_C2
C30, C31, C32, C33, C34, C35, C36 = SH_C3
CHUNK = 256  # Gaussians per parallel work item (per-item scratch is allocated once)


@njit(cache=True)
def _rotation(qw, qx, qy, qz):
    """Normalised quaternion and its rotation matrix (row-major), as torch normalize does."""
    norm = max(math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz), 1e-12)
    w, x, y, z = qw / norm, qx / norm, qy / norm, qz / norm
    rot = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )  # fmt: skip
    return w, x, y, z, norm, rot


@njit(cache=True)
def _sh_basis(x, y, z, degree, out):
    """Fill ``out[:(degree+1)^2]`` with the SH basis at the unit direction (x, y, z)."""
    out[0] = SH_C0
    if degree < 1:
        return
    out[1] = -C1 * y
    out[2] = C1 * z
    out[3] = -C1 * x
    if degree < 2:
        return
    xx, yy, zz = x * x, y * y, z * z
    out[4] = C20 * x * y
    out[5] = C21 * y * z
    out[6] = C22 * (2 * zz - xx - yy)
    out[7] = C23 * x * z
    out[8] = C24 * (xx - yy)
    if degree < 3:
        return
    out[9] = C30 * y * (3 * xx - yy)
    out[10] = C31 * x * y * z
    out[11] = C32 * y * (4 * zz - xx - yy)
    out[12] = C33 * z * (2 * zz - 3 * xx - 3 * yy)
    out[13] = C34 * x * (4 * zz - xx - yy)
    out[14] = C35 * z * (xx - yy)
    out[15] = C36 * x * (xx - 3 * yy)


@njit(cache=True)
def _sh_basis_grad(x, y, z, degree, gx, gy, gz):
    """Partial derivatives of the basis w.r.t. the unit direction's x, y and z."""
    for k in range(16):
        gx[k] = 0.0
        gy[k] = 0.0
        gz[k] = 0.0
    if degree < 1:
        return
    gy[1] = -C1
    gz[2] = C1
    gx[3] = -C1
    if degree < 2:
        return
    xx, yy, zz = x * x, y * y, z * z
    gx[4], gy[4] = C20 * y, C20 * x
    gy[5], gz[5] = C21 * z, C21 * y
    gx[6], gy[6], gz[6] = -2 * C22 * x, -2 * C22 * y, 4 * C22 * z
    gx[7], gz[7] = C23 * z, C23 * x
    gx[8], gy[8] = 2 * C24 * x, -2 * C24 * y
    if degree < 3:
        return
    gx[9], gy[9] = 6 * C30 * x * y, C30 * (3 * xx - 3 * yy)
    gx[10], gy[10], gz[10] = C31 * y * z, C31 * x * z, C31 * x * y
    gx[11], gy[11], gz[11] = -2 * C32 * x * y, C32 * (4 * zz - xx - 3 * yy), 8 * C32 * y * z
    gx[12], gy[12], gz[12] = -6 * C33 * x * z, -6 * C33 * y * z, C33 * (6 * zz - 3 * xx - 3 * yy)
    gx[13], gy[13], gz[13] = C34 * (4 * zz - 3 * xx - yy), -2 * C34 * x * y, 8 * C34 * x * z
    gx[14], gy[14], gz[14] = 2 * C35 * x * z, -2 * C35 * y * z, C35 * (xx - yy)
    gx[15], gy[15] = C36 * (3 * xx - 3 * yy), -6 * C36 * x * y


@njit(cache=True)
def _coeff(sh0, shN, i, k, ch):
    return sh0[i, 0, ch] if k == 0 else shN[i, k - 1, ch]


@njit(cache=True)
def _fov_limits(fx, fy, cx, cy, width, height):
    widen_x = FOV_CLAMP * 0.5 * width / fx
    widen_y = FOV_CLAMP * 0.5 * height / fy
    return (
        -(cx / fx + widen_x),
        (width - cx) / fx + widen_x,
        -(cy / fy + widen_y),
        (height - cy) / fy + widen_y,
    )


@njit(cache=True)
def _cam_cov(V, c, s00, s01, s02, s11, s12, s22, t, out):
    """Camera-space covariance ``out`` = V S V^T for viewmat V[c] (``t`` is scratch)."""
    for j in range(3):
        v0, v1, v2 = V[c, j, 0], V[c, j, 1], V[c, j, 2]
        t[j, 0] = v0 * s00 + v1 * s01 + v2 * s02
        t[j, 1] = v0 * s01 + v1 * s11 + v2 * s12
        t[j, 2] = v0 * s02 + v1 * s12 + v2 * s22
    for j in range(3):
        for k in range(3):
            out[j, k] = t[j, 0] * V[c, k, 0] + t[j, 1] * V[c, k, 1] + t[j, 2] * V[c, k, 2]


@njit(parallel=True, cache=True)
def project_forward(
    means, quats, log_scales, opacities, sh0, shN, sh_degree, viewmats, Ks, campos,
    width, height, near, far,
    means2d, conics, depths, colors, radii, rects,
):  # fmt: skip
    """Fill means2d/conics/depths/colors [C,N,...], radii [C,N] and pixel rects [C,N,4]."""
    n = means.shape[0]
    n_cams = viewmats.shape[0]
    n_chunks = (n + CHUNK - 1) // CHUNK
    for chunk in prange(n_chunks):
        basis = np.zeros(16)
        tmp, W = np.empty((3, 3)), np.empty((3, 3))
        for i in range(chunk * CHUNK, min(n, (chunk + 1) * CHUNK)):
            _, _, _, _, _, r = _rotation(quats[i, 0], quats[i, 1], quats[i, 2], quats[i, 3])
            s0, s1, s2 = math.exp(log_scales[i, 0]), math.exp(log_scales[i, 1]), math.exp(log_scales[i, 2])
            m00, m01, m02 = r[0] * s0, r[1] * s1, r[2] * s2
            m10, m11, m12 = r[3] * s0, r[4] * s1, r[5] * s2
            m20, m21, m22 = r[6] * s0, r[7] * s1, r[8] * s2
            S00 = m00 * m00 + m01 * m01 + m02 * m02
            S01 = m00 * m10 + m01 * m11 + m02 * m12
            S02 = m00 * m20 + m01 * m21 + m02 * m22
            S11 = m10 * m10 + m11 * m11 + m12 * m12
            S12 = m10 * m20 + m11 * m21 + m12 * m22
            S22 = m20 * m20 + m21 * m21 + m22 * m22
            op = float(opacities[i])
            thr = math.log(255.0 * op) if op > ALPHA_MIN else 0.0
            px_w, py_w, pz_w = float(means[i, 0]), float(means[i, 1]), float(means[i, 2])
            for c in range(n_cams):
                V = viewmats
                x = V[c, 0, 0] * px_w + V[c, 0, 1] * py_w + V[c, 0, 2] * pz_w + V[c, 0, 3]
                y = V[c, 1, 0] * px_w + V[c, 1, 1] * py_w + V[c, 1, 2] * pz_w + V[c, 1, 3]
                z = V[c, 2, 0] * px_w + V[c, 2, 1] * py_w + V[c, 2, 2] * pz_w + V[c, 2, 3]
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
                if not (z > near and z < far and thr > 0.0):
                    continue
                fx, fy, cx, cy = Ks[c, 0, 0], Ks[c, 1, 1], Ks[c, 0, 2], Ks[c, 1, 2]
                lo_u, hi_u, lo_v, hi_v = _fov_limits(fx, fy, cx, cy, width, height)
                u = min(max(x / z, lo_u), hi_u)
                v = min(max(y / z, lo_v), hi_v)
                j00, j02 = fx / z, -fx * u / z
                j11, j12 = fy / z, -fy * v / z
                _cam_cov(V, c, S00, S01, S02, S11, S12, S22, tmp, W)
                a = j00 * j00 * W[0, 0] + 2 * j00 * j02 * W[0, 2] + j02 * j02 * W[2, 2] + EPS2D
                b = j00 * j11 * W[0, 1] + j00 * j12 * W[0, 2] + j02 * j11 * W[1, 2] + j02 * j12 * W[2, 2]
                cc = j11 * j11 * W[1, 1] + 2 * j11 * j12 * W[1, 2] + j12 * j12 * W[2, 2] + EPS2D
                det = a * cc - b * b
                if not det > 0.0:
                    continue
                mx = fx * x / z + cx
                my = fy * y / z + cy
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
                conics[c, i, 0] = cc / det
                conics[c, i, 1] = -b / det
                conics[c, i, 2] = a / det
                # Colour seen from this camera.
                dx, dy, dz = px_w - campos[c, 0], py_w - campos[c, 1], pz_w - campos[c, 2]
                inv = 1.0 / max(math.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
                _sh_basis(dx * inv, dy * inv, dz * inv, sh_degree, basis)
                for ch in range(3):
                    raw = 0.0
                    for k in range((sh_degree + 1) ** 2):
                        raw += basis[k] * _coeff(sh0, shN, i, k, ch)
                    colors[c, i, ch] = max(raw + 0.5, 0.0)


@njit(parallel=True, cache=True)
def project_backward(
    means, quats, log_scales, sh0, shN, sh_degree, viewmats, Ks, campos, width, height, radii,
    v_means2d, v_conics, v_depths, v_colors,
    v_means, v_quats, v_log_scales, v_sh0, v_shN,
):  # fmt: skip
    """Gradients w.r.t. means, raw quats, log-scales and SH, summed over cameras.

    Only visible (radii > 0) entries contribute, as in the forward.
    """
    n = means.shape[0]
    n_cams = viewmats.shape[0]
    n_used = (sh_degree + 1) ** 2
    n_chunks = (n + CHUNK - 1) // CHUNK
    for chunk in prange(n_chunks):
        basis = np.zeros(16)
        gbx, gby, gbz = np.zeros(16), np.zeros(16), np.zeros(16)
        vW = np.empty((3, 3))
        vS = np.empty((3, 3))
        vM = np.empty(9)
        tmp, W = np.empty((3, 3)), np.empty((3, 3))
        for i in range(chunk * CHUNK, min(n, (chunk + 1) * CHUNK)):
            qw, qx, qy, qz, qnorm, r = _rotation(quats[i, 0], quats[i, 1], quats[i, 2], quats[i, 3])
            s0, s1, s2 = math.exp(log_scales[i, 0]), math.exp(log_scales[i, 1]), math.exp(log_scales[i, 2])
            m = (
                r[0] * s0, r[1] * s1, r[2] * s2,
                r[3] * s0, r[4] * s1, r[5] * s2,
                r[6] * s0, r[7] * s1, r[8] * s2,
            )  # fmt: skip
            S00 = m[0] * m[0] + m[1] * m[1] + m[2] * m[2]
            S01 = m[0] * m[3] + m[1] * m[4] + m[2] * m[5]
            S02 = m[0] * m[6] + m[1] * m[7] + m[2] * m[8]
            S11 = m[3] * m[3] + m[4] * m[4] + m[5] * m[5]
            S12 = m[3] * m[6] + m[4] * m[7] + m[5] * m[8]
            S22 = m[6] * m[6] + m[7] * m[7] + m[8] * m[8]
            px_w, py_w, pz_w = float(means[i, 0]), float(means[i, 1]), float(means[i, 2])
            for j in range(3):
                for k in range(3):
                    vS[j, k] = 0.0
            vpx, vpy, vpz = 0.0, 0.0, 0.0
            for c in range(n_cams):
                if radii[c, i] == 0:
                    continue
                V = viewmats
                x = V[c, 0, 0] * px_w + V[c, 0, 1] * py_w + V[c, 0, 2] * pz_w + V[c, 0, 3]
                y = V[c, 1, 0] * px_w + V[c, 1, 1] * py_w + V[c, 1, 2] * pz_w + V[c, 1, 3]
                z = V[c, 2, 0] * px_w + V[c, 2, 1] * py_w + V[c, 2, 2] * pz_w + V[c, 2, 3]
                fx, fy, cx, cy = Ks[c, 0, 0], Ks[c, 1, 1], Ks[c, 0, 2], Ks[c, 1, 2]
                lo_u, hi_u, lo_v, hi_v = _fov_limits(fx, fy, cx, cy, width, height)
                u = min(max(x / z, lo_u), hi_u)
                v = min(max(y / z, lo_v), hi_v)
                j00, j02 = fx / z, -fx * u / z
                j11, j12 = fy / z, -fy * v / z
                _cam_cov(V, c, S00, S01, S02, S11, S12, S22, tmp, W)
                a = j00 * j00 * W[0, 0] + 2 * j00 * j02 * W[0, 2] + j02 * j02 * W[2, 2] + EPS2D
                b = j00 * j11 * W[0, 1] + j00 * j12 * W[0, 2] + j02 * j11 * W[1, 2] + j02 * j12 * W[2, 2]
                cc = j11 * j11 * W[1, 1] + 2 * j11 * j12 * W[1, 2] + j12 * j12 * W[2, 2] + EPS2D
                det = a * cc - b * b
                # conic (A, B, C) = (c, -b, a) / det  ->  gradient w.r.t. (a, b, c).
                vA, vB, vC = v_conics[c, i, 0], v_conics[c, i, 1], v_conics[c, i, 2]
                id2 = 1.0 / (det * det)
                va = (-vA * cc * cc + vB * b * cc - vC * b * b) * id2
                vb = (2 * vA * b * cc - vB * (a * cc + b * b) + 2 * vC * a * b) * id2
                vc = (-vA * b * b + vB * a * b - vC * a * a) * id2
                # cov2d = J W J^T: gradient w.r.t. W (symmetrised) and J's non-zeros.
                J0 = (j00, 0.0, j02)
                J1 = (0.0, j11, j12)
                for p in range(3):
                    for q in range(3):
                        vW[p, q] = va * J0[p] * J0[q] + vc * J1[p] * J1[q] + 0.5 * vb * (J0[p] * J1[q] + J1[p] * J0[q])
                wj0_0 = W[0, 0] * j00 + W[0, 2] * j02
                wj0_2 = W[2, 0] * j00 + W[2, 2] * j02
                wj1_1 = W[1, 1] * j11 + W[1, 2] * j12
                wj1_2 = W[2, 1] * j11 + W[2, 2] * j12
                wj1_0 = W[0, 1] * j11 + W[0, 2] * j12
                wj0_1 = W[1, 0] * j00 + W[1, 2] * j02
                v_j00 = 2 * va * wj0_0 + vb * wj1_0
                v_j02 = 2 * va * wj0_2 + vb * wj1_2
                v_j11 = 2 * vc * wj1_1 + vb * wj0_1
                v_j12 = 2 * vc * wj1_2 + vb * wj0_2
                vx, vy = 0.0, 0.0
                vz = -fx / (z * z) * v_j00 - fy / (z * z) * v_j11
                vz += fx * u / (z * z) * v_j02 + fy * v / (z * z) * v_j12
                v_u = -fx / z * v_j02
                v_v = -fy / z * v_j12
                if lo_u <= x / z <= hi_u:
                    vx += v_u / z
                    vz -= x / (z * z) * v_u
                if lo_v <= y / z <= hi_v:
                    vy += v_v / z
                    vz -= y / (z * z) * v_v
                vmx, vmy = v_means2d[c, i, 0], v_means2d[c, i, 1]
                vx += fx / z * vmx
                vy += fy / z * vmy
                vz += -fx * x / (z * z) * vmx - fy * y / (z * z) * vmy + v_depths[c, i]
                # Back to world space: p_cam = V p + t, W = V S V^T.
                vpx += V[c, 0, 0] * vx + V[c, 1, 0] * vy + V[c, 2, 0] * vz
                vpy += V[c, 0, 1] * vx + V[c, 1, 1] * vy + V[c, 2, 1] * vz
                vpz += V[c, 0, 2] * vx + V[c, 1, 2] * vy + V[c, 2, 2] * vz
                for p in range(3):
                    for q in range(3):
                        acc = 0.0
                        for r1 in range(3):
                            for r2 in range(3):
                                acc += V[c, r1, p] * vW[r1, r2] * V[c, r2, q]
                        vS[p, q] += acc
                # SH colour: d colour / d coefficients and d colour / d direction.
                dx, dy, dz = px_w - campos[c, 0], py_w - campos[c, 1], pz_w - campos[c, 2]
                nrm = max(math.sqrt(dx * dx + dy * dy + dz * dz), 1e-12)
                ux, uy, uz = dx / nrm, dy / nrm, dz / nrm
                _sh_basis(ux, uy, uz, sh_degree, basis)
                if sh_degree > 0:
                    _sh_basis_grad(ux, uy, uz, sh_degree, gbx, gby, gbz)
                vux, vuy, vuz = 0.0, 0.0, 0.0
                for ch in range(3):
                    raw = 0.0
                    for k in range(n_used):
                        raw += basis[k] * _coeff(sh0, shN, i, k, ch)
                    if raw + 0.5 < 0.0:
                        continue  # clamped colour: no gradient
                    g = v_colors[c, i, ch]
                    v_sh0[i, 0, ch] += basis[0] * g
                    for k in range(1, n_used):
                        coef = shN[i, k - 1, ch]
                        v_shN[i, k - 1, ch] += basis[k] * g
                        vux += gbx[k] * coef * g
                        vuy += gby[k] * coef * g
                        vuz += gbz[k] * coef * g
                if sh_degree > 0:
                    dot = ux * vux + uy * vuy + uz * vuz
                    vpx += (vux - ux * dot) / nrm
                    vpy += (vuy - uy * dot) / nrm
                    vpz += (vuz - uz * dot) / nrm
            v_means[i, 0] = vpx
            v_means[i, 1] = vpy
            v_means[i, 2] = vpz
            # S = M M^T with M = R diag(s): dM = 2 vS M (vS symmetric).
            for p in range(3):
                for q in range(3):
                    vM[3 * p + q] = 2 * (vS[p, 0] * m[q] + vS[p, 1] * m[3 + q] + vS[p, 2] * m[6 + q])
            svals = (s0, s1, s2)
            for q in range(3):
                vs = vM[q] * r[q] + vM[3 + q] * r[3 + q] + vM[6 + q] * r[6 + q]
                v_log_scales[i, q] = vs * svals[q]
            g00, g01, g02 = vM[0] * s0, vM[1] * s1, vM[2] * s2
            g10, g11, g12 = vM[3] * s0, vM[4] * s1, vM[5] * s2
            g20, g21, g22 = vM[6] * s0, vM[7] * s1, vM[8] * s2
            vw = 2 * (-qz * g01 + qy * g02 + qz * g10 - qx * g12 - qy * g20 + qx * g21)
            vx_ = 2 * (qy * g01 + qz * g02 + qy * g10 - 2 * qx * g11 - qw * g12 + qz * g20 + qw * g21 - 2 * qx * g22)
            vy_ = 2 * (-2 * qy * g00 + qx * g01 + qw * g02 + qx * g10 + qz * g12 - qw * g20 + qz * g21 - 2 * qy * g22)
            vz_ = 2 * (-2 * qz * g00 - qw * g01 + qx * g02 + qw * g10 - 2 * qz * g11 + qy * g12 + qx * g20 + qy * g21)
            dot = qw * vw + qx * vx_ + qy * vy_ + qz * vz_
            v_quats[i, 0] = (vw - qw * dot) / qnorm
            v_quats[i, 1] = (vx_ - qx * dot) / qnorm
            v_quats[i, 2] = (vy_ - qy * dot) / qnorm
            v_quats[i, 3] = (vz_ - qz * dot) / qnorm
