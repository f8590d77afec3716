"""Pose and projection helpers, normalisation, point-cloud utilities, undistortion identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from compgs.data.geometry import (
    Normalization,
    axis_angle_to_matrix,
    focus_point,
    interpolate_pose,
    look_at,
    matrix_to_quaternion,
    project,
    quaternion_to_matrix,
)
from compgs.data.points import (
    read_point_ply,
    voxel_downsample,
    voxel_downsample_numpy,
    write_point_ply,
)
from compgs.data.undistort import undistort


def test_axis_angle_matches_scipy():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(size=(50, 3)), [[0, 0, 0], [1e-14, 0, 0], [np.pi, 0, 0]]])
    np.testing.assert_allclose(
        axis_angle_to_matrix(v), Rotation.from_rotvec(v).as_matrix(), atol=1e-12
    )


def test_quaternion_round_trip_all_branches():
    R = Rotation.random(200, random_state=1).as_matrix()
    R = np.concatenate(
        [
            R,
            np.diag([1.0, -1, -1])[None],
            np.diag([-1.0, 1, -1])[None],
            np.diag([-1.0, -1, 1])[None],
        ]
    )
    q = matrix_to_quaternion(R)
    assert (q[:, 0] >= 0).all()
    np.testing.assert_allclose(quaternion_to_matrix(q), R, atol=1e-12)


def test_interpolate_pose_about_a_fixed_axis():
    def pose(angle, t):
        m = np.eye(4)
        m[:3, :3] = Rotation.from_rotvec([0, 0, angle]).as_matrix()
        m[:3, 3] = t
        return m

    a, b = pose(0.2, [0, 0, 0]), pose(1.0, [1, 2, 3])
    np.testing.assert_allclose(interpolate_pose(a, b, 0.0), a, atol=1e-12)
    np.testing.assert_allclose(interpolate_pose(a, b, 1.0), b, atol=1e-12)
    np.testing.assert_allclose(
        interpolate_pose(a, b, 0.25), pose(0.4, [0.25, 0.5, 0.75]), atol=1e-12
    )


def test_look_at_project_and_focus():
    target = np.array([0.3, -0.2, 0.5])
    eyes = [np.array([4 * np.cos(a), 4 * np.sin(a), 2.0]) for a in np.linspace(0, 6, 7)]
    c2w = np.stack([look_at(e, target, np.array([0, 0, 1.0])) for e in eyes])
    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    uv, z = project(np.stack([target, target + [0, 0, 0.5]]), K, c2w)
    np.testing.assert_allclose(uv[:, 0], np.tile([32.0, 24.0], (7, 1)), atol=1e-9)  # centre pixel
    assert (uv[:, 1, 1] < 24).all()  # world up appears up in the image (y down)
    np.testing.assert_allclose(z[:, 0], [np.linalg.norm(e - target) for e in eyes])
    np.testing.assert_allclose(focus_point(c2w), target, atol=1e-9)
    forward_facing = np.stack(
        [
            look_at(np.array([x, 0, 0]), np.array([x, 0, 5]), np.array([0, -1.0, 0]))
            for x in range(4)
        ]
    )
    assert focus_point(forward_facing) is None


def test_normalization_round_trip():
    n = Normalization.from_camera_centres(np.array([[1.0, 1, 1], [3, 1, 1], [2, 3, 1]]))
    p = np.random.default_rng(0).normal(size=(10, 3))
    np.testing.assert_allclose(n.to_world(n.apply(p)), p, atol=1e-12)
    h = np.concatenate([p, np.ones((10, 1))], 1) @ n.matrix().T
    np.testing.assert_allclose(h[:, :3], n.apply(p), atol=1e-12)


def test_voxel_downsample_numpy_matches_open3d():
    pytest.importorskip("open3d", exc_type=ImportError)
    rng = np.random.default_rng(0)
    xyz, rgb = rng.random((5000, 3)) * 2, rng.random((5000, 3))
    ours = voxel_downsample_numpy(xyz, rgb, 0.1)
    theirs = voxel_downsample(xyz, rgb, 0.1)  # open3d, re-sorted by voxel
    assert len(ours[0]) == len(theirs[0]) < 5000
    np.testing.assert_allclose(ours[0], theirs[0], atol=1e-9)
    np.testing.assert_allclose(ours[1], theirs[1], atol=1e-9)


def test_voxel_downsample_means():
    xyz = np.array([[0.01, 0, 0], [0.03, 0, 0], [0.5, 0, 0]])
    rgb = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    out, col = voxel_downsample_numpy(xyz, rgb, 0.1)
    np.testing.assert_allclose(out, [[0.02, 0, 0], [0.5, 0, 0]])
    np.testing.assert_allclose(col, [[0.5, 0.5, 0], [0, 0, 1]])


def test_point_ply_round_trip_and_grey_default(tmp_path):
    xyz = np.array([[1.0, 2, 3], [4, 5, 6]])
    write_point_ply(tmp_path / "p.ply", xyz, np.array([[0, 0.5, 1.0], [1, 1, 1]]))
    p, c = read_point_ply(tmp_path / "p.ply")
    np.testing.assert_allclose(p, xyz)
    np.testing.assert_allclose(c, [[0, 128 / 255, 1], [1, 1, 1]])
    import plyfile

    rows = np.array([(1.0, 2.0, 3.0)], dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])
    plyfile.PlyData([plyfile.PlyElement.describe(rows, "vertex")]).write(str(tmp_path / "g.ply"))
    assert read_point_ply(tmp_path / "g.ply")[1].tolist() == [[0.5, 0.5, 0.5]]


def test_undistort_with_zero_coefficients_is_identity():
    img = torch.rand(20, 30, 3)
    K = torch.tensor([[25.0, 0, 15], [0, 25, 10], [0, 0, 1]])
    assert torch.allclose(undistort(img, K, "OPENCV", torch.zeros(6)), img, atol=1e-5)
    # a fisheye with zero coefficients is still equidistant (r = theta), not pinhole
    assert not torch.allclose(undistort(img, K, "OPENCV_FISHEYE", torch.zeros(6)), img, atol=1e-2)
