"""Real spherical harmonics up to degree 3, in the layout of the INRIA 3DGS code.

Colour of a Gaussian seen along the unit direction ``d`` (from the camera
centre to the Gaussian) is ``max(0, sum_k basis_k(d) * coeff_k + 0.5)``.
The constants and the sign convention are those of 3DGS / gsplat, so splats
trained elsewhere render with the same colours here.
"""

from __future__ import annotations

import torch

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def sh_basis(dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """The ``(degree+1)^2`` basis values for unit directions ``dirs`` [..., 3]."""
    x, y, z = dirs.unbind(-1)
    out = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            SH_C2[0] * x * y,
            SH_C2[1] * y * z,
            SH_C2[2] * (2 * zz - xx - yy),
            SH_C2[3] * x * z,
            SH_C2[4] * (xx - yy),
        ]
    if degree >= 3:
        out += [
            SH_C3[0] * y * (3 * xx - yy),
            SH_C3[1] * x * y * z,
            SH_C3[2] * y * (4 * zz - xx - yy),
            SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy),
            SH_C3[4] * x * (4 * zz - xx - yy),
            SH_C3[5] * z * (xx - yy),
            SH_C3[6] * x * (xx - 3 * yy),
        ]
    return torch.stack(out, dim=-1)


def sh_to_color(coeffs: torch.Tensor, dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """RGB from SH ``coeffs`` [..., K, 3] (K >= (degree+1)^2) seen along ``dirs`` [..., 3].

    ``dirs`` need not be normalised. The result is clamped at 0 (not at 1), as in 3DGS.
    """
    n_used = (degree + 1) ** 2
    unit = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    basis = sh_basis(unit, degree)  # [..., n_used]
    rgb = (basis.unsqueeze(-1) * coeffs[..., :n_used, :]).sum(dim=-2)
    return torch.clamp_min(rgb + 0.5, 0.0)
