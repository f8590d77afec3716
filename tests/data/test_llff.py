"""LLFF poses_bounds.npy: a written fixture, and the real capture in ../shared/data/maryrose."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from compgs.data import load_scene
from compgs.data.geometry import focus_point, project
from compgs.errors import CorruptFileError
from tests.data.rig import assert_projects, make_cam, write_image


def write_llff(root, cams, near=2.0, far=6.0, masks=False):
    rows = []
    for i, c in enumerate(cams):
        m = np.zeros((3, 5))
        m[:, 0], m[:, 1], m[:, 2] = c.down, c.right, -c.forward  # LLFF: [down, right, backwards]
        m[:, 3] = c.eye
        m[:, 4] = [c.height, c.width, c.fx]
        rows.append(np.concatenate([m.ravel(), [near, far]]))
        write_image(root / "images" / f"IMG_{i:04d}.JPG", c.width, c.height, value=100)
        if masks:
            mask = np.zeros((c.height, c.width), np.uint8)
            mask[c.height // 4 : 3 * c.height // 4, c.width // 4 : 3 * c.width // 4] = 255
            (root / "masks").mkdir(exist_ok=True)
            Image.fromarray(mask).save(root / "masks" / f"IMG_{i:04d}_mask.png")
    np.save(root / "poses_bounds.npy", np.array(rows))


def llff_ring(n):
    return [
        make_cam([4 * np.cos(a), 4 * np.sin(a), 1.0], [0.1, -0.2, 0.3], fx=70, width=64, height=64)
        for a in np.linspace(0, 2 * np.pi, n, endpoint=False)
    ]


def test_llff_poses_masks_and_random_points(tmp_path):
    cams = llff_ring(12)
    write_llff(tmp_path, cams, near=3.0, far=5.0, masks=True)
    scene = load_scene(tmp_path, num_random_points=2000)
    assert scene.parser == "llff" and scene.has_masks
    assert scene.test.names == ["IMG_0000.JPG", "IMG_0008.JPG"]
    assert_projects(scene.train, [c for i, c in enumerate(cams) if i % 8], scene.normalization)
    im = scene.image(0).numpy()
    assert np.allclose(im[0, 0], 1.0) and np.allclose(im[32, 32], 100 / 255)  # white background
    # random points are carved to the visual hull: inside every training mask
    world = scene.normalization.to_world(scene.points.double().numpy())
    for c in (c for i, c in enumerate(cams) if i % 8):
        uv = c.pixel(world)
        assert ((uv >= 15.5) & (uv <= 48.5)).all()  # the mask square is pixels 16..47
    # each was drawn within the near/far bounds (3..5) of some training camera
    depth = np.stack([(world - c.eye) @ c.forward for i, c in enumerate(cams) if i % 8])
    assert (((depth > 3 - 1e-6) & (depth < 5 + 1e-6)).any(axis=0)).all()


def test_llff_downscale_scales_the_poses_file_intrinsics(tmp_path):
    cams = llff_ring(9)
    write_llff(tmp_path, cams, near=3.0, far=5.0)
    scene = load_scene(tmp_path, downscale=2, num_random_points=100, cache_dir=tmp_path / "c")
    assert scene.train.width.tolist() == [32] * 7 and scene.image(0).shape == (32, 32, 3)
    for c in cams:
        c.fx, c.fy, c.cx, c.cy = c.fx / 2, c.fy / 2, c.cx / 2, c.cy / 2
    assert_projects(scene.train, [c for i, c in enumerate(cams) if i % 8], scene.normalization)


def test_llff_count_mismatch(tmp_path):
    write_llff(tmp_path, llff_ring(3))
    write_image(tmp_path / "images" / "extra.png", 8, 8)
    with pytest.raises(CorruptFileError, match="3 poses but images/ holds 4 images"):
        load_scene(tmp_path)


@pytest.fixture(scope="module")
def maryrose(maryrose_dir, tmp_path_factory):
    cache = tmp_path_factory.mktemp("maryrose-cache")
    return load_scene(maryrose_dir, downscale=16, cache_dir=cache, num_random_points=5000), cache


def test_maryrose_loads(maryrose):
    scene, cache = maryrose
    scene.preload()  # makes the test views' copies too (they are made on first use)
    assert scene.parser == "llff" and len(scene.train) + len(scene.test) == 69
    assert len(scene.test) == 9 and scene.has_masks
    assert scene.train.width.tolist() == [216] * 60 and scene.image(0).shape == (216, 216, 3)
    # downscale 16 was made from images_8 (432 px) into the cache, not into ../shared
    cached = sorted((next(cache.glob("scenes/maryrose-*")) / "images_16").glob("*.png"))
    assert len(cached) == 69 and Image.open(cached[0]).size == (216, 216)
    np.testing.assert_allclose(scene.train.K[0, 0, 0].item(), 10547.2437 / 16, rtol=1e-4)


def test_maryrose_cameras_look_at_the_object(maryrose):
    scene, _ = maryrose
    cams = [scene.train, scene.test]
    c2w = np.concatenate([c.camtoworld.double().numpy() for c in cams])
    centre = focus_point(c2w)
    assert centre is not None
    to_centre = centre - c2w[:, :3, 3]
    to_centre /= np.linalg.norm(to_centre, axis=1, keepdims=True)
    angles = np.degrees(np.arccos(np.clip((to_centre * c2w[:, :3, 2]).sum(1), -1, 1)))
    assert angles.max() < 5.0  # every camera's forward axis points at the object


def test_maryrose_object_centre_from_masks(maryrose):
    """Triangulate the masks' centroids: the point reprojects onto the object in every view."""
    scene, _ = maryrose
    rays_o, rays_d, masks, Ks, c2ws = [], [], [], [], []
    for split in ("train", "test"):
        cams = scene.cameras(split)
        for i in range(len(cams)):
            m = scene.mask(i, split).numpy()
            v, u = np.nonzero(m > 0.5)
            K, c2w = cams.K[i].double().numpy(), cams.camtoworld[i].double().numpy()
            d = np.linalg.inv(K) @ np.array([u.mean() + 0.5, v.mean() + 0.5, 1.0])
            rays_o.append(c2w[:3, 3])
            rays_d.append(c2w[:3, :3] @ d / np.linalg.norm(d))
            masks.append(m), Ks.append(K), c2ws.append(c2w)
    A = sum(np.eye(3) - np.outer(d, d) for d in rays_d)
    b = sum((np.eye(3) - np.outer(d, d)) @ o for o, d in zip(rays_o, rays_d))
    centre = np.linalg.solve(A, b)
    assert len(masks) == 69
    for m, K, c2w in zip(masks, Ks, c2ws):
        uv, z = project(centre[None], K, c2w)
        u, v = uv[0]
        assert z[0] > 0 and 0 <= u < 216 and 0 <= v < 216
        assert m[int(v), int(u)] > 0.5  # inside the object's mask
    # masked pixels hold the background colour
    im, m = scene.image(0).numpy(), scene.mask(0).numpy()
    assert (m == 0).sum() > 1000 and np.allclose(im[m == 0], scene.background.numpy(), atol=1e-6)
    # the carved random points sit around that centre, well inside the camera ring
    pts = scene.points.double().numpy()
    assert (
        np.linalg.norm(pts - centre, axis=1).max()
        < 0.5 * np.linalg.norm(np.array(rays_o) - centre, axis=1).min()
    )
