"""`compgs generate-scene OUT`: write the embedded default scene (a nerfstudio folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import tyro

from compgs.data.synthetic import DEFAULT_SUPERSAMPLE


def generate_scene(
    out: Annotated[Path, tyro.conf.Positional],
    seed: int = 0,
    width: int = 160,
    height: int = 120,
    num_views: int = 60,
    num_points: int = 4000,
    supersample: int = DEFAULT_SUPERSAMPLE,
) -> None:
    """Ray-trace the default scene (spheres and boxes on a tiled floor) into OUT.

    Args:
        out: folder to write (transforms.json, images/, sparse_pc.ply).
        seed: seed of the textures, camera jitter and point noise; the same
            seed and sizes give bit-identical files.
        width: image width in pixels.
        height: image height in pixels.
        num_views: number of cameras on the hemisphere.
        num_points: size of the initial point cloud (sampled on the surfaces).
        supersample: rays per pixel along each axis (anti-aliasing).
    """
    import time

    from rich.console import Console

    from compgs.data import synthetic
    from compgs.errors import InputError

    for name, value in (
        ("width", width),
        ("height", height),
        ("num-views", num_views),
        ("num-points", num_points),
        ("supersample", supersample),
    ):
        if value < 1:
            raise InputError(f"--{name} must be >= 1, got {value}")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    start = time.perf_counter()
    synthetic.generate(
        out,
        seed=seed,
        width=width,
        height=height,
        num_views=num_views,
        num_points=num_points,
        supersample=supersample,
    )
    Console().print(
        f"wrote {num_views} views of {width}x{height} and {num_points} points to {out} "
        f"in {time.perf_counter() - start:.1f} s (load it with: compgs scene-info {out})"
    )
