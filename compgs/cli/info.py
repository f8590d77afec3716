"""`compgs info PATH`: what is in a splat file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import tyro


def info(path: Annotated[Path, tyro.conf.Positional]) -> None:
    """Print format, Gaussian count, SH degree, size, bounds and opacity summary of a file.

    Args:
        path: a .ply, .splat, .spz or .cgs file (format detected from content).
    """
    from rich.console import Console
    from rich.table import Table

    from compgs import io

    fmt = io.detect_format(path)
    splats = fmt.read(path)
    sections = [("File", summarize(path, fmt.name, splats))]
    if fmt.describe is not None:
        sections += fmt.describe(path)
    console = Console()
    for title, rows in sections:
        table = Table(title=title, show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for key, value in rows:
            table.add_row(key, value)
        console.print(table)


def summarize(path: Path, format_name: str, splats) -> list[tuple[str, str]]:
    import numpy as np

    size = path.stat().st_size
    n = splats.num_gaussians
    rows = [
        ("path", str(path)),
        ("format", format_name),
        ("Gaussians", f"{n:,}"),
        ("SH degree", str(splats.sh_degree)),
        ("file size", f"{size:,} bytes ({size / 2**20:.2f} MiB)"),
        ("bytes / Gaussian", f"{size / n:.2f}" if n else "-"),
    ]
    if n == 0:
        return rows
    means = splats.means.double().numpy()
    lo, hi = means.min(axis=0), means.max(axis=0)
    rows.append(("bounds min", _vec(lo)))
    rows.append(("bounds max", _vec(hi)))
    opacity = splats.activated_opacities().double().numpy()
    q = np.quantile(opacity, [0.0, 0.05, 0.5, 0.95, 1.0])
    rows.append(("opacity min/5%/50%/95%/max", " / ".join(f"{v:.3f}" for v in q)))
    hist, _ = np.histogram(opacity, bins=10, range=(0.0, 1.0))
    rows.append(("opacity histogram (10 bins)", " ".join(f"{h / n:.0%}" for h in hist)))
    rows.append(("opacity < 0.005 (prunable)", f"{(opacity < 0.005).mean():.1%}"))
    scale = splats.activated_scales().double().max(dim=1).values.numpy()
    rows.append(("largest axis median / max", f"{np.median(scale):.4g} / {scale.max():.4g}"))
    return rows


def _vec(v) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"
