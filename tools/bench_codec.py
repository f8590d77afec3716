"""Benchmark: the .cgs codec beside INRIA PLY, .splat and .spz (all written by compgs).

For each input (the real splats in ../shared/data/splats, or in
$COMPGS_SHARED_DATA/splats, when present, and a generated 1M-Gaussian
SH-degree-3 set): encode time, decode time, size and bits per Gaussian of
each format, and a render-free fidelity measure (per-attribute RMSE after
decode). The competitor for decode speed is plyfile reading the
equivalent INRIA PLY, in the same process; the ratio is printed. The .cgs
decodes, plyfile and a memory floor (allocating and writing float32 arrays of
the decoded Gaussians' shapes, nothing else, on 1 and on 2 threads) run
interleaved, best of ``--repeat``, so that a busy machine's noise hits them alike.

    python tools/bench_codec.py [--n 1000000] [--iters 5] [--repeat 9] [--skip-real]
    python tools/bench_codec.py --decode-only   # the decode comparison alone, ~1 minute
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import plyfile
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compgs import io  # noqa: E402
from compgs.codec import DEFAULT_GROUPS, CodecOptions, decode, encode, group_vectors  # noqa: E402
from compgs.quantize import attribute_rmse, compress_splats  # noqa: E402
from compgs.splats import FIELDS, Splats  # noqa: E402

SHARED = Path(os.environ.get("COMPGS_SHARED_DATA", ROOT.parent / "shared" / "data")) / "splats"
ISSUE_SIZES = {"dc": 4096, "sh": 4096, "scale": 16384, "rot": 16384}  # issue #4's speed point


def timed(fn, repeat: int = 3):
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def interleaved(fns: dict, repeat: int) -> dict[str, float]:
    """Best-of-``repeat`` wall time of each function, the functions taking turns."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def write_floor(splats: Splats, threads: int = 1) -> None:
    """Allocate and write float32 arrays of every field's shape (as the decoder allocates),
    in 8 MB blocks on ``threads`` threads: what any decoder must at least spend."""
    arrays = [np.empty(tuple(getattr(splats, name).shape), np.float32) for name in FIELDS]
    blocks = [a.reshape(-1)[i : i + (1 << 21)] for a in arrays for i in range(0, a.size, 1 << 21)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda block: block.fill(1.0), blocks))


def bench_one(
    name: str, splats: Splats, iters: int, repeat: int, tmp: Path
) -> tuple[list[dict], dict]:
    n = splats.num_gaussians
    rows = []
    ply_path = tmp / f"{name}.ply"
    io.save(splats, ply_path)
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
    encoded = {}
    for label, options in (("cgs", CodecOptions()), ("cgs-bitq", CodecOptions.bitq())):
        enc, result = timed(
            partial(compress_splats, splats, options=options, iters=iters), repeat=1
        )
        encoded[label] = result.data
        rmse = attribute_rmse(splats.index(result.order), decode(result.data))
        rows.append(
            dict(
                input=name,
                format=label,
                n=n,
                bytes=len(result.data),
                encode_s=enc,
                rmse=rmse,
            )
        )
    summary = decode_timings(name, splats, ply_path, encoded, repeat, tmp)
    for row in rows:
        if row["format"] in encoded:
            row["decode_s"] = summary[f"{row['format'].replace('-', '_')}_decode_s"]
    plyfile_read = summary["plyfile_read_s"]
    for row in rows:
        row["bits_per_gaussian"] = 8 * row["bytes"] / n
        row["decode_vs_plyfile"] = plyfile_read / row["decode_s"]
        row["plyfile_read_s"] = plyfile_read
    return rows, summary


def decode_timings(
    name: str, splats: Splats, ply_path: Path, encoded: dict[str, bytes], repeat: int, tmp: Path
) -> dict:
    """plyfile, each .cgs decode (bytes), the BitQ file by path, and the memory floor."""
    cgs_path = tmp / f"{name}.cgs"
    cgs_path.write_bytes(encoded["cgs-bitq"])
    best = interleaved(
        {
            "plyfile": lambda: plyfile.PlyData.read(str(ply_path))["vertex"].data.copy(),
            **{label: partial(decode, data) for label, data in encoded.items()},
            "cgs-bitq-path": partial(io.load, cgs_path),
            "floor": partial(write_floor, splats),
            "floor-2": partial(write_floor, splats, threads=2),
        },
        repeat,
    )
    return {
        "input": name,
        "n": splats.num_gaussians,
        "repeat": repeat,
        "bytes": len(encoded["cgs-bitq"]),
        "plyfile_read_s": best["plyfile"],
        **{f"{label.replace('-', '_')}_decode_s": best[label] for label in encoded},
        "cgs_bitq_load_path_s": best["cgs-bitq-path"],
        "write_floor_s": best["floor"],
        "write_floor_2_threads_s": best["floor-2"],
    }


def quick_bitq(splats: Splats, seed: int = 0) -> bytes:
    """A BitQ file at the issue's codebook sizes without k-means: codebooks drawn from the
    Gaussians' own rows, random assignments. Decoding costs the same; fidelity is meaningless."""
    n, g = splats.num_gaussians, torch.Generator().manual_seed(seed)
    codebooks, assignments = {}, {}
    for name, fields in DEFAULT_GROUPS.items():
        k = min(ISSUE_SIZES[name], n)
        codebooks[name] = group_vectors(splats, fields)[torch.randperm(n, generator=g)[:k]]
        assignments[name] = torch.randint(0, k, (n,), generator=g)
    return encode(splats, codebooks, assignments, CodecOptions.bitq())


def print_summary(s: dict) -> None:
    ply = s["plyfile_read_s"]

    def ms_and_ratio(key: str) -> str:
        return f"{1e3 * s[key]:.1f} ms = {ply / s[key]:.2f}x"

    print(
        f"{s['input']}: plyfile {1e3 * ply:.1f} ms; cgs-bitq decode(bytes) "
        f"{ms_and_ratio('cgs_bitq_decode_s')}, io.load(path) {ms_and_ratio('cgs_bitq_load_path_s')}; "
        f"floor (allocate + write the float32 output) {ms_and_ratio('write_floor_s')}, "
        f"on 2 threads {ms_and_ratio('write_floor_2_threads_s')} (best of {s['repeat']}, interleaved)"
    )
    print("JSON " + json.dumps({"bench": "codec-decode", **s}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="size of the generated SH-3 set")
    parser.add_argument("--iters", type=int, default=5, help="k-means iterations for .cgs")
    parser.add_argument("--repeat", type=int, default=9, help="decode timings: best of this many")
    parser.add_argument("--skip-real", action="store_true")
    parser.add_argument(
        "--decode-only",
        action="store_true",
        help="only the decode comparison on the generated set, its BitQ file made without "
        "k-means (minutes faster; what the issue's speed point measures)",
    )
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    if args.decode_only:
        name, splats = (
            f"generated-{args.n // 1000}k-sh3",
            Splats.random(args.n, sh_degree=3, seed=0),
        )
        with tempfile.TemporaryDirectory() as tmp:
            ply_path = Path(tmp) / f"{name}.ply"
            io.save(splats, ply_path)
            encoded = {"cgs-bitq": quick_bitq(splats)}
            print_summary(decode_timings(name, splats, ply_path, encoded, args.repeat, Path(tmp)))
        return
    inputs = []
    if SHARED.is_dir() and not args.skip_real:
        inputs += [(p.stem, io.load(p)) for p in sorted(SHARED.glob("*/*.splat"))]
    inputs.append((f"generated-{args.n // 1000}k-sh3", Splats.random(args.n, sh_degree=3, seed=0)))
    print(
        f"{'input':<22}{'format':<10}{'bytes':>13}{'bits/G':>9}{'enc s':>8}{'dec s':>8}{'vs plyfile':>11}  RMSE means/scales/quats/opacity/color/shN"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, splats in inputs:
            rows, summary = bench_one(name, splats, args.iters, args.repeat, Path(tmp))
            for row in rows:
                r = row["rmse"]
                rm = "/".join(
                    f"{r[k]:.2g}" for k in ("means", "scales", "quats", "opacity", "color", "shN")
                )
                print(
                    f"{row['input']:<22}{row['format']:<10}{row['bytes']:>13,}{row['bits_per_gaussian']:>9.1f}"
                    f"{row['encode_s']:>8.2f}{row['decode_s']:>8.3f}{row['decode_vs_plyfile']:>10.1f}x  {rm}"
                )
                print("JSON " + json.dumps({"bench": "codec", **row}))
            print_summary(summary)
    print(
        "decode_vs_plyfile = (plyfile reading the INRIA PLY) / (this format's full decode to Splats)"
    )


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
