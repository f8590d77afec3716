"""The render() API: inputs, outputs, meta, backend choice, determinism."""

from __future__ import annotations

import logging

import numba
import pytest
import torch

from compgs.data.cameras import Cameras
from compgs.errors import InputError
from compgs.render import BACKENDS, RenderOutput, gsplat_available, render, render_views
from compgs.render import api as render_api
from tests.render.scenes import orbit_views, params_of, random_scene

W, H = 32, 24


@pytest.fixture
def scene():
    viewmats, Ks = orbit_views(2, W, H)
    return random_scene(100, seed=9).to(dtype=torch.float32), viewmats, Ks


def test_output_shapes_dtypes_and_meta(scene):
    splats, viewmats, Ks = scene
    out = render_views(params_of(splats), viewmats, Ks, width=W, height=H, backend="cpu")
    assert isinstance(out, RenderOutput)
    assert out.rgb.shape == (2, H, W, 3) and out.rgb.dtype == torch.float32
    assert out.alpha.shape == (2, H, W, 1) and out.depth.shape == (2, H, W, 1)
    meta = out.meta
    n = splats.num_gaussians
    assert meta["means2d"].shape == (2, n, 2) and meta["means2d"].requires_grad
    assert meta["radii"].shape == (2, n) and meta["radii"].dtype == torch.int32
    assert torch.equal(meta["visible"], meta["radii"] > 0)
    assert meta["depths"].shape == (2, n) and meta["conics"].shape == (2, n, 3)
    assert (meta["width"], meta["height"], meta["n_cameras"]) == (W, H, 2)
    assert meta["gaussian_ids"] is None and meta["backend"] == "cpu" and meta["sh_degree"] == 3
    assert 0 < meta["visible"].sum() <= 2 * n
    assert 0 <= out.alpha.min() and out.alpha.max() <= 1


def test_cameras_entry_point_matches_raw_matrices(scene):
    splats, viewmats, Ks = scene
    cameras = Cameras(
        K=Ks.float(), camtoworld=torch.linalg.inv(viewmats).float(), width=W, height=H
    )
    a = render(splats, cameras, backend="cpu")
    b = render_views(splats, viewmats, Ks, width=W, height=H, backend="cpu")
    torch.testing.assert_close(a.rgb, b.rgb, atol=1e-6, rtol=1e-5)
    smaller = render(splats, cameras, width=16, height=12, backend="cpu")
    assert smaller.rgb.shape == (2, 12, 16, 3)


def test_background_and_expected_depth(scene):
    splats, viewmats, Ks = scene
    plain = render_views(splats, viewmats, Ks, width=W, height=H, backend="cpu")
    bg = torch.tensor([[1.0, 0.0, 0.5], [0.2, 0.2, 0.2]])
    out = render_views(splats, viewmats, Ks, width=W, height=H, background=bg, backend="cpu")
    torch.testing.assert_close(out.rgb, plain.rgb + (1 - plain.alpha) * bg[:, None, None, :])
    drawn = plain.alpha[..., 0] > 0.5
    depth = plain.depth[..., 0][drawn]
    assert (depth > 1.0).all() and (depth < 6.0).all()  # the scene sits ~3 units away


def test_deterministic_and_independent_of_thread_count(scene):
    splats, viewmats, Ks = scene

    def run():
        params = params_of(splats)
        out = render_views(params, viewmats, Ks, width=W, height=H, backend="cpu")
        (out.rgb.square().sum() + out.alpha.sum()).backward()
        return out.rgb.detach(), params.means.grad, params.quats.grad, out.meta["means2d"].grad

    first = run()
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        single = run()
    finally:
        numba.set_num_threads(threads)
    for a, b, c in zip(first, run(), single):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_float64_inputs_give_float64_outputs_and_grads(scene):
    splats, viewmats, Ks = scene
    params = params_of(splats, torch.float64)
    out = render_views(params, viewmats, Ks, width=W, height=H, backend="cpu")
    out.rgb.sum().backward()
    assert out.rgb.dtype == torch.float64 and params.scales.grad.dtype == torch.float64


def test_no_grad_rendering(scene):
    splats, viewmats, Ks = scene
    with torch.no_grad():
        out = render_views(params_of(splats), viewmats, Ks, width=W, height=H, backend="cpu")
    assert not out.rgb.requires_grad and not out.meta["means2d"].requires_grad


def test_bad_inputs_raise_input_error(scene):
    splats, viewmats, Ks = scene
    with pytest.raises(InputError, match="unknown render backend"):
        render_views(splats, viewmats, Ks, width=W, height=H, backend="vulkan")
    with pytest.raises(InputError, match=r"viewmats must be a \[C,4,4\]"):
        render_views(splats, viewmats[:, :3], Ks, width=W, height=H)
    with pytest.raises(InputError, match=r"Ks must be a \[2,3,3\]"):
        render_views(splats, viewmats, Ks[:1], width=W, height=H)
    with pytest.raises(InputError, match="width must be a positive integer"):
        render_views(splats, viewmats, Ks, width=0, height=H)
    with pytest.raises(InputError, match="sh_degree must be in 0..3"):
        render_views(splats, viewmats, Ks, width=W, height=H, sh_degree=4)
    with pytest.raises(InputError, match="background must have shape"):
        render_views(splats, viewmats, Ks, width=W, height=H, background=torch.zeros(4))
    cameras = Cameras(
        K=Ks, camtoworld=torch.linalg.inv(viewmats), width=torch.tensor([W, W + 1]), height=H
    )
    with pytest.raises(InputError, match="different image sizes"):
        render(splats, cameras)
    distorted = Cameras(
        K=Ks,
        camtoworld=torch.linalg.inv(viewmats),
        width=W,
        height=H,
        distortion=torch.full((2, 6), 0.1),
    )
    with pytest.raises(InputError, match="pinhole"):
        render(splats, distorted)


@pytest.mark.skipif(gsplat_available(), reason="checks the behaviour without CUDA/gsplat")
def test_auto_picks_cpu_without_gsplat_and_says_so_once(scene, caplog, monkeypatch):
    splats, viewmats, Ks = scene
    monkeypatch.setattr(render_api, "_logged_auto", set())
    with caplog.at_level(logging.INFO, logger="compgs.render.api"):
        out = render_views(splats, viewmats, Ks, width=W, height=H)
        render_views(splats, viewmats, Ks, width=W, height=H)
    assert out.meta["backend"] == "cpu"
    messages = [r.getMessage() for r in caplog.records if "backend 'auto'" in r.getMessage()]
    assert len(messages) == 1 and "uses cpu" in messages[0]
    with pytest.raises(InputError, match="needs CUDA and the gsplat package"):
        render_views(splats, viewmats, Ks, width=W, height=H, backend="gsplat")


def test_backends_are_listed():
    assert set(BACKENDS) == {"auto", "cpu", "gsplat", "reference"}
