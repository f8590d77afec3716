"""CompGS's opacity regularisation: push opacities to zero, prune the transparent.

Inside the window [reg_start, reg_stop) the loss gains lambda * sum(sigmoid(o));
every ``prune_every`` steps Gaussians below ``prune_opacity`` are removed.

Scaling lambda: with Adam, a Gaussian's opacity decays when the regulariser's
gradient outweighs its photometric gradient on average. The photometric
gradient of one Gaussian shrinks roughly as 1/N (each covers ~1/N of what the
loss sees), independent of image size (the L1 is a mean over pixels) and of
the number of images (one image per step). So lambda is applied as
``opacity_reg * opacity_reg_reference / N``, N counted when the window opens:
the paper's 1e-7 at about a million Gaussians keeps the same balance at 50k.
"""

from __future__ import annotations

import logging

import torch

from compgs.train.config import TrainConfig
from compgs.train.trainer import TrainHook

log = logging.getLogger(__name__)


class OpacityRegHook(TrainHook):
    def __init__(self, config: TrainConfig):
        cfg = config.compgs
        self.cfg = cfg
        self.start = config.scaled_step(cfg.reg_start)
        self.stop = max(self.start, config.scaled_step(cfg.reg_stop))
        self.prune_every = max(1, config.scaled_step(cfg.prune_every))
        self.weight: float | None = None  # lambda after scaling, fixed when the window opens
        self.pruned = 0

    def active(self, step: int) -> bool:
        return self.start <= step < self.stop

    def extra_loss(self, trainer, splats, step: int) -> torch.Tensor | None:
        if not self.active(step):
            return None
        if self.weight is None:
            n = trainer.model.num_gaussians
            self.weight = self.cfg.opacity_reg * self.cfg.opacity_reg_reference / max(n, 1)
            log.info("opacity regularisation on %d Gaussians, lambda %.3g", n, self.weight)
        return self.weight * torch.sigmoid(trainer.model.params["opacities"]).sum()

    def after_step(self, trainer, step: int) -> None:
        done = step + 1  # steps completed
        if self.start < done <= self.stop and (done - self.start) % self.prune_every == 0:
            with torch.no_grad():
                mask = torch.sigmoid(trainer.model.params["opacities"]) < self.cfg.prune_opacity
            n = int(mask.sum())
            if n:
                trainer.remove(mask)
                self.pruned += n
                log.info(
                    "step %d: pruned %d transparent Gaussians, %d left",
                    done,
                    n,
                    trainer.model.num_gaussians,
                )

    def state_dict(self) -> dict:
        return {"weight": self.weight, "pruned": self.pruned}

    def load_state_dict(self, state: dict) -> None:
        self.weight, self.pruned = state["weight"], state["pruned"]

    def finish(self, trainer, splats, run_dir) -> dict:
        return {"opacity_pruned": self.pruned}
