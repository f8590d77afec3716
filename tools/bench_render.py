"""Benchmark render(): the compiled cpu backend against the pure-torch reference.

Cases (width x height, Gaussians): 256x192 with 100k and 512x384 with 500k, SH
degree 3. The scene is random but realistic: centres uniform in the bounding
box of a real trained splat (../shared/data/splats/plant when present), with
scales, rotations, opacities and colours drawn from its Gaussians; without the
data, from similar synthetic distributions. The camera frames the box.

Times are medians (and minima) of repeated runs, after a warm-up that also
pays numba's compilation, plus the process CPU time per step. forward+backward
is one L1-loss training step without the optimiser. Prints one line per case,
the cpu/reference ratios, and a JSON line for machines; ``--profile`` adds
where the cpu time goes.

On a machine shared with other jobs, multi-threaded wall times mostly measure
waiting for descheduled threads (and torch's spinning workers then inflate the
reference's CPU time too); ``--threads 1`` and the CPU-time ratio are the
numbers to trust there.

    python tools/bench_render.py [--cases small large] [--repeats 7] [--profile] [--threads N]
"""

from __future__ import annotations

import argparse
import collections
import functools
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numba
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compgs.render import render_views  # noqa: E402
from compgs.splats import Splats  # noqa: E402

CASES = {"small": (256, 192, 100_000), "large": (512, 384, 500_000)}
SHARED = Path(os.environ.get("COMPGS_SHARED_DATA", ROOT.parent / "shared" / "data"))
REAL_SPLAT = SHARED / "splats" / "plant" / "plant.splat"


def build_scene(n: int, width: int, height: int, seed: int = 0):
    """(splats, viewmats [1,4,4], Ks [1,3,3], source) for one benchmark case."""
    g = torch.Generator().manual_seed(seed)
    if REAL_SPLAT.is_file():
        from compgs.io import load

        real = load(REAL_SPLAT)
        pick = torch.randint(0, real.num_gaussians, (n,), generator=g)
        lo, hi = real.means.min(0).values, real.means.max(0).values
        quats, scales, opacities, sh0 = (
            real.quats[pick],
            real.scales[pick],
            real.opacities[pick],
            real.sh0[pick],
        )
        source = f"{REAL_SPLAT.name} attributes, uniform centres"
    else:
        lo, hi = torch.tensor([-0.26, -0.5, -0.3]), torch.tensor([0.26, 0.5, 0.3])
        quats = torch.randn(n, 4, generator=g)
        scales = math.log(0.005) + 0.6 * torch.randn(n, 3, generator=g)
        opacities = -1.5 + 1.5 * torch.randn(n, generator=g)
        sh0 = 0.8 * torch.randn(n, 1, 3, generator=g)
        source = "synthetic (real splats not found)"
    means = lo + (hi - lo) * torch.rand(n, 3, generator=g)
    shN = 0.05 * torch.randn(n, 15, 3, generator=g)
    splats = Splats(means=means, quats=quats, scales=scales, opacities=opacities, sh0=sh0, shN=shN)
    extent = float((hi - lo).max())
    centre = (lo + hi) / 2
    c2w = torch.eye(4)
    c2w[:3, 3] = centre - torch.tensor([0.0, 0.0, 1.4 * extent])
    f = 0.9 * width
    Ks = torch.tensor([[[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]]])
    return splats, torch.linalg.inv(c2w)[None], Ks, source


def time_backend(splats, viewmats, Ks, width, height, backend, repeats, backward=True):
    """Wall-clock median and min (ms) of forward and forward+backward, and the
    median process CPU time (all threads, ms): on a shared machine other jobs
    stretch wall time, but hardly the CPU time a step needs."""
    target = torch.rand(1, height, width, 3, generator=torch.Generator().manual_seed(1))
    params = splats.map(lambda t: t.clone().requires_grad_(True))
    fwd, total, fwd_cpu, total_cpu = [], [], [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = render_views(params, viewmats, Ks, width=width, height=height, backend=backend)
        loss = (out.rgb - target).abs().mean()
        fwd.append(time.perf_counter() - t0)
        fwd_cpu.append(time.process_time() - c0)
        if backward:
            loss.backward()
            total.append(time.perf_counter() - t0)
            total_cpu.append(time.process_time() - c0)
        del out, loss
    stats = {
        "forward_ms": 1e3 * statistics.median(fwd),
        "forward_min_ms": 1e3 * min(fwd),
        "forward_cputime_ms": 1e3 * statistics.median(fwd_cpu),
    }
    if backward:
        stats["forward_backward_ms"] = 1e3 * statistics.median(total)
        stats["forward_backward_min_ms"] = 1e3 * min(total)
        stats["forward_backward_cputime_ms"] = 1e3 * statistics.median(total_cpu)
    return stats


def kernel_profile(splats, viewmats, Ks, width, height, repeats):
    """Median ms per cpu kernel (and the rest) over forward+backward steps."""
    from compgs.render import _binning as bk
    from compgs.render import _project_kernels as pk
    from compgs.render import _raster_kernels as rk

    spent = collections.defaultdict(list)
    originals = {}
    for module, name in [
        (pk, "project_forward"),
        (bk, "bin_tiles"),
        (rk, "raster_forward"),
        (rk, "raster_backward"),
        (bk, "reduce_grads"),
        (pk, "project_backward"),
    ]:
        originals[(module, name)] = fn = getattr(module, name)

        def timed(*args, _fn=fn, _name=name):
            t = time.perf_counter()
            result = _fn(*args)
            spent[_name].append(time.perf_counter() - t)
            return result

        setattr(module, name, functools.wraps(fn)(timed))
    try:
        stats = time_backend(splats, viewmats, Ks, width, height, "cpu", repeats)
    finally:
        for (module, name), fn in originals.items():
            setattr(module, name, fn)
    per_kernel = {k: 1e3 * statistics.median(v) for k, v in spent.items()}
    per_kernel["other (torch, numpy, python)"] = stats["forward_backward_ms"] - sum(
        per_kernel.values()
    )
    return per_kernel


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeats", type=int, default=7, help="timed cpu runs per case")
    parser.add_argument("--reference-repeats", type=int, default=1)
    parser.add_argument("--no-reference", action="store_true", help="skip the slow reference")
    parser.add_argument("--profile", action="store_true", help="time each cpu kernel")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for numba and torch (default: all cores); 1 measures work without "
        "the wait-for-a-descheduled-thread cost of a machine shared with other jobs",
    )
    args = parser.parse_args(argv)
    if args.threads:
        numba.set_num_threads(args.threads)
        torch.set_num_threads(args.threads)

    print(
        f"# {os.cpu_count()} cores, numba {numba.__version__} ({numba.get_num_threads()} threads), "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for case in args.cases:
        width, height, n = CASES[case]
        splats, viewmats, Ks, source = build_scene(n, width, height)
        time_backend(splats, viewmats, Ks, width, height, "cpu", 2)  # warm-up + compile
        cpu = time_backend(splats, viewmats, Ks, width, height, "cpu", args.repeats)
        row = {
            "bench": "render",
            "case": f"{width}x{height}_{n // 1000}k",
            "width": width,
            "height": height,
            "n_gaussians": n,
            "sh_degree": 3,
            "scene": source,
            "threads": numba.get_num_threads(),
            **{f"cpu_{k}": round(v, 1) for k, v in cpu.items()},
        }
        line = (
            f"{row['case']}: cpu forward {cpu['forward_ms']:.1f} ms, "
            f"forward+backward {cpu['forward_backward_ms']:.1f} ms "
            f"(min {cpu['forward_backward_min_ms']:.1f}, CPU time {cpu['forward_backward_cputime_ms']:.0f})"
        )
        if not args.no_reference:
            # The reference keeps every block's autograd graph: at 500k Gaussians its
            # backward would need tens of GB, so the large case times its forward only.
            backward = case == "small"
            ref = time_backend(
                splats, viewmats, Ks, width, height, "reference", args.reference_repeats, backward
            )
            row.update({f"reference_{k}": round(v, 1) for k, v in ref.items()})
            row["ratio_forward"] = round(ref["forward_ms"] / cpu["forward_ms"], 1)
            row["ratio_forward_cputime"] = round(
                ref["forward_cputime_ms"] / cpu["forward_cputime_ms"], 1
            )
            line += f"; reference forward {ref['forward_ms']:.0f} ms ({row['ratio_forward']}x)"
            if backward:
                ratio = ref["forward_backward_ms"] / cpu["forward_backward_ms"]
                row["ratio_forward_backward"] = round(ratio, 1)
                row["ratio_forward_backward_cputime"] = round(
                    ref["forward_backward_cputime_ms"] / cpu["forward_backward_cputime_ms"], 1
                )
                line += (
                    f", forward+backward {ref['forward_backward_ms']:.0f} ms ({ratio:.1f}x; "
                    f"{row['ratio_forward_backward_cputime']}x in CPU time)"
                )
        print(line)
        if args.profile:
            profile = kernel_profile(splats, viewmats, Ks, width, height, args.repeats)
            row["profile_ms"] = {k: round(v, 1) for k, v in profile.items()}
            print("  " + ", ".join(f"{k} {v:.1f}" for k, v in profile.items()))
        row["load_average"] = round(os.getloadavg()[0], 2)
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
