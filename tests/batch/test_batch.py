"""End to end: tiny collections with a corrupt scene, local and Ray engines, timeouts,
kill -9 of the whole batch and --resume."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from compgs.batch.layout import DONE, BatchDir
from compgs.batch.report import psnr_am, read_results_csv
from compgs.batch.run import BatchOptions, run_batch
from compgs.batch.scenes import collect_scenes
from compgs.codec.files import read_cgs, size_breakdown
from tests.batch.helpers import ARKIT, METHOD, TINY, make_collection, results_without_timing

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    return make_collection(tmp_path_factory.mktemp("collection"))


@pytest.fixture(scope="module")
def local_batch(collection, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    options = BatchOptions(method=METHOD, overrides=dict(TINY), progress=False)
    return out, run_batch(collect_scenes(str(collection)), out, options)


def _assert_two_ok_one_corrupt(out: Path, rows: list[dict]) -> None:
    got = [(r["scene"], r["status"]) for r in rows]
    assert got == [(ARKIT, "ok"), ("bad", "failed"), ("s0", "ok")]
    error = rows[1]["error"]
    assert error.startswith("CorruptFileError: ") and "bad/transforms.json" in error
    csv_rows = read_results_csv(out / "results.csv")
    assert len(csv_rows) == 3 and [r["status"] for r in csv_rows] == ["ok", "failed", "ok"]
    assert csv_rows[1]["error"] == error
    batch = BatchDir(out)
    prepared = json.loads((batch.prepared_dir(ARKIT) / "transforms.json").read_text())
    assert prepared["compgs_arkit"]["sky_direction"] == "right"  # the raw video was prepared
    assert rows[0]["test_images"] == 3 and rows[2]["test_images"] == 2
    for r in (rows[0], rows[2]):
        scene = batch.scene_dir(r["scene"])
        metrics = json.loads((scene / "run" / "metrics.json").read_text())
        cgs = scene / "run" / "scene.cgs"
        assert (scene / DONE).is_file() and r["size_bytes"] == cgs.stat().st_size
        assert r["psnr"] == metrics["eval"]["mean"]["psnr"] > 0  # 12 steps: far from converged
        assert r["compression_ratio"] > 2 and r["num_gaussians"] == metrics["num_gaussians"]
        assert r["steps"] == TINY["max_steps"]
    assert "Traceback" in (out / "logs" / "bad.log").read_text()
    summary = (out / "summary.md").read_text()
    assert "3 scenes: 2 done, 1 failed, 0 not run." in summary and "| bad | failed |" in summary
    assert f"{psnr_am(rows):.2f} dB" in summary
    assert (out / "rate_distortion.png").stat().st_size > 1000


def test_local_batch_records_the_corrupt_scene_and_goes_on(local_batch):
    out, result = local_batch
    _assert_two_ok_one_corrupt(out, result.rows)
    assert len(result.failed) == 1 and result.ran == 3 and result.skipped == 0
    batch = BatchDir(out)
    assert json.loads(batch.status_path("bad").read_text())["status"] == "failed"
    assert not (batch.scene_dir("s0") / "run" / "checkpoints").exists()  # not kept by default
    assert not batch.work_dir("s0").exists() and batch.work_dir("bad").exists()


def test_resume_skips_done_scenes_and_retries_failed(local_batch, collection):
    out, first = local_batch
    done_at = (out / "scenes" / "s0" / DONE).stat().st_mtime_ns
    with pytest.raises(Exception, match="pass --resume"):
        run_batch(
            collect_scenes(str(collection)), out, BatchOptions(method=METHOD, overrides=dict(TINY))
        )
    again = run_batch(
        collect_scenes(str(collection)), out,
        BatchOptions(method=METHOD, overrides=dict(TINY), resume=True, progress=False),
    )  # fmt: skip
    assert again.ran == 1 and again.skipped == 2 and len(again.failed) == 1
    assert (out / "scenes" / "s0" / DONE).stat().st_mtime_ns == done_at
    assert results_without_timing(again.rows) == results_without_timing(first.rows)
    assert (out / "logs" / "bad.log").read_text().count("=== bad:") == 2


def test_timeout_is_recorded(collection, tmp_path):
    out = tmp_path / "out"
    entries = [e for e in collect_scenes(str(collection)) if e.name == "s0"]
    options = BatchOptions(method=METHOD, overrides={**TINY, "max_steps": 10**6},
                           timeout_per_scene=3, progress=False)  # fmt: skip
    result = run_batch(entries, out, options)
    (row,) = result.rows
    assert row["status"] == "timeout" and row["error"] == "timed out after 3 s (process killed)"
    assert not BatchDir(out).is_done("s0") and "timeout" in (out / "summary.md").read_text()


def test_ray_engine(collection, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'compgs[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        options = BatchOptions(method=METHOD, overrides=dict(TINY), engine="ray", progress=False)
        result = run_batch(collect_scenes(str(collection)), tmp_path / "out", options)
    finally:
        ray.shutdown()
    _assert_two_ok_one_corrupt(tmp_path / "out", result.rows)
    assert len(result.failed) == 1


def _wait_for(condition, seconds: float, proc) -> None:
    deadline = time.time() + seconds
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the batch ended early with code {proc.returncode}")
        if time.time() > deadline:
            raise AssertionError("timed out waiting for the batch")
        time.sleep(0.05)


def _assert_same_model(run_a: Path, run_b: Path) -> None:
    """The same Gaussians and the same compressed sections; the metadata may differ (it
    names the scene folder, and a prepared ARKit scene lives inside each batch)."""
    assert (run_a / "splats.ply").read_bytes() == (run_b / "splats.ply").read_bytes()
    a, b = (size_breakdown((run / "scene.cgs").read_bytes()) for run in (run_a, run_b))
    assert {k: v for k, v in a["sections"].items() if k != "meta"} == {
        k: v for k, v in b["sections"].items() if k != "meta"
    }
    sa, sb = read_cgs(run_a / "scene.cgs"), read_cgs(run_b / "scene.cgs")
    for f in dataclasses.fields(sa):
        va, vb = getattr(sa, f.name), getattr(sb, f.name)
        assert torch.equal(va, vb) if isinstance(va, torch.Tensor) else va == vb, f.name


def test_kill_9_then_resume_equals_an_uninterrupted_run(collection, local_batch, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "compgs", "batch", "--scenes", str(collection), "--out", str(out),
           "--method", METHOD, "--override", "max_steps=12", "test_every=3", "save_renders=false",
           "checkpoint_every=4"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "driver.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
    batch = BatchDir(out)
    checkpoint = batch.work_dir("s0") / "run" / "checkpoints" / "step-0000004.pt"
    try:
        _wait_for(lambda: batch.is_done(ARKIT) and checkpoint.is_file(), 600, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, the fork server, the scene process
        proc.wait()
    # what a kill leaves: the ARKit scene complete and done, s0 half-made and not done
    assert not batch.is_done("s0") and batch.work_dir("s0").is_dir()
    assert (batch.scene_dir(ARKIT) / "run" / "scene.cgs").is_file()
    rows = {r["scene"]: r["status"] for r in read_results_csv(out / "results.csv")}
    assert rows == {ARKIT: "ok", "bad": "failed", "s0": "pending"}
    first_done = (batch.scene_dir(ARKIT) / DONE).stat()

    resumed = subprocess.run(cmd + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert resumed.returncode == 1, resumed.stderr[-2000:]  # one scene failed: bad
    assert (batch.scene_dir(ARKIT) / DONE).stat().st_mtime_ns == first_done.st_mtime_ns
    assert (out / "logs" / f"{ARKIT}.log").read_text().count(f"=== {ARKIT}:") == 1  # not redone
    s0_log = (out / "logs" / "s0.log").read_text()
    assert s0_log.count("=== s0:") == 2 and "continuing the interrupted attempt" in s0_log
    rows = [batch.row(name) for name in (ARKIT, "bad", "s0")]
    _assert_two_ok_one_corrupt(out, rows)
    reference = local_batch[1].rows
    size_fields = {"size_bytes", "compression_ratio", "bits_per_gaussian"}
    assert results_without_timing(rows[1:]) == results_without_timing(reference[1:])
    assert {
        k: v for k, v in results_without_timing(rows[:1])[0].items() if k not in size_fields
    } == {k: v for k, v in results_without_timing(reference[:1])[0].items() if k not in size_fields}
    for name in (ARKIT, "s0"):
        _assert_same_model(
            batch.scene_dir(name) / "run", BatchDir(local_batch[0]).scene_dir(name) / "run"
        )
