"""The cpu backward agrees with the reference's autograd and with finite differences."""

from __future__ import annotations

import pytest
import torch

from compgs.render import render_views
from compgs.splats import FIELDS, Splats
from tests.render.scenes import color_to_sh0, edge_cases, orbit_views, params_of, random_scene

W, H = 40, 32


def _loss(out, weights):
    w_rgb, w_alpha, w_depth = weights
    return (out.rgb * w_rgb).sum() + (out.alpha * w_alpha).sum() + (out.depth * w_depth).sum()


def _weights(n_cams, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n_cams, H, W, 3, generator=g, dtype=torch.float64),
        torch.randn(n_cams, H, W, 1, generator=g, dtype=torch.float64),
        0.1 * torch.randn(n_cams, H, W, 1, generator=g, dtype=torch.float64),
    )


def _grads(splats, viewmats, Ks, backend, dtype, weights, **kw):
    params = params_of(splats, dtype)
    out = render_views(params, viewmats, Ks, width=W, height=H, backend=backend, **kw)
    _loss(out, [w.to(dtype) for w in weights]).backward()
    grads = {name: getattr(params, name).grad.double() for name in FIELDS}
    grads["means2d"] = out.meta["means2d"].grad.double()
    return grads


def _rel_err(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("seed", [0, 1])
def test_cpu_gradients_match_reference_autograd(seed):
    viewmats, Ks = orbit_views(2, W, H)
    splats = Splats.cat([random_scene(120, seed=seed), edge_cases(viewmats[0])])
    weights = _weights(2, seed)
    kw = {"background": torch.tensor([0.3, 0.6, 0.1])}
    ref = _grads(splats, viewmats, Ks, "reference", torch.float64, weights, **kw)
    cpu = _grads(splats, viewmats, Ks, "cpu", torch.float32, weights, **kw)
    for name in (*FIELDS, "means2d"):
        assert ref[name].norm() > 0, name
        assert _rel_err(cpu[name], ref[name]) < 1e-3, name


def test_gradients_only_flow_to_used_sh_bands():
    viewmats, Ks = orbit_views(2, W, H)
    splats = random_scene(60, sh_degree=3, seed=5)
    weights = _weights(2)
    ref = _grads(splats, viewmats, Ks, "reference", torch.float64, weights, sh_degree=1)
    cpu = _grads(splats, viewmats, Ks, "cpu", torch.float32, weights, sh_degree=1)
    assert not cpu["shN"][:, 3:].any()
    assert _rel_err(cpu["shN"], ref["shN"]) < 1e-3
    assert _rel_err(cpu["means"], ref["means"]) < 1e-3


def _tiny_scene() -> Splats:
    """Three large, semi-transparent Gaussians covering a small image: no alpha
    cut-off, clamp or termination near any pixel, so the loss is smooth."""
    g = torch.Generator().manual_seed(11)
    return Splats(
        means=torch.tensor(
            [[0.1, -0.1, 0.3], [-0.2, 0.1, 0.0], [0.0, 0.05, -0.3]], dtype=torch.float64
        ),
        quats=torch.randn(3, 4, generator=g, dtype=torch.float64),
        scales=torch.log(
            2.5
            * torch.tensor([[0.9, 0.6, 0.7], [0.5, 0.8, 0.6], [0.7, 0.7, 0.5]], dtype=torch.float64)
        ),
        opacities=torch.tensor([0.2, -0.3, 0.5], dtype=torch.float64),
        sh0=torch.cat(
            [
                color_to_sh0([0.6, 0.4, 0.5]),
                color_to_sh0([0.3, 0.7, 0.5]),
                color_to_sh0([0.5, 0.5, 0.8]),
            ]
        ),
        shN=0.1 * torch.randn(3, 8, 3, generator=g, dtype=torch.float64),
    )


# float32 central differences bottom out near 1e-3 relative (rounding of a sum
# over ~10^4 pixel terms against truncation); float64 ones agree to ~1e-9.
@pytest.mark.parametrize(
    "backend, dtype, step, tol",
    [("cpu", torch.float32, 3e-3, 5e-3), ("reference", torch.float64, 1e-5, 1e-6)],
)
def test_directional_finite_differences(backend, dtype, step, tol):
    viewmats, Ks = orbit_views(2, W, H, radius=4.0)
    base = _tiny_scene()
    weights = [w.to(dtype) for w in _weights(2, seed=3)]

    def loss_at(splats):
        out = render_views(splats.to(dtype=dtype), viewmats, Ks, width=W, height=H, backend=backend)
        assert out.alpha.min() > 0.05  # every pixel is covered: no cut-off in play
        return _loss(out, weights)

    params = params_of(base, dtype)
    loss_at(params).backward()
    g = torch.Generator().manual_seed(5)
    for name in FIELDS:
        for _ in range(2):
            direction = torch.randn(getattr(base, name).shape, generator=g, dtype=torch.float64)
            with torch.no_grad():
                plus = base.map(lambda t: t.clone())
                minus = base.map(lambda t: t.clone())
                setattr(plus, name, getattr(base, name) + step * direction)
                setattr(minus, name, getattr(base, name) - step * direction)
                numeric = (loss_at(plus).double() - loss_at(minus).double()) / (2 * step)
            analytic = (getattr(params, name).grad.double() * direction).sum()
            scale = max(abs(analytic.item()), 1.0)
            assert abs(numeric.item() - analytic.item()) < tol * scale, (name, numeric, analytic)


def test_non_leaf_inputs_get_gradients_straight_through():
    """Quantized values with a straight-through estimator are plain non-leaf tensors."""
    viewmats, Ks = orbit_views(1, W, H)
    leaves = params_of(random_scene(80, seed=6), torch.float32)

    def ste(t):
        return t + (torch.round(t * 8) / 8 - t).detach()

    quantized = leaves.map(ste)
    out = render_views(quantized, viewmats, Ks, width=W, height=H, backend="cpu")
    out.rgb.sum().backward()
    for name in FIELDS:
        grad = getattr(leaves, name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_means2d_grad_is_zero_for_invisible_gaussians():
    viewmats, Ks = orbit_views(1, W, H)
    params = params_of(
        Splats.cat([random_scene(50, seed=7), edge_cases(viewmats[0])]), torch.float32
    )
    out = render_views(params, viewmats, Ks, width=W, height=H, backend="cpu")
    out.rgb.square().sum().backward()
    grad = out.meta["means2d"].grad
    assert grad.shape == (1, params.num_gaussians, 2)
    assert not grad[~out.meta["visible"]].any()
    assert grad[out.meta["visible"]].abs().sum() > 0
