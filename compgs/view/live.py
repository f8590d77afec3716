"""Live view of a training run in the browser, through viser (nerfstudio's viewer library).

`LiveView` is a trainer hook: every `every` steps it sends the current
Gaussians (viser's splat renderer: centres, covariances, DC colour, opacity),
once the training cameras as frusta, and the latest metrics at most a few
times a second. The training thread only copies tensors to numpy and queues
messages (viser sends them from its own thread), which keeps the cost well
under the 10% the issue allows (tools/bench_live_view.py measures it).

Use it from any loop::

    live = LiveView(port=8080)
    live.show_cameras(scene.cameras("train"))
    for step in ...:
        ...
        live.update(step, splats=model.splats() if step % 200 == 0 else None, metrics={"psnr": p})

or as a `compgs.train.trainer.TrainHook` (``after_step``), with ``on_step`` as
the trainer's per-step callback for loss and PSNR.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping

import numpy as np
import torch

from compgs.errors import InputError, check_port
from compgs.splats import SH_C0, Splats
from compgs.train.trainer import TrainHook

logger = logging.getLogger(__name__)


class LiveView(TrainHook):
    """A viser server showing Gaussians being trained, the training cameras and metrics.

    Args:
        host: address to bind (loopback by default: only this machine can connect).
        port: TCP port; viser moves to the next free one when it is taken (see ``url``).
        every: send the Gaussians every this many steps.
        max_gaussians: send at most this many (the most opaque), to keep browsers fluid.
        metrics_interval: seconds between two metric updates of the panel.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 8080,
        *,
        every: int = 200,
        max_gaussians: int = 500_000,
        metrics_interval: float = 0.5,
    ) -> None:
        try:
            import viser
        except ImportError as e:
            raise InputError("the live view needs viser: pip install 'compgs[viewer]'") from e
        if every < 1:
            raise InputError(f"the live view refresh interval must be >= 1 step, got {every}")
        check_port(port, "--viewer-port")
        self.every = every
        self.max_gaussians = max_gaussians
        self.metrics_interval = metrics_interval
        self.server = viser.ViserServer(
            host=host, port=port, label="compgs training", verbose=False
        )
        self.server.scene.set_up_direction("-y")  # RDF scenes: y points down
        self._status = self.server.gui.add_markdown("waiting for the first step ...")
        self._splats = None
        self._frusta: list = []
        self._metrics: dict[str, float] = {}
        self._last_metrics = 0.0
        self._start = time.perf_counter()
        self.updates = 0  # how many times the Gaussians were sent
        logger.info("live training view at %s", self.url)

    @property
    def url(self) -> str:
        return f"http://{self.server.get_host()}:{self.server.get_port()}/"

    # -- what any training loop calls ------------------------------------------------

    def show_cameras(self, cameras, up: torch.Tensor | None = None) -> None:
        """Draw the cameras (compgs Cameras, OpenCV axes) as frusta; ``up`` sets the view's up."""
        if up is not None:
            self.server.scene.set_up_direction(np.asarray(up.detach().cpu(), dtype=np.float64))
        for handle in self._frusta:
            handle.remove()
        from viser.transforms import SO3

        c2w = cameras.camtoworld.detach().cpu().double().numpy()
        K = cameras.K.detach().cpu().double().numpy()
        centers = c2w[:, :3, 3]
        spread = (
            float(np.linalg.norm(centers - centers.mean(0), axis=1).mean()) if len(c2w) else 1.0
        )
        self._frusta = [
            self.server.scene.add_camera_frustum(
                f"/cameras/{i}",
                fov=2 * math.atan(float(cameras.height[i]) / (2 * K[i, 1, 1])),
                aspect=float(cameras.width[i]) / float(cameras.height[i]),
                scale=0.05 * (spread or 1.0),
                wxyz=SO3.from_matrix(c2w[i, :3, :3]).wxyz,
                position=c2w[i, :3, 3],
                color=(230, 120, 40),
            )
            for i in range(len(c2w))
        ]

    def update(
        self, step: int, splats: Splats | None = None, metrics: Mapping[str, float] | None = None
    ) -> None:
        """Record metrics (the panel refreshes at most every ``metrics_interval`` s) and send
        ``splats`` when given."""
        if metrics:
            self._metrics.update({k: float(v) for k, v in metrics.items()})
        if splats is not None:
            self._send_splats(splats)
        now = time.perf_counter()
        if splats is not None or now - self._last_metrics >= self.metrics_interval:
            self._last_metrics = now
            self._status.content = self._describe(step, splats)

    def close(self) -> None:
        self.server.stop()

    # -- TrainHook (compgs.train.trainer; its other methods keep their defaults) -------

    def after_step(self, trainer, step: int) -> None:
        if not self._frusta:
            self.show_cameras(trainer.scene.cameras("train"), getattr(trainer.scene, "up", None))
        done = step + 1  # steps completed (the trainer counts this one after its hooks)
        due = step % self.every == 0 or done >= trainer.config.max_steps
        splats = trainer.model.splats() if due else None
        self.update(done, splats, {"gaussians": trainer.model.num_gaussians})

    def on_step(self, trainer, stats: Mapping[str, float]) -> None:
        """The trainer's per-step callback: loss, PSNR and friends for the panel."""
        keep = {k: v for k, v in stats.items() if isinstance(v, (int, float))}
        self.update(trainer.step, None, keep)

    # -- internals ---------------------------------------------------------------------

    def _send_splats(self, splats: Splats) -> None:
        # numpy, single-threaded: torch's thread pool would compete with the training step.
        with torch.no_grad():
            s = splats.detach()
            if s.num_gaussians > self.max_gaussians:
                s = s.index(torch.topk(s.opacities, self.max_gaussians).indices)
            a = s.to("cpu", torch.float32).numpy()
        rgb = np.clip(0.5 + SH_C0 * a["sh0"][:, 0], 0.0, 1.0)
        alpha = 1.0 / (1.0 + np.exp(-a["opacities"][:, None]))
        self._splats = self.server.scene.add_gaussian_splats(
            "/splats",
            centers=a["means"],
            covariances=covariances(a["quats"], a["scales"]),
            rgbs=rgb,
            opacities=alpha,
        )
        self.updates += 1

    def _describe(self, step: int, splats: Splats | None) -> str:
        elapsed = time.perf_counter() - self._start
        lines = [f"**step** {step:,}", f"**time** {elapsed:,.0f} s"]
        for name, value in self._metrics.items():
            text = f"{value:,.0f}" if float(value).is_integer() else f"{value:.4g}"
            lines.append(f"**{name}** {text}")
        if splats is not None:
            lines.append(f"**shown** {min(splats.num_gaussians, self.max_gaussians):,} Gaussians")
        return "  \n".join(lines)


def covariances(quats: np.ndarray, log_scales: np.ndarray) -> np.ndarray:
    """3D covariances R diag(exp(2 log_scales)) R^T [N, 3, 3] of wxyz quaternions (any norm)."""
    q = quats / np.maximum(np.linalg.norm(quats, axis=1, keepdims=True), 1e-12)
    w, x, y, z = q.T
    R = np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        axis=1,
    ).reshape(-1, 3, 3)  # fmt: skip
    RS = R * np.exp(log_scales)[:, None, :]
    return RS @ RS.transpose(0, 2, 1)
