"""Scenes described by ``transforms*.json``: nerfstudio / DL3DV and NeRF-synthetic (Blender).

Both store OpenGL camera-to-world matrices (x right, y up, z back); nerfstudio
adds pinhole intrinsics and OpenCV distortion, globally or per frame, Blender
only a horizontal field of view.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from compgs.data.frames import (
    OPENCV,
    OPENCV_FISHEYE,
    PINHOLE,
    Frame,
    ParsedScene,
    image_size,
    intrinsics,
)
from compgs.data.geometry import opengl_to_opencv
from compgs.errors import CorruptFileError, UnsupportedFormatError

BLENDER_SPLITS = ("train", "val", "test")
# nerfstudio camera_model names -> ours (SIMPLE_* are COLMAP names some tools write).
NERFSTUDIO_MODELS = {
    "OPENCV": OPENCV,
    "PINHOLE": PINHOLE,
    "SIMPLE_PINHOLE": PINHOLE,
    "OPENCV_FISHEYE": OPENCV_FISHEYE,
}


def read_json(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorruptFileError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(meta, dict) or not isinstance(meta.get("frames"), list):
        raise CorruptFileError(f"{path}: expected an object with a 'frames' list")
    return meta


def _pose(path: Path, index: int, frame: dict) -> np.ndarray:
    try:
        m = np.asarray(frame["transform_matrix"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptFileError(f"{path}: frame {index} has no valid transform_matrix") from e
    if m.shape not in ((4, 4), (3, 4)) or not np.isfinite(m).all():
        raise CorruptFileError(f"{path}: frame {index} transform_matrix has shape {m.shape}")
    return opengl_to_opencv(m)


def _resolve(root: Path, file_path: str) -> Path:
    p = Path(file_path)
    return p if p.is_absolute() else root / p


def parse_nerfstudio(root: Path) -> ParsedScene:
    path = root / "transforms.json"
    meta = read_json(path)
    frames = []
    for i, fr in enumerate(meta["frames"]):
        if not isinstance(fr, dict) or "file_path" not in fr:
            raise CorruptFileError(f"{path}: frame {i} has no file_path")

        def get(key, default=None, fr=fr):
            return fr.get(key, meta.get(key, default))

        image = _resolve(root, fr["file_path"])
        name = str(fr["file_path"])
        model_name = str(get("camera_model", "OPENCV"))
        if model_name not in NERFSTUDIO_MODELS:
            raise UnsupportedFormatError(
                f"{path}: camera_model {model_name} is not supported "
                f"(supported: {', '.join(NERFSTUDIO_MODELS)})"
            )
        w, h = get("w"), get("h")
        if w is None or h is None:
            if not image.is_file():
                w = h = 0  # dropped below with the other missing images
            else:
                w, h = image_size(image)
        try:
            fx = float(get("fl_x"))
            fy = float(get("fl_y", fx))
            cx, cy = float(get("cx", w / 2)), float(get("cy", h / 2))
        except (TypeError, ValueError) as e:
            raise CorruptFileError(f"{path}: frame {i} has no focal length fl_x") from e
        k = {key: float(get(key, 0.0)) for key in ("k1", "k2", "k3", "k4", "p1", "p2")}
        model = NERFSTUDIO_MODELS[model_name]
        dist = None
        if model == OPENCV:
            if k["k4"] != 0:
                raise UnsupportedFormatError(f"{path}: OPENCV with k4 != 0 is not supported")
            dist = np.array([k["k1"], k["k2"], k["p1"], k["p2"], k["k3"], 0.0])
        elif model == OPENCV_FISHEYE:
            dist = np.array([k["k1"], k["k2"], 0.0, 0.0, k["k3"], k["k4"]])
        if dist is not None and not dist.any():
            model, dist = PINHOLE, None
        frames.append(
            Frame(
                name=name,
                image=image,
                K=intrinsics(fx, fy, cx, cy),
                c2w=_pose(path, i, fr),
                width=int(w),
                height=int(h),
                model=model,
                distortion=dist,
                mask=_resolve(root, fr["mask_path"]) if fr.get("mask_path") else None,
                depth=_resolve(root, fr["depth_file_path"]) if fr.get("depth_file_path") else None,
                depth_scale=float(get("depth_unit_scale_factor", 1e-3)),
            )
        )
    scene = ParsedScene(parser="nerfstudio", root=root, frames=frames)
    split = {s: meta.get(f"{s}_filenames") for s in ("train", "test")}
    if all(isinstance(v, list) for v in split.values()):
        scene.split = {s: [str(n) for n in v] for s, v in split.items()}
    if isinstance(meta.get("background_color"), list) and len(meta["background_color"]) == 3:
        scene.background = tuple(float(c) for c in meta["background_color"])
    if meta.get("ply_file_path"):
        from compgs.data.points import read_point_ply

        scene.points, scene.point_colors = read_point_ply(_resolve(root, meta["ply_file_path"]))
        scene.point_source = "ply"
    return scene


def parse_blender(root: Path) -> ParsedScene:
    frames, split = [], {}
    size = None
    for s in BLENDER_SPLITS:
        path = root / f"transforms_{s}.json"
        if not path.is_file():
            continue
        meta = read_json(path)
        if "camera_angle_x" not in meta:
            raise CorruptFileError(f"{path}: no camera_angle_x")
        names = []
        for i, fr in enumerate(meta["frames"]):
            if not isinstance(fr, dict) or "file_path" not in fr:
                raise CorruptFileError(f"{path}: frame {i} has no file_path")
            rel = str(fr["file_path"])
            image = _resolve(root, rel)
            if not image.suffix:
                image = image.with_name(image.name + ".png")
            if size is None and image.is_file():
                size = image_size(image)
            names.append(str(image.relative_to(root)) if image.is_relative_to(root) else rel)
            frames.append((names[-1], image, float(meta["camera_angle_x"]), _pose(path, i, fr)))
        split[s] = names
    w, h = size or (800, 800)  # no image exists: the frames are all dropped later anyway
    out = []
    for name, image, angle, c2w in frames:
        f = 0.5 * w / math.tan(0.5 * angle)
        out.append(
            Frame(name, image, intrinsics(f, f, w / 2, h / 2), c2w, w, h, alpha_is_mask=True)
        )
    test = split.get("test") or split.get("val") or []
    return ParsedScene(
        parser="blender",
        root=root,
        frames=out,
        split={"train": split.get("train", []), "test": test},
        background=(1.0, 1.0, 1.0),  # the NeRF-synthetic evaluation protocol
    )
