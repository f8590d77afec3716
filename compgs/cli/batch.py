"""`compgs batch --scenes LIST_OR_GLOB --method compgs-32k --out DIR`: a whole collection.

Every scene runs prepare (raw ARKit videos) -> train -> compress -> evaluate
in a process of its own; failures are recorded and the batch goes on; the
exit code is the number of failed scenes (capped at 125). `--resume` skips
done scenes and reruns the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

MAX_EXIT_CODE = 125  # codes above have meanings of their own in shells (126, 127, 128+signal)


def batch(argv: list[str]) -> None:
    """Parse the flags (`run`), then exit with the number of failed scenes.

    The exit happens here, outside the flag parser, which would read an exit
    from inside the command as a bad flag.
    """
    from compgs.cli.main import parse

    failed = parse(run, list(argv), "compgs batch")
    if failed:
        raise SystemExit(min(failed, MAX_EXIT_CODE))


batch.raw_argv = True


def run(
    scenes: str,
    out: Path,
    method: str = "compgs-32k",
    engine: Literal["local", "ray"] = "local",
    workers: int | None = None,
    gpus_per_scene: float = 1.0,
    cpus_per_scene: float = 1.0,
    timeout_per_scene: float | None = None,
    resume: bool = False,
    ray_address: str | None = None,
    root: Path | None = None,
    max_steps: int | None = None,
    downscale: int | None = None,
    device: str | None = None,
    override: tuple[str, ...] = (),
    arkit_frames: int = 300,
    arkit_sfm: bool = False,
    keep_checkpoints: bool = False,
    start_method: Literal["auto", "forkserver", "spawn"] = "auto",
) -> int:
    """Train, compress and evaluate every scene of a collection.

    Args:
        scenes: a list file (one scene path or glob per line, # comments), a
            folder of scene folders, or a glob such as 'data/dl3dv/*'.
        out: the batch folder (results.csv, summary.md, scenes/, logs/, ...).
        method: training preset (see `compgs train --help`).
        engine: local (a pool of worker processes) or ray (Ray tasks).
        workers: scenes at a time on the local engine (default: one per GPU
            slot, or 1 on a CPU-only machine).
        gpus_per_scene: GPUs each scene uses (below 1: scenes share a GPU).
        cpus_per_scene: CPUs each Ray task requests (also its thread count).
        timeout_per_scene: seconds before a scene is killed and recorded as timed out.
        resume: continue the batch in OUT: skip done scenes, rerun the others.
        ray_address: the Ray cluster to join (default: a running one or a new local one).
        root: folder the list's relative paths (and a relative glob) start from.
        max_steps: training steps of every scene (default: the method's).
        downscale: image downscale factor (DL3DV: 4 reads images_4/).
        device: auto, cpu or cuda.
        override: more training options as KEY=VALUE (e.g. test_every=8
            compgs.opacity_reg=1e-7); see `compgs train --help` for the keys.
        arkit_frames: frames kept from each raw ARKit video (one per window, the sharpest).
        arkit_sfm: poses of raw ARKit videos from COLMAP SfM instead of ARKit's.
        keep_checkpoints: keep each finished scene's final training checkpoint.
        start_method: how scene processes start: forkserver (fast) or spawn.
    """
    import logging

    import yaml

    from compgs.batch.run import BatchOptions, run_batch
    from compgs.batch.scenes import collect_scenes
    from compgs.errors import InputError

    overrides: dict = {}
    for item in override:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--override {item!r}: expected KEY=VALUE")
        overrides[key.strip()] = yaml.safe_load(value)
    for key, value in (("max_steps", max_steps), ("downscale", downscale), ("device", device)):
        if value is not None:
            overrides[key] = value
    options = BatchOptions(
        method=method, overrides=overrides, engine=engine, workers=workers,
        gpus_per_scene=gpus_per_scene, cpus_per_scene=cpus_per_scene,
        timeout_per_scene=timeout_per_scene, resume=resume, ray_address=ray_address,
        arkit_frames=arkit_frames, arkit_sfm=arkit_sfm, start_method=start_method, keep_checkpoints=keep_checkpoints,
    )  # fmt: skip
    result = run_batch(collect_scenes(scenes, root), out, options)
    logging.getLogger(__name__).info(
        "summary: %s; plot: %s", out / "summary.md", out / "rate_distortion.png"
    )
    return len(result.failed)
