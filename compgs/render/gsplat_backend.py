"""The gsplat backend: `gsplat.rasterization` on CUDA (``pip install 'compgs[cuda]'``).

Same inputs and outputs as the other backends. gsplat's own conventions
differ in two small ways that we leave alone, since users training on a GPU
want gsplat's behaviour: alpha is clamped at 0.999 (not 0.99), and gsplat
releases since 1.5 report per-axis radii, of which we report the larger.
"""

from __future__ import annotations

import torch

from compgs.render import constants as K


def render_gsplat(
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
    from gsplat import rasterization

    coeffs = torch.cat([sh0, shN], dim=1)
    image, alpha, meta = rasterization(
        means,
        quats,
        torch.exp(log_scales),
        torch.sigmoid(opacity_logits),
        coeffs,
        viewmats,
        Ks,
        width,
        height,
        near_plane=near,
        far_plane=far,
        eps2d=K.EPS2D,
        sh_degree=sh_degree,
        packed=False,
        render_mode="RGB+D",
        rasterize_mode="classic",
    )
    radii = meta["radii"]
    if radii.ndim == 3:  # gsplat >= 1.5: per-axis radii [C,N,2]
        radii = radii.max(dim=-1).values
    radii = radii.to(torch.int32)
    proj = {
        "means2d": meta["means2d"],
        "conics": meta["conics"],
        "depths": meta["depths"],
        "radii": radii,
        "visible": radii > 0,
    }
    return image[..., :3], alpha, image[..., 3:4], proj
