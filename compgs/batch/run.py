"""`run_batch`: every scene of a list through prepare -> train -> compress -> evaluate.

The output folder is described in `compgs.batch.layout`. A first run writes
``batch.json`` (method, training overrides, ARKit options, scenes); a run on
a folder that already holds a batch needs ``resume=True`` and the same
method and options (different ones would mix incomparable results), may add
scenes, skips the done ones and reruns the rest: failed, timed out, and
interrupted scenes (those continue from their last checkpoint).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from pathlib import Path
from typing import Literal

from compgs.atomic import atomic_write_text
from compgs.batch.layout import BatchDir, read_json
from compgs.batch.report import (
    pending_row,
    psnr_am,
    rate_distortion_scatter,
    write_results_csv,
    write_summary,
)
from compgs.batch.scene_job import SceneJob, build_config
from compgs.batch.scenes import SceneEntry
from compgs.errors import InputError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclasses.dataclass
class BatchOptions:
    """How to run a batch (`compgs batch --help` documents each as a flag)."""

    method: str = "compgs-32k"
    overrides: dict = dataclasses.field(default_factory=dict)
    engine: Literal["local", "ray"] = "local"
    workers: int | None = None
    gpus_per_scene: float = 1.0
    cpus_per_scene: float = 1.0
    timeout_per_scene: float | None = None
    resume: bool = False
    ray_address: str | None = None
    arkit_frames: int = 300
    arkit_sfm: bool = False
    start_method: str = "auto"
    keep_checkpoints: bool = False
    progress: bool = True

    def identity(self) -> dict:
        """What must match between a batch and its resumption."""
        return {
            "method": self.method,
            "overrides": self.overrides,
            "arkit": {"frames": self.arkit_frames, "sfm": self.arkit_sfm},
        }


@dataclasses.dataclass
class BatchResult:
    out: Path
    rows: list[dict]  # one per listed scene, in list order
    ran: int  # scenes run by this call
    skipped: int  # scenes already done

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] not in ("ok", "pending")]

    @property
    def ok(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "ok"]


def run_batch(entries: list[SceneEntry], out: Path, options: BatchOptions) -> BatchResult:
    """Run every scene of ``entries`` not yet done in ``out``; write the reports."""
    from compgs.batch.isolate import resolve_start_method

    if not entries:
        raise InputError("no scenes to run")
    if options.timeout_per_scene is not None and options.timeout_per_scene <= 0:
        raise InputError(f"--timeout-per-scene must be > 0, got {options.timeout_per_scene}")
    if options.workers is not None and options.workers < 1:
        raise InputError(f"--workers must be at least 1, got {options.workers}")
    resolve_start_method(options.start_method)
    build_config(options.method, options.overrides, Path("."), Path("."))  # bad options fail now
    if options.engine == "ray":
        from compgs.batch.engines import check_ray_address

        check_ray_address(options.ray_address)
    batch = BatchDir(out)
    with _exclusive(batch):
        _claim(batch, entries, options)
        handler = _batch_log(batch)
        try:
            return _run(batch, entries, options)
        finally:
            logging.getLogger("compgs.batch").removeHandler(handler)
            handler.close()


@contextlib.contextmanager
def _exclusive(batch: BatchDir):
    """One driver per batch folder: a second one would run the same scenes twice.

    An advisory lock on DIR/.lock, released by the kernel when the process
    ends however it ends (kill -9 included), so it never needs cleaning up.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    batch.root.mkdir(parents=True, exist_ok=True)
    with open(batch.root / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise InputError(
                f"{batch.root}: another batch is running there (pid {f.read().strip() or '?'})"
            ) from None
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield


def _run(batch: BatchDir, entries: list[SceneEntry], options: BatchOptions) -> BatchResult:
    todo = [e for e in entries if not batch.is_done(e.name)]
    skipped = len(entries) - len(todo)
    if skipped:
        log.info("%s: %d of %d scenes already done, skipped", batch.root, skipped, len(entries))
    jobs, run_engine = _plan(batch, todo, options)
    sources = {e.name: str(e.path) for e in entries}

    def rows() -> list[dict]:
        return [batch.row(e.name) or pending_row(e.name, sources[e.name]) for e in entries]

    write_results_csv(batch.results_csv, rows())
    finished = []
    start = time.perf_counter()
    bar, task = _progress(options.progress, len(todo))

    def on_row(row: dict) -> None:
        finished.append(row)
        write_results_csv(batch.results_csv, rows())  # after every scene: a kill loses nothing
        n, elapsed = len(finished), time.perf_counter() - start
        eta = elapsed / n * (len(todo) - n)
        failed = sum(r["status"] != "ok" for r in finished)
        if row["status"] == "ok":
            what = f"ok, PSNR {row['psnr']:.2f} dB, {row['size_bytes'] / 1e6:.2f} MB"
        else:
            what = f"{row['status'].upper()}: {row['error']}"
        log.info("[%d/%d] %s: %s (%.0f s); %d failed so far, ~%.0f s left",
                 n, len(todo), row["scene"], what, row.get("wall_seconds") or 0, failed, eta)  # fmt: skip
        if bar is not None:
            bar.update(task, advance=1, failed=failed)

    if jobs:
        with bar if bar is not None else contextlib.nullcontext():
            run_engine(jobs, on_row)
    final = rows()
    write_results_csv(batch.results_csv, final)
    write_summary(batch.summary_md, final, method=options.method)
    rate_distortion_scatter(batch.plot_png, final, method=options.method)
    result = BatchResult(batch.root, final, len(jobs), skipped)
    am = psnr_am(final)
    log.info(
        "%s: %d done, %d failed, %d not run; PSNR-AM %s; results in %s",
        batch.root,
        len(result.ok),
        len(result.failed),
        len(final) - len(result.ok) - len(result.failed),
        "n/a" if am is None else f"{am:.2f} dB",
        batch.results_csv,
    )
    return result


def _plan(batch: BatchDir, todo: list[SceneEntry], options: BatchOptions):
    """The jobs and the engine call that runs them."""
    from compgs.batch import engines

    arkit = {"frames": options.arkit_frames, "sfm": options.arkit_sfm}
    timeout = options.timeout_per_scene

    def job(e: SceneEntry, threads: int | None) -> SceneJob:
        return SceneJob(e.name, str(e.path), str(batch.root), options.method,
                        dict(options.overrides), arkit, threads=threads,
                        keep_checkpoints=options.keep_checkpoints)  # fmt: skip

    if options.engine == "ray":
        threads = max(1, int(options.cpus_per_scene))
        jobs = [job(e, threads) for e in todo]
        return jobs, lambda jobs, on_row: engines.run_ray(
            jobs, on_row, address=options.ray_address, cpus_per_scene=options.cpus_per_scene,
            gpus_per_scene=options.gpus_per_scene, timeout=timeout,
            start_method=options.start_method,
        )  # fmt: skip
    if options.engine != "local":
        raise InputError(f"--engine must be local or ray, not {options.engine!r}")
    slots = engines.gpu_slots(_local_gpus(options), options.gpus_per_scene)
    workers = options.workers or max(1, len(slots))
    if slots and workers > len(slots):
        raise InputError(
            f"--workers {workers} but only {len(slots)} GPU slot(s) at --gpus-per-scene "
            f"{options.gpus_per_scene}"
        )
    threads = engines.default_threads(workers, bool(slots))
    jobs = [job(e, threads) for e in todo]
    log.info("local engine: %d scene(s) at a time%s", workers,
             f" on GPUs {slots[:workers]}" if slots else " on the CPU")  # fmt: skip
    return jobs, lambda jobs, on_row: engines.run_local(
        jobs, on_row, workers=workers, slots=slots[:workers] or None, timeout=timeout,
        start_method=options.start_method,
    )  # fmt: skip


def _local_gpus(options: BatchOptions) -> int:
    device = str(options.overrides.get("device", "auto"))
    if device == "cpu" or not options.gpus_per_scene:
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _claim(batch: BatchDir, entries: list[SceneEntry], options: BatchOptions) -> None:
    """Write batch.json, or check that a resumed batch runs what it ran before."""
    scenes = {e.name: str(e.path) for e in entries}
    identity = json.loads(json.dumps(options.identity()))  # as it reads back from the file
    if batch.batch_json.is_file():
        if not options.resume:
            raise InputError(
                f"{batch.root} already holds a batch; pass --resume to continue it "
                "or choose another --out"
            )
        stored = read_json(batch.batch_json)
        previous = {k: stored.get(k) for k in identity}
        if previous != identity:
            raise InputError(
                f"{batch.batch_json}: the batch ran {previous}, not {identity}; "
                "resume with the same method and options, or choose another --out"
            )
        moved = {n: (stored["scenes"][n], p) for n, p in scenes.items()
                 if n in stored.get("scenes", {}) and stored["scenes"][n] != p}  # fmt: skip
        if moved:
            name, (was, now) = next(iter(moved.items()))
            raise InputError(f"scene {name!r} was {was} in this batch, now {now}")
        scenes = {**stored.get("scenes", {}), **scenes}
    elif (
        batch.root.exists()
        and any(p.name != ".lock" for p in batch.root.iterdir())
        and not options.resume
    ):
        raise InputError(f"{batch.root}: not empty and not a batch folder; choose another --out")
    record = {"version": FORMAT_VERSION, **identity, "scenes": scenes}
    atomic_write_text(batch.batch_json, json.dumps(record, indent=1) + "\n")


def _batch_log(batch: BatchDir) -> logging.Handler:
    handler = logging.FileHandler(batch.root / "batch.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logging.getLogger("compgs.batch").addHandler(handler)
    return handler


def _progress(enabled: bool, total: int):
    import sys

    if not enabled or not total or not sys.stdout.isatty():
        return None, None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[bold]scenes[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    return bar, bar.add_task("scenes", total=total, failed=0)
