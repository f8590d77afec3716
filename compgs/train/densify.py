"""Adaptive density control of 3DGS (Kerbl et al. 2023), as gsplat's DefaultStrategy.

Every ``refine_every`` steps between ``refine_start`` and ``refine_stop``:
Gaussians whose average view-space positional gradient exceeds ``grow_grad2d``
are cloned (if small) or split in two (if large); transparent ones, and after
the first opacity reset huge ones, are pruned. Every ``reset_every`` steps the
opacities are clamped down so that floaters must re-earn their opacity.
"""

from __future__ import annotations

import dataclasses
import logging

import torch

from compgs.render.reference import quat_to_rotmat
from compgs.train.model import GaussianModel

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DensifyConfig:
    """Densification schedule and thresholds (defaults: gsplat's DefaultStrategy at 30k steps)."""

    refine_start: int = 500
    """First step at which Gaussians are cloned, split and pruned."""
    refine_stop: int = 15_000
    """No densification from this step on."""
    refine_every: int = 100
    """Steps between densification rounds."""
    reset_every: int = 3000
    """Steps between opacity resets (0 disables them)."""
    grow_grad2d: float = 0.0002
    """Average screen-space gradient (in NDC units) above which a Gaussian grows."""
    grow_scale3d: float = 0.01
    """Largest axis (relative to the scene extent) below which a growing Gaussian is cloned, above which it is split."""
    prune_opacity: float = 0.005
    """Gaussians with opacity below this are removed."""
    prune_scale3d: float = 0.1
    """After the first reset, Gaussians larger than this (relative to the extent) are removed."""
    max_gaussians: int = 0
    """Stop growing beyond this many Gaussians (0: no limit); a guard for CPU budgets."""


class Densifier:
    """Accumulates screen-space gradients and edits the model on schedule."""

    def __init__(self, config: DensifyConfig, scene_extent: float, seed: int = 0):
        self.config = config
        self.extent = float(scene_extent)
        self.grad2d: torch.Tensor | None = None
        self.count: torch.Tensor | None = None
        self.generator = torch.Generator().manual_seed(seed)

    def pre_backward(self, step: int, meta: dict) -> None:
        """Ask autograd to keep the screen-space gradient while densification is on."""
        if step < self.config.refine_stop and meta["means2d"].requires_grad:
            meta["means2d"].retain_grad()

    @torch.no_grad()
    def post_backward(self, model: GaussianModel, step: int, meta: dict) -> dict[str, int]:
        """Update statistics, densify on schedule; returns counts of what changed."""
        cfg, changes = self.config, {}
        if step >= cfg.refine_stop:
            return changes
        self._accumulate(model, meta)
        if step > cfg.refine_start and step % cfg.refine_every == 0:
            changes["cloned"], changes["split"] = self._grow(model)
            changes["pruned"] = self._prune(model, step)
            self.grad2d.zero_()
            self.count.zero_()
        if cfg.reset_every and step % cfg.reset_every == 0 and step > 0:
            self.reset_opacity(model, 2 * cfg.prune_opacity)
            changes["reset"] = 1
        return changes

    def _accumulate(self, model: GaussianModel, meta: dict) -> None:
        n = model.num_gaussians
        if self.grad2d is None or self.grad2d.shape[0] != n:
            self.grad2d = torch.zeros(n, device=model.device)
            self.count = torch.zeros(n, device=model.device)
        grads = meta["means2d"].grad
        if grads is None:
            return
        grads = grads.detach().clone()  # [C, N, 2], in pixels
        # normalise to NDC units, as gsplat does
        grads[..., 0] *= meta["width"] / 2.0 * meta["n_cameras"]
        grads[..., 1] *= meta["height"] / 2.0 * meta["n_cameras"]
        radii = meta["radii"]
        visible = (radii > 0).all(dim=-1) if radii.ndim == 3 else radii > 0  # [C, N]
        ids = torch.where(visible)[1]
        self.grad2d.index_add_(0, ids, grads[visible].norm(dim=-1))
        self.count.index_add_(0, ids, torch.ones_like(ids, dtype=self.count.dtype))

    def _remap(self, source: torch.Tensor) -> None:
        self.grad2d = self.grad2d[source]
        self.count = self.count[source]

    def _grow(self, model: GaussianModel) -> tuple[int, int]:
        cfg = self.config
        grads = self.grad2d / self.count.clamp_min(1)
        high = grads > cfg.grow_grad2d
        if cfg.max_gaussians:
            room = max(0, cfg.max_gaussians - model.num_gaussians)
            if int(high.sum()) > room:  # keep the strongest candidates
                keep = torch.topk(torch.where(high, grads, -1.0), room).indices
                high = torch.zeros_like(high)
                high[keep] = True
        size = model.params["scales"].exp().max(dim=-1).values
        small = size <= cfg.grow_scale3d * self.extent
        clone, split = high & small, high & ~small
        n_clone, n_split = int(clone.sum()), int(split.sum())
        if n_clone:
            self.clone(model, clone)
            split = torch.cat([split, torch.zeros(n_clone, dtype=torch.bool, device=split.device)])
        if n_split:
            self.split(model, split)
        return n_clone, n_split

    def _prune(self, model: GaussianModel, step: int) -> int:
        cfg = self.config
        prune = torch.sigmoid(model.params["opacities"]) < cfg.prune_opacity
        if cfg.reset_every and step > cfg.reset_every:
            size = model.params["scales"].exp().max(dim=-1).values
            prune |= size > cfg.prune_scale3d * self.extent
        n = int(prune.sum())
        if n:
            self.remove(model, prune)
        return n

    # -- the edits (public: the CompGS opacity-regularised pruning reuses `remove`) --

    def clone(self, model: GaussianModel, mask: torch.Tensor) -> None:
        sel = torch.where(mask)[0]
        n = model.num_gaussians
        source = torch.cat([torch.arange(n, device=sel.device), sel])
        fresh = torch.arange(len(source), device=sel.device) >= n
        model.reindex(source, fresh)
        self._remap(source)

    def split(self, model: GaussianModel, mask: torch.Tensor) -> None:
        sel, rest = torch.where(mask)[0], torch.where(~mask)[0]
        p = model.params
        scales = p["scales"][sel].exp()
        rot = quat_to_rotmat(p["quats"][sel])
        noise = torch.randn(2, len(sel), 3, generator=self.generator).to(scales)
        offsets = torch.einsum("nij,nj,bnj->bni", rot, scales, noise)  # samples of N(0, cov)
        source = torch.cat([rest, sel, sel])
        fresh = torch.arange(len(source), device=sel.device) >= len(rest)
        values = {
            "means": (p["means"][sel] + offsets).reshape(-1, 3),
            "scales": torch.log(scales / 1.6).repeat(2, 1),
        }
        model.reindex(source, fresh, values)
        self._remap(source)

    def remove(self, model: GaussianModel, mask: torch.Tensor) -> None:
        keep = torch.where(~mask)[0]
        model.reindex(keep)
        if self.grad2d is not None and self.grad2d.shape[0] == mask.shape[0]:
            self._remap(keep)

    @staticmethod
    def reset_opacity(model: GaussianModel, value: float) -> None:
        limit = torch.logit(torch.tensor(value)).item()
        with torch.no_grad():
            model.params["opacities"].clamp_(max=limit)
        model.reset_moments("opacities")
