"""ARKitScenes raw videos: .traj (world-to-camera axis-angle), .pincam, depth back-projection."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from compgs.data import load_scene
from compgs.errors import CorruptFileError, InputError
from tests.data.rig import Cam, assert_projects, make_cam, write_image

VID = "41069021"
W, H, F = 32, 24, 30.0
OMEGA = 0.8  # rad/s about world z
VELOCITY = np.array([0.3, -0.1, 0.05])
START = make_cam([3.0, 0.0, 1.2], [0.0, 0.0, 0.0], fx=F, width=W, height=H)


def cam_at(t: float) -> Cam:
    """Ground truth: the start camera turned about z at OMEGA and moved at VELOCITY.

    Constant-axis rotation and linear motion: interpolating between two
    samples gives exactly the pose in between.
    """
    Rz = Rotation.from_rotvec([0, 0, OMEGA * t]).as_matrix()
    c = make_cam([0, 0, 0], [1, 0, 0], fx=F, width=W, height=H)
    c.eye = START.eye + VELOCITY * t
    c.right, c.down, c.forward = Rz @ START.right, Rz @ START.down, Rz @ START.forward
    return c


def write_arkit(root, frame_times, traj_times, *, pincam_offset=None, depth=True):
    video = root / VID
    lines = []
    for t in traj_times:
        c = cam_at(t)
        w2c_R = c.rows_cv()
        rotvec = Rotation.from_matrix(w2c_R).as_rotvec()
        trans = -w2c_R @ c.eye
        lines.append(" ".join(f"{x:.9f}" for x in [t, *rotvec, *trans]))
    video.mkdir(parents=True)
    (video / "lowres_wide.traj").write_text("\n".join(lines) + "\n")
    for t in frame_times:
        name = f"{VID}_{t:.3f}.png"
        write_image(video / "lowres_wide" / name, W, H, value=100)
        tp = t + (pincam_offset or {}).get(t, 0.0)
        (video / "lowres_wide_intrinsics").mkdir(exist_ok=True)
        (video / "lowres_wide_intrinsics" / f"{VID}_{tp:.3f}.pincam").write_text(
            f"{W} {H} {F} {F} {W / 2} {H / 2}\n"
        )
        if depth:
            c = cam_at(t)
            v, u = np.mgrid[0:H, 0:W] + 0.5
            d_cam = np.stack([(u - W / 2) / F, (v - H / 2) / F, np.ones_like(u)], -1)
            d_world = d_cam @ np.stack([c.right, c.down, c.forward])
            s = np.where(d_world[..., 2] < 0, -c.eye[2] / np.minimum(d_world[..., 2], -1e-9), 0)
            mm = np.round(np.where(s < 60.0, s, 0) * 1000).astype(np.uint16)  # 0: no depth
            conf = np.full((H, W), 2, np.uint8)
            mm[:4, :4], conf[:4, :4] = 500, 0  # low-confidence garbage that must be dropped
            (video / "lowres_depth").mkdir(exist_ok=True)
            (video / "confidence").mkdir(exist_ok=True)
            Image.fromarray(mm).save(video / "lowres_depth" / name)
            Image.fromarray(conf).save(video / "confidence" / name)
    return video


def test_arkit_poses_timestamps_and_depth_points(tmp_path, caplog):
    traj = np.round(np.arange(0, 1.01, 0.1), 3)
    frames = [0.0, 0.05, 0.1004, 0.25, 0.533, 0.9, 1.5]  # 1.5: no pose within 0.05 s
    video = write_arkit(tmp_path, frames, traj, pincam_offset={0.25: 0.001})
    with caplog.at_level(logging.WARNING):
        scene = load_scene(video.parent / VID, test_every=0, dataset_split=False)
    assert scene.parser == "arkit" and len(scene.train) == 6
    assert "dropped 1 of 7 frames" in caplog.text and scene.skipped == [f"{VID}_1.500.png"]
    # interpolated (0.05, 0.25, 0.533), exact (0.0, 0.9) and within-1-ms (0.1004) poses
    kept = [0.0, 0.05, 0.1004, 0.25, 0.533, 0.9]
    names = [f"{VID}_{t:.3f}.png" for t in kept]
    assert scene.train.names == sorted(names)
    by_name = dict(zip(names, kept))
    want = [cam_at(round(by_name[n], 3)) for n in scene.train.names]
    want[scene.train.names.index(f"{VID}_0.100.png")] = cam_at(0.1)  # 0.1004 is written as 0.100
    assert_projects(scene.train, want, scene.normalization, tol=1e-4)

    assert scene.point_source == "depth" and len(scene.points) > 50
    world = scene.normalization.to_world(scene.points.double().numpy())
    assert np.abs(world[:, 2]).max() < 3e-3  # on the floor plane z = 0 ...
    assert np.allclose(scene.point_colors.numpy(), 100 / 255, atol=1e-6)  # ... with its colour


def test_arkit_frame_folder_layout_and_stride(tmp_path):
    traj = np.round(np.arange(0, 1.01, 0.1), 3)
    video = write_arkit(tmp_path / "x", [0.1, 0.2, 0.3, 0.4, 0.5], traj, depth=False)
    nested = tmp_path / VID
    (tmp_path / VID).mkdir()
    video.rename(nested / f"{VID}_frames")  # the <id>/<id>_frames/ layout of the 3DOD release
    scene = load_scene(nested, frame_stride=2, test_every=0, num_random_points=100, downscale=2)
    assert scene.train.names == [f"{VID}_{t:.3f}.png" for t in (0.1, 0.3, 0.5)]
    assert scene.point_source == "random"
    assert scene.image(1).shape == (H // 2, W // 2, 3)
    halved = [cam_at(t) for t in (0.1, 0.3, 0.5)]
    for c in halved:
        c.fx, c.fy, c.cx, c.cy = c.fx / 2, c.fy / 2, c.cx / 2, c.cy / 2
    assert_projects(scene.train, halved, scene.normalization, tol=1e-4)


def test_arkit_errors(tmp_path):
    video = write_arkit(tmp_path, [5.0], np.array([0.0, 0.1]), depth=False)
    with pytest.raises(InputError, match="none of the 1 lowres_wide frames has a pose"):
        load_scene(video)
    (video / "lowres_wide.traj").write_text("0.0 1 2 3\n")
    with pytest.raises(CorruptFileError, match=r"lowres_wide.traj:1: expected"):
        load_scene(video)
