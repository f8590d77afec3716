"""Run a function in a child process of its own, with a time limit: the batch's fault wall.

A crash (segfault, abort), the out-of-memory killer or a hang in one scene
ends that child only; the caller gets an `Outcome` that says what happened.

Children are never forked from the caller, which may have started OpenMP
threads (the CPU renderer's numba kernels, torch): GNU OpenMP cannot run in
a child forked after that. The default ``forkserver`` start method forks each
child from a fresh server process that has only *imported* the heavy modules
(torch, the trainer, the renderer), so a child starts in milliseconds instead
of re-importing them, and nothing in the server has run a parallel region;
``spawn`` (a new interpreter per child) is the fallback where forkserver does
not exist.

A child whose parent dies (``kill -9`` of the batch) notices within a second
and exits, so an interrupted batch leaves no training running behind it.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable

from compgs.errors import InputError

log = logging.getLogger(__name__)

START_METHODS = ("auto", "forkserver", "spawn")
# Imported once by the fork server (imports only: see compgs.batch.warm).
PRELOAD = ["compgs.batch.warm"]
PARENT_POLL_SECONDS = 1.0


@dataclasses.dataclass
class Outcome:
    """How a child process ended."""

    exitcode: int | None
    timed_out: bool
    seconds: float
    timeout: float | None = None

    @property
    def ok(self) -> bool:
        return self.exitcode == 0 and not self.timed_out

    def describe(self) -> str:
        if self.timed_out:
            return f"timed out after {self.timeout:g} s (process killed)"
        code = self.exitcode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = " (out of memory? the kernel's OOM killer sends SIGKILL)" if -code == 9 else ""
            return f"process killed by {name}{hint}"
        return f"process exited with code {code}"


def resolve_start_method(method: str = "auto") -> str:
    if method not in START_METHODS:
        raise InputError(f"start method must be one of {', '.join(START_METHODS)}, not {method!r}")
    available = multiprocessing.get_all_start_methods()
    if method == "auto":
        return "forkserver" if "forkserver" in available else "spawn"
    if method not in available:
        raise InputError(f"start method {method!r} is not available here ({', '.join(available)})")
    return method


def _context(method: str):
    ctx = multiprocessing.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(PRELOAD)
    return ctx


def run_isolated(
    target: Callable, args: tuple = (), *, timeout: float | None = None, start_method: str = "auto"
) -> Outcome:
    """Run ``target(*args)`` in a new process; wait at most ``timeout`` seconds, then kill it.

    ``target`` and ``args`` must be picklable (a module-level function). The
    exit code is the child's: 0 when ``target`` returned, 1 when it raised.
    """
    ctx = _context(resolve_start_method(start_method))
    start = time.perf_counter()
    process = ctx.Process(target=_child, args=(target, args), daemon=False)
    process.start()
    try:
        process.join(timeout)
        timed_out = process.is_alive()
        if timed_out:
            log.warning("pid %d: timed out after %s s, killing it", process.pid, timeout)
            process.kill()
            process.join()
    except BaseException:  # Ctrl-C or an error in the caller: never leave the child behind
        if process.is_alive():
            process.terminate()  # SIGTERM first: training saves a checkpoint on interrupts
            process.join(10)
            if process.is_alive():
                process.kill()
                process.join()
        raise
    return Outcome(process.exitcode, timed_out, time.perf_counter() - start, timeout)


def _child(target: Callable, args: tuple) -> None:
    _exit_with_parent()
    signal.signal(signal.SIGTERM, _raise_interrupt)
    target(*args)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _exit_with_parent() -> None:
    """Exit when the parent process is gone (its children are re-parented)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_SECONDS)
            if os.getppid() != parent:
                os._exit(70)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()
