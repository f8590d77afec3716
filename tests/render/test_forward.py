"""The compiled cpu backend draws the reference's picture."""

from __future__ import annotations

import pytest
import torch

from compgs.render import render_views
from compgs.splats import Splats
from tests.render.scenes import edge_cases, orbit_views, random_scene

W, H = 48, 40


def _both(splats: Splats, viewmats, Ks, **kw):
    ref = render_views(
        splats.to(dtype=torch.float64), viewmats, Ks, width=W, height=H, backend="reference", **kw
    )
    cpu = render_views(
        splats.to(dtype=torch.float32), viewmats, Ks, width=W, height=H, backend="cpu", **kw
    )
    return ref, cpu


def _mae(a, b):
    return (a.double() - b.double()).abs().mean().item()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_scenes_with_edge_cases_match_reference(seed):
    viewmats, Ks = orbit_views(3, W, H)
    splats = Splats.cat([random_scene(300, seed=seed), edge_cases(viewmats[0])])
    ref, cpu = _both(splats, viewmats, Ks, background=torch.tensor([0.2, 0.5, 0.9]))
    assert ref.alpha.max() > 0.5  # the scene is not empty
    assert _mae(cpu.rgb, ref.rgb) < 1e-4
    assert _mae(cpu.alpha, ref.alpha) < 1e-4
    # Expected depth is ill-conditioned where alpha ~ 0; compare where something is drawn.
    drawn = ref.alpha > 0.05
    assert _mae(cpu.depth[drawn], ref.depth[drawn]) < 1e-4 * ref.depth[drawn].abs().mean()


def test_projection_meta_matches_reference():
    viewmats, Ks = orbit_views(2, W, H)
    splats = Splats.cat([random_scene(200, seed=3), edge_cases(viewmats[0])])
    ref, cpu = _both(splats, viewmats, Ks)
    vis_ref, vis_cpu = ref.meta["visible"], cpu.meta["visible"]
    # Visibility is decided on float64 vs float32 values: allow a rare boundary flip.
    assert (vis_ref != vis_cpu).float().mean() < 0.005
    both = vis_ref & vis_cpu
    assert (ref.meta["radii"][both] - cpu.meta["radii"][both]).abs().max() <= 1
    torch.testing.assert_close(
        cpu.meta["means2d"][both].double(), ref.meta["means2d"][both], atol=1e-3, rtol=1e-5
    )
    torch.testing.assert_close(
        cpu.meta["conics"][both].double(), ref.meta["conics"][both], atol=1e-6, rtol=1e-4
    )
    torch.testing.assert_close(
        cpu.meta["depths"].double(), ref.meta["depths"], atol=1e-5, rtol=1e-5
    )
    assert not cpu.meta["radii"][~vis_cpu].any()


def test_edge_cases_are_culled_as_specified():
    viewmats, Ks = orbit_views(1, W, H)
    cases = edge_cases(viewmats[0])
    out = render_views(
        cases.to(dtype=torch.float32), viewmats, Ks, width=W, height=H, backend="cpu"
    )
    visible = out.meta["visible"][0].tolist()
    expected = [False, False, True, False, True, True, True, True, True, False, True]
    assert visible == expected
    assert torch.isfinite(out.rgb).all() and torch.isfinite(out.depth).all()


def test_empty_scene_renders_background():
    viewmats, Ks = orbit_views(2, W, H)
    bg = torch.tensor([0.1, 0.2, 0.3])
    for backend in ("cpu", "reference"):
        out = render_views(
            Splats.empty(0, 3), viewmats, Ks, width=W, height=H, background=bg, backend=backend
        )
        assert out.rgb.shape == (2, H, W, 3)
        torch.testing.assert_close(out.rgb, bg.expand(2, H, W, 3))
        assert not out.alpha.any() and not out.depth.any()


def test_lower_sh_degree_matches_reference():
    viewmats, Ks = orbit_views(2, W, H)
    splats = random_scene(150, sh_degree=3, seed=4)
    for degree in (0, 1, 2):
        ref, cpu = _both(splats, viewmats, Ks, sh_degree=degree)
        assert _mae(cpu.rgb, ref.rgb) < 1e-4
        # Using fewer bands is the same as truncating the coefficients.
        trunc = render_views(
            splats.with_sh_degree(degree).to(dtype=torch.float32),
            viewmats,
            Ks,
            width=W,
            height=H,
            backend="cpu",
        )
        torch.testing.assert_close(trunc.rgb, cpu.rgb)


def test_odd_image_size_and_batch_equals_single_views():
    viewmats, Ks = orbit_views(3, 37, 29)
    splats = random_scene(200, seed=5).to(dtype=torch.float32)
    batch = render_views(splats, viewmats, Ks, width=37, height=29, backend="cpu")
    for c in range(3):
        one = render_views(
            splats, viewmats[c : c + 1], Ks[c : c + 1], width=37, height=29, backend="cpu"
        )
        torch.testing.assert_close(one.rgb[0], batch.rgb[c], rtol=0, atol=0)
    ref = render_views(
        splats.to(dtype=torch.float64), viewmats, Ks, width=37, height=29, backend="reference"
    )
    assert _mae(batch.rgb, ref.rgb) < 1e-4
