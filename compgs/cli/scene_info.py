"""`compgs scene-info PATH`: what `load_scene` finds in a scene folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import tyro


def scene_info(
    path: Annotated[Path, tyro.conf.Positional],
    parser: str = "auto",
    downscale: int = 1,
    masks: bool | None = None,
    test_every: int = 8,
    init: str = "auto",
) -> None:
    """Print the detected parser, images per split, resolutions, intrinsics, points and bounds.

    Args:
        path: a scene folder (COLMAP, nerfstudio/DL3DV, LLFF, Blender, ARKitScenes).
        parser: auto, or one of nerfstudio, blender, colmap, llff, arkit.
        downscale: image size divisor (reads or makes images_<d>/).
        masks: use the folder's masks (default: when present).
        test_every: hold out every n-th image for testing (0: none).
        init: initial points: auto, sfm, depth, triangulate, random or a .ply path.
    """
    from rich.console import Console
    from rich.table import Table

    from compgs.data import load_scene

    scene = load_scene(
        path, parser=parser, downscale=downscale, masks=masks, test_every=test_every, init=init
    )
    table = Table(title=f"Scene {path}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in describe(scene):
        table.add_row(key, value)
    Console().print(table)


def describe(scene) -> list[tuple[str, str]]:
    import torch

    s = scene.summary()
    cams = [c for c in (scene.train, scene.test) if len(c)]
    K = torch.cat([c.K for c in cams])
    centres = torch.cat([c.centers() for c in cams])
    fx, fy = K[:, 0, 0], K[:, 1, 1]
    pts = scene.points
    rows = [
        ("parser", s["parser"]),
        ("images", f"{s['num_train']} train + {s['num_test']} test"),
        ("split", s["split_rule"]),
        ("skipped images", str(s["skipped_images"])),
        ("resolution(s)", ", ".join(s["resolutions"]) + f"  (downscale {s['downscale']})"),
        ("camera model", scene.train.camera_model),
        ("focal fx / fy", f"{_range(fx)} / {_range(fy)} px"),
        ("principal point", f"cx {_range(K[:, 0, 2])}, cy {_range(K[:, 1, 2])} px"),
        ("masks", f"{s['masks']} (background {tuple(round(c, 3) for c in s['background'])})"),
        ("initial points", f"{s['num_points']:,} from {s['point_source']}"),
        (
            "normalisation",
            f"scene = {s['normalization']['scale']:.4g} x (world - {_vec(s['normalization']['center'])})",
        ),
        ("camera extent", f"{s['extent']:.4g} (scene units)"),
        ("camera centres", f"{_vec(centres.min(0).values)} .. {_vec(centres.max(0).values)}"),
    ]
    if len(pts):
        rows.append(("points bounds", f"{_vec(pts.min(0).values)} .. {_vec(pts.max(0).values)}"))
    return rows


def _range(t) -> str:
    lo, hi = float(t.min()), float(t.max())
    return f"{lo:.5g}" if abs(hi - lo) < 1e-6 * max(1.0, abs(hi)) else f"{lo:.5g}..{hi:.5g}"


def _vec(v) -> str:
    return "(" + ", ".join(f"{float(x):.3g}" for x in v) + ")"
