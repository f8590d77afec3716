"""One scene of a batch: prepare (raw ARKit) -> train -> compress -> evaluate, in its own process.

`run_scene(job)` is the unit both engines schedule (a thread of the local
pool, or a Ray task): it runs `scene_main` in a child process (see
`compgs.batch.isolate`) and turns however the child ended into a results
row, recording failures in ``status/<scene>.json``. It never raises.

`scene_main` is the child: its stdout, stderr and logging go to
``logs/<scene>.log``; it trains into ``work/<scene>/run`` (continuing from
the newest checkpoint an interrupted attempt left there), then writes
``result.json`` and ``DONE`` and renames the folder into ``scenes/<scene>``.
CompGS methods write and evaluate the compressed ``scene.cgs`` inside
training (`compgs.train.qat`), so "compress" and "evaluate" are part of it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import logging
import math
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from compgs.atomic import atomic_write_text
from compgs.batch.layout import DONE, FAILURE, RESULT, BatchDir, read_json
from compgs.errors import InputError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class SceneJob:
    """Everything the child needs (picklable: it crosses a process boundary)."""

    name: str
    source: str  # the scene entry's absolute path
    batch_dir: str
    method: str
    overrides: dict  # TrainConfig fields (dotted for nested: "compgs.opacity_reg")
    arkit: dict  # prepare_arkit options for raw ARKit videos: frames, sfm
    cuda_devices: str | None = None  # CUDA_VISIBLE_DEVICES for the child (None: inherit)
    threads: int | None = None  # torch / numba threads (None: all cores)
    resume_checkpoints: bool = True
    keep_checkpoints: bool = False  # the final one is large (all Gaussians + Adam state)


def build_config(method: str, overrides: dict, data: Path, output_dir: Path):
    """The TrainConfig of a batch scene: the preset, the overrides, this scene's paths."""
    from compgs.methods import get_method
    from compgs.train.config import TrainConfig, from_dict, to_dict

    fields = to_dict(get_method(method))
    for key, value in overrides.items():
        node, *path = key.split(".")
        target, parts = fields, [node, *path]
        for part in parts[:-1]:
            if not isinstance(target.get(part), dict):
                raise InputError(f"unknown training option {key!r} (no group {part!r})")
            target = target[part]
        if parts[-1] not in target:
            raise InputError(f"unknown training option {key!r}; see `compgs train --help`")
        target[parts[-1]] = value
    fields.update(data=str(data), output_dir=str(output_dir))
    try:
        return from_dict(TrainConfig, fields)
    except (TypeError, ValueError) as e:
        raise InputError(f"bad training options {overrides}: {e}") from e


def run_scene(job: SceneJob, timeout: float | None = None, start_method: str = "auto") -> dict:
    """Run one scene in a child process; its results row (status ok, failed or timeout)."""
    from compgs.batch.isolate import run_isolated

    batch = BatchDir(job.batch_dir)
    if job.cuda_devices is None and os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        # e.g. set by Ray for this task: the fork server may have been started by an
        # earlier task with other devices, so pass them explicitly
        job = dataclasses.replace(job, cuda_devices=os.environ["CUDA_VISIBLE_DEVICES"])
    start = time.perf_counter()
    failure = batch.work_dir(job.name) / FAILURE
    try:
        failure.unlink(missing_ok=True)  # so that a crash is never blamed on an old error
        outcome = run_isolated(scene_main, (job,), timeout=timeout, start_method=start_method)
        if batch.is_done(job.name):
            return read_json(batch.scene_dir(job.name) / RESULT)
        if failure.is_file() and not outcome.timed_out:
            error = read_json(failure)["error"]
        else:
            error = outcome.describe()
        status = "timeout" if outcome.timed_out else "failed"
    except Exception as e:  # the supervisor itself failed (could not start a process, ...)
        error, status = f"{type(e).__name__}: {e}", "failed"
    row = failure_row(job, status, error, time.perf_counter() - start)
    try:
        batch.write_status(job.name, row)
    except OSError as e:
        log.error("%s: could not record the failure: %s", job.name, e)
    return row


def failure_row(job: SceneJob, status: str, error: str, seconds: float) -> dict:
    return {
        "scene": job.name,
        "status": status,
        "error": " ".join(str(error).split())[:500],  # one line in results.csv
        "source": job.source,
        "wall_seconds": seconds,
        "log": str(Path("logs") / f"{job.name}.log"),
    }


def scene_main(job: SceneJob) -> None:
    """The child process: run the scene; on failure write work/<scene>/failure.json, exit 1."""
    if job.cuda_devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = job.cuda_devices  # before CUDA initialises
    batch = BatchDir(job.batch_dir)
    _log_to_file(batch.log_path(job.name), job)
    if job.threads:
        _limit_threads(job.threads)
    try:
        process_scene(job, batch)
    except BaseException as e:
        log.error("%s failed:\n%s", job.name, traceback.format_exc())
        message = str(e).splitlines()[0] if str(e) else ""
        record = {"error": f"{type(e).__name__}: {message}".rstrip(": "), "time": _now()}
        try:
            atomic_write_text(batch.work_dir(job.name) / FAILURE, json.dumps(record) + "\n")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
        raise SystemExit(1) from None


def process_scene(job: SceneJob, batch: BatchDir) -> dict:
    """Prepare, train (compress + evaluate), record and publish one scene; its row."""
    from compgs.train.run import train
    from compgs.train.rundir import checkpoints

    start = time.perf_counter()
    work = batch.work_dir(job.name)
    run_dir = work / "run"
    resume = job.resume_checkpoints and bool(checkpoints(run_dir))
    if resume:
        log.info(
            "%s: continuing the interrupted attempt from %s", job.name, checkpoints(run_dir)[-1][1]
        )
        (work / FAILURE).unlink(missing_ok=True)
    else:
        batch.discard(work)
        work.mkdir(parents=True)
    data = scene_folder(job, batch)
    config = build_config(job.method, job.overrides, data, work)
    trained_at = time.perf_counter()
    train(config, run_dir=run_dir, resume=run_dir if resume else None, progress=True)
    train_wall = time.perf_counter() - trained_at
    metrics = read_json(run_dir / "metrics.json")
    if not job.keep_checkpoints:
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    row = scene_row(job, metrics, time.perf_counter() - start, train_wall)
    atomic_write_text(work / RESULT, json.dumps(row, indent=1) + "\n")
    atomic_write_text(work / DONE, _now() + "\n")  # last: the scene is complete
    batch.publish(job.name)
    log.info("%s: done, PSNR %.2f, %s bytes", job.name, row["psnr"], row["size_bytes"])
    return row


def scene_folder(job: SceneJob, batch: BatchDir) -> Path:
    """The folder to train on: the entry itself, its release sub-folder, or, for a raw
    ARKit video, the scene prepared from it into prepared/<scene> (made once)."""
    from compgs.batch.scenes import resolve_scene_dir
    from compgs.data.arkit import find_video

    source = Path(job.source)
    if not source.exists():
        raise InputError(f"{source}: no such scene folder")
    if find_video(source) is None:
        return resolve_scene_dir(source)
    prepared = batch.prepared_dir(job.name)
    if (prepared / "transforms.json").is_file():
        log.info("%s: using the prepared scene %s", job.name, prepared)
        return prepared
    from compgs.batch.arkit_prepare import prepare_video

    return prepare_video(source, prepared, overwrite=True, **job.arkit)


def scene_row(
    job: SceneJob, metrics: dict, seconds: float, train_wall: float | None = None
) -> dict:
    """The results row of a finished scene (see compgs.batch.report.COLUMNS)."""
    ev = metrics["eval"]
    mean = ev["mean"]
    errors = [_mse(r["psnr"]) for r in ev["per_image"]]
    return {
        "scene": job.name,
        "status": "ok",
        "error": "",
        "psnr": _number(mean["psnr"]),
        "ssim": _number(mean["ssim"]),
        "lpips": _number(mean.get("lpips")),
        "psnr_am": _number(mean.get("psnr_am")),
        "test_images": ev["num_images"],
        "mse": sum(errors) / len(errors) if errors else None,
        "num_gaussians": metrics["num_gaussians"],
        "size_bytes": metrics["size_bytes"],
        "size_file": metrics.get("size_file"),
        "ply_bytes": metrics.get("ply_bytes", metrics["size_bytes"]),
        "compression_ratio": metrics.get("compression_ratio", 1.0),
        "bits_per_gaussian": metrics.get(
            "bits_per_gaussian", 8 * metrics["size_bytes"] / max(metrics["num_gaussians"], 1)
        ),
        "steps": metrics["steps"],
        "train_seconds": metrics["train_seconds"],  # the optimisation steps
        "train_wall_seconds": train_wall,  # all of train(): loading, steps, export, evaluation
        "wall_seconds": seconds,  # the whole scene in its process
        "fps": metrics.get("fps"),
        "device": metrics.get("device"),
        "source": job.source,
        "run_dir": str(Path("scenes") / job.name / "run"),
        "log": str(Path("logs") / f"{job.name}.log"),
    }


def _number(value) -> float | None:
    """metrics.json writes inf/nan as strings; rows keep them as floats."""
    return None if value is None else float(value)


def _mse(psnr) -> float:
    psnr = float(psnr)
    return 0.0 if math.isinf(psnr) else 10.0 ** (-psnr / 10.0)


def _now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


def _log_to_file(path: Path, job: SceneJob) -> None:
    """Send this process's fds 1 and 2 (C libraries too) and its logging to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    log.info("=== %s: %s with %s (pid %d) ===", job.name, job.source, job.method, os.getpid())


def _limit_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
    try:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    except (ImportError, ValueError):
        pass
