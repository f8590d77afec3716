"""Fold batch norm into the convolution before it (the standard deployment step).

In eval mode ``bn(conv(x)) = s * (w * x + b - mean) + beta`` with
``s = gamma / sqrt(var + eps)`` per output channel, i.e. one convolution with
weight ``s * w`` and bias ``s * (b - mean) + beta``. Folding before
quantization (Jacob et al. 2018; Krishnamoorthi 2018) means the codebooks
hold the weights the deployed network multiplies by, and a batch norm's four
vectors (gamma, beta, mean, var) become one bias vector.

A quantized convolution (`quantize_model`, e.g. after quantization-aware
training with its batch norm in place) folds too: ``s`` goes into the
per-output-channel scale of its `VQWeight` (weight = scale x codebook
value), so the codebooks and indices stay as they are and the file stores
one scale and one bias per channel instead of four batch-norm vectors.

Pairs are found from the data flow, not from names: a batch norm whose input
is the very tensor a convolution returned on a probe input. `fold_batchnorm`
then checks on the probe that the folded network computes what the original
did, so a convolution whose output also feeds something else (which folding
would change) is refused, not silently broken.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from compgs.backbones.quantize import VQWeight
from compgs.errors import InputError

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
Pair = tuple[str, str]
# The pairs a model has had folded, kept on the model (like PEFT's peft_config) so that
# export records them and a loaded model exports to the same bytes.
ATTR = "compgs_folded_batchnorm"


def folded_pairs(model: nn.Module) -> list[Pair]:
    """The (conv, batch norm) pairs folded into ``model`` so far, in folding order."""
    return list(getattr(model, ATTR, []))


def conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[Pair]:
    """(conv name, batch-norm name) of every batch norm fed directly by a convolution.

    Batch norms without running statistics are left out (nothing fixed to fold).
    """
    outputs: dict[int, str] = {}
    pairs: list[Pair] = []
    names = {m: n for n, m in model.named_modules()}

    def after_conv(module, _args, out):
        outputs[id(out)] = names[module]

    def before_bn(module, args):
        conv = outputs.get(id(args[0]))
        if conv is not None and module.track_running_stats and (conv, names[module]) not in pairs:
            pairs.append((conv, names[module]))

    hooks = []
    for module in model.modules():
        if isinstance(module, CONVS):
            hooks.append(module.register_forward_hook(after_conv))
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            hooks.append(module.register_forward_pre_hook(before_bn))
    was_training = model.training
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return pairs


def fold_batchnorm(model: nn.Module, example: torch.Tensor, atol: float = 1e-4) -> list[Pair]:
    """Fold every conv -> batch-norm pair of ``model`` in place; returns the pairs.

    ``example``: a probe input (a batch of the shape the model takes). Each
    folded batch norm becomes an ``nn.Identity`` and its convolution gets a
    bias; a quantized convolution gets the batch norm's scale in its channel
    scales (see the module doc). Raises InputError when the folded model's
    eval-mode outputs on ``example`` differ from the original's by more than
    ``atol`` relative to their scale.
    """
    pairs = conv_bn_pairs(model, example)
    if not pairs:
        return pairs
    was_training = model.training
    model.eval()
    with torch.no_grad():
        before = model(example)
        modules = dict(model.named_modules())
        folded = {c: _folded(modules[c], modules[b]) for c, b in pairs}
        strip_batchnorm(model, pairs)
        for conv, (scale, bias) in folded.items():
            _scale_weight(modules[conv], scale)
            modules[conv].bias.copy_(bias.to(modules[conv].bias.dtype))
        after = model(example)
    model.train(was_training)
    error = float((after - before).abs().max()) / max(float(before.abs().max()), 1e-12)
    if not error <= atol:
        raise InputError(
            f"folding batch norm changed the outputs (relative error {error:.2g}): "
            "a convolution's output feeds more than its batch norm"
        )
    return pairs


def strip_batchnorm(model: nn.Module, pairs: list[Pair]) -> nn.Module:
    """The folded architecture without the values: each pair's batch norm becomes
    ``nn.Identity`` and its convolution gets a (zero) bias when it has none.
    In place; returns the model. Used to load a folded model's state."""
    modules = dict(model.named_modules())
    for conv_name, bn_name in pairs:
        conv, bn = modules.get(conv_name), modules.get(bn_name)
        if not isinstance(conv, CONVS) or not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            raise InputError(
                f"{conv_name!r} -> {bn_name!r} is not a convolution -> batch norm pair"
            )
        if conv.bias is None:
            conv.bias = nn.Parameter(conv.weight.new_zeros(conv.out_channels))
        parent, _, attr = bn_name.rpartition(".")
        setattr(modules[parent] if parent else model, attr, nn.Identity())
    setattr(model, ATTR, folded_pairs(model) + [(c, b) for c, b in pairs])
    return model


def _folded(conv: nn.Module, bn: nn.modules.batchnorm._BatchNorm):
    """(s, bias) in float64: ``bn(conv(x))`` is the convolution with weight s x w and that bias."""
    var, mean = bn.running_var.double(), bn.running_mean.double()
    gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(var)
    beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(var)
    scale = gamma / torch.sqrt(var + bn.eps)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(var)
    return scale, scale * (bias - mean) + beta


def _scale_weight(conv: nn.Module, scale: torch.Tensor) -> None:
    """Multiply output channel c of ``conv``'s weight by scale[c]: the weight itself, or
    for a quantized layer its `VQWeight` channel scales (and its float shadow, which
    QAT compares with the codebook in scaled units)."""
    if not parametrize.is_parametrized(conv, "weight"):
        per = scale.reshape(-1, *([1] * (conv.weight.dim() - 1)))
        conv.weight.copy_((conv.weight.double() * per).to(conv.weight.dtype))
        return
    vq = conv.parametrizations.weight[0]
    if not isinstance(vq, VQWeight):
        raise InputError(f"cannot fold into a weight with parametrization {type(vq).__name__}")
    old = vq.scale.double() if vq.scale is not None else torch.ones_like(scale)
    new = old * scale
    # A channel that batch norm zeroes: keep it zero without a zero scale (QAT divides by it).
    tiny = torch.finfo(torch.float16).tiny
    new = torch.where(new == 0, torch.full_like(new, tiny), new)
    shadow = conv.parametrizations.weight.original
    per = (new / old).reshape(-1, *([1] * (shadow.dim() - 1)))
    shadow.copy_((shadow.double() * per).to(shadow.dtype))
    vq.scale = new.to(shadow.dtype)  # exact here; export rounds it to the stored f16
