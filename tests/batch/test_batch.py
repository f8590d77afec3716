"""End to end: tiny collections with a corrupt scene, local and Ray engines, timeouts,
kill -9 of the whole batch and --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compgs.batch.layout import DONE, BatchDir
from compgs.batch.report import psnr_am, read_results_csv
from compgs.batch.run import BatchOptions, run_batch
from compgs.batch.scenes import collect_scenes
from tests.batch.helpers import METHOD, TINY, make_collection, results_without_timing

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
    assert [(r["scene"], r["status"]) for r in rows] == [
        ("bad", "failed"),
        ("s0", "ok"),
        ("s1", "ok"),
    ]
    assert (
        rows[0]["error"].startswith("CorruptFileError: ")
        and "bad/transforms.json" in rows[0]["error"]
    )
    csv_rows = read_results_csv(out / "results.csv")
    assert len(csv_rows) == 3 and [r["status"] for r in csv_rows] == ["failed", "ok", "ok"]
    assert csv_rows[0]["error"] == rows[0]["error"]
    batch = BatchDir(out)
    for r in rows[1:]:
        scene = batch.scene_dir(r["scene"])
        metrics = json.loads((scene / "run" / "metrics.json").read_text())
        assert (scene / DONE).is_file() and r["size_bytes"] == (
            scene / "run" / "scene.cgs"
        ).stat().st_size
        assert r["psnr"] == metrics["eval"]["mean"]["psnr"] > 5
        assert r["compression_ratio"] > 2 and r["num_gaussians"] == metrics["num_gaussians"]
        assert r["test_images"] == 2 and r["steps"] == TINY["max_steps"]
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


def test_kill_9_then_resume_equals_an_uninterrupted_run(collection, local_batch, tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "compgs", "batch", "--scenes", str(collection), "--out", str(out),
           "--method", METHOD, "--override", "max_steps=12", "test_every=3", "save_renders=false",
           "checkpoint_every=4"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = (tmp_path / "driver.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
    batch = BatchDir(out)
    checkpoint = batch.work_dir("s1") / "run" / "checkpoints" / "step-0000004.pt"
    try:
        _wait_for(lambda: batch.is_done("s0") and checkpoint.is_file(), 600, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, the fork server, the scene process
        proc.wait()
    # what a kill leaves: s0 complete and done, s1 half-made and not done
    assert not batch.is_done("s1") and batch.work_dir("s1").is_dir()
    assert (batch.scene_dir("s0") / "run" / "scene.cgs").is_file()
    rows = {r["scene"]: r["status"] for r in read_results_csv(out / "results.csv")}
    assert rows == {"bad": "failed", "s0": "ok", "s1": "pending"}
    s0_done = (batch.scene_dir("s0") / DONE).stat()

    resumed = subprocess.run(cmd + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert resumed.returncode == 1, resumed.stderr[-2000:]  # one scene failed: bad
    assert (batch.scene_dir("s0") / DONE).stat().st_mtime_ns == s0_done.st_mtime_ns
    assert (out / "logs" / "s0.log").read_text().count("=== s0:") == 1  # not recomputed
    s1_log = (out / "logs" / "s1.log").read_text()
    assert s1_log.count("=== s1:") == 2 and "continuing the interrupted attempt" in s1_log
    rows = [batch.row(name) for name in ("bad", "s0", "s1")]
    _assert_two_ok_one_corrupt(out, rows)
    assert results_without_timing(rows) == results_without_timing(local_batch[1].rows)
