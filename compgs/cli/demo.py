"""`compgs demo`: the main job on the embedded default scene (what `make demo` runs).

Until the trainer lands this exercises the most complete path that exists:
generate a deterministic splat set, write it in every exchange format, read
each back and report sizes and round-trip errors.
"""

from __future__ import annotations

from pathlib import Path


def demo(output_dir: Path = Path("outputs/demo"), num_gaussians: int = 100_000) -> None:
    """Run the demo pipeline and print what it did.

    Args:
        output_dir: where the demo writes its files.
        num_gaussians: size of the generated splat set.
    """
    from rich.console import Console
    from rich.table import Table

    from compgs import io
    from compgs.splats import Splats

    splats = Splats.random(num_gaussians, sh_degree=3, seed=0)
    output_dir.mkdir(parents=True, exist_ok=True)
    table = Table(title=f"demo: {num_gaussians:,} generated Gaussians, SH degree 3")
    for col in ("file", "bytes", "bytes/Gaussian", "max |means error|", "SH degree read"):
        table.add_column(col)
    for suffix in (".ply", ".splat", ".spz"):
        path = output_dir / f"generated{suffix}"
        io.save(splats, path, **({"sort": False} if suffix == ".splat" else {}))
        back = io.load(path)
        err = (back.means - splats.means).abs().max().item()
        size = path.stat().st_size
        table.add_row(
            str(path), f"{size:,}", f"{size / num_gaussians:.1f}", f"{err:.2e}", str(back.sh_degree)
        )
    Console().print(table)
