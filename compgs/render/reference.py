"""The reference renderer: readable pure torch, autograd for gradients.

It is the oracle the compiled backends are tested against, not a training
backend: it evaluates every Gaussian at every pixel (memory O(pixels x N)).
Semantics (those of 3DGS / gsplat):

* EWA splatting: the 3D covariance R S S^T R^T is taken to camera space and
  projected with the pinhole Jacobian evaluated at x/z clamped to 1.3x the
  field of view; 0.3 px^2 is added to the 2D covariance.
* Colour from SH seen from the camera centre, +0.5, clamped at 0.
* Front-to-back compositing in order of camera-space depth z:
  alpha = min(0.99, opacity * exp(-power)), skipped when below 1/255, and a
  pixel stops before its transmittance would drop below 1e-4.
* Pixel centres at +0.5; Gaussians with z <= near or z >= far are culled.
"""

from __future__ import annotations

import torch

from compgs.render import constants as K
from compgs.render.sh import sh_to_color


def quat_to_rotmat(quats: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [N,3,3] from raw wxyz quaternions [N,4]."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return torch.stack(rows, dim=-1).reshape(quats.shape[:-1] + (3, 3))


def project(
    means: torch.Tensor,
    quats: torch.Tensor,
    log_scales: torch.Tensor,
    opacities: torch.Tensor,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    near: float = K.NEAR_PLANE,
    far: float = K.FAR_PLANE,
) -> dict[str, torch.Tensor]:
    """Project N Gaussians into C cameras; ``opacities`` are activated, [N].

    Returns ``means2d`` [C,N,2], ``conics`` [C,N,3] (inverse 2D covariance
    a, b, c with power = a dx^2/2 + b dx dy + c dy^2/2), ``depths`` [C,N],
    ``radii`` [C,N] int32 and ``visible`` [C,N] bool.
    """
    R = viewmats[:, :3, :3]
    t = viewmats[:, :3, 3]
    p = torch.einsum("cij,nj->cni", R, means) + t[:, None, :]
    x, y, z = p.unbind(-1)
    in_depth = (z > near) & (z < far)
    z = torch.where(in_depth, z, torch.ones_like(z))  # keeps culled ones finite

    M = quat_to_rotmat(quats) * torch.exp(log_scales)[:, None, :]
    cov_world = M @ M.transpose(1, 2)
    cov_cam = torch.einsum("cij,njk,clk->cnil", R, cov_world, R)

    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    widen_x = K.FOV_CLAMP * 0.5 * width / fx
    widen_y = K.FOV_CLAMP * 0.5 * height / fy
    u = torch.clamp(x / z, -(cx / fx + widen_x), (width - cx) / fx + widen_x)
    v = torch.clamp(y / z, -(cy / fy + widen_y), (height - cy) / fy + widen_y)
    zeros = torch.zeros_like(z)
    J = torch.stack([fx / z, zeros, -fx * u / z, zeros, fy / z, -fy * v / z], dim=-1).reshape(
        z.shape + (2, 3)
    )
    cov2d = J @ cov_cam @ J.transpose(-1, -2)
    a = cov2d[..., 0, 0] + K.EPS2D
    b = cov2d[..., 0, 1]
    c = cov2d[..., 1, 1] + K.EPS2D
    det = a * c - b * b
    ok = in_depth & (det > 0)
    det = torch.where(ok, det, torch.ones_like(det))
    conics = torch.stack([c / det, -b / det, a / det], dim=-1)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)

    radii, visible, rects = _screen_extent(
        means2d.detach(), a.detach(), c.detach(), opacities.detach(), width, height
    )
    visible &= ok
    radii = torch.where(visible, radii, torch.zeros_like(radii))
    means2d = torch.where(visible[..., None], means2d, torch.zeros_like(means2d))
    return {
        "means2d": means2d,
        "conics": conics,
        "depths": p[..., 2],
        "radii": radii,
        "visible": visible,
        "rects": rects,
    }


def _screen_extent(means2d, var_x, var_y, opacities, width, height):
    """Radii [C,N] int32, whether any pixel centre can get alpha >= 1/255, and the
    inclusive pixel rectangle [C,N,4] (x_lo, x_hi, y_lo, y_hi) of those centres."""
    thr = torch.log(torch.clamp_min(255.0 * opacities, 1e-30))[None, :]  # [1,N]
    usable = thr > 0
    thr = torch.clamp_min(thr, 0.0)
    ext_x = torch.sqrt(2 * thr * var_x)
    ext_y = torch.sqrt(2 * thr * var_y)
    radii = torch.clamp_min(torch.ceil(torch.maximum(ext_x, ext_y)), 1).to(torch.int32)
    mx, my = means2d.unbind(-1)
    pad_x = ext_x * (1 + K.EXTENT_REL_MARGIN) + K.EXTENT_ABS_MARGIN
    pad_y = ext_y * (1 + K.EXTENT_REL_MARGIN) + K.EXTENT_ABS_MARGIN
    # Pixel centres j + 0.5 inside [m - pad, m + pad] for some j in [0, W-1].
    x_lo = torch.clamp(torch.ceil(mx - pad_x - 0.5), min=0)
    x_hi = torch.clamp(torch.floor(mx + pad_x - 0.5), max=width - 1)
    y_lo = torch.clamp(torch.ceil(my - pad_y - 0.5), min=0)
    y_hi = torch.clamp(torch.floor(my + pad_y - 0.5), max=height - 1)
    visible = usable & (x_lo <= x_hi) & (y_lo <= y_hi)
    return radii, visible, torch.stack([x_lo, x_hi, y_lo, y_hi], dim=-1)


def rasterize(
    means2d: torch.Tensor,
    conics: torch.Tensor,
    colors: torch.Tensor,
    opacities: torch.Tensor,
    depths: torch.Tensor,
    visible: torch.Tensor,
    rects: torch.Tensor,
    width: int,
    height: int,
    block: int = 16,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Composite one camera: rgb [H,W,3], alpha [H,W,1], summed depth [H,W,1].

    Inputs are one camera's rows: means2d [N,2], conics [N,3], colors [N,3],
    opacities [N], depths [N], visible [N], rects [N,4]. The image is done in
    blocks of pixels, each against the Gaussians whose rectangle meets it; the
    others have alpha < 1/255 there, so leaving them out changes nothing and
    keeps memory at O(block^2 x Gaussians per block).
    """
    order = torch.argsort(depths.detach(), stable=True)
    rows = []
    for y0 in range(0, height, block):
        y1 = min(y0 + block, height)
        row = []
        for x0 in range(0, width, block):
            x1 = min(x0 + block, width)
            r = rects[order]
            hits = (
                visible[order] & (r[:, 0] < x1) & (r[:, 1] >= x0) & (r[:, 2] < y1) & (r[:, 3] >= y0)
            )
            row.append(
                _composite(order[hits], means2d, conics, colors, opacities, depths, x0, x1, y0, y1)
            )
        rows.append(torch.cat(row, dim=1))
    image = torch.cat(rows, dim=0)  # [H,W,5]
    return image[..., :3], image[..., 3:4], image[..., 4:5]


def _composite(ids, means2d, conics, colors, opacities, depths, x0, x1, y0, y1):
    """Dense front-to-back compositing of Gaussians ``ids`` (front to back) over a
    pixel block; returns [h,w,5] = rgb, alpha, summed depth."""
    dev, dt = means2d.device, means2d.dtype
    ys, xs = torch.meshgrid(
        torch.arange(y0, y1, device=dev, dtype=dt) + 0.5,
        torch.arange(x0, x1, device=dev, dtype=dt) + 0.5,
        indexing="ij",
    )
    pix = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)  # [P,2]
    d = means2d[ids][None, :, :] - pix[:, None, :]  # [P,M,2]
    ca, cb, cc = conics[ids].unbind(-1)
    power = 0.5 * (ca * d[..., 0] ** 2 + cc * d[..., 1] ** 2) + cb * d[..., 0] * d[..., 1]
    alpha = torch.clamp_max(opacities[ids] * torch.exp(-power), K.ALPHA_MAX)
    alpha = torch.where(alpha >= K.ALPHA_MIN, alpha, torch.zeros_like(alpha))
    trans_after = torch.cumprod(1 - alpha, dim=1)
    trans_before = torch.cat([torch.ones_like(trans_after[:, :1]), trans_after[:, :-1]], dim=1)
    # The Gaussian that would take T below T_MIN, and all behind it, are dropped.
    kept = (trans_after >= K.T_MIN).detach()
    weights = alpha * trans_before * kept  # [P,M]
    features = torch.cat(
        [colors[ids], torch.ones_like(depths[ids])[:, None], depths[ids][:, None]], dim=1
    )
    return (weights @ features).reshape(y1 - y0, x1 - x0, 5)


def render_reference(
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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
    """rgb [C,H,W,3], alpha [C,H,W,1], summed depth [C,H,W,1] and the projection."""
    opacities = torch.sigmoid(opacity_logits)
    proj = project(means, quats, log_scales, opacities, viewmats, Ks, width, height, near, far)
    campos = -torch.einsum("cji,cj->ci", viewmats[:, :3, :3], viewmats[:, :3, 3])
    coeffs = torch.cat([sh0, shN], dim=1)
    images, alphas, depths = [], [], []
    for cam in range(viewmats.shape[0]):
        colors = sh_to_color(coeffs, means - campos[cam], sh_degree)
        rgb, alpha, depth = rasterize(
            proj["means2d"][cam],
            proj["conics"][cam],
            colors,
            opacities,
            proj["depths"][cam],
            proj["visible"][cam],
            proj["rects"][cam],
            width,
            height,
        )
        images.append(rgb)
        alphas.append(alpha)
        depths.append(depth)
    return torch.stack(images), torch.stack(alphas), torch.stack(depths), proj
