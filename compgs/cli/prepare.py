"""`compgs prepare arkit --raw-root DIR --video-id ID --out SCENE_DIR`: raw capture -> scene folder."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

KINDS = {"arkit": "a raw ARKitScenes video -> a nerfstudio scene folder"}


def prepare(argv: list[str]) -> None:
    from compgs.cli.main import _fail, parse

    if not argv or argv[0] in ("-h", "--help"):
        print("usage: compgs prepare <kind> [options]   (compgs prepare <kind> --help)\n")
        for kind, summary in KINDS.items():
            print(f"  {kind:<8} {summary}")
        if not argv:
            raise SystemExit(2)
        return
    if argv[0] not in KINDS:
        _fail(f"unknown kind {argv[0]!r}; known: {', '.join(KINDS)}", 2)
    parse(arkit, list(argv[1:]), "compgs prepare arkit")


prepare.raw_argv = True  # a sub-command per kind of capture


def arkit(
    raw_root: Path,
    video_id: str,
    out: Path,
    frames: int = 300,
    sfm: bool = False,
    sky: Literal["auto", "up", "down", "left", "right"] = "auto",
    tolerance: float = 0.05,
    depth_voxel: float | None = None,
    overwrite: bool = False,
) -> None:
    """Turn one raw ARKitScenes video into a scene folder (transforms.json, images/, sparse_pc.ply).

    Args:
        raw_root: folder holding the video (<raw_root>/<id>/ or <raw_root>/<fold>/<id>/).
        video_id: the video's 8-digit id.
        out: the scene folder to write (built under a temporary name, renamed when complete).
        frames: frames to keep: the sharpest of each of this many equal windows.
        sfm: poses from COLMAP SfM on the kept frames (aligned to ARKit's) instead of ARKit's.
        sky: image side showing the sky in the raw frames (auto: from the poses).
        tolerance: seconds between a frame and its pose.
        depth_voxel: voxel size (metres) of the fused depth points (default: extent/100).
        overwrite: replace OUT if it exists.
    """
    import json

    from compgs.batch.arkit_prepare import prepare_arkit

    path = prepare_arkit(
        raw_root, video_id, out, frames=frames, sfm=sfm, sky=sky, tolerance=tolerance,
        depth_voxel=depth_voxel, overwrite=overwrite,
    )  # fmt: skip
    info = json.loads((path / "transforms.json").read_text())["compgs_arkit"]
    print(
        f"{path}: {info['kept_frames']} of {info['posed_frames']} posed frames, sky "
        f"{info['sky_direction']} ({info['quarter_turns_ccw']} quarter turns), poses from "
        f"{info['poses']}, points from {info['points']}"
    )
