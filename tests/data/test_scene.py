"""`load_scene` behaviour common to every format: downscale cache, init modes, bad input, CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from compgs.data import load_scene
from compgs.data.points import write_point_ply
from compgs.errors import InputError
from tests.cli.test_cli import run_cli
from tests.data.rig import assert_projects, ring, write_image
from tests.data.test_colmap import write_colmap
from tests.data.test_transforms import write_nerfstudio


def gradient_images(root, cams):
    """Images whose pixels are a smooth function of position (so resizing is checkable)."""
    for i, c in enumerate(cams):
        v, u = np.mgrid[0 : c.height, 0 : c.width]
        arr = np.stack([u * 255 // c.width, v * 255 // c.height, np.full_like(u, 40 + i)], -1)
        Image.fromarray(arr.astype(np.uint8)).save(root / f"images/frame_{i:05d}.png")


def test_downscale_makes_and_reuses_a_cached_copy(tmp_path, _private_cache):
    scene_dir = tmp_path / "scene"
    cams = ring(4)
    write_nerfstudio(scene_dir, cams)
    gradient_images(scene_dir, cams)
    before = sorted(p.relative_to(scene_dir) for p in scene_dir.rglob("*"))
    scene = load_scene(scene_dir, downscale=4, test_every=0, num_random_points=100)
    im = scene.image(1).numpy()
    assert im.shape == (12, 16, 3)
    full = np.asarray(Image.open(scene_dir / "images/frame_00001.png"), dtype=np.float64) / 255
    box = full.reshape(12, 4, 16, 4, 3).mean(axis=(1, 3))  # Lanczos ~ box average on a gradient
    assert np.abs(im - box)[1:-1, 1:-1].max() < 0.02
    assert sorted(p.relative_to(scene_dir) for p in scene_dir.rglob("*")) == before  # untouched
    cached = list(_private_cache.glob("scenes/scene-*/images_4/frame_00001.png"))
    assert len(cached) == 1 and Image.open(cached[0]).size == (16, 12)
    for c in cams:
        c.fx, c.fy, c.cx, c.cy = c.fx / 4, c.fy / 4, c.cx / 4, c.cy / 4
    assert_projects(scene.train, cams, scene.normalization)

    # a second load reads the copy; a newer source image makes it again
    stamp = cached[0].stat().st_mtime_ns
    load_scene(scene_dir, downscale=4, test_every=0, num_random_points=100).image(1)
    assert cached[0].stat().st_mtime_ns == stamp
    src = scene_dir / "images/frame_00001.png"
    os.utime(src, ns=(stamp + 10**9, stamp + 10**9))
    assert (
        load_scene(scene_dir, downscale=4, test_every=0, num_random_points=100).image(1) is not None
    )
    assert cached[0].stat().st_mtime_ns != stamp


def test_downscale_from_the_nearest_smaller_folder(tmp_path, _private_cache):
    cams = ring(2)
    write_nerfstudio(tmp_path, cams)
    for i in range(2):
        write_image(tmp_path / f"images_2/frame_{i:05d}.png", 32, 24, value=210)
    scene = load_scene(tmp_path, downscale=8, test_every=0, num_random_points=50)
    assert scene.image(0).shape == (6, 8, 3)
    assert np.allclose(scene.image(0).numpy(), 210 / 255, atol=1 / 255)  # made from images_2


def test_image_cache_budget_evicts_but_serves_the_same_pixels(tmp_path):
    cams = ring(5)
    write_nerfstudio(tmp_path, cams)
    scene = load_scene(
        tmp_path, test_every=0, cache_bytes=64 * 48 * 3 * 4 * 2, num_random_points=50
    )
    first = [scene.image(i).clone() for i in range(5)]
    assert len(scene.store._cache.items) == 2
    assert scene.image(0) is not first[0] and all(
        torch_equal(scene.image(i), first[i]) for i in range(5)
    )
    assert scene.image(4) is scene.image(4)  # a cache hit returns the cached tensor


def torch_equal(a, b) -> bool:
    return bool((a == b).all())


def test_init_modes(tmp_path):
    cams = ring(8)
    pts = np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    by_name = write_colmap(
        tmp_path, cams, points=pts, colors=np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    )
    assert load_scene(tmp_path).point_source == "sfm"
    scene = load_scene(tmp_path, init="random", num_random_points=300, seed=3)
    assert scene.point_source == "random" and len(scene.points) == 300
    again = load_scene(tmp_path, init="random", num_random_points=300, seed=3)
    assert torch_equal(scene.points, again.points)  # seeded
    # random points are seen by at least 3 training cameras
    world = scene.normalization.to_world(scene.points.double().numpy())
    train = [c for i, c in enumerate(by_name) if i % 8]
    seen = sum(((c.pixel(world) >= 0) & (c.pixel(world) < [64, 48])).all(1) for c in train)
    assert seen.min() >= 3
    ply = tmp_path / "init.ply"
    write_point_ply(ply, np.array([[1.0, 2.0, 3.0]]), np.array([[0.2, 0.4, 0.6]]))
    from_ply = load_scene(tmp_path, init=str(ply))
    assert from_ply.point_source == "ply"
    np.testing.assert_allclose(
        from_ply.normalization.to_world(from_ply.points.double().numpy()), [[1, 2, 3]], atol=1e-5
    )
    np.testing.assert_allclose(
        from_ply.point_colors.numpy(), [[51 / 255, 102 / 255, 153 / 255]], atol=1e-6
    )
    with pytest.raises(InputError, match="no depth maps"):
        load_scene(tmp_path, init="depth")
    with pytest.raises(InputError, match="--init must be one of"):
        load_scene(tmp_path, init="bogus")


def test_normalization_and_extent(tmp_path):
    cams = ring(9, radius=10.0, z=3.0)
    write_colmap(tmp_path, cams)
    scene = load_scene(tmp_path, num_random_points=50, test_every=0)
    centres = scene.train.centers().double()
    assert float(centres.norm(dim=1).max()) == pytest.approx(1.0, abs=1e-6)
    assert centres.mean(0).abs().max() < 1e-6
    assert scene.extent == pytest.approx(1.1, rel=1e-6)
    raw = load_scene(tmp_path, normalize=False, num_random_points=50, test_every=0)
    assert raw.normalization.scale == 1.0 and raw.extent == pytest.approx(1.1 * 10, rel=0.01)
    summary = scene.summary()
    assert json.loads(json.dumps(summary)) == summary and summary["num_train"] == 9
    assert float(scene.up.double().numpy() @ [0, 0, 1.0]) > 0.9  # world z is up


@pytest.mark.parametrize(
    "setup,message",
    [
        (lambda d: None, "empty folder, no scene to load"),
        (
            lambda d: [write_image(d / f"IMG_{i}.jpg", 8, 8) for i in range(3)],
            "3 images but no camera poses",
        ),
        (
            lambda d: [write_image(d / "images" / f"a{i}.png", 8, 8) for i in range(2)],
            "2 images but no camera poses",
        ),
        (lambda d: (d / "notes.txt").write_text("hi"), "no scene found"),
        (lambda d: (d / "transforms.json").write_text('{"frames": []}'), "poses list no images"),
        (lambda d: np.save(d / "poses_bounds.npy", np.zeros((0, 17))), "poses list no images"),
    ],
)
def test_bad_folders(tmp_path, setup, message):
    setup(tmp_path)
    with pytest.raises(InputError, match=message) as err:
        load_scene(tmp_path)
    assert str(tmp_path) in str(err.value) and "\n" not in str(err.value)


def test_bad_arguments(tmp_path):
    write_nerfstudio(tmp_path, ring(3))
    for kwargs, message in (
        ({"downscale": 0}, "downscale must be"),
        ({"downscale": 64}, "leaves 1 px images"),
        ({"test_every": 1}, "test_every must be"),
        ({"parser": "colmap"}, "not a colmap scene"),
        ({"parser": "nope"}, "unknown parser"),
        ({"masks": True}, "masks were asked for but none found"),
    ):
        with pytest.raises(InputError, match=message):
            load_scene(tmp_path, **kwargs)
    with pytest.raises(InputError, match="no such folder"):
        load_scene(tmp_path / "missing")


def test_cli_scene_info_and_errors(tmp_path, capsys):
    write_nerfstudio(tmp_path / "ok", ring(9))
    code, out, _ = run_cli(["scene-info", str(tmp_path / "ok"), "--init", "random"], capsys)
    assert code == 0
    for expected in (
        "nerfstudio",
        "7 train + 2 test",
        "64x48",
        "PINHOLE",
        "from random",
        "camera extent",
    ):
        assert expected in out
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["scene-info", str(tmp_path / "empty")], capsys)
    assert (
        code == 1
        and err.count("\n") == 1
        and "empty folder" in err
        and str(tmp_path / "empty") in err
    )
    write_colmap(
        tmp_path / "fov", ring(2), model="FOV", params=lambda c: [c.fx, c.fy, c.cx, c.cy, 0.9]
    )
    code, _, err = run_cli(["scene-info", str(tmp_path / "fov")], capsys)
    assert code == 1 and err.count("\n") == 1 and "model FOV" in err


def test_cli_generate_scene(tmp_path, capsys):
    out = tmp_path / "gen"
    code, text, _ = run_cli(
        [
            "generate-scene",
            str(out),
            "--width",
            "24",
            "--height",
            "16",
            "--num-views",
            "4",
            "--num-points",
            "50",
        ],
        capsys,
    )
    assert code == 0 and "4 views of 24x16" in text
    assert len(list((out / "images").glob("*.png"))) == 4 and (out / "transforms.json").is_file()
    code, _, err = run_cli(["generate-scene", str(out), "--width", "0"], capsys)
    assert code == 1 and "--width must be >= 1" in err
