"""`prepare arkit` against ray-traced raw videos with known poses, intrinsics and surfaces."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from compgs.batch.arkit_prepare import pick_sharpest, prepare_arkit, sharpness, sky_direction
from compgs.data import load_scene
from compgs.data.geometry import GL_TO_CV
from compgs.data.points import read_point_ply
from compgs.data.synthetic import default_spec
from compgs.errors import InputError
from tests.batch.arkit_raw import write_raw_video


def _prepared(out):
    meta = json.loads((out / "transforms.json").read_text())
    K = np.array(
        [[[f["fl_x"], 0, f["cx"]], [0, f["fl_y"], f["cy"]], [0, 0, 1]] for f in meta["frames"]]
    )
    c2w = np.array([np.array(f["transform_matrix"]) @ GL_TO_CV for f in meta["frames"]])
    return meta, K, c2w


@pytest.mark.parametrize("sky", ["up", "right"])
def test_prepare_recovers_poses_intrinsics_images_and_surfaces(tmp_path, sky):
    raw = write_raw_video(tmp_path / "raw", num_frames=10, sky=sky)
    out = prepare_arkit(tmp_path / "raw", raw.video_id, tmp_path / "scene", frames=300)
    meta, K, c2w = _prepared(out)
    info = meta["compgs_arkit"]
    assert info["sky_direction"] == sky and info["kept_frames"] == 10
    names = [f"images/{raw.video_id}_{t:.3f}.png" for t in raw.times]
    assert [f["file_path"] for f in meta["frames"]] == names
    assert {(f["w"], f["h"]) for f in meta["frames"]} == {(40, 30)}
    np.testing.assert_allclose(K, np.broadcast_to(raw.K_up, K.shape), atol=1e-9)
    np.testing.assert_allclose(c2w, raw.c2w_up, atol=1e-8)
    # the turned raw frames are the upright renders: the same rays through the same pixels,
    # up to a few texture-edge pixels where the last bit of a ray direction flips a lookup
    for name, want in zip(names, raw.upright):
        got = np.asarray(Image.open(out / name).convert("RGB")).astype(int)
        assert got.shape == want.shape
        off = np.abs(got - want).max(axis=-1) > 1
        assert off.mean() < 0.005, off.sum()
    # fused depth lies on the true surfaces; the low-confidence corner was dropped
    xyz, rgb = read_point_ply(out / "sparse_pc.ply")
    assert len(xyz) > 300
    dist = np.abs(default_spec(0).surface_distance(xyz))
    assert np.median(dist) < 0.005 and np.quantile(dist, 0.98) < 0.05, np.quantile(
        dist, [0.5, 0.98]
    )
    # and the result is a scene the loader reads, with those points
    scene = load_scene(out, test_every=0)
    assert scene.parser == "nerfstudio" and scene.point_source == "ply" and len(scene.train) == 10


def test_keeps_the_sharpest_frame_of_each_window(tmp_path):
    blurred = (0, 3, 5, 6, 9)  # one of each pair (0,1) (2,3) ... (8,9), either side
    raw = write_raw_video(tmp_path / "raw", num_frames=10, blur=blurred, depth=False)
    frames_in = sorted((raw.folder / "lowres_wide").iterdir())
    assert sharpness(np.asarray(Image.open(frames_in[0]).convert("L"))) < sharpness(
        np.asarray(Image.open(frames_in[1]).convert("L"))
    )
    from compgs.data.arkit import parse_arkit

    picked, _ = pick_sharpest(parse_arkit(raw.folder).frames, 5)
    assert picked == [1, 2, 4, 7, 8]
    with pytest.raises(InputError, match="no lowres_depth"):
        prepare_arkit(tmp_path / "raw", raw.video_id, tmp_path / "s", frames=5)
    assert not (tmp_path / "s").exists()  # nothing half-made is left under the final name


def test_sky_direction_of_rolled_cameras():
    c2w = np.tile(np.eye(4), (3, 1, 1))
    # camera looking along +y, image down = world -z: sky up
    c2w[:, :3, :3] = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]]).T  # columns: x, y, z axes
    assert sky_direction(c2w) == "up"
    rolled = c2w.copy()
    rolled[:, :3, 0], rolled[:, :3, 1] = -c2w[:, :3, 1], c2w[:, :3, 0]
    assert sky_direction(rolled) == "right"
    rolled[:, :3, 0], rolled[:, :3, 1] = c2w[:, :3, 1], -c2w[:, :3, 0]
    assert sky_direction(rolled) == "left"


def test_prepare_errors(tmp_path):
    with pytest.raises(InputError, match="no raw ARKitScenes folder"):
        prepare_arkit(tmp_path, "123", tmp_path / "out")
    raw = write_raw_video(tmp_path / "raw", num_frames=3)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("")
    with pytest.raises(InputError, match="already exists"):
        prepare_arkit(tmp_path / "raw", raw.video_id, tmp_path / "busy")
    with pytest.raises(InputError, match="--sky"):
        prepare_arkit(tmp_path / "raw", raw.video_id, tmp_path / "o", sky="north")


@pytest.mark.slow
def test_sfm_poses_are_aligned_to_the_arkit_world(tmp_path):
    # a smooth 60-degree walk (SfM needs overlap), held rolled: sky on the right
    raw = write_raw_video(tmp_path / "raw", num_frames=20, sky="right", width=160, height=120,
                          arc_degrees=60, depth=False, supersample=2)  # fmt: skip
    out = prepare_arkit(tmp_path / "raw", raw.video_id, tmp_path / "scene", sfm=True)
    meta, K, c2w = _prepared(out)
    info = meta["compgs_arkit"]
    assert info["poses"] == "sfm" and info["sfm"]["registered"] == 20 and len(c2w) == 20
    np.testing.assert_allclose(K, np.broadcast_to(raw.K_up, K.shape), atol=1e-6)  # kept fixed
    # SfM on 160x120 synthetic frames (measured: 1 degree, 1% of the 3.5 m radius at worst)
    rel = np.einsum("nji,njk->nik", c2w[:, :3, :3], raw.c2w_up[:, :3, :3])
    angle = np.degrees(np.arccos(np.clip((np.trace(rel, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert angle.max() < 2.0, angle
    assert np.linalg.norm(c2w[:, :3, 3] - raw.c2w_up[:, :3, 3], axis=1).max() < 0.1
    xyz, _ = read_point_ply(out / "sparse_pc.ply")
    dist = np.abs(default_spec(0).surface_distance(xyz))
    # a degree of camera error moves points ~6 cm at 3.5 m; points scattered at random in
    # their bounding box would sit ~0.5 from the surfaces
    assert len(xyz) > 100 and np.median(dist) < 0.1, (len(xyz), np.median(dist))
