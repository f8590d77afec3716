"""Initial points from known poses: SIFT features, matching and triangulation with pycolmap.

The same images the trainer sees (downscaled, undistorted, masked) are
written to a temporary folder; COLMAP extracts and matches features with the
known pinhole intrinsics, then triangulates tracks against the known poses
(COLMAP's ``point_triangulator``), so no pose is re-estimated.
"""

from __future__ import annotations

import io
import logging
import tempfile
from pathlib import Path

import numpy as np

from compgs.data.geometry import invert_rigid
from compgs.errors import InputError

log = logging.getLogger(__name__)

EXHAUSTIVE_LIMIT = 120  # more images than this: match each with its neighbours in sequence


def triangulate(
    images: list[np.ndarray],
    K: np.ndarray,
    c2w: np.ndarray,
    *,
    max_features: int = 4096,
    min_track_length: int = 3,
    seed: int = 0,
    num_threads: int = -1,
) -> tuple[np.ndarray, np.ndarray]:
    """(xyz [P,3], colours [P,3] in [0,1]) triangulated from uint8 ``images`` [H,W,3]
    seen by pinhole cameras ``K`` [C,3,3] at OpenCV camera-to-world ``c2w`` [C,4,4]."""
    import pycolmap

    if len(images) < 2:
        raise InputError("triangulation needs at least two training images")
    pycolmap.set_random_seed(seed)
    # COLMAP logs every image and pair at INFO through glog: keep it for --debug runs only.
    quiet = not log.isEnabledFor(logging.DEBUG)
    saved = pycolmap.logging.minloglevel
    if quiet:
        pycolmap.logging.minloglevel = 2
    try:
        xyz, rgb = _run(images, K, c2w, max_features, min_track_length, num_threads)
    finally:
        pycolmap.logging.minloglevel = saved
    if len(xyz) == 0:
        log.warning("triangulation found no 3D point in %d images", len(images))
    log.info("triangulated %d points from %d images", len(xyz), len(images))
    return xyz, rgb


def match_calibrated(
    db_path: Path,
    image_dir: Path,
    names: list[str],
    K_by_name: dict[str, np.ndarray],
    *,
    max_features: int = 8192,
    num_threads: int = -1,
    exhaustive_limit: int = EXHAUSTIVE_LIMIT,
) -> None:
    """SIFT features of ``names`` in ``image_dir`` and their verified matches, written to the
    COLMAP database ``db_path``; every image is a PINHOLE camera with its known ``K`` [3,3]
    as a prior, so that geometric verification is calibrated. Exhaustive matching up to
    ``exhaustive_limit`` images, sequential (neighbours in name order) beyond."""
    import pycolmap

    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "PINHOLE"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.sift.max_num_features = max_features
    extraction.num_threads = num_threads
    extraction.use_gpu = False
    pycolmap.extract_features(
        db_path, image_dir, image_names=names, camera_mode=pycolmap.CameraMode.PER_IMAGE,
        reader_options=reader, extraction_options=extraction, device=pycolmap.Device.cpu,
    )  # fmt: skip
    db = pycolmap.Database.open(db_path)
    for im in db.read_all_images():
        cam = db.read_camera(im.camera_id)
        k = K_by_name[im.name]
        cam.params = [k[0, 0], k[1, 1], k[0, 2], k[1, 2]]
        cam.has_prior_focal_length = True
        db.update_camera(cam)
    db.close()
    matching = pycolmap.FeatureMatchingOptions()
    matching.use_gpu = False
    matching.num_threads = num_threads
    match = (
        pycolmap.match_exhaustive if len(names) <= exhaustive_limit else pycolmap.match_sequential
    )
    match(db_path, matching_options=matching, device=pycolmap.Device.cpu)


def _run(images, K, c2w, max_features, min_track_length, num_threads):
    """Extract, match and triangulate in a temporary folder: (xyz [P,3], colours [P,3])."""
    import pycolmap
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="compgs-triangulate-") as tmp:
        tmp = Path(tmp)
        image_dir = tmp / "images"
        image_dir.mkdir()
        names = [f"{i:05d}.png" for i in range(len(images))]
        for name, im in zip(names, images):
            buf = io.BytesIO()
            Image.fromarray(im).save(buf, format="PNG")
            (image_dir / name).write_bytes(buf.getvalue())
        db_path = tmp / "database.db"
        index = {name: i for i, name in enumerate(names)}
        match_calibrated(db_path, image_dir, names, {n: K[i] for n, i in index.items()},
                         max_features=max_features, num_threads=num_threads)  # fmt: skip

        rec = pycolmap.Reconstruction()
        db = pycolmap.Database.open(db_path)
        for cam in db.read_all_cameras():
            rec.add_camera_with_trivial_rig(cam)
        for im in db.read_all_images():
            w2c = invert_rigid(c2w[index[im.name]])[:3, :4]
            image = pycolmap.Image(name=im.name, camera_id=im.camera_id, image_id=im.image_id)
            rec.add_image_with_trivial_frame(image, pycolmap.Rigid3d(w2c))
        db.close()
        out_dir = tmp / "sparse"
        out_dir.mkdir()
        result = pycolmap.triangulate_points(rec, db_path, image_dir, out_dir)
        # Two-view tracks on repeated textures are where wrong matches survive.
        pts = [p for p in result.points3D.values() if p.track.length() >= min_track_length]
        xyz = np.array([p.xyz for p in pts], dtype=np.float64).reshape(-1, 3)
        rgb = np.array([p.color for p in pts], dtype=np.float64).reshape(-1, 3) / 255.0
    return xyz, rgb
