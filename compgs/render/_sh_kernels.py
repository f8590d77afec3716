"""Numba helpers: the real SH basis (degree <= 3) and its directional gradient.

Same constants and signs as `compgs.render.sh` (the torch version).
"""

from __future__ import annotations

from numba import njit

from compgs.render.sh import SH_C0, SH_C1, SH_C2, SH_C3

C1 = SH_C1
C20, C21, C22, C23, C24 = SH_C2
C30, C31, C32, C33, C34, C35, C36 = SH_C3


@njit(cache=True)
def sh_basis(x, y, z, degree, out):
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
def sh_dir_grad(x, y, z, degree, w):
    """Gradient of sum_k w[k] basis_k at the unit direction (x, y, z), k >= 1."""
    gx = -C1 * w[3]
    gy = -C1 * w[1]
    gz = C1 * w[2]
    if degree < 2:
        return gx, gy, gz
    xx, yy, zz = x * x, y * y, z * z
    gx += C20 * y * w[4] - 2 * C22 * x * w[6] + C23 * z * w[7] + 2 * C24 * x * w[8]
    gy += C20 * x * w[4] + C21 * z * w[5] - 2 * C22 * y * w[6] - 2 * C24 * y * w[8]
    gz += C21 * y * w[5] + 4 * C22 * z * w[6] + C23 * x * w[7]
    if degree < 3:
        return gx, gy, gz
    gx += (
        6 * C30 * x * y * w[9]
        + C31 * y * z * w[10]
        - 2 * C32 * x * y * w[11]
        - 6 * C33 * x * z * w[12]
        + C34 * (4 * zz - 3 * xx - yy) * w[13]
        + 2 * C35 * x * z * w[14]
        + C36 * (3 * xx - 3 * yy) * w[15]
    )
    gy += (
        C30 * (3 * xx - 3 * yy) * w[9]
        + C31 * x * z * w[10]
        + C32 * (4 * zz - xx - 3 * yy) * w[11]
        - 6 * C33 * y * z * w[12]
        - 2 * C34 * x * y * w[13]
        - 2 * C35 * y * z * w[14]
        - 6 * C36 * x * y * w[15]
    )
    gz += (
        C31 * x * y * w[10]
        + 8 * C32 * y * z * w[11]
        + C33 * (6 * zz - 3 * xx - 3 * yy) * w[12]
        + 8 * C34 * x * z * w[13]
        + C35 * (xx - yy) * w[14]
    )
    return gx, gy, gz
