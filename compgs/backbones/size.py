"""Size report of an exported model: per layer and total, in bytes and bits per weight.

Per-layer numbers are the raw (pre-zstd) payloads; the totals are the bytes
the file actually stores per section, so ``total_bytes`` is the file size.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from compgs.backbones.quantize import VQWeight


@dataclasses.dataclass(frozen=True)
class LayerSize:
    """One quantized layer: its index bytes and its share of its group's codebook."""

    name: str
    shape: tuple[int, ...]
    params: int
    group: str
    num_codes: int
    dim: int
    index_bytes: int
    codebook_bytes: float  # share of the group's codebook, by number of vectors
    scale_bytes: int = 0  # per-channel scales (channel_scale)

    @classmethod
    def of(cls, name, shape, vq: VQWeight, index_bytes: int, codebook_bytes: float, scale_bytes=0):
        params = vq.count * vq.book.dim
        return cls(name, tuple(shape), params, vq.group, vq.book.num_codes, vq.book.dim,
                   index_bytes, codebook_bytes, scale_bytes)  # fmt: skip

    @property
    def bits_per_weight(self) -> float:
        return 8 * (self.index_bytes + self.codebook_bytes + self.scale_bytes) / self.params


@dataclasses.dataclass(frozen=True)
class SizeReport:
    """Sizes of one exported model.

    Attributes:
        layers: the quantized layers.
        params: every stored value (weights, biases, batch-norm statistics, ...).
        float32_bytes: the same state in float32 (integers at their own size).
        sections: stored bytes of every container section (meta, codebooks, indices,
            scales, tensors).
        header_bytes: the container header and section table.
        total_bytes: the file size: header_bytes + sum(sections).
        leftovers: raw (pre-zstd) bytes of the float leftovers by kind (see
            `compgs.backbones.layout.leftover_kinds`); they add up to the raw
            ``tensors`` section, which zstd may then shrink.
    """

    layers: list[LayerSize]
    params: int
    float32_bytes: int
    sections: dict[str, int]
    header_bytes: int
    total_bytes: int
    leftovers: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def quantized_params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def ratio(self) -> float:
        """Compression ratio against the float32 model."""
        return self.float32_bytes / self.total_bytes

    @property
    def bits_per_weight(self) -> float:
        """File bits per stored value (everything counted)."""
        return 8 * self.total_bytes / self.params

    @property
    def quantized_bits_per_weight(self) -> float:
        """(indices + codebooks + scales) bits per weight of the quantized layers."""
        stored = sum(self.sections.get(k, 0) for k in ("indices", "codebooks", "scales"))
        return 8 * stored / max(self.quantized_params, 1)

    def categories(self) -> dict[str, int]:
        """Bytes by kind; they add up to ``total_bytes``."""
        return {
            "indices": self.sections.get("indices", 0),
            "codebooks": self.sections.get("codebooks", 0),
            "channel scales": self.sections.get("scales", 0),
            "float leftovers": self.sections.get("tensors", 0),
            "metadata": self.sections.get("meta", 0) + self.header_bytes,
        }

    def to_dict(self) -> dict:
        return {
            "total_bytes": self.total_bytes,
            "float32_bytes": self.float32_bytes,
            "ratio": self.ratio,
            "params": self.params,
            "quantized_params": self.quantized_params,
            "bits_per_weight": self.bits_per_weight,
            "quantized_bits_per_weight": self.quantized_bits_per_weight,
            "categories": self.categories(),
            "leftovers": dict(self.leftovers),
            "layers": [
                dataclasses.asdict(layer) | {"bits_per_weight": layer.bits_per_weight}
                for layer in self.layers
            ],
        }

    def lines(self, max_layers: int | None = None) -> list[str]:
        """A plain-text table: one line per layer, then the totals."""
        out = [f"{'layer':<34} {'shape':<20} {'params':>9} {'K':>6} {'d':>2} {'bits/w':>7}"]
        shown = self.layers if max_layers is None else self.layers[:max_layers]
        for layer in shown:
            shape = "x".join(map(str, layer.shape))
            out.append(
                f"{layer.name[-34:]:<34} {shape:<20} {layer.params:>9,} {layer.num_codes:>6} "
                f"{layer.dim:>2} {layer.bits_per_weight:>7.3f}"
            )
        if len(shown) < len(self.layers):
            out.append(f"... {len(self.layers) - len(shown)} more quantized layers")
        for name, size in self.categories().items():
            out.append(f"{name:<16} {size:>12,} B")
            if name == "float leftovers":
                out += [f"  {k:<22} {v:>8,} B raw" for k, v in self.leftovers.items()]
        out.append(
            f"{'total':<16} {self.total_bytes:>12,} B  ({self.bits_per_weight:.3f} bits per value, "
            f"{self.ratio:.2f}x smaller than float32 {self.float32_bytes:,} B; quantized layers "
            f"{self.quantized_bits_per_weight:.3f} bits/weight)"
        )
        return out


def float_bytes(state: dict[str, torch.Tensor]) -> int:
    """Bytes of ``state`` with floating tensors as float32, others at their own size."""
    return sum(
        t.numel() * (4 if t.is_floating_point() else t.element_size()) for t in state.values()
    )
