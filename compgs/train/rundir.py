"""A training run's directory: outputs/<scene>/<method>/<timestamp>/ (nerfstudio's layout).

config.yml             the full TrainConfig (resume reads it back)
checkpoints/step-N.pt  resumable state (the newest few are kept)
splats.ply             final Gaussians (INRIA PLY)
metrics.json           final metrics
renders/test/*.png     test-view renders
"""

from __future__ import annotations

import datetime
import io
import re
from pathlib import Path

import torch

from compgs.atomic import atomic_write_bytes
from compgs.errors import InputError

CHECKPOINT = re.compile(r"step-(\d+)\.pt$")
KEEP_CHECKPOINTS = 2


def new_run_dir(output_dir: Path, scene: str, method: str) -> Path:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H%M%S")
    path = Path(output_dir) / scene / method / stamp
    suffix = 0
    while path.exists():  # two runs in one second
        suffix += 1
        path = Path(output_dir) / scene / method / f"{stamp}-{suffix}"
    path.mkdir(parents=True)
    return path


def checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    folder = Path(run_dir) / "checkpoints"
    found = [
        (int(m.group(1)), p) for p in folder.glob("step-*.pt") if (m := CHECKPOINT.search(p.name))
    ]
    return sorted(found)


def save_checkpoint(run_dir: Path, step: int, state: dict) -> Path:
    """Atomically write a checkpoint, then drop all but the newest few."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    path = Path(run_dir) / "checkpoints" / f"step-{step:07d}.pt"
    atomic_write_bytes(path, buffer.getvalue())
    for _, old in checkpoints(run_dir)[:-KEEP_CHECKPOINTS]:
        old.unlink(missing_ok=True)
    return path


def find_run(path: Path) -> tuple[Path, Path]:
    """(run dir, newest checkpoint) for a run directory or a checkpoint file."""
    path = Path(path)
    if path.is_file() and CHECKPOINT.search(path.name):
        run_dir, checkpoint = path.parent.parent, path
    else:
        run_dir = path
        found = checkpoints(path) if path.is_dir() else []
        if not found:
            raise InputError(f"{path}: not a training run (no checkpoints/step-*.pt found)")
        checkpoint = found[-1][1]
    if not (run_dir / "config.yml").is_file():
        raise InputError(f"{run_dir}: not a training run (no config.yml)")
    return run_dir, checkpoint


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises many types for a damaged file
        raise InputError(f"{path}: unreadable checkpoint ({type(e).__name__}: {e})") from e
