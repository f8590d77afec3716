"""COLMAP scenes: ``images/`` + ``sparse/0/{cameras,images,points3D}.{bin,txt}`` via pycolmap."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from compgs.data.frames import OPENCV, OPENCV_FISHEYE, PINHOLE, Frame, ParsedScene, intrinsics
from compgs.data.geometry import invert_rigid, to_homogeneous
from compgs.errors import CorruptFileError, UnsupportedFormatError

MODEL_FOLDERS = ("sparse/0", "sparse", "colmap/sparse/0", "colmap/sparse")


def find_model(root: Path) -> Path | None:
    """The folder holding cameras.{bin,txt}, images.{bin,txt} (first of MODEL_FOLDERS)."""
    for sub in MODEL_FOLDERS:
        folder = root / sub
        for ext in ("bin", "txt"):
            if (folder / f"cameras.{ext}").is_file() and (folder / f"images.{ext}").is_file():
                return folder
    return None


def _camera(model: str, p: np.ndarray) -> tuple[str, np.ndarray, np.ndarray | None] | None:
    """(our model, K, distortion (k1,k2,p1,p2,k3,k4)) for a COLMAP model, None if unsupported."""
    d = np.zeros(6)
    if model == "SIMPLE_PINHOLE":
        return PINHOLE, intrinsics(p[0], p[0], p[1], p[2]), None
    if model == "PINHOLE":
        return PINHOLE, intrinsics(*p[:4]), None
    if model in ("SIMPLE_RADIAL", "RADIAL", "SIMPLE_RADIAL_FISHEYE", "RADIAL_FISHEYE"):
        d[: len(p) - 3] = p[3:]  # k (and k2): the same radial series in both families
        kind = OPENCV_FISHEYE if model.endswith("FISHEYE") else OPENCV
        return kind, intrinsics(p[0], p[0], p[1], p[2]), d
    if model == "OPENCV":
        d[:4] = p[4:8]
        return OPENCV, intrinsics(*p[:4]), d
    if model == "OPENCV_FISHEYE":
        d[[0, 1, 4, 5]] = p[4:8]
        return OPENCV_FISHEYE, intrinsics(*p[:4]), d
    return None


SUPPORTED = "SIMPLE_PINHOLE, PINHOLE, SIMPLE_RADIAL, RADIAL, OPENCV, OPENCV_FISHEYE, (SIMPLE_)RADIAL_FISHEYE"


def parse_colmap(root: Path) -> ParsedScene:
    import pycolmap

    model_dir = find_model(root)
    if model_dir is None:
        raise CorruptFileError(f"{root}: no COLMAP model (cameras/images files) in {MODEL_FOLDERS}")
    try:
        rec = pycolmap.Reconstruction(str(model_dir))
    except Exception as e:  # pycolmap raises bare RuntimeError/ValueError on bad files
        raise CorruptFileError(f"{model_dir}: cannot read COLMAP model ({e})") from e
    image_dir = root / "images"
    if not image_dir.is_dir() and (model_dir.parent.parent / "images").is_dir():
        image_dir = model_dir.parent.parent / "images"  # e.g. colmap/sparse/0 -> colmap/images

    cameras = {}
    for cam_id, cam in rec.cameras.items():
        model = cam.model.name if hasattr(cam.model, "name") else str(cam.model)
        conv = _camera(model, np.asarray(cam.params, dtype=np.float64))
        if conv is None:
            raise UnsupportedFormatError(
                f"{model_dir}: camera {cam_id} uses the COLMAP model {model}, "
                f"which compgs does not support (supported: {SUPPORTED})"
            )
        cameras[cam_id] = (conv, int(cam.width), int(cam.height))

    frames = []
    for _, im in sorted(rec.images.items(), key=lambda kv: kv[1].name):
        if not getattr(im, "has_pose", True):
            continue  # in the model but not registered
        pose = im.cam_from_world
        pose = pose() if callable(pose) else pose  # a method in recent pycolmap
        w2c = to_homogeneous(np.asarray(pose.matrix(), dtype=np.float64))
        (kind, K, dist), w, h = cameras[im.camera_id]
        frames.append(
            Frame(
                name=im.name,
                image=image_dir / im.name,
                K=K,
                c2w=invert_rigid(w2c),
                width=w,
                height=h,
                model=kind,
                distortion=dist,
            )
        )
    if not frames:
        raise CorruptFileError(f"{model_dir}: the COLMAP model has no registered images")

    points = colors = None
    if rec.num_points3D() > 0:
        pts = [p for _, p in sorted(rec.points3D.items())]  # by id: a stable order
        points = np.array([p.xyz for p in pts], dtype=np.float64)
        colors = np.array([p.color for p in pts], dtype=np.float64) / 255.0
    return ParsedScene(
        parser="colmap",
        root=root,
        frames=frames,
        points=points,
        point_colors=colors,
        point_source="sfm" if points is not None else None,
    )
