"""A scene's process: how it ends (return, exception, signal, timeout) and that it dies with
its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compgs.batch.isolate import Outcome, resolve_start_method, run_isolated
from compgs.errors import InputError
from tests.batch import targets

ROOT = Path(__file__).resolve().parents[2]


def test_outcomes(tmp_path):
    out = run_isolated(targets.write_file, (str(tmp_path / "x"),), start_method="spawn")
    assert out.ok and out.exitcode == 0 and (tmp_path / "x").read_text() == "child ran"
    out = run_isolated(targets.raise_error, start_method="spawn")
    assert not out.ok and out.exitcode == 1 and out.describe() == "process exited with code 1"
    out = run_isolated(targets.kill_myself, start_method="spawn")
    assert out.exitcode == -signal.SIGKILL
    assert out.describe().startswith("process killed by SIGKILL (out of memory?")
    out = run_isolated(targets.sleep_forever, timeout=1.5, start_method="spawn")
    assert out.timed_out and not out.ok and out.exitcode == -signal.SIGKILL  # killed, not waited
    assert out.describe() == "timed out after 1.5 s (process killed)"
    assert Outcome(-11, False, 1.0).describe() == "process killed by SIGSEGV"


def test_start_methods():
    assert resolve_start_method("auto") in ("forkserver", "spawn")
    with pytest.raises(InputError, match="start method must be one of"):
        resolve_start_method("fork")  # never: OpenMP in the parent makes forked children hang


def _state(pid: int) -> str | None:
    """Process state letter from /proc (None: gone; 'Z': exited, not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_child_exits_when_its_parent_is_killed(tmp_path):
    pid_file = tmp_path / "pid"
    code = (
        "from compgs.batch.isolate import run_isolated\n"
        "from tests.batch.targets import sleep_forever\n"
        f"run_isolated(sleep_forever, ({str(pid_file)!r},), start_method='spawn')\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.time() + 60
        while not pid_file.is_file() and time.time() < deadline:
            time.sleep(0.1)
        child = int(pid_file.read_text())
        assert _state(child) not in (None, "Z")
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 10
        while _state(child) not in (None, "Z") and time.time() < deadline:
            time.sleep(0.1)
        assert _state(child) in (None, "Z"), "the scene process outlived the batch"
    finally:
        parent.kill()
        parent.wait()
