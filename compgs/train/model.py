"""Trainable Gaussians: one nn.Parameter per Splats field and one Adam over them.

Densification changes the number of Gaussians. Every such change is expressed
as one `reindex(source, fresh, values)`: new row i is old row ``source[i]``;
rows marked ``fresh`` are new Gaussians whose Adam moments start at zero (and
whose values may be overridden). Parameters, Adam moments and any per-Gaussian
state kept by callers move together, so they can never fall out of step.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from compgs.splats import FIELDS, Splats


class GaussianModel:
    def __init__(self, splats: Splats, lrs: Mapping[str, float], *, eps: float = 1e-15):
        self.params = torch.nn.ParameterDict(
            {name: torch.nn.Parameter(getattr(splats, name).detach().clone()) for name in FIELDS}
        )
        # One param group per field, named, so learning rates are set by name.
        groups = [{"params": [self.params[n]], "lr": float(lrs[n]), "name": n} for n in FIELDS]
        self.optimizer = torch.optim.Adam(groups, eps=eps)

    # -- views --

    def splats(self) -> Splats:
        """The current Gaussians as differentiable tensors (no copy)."""
        return Splats(**{name: self.params[name] for name in FIELDS})

    @property
    def num_gaussians(self) -> int:
        return int(self.params["means"].shape[0])

    @property
    def device(self) -> torch.device:
        return self.params["means"].device

    def group(self, name: str) -> dict:
        return next(g for g in self.optimizer.param_groups if g["name"] == name)

    def set_lr(self, name: str, lr: float) -> None:
        self.group(name)["lr"] = lr

    # -- structural edits --

    @torch.no_grad()
    def reindex(
        self,
        source: torch.Tensor,
        fresh: torch.Tensor | None = None,
        values: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        """New Gaussians = old[source]; ``fresh`` rows get zero moments and ``values``."""
        source = source.to(self.device)
        if fresh is None:
            fresh = torch.zeros(len(source), dtype=torch.bool, device=self.device)
        values = values or {}
        for name in FIELDS:
            old = self.params[name]
            new_data = old.detach()[source].clone()
            if name in values:
                new_data[fresh] = values[name].to(new_data)
            new = torch.nn.Parameter(new_data)
            group = self.group(name)
            state = self.optimizer.state.pop(old, {})
            for key, moment in list(state.items()):
                if key != "step" and torch.is_tensor(moment) and moment.shape[:1] == old.shape[:1]:
                    moment = moment[source].clone()
                    moment[fresh] = 0
                    state[key] = moment
            group["params"] = [new]
            if state:
                self.optimizer.state[new] = state
            self.params[name] = new

    @torch.no_grad()
    def reset_moments(self, name: str) -> None:
        state = self.optimizer.state.get(self.params[name], {})
        for key, moment in state.items():
            if key != "step" and torch.is_tensor(moment):
                moment.zero_()

    # -- checkpoints --

    def state_dict(self) -> dict:
        return {
            "params": {name: p.detach().cpu() for name, p in self.params.items()},
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        splats = Splats(**state["params"]).to(self.device)
        lrs = {g["name"]: g["lr"] for g in self.optimizer.param_groups}
        fresh = GaussianModel(splats, lrs)
        fresh.optimizer.load_state_dict(state["optimizer"])
        self.params, self.optimizer = fresh.params, fresh.optimizer
