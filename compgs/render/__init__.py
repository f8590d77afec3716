"""Rendering: one differentiable `render()` over a compiled CPU backend (numba),
gsplat on CUDA, and a pure-torch reference.

    out = render(splats, cameras, width=W, height=H)   # Cameras (OpenCV convention)
    out = render_views(splats, viewmats, Ks, width=W, height=H)  # raw [C,4,4] / [C,3,3]
    out.rgb, out.alpha, out.depth, out.meta["means2d"], out.meta["radii"]
"""

from compgs.render.api import (
    BACKENDS,
    RenderOutput,
    gsplat_available,
    render,
    render_views,
    resolve_backend,
)

__all__ = [
    "BACKENDS",
    "RenderOutput",
    "gsplat_available",
    "render",
    "render_views",
    "resolve_backend",
]
