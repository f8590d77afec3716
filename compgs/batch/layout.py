"""The batch output folder and the rules that make it safe to kill and resume.

::

    DIR/batch.json            what the batch runs (method, overrides, scenes); --resume checks it
    DIR/results.csv           one row per scene (rewritten atomically as scenes finish)
    DIR/summary.md            means, PSNR-AM, totals, failures
    DIR/rate_distortion.png   size against PSNR, one point per scene
    DIR/logs/<scene>.log      everything the scene's process logged and printed (all attempts)
    DIR/work/<scene>/         the attempt in progress: run/ (config, checkpoints, outputs)
    DIR/scenes/<scene>/       a finished scene: run/, result.json, DONE
    DIR/status/<scene>.json   the last failure of a scene that is not done
    DIR/prepared/<scene>/     scene folders made from raw ARKit videos (reused on resume)

A scene is done when ``scenes/<scene>/DONE`` exists. The worker writes its
outputs, then ``result.json``, then ``DONE`` inside ``work/<scene>/``, and
renames that folder to ``scenes/<scene>/`` in one step (same file system):
a kill at any moment leaves either a complete scene under ``scenes/`` or
none, never a half-written one that looks done.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from compgs.atomic import atomic_write_text
from compgs.errors import CorruptFileError

DONE = "DONE"
RESULT = "result.json"
FAILURE = "failure.json"


class BatchDir:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    # -- paths -------------------------------------------------------------------------
    @property
    def batch_json(self) -> Path:
        return self.root / "batch.json"

    @property
    def results_csv(self) -> Path:
        return self.root / "results.csv"

    @property
    def summary_md(self) -> Path:
        return self.root / "summary.md"

    @property
    def plot_png(self) -> Path:
        return self.root / "rate_distortion.png"

    def scene_dir(self, name: str) -> Path:
        return self.root / "scenes" / name

    def work_dir(self, name: str) -> Path:
        return self.root / "work" / name

    def log_path(self, name: str) -> Path:
        return self.root / "logs" / f"{name}.log"

    def status_path(self, name: str) -> Path:
        return self.root / "status" / f"{name}.json"

    def prepared_dir(self, name: str) -> Path:
        return self.root / "prepared" / name

    # -- state -------------------------------------------------------------------------
    def is_done(self, name: str) -> bool:
        return (self.scene_dir(name) / DONE).is_file()

    def row(self, name: str) -> dict | None:
        """The scene's results row: its result when done, else its last failure, else None."""
        if self.is_done(name):
            return read_json(self.scene_dir(name) / RESULT)
        status = self.status_path(name)
        return read_json(status) if status.is_file() else None

    def publish(self, name: str) -> Path:
        """Move the finished ``work/<name>`` (holding DONE) to ``scenes/<name>`` atomically."""
        work, final = self.work_dir(name), self.scene_dir(name)
        if not (work / DONE).is_file():
            raise RuntimeError(f"{work}: not finished (no {DONE}); refusing to publish")
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # an unfinished leftover (a finished one is never rerun)
            self.discard(final)
        os.rename(work, final)
        self.status_path(name).unlink(missing_ok=True)
        return final

    def discard(self, path: Path) -> None:
        """Remove a folder: renamed out of the way first, so it never looks half-deleted."""
        if not path.exists():
            return
        trash = self.root / "trash" / f"{path.name}-{uuid.uuid4().hex[:8]}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def write_status(self, name: str, row: dict) -> None:
        atomic_write_text(self.status_path(name), json.dumps(row, indent=1) + "\n")


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CorruptFileError(f"{path}: unreadable batch record ({e})") from e
