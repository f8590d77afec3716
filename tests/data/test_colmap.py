"""COLMAP models written by pycolmap's own writer (binary and text)."""

from __future__ import annotations

import numpy as np
import pycolmap
import pytest

from compgs.data import load_scene
from compgs.data.colmap import parse_colmap
from compgs.data.frames import OPENCV, OPENCV_FISHEYE
from compgs.errors import UnsupportedFormatError
from tests.data.rig import assert_projects, ring, write_image


def write_colmap(root, cams, *, model="PINHOLE", params=None, text=False, points=None, colors=None):
    rec = pycolmap.Reconstruction()
    for i, c in enumerate(cams, start=1):
        cam = pycolmap.Camera.create_from_model_name(i, model, c.fx, c.width, c.height)
        if params is not None:
            cam.params = params(c)
        elif model == "PINHOLE":
            cam.params = [c.fx, c.fy, c.cx, c.cy]
        rec.add_camera_with_trivial_rig(cam)
        R = c.rows_cv()
        w2c = np.hstack([R, (-R @ c.eye)[:, None]])
        # Registered in reverse name order: the loader must sort by name itself.
        image = pycolmap.Image(name=f"img_{len(cams) - i:03d}.png", camera_id=i, image_id=i)
        rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(w2c))
        write_image(root / "images" / image.name, c.width, c.height)
    if points is not None:
        for p, col in zip(points, colors):
            rec.add_point3D(p, pycolmap.Track(), col)
    out = root / "sparse" / "0"
    out.mkdir(parents=True)
    (rec.write_text if text else rec.write_binary)(str(out))
    # Cameras listed by image name, as the loader orders them.
    return [cams[len(cams) - 1 - k] for k in range(len(cams))]


@pytest.mark.parametrize("text", [False, True])
def test_colmap_poses_intrinsics_points(tmp_path, text):
    cams = ring(10)
    pts = np.array([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [-1.0, 0.5, 0.25]])
    cols = np.array([[255, 0, 0], [0, 255, 0], [10, 20, 30]], dtype=np.uint8)
    by_name = write_colmap(tmp_path, cams, text=text, points=pts, colors=cols)
    ext = "txt" if text else "bin"
    assert (tmp_path / "sparse/0" / f"cameras.{ext}").is_file()

    scene = load_scene(tmp_path, test_every=4)
    assert scene.parser == "colmap" and scene.point_source == "sfm"
    assert len(scene.train) + len(scene.test) == 10
    # every 4th image by name, starting from the first, is held out
    assert scene.test.names == ["img_000.png", "img_004.png", "img_008.png"]
    test_cams = [by_name[i] for i in (0, 4, 8)]
    train_cams = [c for i, c in enumerate(by_name) if i % 4]
    assert_projects(scene.test, test_cams, scene.normalization)
    assert_projects(scene.train, train_cams, scene.normalization)
    np.testing.assert_allclose(
        scene.normalization.to_world(scene.points.double().numpy()), pts, atol=1e-5
    )
    np.testing.assert_allclose(scene.point_colors.numpy(), cols / 255.0, atol=1e-6)
    assert scene.train.camera_model == "PINHOLE"


def test_colmap_downscale_from_existing_folder(tmp_path):
    cams = ring(4)
    by_name = write_colmap(tmp_path, cams)
    for c, name in zip(by_name, sorted(p.name for p in (tmp_path / "images").iterdir())):
        write_image(tmp_path / "images_2" / name, c.width // 2, c.height // 2, value=200)
    scene = load_scene(tmp_path, downscale=2, test_every=0)
    assert scene.train.width.tolist() == [32] * 4 and scene.train.height.tolist() == [24] * 4
    assert float(scene.image(0)[0, 0, 0]) == pytest.approx(200 / 255)  # read images_2, not images
    for c in by_name:
        c.fx, c.fy, c.cx, c.cy = c.fx / 2, c.fy / 2, c.cx / 2, c.cy / 2
    assert_projects(scene.train, by_name, scene.normalization)


@pytest.mark.parametrize(
    "model,params,kind,expected",
    [
        ("SIMPLE_RADIAL", lambda c: [c.fx, c.cx, c.cy, -0.05], OPENCV, [-0.05, 0, 0, 0, 0, 0]),
        ("RADIAL", lambda c: [c.fx, c.cx, c.cy, -0.05, 0.01], OPENCV, [-0.05, 0.01, 0, 0, 0, 0]),
        ("OPENCV", lambda c: [c.fx, c.fy, c.cx, c.cy, 0.1, -0.02, 0.003, 0.004], OPENCV, [0.1, -0.02, 0.003, 0.004, 0, 0]),
        ("OPENCV_FISHEYE", lambda c: [c.fx, c.fy, c.cx, c.cy, 0.1, 0.02, 0.003, 0.004], OPENCV_FISHEYE, [0.1, 0.02, 0, 0, 0.003, 0.004]),
    ],
)  # fmt: skip
def test_colmap_distortion_models(tmp_path, model, params, kind, expected):
    write_colmap(tmp_path, ring(2), model=model, params=params)
    frames = parse_colmap(tmp_path).frames
    assert all(f.model == kind for f in frames)
    np.testing.assert_allclose(frames[0].distortion, expected, atol=1e-12)
    # loading undistorts onto pinhole cameras with the same intrinsics
    scene = load_scene(tmp_path, test_every=0, init="random", num_random_points=100)
    assert scene.train.camera_model == "PINHOLE" and scene.train.distortion is None
    kept = load_scene(tmp_path, test_every=0, undistort=False, init="random", num_random_points=100)
    assert kept.train.camera_model == kind
    np.testing.assert_allclose(kept.train.distortion[0].numpy(), expected, atol=1e-7)


def test_colmap_unsupported_camera_model(tmp_path):
    write_colmap(tmp_path, ring(2), model="FOV", params=lambda c: [c.fx, c.fy, c.cx, c.cy, 0.9])
    with pytest.raises(
        UnsupportedFormatError, match=r"sparse/0: camera \d uses the COLMAP model FOV"
    ):
        load_scene(tmp_path)


def test_colmap_without_points_falls_back_to_random(tmp_path):
    write_colmap(tmp_path, ring(6))
    scene = load_scene(tmp_path, num_random_points=500, test_every=0)
    assert scene.point_source == "random" and len(scene.points) == 500
