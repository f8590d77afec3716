"""Benchmark: the .cgs codec beside INRIA PLY, .splat and .spz (all written by compgs).

For each input (the real splats in ../shared/data/splats when present, and a
generated 1M-Gaussian SH-degree-3 set): encode time, decode time, size and bits
per Gaussian of each format, and a render-free fidelity measure (per-attribute
RMSE after decode). The competitor for decode speed is plyfile reading the
equivalent INRIA PLY, in the same process; the ratio is printed.

    python tools/bench_codec.py [--n 1000000] [--iters 5] [--skip-real]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import plyfile
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compgs import io  # noqa: E402
from compgs.codec import CodecOptions, decode  # noqa: E402
from compgs.quantize import attribute_rmse, compress_splats  # noqa: E402
from compgs.splats import Splats  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "splats"


def timed(fn, repeat: int = 3):
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def bench_one(name: str, splats: Splats, iters: int, tmp: Path) -> list[dict]:
    n = splats.num_gaussians
    rows = []
    ply_path = tmp / f"{name}.ply"
    io.save(splats, ply_path)
    plyfile_read, _ = timed(lambda: plyfile.PlyData.read(str(ply_path))["vertex"].data.copy())
    for fmt in ("ply", "splat", "spz"):
        path = tmp / f"{name}.{fmt}"
        kw = {"sort": False} if fmt == "splat" else {}
        enc, _ = timed(partial(io.save, splats, path, **kw), repeat=1)
        dec, back = timed(partial(io.load, path))
        rmse = attribute_rmse(splats.with_sh_degree(back.sh_degree), back)
        rows.append(
            dict(
                input=name,
                format=fmt,
                n=n,
                bytes=path.stat().st_size,
                encode_s=enc,
                decode_s=dec,
                rmse=rmse,
            )
        )
    for label, options in (("cgs", CodecOptions()), ("cgs-bitq", CodecOptions.bitq())):
        enc, result = timed(
            partial(compress_splats, splats, options=options, iters=iters), repeat=1
        )
        dec, back = timed(partial(decode, result.data))
        rmse = attribute_rmse(splats.index(result.order), back)
        rows.append(
            dict(
                input=name,
                format=label,
                n=n,
                bytes=len(result.data),
                encode_s=enc,
                decode_s=dec,
                rmse=rmse,
            )
        )
    for row in rows:
        row["bits_per_gaussian"] = 8 * row["bytes"] / n
        row["decode_vs_plyfile"] = plyfile_read / row["decode_s"]
        row["plyfile_read_s"] = plyfile_read
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="size of the generated SH-3 set")
    parser.add_argument("--iters", type=int, default=5, help="k-means iterations for .cgs")
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    inputs = []
    if SHARED.is_dir() and not args.skip_real:
        inputs += [(p.stem, io.load(p)) for p in sorted(SHARED.glob("*/*.splat"))]
    inputs.append((f"generated-{args.n // 1000}k-sh3", Splats.random(args.n, sh_degree=3, seed=0)))
    print(
        f"{'input':<22}{'format':<10}{'bytes':>13}{'bits/G':>9}{'enc s':>8}{'dec s':>8}{'vs plyfile':>11}  RMSE means/scales/quats/opacity/color/shN"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, splats in inputs:
            for row in bench_one(name, splats, args.iters, Path(tmp)):
                r = row["rmse"]
                rm = "/".join(
                    f"{r[k]:.2g}" for k in ("means", "scales", "quats", "opacity", "color", "shN")
                )
                print(
                    f"{row['input']:<22}{row['format']:<10}{row['bytes']:>13,}{row['bits_per_gaussian']:>9.1f}"
                    f"{row['encode_s']:>8.2f}{row['decode_s']:>8.3f}{row['decode_vs_plyfile']:>10.1f}x  {rm}"
                )
                print("JSON " + json.dumps({"bench": "codec", **row}))
    print(
        "decode_vs_plyfile = (plyfile reading the INRIA PLY) / (this format's full decode to Splats)"
    )


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
