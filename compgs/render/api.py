"""`render()`: one differentiable renderer over three backends.

``cpu`` (numba kernels, the default without CUDA), ``gsplat`` (CUDA) and
``reference`` (slow pure torch, the oracle for tests) take the same inputs and
return the same `RenderOutput`. Parameters arrive pre-activation, exactly as
`Splats` stores them; gradients flow to all six fields, whatever tensors they
are (leaf parameters or, e.g., straight-through-quantized values).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
from typing import Any

import torch

from compgs.data.cameras import Cameras
from compgs.errors import InputError
from compgs.render import constants as K
from compgs.splats import Splats

log = logging.getLogger(__name__)

BACKENDS = ("auto", "cpu", "gsplat", "reference")
_logged_auto: set[str] = set()


@dataclasses.dataclass
class RenderOutput:
    """Images of C cameras, channels last.

    ``rgb`` [C,H,W,3] with the background composited under it, ``alpha``
    [C,H,W,1] accumulated opacity, ``depth`` [C,H,W,1] expected camera-space z
    (sum of w_i z_i over alpha; 0 where nothing was drawn). ``meta`` holds what
    densification needs (see `render_views`).
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    meta: dict[str, Any]


def gsplat_available() -> bool:
    """True when CUDA is usable and the gsplat package is installed."""
    return torch.cuda.is_available() and importlib.util.find_spec("gsplat") is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    """The concrete backend for ``backend`` ("auto" picks gsplat on CUDA tensors)."""
    if backend not in BACKENDS:
        raise InputError(f"unknown render backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        if backend == "gsplat" and not gsplat_available():
            raise InputError(
                "render backend 'gsplat' needs CUDA and the gsplat package "
                "(pip install 'compgs[cuda]'); use backend='cpu' on this machine"
            )
        return backend
    if device.type == "cuda" and gsplat_available():
        chosen, why = "gsplat", "CUDA tensors and gsplat are available"
    elif not torch.cuda.is_available():
        chosen, why = "cpu", "CUDA is not available"
    elif importlib.util.find_spec("gsplat") is None:
        chosen, why = "cpu", "gsplat is not installed (pip install 'compgs[cuda]')"
    else:
        chosen, why = "cpu", f"the Gaussians are on {device.type}, not CUDA"
    if why not in _logged_auto:
        _logged_auto.add(why)
        log.info("render backend 'auto' uses %s: %s", chosen, why)
    return chosen


def render(
    splats: Splats,
    cameras: Cameras,
    *,
    width: int | None = None,
    height: int | None = None,
    sh_degree: int | None = None,
    background: torch.Tensor | None = None,
    backend: str = "auto",
    near_plane: float = K.NEAR_PLANE,
    far_plane: float = K.FAR_PLANE,
) -> RenderOutput:
    """Render ``splats`` from every camera of ``cameras`` (pinhole, OpenCV convention).

    ``width``/``height`` default to the cameras' own size (all cameras must then
    share it). See `render_views` for the other arguments and the outputs.
    """
    if cameras.distortion is not None and bool(torch.any(cameras.distortion != 0)):
        raise InputError(
            "render supports undistorted pinhole cameras only; undistort the images first"
        )
    if width is None or height is None:
        sizes = {(int(w), int(h)) for w, h in zip(cameras.width, cameras.height)}
        if len(sizes) != 1:
            raise InputError(
                f"cameras have {len(sizes)} different image sizes; pass width and height"
            )
        ((cam_w, cam_h),) = sizes
        width = cam_w if width is None else width
        height = cam_h if height is None else height
    device = splats.device
    return render_views(
        splats,
        cameras.viewmats().to(device),
        cameras.K.to(device),
        width=width,
        height=height,
        sh_degree=sh_degree,
        background=background,
        backend=backend,
        near_plane=near_plane,
        far_plane=far_plane,
    )


def render_views(
    splats: Splats,
    viewmats: torch.Tensor,
    Ks: torch.Tensor,
    *,
    width: int,
    height: int,
    sh_degree: int | None = None,
    background: torch.Tensor | None = None,
    backend: str = "auto",
    near_plane: float = K.NEAR_PLANE,
    far_plane: float = K.FAR_PLANE,
) -> RenderOutput:
    """Render from world-to-camera ``viewmats`` [C,4,4] and intrinsics ``Ks`` [C,3,3].

    ``sh_degree`` (default: all bands of ``splats``) may be lower than the
    splats' degree; ``background`` is an RGB [3] or [C,3] composited under
    the image (default black). ``meta`` of the result:

    * ``means2d`` [C,N,2]: projected centres in pixels, in the autograd graph;
      its ``.grad`` (retained) after ``backward()`` is the view-space gradient
      3DGS densification accumulates (normalise by width/2, height/2 and
      ``n_cameras``, as gsplat's DefaultStrategy does). 0 where not visible.
    * ``radii`` [C,N] int32: screen radius in pixels, 0 when not visible.
    * ``visible`` [C,N] bool (radii > 0); ``depths`` [C,N] camera-space z;
      ``conics`` [C,N,3] inverse 2D covariances (a, b, c).
    * ``width``, ``height``, ``n_cameras``, ``sh_degree``, ``backend``, and
      ``gaussian_ids`` = None (the unpacked [C,N] layout).
    """
    viewmats, Ks = _check_views(splats, viewmats, Ks, width, height)
    degree = splats.sh_degree if sh_degree is None else int(sh_degree)
    if not 0 <= degree <= splats.sh_degree:
        raise InputError(
            f"sh_degree must be in 0..{splats.sh_degree} for these splats, got {degree}"
        )
    n_cams = viewmats.shape[0]
    bg = _check_background(background, n_cams, splats)
    chosen = resolve_backend(backend, splats.device)
    fields = (splats.means, splats.quats, splats.scales, splats.opacities, splats.sh0, splats.shN)
    args = (viewmats, Ks, int(width), int(height), degree, float(near_plane), float(far_plane))
    if chosen == "cpu":
        from compgs.render.cpu import render_cpu

        rgb, alpha, depth_sum, proj = render_cpu(*fields, *args)
    elif chosen == "reference":
        from compgs.render.reference import render_reference

        rgb, alpha, depth_sum, proj = render_reference(*fields, *args)
    else:
        from compgs.render.gsplat_backend import render_gsplat

        rgb, alpha, depth_sum, proj = render_gsplat(*fields, *args)
    if bg is not None:
        rgb = rgb + (1 - alpha) * bg[:, None, None, :]
    depth = depth_sum / alpha.clamp_min(1e-10)
    means2d = proj["means2d"]
    if means2d.requires_grad:
        means2d.retain_grad()
    meta = {
        "means2d": means2d,
        "radii": proj["radii"],
        "visible": proj["visible"],
        "depths": proj["depths"],
        "conics": proj["conics"],
        "width": int(width),
        "height": int(height),
        "n_cameras": n_cams,
        "sh_degree": degree,
        "backend": chosen,
        "gaussian_ids": None,
    }
    return RenderOutput(rgb=rgb, alpha=alpha, depth=depth, meta=meta)


def _check_views(splats, viewmats, Ks, width, height):
    if not isinstance(viewmats, torch.Tensor) or viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4):
        raise InputError(f"viewmats must be a [C,4,4] tensor, got {_shape(viewmats)}")
    if not isinstance(Ks, torch.Tensor) or Ks.shape != (viewmats.shape[0], 3, 3):
        raise InputError(f"Ks must be a [{viewmats.shape[0]},3,3] tensor, got {_shape(Ks)}")
    for name, value in (("width", width), ("height", height)):
        if int(value) != value or int(value) < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    dtype, device = splats.dtype, splats.device
    # Cameras carry no gradient here: the renderer is not differentiable w.r.t. them.
    return viewmats.detach().to(device, dtype), Ks.detach().to(device, dtype)


def _check_background(background, n_cams, splats):
    if background is None:
        return None
    bg = torch.as_tensor(background, dtype=splats.dtype, device=splats.device)
    if bg.shape == (3,):
        return bg.expand(n_cams, 3)
    if bg.shape == (n_cams, 3):
        return bg
    raise InputError(f"background must have shape [3] or [{n_cams},3], got {list(bg.shape)}")


def _shape(value) -> str:
    return str(list(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__
