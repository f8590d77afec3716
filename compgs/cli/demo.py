"""`compgs demo`: the main job on the embedded default scene (what `make demo` runs).

Generates the synthetic scene (once), trains plain 3DGS (`3dgs-fast`) and
CompGS (`compgs-32k-bitq`) on the same CPU budget, and prints the paper-style
comparison: quality, size, compression ratio, speed.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


def demo(
    output_dir: Path = Path("outputs/demo"),
    max_steps: int = 3000,
    methods: tuple[str, ...] = ("3dgs-fast", "compgs-32k-bitq"),
    device: str = "auto",
) -> None:
    """Train on the embedded scene and compare methods.

    Args:
        output_dir: where the scene, the runs and the plot go.
        max_steps: training steps of every method (the schedules scale with it).
        methods: presets to train (see `compgs train --help`).
        device: auto, cpu or cuda.
    """
    from rich.console import Console

    from compgs.data.synthetic import generate
    from compgs.eval.compare import print_comparison, rate_distortion_plot
    from compgs.methods import get_method
    from compgs.train.run import train

    console = Console()
    scene_dir = output_dir / "scene"
    if not (scene_dir / "transforms.json").is_file():
        console.print(f"generating the embedded default scene in {scene_dir} ...")
        generate(scene_dir)
    runs = []
    for name in methods:
        config = dataclasses.replace(
            get_method(name),
            data=scene_dir,
            max_steps=max_steps,
            output_dir=output_dir / "runs",
            device=device,
            checkpoint_every=0,
        )
        console.print(f"[bold]training {name}[/] for {max_steps} steps ...")
        run_dir = train(config)
        runs.append((run_dir, json.loads((run_dir / "metrics.json").read_text())))

    print_comparison(runs, "demo: embedded scene, test views", ratio_to_first=True)
    plot = output_dir / "rate_distortion.png"
    rate_distortion_plot(runs, plot)
    for run_dir, _ in runs:
        console.print(f"run: {run_dir}")
    console.print(f"rate-distortion plot: {plot}")
