"""`compgs compare RUN_DIR...`: the paper's table and a rate-distortion plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import tyro


def compare(
    runs: Annotated[list[Path], tyro.conf.Positional],
    plot: Path = Path("rate_distortion.png"),
) -> None:
    """Compare finished training runs: SSIM, PSNR, LPIPS, FPS, size, train time, #Gaussians.

    Args:
        runs: run directories written by `compgs train` (each holds metrics.json), or
            metrics files such as the eval-*.json that `compgs eval --file` writes.
        plot: where to write the rate-distortion plot (size on a log axis vs PSNR).
    """
    from compgs.errors import InputError
    from compgs.eval.compare import load_run_metrics, print_comparison, rate_distortion_plot

    if not runs:
        raise InputError("give at least one run directory")
    loaded = [(run, load_run_metrics(run)) for run in runs]
    print_comparison(loaded, "Comparison (test split; metrics on what each run ships)")
    rate_distortion_plot(loaded, plot)
    print(f"rate-distortion plot: {plot}")
