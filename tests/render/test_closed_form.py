"""A single isotropic Gaussian facing the camera renders the expected 2D footprint."""

from __future__ import annotations

import math

import pytest
import torch

from compgs.render import render_views
from compgs.splats import SH_C0, Splats

W = H = 33


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("offset", [(0.0, 0.0), (2.3, -1.7)])
def test_isotropic_gaussian_footprint(backend, offset):
    f, z, s, opacity = 200.0, 2.0, 0.02, 0.8
    color = torch.tensor([0.9, 0.5, 0.2])
    cx, cy = 16.5 + offset[0], 16.5 + offset[1]  # peak on a pixel centre or between
    splats = Splats(
        means=torch.tensor([[0.0, 0.0, z]]),
        quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
        scales=torch.full((1, 3), math.log(s)),
        opacities=torch.tensor([math.log(opacity / (1 - opacity))]),
        sh0=((color - 0.5) / SH_C0).reshape(1, 1, 3),
        shN=torch.zeros(1, 0, 3),
    )
    Ks = torch.tensor([[[f, 0, cx], [0, f, cy], [0, 0, 1]]])
    out = render_views(splats, torch.eye(4)[None], Ks, width=W, height=H, backend=backend)

    # EWA: the 2D covariance is (s f / z)^2 I plus the 0.3 px^2 low-pass filter.
    var = (s * f / z) ** 2 + 0.3
    ys, xs = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    r2 = (xs - cx) ** 2 + (ys - cy) ** 2
    alpha = opacity * torch.exp(-r2 / (2 * var))
    alpha = torch.where(alpha >= 1 / 255, alpha, torch.zeros_like(alpha))

    got = out.alpha[0, ..., 0]
    torch.testing.assert_close(got, alpha, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(out.rgb[0], alpha[..., None] * color, atol=2e-6, rtol=1e-5)
    if offset == (0.0, 0.0):
        # Peak and width, spelled out: opacity at the centre, e^{-1/2} of it one sigma away.
        assert got[16, 16].item() == pytest.approx(opacity, rel=1e-6)
        sigma = math.sqrt(var)
        assert got[16, 16 + 3].item() == pytest.approx(opacity * math.exp(-9 / (2 * var)), rel=1e-5)
        assert sigma == pytest.approx(2.074, abs=1e-3)
    drawn = out.alpha[0, ..., 0] > 0
    torch.testing.assert_close(
        out.depth[0, ..., 0][drawn], torch.full_like(got[drawn], z), rtol=2e-5, atol=0
    )
    assert out.meta["radii"][0, 0] == math.ceil(math.sqrt(2 * math.log(255 * opacity) * var))
    torch.testing.assert_close(out.meta["means2d"][0, 0], torch.tensor([cx, cy]))
