"""gsplat (CUDA) agrees with the cpu backend. Skips without CUDA and gsplat."""

from __future__ import annotations

import pytest
import torch

from compgs.render import gsplat_available, render_views
from tests.render.scenes import orbit_views, params_of, random_scene

pytestmark = pytest.mark.skipif(
    not gsplat_available(),
    reason="gsplat backend needs CUDA and gsplat (pip install 'compgs[cuda]')",
)

W, H = 64, 48


def test_gsplat_matches_cpu_images_and_gradients():
    viewmats, Ks = orbit_views(2, W, H)
    splats = random_scene(300, seed=0)
    # Opacities below 0.99 so that gsplat's 0.999 alpha clamp and ours agree.
    splats.opacities = splats.opacities.clamp(max=3.0)
    weights = torch.randn(2, H, W, 3, generator=torch.Generator().manual_seed(0))
    outs, grads = {}, {}
    for backend, device in (("cpu", "cpu"), ("gsplat", "cuda")):
        params = params_of(splats.to(device=device))
        out = render_views(
            params, viewmats.to(device), Ks.to(device), width=W, height=H, backend=backend
        )
        (out.rgb * weights.to(device)).sum().backward()
        outs[backend] = out.rgb.detach().cpu()
        grads[backend] = params.means.grad.cpu()
        assert out.meta["means2d"].grad is not None
    assert (outs["cpu"] - outs["gsplat"]).abs().mean() < 1e-3
    rel = (grads["cpu"] - grads["gsplat"]).norm() / grads["gsplat"].norm()
    assert rel < 1e-2
