"""Benchmark: what the live training view (compgs.view.live.LiveView) costs training.

Two copies of the real trainer (compgs.train.Trainer, CPU renderer) train the
embedded synthetic scene from the same seed, one without and one with the live
view, in lockstep: one step of each in turn (the first to go alternates), so
that the load of a shared machine falls on both alike; each copy's step times
are summed. A websocket client (standing in for the browser) drains everything
viser sends. The view
sends the Gaussians every `--every` steps (the default 200 of `compgs train
--viewer`; 100 here by default, to be pessimistic) and metrics after each step.
Also printed: the cost of one Gaussian update alone at several sizes.

The issue's bar: at most 10% slower.

    python tools/bench_live_view.py [--steps 300] [--every 100] [--views 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from compgs.data import load_scene  # noqa: E402
from compgs.data.synthetic import generate  # noqa: E402
from compgs.splats import Splats  # noqa: E402
from compgs.train.config import TrainConfig  # noqa: E402
from compgs.train.trainer import Trainer  # noqa: E402
from compgs.view.live import LiveView  # noqa: E402


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


def lockstep(config: TrainConfig, scene, live: LiveView) -> tuple[float, float, int, int]:
    """Seconds spent in the steps of a plain and of a viewed trainer, run one step each in turn."""
    Trainer(config, scene).train_step()  # warm-up: compiled kernels loaded
    plain = Trainer(config, scene)
    viewed = Trainer(config, scene, hooks=[live])
    seconds = {"plain": 0.0, "viewed": 0.0}
    for step in range(config.max_steps):
        arms = [("plain", plain), ("viewed", viewed)]
        for name, trainer in arms if step % 2 else arms[::-1]:
            start = time.perf_counter()
            stats = trainer.train_step()
            if trainer is viewed:
                live.on_step(trainer, stats)
            seconds[name] += time.perf_counter() - start
    n = (plain.model.num_gaussians, viewed.model.num_gaussians)
    return seconds["plain"], seconds["viewed"], *n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--views", type=int, default=30)
    args = parser.parse_args()

    live = LiveView(port=0, every=args.every)
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

        with tempfile.TemporaryDirectory() as tmp:
            data = generate(Path(tmp) / "scene", num_views=args.views)
            scene = load_scene(data)
            config = TrainConfig(
                data=data, max_steps=args.steps, backend="cpu", checkpoint_every=0, sh_degree=3
            )
            base, with_view, n_plain, n_viewed = lockstep(config, scene, live)
    finally:
        stop.set()
        client.join()
        live.close()
    ratio = with_view / base
    print(
        f"{args.steps} training steps ({n_plain:,} Gaussians at the end; {base / args.steps * 1000:.0f} "
        f"ms/step): {base:.2f} s without, {with_view:.2f} s with the live view "
        f"(Gaussians every {args.every} steps): ratio {ratio:.3f} ({(ratio - 1) * 100:+.1f}%; "
        f"bar +10%); the client received {received[0] / 1e6:.1f} MB"
    )
    print(
        json.dumps(
            {
                "bench": "live_view_overhead",
                "steps": args.steps,
                "every": args.every,
                "gaussians_end": n_plain,
                "same_result": n_plain == n_viewed,
                "seconds_without": round(base, 3),
                "seconds_with": round(with_view, 3),
                "ratio": round(ratio, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
