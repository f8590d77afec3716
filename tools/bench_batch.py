"""Benchmark: the per-scene cost of the batch machinery against calling `train()` directly.

The cost is everything a scene pays for being in a batch except training:
starting its process (from the fork server), logging to its file, building
its config, writing result.json and DONE, renaming into place, and, for
`run_batch`, the driver's bookkeeping (results.csv after every scene, the
reports at the end). Wall times on a shared machine swing by tens of percent
from one run to the next, far more than that cost, so it is measured as a
difference inside one run: the scene's wall time in the batch minus the wall
time of its own `train()` call (measured in the scene's process), and set
against a direct `train()` on the same scene with the same method and budget
in this process (the competitor). The plain comparison, a scene's whole wall
time against the direct call (best of the repeats), is printed too: it also
holds what a fresh process pays on its first training step (lazy imports,
numba's cache) beyond what the fork server pre-imports, and the machine's
noise. The first scene process of a batch also starts the fork server
(imports torch and the trainer once per batch); that one-off cost is
printed on its own line.

    python tools/bench_batch.py [--steps 300] [--method compgs-32k] [--repeats 2] [--scenes 6]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compgs.batch.layout import BatchDir  # noqa: E402
from compgs.batch.run import BatchOptions, run_batch  # noqa: E402
from compgs.batch.scene_job import SceneJob, build_config, run_scene  # noqa: E402
from compgs.batch.scenes import SceneEntry  # noqa: E402
from compgs.data.synthetic import generate  # noqa: E402
from compgs.train.run import train  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps per run")
    parser.add_argument("--method", default="compgs-32k")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--scenes", type=int, default=6, help="scenes in the run_batch case")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    overrides = {"max_steps": args.steps, "checkpoint_every": 0}
    with tempfile.TemporaryDirectory(prefix="compgs-bench-batch-") as tmp:
        tmp = Path(tmp)
        scene = generate(tmp / "scene")
        batch_dir = BatchDir(tmp / "jobs")
        job = SceneJob("scene", str(scene), str(batch_dir.root), args.method, overrides, {})

        def direct(i: int) -> float:
            config = build_config(args.method, overrides, scene, tmp / "direct")
            start = time.perf_counter()
            train(config, run_dir=tmp / "direct" / f"run{i}", progress=False)
            return time.perf_counter() - start

        def in_batch(i: int) -> tuple[float, float]:
            start = time.perf_counter()
            row = run_scene(dataclasses.replace(job, name=f"scene{i}"))
            if row["status"] != "ok":
                raise SystemExit(f"the batch scene failed: {row['error']}")
            return time.perf_counter() - start, row["train_wall_seconds"]

        # warm-up: imports and compiled kernels in this process; the fork server for the batch
        warm = dataclasses.replace(job, name="warm", overrides={**overrides, "max_steps": 5})
        start = time.perf_counter()
        run_scene(warm)
        server_start = time.perf_counter() - start
        build = build_config(args.method, {**overrides, "max_steps": 5}, scene, tmp / "w")
        train(build, run_dir=tmp / "w" / "run", progress=False)
        direct_times, scene_walls, scene_overheads = [], [], []
        for i in range(args.repeats):
            direct_times.append(direct(i))
            wall, trained = in_batch(i)
            scene_walls.append(wall)
            scene_overheads.append(wall - trained)
        entries = [SceneEntry(f"copy{i}", Path(scene)) for i in range(args.scenes)]
        options = BatchOptions(method=args.method, overrides=overrides, progress=False)
        start = time.perf_counter()
        result = run_batch(entries, tmp / "batch", options)
        total = time.perf_counter() - start
        if result.failed:
            raise SystemExit(f"run_batch failed: {result.failed[0]['error']}")
        trained = sum(r["train_wall_seconds"] for r in result.rows)
        base = min(direct_times)
        cases = {
            "scene in a batch (run_scene)": median(scene_overheads),
            "run_batch, per scene": (total - trained) / args.scenes,
        }
        print(f"{args.method}, {args.steps} steps on the embedded scene")
        print(f"  direct train(): {base:.2f} s (best of {args.repeats}: "
              f"{', '.join(f'{t:.1f}' for t in direct_times)})")  # fmt: skip
        print(f"  fork server start + a 5-step scene: {server_start:.2f} s (once per batch)")
        for case, overhead in cases.items():
            print(f"  {case:<30} overhead {overhead:6.3f} s = {100 * overhead / base:5.2f}% "
                  f"of the direct run (ratio {(base + overhead) / base:.4f})")  # fmt: skip
        whole = min(scene_walls) - base
        print(f"  {'whole scene vs direct train()':<30} {min(scene_walls):.2f} s, "
              f"{100 * whole / base:+.2f}% (best of {args.repeats}: "
              f"{', '.join(f'{t:.1f}' for t in scene_walls)}; includes the machine's noise)")  # fmt: skip
        cases["whole scene vs direct (noisy)"] = whole
        for case, overhead in cases.items():
            print(json.dumps({
                "bench": "batch", "case": case, "method": args.method, "steps": args.steps,
                "direct_seconds": round(base, 4), "overhead_seconds": round(overhead, 4),
                "overhead_percent": round(100 * overhead / base, 3),
                "ratio_vs_direct": round((base + overhead) / base, 5),
            }))  # fmt: skip
        print(json.dumps({"bench": "batch", "case": "fork server start + 5-step scene",
                          "seconds": round(server_start, 4)}))  # fmt: skip


if __name__ == "__main__":
    main()
