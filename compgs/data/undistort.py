"""Undistort OpenCV / OpenCV-fisheye images onto a pinhole camera with the same K and size.

Each output pixel's ray is pushed through the *forward* distortion model to
find where it landed in the captured image, which is then sampled
bilinearly: no iterative inversion of the distortion is needed. Rays whose
source falls outside the captured image take the nearest border pixel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from compgs.data.frames import OPENCV, OPENCV_FISHEYE


def distort(x: torch.Tensor, y: torch.Tensor, model: str, d: torch.Tensor):
    """Normalised pinhole coordinates -> distorted normalised coordinates.

    ``d`` = (k1, k2, p1, p2, k3, k4): OPENCV uses k1 k2 k3 radial and p1 p2
    tangential terms; OPENCV_FISHEYE uses k1..k4 on the angle theta.
    """
    k1, k2, p1, p2, k3, k4 = (float(v) for v in d)
    r2 = x * x + y * y
    if model == OPENCV:
        radial = 1 + r2 * (k1 + r2 * (k2 + r2 * k3))
        xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        return xd, yd
    if model == OPENCV_FISHEYE:
        r = torch.sqrt(r2)
        theta = torch.atan(r)
        t2 = theta * theta
        theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
        ratio = torch.where(r > 1e-12, theta_d / r.clamp_min(1e-12), torch.ones_like(r))
        return x * ratio, y * ratio
    raise ValueError(f"no distortion model {model!r}")


def undistort(image: torch.Tensor, K: torch.Tensor, model: str, d: torch.Tensor) -> torch.Tensor:
    """``image`` [H,W,C] float captured through (K, model, d) -> [H,W,C] seen by pinhole K."""
    H, W = image.shape[:2]
    K = K.to(torch.float64)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    v, u = torch.meshgrid(
        torch.arange(H, dtype=torch.float64) + 0.5,
        torch.arange(W, dtype=torch.float64) + 0.5,
        indexing="ij",
    )
    xd, yd = distort((u - cx) / fx, (v - cy) / fy, model, d)
    us, vs = xd * fx + cx, yd * fy + cy
    # grid_sample with align_corners=False puts pixel centres at (i + 0.5) / size * 2 - 1.
    grid = torch.stack([us / W * 2 - 1, vs / H * 2 - 1], dim=-1).to(image.dtype)[None]
    src = image.permute(2, 0, 1)[None]
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[0].permute(1, 2, 0).contiguous()
