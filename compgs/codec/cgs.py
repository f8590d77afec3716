"""Splats <-> `.cgs` bytes: codebooks, bit-packed indices, one run-length index.

Encoding (CompGS storage): each quantized group (e.g. DC colour, SH rest,
scale, rotation) stores a codebook [K, d] and one index per Gaussian, bit-packed
at ceil(log2 K) bits. The Gaussians are reordered by the sort-key group's index,
which is then stored as K run lengths instead of N indices; within each run
they are ordered by the Morton code of their position so that positions (and
indices that correlate with position) compress better. Positions and opacities
are stored per Gaussian at the precision chosen in `CodecOptions`.

Reading (`decode`) lives in `compgs.codec.reader`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Literal

import numpy as np
import torch

from compgs.codec import container
from compgs.codec.bitpack import bits_for, pack_bits
from compgs.codec.container import ZSTD_MAX_LEVEL, ZSTD_MIN_LEVEL
from compgs.codec.morton import morton_codes
from compgs.codec.rle import run_lengths
from compgs.codec.u8 import opacity_logit_to_u8
from compgs.errors import InputError
from compgs.splats import Splats, num_rest_coeffs

# The CompGS default: four groups, each with its own codebook.
DEFAULT_GROUPS: dict[str, tuple[str, ...]] = {
    "dc": ("sh0",),
    "sh": ("shN",),
    "scale": ("scales",),
    "rot": ("quats",),
}
QUANTIZABLE = ("sh0", "shN", "scales", "quats")
COORDINATES = "RDF: x right, y down, z forward (OpenCV/COLMAP axes, as INRIA PLY)"
FLOAT_BYTES = {"f32": 4, "f16": 2}
POSITION_BYTES = {"f32": 4, "f16": 2, "u16": 2}
OPACITY_BYTES = {"f32": 4, "f16": 2, "u8": 1}


@dataclasses.dataclass(frozen=True)
class CodecOptions:
    """How to store what is not a codebook index.

    Attributes:
        groups: quantized group name -> Splats fields whose per-Gaussian values are
            concatenated into the group's vectors (the CompGS default has 4 groups).
        positions: f32, f16, or u16 (fixed point on the stored bounding box).
        opacities: f32 (logit), f16 (logit) or u8 (of the activated opacity).
        codebooks: f32 or f16 storage of codebooks and of non-quantized fields.
        sort_key: the group whose index is run-length coded; None picks the group
            with the most bits (it saves the most).
        morton_within_runs: order Gaussians within a run by Morton code of position.
        zstd_level: level of the per-section zstd stage (kept only where it helps);
            None disables it.
    """

    groups: Mapping[str, tuple[str, ...]] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_GROUPS)
    )
    positions: Literal["f32", "f16", "u16"] = "f32"
    opacities: Literal["f32", "f16", "u8"] = "f32"
    codebooks: Literal["f32", "f16"] = "f32"
    sort_key: str | None = None
    morton_within_runs: bool = True
    zstd_level: int | None = 19

    def __post_init__(self):
        # Checked here, before minutes of k-means, rather than when the file is written.
        if self.sort_key is not None and self.sort_key not in self.groups:
            raise InputError(
                f"sort key {self.sort_key!r} is not a quantized group ({', '.join(self.groups)})"
            )
        if self.zstd_level is not None and not ZSTD_MIN_LEVEL <= self.zstd_level <= ZSTD_MAX_LEVEL:
            raise InputError(
                f"zstd level {self.zstd_level} is outside {ZSTD_MIN_LEVEL}..{ZSTD_MAX_LEVEL}"
            )

    @staticmethod
    def bitq(**overrides) -> CodecOptions:
        """The paper's BitQ: 16-bit positions and 8-bit opacity (and half codebooks)."""
        base = {"positions": "f16", "opacities": "u8", "codebooks": "f16"}
        return CodecOptions(**{**base, **overrides})


def field_shapes(sh_degree: int) -> dict[str, tuple[int, ...]]:
    """Per-Gaussian shape of every Splats field."""
    return {
        "means": (3,),
        "quats": (4,),
        "scales": (3,),
        "opacities": (),
        "sh0": (1, 3),
        "shN": (num_rest_coeffs(sh_degree), 3),
    }


def group_vectors(splats: Splats, fields: tuple[str, ...]) -> torch.Tensor:
    """[N, d]: the named fields of every Gaussian, flattened and concatenated."""
    n = splats.num_gaussians
    return torch.cat([getattr(splats, f).reshape(n, -1) for f in fields], dim=1)


# --- encoding ---------------------------------------------------------------------


def _check_groups(splats: Splats, codebooks, assignments, options: CodecOptions) -> list[dict]:
    n, shapes = splats.num_gaussians, field_shapes(splats.sh_degree)
    seen: set[str] = set()
    groups = []
    for name, fields in options.groups.items():
        if name not in codebooks or name not in assignments:
            raise InputError(f"group {name!r} needs a codebook and assignments")
        bad = [f for f in fields if f not in QUANTIZABLE or f in seen]
        if bad or not fields:
            raise InputError(f"group {name!r}: fields {bad or fields} cannot be quantized here")
        seen.update(fields)
        dim = sum(math.prod(shapes[f]) for f in fields)
        cb, idx = codebooks[name], assignments[name]
        if cb.ndim != 2 or cb.shape[1] != dim or cb.shape[0] < 1:
            raise InputError(f"group {name!r}: codebook must be [K, {dim}], got {list(cb.shape)}")
        if idx.shape != (n,):
            raise InputError(f"group {name!r}: assignments must be [{n}], got {list(idx.shape)}")
        if n and (int(idx.min()) < 0 or int(idx.max()) >= cb.shape[0]):
            raise InputError(f"group {name!r}: assignments outside [0, {cb.shape[0]})")
        if len(name.encode()) > 12:
            raise InputError(f"group name {name!r} is longer than 12 bytes")
        groups.append({"name": name, "fields": list(fields), "k": int(cb.shape[0]), "dim": dim})
    return groups


def _float_bytes(values: np.ndarray, encoding: str, what: str) -> bytes:
    out = values.astype("<f4" if encoding == "f32" else "<f2")
    if not np.isfinite(out).all():
        raise InputError(f"{what} overflows {encoding}; store it as f32")
    return out.tobytes()


def encode(
    splats: Splats,
    codebooks: Mapping[str, torch.Tensor],
    assignments: Mapping[str, torch.Tensor],
    options: CodecOptions | None = None,
    *,
    metadata: Mapping | None = None,
) -> bytes:
    """The .cgs bytes of ``splats`` whose grouped fields are ``codebooks[g][assignments[g]]``.

    Only positions, opacities and fields outside every group are read from
    ``splats``; quantized fields are represented by their codebook and indices.
    ``metadata`` (method, config, ...) is stored in the JSON block.
    """
    return encode_ordered(splats, codebooks, assignments, options, metadata=metadata)[0]


def encode_ordered(
    splats: Splats,
    codebooks: Mapping[str, torch.Tensor],
    assignments: Mapping[str, torch.Tensor],
    options: CodecOptions | None = None,
    *,
    metadata: Mapping | None = None,
) -> tuple[bytes, np.ndarray]:
    """`encode`, plus the stored order: Gaussian i of the file is input Gaussian order[i]."""
    from compgs import __version__

    options = options or CodecOptions()
    n = splats.num_gaussians
    groups = _check_groups(splats, codebooks, assignments, options)
    idx = {
        g["name"]: assignments[g["name"]].detach().cpu().numpy().astype(np.int64) for g in groups
    }
    for g in groups:
        g["bits"] = bits_for(g["k"])
    sort_key = options.sort_key
    if sort_key is None and groups:
        sort_key = max(groups, key=lambda g: g["bits"])["name"]
    if sort_key is not None and sort_key not in idx:
        raise InputError(f"sort key {sort_key!r} is not one of the groups {list(idx)}")

    means = splats.means.detach().cpu().numpy().astype(np.float64)
    secondary = morton_codes(means) if options.morton_within_runs else np.zeros(n, np.uint64)
    primary = idx[sort_key] if sort_key else np.zeros(n, np.int64)
    order = np.lexsort((secondary, primary))

    sections: dict[str, bytes] = {}
    meta = {
        "format": "cgs",
        "version": container.VERSION,
        "creator": f"compgs {__version__}",
        "num_gaussians": n,
        "sh_degree": splats.sh_degree,
        "coordinates": COORDINATES,
        "sort_key": sort_key,
        "order_within_runs": "morton" if options.morton_within_runs else "none",
        "positions": {"encoding": options.positions},
        "opacities": {"encoding": options.opacities},
        "groups": groups,
        "raw_fields": [],
        **({"metadata": dict(metadata)} if metadata else {}),
    }

    means = means[order]
    if options.positions == "u16":
        lo, hi = (means.min(axis=0), means.max(axis=0)) if n else (np.zeros(3), np.zeros(3))
        # float32 bounds round outward so every position stays inside the box
        lo = np.nextafter(lo.astype(np.float32), np.float32(-np.inf)).astype(np.float64)
        hi = np.nextafter(hi.astype(np.float32), np.float32(np.inf)).astype(np.float64)
        span = np.where(hi > lo, hi - lo, 1.0)
        q = np.clip(np.round((means - lo) / span * 65535.0), 0, 65535).astype("<u2")
        meta["positions"]["bbox"] = [lo.tolist(), hi.tolist()]
        sections["means"] = q.tobytes()
    else:
        sections["means"] = _float_bytes(means, options.positions, "a position")

    logits = splats.opacities.detach().cpu().numpy()[order]
    if options.opacities == "u8":
        sections["opacities"] = opacity_logit_to_u8(logits).tobytes()
    else:
        sections["opacities"] = _float_bytes(logits, options.opacities, "an opacity logit")

    for g in groups:
        name = g["name"]
        g["codebook"] = options.codebooks
        cb = codebooks[name].detach().cpu().numpy()
        sections[f"cb.{name}"] = _float_bytes(cb, options.codebooks, f"codebook {name!r}")
        sorted_idx = idx[name][order]
        if name == sort_key:
            counts = run_lengths(sorted_idx, g["k"])
            g["index"] = "runs"
            g["count_bits"] = bits_for(int(counts.max()) + 1) if n else 0
            sections[f"rle.{name}"] = pack_bits(counts, g["count_bits"])
        else:
            g["index"] = "packed"
            sections[f"idx.{name}"] = pack_bits(sorted_idx, g["bits"])

    grouped = {f for g in groups for f in g["fields"]}
    for field in QUANTIZABLE:
        if field in grouped or (field == "shN" and splats.sh_degree == 0):
            continue
        values = getattr(splats, field).detach().cpu().numpy()[order].reshape(n, -1)
        meta["raw_fields"].append({"field": field, "encoding": options.codebooks})
        sections[f"raw.{field}"] = _float_bytes(values, options.codebooks, f"field {field!r}")

    sections = {"meta": json.dumps(meta, separators=(",", ":")).encode(), **sections}
    widths = _element_widths(meta)
    return container.pack_container(n, sections, options.zstd_level, widths), order


def _element_widths(meta: dict) -> dict[str, int]:
    """Bytes per number of every section of numbers (for the container's byte shuffle)."""
    widths = {
        "means": POSITION_BYTES[meta["positions"]["encoding"]],
        "opacities": OPACITY_BYTES[meta["opacities"]["encoding"]],
    }
    for g in meta["groups"]:
        widths[f"cb.{g['name']}"] = FLOAT_BYTES[g["codebook"]]
    for r in meta["raw_fields"]:
        widths[f"raw.{r['field']}"] = FLOAT_BYTES[r["encoding"]]
    return widths
