"""Benchmark: decoding a .cgs in the browser (the viewer's JavaScript reader) vs in Python.

A 1M-Gaussian SH-degree-3 file with the paper's codebook sizes and BitQ is
decoded by compgs.codec (Python, numpy) and by the viewer's reader in headless
Chromium (the `decodeBase64` hook, which times the decode alone: checks,
inflating, bit-unpacking, run lengths, gathers). Needs Chromium and playwright
(see tests/view/conftest.py).

    python tools/bench_viewer_decode.py [--n 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compgs.codec import CodecOptions, decode, encode  # noqa: E402
from compgs.view import ViewerServer  # noqa: E402
from tests.codec.helpers import random_quantized  # noqa: E402
from tests.view.conftest import CHROMIUM_ARGS, chromium_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    sizes = {"dc": 4096, "sh": 4096, "scale": 16384, "rot": 16384}
    splats, codebooks, assignments = random_quantized(args.n, sizes=sizes, seed=0)
    data = encode(splats, codebooks, assignments, CodecOptions.bitq())
    python_ms = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        decode(data)
        python_ms.append((time.perf_counter() - start) * 1000)

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        page_file = Path(tmp) / "page.cgs"
        page_file.write_bytes(encode(*random_quantized(10), CodecOptions()))
        browser = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        page = browser.new_page()
        with ViewerServer(page_file, port=0).start() as server:
            page.goto(server.url + "?hud=0")
            page.wait_for_function("window.compgs && window.compgs.state.status === 'ready'")
        b64 = base64.b64encode(data).decode()
        js_ms = []
        for _ in range(args.repeat):
            summary = page.evaluate("b64 => window.compgs.decodeBase64(b64, 'bench.cgs')", b64)
            assert summary["ok"] and summary["count"] == args.n, summary
            js_ms.append(summary["decodeMs"])
        browser.close()
    py, js = min(python_ms), min(js_ms)
    print(
        f"{args.n:,} Gaussians, {len(data) / 1e6:.1f} MB (.cgs, BitQ): Python {py:.0f} ms, "
        f"browser {js:.0f} ms (ratio browser/Python {js / py:.2f})"
    )
    print(
        json.dumps(
            {
                "bench": "viewer_decode",
                "gaussians": args.n,
                "bytes": len(data),
                "python_ms": round(py, 1),
                "browser_ms": round(js, 1),
                "ratio": round(js / py, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
