"""Post-training vector quantization of Splats: k-means codebooks per attribute group.

This is CompGS without training (the paper's post-training baseline, and what
`compgs compress` does to any .ply/.splat/.spz): each group of attributes
(DC colour, SH rest, scale, rotation) is clustered with the codebook engine,
and the result is stored with the .cgs codec.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping

import torch

from compgs.codec import DEFAULT_GROUPS, CodecOptions, encode_ordered, group_vectors
from compgs.codec.cgs import field_shapes
from compgs.errors import InputError
from compgs.splats import Splats

log = logging.getLogger(__name__)

# The paper's compgs-16k sizes: colour 4096, covariance 16384.
DEFAULT_SIZES = {"dc": 4096, "sh": 4096, "scale": 16384, "rot": 16384}
# A code should stand for at least this many Gaussians on average.
MIN_MEMBERS_PER_CODE = 4


@dataclasses.dataclass
class Quantized:
    """Splats whose grouped fields equal codebook[index], with the codebooks and indices."""

    splats: Splats
    codebooks: dict[str, torch.Tensor]
    assignments: dict[str, torch.Tensor]
    groups: dict[str, tuple[str, ...]]
    clamped: dict[str, tuple[int, int]]  # group -> (asked, used) where a size was clamped


def parse_sizes(text: str) -> dict[str, int]:
    """'dc=4096,sh=4096,scale=16384,rot=16384' -> dict (names are group names)."""
    sizes = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit() or int(value) < 1:
            raise InputError(f"bad codebook size {item!r}; expected NAME=K with K >= 1")
        sizes[name.strip()] = int(value)
    return sizes


def clamp_size(k: int, n: int) -> int:
    """K for N Gaussians: at most a power of two with >= 4 members per code on average."""
    cap = 1 << max(0, int(math.floor(math.log2(max(n, 1) / MIN_MEMBERS_PER_CODE)))) if n >= 8 else 1
    return max(1, min(k, cap))


def canonical_quats(quats: torch.Tensor) -> torch.Tensor:
    """Unit quaternions with w >= 0: q and -q are one rotation, so cluster one of them."""
    q = torch.nn.functional.normalize(quats, dim=-1)
    return torch.where(q[:, :1] < 0, -q, q)


def set_group_vectors(splats: Splats, fields: tuple[str, ...], vectors: torch.Tensor) -> Splats:
    """A copy of ``splats`` with ``fields`` replaced by the columns of ``vectors``."""
    shapes = field_shapes(splats.sh_degree)
    n, start, values = splats.num_gaussians, 0, {}
    for f in fields:
        width = math.prod(shapes[f])
        values[f] = vectors[:, start : start + width].reshape(n, *shapes[f]).contiguous()
        start += width
    return dataclasses.replace(splats, **values)


def posttrain_quantize(
    splats: Splats,
    sizes: Mapping[str, int] | None = None,
    *,
    groups: Mapping[str, tuple[str, ...]] | None = None,
    iters: int = 10,
    seed: int = 0,
) -> Quantized:
    """K-means every group of ``splats`` (sizes clamped for small scenes, and reported)."""
    from compgs.vq import kmeans

    groups = dict(groups or DEFAULT_GROUPS)
    if splats.sh_degree == 0:
        groups = {name: f for name, f in groups.items() if f != ("shN",)}
        groups = {name: tuple(x for x in f if x != "shN") for name, f in groups.items()}
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    unknown = set(sizes) - set(DEFAULT_SIZES) - set(groups)
    if unknown:
        raise InputError(
            f"codebook sizes given for unknown groups {sorted(unknown)}; groups: {sorted(groups)}"
        )
    n = splats.num_gaussians
    if n == 0:
        raise InputError("cannot build codebooks for an empty set of Gaussians")
    prepared = dataclasses.replace(splats, quats=canonical_quats(splats.quats))
    out, codebooks, assignments, clamped = prepared, {}, {}, {}
    for i, (name, fields) in enumerate(groups.items()):
        k = clamp_size(sizes[name], n)
        if k != sizes[name]:
            clamped[name] = (sizes[name], k)
            log.warning(
                "codebook %r: %d codes for %d Gaussians, clamped to %d", name, sizes[name], n, k
            )
        x = group_vectors(prepared, fields).float()
        result = kmeans(x, k, iters=iters, seed=seed + i)
        codebooks[name], assignments[name] = result.centroids, result.assignments
        out = set_group_vectors(out, fields, codebooks[name][assignments[name]])
    return Quantized(out, codebooks, assignments, groups, clamped)


@dataclasses.dataclass
class Compressed:
    data: bytes  # the .cgs file
    quantized: Quantized  # in input order
    order: torch.Tensor  # Gaussian i of the file is input Gaussian order[i]


def compress_splats(
    splats: Splats,
    sizes: Mapping[str, int] | None = None,
    options: CodecOptions | None = None,
    *,
    iters: int = 10,
    seed: int = 0,
    metadata: Mapping | None = None,
) -> Compressed:
    """Post-training k-means + .cgs encoding."""
    options = options or CodecOptions()
    q = posttrain_quantize(splats, sizes, groups=options.groups, iters=iters, seed=seed)
    options = dataclasses.replace(options, groups=q.groups)
    meta = {"method": "post-training k-means", "kmeans_iters": iters, **(metadata or {})}
    data, order = encode_ordered(q.splats, q.codebooks, q.assignments, options, metadata=meta)
    return Compressed(data, q, torch.from_numpy(order))


def attribute_rmse(reference: Splats, other: Splats) -> dict[str, float]:
    """Render-free fidelity: RMSE per attribute, in the units a viewer uses.

    Positions in world units, scales in log units, rotations as unit quaternions
    up to sign, opacity and DC colour activated ([0, 1]), SH rest as stored.
    """
    if reference.num_gaussians != other.num_gaussians:
        raise InputError(
            f"cannot compare {reference.num_gaussians} with {other.num_gaussians} Gaussians"
        )

    def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(((a.double() - b.double()) ** 2).mean().sqrt()) if a.numel() else 0.0

    qa, qb = canonical_quats(reference.quats), canonical_quats(other.quats)
    return {
        "means": rmse(reference.means, other.means),
        "scales": rmse(reference.scales, other.scales),
        "quats": rmse(qa, qb),
        "opacity": rmse(reference.activated_opacities(), other.activated_opacities()),
        "color": rmse(reference.dc_colors(), other.dc_colors()),
        "shN": rmse(reference.shN, other.shN)
        if reference.sh_degree == other.sh_degree
        else float("nan"),
    }


def compress_file_default(splats: Splats, path: str | os.PathLike, **options) -> None:
    """`io.save(splats, "x.cgs")`: post-training compression with the default sizes."""
    from compgs.atomic import atomic_write_bytes

    bitq = options.pop("bitq", False)
    codec = CodecOptions.bitq() if bitq else CodecOptions()
    result = compress_splats(splats, options.pop("sizes", None), codec, **options)
    atomic_write_bytes(path, result.data)
