"""Quantized adapter coefficients through the codebook engine (`compgs.vq`).

Post-training (`quantize_coefficients`) and quantization-aware (`CoefficientQAT`,
straight-through) scalar quantization of every adapter's trained tensors (NOLA's
alpha and beta, or LoRA's A and B), with

* ``method="uniform"``: symmetric absmax, 2^(b-1) - 1 levels each side of zero
  (`compgs.vq.quantize_uniform`); stored as one scale per group;
* ``method="kmeans"``: 2^b levels fitted by one-dimensional k-means
  (`compgs.vq.quantize_kmeans`); stored as the levels themselves;

and ``granularity="tensor"`` (one scale or codebook per coefficient tensor of
each layer) or ``"global"`` (one per coefficient name across all layers, e.g.
one codebook for every alpha and one for every beta).

Codes are non-negative integers below 2^b in both cases (a uniform code c is
stored as c + 2^(b-1) - 1), which is what the checkpoint bit-packs.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import torch
from torch import nn

from compgs.errors import InputError
from compgs.nola.inject import adapters
from compgs.nola.layers import Adapter
from compgs.vq import (
    QATAction,
    QATSchedule,
    fake_quantize_levels,
    fit_levels,
    quantize_kmeans,
    quantize_levels,
    quantize_uniform,
    update_centroids,
)

Method = Literal["uniform", "kmeans"]
Granularity = Literal["tensor", "global"]


@dataclasses.dataclass(frozen=True)
class QuantSpec:
    """How to quantize coefficients: ``bits`` in [2, 16] (uniform) or [1, 16] (k-means)."""

    bits: int = 4
    method: Method = "uniform"
    granularity: Granularity = "tensor"
    iters: int = 30  # k-means iterations of a fit
    seed: int = 0  # k-means++ seed

    def __post_init__(self) -> None:
        low = 2 if self.method == "uniform" else 1
        if (
            isinstance(self.bits, bool)
            or not isinstance(self.bits, int)
            or not low <= self.bits <= 16
        ):
            raise InputError(
                f"bits must be an int in [{low}, 16] for {self.method}, got {self.bits!r}"
            )
        if self.method not in ("uniform", "kmeans"):
            raise InputError(f"method must be 'uniform' or 'kmeans', got {self.method!r}")
        if self.granularity not in ("tensor", "global"):
            raise InputError(f"granularity must be 'tensor' or 'global', got {self.granularity!r}")

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1


@dataclasses.dataclass(frozen=True)
class Member:
    layer: str  # adapter path
    coefficient: str  # "alpha", "beta", "A" or "B"
    shape: tuple[int, ...]

    @property
    def key(self) -> str:
        return f"{self.layer}.{self.coefficient}"


@dataclasses.dataclass(frozen=True)
class GroupCodes:
    """One quantizer's output: codes [count] int64 in [0, 2^bits) over its members, in order.

    ``scale`` [] for uniform groups (value = (code - qmax) scale), ``levels`` [L] for
    k-means groups (value = levels[code]), float32.
    """

    members: tuple[Member, ...]
    codes: torch.Tensor
    scale: torch.Tensor | None = None
    levels: torch.Tensor | None = None

    def values(self, qmax: int) -> torch.Tensor:
        if self.levels is not None:
            return self.levels[self.codes]
        return (self.codes - qmax).to(torch.float32) * self.scale


@dataclasses.dataclass(frozen=True)
class CoefficientCodes:
    spec: QuantSpec
    groups: tuple[GroupCodes, ...]

    @property
    def count(self) -> int:
        return sum(g.codes.numel() for g in self.groups)

    def dequantize(self) -> dict[str, torch.Tensor]:
        """Quantized values by "layer.coefficient" key."""
        out = {}
        for group in self.groups:
            flat = group.values(self.spec.qmax)
            sizes = [int(torch.Size(m.shape).numel()) for m in group.members]
            for member, part in zip(group.members, torch.split(flat, sizes)):
                out[member.key] = part.reshape(member.shape)
        return out


def group_members(model: nn.Module, granularity: Granularity) -> list[tuple[Member, ...]]:
    """The members of every quantizer group, in model order."""
    found = adapters(model)
    if not found:
        raise InputError("model has no adapters: apply_nola() or apply_lora() first")
    groups: dict[str, list[Member]] = {}
    for path, adapter in found.items():
        for name, p in adapter.coefficients().items():
            key = name if granularity == "global" else f"{path}.{name}"
            groups.setdefault(key, []).append(Member(path, name, tuple(p.shape)))
    return [tuple(g) for g in groups.values()]


def _gather(model: nn.Module, members: tuple[Member, ...]) -> torch.Tensor:
    found = adapters(model)
    return torch.cat(
        [found[m.layer].coefficients()[m.coefficient].detach().reshape(-1) for m in members]
    )


def quantize_coefficients(model: nn.Module, spec: QuantSpec) -> CoefficientCodes:
    """Post-training quantization of every adapter's coefficients (the model is unchanged)."""
    groups = []
    for members in group_members(model, spec.granularity):
        values = _gather(model, members).float()
        if spec.method == "uniform":
            q = quantize_uniform(values, spec.bits)
            groups.append(GroupCodes(members, q.codes.long() + spec.qmax, scale=q.scale))
        else:
            q = quantize_kmeans(values, spec.bits, iters=spec.iters, seed=spec.seed)
            groups.append(GroupCodes(members, q.codes.long(), levels=q.levels.float()))
    return CoefficientCodes(spec, tuple(groups))


def coefficient_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every adapter coefficient by "layer.coefficient" key."""
    return {
        f"{path}.{name}": p.detach().clone()
        for path, a in adapters(model).items()
        for name, p in a.coefficients().items()
    }


@torch.no_grad()
def load_coefficients(model: nn.Module, values: dict[str, torch.Tensor]) -> None:
    """Copy values (e.g. ``codes.dequantize()`` or a `coefficient_state`) into the adapters."""
    found = adapters(model)
    expected = {f"{path}.{n}" for path, a in found.items() for n in a.coefficients()}
    if set(values) != expected:
        missing, unknown = sorted(expected - set(values)), sorted(set(values) - expected)
        raise InputError(f"coefficients do not fit the model: missing {missing}, unknown {unknown}")
    for path, adapter in found.items():
        for name, p in adapter.coefficients().items():
            v = values[f"{path}.{name}"]
            if tuple(v.shape) != tuple(p.shape):
                raise InputError(
                    f"{path}.{name}: shape {tuple(v.shape)}, adapter has {tuple(p.shape)}"
                )
            p.copy_(v)


class CoefficientQAT:
    """Quantization-aware training of adapter coefficients (straight-through estimator).

    Installs a hook on every adapter: the forward pass sees the coefficients
    snapped to the group's levels, the gradient reaches the full-precision values
    unchanged (`compgs.vq.fake_quantize_levels`). Call `step(i)` once per training
    step before the forward pass; it does what ``schedule`` says:

    * uniform: every quantized step recomputes the absmax scale (levels =
      scale x [-qmax .. qmax]);
    * k-means: FIT and ASSIGN refit the levels by k-means, UPDATE moves every
      level to the mean of the values nearest to it (one Lloyd half-step).

    Before ``schedule.start`` the forward pass is full precision. `codes()` gives
    exactly the codes the forward pass used, ready for `save_nola`.
    """

    def __init__(self, model: nn.Module, spec: QuantSpec, schedule: QATSchedule | None = None):
        self.model, self.spec = model, spec
        self.schedule = schedule or QATSchedule(start=0, assign_every=10)
        self.groups = group_members(model, spec.granularity)
        self.levels: list[torch.Tensor | None] = [None] * len(self.groups)
        self._scales: list[torch.Tensor | None] = [None] * len(self.groups)
        self._group_of = {m.key: i for i, g in enumerate(self.groups) for m in g}
        for adapter in adapters(model).values():
            adapter.hook = self._hook

    def _hook(self, adapter: Adapter, name: str, tensor: torch.Tensor) -> torch.Tensor:
        levels = self.levels[self._group_of[f"{adapter.name}.{name}"]]
        if levels is None:
            return tensor
        return fake_quantize_levels(tensor.float(), levels.to(tensor.device)).to(tensor.dtype)

    @torch.no_grad()
    def step(self, i: int) -> QATAction:
        action = self.schedule.step(i)
        if action is QATAction.OFF:
            return action
        for g, members in enumerate(self.groups):
            values = _gather(self.model, members).float()
            if self.spec.method == "uniform":
                scale = quantize_uniform(values, self.spec.bits).scale
                codes = torch.arange(-self.spec.qmax, self.spec.qmax + 1, device=values.device)
                self._scales[g] = scale
                self.levels[g] = codes.to(torch.float32) * scale
            elif action in (QATAction.FIT, QATAction.ASSIGN) or self.levels[g] is None:
                self.levels[g] = fit_levels(
                    values, self.spec.bits, iters=self.spec.iters, seed=self.spec.seed
                )
            else:
                levels = self.levels[g]
                nearest = quantize_levels(values, levels).codes.long()
                moved = update_centroids(
                    values[:, None], nearest, len(levels), previous=levels[:, None]
                )
                self.levels[g] = torch.sort(moved[:, 0]).values
        return action

    def codes(self) -> CoefficientCodes:
        """The codes of the current coefficients under the current levels (after `step`)."""
        if any(lv is None for lv in self.levels):
            raise InputError("quantization has not started: call step(i) with i >= schedule.start")
        groups = []
        for g, members in enumerate(self.groups):
            idx = quantize_levels(_gather(self.model, members).float(), self.levels[g]).codes.long()
            if self.spec.method == "uniform":
                groups.append(GroupCodes(members, idx, scale=self._scales[g]))
            else:
                groups.append(GroupCodes(members, idx, levels=self.levels[g]))
        return CoefficientCodes(self.spec, tuple(groups))

    def remove(self) -> None:
        """Take the hooks off: the forward pass is full precision again."""
        for adapter in adapters(self.model).values():
            if adapter.hook == self._hook:
                adapter.hook = None
