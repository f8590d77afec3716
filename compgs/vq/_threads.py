"""Run independent pieces of CPU work on torch's threads, one op-thread each.

torch parallelises every operation separately, with a barrier at its end; when
another process holds a core, each barrier waits for it, and a loop of many
small operations (chunked assignment) slows down many times over. Giving each
thread whole chunks with single-threaded operations keeps them independent.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

# torch.set_num_threads is process-wide: one pool at a time changes it.
_LOCK = threading.Lock()


def run_parallel(jobs: Sequence[Callable[[], None]]) -> None:
    """Run ``jobs`` on up to torch.get_num_threads() threads, each op single-threaded."""
    workers = min(torch.get_num_threads(), len(jobs))
    if workers < 2:
        for job in jobs:
            job()
        return
    with _LOCK:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(workers) as pool:
                for future in [pool.submit(job) for job in jobs]:
                    future.result()
        finally:
            torch.set_num_threads(threads)
