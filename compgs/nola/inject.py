"""Put adapters into any nn.Module by module name, PEFT style; merge, unmerge, unload.

    coefficients = apply_nola(model, ["c_attn", "c_proj"], rank=4, k=64, l=64, seed=0)
    optimizer = torch.optim.AdamW(coefficients, lr=1e-2)
    ...
    merge_adapters(model)          # zero-overhead inference
    plain = unload_adapters(model)  # or drop the wrappers altogether

``target_modules`` is either a list of names, each matching a module whose path
equals it or ends with "." + it (PEFT's rule), or one string, a regular
expression that must match a module's whole path.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from torch import nn

from compgs.errors import InputError
from compgs.nola.layers import Adapter, LoRAAdapter, NOLAConv2d, NOLALinear
from compgs.nola.views import layer_kind

log = logging.getLogger(__name__)


def find_targets(model: nn.Module, target_modules: str | Sequence[str]) -> list[str]:
    """Paths of the modules ``target_modules`` selects, in model order.

    Raises InputError when nothing matches, when a match cannot be adapted, or
    when a match is (inside) an adapter already.
    """
    if not isinstance(model, nn.Module):
        raise InputError(f"model must be an nn.Module, got {type(model).__name__}")
    if isinstance(target_modules, str):
        try:
            pattern = re.compile(target_modules)
        except re.error as e:
            raise InputError(f"target_modules {target_modules!r} is not a valid regex: {e}") from e

        def match(name: str) -> bool:
            return pattern.fullmatch(name) is not None
    else:
        targets = list(target_modules)
        if not targets or not all(isinstance(t, str) and t for t in targets):
            raise InputError("target_modules must be a regex or a non-empty list of module names")

        def match(name: str) -> bool:
            return any(name == t or name.endswith("." + t) for t in targets)

    inside_adapter = {
        f"{name}.{sub}" if sub else name
        for name, module in model.named_modules()
        if isinstance(module, Adapter)
        for sub, _ in module.named_modules()
    }
    found = []
    for name, module in model.named_modules():
        if not name or not match(name):
            continue
        if name in inside_adapter or isinstance(module, Adapter):
            raise InputError(f"module '{name}' is already adapted; unload_adapters() first")
        if layer_kind(module) is None:
            raise InputError(
                f"target '{name}' is a {type(module).__name__}: adapters wrap nn.Linear, "
                "nn.Conv2d and transformers' Conv1D (name the layers inside it)"
            )
        found.append(name)
    if not found:
        candidates = [n for n, m in model.named_modules() if n and layer_kind(m) is not None]
        shown = ", ".join(candidates[:8]) + (", ..." if len(candidates) > 8 else "")
        raise InputError(
            f"target_modules {target_modules!r} match no module of {type(model).__name__}; "
            f"adaptable layers are: {shown or 'none'}"
        )
    return found


def apply_nola(
    model: nn.Module,
    target_modules: str | Sequence[str],
    *,
    rank: int = 4,
    k: int = 64,
    l: int = 64,
    seed: int = 0,
    c: float = 1.0,
    shared_basis: bool = False,
    conv_layout: str = "square",
    backend: str = "torch",
    cache_basis: bool = True,
) -> list[nn.Parameter]:
    """Wrap every target in a NOLA adapter, freeze everything else; return the coefficients.

    Each adapted layer trains k + l values (alpha then beta). Bases are generated
    on each layer's device (create the model there first to avoid a copy) and kept
    as non-persistent buffers; ``cache_basis=False`` regenerates them in chunks at
    every pass instead (memory ~ one chunk, for models whose bases do not fit).
    """
    cache: dict = {}
    return _apply(
        model, target_modules, "nola",
        dict(rank=rank, k=k, l=l, seed=seed, c=c, shared_basis=shared_basis,
             conv_layout=conv_layout, basis_cache=cache, backend=backend, cache_basis=cache_basis),
    )  # fmt: skip


def apply_lora(
    model: nn.Module,
    target_modules: str | Sequence[str],
    *,
    rank: int = 1,
    seed: int = 0,
    c: float = 1.0,
    conv_layout: str = "square",
) -> list[nn.Parameter]:
    """Plain LoRA on the same matrix views (the baseline NOLA is compared with)."""
    return _apply(
        model, target_modules, "lora", dict(rank=rank, seed=seed, c=c, conv_layout=conv_layout)
    )


def wrap_layer(
    model: nn.Module, path: str, method: str, *, name: str | None = None, **config
) -> Adapter:
    """Replace the module at ``path`` by an adapter around it.

    ``name`` (default: ``path``) is what per-layer random streams are keyed by.
    """
    parent_name, _, child = path.rpartition(".")
    try:
        parent = model.get_submodule(parent_name)
        base = getattr(parent, child)
    except AttributeError as e:
        raise InputError(f"model has no module '{path}'") from e
    if not isinstance(base, nn.Module):
        raise InputError(f"'{path}' is not a module")
    name = path if name is None else name
    if method == "nola":
        cls = NOLAConv2d if isinstance(base, nn.Conv2d) else NOLALinear
        adapter: Adapter = cls(base, name=name, **config)
    elif method == "lora":
        adapter = LoRAAdapter(base, name=name, **config)
    else:
        raise InputError(f"unknown adapter method {method!r} (expected 'nola' or 'lora')")
    setattr(parent, child, adapter)
    return adapter


def _apply(model: nn.Module, target_modules, method: str, config: dict) -> list[nn.Parameter]:
    names = find_targets(model, target_modules)
    made = []
    try:
        for name in names:
            made.append(wrap_layer(model, name, method, **config))
    except Exception:
        for adapter in made:  # leave the model as it was
            parent_name, _, child = adapter.name.rpartition(".")
            setattr(model.get_submodule(parent_name), child, adapter.base)
        raise
    for p in model.parameters():
        p.requires_grad_(False)
    coefficients = [p for a in made for p in a.coefficients().values()]
    for p in coefficients:
        p.requires_grad_(True)
    log.info(
        "%s: %d layers adapted, %d trained values",
        method,
        len(made),
        sum(a.num_trained for a in made),
    )
    return coefficients


def adapters(model: nn.Module) -> dict[str, Adapter]:
    """Every adapter of ``model`` by its module path, in model order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, Adapter)}


def trainable_coefficients(model: nn.Module) -> list[nn.Parameter]:
    return [p for a in adapters(model).values() for p in a.coefficients().values()]


def count_trained(model: nn.Module) -> int:
    """Trained adapter values: k + l per NOLA layer, (m + n) r per LoRA layer."""
    return sum(a.num_trained for a in adapters(model).values())


def merge_adapters(model: nn.Module) -> None:
    for adapter in adapters(model).values():
        adapter.merge()


def unmerge_adapters(model: nn.Module) -> None:
    for adapter in adapters(model).values():
        adapter.unmerge()


def unload_adapters(model: nn.Module, *, merge: bool = True) -> nn.Module:
    """Put the base layers back in place of the adapters (with dW merged in if ``merge``)."""
    for name, adapter in list(adapters(model).items()):
        if merge and not adapter.merged:
            adapter.merge()
        elif not merge and adapter.merged:
            adapter.unmerge()
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, adapter.base)
    return model
