"""`VQConfig`: which layers of a network get codebooks, and what kind.

Scalar weight sharing is ``dim=1`` (K = 2^bits levels per codebook); vector
weight sharing groups ``dim`` consecutive weights along the input dimension
into one vector and gives the codebook K = 2^(bits x dim) codes, so the index
costs ``bits`` per weight either way (plus the codebook itself, which the size
report counts).
"""

from __future__ import annotations

import dataclasses
import math
import re

from compgs.errors import InputError

MAX_CODES = 1 << 16


@dataclasses.dataclass(frozen=True)
class VQConfig:
    """How `quantize_model` replaces weights by codebook lookups.

    Attributes:
        bits: index bits per weight; K = 2^(bits x dim) must be a whole number.
        dim: d, weights per vector (1 = scalar k-means, 2..8 = vector).
        num_codes: K given directly (overrides ``bits``).
        include: regexes (re.search) on module names; a layer is a candidate when
            one matches. Every pattern must match at least one Conv2d/Linear layer.
        exclude: regexes removing candidates (each must match some layer too).
        min_size: layers with fewer weights stay float (stems, depthwise convs of
            early blocks: their bytes are negligible and their error is not).
        quantize_head: also quantize the classifier (the last nn.Linear).
        share: "layer" (one codebook per layer), "all" (one for every selected
            layer), or a regex: layers whose names give the same match (its first
            group when it has one) share a codebook, others keep their own.
        channel_scale: divide every output channel by its RMS before clustering
            and multiply it back after the lookup (one half-precision scale per
            output channel is stored). Codebooks then fit the shape of the
            weights, not the scale of each channel: this matters for networks
            whose channels differ wildly in scale (depthwise convolutions of
            MobileNet / EfficientNet), like per-channel scalar quantization.
        iters: Lloyd iterations of the post-training k-means.
        seed: k-means seed.
    """

    bits: float = 4.0
    dim: int = 1
    num_codes: int | None = None
    include: tuple[str, ...] = (".*",)
    exclude: tuple[str, ...] = ()
    min_size: int = 4096
    quantize_head: bool = False
    share: str = "layer"
    channel_scale: bool = False
    iters: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.dim, bool) or not isinstance(self.dim, int) or not 1 <= self.dim <= 16:
            raise InputError(f"dim must be an int in [1, 16], got {self.dim!r}")
        if self.num_codes is not None:
            k = self.num_codes
            if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_CODES:
                raise InputError(f"num_codes must be an int in [1, {MAX_CODES}], got {k!r}")
        else:
            total = self.bits * self.dim
            if not isinstance(self.bits, (int, float)) or self.bits <= 0:
                raise InputError(f"bits must be a positive number, got {self.bits!r}")
            if abs(total - round(total)) > 1e-9 or not 1 <= round(total) <= 16:
                raise InputError(
                    f"bits x dim must be a whole number of index bits in [1, 16], "
                    f"got {self.bits} x {self.dim} = {total:g}"
                )
        if (
            isinstance(self.min_size, bool)
            or not isinstance(self.min_size, int)
            or self.min_size < 0
        ):
            raise InputError(f"min_size must be an int >= 0, got {self.min_size!r}")
        if isinstance(self.iters, bool) or not isinstance(self.iters, int) or self.iters < 0:
            raise InputError(f"iters must be an int >= 0, got {self.iters!r}")
        for pattern in (*self.include, *self.exclude) + (
            () if self.share in ("layer", "all") else (self.share,)
        ):
            try:
                re.compile(pattern)
            except re.error as e:
                raise InputError(f"bad layer pattern {pattern!r}: {e}") from None

    @property
    def codes(self) -> int:
        """K, the number of codes of every codebook."""
        if self.num_codes is not None:
            return self.num_codes
        return 2 ** round(self.bits * self.dim)

    @property
    def index_bits(self) -> int:
        """Bits of one stored index: ceil(log2 K)."""
        return math.ceil(math.log2(self.codes)) if self.codes > 1 else 0

    def group_of(self, name: str) -> str:
        """The codebook a selected layer belongs to (see ``share``)."""
        if self.share == "layer":
            return name
        if self.share == "all":
            return "all"
        match = re.search(self.share, name)
        if match is None:
            return name
        return match.group(1) if match.groups() and match.group(1) is not None else match.group(0)
