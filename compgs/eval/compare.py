"""Paper-style comparison of training runs: a table and a rate-distortion plot."""

from __future__ import annotations

import json
from pathlib import Path

from compgs.errors import InputError

COLUMNS = ("method", "SSIM", "PSNR", "LPIPS", "FPS", "size MB", "train min", "#Gaussians")


# What a run ships; another file evaluated on the run (`compgs eval --file`) is named.
RUN_OUTPUTS = ("splats.ply", "scene.cgs")


def load_run_metrics(run: Path) -> dict:
    """A run folder's metrics.json, or a metrics file itself (e.g. `compgs eval --file`'s)."""
    run = Path(run)
    path = run if run.suffix == ".json" else run / "metrics.json"
    if not path.is_file():
        raise InputError(f"{run}: no metrics.json (not a finished training run)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e.msg})") from e


def label(metrics: dict) -> str:
    method = metrics.get("method", "?")
    shipped = metrics.get("size_file")
    return method if shipped in (None, *RUN_OUTPUTS) else f"{method} ({shipped})"


def table_rows(runs: list[tuple[Path, dict]]) -> list[list[str]]:
    rows = []
    for _, m in runs:
        mean = m["eval"]["mean"]
        lp = mean.get("lpips")
        rows.append(
            [
                label(m),
                f"{mean['ssim']:.3f}",
                f"{mean['psnr']:.2f}",
                f"{lp:.3f}" if lp is not None else "n/a",
                f"{m['fps']:.0f}",
                f"{m['size_bytes'] / 1e6:.2f}",
                f"{m['train_seconds'] / 60:.1f}" if "train_seconds" in m else "n/a",
                f"{m['num_gaussians']:,}",
            ]
        )
    return rows


def print_comparison(runs: list[tuple[Path, dict]], title: str, ratio_to_first: bool = False):
    """The table on the console; wide enough for every column even in a log file (rich
    would otherwise squeeze it to 80 columns and elide the numbers)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    columns = [*COLUMNS, *(["ratio vs first"] if ratio_to_first else [])]
    for column in columns:
        table.add_column(column, justify="left" if column == "method" else "right", no_wrap=True)
    reference = runs[0][1]["size_bytes"]
    for (_, metrics), row in zip(runs, table_rows(runs)):
        ratio = [f"{reference / metrics['size_bytes']:.1f}x"] if ratio_to_first else []
        table.add_row(*row, *ratio)
    console = Console()
    console.width = max(console.width, 132)
    console.print(table)


def rate_distortion_plot(runs: list[tuple[Path, dict]], path: Path) -> None:
    """Size (log axis) against test PSNR, one labelled point per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from compgs.atomic import atomic_open

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for _, m in runs:
        size, psnr = m["size_bytes"] / 1e6, m["eval"]["mean"]["psnr"]
        ax.scatter(size, psnr)
        ax.annotate(
            label(m),
            (size, psnr),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_xlabel("size (MB, log scale)")
    ax.set_ylabel("test PSNR (dB)")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        fig.savefig(f, format="png")
    plt.close(fig)
