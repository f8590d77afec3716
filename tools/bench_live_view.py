"""Benchmark: what the live training view (compgs.view.live.LiveView) costs a training loop.

The same training loop runs twice in this process, without and with the live
view, while a websocket client (standing in for the browser) drains everything
viser sends. The loop is a stand-in for a CPU training step on N Gaussians:
forward/backward through every parameter, a dense "rendering" workload sized to
`--step-ms`, and an Adam step; the live view sends the Gaussians every
`--every` steps and the metrics after every step, as `compgs train --viewer`
would. Also printed: the cost of one Gaussian update alone at several sizes.

The issue's bar: at most 10% slower. Shorter steps and more frequent updates
than a real run make this a pessimistic measure (the CPU trainer takes ~300 ms
per step at 100k Gaussians; the default refresh is every 200 steps).

    python tools/bench_live_view.py [--n 100000] [--steps 300] [--every 100] [--step-ms 100]
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compgs.splats import FIELDS, Splats  # noqa: E402
from compgs.view.live import LiveView  # noqa: E402


class StandInTrainer:
    """N Gaussians as Adam-trained parameters and a compute-bound step of about step_ms."""

    def __init__(self, n: int, step_ms: float, seed: int = 0):
        splats = Splats.random(n, sh_degree=3, seed=seed)
        self.params = {f: getattr(splats, f).clone().requires_grad_(True) for f in FIELDS}
        self.optimizer = torch.optim.Adam(self.params.values(), lr=1e-3)
        g = torch.Generator().manual_seed(seed)
        self.a = torch.randn(512, 512, generator=g)
        self.repeats = 1
        start = time.perf_counter()
        for _ in range(5):
            self.step()
        per_repeat = (time.perf_counter() - start) / 5
        self.repeats = max(1, round(step_ms / 1000 / per_repeat))

    def splats(self) -> Splats:
        return Splats(**self.params)

    def step(self) -> float:
        p = self.params
        loss = sum((t.float() ** 2).mean() for t in p.values())
        x = self.a
        for _ in range(self.repeats):  # the rendering stand-in
            x = torch.tanh(x @ self.a) * 0.5
        loss = loss + x.mean() * 0
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def drain(port: int, stop: threading.Event, received: list[int]) -> None:
    """A browser stand-in: read (and drop) every message viser sends."""
    import viser
    from websockets.sync.client import connect

    url = f"ws://127.0.0.1:{port}"
    with connect(url, subprotocols=[f"viser-v{viser.__version__}"], max_size=None) as ws:
        while not stop.is_set():
            try:
                message = ws.recv(timeout=0.2)
            except TimeoutError:
                continue
            received[0] += len(message)


def run_loop(trainer: StandInTrainer, steps: int, live: LiveView | None, every: int) -> float:
    start = time.perf_counter()
    for step in range(steps):
        loss = trainer.step()
        if live is not None:
            splats = trainer.splats() if step % every == 0 or step == steps - 1 else None
            live.update(step + 1, splats, {"loss": loss, "gaussians": len(trainer.splats())})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--step-ms", type=float, default=100.0)
    args = parser.parse_args()
    torch.manual_seed(0)

    live = LiveView(port=0, every=args.every, metrics_interval=0.5)
    stop, received = threading.Event(), [0]
    client = threading.Thread(target=drain, args=(live.server.get_port(), stop, received))
    client.start()
    time.sleep(0.5)
    try:
        for n in (10_000, 100_000, 500_000):
            splats = Splats.random(n, sh_degree=3, seed=1)
            start = time.perf_counter()
            for i in range(3):
                live.update(i, splats)
            ms = (time.perf_counter() - start) / 3 * 1000
            print(f"one Gaussian update, {n:>7,} Gaussians: {ms:7.1f} ms")
            print(json.dumps({"bench": "live_view_update", "gaussians": n, "ms": round(ms, 2)}))

        trainer = StandInTrainer(args.n, args.step_ms)
        run_loop(trainer, 5, None, args.every)  # warm-up
        # Alternate the two runs to cancel drifts of machine load (other processes).
        plain, viewed = [], []
        for _ in range(2):
            plain.append(run_loop(trainer, args.steps, None, args.every))
            viewed.append(run_loop(trainer, args.steps, live, args.every))
        base, with_view = min(plain), min(viewed)
    finally:
        stop.set()
        client.join()
        live.close()
    ratio = with_view / base
    print(
        f"{args.steps} steps of ~{args.step_ms:.0f} ms on {args.n:,} Gaussians: "
        f"{base:.2f} s without, {with_view:.2f} s with the live view "
        f"(Gaussians every {args.every} steps): ratio {ratio:.3f} "
        f"({(ratio - 1) * 100:+.1f}%; bar +10%); client received {received[0] / 1e6:.1f} MB"
    )
    print(
        json.dumps(
            {
                "bench": "live_view_overhead",
                "gaussians": args.n,
                "steps": args.steps,
                "every": args.every,
                "seconds_without": round(base, 3),
                "seconds_with": round(with_view, 3),
                "ratio": round(ratio, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
