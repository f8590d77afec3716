"""Quantization-aware fine-tuning, batch-norm recalibration and batched prediction.

The loop is deliberately small: tensors in memory (CPU-sized experiments),
one optimizer over every trainable parameter (the shadow weights of quantized
layers included), and after every optimizer step one `qat_step` driven by a
`compgs.vq.QATSchedule`. With a ``teacher`` (the float model) the loss mixes
cross-entropy on labels with the distillation loss of Hinton et al. (2015);
without labels it is pure distillation, so unlabeled images suffice.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from compgs.backbones.quantize import qat_step, quantized_layers
from compgs.errors import InputError
from compgs.vq import QATSchedule

log = logging.getLogger(__name__)

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Attributes:
    epochs: passes over the images.
    batch_size: images per step.
    lr: learning rate.
    optimizer: "adam" or "sgd" (momentum 0.9).
    weight_decay: decoupled weight decay (AdamW) / L2 (SGD).
    assign_every: re-assign the codebooks every this many steps.
    freeze_at: fraction of the steps after which assignments stay fixed
        (the centroids still follow their members); None: never.
    distill: weight of the distillation loss in [0, 1] (needs a teacher);
        without labels the loss is distillation only.
    temperature: softmax temperature of the distillation loss.
    freeze_bn: keep batch-norm statistics fixed (eval mode), e.g. when the
        images are few or unlike the model's training data.
    eval_mode: run the whole model in eval mode while training it (batch norm
        frozen, no dropout, no stochastic depth): the student is then the same
        deterministic function as at inference, which suits distilling a
        backbone from its float original on a few unlabeled images (there,
        freeze_at=0 -- fixed assignments, learnt centroids -- is the stable
        choice: frozen batch norm cannot absorb a re-assignment).
    seed: shuffling seed.
    """

    epochs: int = 1
    batch_size: int = 64
    lr: float = 1e-4
    optimizer: Literal["adam", "sgd"] = "adam"
    weight_decay: float = 0.0
    assign_every: int = 50
    freeze_at: float | None = 0.8
    distill: float = 0.0
    temperature: float = 1.0
    freeze_bn: bool = False
    eval_mode: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.assign_every < 1:
            raise InputError("epochs, batch_size and assign_every must be >= 1")
        if not self.lr > 0:
            raise InputError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.distill <= 1.0:
            raise InputError(f"distill must be in [0, 1], got {self.distill}")
        if self.freeze_at is not None and not 0.0 <= self.freeze_at <= 1.0:
            raise InputError(f"freeze_at must be None or in [0, 1], got {self.freeze_at}")
        if self.optimizer not in ("adam", "sgd"):
            raise InputError(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")


def finetune(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor | None,
    config: FinetuneConfig,
    *,
    teacher: nn.Module | None = None,
    transform: Transform | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> list[float]:
    """Train ``model`` in place on ``images`` [N, C, H, W] (and ``labels`` [N]).

    A quantized model (`quantize_model`) gets quantization-aware training: the
    forward pass uses its codebooks, and after each optimizer step the
    codebooks follow the shadow weights per the schedule. A float model is
    simply fine-tuned. ``transform(batch, generator)`` augments each batch;
    ``progress(step, steps, loss)`` is called after every step. Returns the
    loss of every step.
    """
    if labels is None and (teacher is None or config.distill == 0.0):
        raise InputError("finetune without labels needs a teacher and distill > 0")
    if labels is not None and labels.shape[0] != images.shape[0]:
        raise InputError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    n = images.shape[0]
    per_epoch = (n + config.batch_size - 1) // config.batch_size
    steps = per_epoch * config.epochs
    freeze = None if config.freeze_at is None else round(config.freeze_at * steps)
    # Step 0 is the k-means fit quantize_model already did: the loop asks for steps 1..steps.
    schedule = QATSchedule(start=0, assign_every=config.assign_every, freeze=freeze)
    quantized = bool(quantized_layers(model))
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    gen = torch.Generator().manual_seed(config.seed)
    if teacher is not None:
        teacher.eval()
    losses: list[float] = []
    step = 0
    for _ in range(config.epochs):
        order = torch.randperm(n, generator=gen)
        for start in range(0, n, config.batch_size):
            idx = order[start : start + config.batch_size]
            x = images[idx]
            if transform is not None:
                x = transform(x, gen)
            _train_mode(model, config)
            logits = model(x)
            loss = _loss(logits, None if labels is None else labels[idx], x, teacher, config)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if quantized:
                qat_step(model, schedule.step(step))
            losses.append(loss.item())
            if progress is not None:
                progress(step, steps, losses[-1])
    model.eval()
    return losses


def _train_mode(model: nn.Module, config: FinetuneConfig) -> None:
    model.train(not config.eval_mode)
    if config.freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def _loss(
    logits: torch.Tensor,
    labels: torch.Tensor | None,
    x: torch.Tensor,
    teacher: nn.Module | None,
    config: FinetuneConfig,
) -> torch.Tensor:
    ce = F.cross_entropy(logits, labels) if labels is not None else None
    if teacher is None or config.distill == 0.0:
        assert ce is not None
        return ce
    with torch.no_grad():
        target = teacher(x)
    t = config.temperature
    kd = F.kl_div(
        F.log_softmax(logits / t, dim=1), F.log_softmax(target / t, dim=1),
        reduction="batchmean", log_target=True,
    ) * (t * t)  # fmt: skip
    if ce is None:
        return kd
    return (1.0 - config.distill) * ce + config.distill * kd


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> None:
    """Re-estimate batch-norm running statistics of ``model`` on ``images``.

    Cheap post-training repair: quantized weights shift every channel's mean
    and variance, the stored statistics no longer fit. Cumulative averages
    over all images (momentum None), then eval mode.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for start in range(0, images.shape[0], batch_size):
        model(images[start : start + batch_size])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    model.eval()


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """Logits of ``model`` (eval mode) on ``images``, batched: [N, classes]."""
    model.eval()
    return torch.cat(
        [model(images[s : s + batch_size]) for s in range(0, images.shape[0], batch_size)]
    )


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in [0, 1]."""
    return float((predict(model, images).argmax(1) == labels).float().mean())
