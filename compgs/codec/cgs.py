"""Splats <-> `.cgs` bytes: codebooks, bit-packed indices, one run-length index.

Encoding (CompGS storage): each quantized group (e.g. DC colour, SH rest,
scale, rotation) stores a codebook [K, d] and one index per Gaussian, bit-packed
at ceil(log2 K) bits. The Gaussians are reordered by the sort-key group's index,
which is then stored as K run lengths instead of N indices; within each run
they are ordered by the Morton code of their position so that positions (and
indices that correlate with position) compress better. Positions and opacities
are stored per Gaussian at the precision chosen in `CodecOptions`.
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
from compgs.codec.bitpack import bits_for, pack_bits, packed_size, unpack_bits
from compgs.codec.container import ZSTD_MAX_LEVEL, ZSTD_MIN_LEVEL
from compgs.codec.morton import morton_codes
from compgs.codec.rle import expand_runs, run_lengths
from compgs.codec.u8 import opacity_logit_to_u8, u8_to_opacity_logit
from compgs.errors import CorruptFileError, InputError
from compgs.splats import FIELDS, Splats, num_rest_coeffs

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


@dataclasses.dataclass
class CompressedSplats:
    """A decoded .cgs file before codebook gathers: what the file holds, as tensors."""

    num_gaussians: int
    sh_degree: int
    meta: dict
    codebooks: dict[str, torch.Tensor]  # group -> [K, d] float32
    indices: dict[str, torch.Tensor]  # group -> [N] int64 (the sort key expanded from runs)
    means: torch.Tensor
    opacities: torch.Tensor
    raw_fields: dict[str, torch.Tensor]  # non-quantized fields, [N, ...]

    def to_splats(self) -> Splats:
        n = self.num_gaussians
        shapes = field_shapes(self.sh_degree)
        fields = {"means": self.means, "opacities": self.opacities, **self.raw_fields}
        for group in self.meta["groups"]:
            vectors = self.codebooks[group["name"]][self.indices[group["name"]]]
            start = 0
            for name in group["fields"]:
                width = math.prod(shapes[name])
                fields[name] = vectors[:, start : start + width].reshape(n, *shapes[name])
                start += width
        return Splats(**{name: fields[name].contiguous() for name in FIELDS})


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


# --- decoding ---------------------------------------------------------------------


def decode(data: bytes, source: str = "<bytes>") -> Splats:
    """Splats from .cgs bytes (quantized fields expanded as codebook[index])."""
    return decode_compressed(data, source).to_splats()


def decode_compressed(data: bytes, source: str = "<bytes>") -> CompressedSplats:
    """The file's codebooks, indices and per-Gaussian arrays, validated, not expanded."""
    _, n, table = container.read_table(data, source)

    def fail(section: str, message: str):
        raise CorruptFileError(f"{source}: section '{section}': {message}")

    if "meta" not in table:
        fail("meta", "missing")
    if table["meta"].raw > 1 << 24:
        fail("meta", f"declares {table['meta'].raw} bytes of metadata")
    try:
        meta = json.loads(container.read_section(data, table["meta"], source))
        kind = meta.get("format", "cgs") if isinstance(meta, dict) else "cgs"
        if kind != "cgs":  # the same container holds NOLA and backbone files
            fail("meta", f"this container holds a {kind!r} file, not Gaussians (.cgs)")
        degree = _json_int(meta["sh_degree"])
        shapes = field_shapes(degree)
        groups = meta["groups"]
        pos_enc = meta["positions"]["encoding"]
        op_enc = meta["opacities"]["encoding"]
        raw_fields = meta["raw_fields"]
        if (
            meta["num_gaussians"] != n
            or pos_enc not in POSITION_BYTES
            or op_enc not in OPACITY_BYTES
        ):
            raise ValueError("inconsistent header")
    except (ValueError, KeyError, TypeError, InputError, UnicodeDecodeError) as e:
        fail("meta", f"invalid metadata ({type(e).__name__}: {e})")

    if next(iter(table)) != "meta":
        fail("section table", "the first section must be 'meta'")
    claimed: set[str] = set()  # every field is stored once
    # Expected decoded size of every section, from N and the metadata, before inflating any.
    expected = {
        "meta": table["meta"].raw,
        "means": 3 * n * POSITION_BYTES[pos_enc],
        "opacities": n * OPACITY_BYTES[op_enc],
    }
    try:
        names = [g["name"] for g in groups]
        if not all(isinstance(name, str) for name in names) or len(set(names)) != len(names):
            raise ValueError(f"group names {names} are not distinct strings")
        for g in groups:
            k, dim, bits = _json_int(g["k"]), _json_int(g["dim"]), _json_int(g["bits"])
            cb_enc = g["codebook"]
            if len(set(g["fields"])) != len(g["fields"]) or set(g["fields"]) & claimed:
                raise ValueError(f"group {g['name']!r} repeats a field")
            claimed.update(g["fields"])
            if k < 1 or bits != bits_for(k) or cb_enc not in FLOAT_BYTES:
                raise ValueError(f"group {g['name']!r}")
            if dim != sum(math.prod(shapes[f]) for f in g["fields"]):
                raise ValueError(f"group {g['name']!r} width")
            expected[f"cb.{g['name']}"] = k * dim * FLOAT_BYTES[cb_enc]
            if g["index"] == "runs":
                if not 0 <= _json_int(g["count_bits"]) <= 32:
                    raise ValueError(f"group {g['name']!r} count_bits")
                expected[f"rle.{g['name']}"] = packed_size(k, int(g["count_bits"]))
            else:
                expected[f"idx.{g['name']}"] = packed_size(n, bits)
        for r in raw_fields:
            if r["field"] in claimed or r["field"] in ("means", "opacities"):
                raise ValueError(f"field {r['field']!r} is stored twice")
            claimed.add(r["field"])
            expected[f"raw.{r['field']}"] = (
                n * math.prod(shapes[r["field"]]) * FLOAT_BYTES[r["encoding"]]
            )
        stored = claimed | {"means", "opacities"}
        missing = [f for f in FIELDS if f not in stored and math.prod(shapes[f])]
        if missing:
            raise ValueError(f"fields {missing} are stored nowhere")
    except (ValueError, KeyError, TypeError, InputError) as e:
        fail("meta", f"invalid group description ({e})")
    if set(expected) != set(table):
        fail(
            "section table",
            f"sections {sorted(table)} do not match the metadata {sorted(expected)}",
        )
    for name, size in expected.items():
        if table[name].raw != size:
            fail(name, f"holds {table[name].raw} bytes, metadata implies {size}")
    sec = {name: container.read_section(data, info, source) for name, info in table.items()}

    if pos_enc == "u16":
        try:
            lo, hi = (np.asarray(v, dtype=np.float64).reshape(3) for v in meta["positions"]["bbox"])
        except (KeyError, ValueError, TypeError):
            fail("meta", "u16 positions need a bounding box")
        span = np.where(hi > lo, hi - lo, 1.0)
        q = np.frombuffer(sec["means"], "<u2").reshape(n, 3).astype(np.float64)
        means = (lo + q / 65535.0 * span).astype(np.float32)
    else:
        means = _floats(sec["means"], pos_enc).reshape(n, 3)
    if op_enc == "u8":
        opacities = u8_to_opacity_logit(np.frombuffer(sec["opacities"], np.uint8))
    else:
        opacities = _floats(sec["opacities"], op_enc)

    codebooks, indices = {}, {}
    for g in groups:
        name, k = g["name"], int(g["k"])
        codebooks[name] = torch.from_numpy(
            _floats(sec[f"cb.{name}"], g["codebook"]).reshape(k, g["dim"])
        )
        if g["index"] == "runs":
            counts = unpack_bits(sec[f"rle.{name}"], k, int(g["count_bits"]))
            if int(counts.sum()) != n:
                fail(f"rle.{name}", f"run lengths sum to {int(counts.sum())}, not {n}")
            indices[name] = torch.from_numpy(expand_runs(counts))
        else:
            idx = unpack_bits(sec[f"idx.{name}"], n, int(g["bits"]))
            if n and int(idx.max()) >= k:
                fail(f"idx.{name}", f"index {int(idx.max())} outside a codebook of {k}")
            indices[name] = torch.from_numpy(idx)
    raw = {
        r["field"]: torch.from_numpy(
            _floats(sec[f"raw.{r['field']}"], r["encoding"]).reshape(n, *shapes[r["field"]])
        )
        for r in raw_fields
    }
    if degree == 0 and "shN" not in raw and all("shN" not in g["fields"] for g in groups):
        raw["shN"] = torch.zeros(n, 0, 3)
    covered = {"means", "opacities", *raw, *(f for g in groups for f in g["fields"])}
    if covered != set(FIELDS):
        fail("meta", f"fields {sorted(set(FIELDS) - covered)} are stored nowhere")
    for name, arr in (("means", means), ("opacities", opacities)):
        if not np.isfinite(arr).all():
            fail(name, "holds non-finite values")
    return CompressedSplats(
        num_gaussians=n,
        sh_degree=degree,
        meta=meta,
        codebooks=codebooks,
        indices=indices,
        means=torch.from_numpy(means),
        opacities=torch.from_numpy(np.ascontiguousarray(opacities)),
        raw_fields=raw,
    )


def _json_int(value) -> int:
    """A JSON integer (not a string, float or boolean that int() would accept)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value


def _floats(data: bytes, encoding: str) -> np.ndarray:
    return np.frombuffer(data, "<f4" if encoding == "f32" else "<f2").astype(np.float32)
