"""Compression of vision backbones with the codebook engine (`compgs.vq`).

k-means weight sharing (scalar or vector codebooks) of chosen Conv/Linear
layers, quantization-aware fine-tuning with the straight-through estimator
(optionally distilled from the float model on unlabeled images), export to
the project's container with bit-packed indices, and loading back.

    from compgs.backbones import VQConfig, quantize_model, finetune, export_model, load_model

    quantize_model(model, VQConfig(bits=2, dim=4))       # post-training k-means
    finetune(model, images, labels, FinetuneConfig())    # QAT (optional)
    result = export_model(model, "model.cgm")            # result.report: sizes
    restored = load_model("model.cgm", float_model)
"""

from compgs.backbones.config import VQConfig
from compgs.backbones.export import ExportResult, export_model, load_model, read_meta
from compgs.backbones.finetune import (
    FinetuneConfig,
    accuracy,
    finetune,
    predict,
    recalibrate_batchnorm,
)
from compgs.backbones.fold import conv_bn_pairs, fold_batchnorm, strip_batchnorm
from compgs.backbones.layout import select_layers, vectors_to_weight, weight_to_vectors
from compgs.backbones.models import (
    build_model,
    load_checkpoint,
    pretrained_model,
    register_architecture,
    save_checkpoint,
)
from compgs.backbones.quantize import (
    CodebookGroup,
    VQWeight,
    codebook_groups,
    materialize,
    qat_step,
    quantize_model,
    quantized_layers,
)
from compgs.backbones.size import LayerSize, SizeReport

__all__ = [
    "CodebookGroup",
    "ExportResult",
    "FinetuneConfig",
    "LayerSize",
    "SizeReport",
    "VQConfig",
    "VQWeight",
    "accuracy",
    "build_model",
    "codebook_groups",
    "conv_bn_pairs",
    "export_model",
    "finetune",
    "fold_batchnorm",
    "load_checkpoint",
    "load_model",
    "materialize",
    "predict",
    "pretrained_model",
    "qat_step",
    "quantize_model",
    "quantized_layers",
    "read_meta",
    "recalibrate_batchnorm",
    "register_architecture",
    "save_checkpoint",
    "select_layers",
    "strip_batchnorm",
    "vectors_to_weight",
    "weight_to_vectors",
]
