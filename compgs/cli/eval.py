"""`compgs eval RUN_DIR`: metrics of a finished (or checkpointed) training run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import tyro


def eval_run(
    run_dir: Annotated[Path, tyro.conf.Positional],
    split: str = "test",
    backend: str = "auto",
    device: str = "auto",
    file: Path | None = None,
    per_image: bool = False,
) -> None:
    """Evaluate the Gaussians a run wrote (scene.cgs if present, else splats.ply).

    Args:
        run_dir: a directory written by `compgs train`.
        split: test or train.
        backend: rasterizer backend (auto, cpu, gsplat, reference).
        device: auto, cpu, cuda.
        file: evaluate this splat file on the run's scene instead (e.g. the output of
            `compgs compress RUN/splats.ply`); metrics go to eval-<split>-<file stem>.json.
        per_image: also print every image's PSNR, SSIM and LPIPS.
    """
    from compgs import io
    from compgs.errors import InputError
    from compgs.eval.evaluate import evaluate, measure_fps
    from compgs.eval.report import print_metrics, print_per_image, write_metrics
    from compgs.train.config import TrainConfig, load_yaml
    from compgs.train.run import load_training_scene
    from compgs.train.trainer import resolve_device

    if not (run_dir / "config.yml").is_file():
        raise InputError(f"{run_dir}: not a training run (no config.yml)")
    config = load_yaml(TrainConfig, run_dir / "config.yml")
    candidates = [file] if file else [run_dir / "scene.cgs", run_dir / "splats.ply"]
    files = [p for p in candidates if p.is_file()]
    if not files:
        if file:
            raise InputError(f"{file}: no such file")
        raise InputError(f"{run_dir}: holds neither scene.cgs nor splats.ply (unfinished run?)")
    dev = resolve_device(device)
    splats = io.load(files[0]).to(dev)
    scene = load_training_scene(config)
    result = evaluate(splats, scene, split, backend=backend)
    metrics = {
        "method": config.method,
        "scene": str(config.data),
        "device": str(dev),
        "num_gaussians": splats.num_gaussians,
        "size_bytes": files[0].stat().st_size,
        "size_file": files[0].name,
        "fps": measure_fps(splats, scene, split, backend=backend),
        "eval": result,
    }
    suffix = f"-{file.stem}" if file else ""
    write_metrics(run_dir / f"eval-{split}{suffix}.json", metrics)
    print_metrics(metrics, f"{run_dir} ({files[0].name}, {split} split)")
    if per_image:
        print_per_image(metrics)
