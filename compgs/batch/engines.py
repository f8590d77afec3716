"""Where the scenes run: a local pool of supervisor threads, or Ray tasks.

Both call the same `compgs.batch.scene_job.run_scene` per scene (which runs
the scene in a child process of its own) and hand each finished row to
``on_row`` in the calling thread, in completion order.

- local: ``workers`` threads, each supervising one scene process at a time;
  with GPUs, each worker owns a fixed set of devices (CUDA_VISIBLE_DEVICES
  of its scene processes), so two scenes never share a GPU unless asked to
  (``gpus_per_scene`` < 1).
- ray: one task per scene with ``num_cpus`` / ``num_gpus`` requests; Ray
  schedules them over the cluster (``ray_address``) or a local instance.
  Nothing of our own queues or talks between machines; the output folder
  must be on a file system that every node sees.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import queue
import socket
from collections.abc import Callable, Sequence

from compgs.batch.scene_job import SceneJob, failure_row, run_scene
from compgs.errors import InputError

log = logging.getLogger(__name__)

OnRow = Callable[[dict], None]


def gpu_slots(num_gpus: int, gpus_per_scene: float) -> list[str]:
    """CUDA_VISIBLE_DEVICES values, one per concurrent scene, for ``num_gpus`` devices."""
    if num_gpus <= 0:
        return []
    if gpus_per_scene <= 0:
        raise InputError(f"--gpus-per-scene must be > 0, got {gpus_per_scene}")
    if gpus_per_scene < 1:
        share = max(1, round(1 / gpus_per_scene))
        return [str(g) for g in range(num_gpus) for _ in range(share)]
    per = int(gpus_per_scene)
    if per != gpus_per_scene:
        raise InputError(f"--gpus-per-scene above 1 must be a whole number, got {gpus_per_scene}")
    if per > num_gpus:
        raise InputError(f"--gpus-per-scene {per} but this machine has {num_gpus} GPU(s)")
    return [",".join(str(g) for g in range(k * per, (k + 1) * per)) for k in range(num_gpus // per)]


def run_local(
    jobs: Sequence[SceneJob],
    on_row: OnRow,
    *,
    workers: int,
    slots: list[str] | None = None,
    timeout: float | None = None,
    start_method: str = "auto",
) -> None:
    """Run ``jobs`` with ``workers`` scenes at a time on this machine."""
    free: queue.Queue[str | None] = queue.Queue()
    for slot in slots or [None] * workers:
        free.put(slot)

    def one(job: SceneJob) -> dict:
        slot = free.get()
        try:
            if slot is not None:
                job = dataclasses.replace(job, cuda_devices=slot)
            return run_scene(job, timeout, start_method)
        finally:
            free.put(slot)

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scene")
    try:
        futures = [pool.submit(one, job) for job in jobs]
        for future in concurrent.futures.as_completed(futures):
            on_row(future.result())
    finally:
        # On Ctrl-C: queued scenes never start; running ones were interrupted with it.
        pool.shutdown(wait=True, cancel_futures=True)


def run_ray(
    jobs: Sequence[SceneJob],
    on_row: OnRow,
    *,
    address: str | None = None,
    cpus_per_scene: float = 1.0,
    gpus_per_scene: float = 1.0,
    timeout: float | None = None,
    start_method: str = "auto",
) -> None:
    """Run ``jobs`` as Ray tasks (joining the cluster at ``address``, or the running/a new
    local instance)."""
    try:
        import ray
    except ImportError as e:
        raise InputError("--engine ray needs Ray: pip install 'compgs[ray]'") from e
    started = False
    if not ray.is_initialized():
        check_ray_address(address)
        ray.init(address=address, log_to_driver=False, include_dashboard=False)
        started = True
    try:
        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        num_gpus = gpus_per_scene if has_gpus else 0
        if not has_gpus and gpus_per_scene:
            log.info("the Ray cluster has no GPUs: scenes request %g CPU(s) only", cpus_per_scene)
        task = ray.remote(run_scene).options(
            num_cpus=cpus_per_scene, num_gpus=num_gpus, max_retries=0, name="compgs-scene"
        )
        pending = {task.remote(job, timeout, start_method): job for job in jobs}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    job = pending.pop(ref)
                    try:
                        row = ray.get(ref)
                    except Exception as e:  # the task's worker died: the row was not written
                        row = _lost_task_row(job, e)
                    on_row(row)
        finally:
            for ref in pending:  # Ctrl-C: stop what is still queued or running
                ray.cancel(ref, force=True)
    finally:
        if started:
            ray.shutdown()


def _lost_task_row(job: SceneJob, error: Exception) -> dict:
    from compgs.batch.layout import BatchDir

    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    row = failure_row(job, "failed", f"Ray task failed: {type(error).__name__}: {first}", 0.0)
    try:
        BatchDir(job.batch_dir).write_status(job.name, row)
    except OSError as e:
        log.error("%s: could not record the failure: %s", job.name, e)
    return row


def default_threads(workers: int, gpus: bool) -> int | None:
    """Threads per scene on CPU so that concurrent scenes do not oversubscribe the cores."""
    if gpus or workers <= 1:
        return None
    return max(1, (os.cpu_count() or 1) // workers)


def check_ray_address(address: str | None, timeout: float = 5.0) -> None:
    """A cluster address that does not answer is a bad flag: say so now, not after Ray's
    own minutes of retries. "auto", "local" and ray:// client URLs are left to Ray."""
    if not address or address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise InputError(f"--ray-address {address!r}: expected HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise InputError(f"--ray-address {address}: no Ray cluster answers there ({e})") from None
