"""Targets for run_isolated: module level (pickled into the child), light imports only."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def sleep_forever(pid_file: str | None = None) -> None:
    if pid_file:
        Path(pid_file).write_text(str(os.getpid()))
    while True:
        time.sleep(0.1)


def raise_error() -> None:
    raise ValueError("boom")


def kill_myself() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def write_file(path: str) -> None:
    Path(path).write_text("child ran")
