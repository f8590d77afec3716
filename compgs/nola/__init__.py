"""NOLA: LoRA whose factors are mixtures of seeded random matrices, with quantized coefficients.

After Koohpayegani, Navaneet, Nooralinejad, Kolouri, Pirsiavash, "NOLA: Compressing
LoRA using Linear Combination of Random Basis", ICLR 2024. See docs/nola.md.

    from compgs.nola import apply_nola, QuantSpec, save_nola, load_nola

    coefficients = apply_nola(model, ["qkv", "proj"], rank=4, k=64, l=64, seed=0)
    ...train the coefficients...
    size = save_nola("task.nola", model, QuantSpec(bits=4))   # bytes on disk
    load_nola("task.nola", fresh_base_model)                  # adapters re-created
"""

from compgs.nola.checkpoint import (
    NOLACheckpoint,
    decode_nola,
    encode_nola,
    load_nola,
    read_nola,
    save_nola,
)
from compgs.nola.generator import basis, uniform
from compgs.nola.inject import (
    adapters,
    apply_lora,
    apply_nola,
    count_trained,
    find_targets,
    merge_adapters,
    trainable_coefficients,
    unload_adapters,
    unmerge_adapters,
    wrap_layer,
)
from compgs.nola.layers import Adapter, LoRAAdapter, NOLAAdapter, NOLAConv2d, NOLALinear
from compgs.nola.quant import (
    CoefficientCodes,
    CoefficientQAT,
    GroupCodes,
    QuantSpec,
    coefficient_state,
    load_coefficients,
    quantize_coefficients,
)
from compgs.nola.views import MatrixView, matrix_view, nearly_square

__all__ = [
    "Adapter",
    "CoefficientCodes",
    "CoefficientQAT",
    "GroupCodes",
    "LoRAAdapter",
    "MatrixView",
    "NOLAAdapter",
    "NOLACheckpoint",
    "NOLAConv2d",
    "NOLALinear",
    "QuantSpec",
    "adapters",
    "apply_lora",
    "apply_nola",
    "basis",
    "coefficient_state",
    "count_trained",
    "decode_nola",
    "encode_nola",
    "find_targets",
    "load_coefficients",
    "load_nola",
    "matrix_view",
    "merge_adapters",
    "nearly_square",
    "quantize_coefficients",
    "read_nola",
    "save_nola",
    "trainable_coefficients",
    "uniform",
    "unload_adapters",
    "unmerge_adapters",
    "wrap_layer",
]
