"""Benchmark: one Lloyd iteration (assignment + centroid update) of compgs.vq against
faiss-cpu and scikit-learn, on the same data, same initial centroids, same threads.

    python tools/bench_kmeans.py [--n 1000000] [--threads 2] [--repeats 3] [--no-sklearn]

Cases (N, d, K): (1M, 45, 4096) SH colour, (1M, 4, 16384) rotation, (1M, 1, 16)
scalar levels. Rows per case:

* ours            `assign` (backend "auto") + `update_centroids`: what a Lloyd
                  iteration or a CompGS re-assignment step costs;
* ours torch-only the same with ``backend="torch"`` (no faiss), when it differs;
* faiss           `faiss.Kmeans(niter=1)` with subsampling disabled, trained
                  from the same initial centroids;
* sklearn         `KMeans(algorithm="lloyd", max_iter=1, n_init=1)` from the same
                  centroids (it ends with an extra assignment so that labels match
                  the centres: two assignments, one update); measured once on the
                  first ``--sklearn-n`` points and scaled linearly to N (Lloyd is
                  linear in N), to keep the run to a few minutes;
* d = 1 extras    ours per iteration on the once-sorted data (`SortedRows.step`,
                  the path `kmeans` takes for d = 1), the one-off sort, and a
                  whole 10-iteration k-means (sort included) against faiss' 10.

Times are medians over ``--repeats`` (ours and faiss interleaved, so both see
the same machine load). Prints a table with the ratio ours/faiss (< 1: ours is
faster) and one JSON line per row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compgs.vq import assign, kmeans, update_centroids  # noqa: E402
from compgs.vq.onedim import SortedRows  # noqa: E402

CASES = [(45, 4096), (4, 16384), (1, 16)]


def clock(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ours_iteration(x: torch.Tensor, c: torch.Tensor, backend: str) -> None:
    a = assign(x, c, backend=backend)
    update_centroids(x, a, c.shape[0], previous=c)


def faiss_iteration(x: np.ndarray, c: np.ndarray, niter: int = 1) -> None:
    import faiss

    n, d = x.shape
    km = faiss.Kmeans(d, c.shape[0], niter=niter, max_points_per_centroid=n, seed=0)
    km.train(x, init_centroids=c)


def sklearn_iteration(x: np.ndarray, c: np.ndarray) -> None:
    from sklearn.cluster import KMeans

    KMeans(c.shape[0], init=c, n_init=1, max_iter=1, tol=0.0, algorithm="lloyd").fit(x)


def run_case(n: int, d: int, k: int, args) -> list[dict]:
    g = torch.Generator().manual_seed(d)
    x = torch.randn(n, d, generator=g)
    c = x[torch.randperm(n, generator=g)[:k]].clone()
    xn, cn = x.numpy(), c.numpy()
    timings: dict[str, list[float]] = {"ours": [], "faiss": []}
    torch_only = d > 1 and d <= 32  # "auto" hands these to faiss when it is installed
    if torch_only:
        timings["ours torch-only"] = []
    if d == 1:
        timings.update(
            {"ours sorted iteration": [], "ours 10-iter kmeans": [], "faiss 10-iter": []}
        )
        rows = SortedRows(x.t())
        sort_time = [clock(lambda: SortedRows(x.t())) for _ in range(args.repeats)]
    for _ in range(args.repeats):
        timings["ours"].append(clock(lambda: ours_iteration(x, c, "auto")))
        timings["faiss"].append(clock(lambda: faiss_iteration(xn, cn)))
        if d == 1:
            timings["ours sorted iteration"].append(
                statistics.median(clock(lambda: rows.step(c.t())) for _ in range(20))
            )
            timings["ours 10-iter kmeans"].append(
                clock(lambda: kmeans(x, k, iters=10, init=c, backend="auto"))
            )
            timings["faiss 10-iter"].append(clock(lambda: faiss_iteration(xn, cn, 10)))
    if torch_only and not args.quick_torch:
        timings["ours torch-only"] = [clock(lambda: ours_iteration(x, c, "torch"))]
    elif torch_only:
        timings.pop("ours torch-only")
    if not args.no_sklearn:
        from threadpoolctl import threadpool_limits

        m = min(n, args.sklearn_n)
        label = "sklearn" if m == n else f"sklearn (N={m} x{n / m:g})"
        with threadpool_limits(args.threads):
            timings[label] = [clock(lambda: sklearn_iteration(xn[:m], cn)) * n / m]
    faiss_time = statistics.median(timings["faiss"])
    out = []
    for name, values in timings.items():
        seconds = statistics.median(values)
        reference = statistics.median(timings["faiss 10-iter"]) if "10-iter" in name else faiss_time
        out.append(
            dict(
                case=f"N={n} d={d} K={k}",
                impl=name,
                seconds=seconds,
                runs=len(values),
                ratio_vs_faiss=seconds / reference,
                threads=args.threads,
            )
        )
    if d == 1:
        out.append(
            dict(
                case=f"N={n} d={d} K={k}",
                impl="ours one-off sort",
                seconds=statistics.median(sort_time),
                runs=len(sort_time),
                ratio_vs_faiss=statistics.median(sort_time) / faiss_time,
                threads=args.threads,
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-sklearn", action="store_true")
    parser.add_argument("--sklearn-n", type=int, default=200_000)
    parser.add_argument(
        "--quick-torch", action="store_true", help="skip the torch-only rows (slow for small d)"
    )
    args = parser.parse_args()
    try:
        import faiss
    except ImportError:
        sys.exit("bench_kmeans needs faiss-cpu (pip install faiss-cpu, or the 'faiss' extra)")
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    print(f"threads={args.threads}  torch {torch.__version__}  faiss {faiss.__version__}")
    print(f"{'case':26} {'implementation':30} {'seconds':>10} {'ours/faiss':>11}")
    lines = []
    for d, k in CASES:
        for row in run_case(args.n, d, k, args):
            lines.append(row)
            print(
                f"{row['case']:26} {row['impl']:30} {row['seconds']:10.4f} "
                f"{row['ratio_vs_faiss']:11.3f}",
                flush=True,
            )
    for row in lines:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
