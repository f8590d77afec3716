"""Batch reports: results.csv (a row per scene), summary.md, and a rate-distortion scatter.

PSNR-AM follows the CompGS paper (§4): the squared error is averaged over
all test images of all scenes *before* taking the PSNR, so that a few very
accurate scenes cannot dominate the mean the way they do a mean of PSNRs.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from compgs.atomic import atomic_open, atomic_write_text

COLUMNS = (
    "scene", "status", "error", "psnr", "ssim", "lpips", "psnr_am", "test_images", "mse",
    "num_gaussians", "size_bytes", "size_file", "ply_bytes", "compression_ratio",
    "bits_per_gaussian", "steps", "train_seconds", "train_wall_seconds", "wall_seconds", "fps", "device",
    "source", "run_dir", "log",
)  # fmt: skip
PENDING = "pending"  # listed but not run (yet): a batch that was stopped


def pending_row(name: str, source: str) -> dict:
    return {"scene": name, "status": PENDING, "source": source}


def write_results_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in COLUMNS})
    atomic_write_text(path, buf.getvalue())


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # exact: a resumed batch can be compared to an uninterrupted one
    return value


def read_results_csv(path: Path) -> list[dict]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def psnr_am(rows: list[dict]) -> float | None:
    """PSNR of the mean squared error over every test image of the finished scenes."""
    total = count = 0.0
    for r in ok_rows(rows):
        if r.get("mse") not in (None, "") and r.get("test_images") not in (None, "", 0, "0"):
            total += float(r["mse"]) * int(r["test_images"])
            count += int(r["test_images"])
    if not count:
        return None
    mean = total / count
    return math.inf if mean <= 0 else -10.0 * math.log10(mean)


def ok_rows(rows: list[dict]) -> list[dict]:
    return [r for r in rows if r.get("status") == "ok"]


def _mean(rows: list[dict], key: str) -> float | None:
    values = [float(r[key]) for r in rows if r.get(key) not in (None, "")]
    return sum(values) / len(values) if values else None


def _fmt(value, spec: str, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def summary_markdown(rows: list[dict], *, method: str, title: str = "Batch summary") -> str:
    ok = ok_rows(rows)
    failed = [r for r in rows if r.get("status") not in ("ok", PENDING)]
    pending = [r for r in rows if r.get("status") == PENDING]
    total_size = sum(int(r["size_bytes"]) for r in ok)
    ratio = _mean(ok, "compression_ratio")
    lines = [
        f"# {title}: {method}",
        "",
        f"{len(rows)} scenes: {len(ok)} done, {len(failed)} failed, {len(pending)} not run.",
        "",
        "| metric (over the done scenes) | value |",
        "| --- | --- |",
        f"| mean PSNR | {_fmt(_mean(ok, 'psnr'), '.2f', ' dB')} |",
        f"| PSNR-AM (error averaged over all test images, then PSNR) | {_fmt(psnr_am(rows), '.2f', ' dB')} |",
        f"| mean SSIM | {_fmt(_mean(ok, 'ssim'), '.4f')} |",
        f"| mean LPIPS | {_fmt(_mean(ok, 'lpips'), '.4f')} |",
        f"| mean #Gaussians | {_fmt(_mean(ok, 'num_gaussians'), ',.0f')} |",
        f"| mean size | {_fmt(_mean(ok, 'size_bytes') and _mean(ok, 'size_bytes') / 1e6, '.3f', ' MB')} |",
        f"| total size | {total_size / 1e6:.3f} MB |",
        f"| mean compression ratio (vs PLY) | {_fmt(ratio, '.1f', 'x')} |",
        f"| mean bits per Gaussian | {_fmt(_mean(ok, 'bits_per_gaussian'), '.1f')} |",
        f"| total training time | {sum(float(r['train_seconds']) for r in ok) / 3600:.2f} h |",
        f"| total wall time of the scenes | {sum(float(r.get('wall_seconds') or 0) for r in rows) / 3600:.2f} h |",
        "",
    ]  # fmt: skip
    if failed:
        lines += [
            "## Failures",
            "",
            "| scene | status | error | log |",
            "| --- | --- | --- | --- |",
        ]
        for r in failed:
            error = str(r.get("error", "")).replace("|", "\\|")
            lines.append(f"| {r['scene']} | {r['status']} | {error} | {r.get('log', '')} |")
        lines.append("")
    if pending:
        lines += ["## Not run", "", ", ".join(r["scene"] for r in pending), ""]
    lines += ["Per-scene numbers: results.csv. Plot: rate_distortion.png.", ""]
    return "\n".join(lines)


def write_summary(path: Path, rows: list[dict], *, method: str) -> None:
    atomic_write_text(path, summary_markdown(rows, method=method))


def rate_distortion_scatter(path: Path, rows: list[dict], *, method: str) -> bool:
    """Size (MB, log axis) against test PSNR, a point per done scene; False if none is done."""
    ok = ok_rows(rows)
    if not ok:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = [float(r["size_bytes"]) / 1e6 for r in ok]
    psnr = [float(r["psnr"]) for r in ok]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.scatter(size, psnr, s=14, alpha=0.8)
    if len(ok) <= 20:  # labels stay readable for small batches only
        for r, x, y in zip(ok, size, psnr):
            ax.annotate(r["scene"], (x, y), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("size (MB, log scale)")
    ax.set_ylabel("test PSNR (dB)")
    ax.set_title(f"{method}: {len(ok)} scenes")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_open(path) as f:
        fig.savefig(f, format="png")
    plt.close(fig)
    return True
