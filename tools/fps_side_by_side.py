"""Rendering speed of several trained scenes, side by side, in one process.

FPS recorded at the end of a training run depends on what else the machine was
doing then; a ratio between two runs is only honest when both are measured
together. This renders the test views of the first run's scene with every
given splat file in interleaved rounds (A B C, A B C, ...), same threads, same
backend, and prints each file's best frames per second and its ratio to the
first file (the baseline, e.g. the 3DGS PLY).

    python tools/fps_side_by_side.py RUN_DIR FILE_OR_RUN [FILE_OR_RUN ...] [--rounds 5] [--threads 2]

A run folder stands for what it ships (scene.cgs if present, else splats.ply).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def shipped(path: Path) -> Path:
    if path.is_dir():
        for name in ("scene.cgs", "splats.ply"):
            if (path / name).is_file():
                return path / name
        raise SystemExit(f"{path}: holds neither scene.cgs nor splats.ply")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scene_run", type=Path, help="run folder whose scene (test views) is used")
    parser.add_argument("others", type=Path, nargs="+", help="splat files or run folders")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from compgs import io
    from compgs.render import render
    from compgs.train.config import TrainConfig, load_yaml
    from compgs.train.run import load_training_scene

    config = load_yaml(TrainConfig, args.scene_run / "config.yml")
    scene = load_training_scene(config)
    cams = scene.cameras("test")
    cams = cams[: min(len(cams), args.views)]
    size = {"width": int(cams.width[0]), "height": int(cams.height[0]), "backend": args.backend}
    files = [shipped(p) for p in (args.scene_run, *args.others)]
    splats = [io.load(f) for f in files]
    for s in splats:
        render(s, cams[0], **size)  # warm-up: compilation and caches
    best = [float("inf")] * len(files)
    for _ in range(args.rounds):
        for i, s in enumerate(splats):
            start = time.perf_counter()
            for v in range(len(cams)):
                render(s, cams[v], **size)
            best[i] = min(best[i], (time.perf_counter() - start) / len(cams))
    base = best[0]
    print(f"{len(cams)} test views at {size['width']}x{size['height']}, {args.threads} threads, "
          f"best of {args.rounds} interleaved rounds")  # fmt: skip
    for f, s, t in zip(files, splats, best):
        print(f"  {str(f):<70} {s.num_gaussians:>9,} G  {1 / t:7.2f} FPS  x{base / t:5.2f}")
    for f, s, t in zip(files, splats, best):
        print(json.dumps({"measure": "fps", "file": str(f), "gaussians": s.num_gaussians,
                          "fps": 1 / t, "ratio_to_first": base / t}))  # fmt: skip


if __name__ == "__main__":
    main()
