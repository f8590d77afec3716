"""`quantize_model`: replace the weights of chosen layers by codebook lookups.

Each selected layer gets a `torch.nn.utils.parametrize` parametrization,
`VQWeight`: ``layer.weight`` becomes centroids[indices] laid back into the
weight's shape, computed from the float "shadow" weight
``layer.parametrizations.weight.original`` with the straight-through estimator
(forward: the codebook values; backward: the gradient goes to the shadow
weight unchanged). Parametrizing instead of swapping modules keeps every
subclass of nn.Conv2d (e.g. TensorFlow-style "same" padding) working as is.

The codebooks are `compgs.vq.Codebook` modules; layers of one group share one
(its assignments hold the group's vectors stacked in layer order). During
quantization-aware training `qat_step` does what a `compgs.vq.QATSchedule`
says once per optimizer step: move the centroids to the mean of their shadow
weights, or re-assign (Gong et al. 2014; Han et al., Deep Compression 2016;
Navaneet et al., CompGS 2024).
"""

from __future__ import annotations

import dataclasses
import logging

import torch
from torch import nn
from torch.nn.utils import parametrize

from compgs.backbones.config import VQConfig
from compgs.backbones.layout import select_layers, vectors_to_weight, weight_to_vectors
from compgs.errors import InputError
from compgs.vq import Codebook, QATAction

log = logging.getLogger(__name__)


class VQWeight(nn.Module):
    """Parametrization: weight = codebook.centroids[its slice of the assignments].

    Args:
        book: the group's codebook (shared between the group's layers).
        group: the group's name.
        offset: index of this layer's first vector in the group's assignments.
        count: this layer's number of vectors (numel / d).
        scale: optional per-output-channel scale [out]: weight = scale x lookup.
    """

    scale: torch.Tensor | None

    def __init__(
        self, book: Codebook, group: str, offset: int, count: int, scale: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        self.book = book
        self.group = group
        self.offset = offset
        self.count = count
        self.register_buffer("scale", scale)

    def normalize(self, weight: torch.Tensor) -> torch.Tensor:
        """The weight in codebook units (divided by the channel scales when there are some)."""
        return weight if self.scale is None else weight / _per_channel(self.scale, weight)

    @property
    def indices(self) -> torch.Tensor:
        """This layer's code indices [count] (int64)."""
        return self.book.assignments[self.offset : self.offset + self.count]

    def codebook_weight(self, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        """centroids[indices] in the weight's layout, times the channel scales (no gradient)."""
        q = vectors_to_weight(self.book.centroids[self.indices].to(dtype), shape)
        return q if self.scale is None else q * _per_channel(self.scale.to(dtype), q)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        q = self.codebook_weight(weight.shape, weight.dtype)
        return weight - weight.detach() + q  # straight-through: d weight / d shadow = identity

    def extra_repr(self) -> str:
        return f"group={self.group!r}, vectors={self.count}, K={self.book.num_codes}, d={self.book.dim}"


def _per_channel(scale: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return scale.reshape(-1, *([1] * (like.dim() - 1)))


def channel_scales(weight: torch.Tensor) -> torch.Tensor:
    """RMS of every output channel [out], half-precision representable (the file stores f16);
    1 for an all-zero channel."""
    rms = weight.detach().reshape(weight.shape[0], -1).float().pow(2).mean(1).sqrt()
    rms = torch.where(rms > 0, rms, torch.ones_like(rms))
    f16 = torch.finfo(torch.float16)
    return rms.clamp(float(f16.tiny), float(f16.max)).half().float()


@dataclasses.dataclass
class CodebookGroup:
    """One codebook and the layers that share it (in the order of its assignments)."""

    name: str
    book: Codebook
    layers: list[str]


def quantize_model(model: nn.Module, config: VQConfig) -> nn.Module:
    """Post-training k-means weight sharing of ``model`` in place; returns it.

    Selects layers (`select_layers`), fits one codebook per group on the float
    weights, and parametrizes every selected layer with `VQWeight`. The float
    weights stay as shadow parameters, so the model can be fine-tuned
    (`compgs.backbones.finetune`) and exported (`export_model`).
    """
    if quantized_layers(model):
        raise InputError("the model is already quantized (call materialize() first to start over)")
    names = select_layers(model, config)
    modules = dict(model.named_modules())
    members: dict[str, list[str]] = {}
    for name in names:
        members.setdefault(config.group_of(name), []).append(name)
    k, d = config.codes, config.dim
    for group, layer_names in members.items():  # check every group before changing any
        count = sum(modules[n].weight.numel() // d for n in layer_names)
        if count < k:
            what = f"layer {layer_names[0]!r}" if len(layer_names) == 1 else f"group {group!r}"
            raise InputError(
                f"{what} has {count} weight vectors of d={d}, fewer than K={k} codes; "
                "lower K, raise min_size or share codebooks"
            )
    for group, layer_names in members.items():
        weights = [modules[n].weight for n in layer_names]
        scales = [channel_scales(w) if config.channel_scale else None for w in weights]
        vectors = torch.cat(
            [
                weight_to_vectors(w.detach() if s is None else w.detach() / _per_channel(s, w), d)
                for w, s in zip(weights, scales)
            ]
        )
        book = Codebook(
            k, d, iters=config.iters, seed=config.seed,
            dtype=vectors.dtype if vectors.dtype == torch.float64 else torch.float32,
            device=vectors.device,
        )  # fmt: skip
        book.fit(vectors)
        offset = 0
        for name, w, scale in zip(layer_names, weights, scales):
            count = w.numel() // d
            scale = None if scale is None else scale.to(w.dtype)
            parametrize.register_parametrization(
                modules[name], "weight", VQWeight(book, group, offset, count, scale)
            )
            offset += count
        log.debug(
            "group %s: %d layers, %d vectors, K=%d, d=%d", group, len(layer_names), offset, k, d
        )
    return model


def quantized_layers(model: nn.Module) -> dict[str, VQWeight]:
    """The `VQWeight` of every quantized layer, by layer name, in registration order."""
    found = {}
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            for p in module.parametrizations.weight:
                if isinstance(p, VQWeight):
                    found[name] = p
    return found


def codebook_groups(model: nn.Module) -> list[CodebookGroup]:
    """The codebooks of a quantized model, each with its layers in assignment order."""
    groups: dict[int, CodebookGroup] = {}
    for name, vq in quantized_layers(model).items():
        group = groups.setdefault(id(vq.book), CodebookGroup(vq.group, vq.book, []))
        group.layers.append(name)
    modules = dict(model.named_modules())
    for group in groups.values():
        group.layers.sort(key=lambda n: modules[n].parametrizations.weight[0].offset)
    return list(groups.values())


def shadow_vectors(model: nn.Module, group: CodebookGroup) -> torch.Tensor:
    """The float shadow weights of a group's layers as its [N, d] vectors (detached)."""
    modules = dict(model.named_modules())
    d = group.book.dim
    parts = []
    for n in group.layers:
        weight = modules[n].parametrizations.weight
        parts.append(weight_to_vectors(weight[0].normalize(weight.original.detach()), d))
    return torch.cat(parts).to(group.book.centroids.dtype)


@torch.no_grad()
def qat_step(model: nn.Module, action: QATAction) -> None:
    """Apply one `QATSchedule` action to every codebook, from the current shadow weights.

    Call it after ``optimizer.step()``: UPDATE moves each centroid to the mean
    of its members, ASSIGN re-assigns (one Lloyd pass), FIT refits from
    scratch; frozen codebooks only assign. OFF does nothing.
    """
    if action is QATAction.OFF:
        return
    for group in codebook_groups(model):
        group.book.step(shadow_vectors(model, group), action)


def materialize(model: nn.Module) -> nn.Module:
    """Remove the parametrizations, leaving plain layers whose weights are the
    codebook values (dense, fast, no codebooks). In place; returns the model."""
    modules = dict(model.named_modules())
    for name in quantized_layers(model):
        parametrize.remove_parametrizations(modules[name], "weight", leave_parametrized=True)
    return model
