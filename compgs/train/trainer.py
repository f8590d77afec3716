"""The training loop: Splats + Adam + densification, on any render backend.

One step: pick a training view, render it, loss = (1 - l) L1 + l (1 - SSIM)
(+ what hooks add), backward, densify on schedule, Adam step, decay the
position learning rate. Hooks (`TrainHook`) let CompGS change what is
rendered (quantized Gaussians) and add losses without touching this loop.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch

from compgs.errors import InputError
from compgs.eval.metrics import psnr_from_mse, ssim
from compgs.splats import Splats
from compgs.train.config import TrainConfig
from compgs.train.densify import Densifier
from compgs.train.init import splats_from_points
from compgs.train.model import GaussianModel

log = logging.getLogger(__name__)


class TrainHook:
    """Extension points of the loop (CompGS implements them). All optional."""

    def render_splats(self, trainer: Trainer, splats: Splats, step: int) -> Splats:
        """The Gaussians to render this step (e.g. their quantized version)."""
        return splats

    def export_splats(self, trainer: Trainer, splats: Splats) -> Splats:
        """The Gaussians a user gets at the end (no training-time side effects)."""
        return splats

    def extra_loss(self, trainer: Trainer, splats: Splats, step: int) -> torch.Tensor | None:
        return None

    def on_remove(self, keep: torch.Tensor) -> None:
        """Gaussians were removed; ``keep`` indexes the survivors (per-Gaussian state follows)."""

    def after_step(self, trainer: Trainer, step: int) -> None:
        """After the optimizer step (pruning, codebook updates, ...)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def resolve_device(name: str) -> torch.device:
    """ "auto", "cpu", "cuda" or "cuda:N"; a device this machine lacks is an input error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"--device {name}: only {torch.cuda.device_count()} CUDA devices")
    elif device.type != "cpu":
        raise InputError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")
    return device


def position_lr(config: TrainConfig, extent: float, step: int) -> float:
    """3DGS's exponential decay from lr.means to lr.means_final, scaled by the extent."""
    t = min(max(step / max(config.max_steps, 1), 0.0), 1.0)
    lo, hi = math.log(config.lr.means), math.log(config.lr.means_final)
    return math.exp(lo * (1 - t) + hi * t) * extent


class Trainer:
    def __init__(self, config: TrainConfig, scene, *, hooks: list[TrainHook] | None = None):
        self.config = config
        self.scene = scene
        self.device = resolve_device(config.device)
        self.hooks = list(hooks or [])
        self.step = 0
        self.extent = float(scene.extent)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.order: list[int] = []
        torch.manual_seed(config.seed)
        self.background = (
            torch.tensor(config.background, dtype=torch.float32)
            if config.background is not None
            else scene.background.float()
        ).to(self.device)
        init = self._initial_splats()
        lrs = {
            "means": position_lr(config, self.extent, 0),
            "quats": config.lr.quats,
            "scales": config.lr.scales,
            "opacities": config.lr.opacities,
            "sh0": config.lr.sh0,
            "shN": config.lr.shN,
        }
        self.model = GaussianModel(init.to(self.device), lrs)
        self.densifier = Densifier(config.effective_densify(), self.extent, seed=config.seed)
        self.elapsed = 0.0  # training seconds, summed across resumes

    def _initial_splats(self) -> Splats:
        points, colors = self.scene.points, self.scene.point_colors
        cap = self.config.max_init_points
        if cap and len(points) > cap:
            keep = torch.randperm(len(points), generator=self.generator)[:cap]
            points, colors = points[keep], colors[keep]
        return splats_from_points(
            points,
            colors,
            sh_degree=self.config.sh_degree,
            init_opacity=self.config.init_opacity,
            init_scale=self.config.init_scale,
        )

    # -- the loop ------------------------------------------------------------------

    def current_sh_degree(self, step: int) -> int:
        interval = self.config.scaled_step(self.config.sh_degree_interval)
        return min(self.config.sh_degree, step // max(interval, 1))

    def next_view(self) -> int:
        if not self.order:
            n = self.scene.num_images("train")
            self.order = torch.randperm(n, generator=self.generator).tolist()
        return self.order.pop()

    def train_step(self) -> dict:
        """One optimisation step; returns its loss terms and PSNR."""
        from compgs.render import render

        step = self.step
        cfg = self.config
        i = self.next_view()
        cam = self.scene.cameras("train")[i].to(self.device)
        gt = self.scene.image(i, "train").to(self.device)
        splats = self.model.splats()
        for hook in self.hooks:
            splats = hook.render_splats(self, splats, step)
        out = render(
            splats,
            cam,
            width=gt.shape[1],
            height=gt.shape[0],
            sh_degree=self.current_sh_degree(step),
            background=self.background,
            backend=cfg.backend,
        )
        self.densifier.pre_backward(step, out.meta)
        rgb = out.rgb[0]
        l1 = (rgb - gt).abs().mean()
        ssim_value = ssim(rgb[None], gt[None])
        loss = (1 - cfg.ssim_lambda) * l1 + cfg.ssim_lambda * (1 - ssim_value)
        for hook in self.hooks:
            extra = hook.extra_loss(self, splats, step)
            if extra is not None:
                loss = loss + extra
        self.model.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        changes = self.densifier.post_backward(self.model, step, out.meta)
        self.model.optimizer.step()
        self.model.set_lr("means", position_lr(cfg, self.extent, step + 1))
        for hook in self.hooks:
            hook.after_step(self, step)
        self.step += 1
        with torch.no_grad():
            mse = float(((rgb.detach().clamp(0, 1) - gt) ** 2).mean())
        return {
            "loss": float(loss.detach()),
            "l1": float(l1.detach()),
            "psnr": psnr_from_mse(mse),
            **changes,
        }

    def fit(self, on_step=None, stop_at: int | None = None) -> None:
        """Train until max_steps (or ``stop_at``); ``on_step(trainer, stats)`` after each step."""
        end = min(self.config.max_steps, stop_at or self.config.max_steps)
        while self.step < end:
            start = time.perf_counter()
            stats = self.train_step()
            self.elapsed += time.perf_counter() - start
            if on_step is not None:
                on_step(self, stats)

    # -- what is saved -------------------------------------------------------------

    def final_splats(self) -> Splats:
        """The trained Gaussians as a user gets them (hooks may quantize them)."""
        splats = self.model.splats()
        with torch.no_grad():
            for hook in self.hooks:
                splats = hook.export_splats(self, splats)
        return splats.detach().clone()

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "elapsed": self.elapsed,
            "model": self.model.state_dict(),
            "densifier": {
                "grad2d": self.densifier.grad2d,
                "count": self.densifier.count,
                "generator": self.densifier.generator.get_state(),
            },
            "generator": self.generator.get_state(),
            "order": list(self.order),
            "torch_rng": torch.get_rng_state(),
            "hooks": [hook.state_dict() for hook in self.hooks],
        }

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.elapsed = float(state.get("elapsed", 0.0))
        self.model.load_state_dict(state["model"])
        d = state["densifier"]
        self.densifier.grad2d = None if d["grad2d"] is None else d["grad2d"].to(self.device)
        self.densifier.count = None if d["count"] is None else d["count"].to(self.device)
        self.densifier.generator.set_state(d["generator"])
        self.generator.set_state(state["generator"])
        self.order = list(state["order"])
        torch.set_rng_state(state["torch_rng"])
        for hook, hook_state in zip(self.hooks, state.get("hooks", [])):
            hook.load_state_dict(hook_state)

    def remove(self, mask: torch.Tensor) -> None:
        """Remove Gaussians (pruning); every per-Gaussian state follows."""
        keep = torch.where(~mask)[0]
        self.densifier.remove(self.model, mask)
        for hook in self.hooks:
            hook.on_remove(keep)

    def export(self, run_dir: Path) -> Path | None:
        """The full-precision Gaussians as INRIA PLY (what 3DGS would ship)."""
        if not self.config.export_ply:
            return None
        from compgs.io.ply import write_ply

        path = Path(run_dir) / "splats.ply"
        write_ply(self.model.splats().detach().to("cpu"), path)
        return path
