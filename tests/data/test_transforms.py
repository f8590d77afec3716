"""nerfstudio / DL3DV transforms.json and NeRF-synthetic (Blender) transforms_{split}.json."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from PIL import Image

from compgs.data import load_scene
from compgs.data.points import write_point_ply
from compgs.errors import InputError
from tests.data.rig import assert_projects, make_cam, ring, write_image


def gl_matrix(c) -> list:
    """Camera-to-world with OpenGL axes (x right, y up, z back), built from the rig."""
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = c.right, -c.down, -c.forward, c.eye
    return m.tolist()


def write_nerfstudio(root, cams, *, per_frame=True, extra=None, frame_extra=None, images=True):
    frames = []
    for i, c in enumerate(cams):
        fr = {"file_path": f"images/frame_{i:05d}.png", "transform_matrix": gl_matrix(c)}
        if per_frame:
            fr.update(fl_x=c.fx, fl_y=c.fy, cx=c.cx, cy=c.cy, w=c.width, h=c.height)
        if frame_extra:
            fr.update(frame_extra(i, c))
        frames.append(fr)
        if images:
            write_image(root / fr["file_path"], c.width, c.height, value=(10 * i) % 250)
    meta = {"camera_model": "OPENCV", "frames": frames}
    if not per_frame:
        c = cams[0]
        meta.update(fl_x=c.fx, fl_y=c.fy, cx=c.cx, cy=c.cy, w=c.width, h=c.height)
    meta.update(extra or {})
    (root / "transforms.json").write_text(json.dumps(meta))


def test_nerfstudio_per_frame_intrinsics_and_split(tmp_path):
    cams = ring(17)
    write_nerfstudio(tmp_path, cams)
    scene = load_scene(tmp_path, num_random_points=200)
    assert scene.parser == "nerfstudio"
    assert [n[-9:-4] for n in scene.test.names] == ["00000", "00008", "00016"]
    assert_projects(scene.test, [cams[i] for i in (0, 8, 16)], scene.normalization)
    assert_projects(scene.train, [c for i, c in enumerate(cams) if i % 8], scene.normalization)
    # the image served for train view 0 is frame 1 (value 10)
    assert float(scene.image(0)[5, 5, 1]) == pytest.approx(10 / 255)
    assert scene.summary()["test_names"] == scene.test.names


def test_nerfstudio_global_intrinsics_and_dataset_split(tmp_path):
    cams = [
        make_cam([4 * math.cos(a), 4 * math.sin(a), 1.0], [0, 0, 0], fx=50, fy=52)
        for a in np.linspace(0, 6, 6)
    ]
    names = [f"images/frame_{i:05d}.png" for i in range(6)]
    write_nerfstudio(
        tmp_path, cams, per_frame=False,
        extra={"train_filenames": names[:4], "test_filenames": names[4:]},
    )  # fmt: skip
    scene = load_scene(tmp_path, num_random_points=100)
    assert scene.split_rule == "dataset" and scene.test.names == names[4:]
    assert_projects(scene.train, cams[:4], scene.normalization)
    loaded_every_2 = load_scene(tmp_path, dataset_split=False, test_every=2, num_random_points=100)
    assert loaded_every_2.test.names == names[0::2]


def test_dl3dv_downscaled_folder_and_ply(tmp_path):
    cams = [
        make_cam([4 * math.cos(a), 4 * math.sin(a), 1.5], [0, 0, 0.2], fx=64, width=64, height=48)
        for a in np.linspace(0, 5, 5)
    ]
    pts = np.array([[0.1, 0.2, 0.3], [-1.0, 0.0, 0.5]])
    write_point_ply(tmp_path / "sparse_pc.ply", pts, np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    write_nerfstudio(tmp_path, cams, per_frame=False, extra={"ply_file_path": "sparse_pc.ply"})
    for i in range(5):
        write_image(tmp_path / "images_4" / f"frame_{i:05d}.png", 16, 12, value=77)
    scene = load_scene(tmp_path, downscale=4, test_every=0)
    assert scene.point_source == "ply"
    np.testing.assert_allclose(
        scene.normalization.to_world(scene.points.double().numpy()), pts, atol=1e-5
    )
    np.testing.assert_allclose(scene.point_colors.numpy(), [[1, 0, 0], [0, 0, 1]], atol=1e-6)
    assert scene.image(2).shape == (12, 16, 3) and float(scene.image(2)[0, 0, 0]) == pytest.approx(
        77 / 255
    )
    for c in cams:  # the JSON describes full-size images: everything divides by 4
        c.fx, c.fy, c.cx, c.cy = c.fx / 4, c.fy / 4, c.cx / 4, c.cy / 4
    assert_projects(scene.train, cams, scene.normalization)


def _distort_opencv(x, y, k1, k2, p1, p2):
    r2 = x * x + y * y
    rad = 1 + k1 * r2 + k2 * r2 * r2
    return x * rad + 2 * p1 * x * y + p2 * (r2 + 2 * x * x), y * rad + p1 * (
        r2 + 2 * y * y
    ) + 2 * p2 * x * y


def _distort_fisheye(x, y, k1, k2, k3, k4):
    r = np.hypot(x, y)
    th = np.arctan(r)
    thd = th * (1 + k1 * th**2 + k2 * th**4 + k3 * th**6 + k4 * th**8)
    s = np.where(r > 0, thd / np.maximum(r, 1e-12), 1.0)
    return x * s, y * s


def _undistort_points(xd, yd, distort):
    """Invert a distortion by fixed-point iteration (as OpenCV's undistortPoints)."""
    x, y = xd.copy(), yd.copy()
    for _ in range(200):
        dx, dy = distort(x, y)
        x, y = x + (xd - dx), y + (yd - dy)
    return x, y


@pytest.mark.parametrize(
    "model,coeffs",
    [
        ("OPENCV", {"k1": -0.12, "k2": 0.03, "p1": 0.002, "p2": -0.003}),
        ("OPENCV_FISHEYE", {"k1": 0.05, "k2": -0.01, "k3": 0.002, "k4": 0.0}),
    ],
)
def test_undistortion_matches_the_distortion_model(tmp_path, model, coeffs):
    """The captured image holds g(undistorted ray); after loading, pixel (u, v) holds g at
    its own pinhole ray."""
    W, H, f = 96, 72, 70.0
    cam = make_cam([4, 0, 1], [0, 0, 0], fx=f, width=W, height=H)

    def g(x, y):
        return 0.5 + 0.4 * np.sin(3 * x + 1) * np.cos(2.5 * y)

    def distort(x, y):
        if model == "OPENCV":
            return _distort_opencv(x, y, coeffs["k1"], coeffs["k2"], coeffs["p1"], coeffs["p2"])
        return _distort_fisheye(x, y, coeffs["k1"], coeffs["k2"], coeffs["k3"], coeffs["k4"])

    v, u = np.mgrid[0:H, 0:W] + 0.5
    xu, yu = _undistort_points((u - W / 2) / f, (v - H / 2) / f, distort)
    captured = np.repeat(g(xu, yu)[..., None], 3, axis=2)
    write_nerfstudio(tmp_path, [cam], per_frame=True, images=False,
                     frame_extra=lambda i, c: {"camera_model": model, **coeffs})  # fmt: skip
    (tmp_path / "images").mkdir()
    Image.fromarray(np.round(captured * 255).astype(np.uint8)).save(
        tmp_path / "images/frame_00000.png"
    )

    scene = load_scene(tmp_path, test_every=0, init="random", num_random_points=10)
    assert scene.train.camera_model == "PINHOLE"
    got = scene.image(0).numpy()[..., 0]
    want = g((u - W / 2) / f, (v - H / 2) / f)
    inner = (slice(8, H - 8), slice(8, W - 8))
    err = np.abs(got[inner] - want[inner]).max()
    assert err < 0.02
    # without undistortion the pixels are the captured ones: several times farther off
    raw = load_scene(tmp_path, test_every=0, undistort=False, init="random", num_random_points=10)
    assert np.abs(raw.image(0).numpy()[..., 0][inner] - want[inner]).max() > 3 * max(err, 0.01)


def test_missing_images_are_skipped_and_counted(tmp_path, caplog):
    cams = ring(6)
    write_nerfstudio(tmp_path, cams)
    (tmp_path / "images/frame_00002.png").unlink()
    (tmp_path / "images/frame_00004.png").unlink()
    with caplog.at_level(logging.WARNING):
        scene = load_scene(tmp_path, test_every=0, num_random_points=100)
    assert len(scene.train) == 4 and len(scene.skipped) == 2
    assert "skipped 2 of 6 images" in caplog.text
    assert_projects(scene.train, [cams[i] for i in (0, 1, 3, 5)], scene.normalization)


def test_transforms_referring_only_to_missing_images(tmp_path):
    write_nerfstudio(tmp_path, ring(3), images=False)
    with pytest.raises(
        InputError, match=rf"{tmp_path}: none of the 3 images .*first missing: .*frame_00000.png"
    ):
        load_scene(tmp_path)


def test_mask_path_applies_background(tmp_path):
    cams = ring(3)

    def mask_entry(i, c):
        m = np.zeros((c.height, c.width), np.uint8)
        m[10:30, 20:40] = 255
        Image.fromarray(m).save(tmp_path / f"mask_{i}.png")
        return {"mask_path": f"mask_{i}.png"}

    write_nerfstudio(tmp_path, cams, frame_extra=mask_entry)
    scene = load_scene(tmp_path, test_every=0, background=(0.0, 1.0, 0.0), num_random_points=50)
    im = scene.image(1).numpy()
    assert (
        scene.has_masks and np.allclose(im[0, 0], [0, 1, 0]) and np.allclose(im[15, 25], 10 / 255)
    )
    assert scene.mask(1)[15, 25] == 1 and scene.mask(1)[0, 0] == 0


def test_blender_rgba_split_and_focal(tmp_path):
    W = 40
    angle = 0.69
    cams = [
        make_cam(
            [3 * math.cos(a), 3 * math.sin(a), 1.0],
            [0, 0, 0],
            fx=0.5 * W / math.tan(angle / 2),
            width=W,
            height=W,
        )
        for a in np.linspace(0, 6, 9)
    ]
    for split, idx in (("train", range(0, 5)), ("val", range(5, 7)), ("test", range(7, 9))):
        frames = []
        for i in idx:
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": gl_matrix(cams[i])})
            rgba = np.zeros((W, W, 4), np.uint8)
            rgba[..., 0] = 200
            rgba[10:20, 10:20, 3] = 255  # opaque square, transparent elsewhere
            (tmp_path / split).mkdir(exist_ok=True)
            Image.fromarray(rgba, "RGBA").save(tmp_path / split / f"r_{i}.png")
        (tmp_path / f"transforms_{split}.json").write_text(
            json.dumps({"camera_angle_x": angle, "frames": frames})
        )
    scene = load_scene(tmp_path, num_random_points=100)
    assert scene.parser == "blender" and scene.split_rule == "dataset"
    assert scene.train.names == [f"train/r_{i}.png" for i in range(5)]
    assert scene.test.names == ["test/r_7.png", "test/r_8.png"]
    assert_projects(scene.train, cams[:5], scene.normalization)
    assert_projects(scene.test, cams[7:], scene.normalization)
    im = scene.image(0, "test").numpy()
    assert np.allclose(im[0, 0], 1.0)  # transparent -> white, the NeRF-synthetic protocol
    assert np.allclose(im[15, 15], [200 / 255, 0, 0])
    # downscaled: half the pixels, half the intrinsics (the focal comes from an angle)
    half = load_scene(tmp_path, num_random_points=100, downscale=2, cache_dir=tmp_path / "c")
    assert half.train.width.tolist() == [W // 2] * 5
    for c in cams:
        c.fx, c.fy, c.cx, c.cy = c.fx / 2, c.fy / 2, c.cx / 2, c.cy / 2
    assert_projects(half.train, cams[:5], half.normalization)
    assert np.allclose(half.image(0, "test").numpy()[0, 0], 1.0)
