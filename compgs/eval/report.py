"""Printing and saving metrics: metrics.json and the table `compgs train/eval` print."""

from __future__ import annotations

import json
import math
from pathlib import Path

from compgs.atomic import atomic_write_text


def write_metrics(path: Path, metrics: dict) -> None:
    atomic_write_text(path, json.dumps(_finite(metrics), indent=2) + "\n")


def _finite(value):
    """JSON has no inf/nan: write them as strings a reader can recognise."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def summary_rows(metrics: dict) -> list[tuple[str, str]]:
    mean = metrics["eval"]["mean"]
    lp = mean.get("lpips")
    rows = [
        ("test images", str(metrics["eval"]["num_images"])),
        ("PSNR", f"{mean['psnr']:.2f} dB"),
        ("SSIM", f"{mean['ssim']:.4f}"),
        (
            "LPIPS",
            f"{lp:.4f}" if lp is not None else f"unavailable ({metrics['eval']['lpips_note']})",
        ),
        ("PSNR-AM", f"{mean['psnr_am']:.2f} dB"),
        ("Gaussians", f"{metrics['num_gaussians']:,}"),
        ("size", f"{metrics['size_bytes'] / 2**20:.2f} MiB ({metrics['size_file']})"),
        ("render FPS", f"{metrics['fps']:.1f} ({metrics['device']})"),
    ]
    if "train_seconds" in metrics:
        rows.append(
            ("train time", f"{metrics['train_seconds'] / 60:.1f} min, {metrics['steps']} steps")
        )
    for key, label in (
        ("compression_ratio", "compression vs PLY"),
        ("bits_per_gaussian", "bits/Gaussian"),
    ):
        if key in metrics:
            rows.append(
                (label, f"{metrics[key]:.1f}" + ("x" if key == "compression_ratio" else ""))
            )
    return rows


def print_per_image(metrics: dict) -> None:
    """One row per evaluated image: where a mean hides one bad view."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="per image", title_justify="left")
    for column in ("image", "PSNR", "SSIM", "LPIPS"):
        table.add_column(column, justify="left" if column == "image" else "right")
    for row in metrics["eval"]["per_image"]:
        lp = row.get("lpips")
        table.add_row(row["image"], f"{row['psnr']:.2f}", f"{row['ssim']:.4f}",
                      f"{lp:.4f}" if lp is not None else "n/a")  # fmt: skip
    Console().print(table)


def print_metrics(metrics: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_header=False, title_justify="left")
    for key, value in summary_rows(metrics):
        table.add_row(key, value)
    Console().print(table)
