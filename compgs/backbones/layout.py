"""Which layers are quantized, and how a weight tensor becomes vectors.

Layout: a weight [out, in, *kernel] is read in the order (out, *kernel, in),
input channel fastest, and cut into runs of d consecutive values. For 1x1
convolutions and linear layers every vector lies along the input dimension
(as in "And the Bit Goes Down", Stock et al. 2020); when ``in`` is not a
multiple of d (depthwise convolutions have in = 1) vectors run on across
kernel positions. Only ``numel % d == 0`` is required.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from compgs.backbones.config import VQConfig
from compgs.errors import InputError

QUANTIZABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def weight_to_vectors(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """[out, in, *kernel] -> [numel / d, d] (differentiable view or copy)."""
    if weight.dim() > 2:
        weight = weight.movedim(1, -1)
    return weight.reshape(-1, dim)


def vectors_to_weight(vectors: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """Inverse of `weight_to_vectors`: [numel / d, d] -> a contiguous tensor of ``shape``."""
    shape = tuple(shape)
    if len(shape) > 2:
        moved = (shape[0], *shape[2:], shape[1])
        return vectors.reshape(moved).movedim(-1, 1).contiguous()
    return vectors.reshape(shape)


def head_name(model: nn.Module) -> str | None:
    """The classifier: the last nn.Linear in registration order (None without one)."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    return last


def candidate_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Every Conv/Linear module with a weight, by name."""
    return {
        name: m
        for name, m in model.named_modules()
        if isinstance(m, QUANTIZABLE) and isinstance(getattr(m, "weight", None), torch.Tensor)
    }


def select_layers(model: nn.Module, config: VQConfig) -> list[str]:
    """Names of the layers `quantize_model` quantizes, in registration order.

    Raises InputError when an include/exclude pattern matches no layer, when a
    selected layer's size is not a multiple of d, or when nothing is left.
    """
    layers = candidate_layers(model)
    if not layers:
        raise InputError("the model has no Conv/Linear layer to quantize")
    for kind, patterns in (("include", config.include), ("exclude", config.exclude)):
        for pattern in patterns:
            if not any(re.search(pattern, name) for name in layers):
                sample = ", ".join(list(layers)[:4])
                raise InputError(
                    f"{kind} pattern {pattern!r} matches no Conv/Linear layer (e.g. {sample})"
                )
    head = head_name(model)
    selected = []
    for name, module in layers.items():
        if not any(re.search(p, name) for p in config.include):
            continue
        if any(re.search(p, name) for p in config.exclude):
            continue
        if name == head and not config.quantize_head:
            continue
        if module.weight.numel() < config.min_size:
            continue
        if module.weight.numel() % config.dim:
            raise InputError(
                f"layer {name!r} has {module.weight.numel()} weights, not a multiple of dim={config.dim}; "
                "exclude it or choose another dim"
            )
        selected.append(name)
    if not selected:
        raise InputError(
            f"no layer selected: {len(layers)} Conv/Linear layers, none left after the patterns, "
            f"the head rule and min_size={config.min_size}"
        )
    return selected


def leftover_kinds(model: nn.Module, entries) -> dict[str, str]:
    """What each float state entry of ``model`` is, for the size report: "batch-norm
    affine", "batch-norm statistics", "biases", "head" (classifier weight), "stem" (the
    first Conv/Linear weight), "small layers" (other weights left float) or "other"."""
    modules = dict(model.named_modules())
    head = head_name(model)
    stem = next(iter(candidate_layers(model)), None)
    kinds = {}
    for entry in entries:
        module_name, _, attr = entry.rpartition(".")
        module = modules.get(module_name)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            kind = "batch-norm affine" if attr in ("weight", "bias") else "batch-norm statistics"
        elif attr == "bias":
            kind = "biases"
        elif isinstance(module, QUANTIZABLE) and attr == "weight":
            kind = {stem: "stem", head: "head"}.get(module_name, "small layers")  # head wins
        else:
            kind = "other"
        kinds[entry] = kind
    return kinds
