"""Optimising Gaussians through the cpu backend fits an image."""

from __future__ import annotations

import pytest
import torch

from compgs.render import render_views
from tests.render.scenes import orbit_views, params_of, random_scene


@pytest.mark.slow
def test_fitting_lowers_l1_by_ninety_percent():
    W, H = 64, 48
    viewmats, Ks = orbit_views(2, W, H, radius=3.5)
    with torch.no_grad():
        truth = random_scene(80, sh_degree=1, seed=1).to(dtype=torch.float32)
        target = render_views(truth, viewmats, Ks, width=W, height=H, backend="cpu").rgb
    init = random_scene(150, sh_degree=1, seed=2)
    init.opacities = torch.zeros_like(init.opacities)
    params = params_of(init)
    rates = {
        "means": 0.01,
        "quats": 0.02,
        "scales": 0.02,
        "opacities": 0.05,
        "sh0": 0.02,
        "shN": 0.01,
    }
    optim = torch.optim.Adam(
        [{"params": [getattr(params, k)], "lr": lr} for k, lr in rates.items()]
    )
    losses = []
    for _ in range(300):
        out = render_views(params, viewmats, Ks, width=W, height=H, backend="cpu")
        loss = (out.rgb - target).abs().mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[0] > 0.05
    assert losses[-1] < 0.1 * losses[0]
