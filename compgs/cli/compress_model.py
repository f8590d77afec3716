"""`compgs compress-model SRC -o OUT.cgm`: k-means weight sharing of a vision backbone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import tyro


def compress_model(
    src: Annotated[str, tyro.conf.Positional],
    output: Annotated[Path, tyro.conf.arg(aliases=["-o"])],
    arch: str | None = None,
    num_classes: int | None = None,
    image_size: int | None = None,
    bits: float = 4.0,
    dim: int = 1,
    num_codes: int | None = None,
    include: tuple[str, ...] = (".*",),
    exclude: tuple[str, ...] = (),
    min_size: int = 4096,
    quantize_head: bool = False,
    share: str = "layer",
    channel_scale: bool = False,
    fold_batchnorm: bool = False,
    iters: int = 20,
    codebook_dtype: Literal["f16", "f32"] = "f16",
    float_dtype: Literal["f16", "f32"] = "f16",
    distill_images: Path | None = None,
    crops_per_image: int = 4,
    epochs: int = 1,
    lr: float = 1e-5,
    batch_size: int = 16,
    zstd_level: int = 10,
    seed: int = 0,
) -> None:
    """Compress a network's Conv/Linear weights into codebooks + bit-packed indices.

    Post-training k-means by default; with --distill-images, quantization-aware
    fine-tuning distilled from the float model on crops of those (unlabeled) images
    (the model runs in eval mode: batch norm frozen, no dropout; assignments stay
    fixed and the centroids learn).

    Args:
        src: a checkpoint path (weights-only torch file), or a model name whose
            pretrained weights are available offline (efficientnet-lite0 from its
            pip package; torchvision names only when cached in the torch hub folder).
        output: the compressed model file to write (atomically), e.g. model.cgm.
        arch: architecture of a checkpoint that does not record one (efficientnet-lite0,
            resnet18, timm:NAME, ...).
        num_classes: classifier size (default: read off the checkpoint, or 1000).
        image_size: input resolution (EfficientNet-Lite's static padding; distillation crops).
        bits: index bits per weight; K = 2^(bits x dim).
        dim: weights per codebook vector (1 = scalar).
        num_codes: K directly (overrides --bits).
        include: regexes of layer names to quantize.
        exclude: regexes of layer names to keep float.
        min_size: layers with fewer weights stay float.
        quantize_head: also quantize the classifier (last Linear).
        share: "layer", "all", or a regex whose match names a shared codebook.
        channel_scale: per-output-channel scales (one f16 per channel): clusters the
            shape of the weights, not each channel's scale; helps depthwise convolutions.
        fold_batchnorm: fold every batch norm into the convolution before it, after
            quantization (and distillation): quantized layers take the batch-norm scale
            into their per-channel scales, float ones into their weights; one bias
            vector instead of four batch-norm vectors. The file records the folding and
            loads back folded. Traced on a random probe of --image-size (default 224).
        iters: k-means iterations.
        codebook_dtype: storage of the codebooks.
        float_dtype: storage of the float leftovers (biases, batch norm, small layers).
        distill_images: folder of images for label-free distillation (optional).
        crops_per_image: random crops taken from each distillation image.
        epochs: distillation epochs.
        lr: distillation learning rate.
        batch_size: distillation batch size.
        zstd_level: per-section zstd level (0 disables it).
        seed: k-means and crop seed.
    """
    import copy
    import logging

    import torch
    from rich.console import Console
    from rich.progress import Progress

    from compgs.backbones import (
        FinetuneConfig,
        VQConfig,
        export_model,
        finetune,
        load_checkpoint,
        pretrained_model,
        quantize_model,
    )
    from compgs.backbones.fold import fold_batchnorm as fold  # the flag has the same name
    from compgs.backbones.images import image_files, load_crops
    from compgs.backbones.models import LITE
    from compgs.errors import InputError

    log = logging.getLogger(__name__)
    config = VQConfig(
        bits=bits, dim=dim, num_codes=num_codes, include=include, exclude=exclude,
        min_size=min_size, quantize_head=quantize_head, share=share,
        channel_scale=channel_scale, iters=iters, seed=seed,
    )  # fmt: skip
    name = arch or src
    options = {"num_classes": num_classes} if num_classes is not None else {}
    if image_size is not None and name in LITE:
        options["image_size"] = image_size
    path = Path(src)
    if path.exists():
        model, spec = load_checkpoint(path, arch, **options)
    elif path.suffix in (".pt", ".pth", ".bin", ".ckpt") or "/" in src:
        raise InputError(f"{src}: no such checkpoint")
    else:
        if arch is not None:
            raise InputError(f"--arch is for checkpoints; {src!r} is not a file")
        model, spec = pretrained_model(src, **options), {"name": src, "kwargs": options}
    model.eval()
    teacher = None
    if distill_images is not None:
        size = image_size or 224
        crops = load_crops(image_files(distill_images), size, crops_per_image, seed=seed)
        teacher = copy.deepcopy(model).eval()
    console = Console()
    with console.status("k-means of the selected layers ..."):
        quantize_model(model, config)
    if teacher is not None:
        log.info("distilling on %d crops of %s", crops.shape[0], distill_images)
        cfg = FinetuneConfig(epochs=epochs, batch_size=batch_size, lr=lr, distill=1.0,
                             eval_mode=True, freeze_at=0.0, seed=seed)  # fmt: skip
        with torch.no_grad():
            before = _kl(teacher, model, crops)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("distillation", total=None)

            def advance(step: int, steps: int, loss: float) -> None:
                progress.update(task, completed=step, total=steps, description=f"loss {loss:.4f}")

            finetune(model, crops, None, cfg, teacher=teacher, progress=advance)
        with torch.no_grad():
            print(f"distillation KL(float || compressed) on its crops: {before:.4g} -> "
                  f"{_kl(teacher, model, crops):.4g}")  # fmt: skip
    if fold_batchnorm:
        probe = torch.randn(2, 3, image_size or 224, image_size or 224)
        print(f"folded {len(fold(model, probe))} batch norms into their convolutions")
    result = export_model(
        model, output, codebook_dtype=codebook_dtype, float_dtype=float_dtype,
        zstd_level=zstd_level or None, arch=spec,
    )  # fmt: skip
    for line in result.report.lines(max_layers=12):
        print(line)
    print(f"{src} -> {output}: {result.report.total_bytes:,} B")


def _kl(teacher, student, images) -> float:
    import torch.nn.functional as F

    from compgs.backbones import predict

    ref = F.log_softmax(predict(teacher, images, 32), 1)
    out = F.log_softmax(predict(student, images, 32), 1)
    return float(F.kl_div(out, ref, log_target=True, reduction="batchmean"))
