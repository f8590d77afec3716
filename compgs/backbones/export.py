"""Export a quantized network to the project's container, and load it back.

File (`compgs.codec.container`, the `.cgs` container with CRC32 per section,
optional zstd per section; we use the suffix ``.cgm``), four sections:

* ``meta``: UTF-8 JSON: format "cgs-model", the architecture (when known), the
  codebook groups (K, d, index bits, storage dtype), the quantized layers
  (shape, group, slice of the group's vectors) and the float leftovers (name,
  shape, dtype), in the order their bytes appear;
* ``codebooks``: every group's centroids [K, d], little-endian f16 or f32;
* ``indices``: every layer's code indices, bit-packed (`compgs.codec.bitpack`,
  ceil(log2 K) bits each), each layer starting on a byte boundary;
* ``scales``: the per-output-channel scales (f16) of layers quantized with
  ``channel_scale`` or whose batch norm was folded in (empty otherwise);
* ``tensors``: every other entry of the state dict (biases, batch norm, layers
  left float), floating ones as f16 or f32, integer ones as they are.

A model whose batch norms were folded (`compgs.backbones.fold`) records the
folded (conv, batch norm) pairs in ``meta["folded"]``; `load_model` strips
those batch norms from the rebuilt network before loading its state.

Export snaps the live model to what the file holds (centroids and floating
leftovers rounded to the stored precision), so the model in memory and the
model loaded from the file compute the same outputs, bit for bit.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from compgs.atomic import atomic_write_bytes
from compgs.backbones.fold import folded_pairs, strip_batchnorm
from compgs.backbones.layout import candidate_layers, leftover_kinds
from compgs.backbones.quantize import VQWeight, codebook_groups, quantized_layers
from compgs.backbones.size import LayerSize, SizeReport, float_bytes
from compgs.codec import container
from compgs.codec.bitpack import bits_for, pack_bits, packed_size, unpack_bits
from compgs.errors import CorruptFileError, InputError
from compgs.vq import Codebook

FORMAT, VERSION = "cgs-model", 1
SECTIONS = ("meta", "codebooks", "indices", "scales", "tensors")
MAX_META = 1 << 24
DTYPES: dict[str, tuple[torch.dtype, str]] = {
    "f16": (torch.float16, "<f2"), "f32": (torch.float32, "<f4"), "f64": (torch.float64, "<f8"),
    "i8": (torch.int8, "i1"), "u8": (torch.uint8, "u1"), "i16": (torch.int16, "<i2"),
    "i32": (torch.int32, "<i4"), "i64": (torch.int64, "<i8"), "bool": (torch.bool, "?"),
}  # fmt: skip
TORCH_TO_NAME = {dtype: name for name, (dtype, _) in DTYPES.items()}
StoreDtype = Literal["f16", "f32"]


@dataclasses.dataclass
class ExportResult:
    data: bytes
    report: SizeReport


def export_model(
    model: nn.Module,
    path: str | os.PathLike | None = None,
    *,
    codebook_dtype: StoreDtype = "f16",
    float_dtype: StoreDtype = "f16",
    zstd_level: int | None = 10,
    arch: dict[str, Any] | None = None,
) -> ExportResult:
    """Serialize a `quantize_model`-ed ``model`` (written atomically to ``path`` when given).

    ``arch`` ({"name": ..., "kwargs": {...}}, see `compgs.backbones.models`) is
    recorded so `load_model` can rebuild the network without being handed one.
    The model is snapped in place to the stored precision (see the module doc).
    """
    for label, value in (("codebook_dtype", codebook_dtype), ("float_dtype", float_dtype)):
        if value not in ("f16", "f32"):
            raise InputError(f"{label} must be 'f16' or 'f32', got {value!r}")
    layers = quantized_layers(model)
    if not layers:
        raise InputError("the model has no quantized layer: call quantize_model() first")
    modules = dict(model.named_modules())
    codebooks, group_meta, group_bytes = bytearray(), [], {}
    for group in codebook_groups(model):
        book = group.book
        stored = book.centroids.to(DTYPES[codebook_dtype][0])
        with torch.no_grad():
            book.centroids.copy_(stored.to(book.centroids.dtype))  # snap
        raw = _to_bytes(stored, codebook_dtype)
        group_meta.append({
            "name": group.name, "k": book.num_codes, "dim": book.dim,
            "bits": bits_for(book.num_codes), "offset": len(codebooks), "bytes": len(raw),
        })  # fmt: skip
        group_bytes[group.name] = (len(raw), sum(layers[n].count for n in group.layers))
        codebooks += raw
    indices, scales, layer_meta, sizes = bytearray(), bytearray(), [], []
    for name, vq in layers.items():
        bits = bits_for(vq.book.num_codes)
        packed = pack_bits(vq.indices.cpu().numpy(), bits)
        scale = b""
        if vq.scale is not None:
            with torch.no_grad():  # snap (folded batch norm scales are not f16 yet)
                f16 = float(torch.finfo(torch.float16).max)
                vq.scale.copy_(vq.scale.clamp(-f16, f16).half().to(vq.scale.dtype))
            scale = _to_bytes(vq.scale, "f16")
        shape = list(modules[name].parametrizations.weight.original.shape)
        layer_meta.append({
            "name": name, "shape": shape, "group": vq.group, "vector_offset": vq.offset,
            "vectors": vq.count, "offset": len(indices), "bytes": len(packed),
            "scale_offset": len(scales), "scale_bytes": len(scale),
        })  # fmt: skip
        cb_total, group_vectors = group_bytes[vq.group]
        cb_share = cb_total * vq.count / group_vectors
        sizes.append(LayerSize.of(name, shape, vq, len(packed), cb_share, len(scale)))
        indices += packed
        scales += scale
    tensors, tensor_meta, by_kind = bytearray(), [], {}
    leftovers = _leftover_state(model)
    kinds = leftover_kinds(model, leftovers)
    for name, t in leftovers.items():
        dtype = float_dtype if t.is_floating_point() else TORCH_TO_NAME.get(t.dtype)
        if dtype is None:
            raise InputError(f"state entry {name!r} has dtype {t.dtype}, which cannot be stored")
        stored = t.detach().to(DTYPES[dtype][0])
        if t.is_floating_point():
            with torch.no_grad():
                t.copy_(stored.to(t.dtype))  # snap: t shares storage with the model
        raw = _to_bytes(stored, dtype)
        tensor_meta.append({"name": name, "shape": list(t.shape), "dtype": dtype,
                            "offset": len(tensors), "bytes": len(raw)})  # fmt: skip
        tensors += raw
        by_kind[kinds[name]] = by_kind.get(kinds[name], 0) + len(raw)
    from compgs import __version__

    meta = {
        "format": FORMAT, "version": VERSION, "creator": f"compgs {__version__}",
        "arch": arch, "codebook_dtype": codebook_dtype, "float_dtype": float_dtype,
        "groups": group_meta, "layers": layer_meta, "tensors": tensor_meta,
    }  # fmt: skip
    if folded_pairs(model):
        meta["folded"] = [list(pair) for pair in folded_pairs(model)]
    sections = {
        "meta": json.dumps(meta, separators=(",", ":")).encode(),
        "codebooks": bytes(codebooks), "indices": bytes(indices), "scales": bytes(scales),
        "tensors": bytes(tensors),
    }  # fmt: skip
    params = sum(vq.count * vq.book.dim for vq in layers.values()) + sum(
        t.numel() for t in leftovers.values()
    )
    data = container.pack_container(params, sections, zstd_level or None)
    _, _, table = container.read_table(data)
    report = SizeReport(
        layers=sizes,
        params=params,
        float32_bytes=4 * sum(s.params for s in sizes) + float_bytes(leftovers),
        sections={name: info.stored for name, info in table.items()},
        header_bytes=container.header_size(len(table)),
        total_bytes=len(data),
        leftovers=by_kind,
    )
    if path is not None:
        atomic_write_bytes(path, data)
    return ExportResult(data, report)


def _leftover_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict entries that are not part of a quantized layer's weight (shared storage)."""
    return {k: v for k, v in model.state_dict().items() if "parametrizations" not in k.split(".")}


def _to_bytes(t: torch.Tensor, dtype: str) -> bytes:
    return t.detach().cpu().contiguous().numpy().astype(DTYPES[dtype][1], copy=False).tobytes()


# --- reading ----------------------------------------------------------------------


def read_meta(source: bytes | str | os.PathLike) -> dict[str, Any]:
    """The validated ``meta`` of a model file (architecture, groups, layers, tensors)."""
    data, name = _data(source)
    return _parse(data, name)[0]


def load_model(source: bytes | str | os.PathLike, model: nn.Module | None = None) -> nn.Module:
    """A runnable network from a model file, in eval mode.

    ``model``: a float network of the right architecture (filled in place);
    None rebuilds it from the architecture the file records. Quantized layers
    come back parametrized with frozen codebooks (`materialize` makes them
    plain), so exporting the loaded model again gives the same bytes.
    """
    data, source_name = _data(source)
    meta, sections = _parse(data, source_name)
    if model is None:
        if not meta.get("arch"):
            raise InputError(f"{source_name} records no architecture: pass the model to load into")
        from compgs.backbones.models import build_model

        model = build_model(meta["arch"]["name"], **meta["arch"].get("kwargs", {}))
    if quantized_layers(model):
        raise InputError("load_model needs a float model, got one that is already quantized")
    missing = [pair for pair in meta.get("folded", []) if tuple(pair) not in folded_pairs(model)]
    strip_batchnorm(model, [tuple(pair) for pair in missing])
    _check_match(model, meta, source_name)
    state = model.state_dict()
    for t in meta["tensors"]:
        raw = sections["tensors"][t["offset"] : t["offset"] + t["bytes"]]
        with torch.no_grad():
            state[t["name"]].copy_(_from_bytes(raw, t["dtype"], t["shape"]))
    modules = dict(model.named_modules())
    books: dict[str, Codebook] = {}
    for g in meta["groups"]:
        raw = sections["codebooks"][g["offset"] : g["offset"] + g["bytes"]]
        centroids = _from_bytes(raw, meta["codebook_dtype"], [g["k"], g["dim"]]).float()
        if not bool(torch.isfinite(centroids).all()):
            raise CorruptFileError(
                f"{source_name}: section 'codebooks': group {g['name']!r} is not finite"
            )
        books[g["name"]] = Codebook.from_centroids(centroids, frozen=True)
    assignments: dict[str, list[torch.Tensor]] = {name: [] for name in books}
    for layer in meta["layers"]:
        g = next(g for g in meta["groups"] if g["name"] == layer["group"])
        raw = sections["indices"][layer["offset"] : layer["offset"] + layer["bytes"]]
        idx = torch.from_numpy(unpack_bits(raw, layer["vectors"], g["bits"]))
        if layer["vectors"] and int(idx.max()) >= g["k"]:
            raise CorruptFileError(
                f"{source_name}: section 'indices': layer {layer['name']!r} has an index >= K={g['k']}"
            )
        assignments[g["name"]].append(idx)
    for name, book in books.items():
        book.assignments = torch.cat(assignments[name]) if assignments[name] else book.assignments
    for layer in meta["layers"]:
        book = books[layer["group"]]
        module = modules[layer["name"]]
        scale = None
        if layer["scale_bytes"]:
            at = layer["scale_offset"]
            raw = sections["scales"][at : at + layer["scale_bytes"]]
            scale = _from_bytes(raw, "f16", [layer["shape"][0]]).to(module.weight.dtype)
            if not bool(torch.isfinite(scale).all()):
                raise CorruptFileError(
                    f"{source_name}: section 'scales': layer {layer['name']!r} is not finite"
                )
        vq = VQWeight(book, layer["group"], layer["vector_offset"], layer["vectors"], scale)
        with torch.no_grad():
            module.weight.copy_(vq.codebook_weight(module.weight.shape, module.weight.dtype))
        parametrize.register_parametrization(module, "weight", vq)
    return model.eval()


def _data(source: bytes | str | os.PathLike) -> tuple[bytes, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), "<bytes>"
    path = Path(source)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    return path.read_bytes(), str(path)


def _parse(data: bytes, source: str) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Validate the table and meta, check every section's size, then decode the payloads."""
    _, params, table = container.read_table(data, source)

    def fail(section: str, message: str):
        raise CorruptFileError(f"{source}: section '{section}': {message}")

    if tuple(table) != SECTIONS:
        fail("section table", f"expected sections {list(SECTIONS)}, found {list(table)}")
    if table["meta"].raw > MAX_META:
        fail("meta", f"declares {table['meta'].raw} bytes of metadata")
    try:
        meta = json.loads(container.read_section(data, table["meta"], source))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        fail("meta", f"not JSON ({e})")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fail(
            "meta",
            f"not a compgs model file (format {meta.get('format') if isinstance(meta, dict) else None!r})",
        )
    if meta.get("version") != VERSION:
        fail("meta", f"unsupported version {meta.get('version')!r} (this reader knows {VERSION})")
    folded = meta.get("folded", [])
    if not isinstance(folded, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(n, str) for n in p) for p in folded
    ):
        fail("meta", "'folded' must be a list of [conv, batch norm] name pairs")
    try:
        expected = _expected_sizes(meta)
    except (KeyError, TypeError, ValueError, StopIteration) as e:
        fail("meta", f"malformed ({type(e).__name__}: {e})")
    for name, size in expected.items():
        if table[name].raw != size:
            fail(name, f"holds {table[name].raw} bytes, the metadata needs {size}")
    return meta, {name: container.read_section(data, table[name], source) for name in SECTIONS[1:]}


def _expected_sizes(meta: dict[str, Any]) -> dict[str, int]:
    """Bytes every payload section must have, from the metadata alone; checks offsets too."""
    if meta["codebook_dtype"] not in ("f16", "f32") or meta["float_dtype"] not in ("f16", "f32"):
        raise ValueError("storage dtypes must be f16 or f32")
    cb_item = np.dtype(DTYPES[meta["codebook_dtype"]][1]).itemsize
    groups = {}
    total = {"codebooks": 0, "indices": 0, "scales": 0, "tensors": 0}
    for g in meta["groups"]:
        k, d = int(g["k"]), int(g["dim"])
        if k < 1 or d < 1 or g["bits"] != bits_for(k) or g["name"] in groups:
            raise ValueError(f"bad group {g['name']!r}")
        _advance(total, "codebooks", g["offset"], g["bytes"], k * d * cb_item)
        groups[g["name"]] = (k, d, 0)
    for layer in meta["layers"]:
        k, d, used = groups[layer["group"]]
        count, shape = int(layer["vectors"]), _shape(layer["shape"])
        if count * d != int(np.prod(shape)) or layer["vector_offset"] != used:
            raise ValueError(f"layer {layer['name']!r} does not fit its group")
        groups[layer["group"]] = (k, d, used + count)
        _advance(total, "indices", layer["offset"], layer["bytes"], packed_size(count, bits_for(k)))
        scale_size = 2 * shape[0] if layer["scale_bytes"] else 0
        _advance(total, "scales", layer["scale_offset"], layer["scale_bytes"], scale_size)
    for t in meta["tensors"]:
        shape = _shape(t["shape"])
        size = int(np.prod(shape)) * np.dtype(DTYPES[t["dtype"]][1]).itemsize
        _advance(total, "tensors", t["offset"], t["bytes"], size)
    return total


def _shape(values: list[Any]) -> list[int]:
    shape = [int(s) for s in values]
    if any(s < 0 for s in shape):
        raise ValueError(f"negative dimension in {shape}")
    return shape


def _advance(total: dict[str, int], section: str, offset: int, stored: int, size: int) -> None:
    """Entries of a section lie back to back in metadata order, each as big as it must be."""
    if offset != total[section] or stored != size:
        raise ValueError(f"an entry of {section} is not where or as big as it must be")
    total[section] += size


def _from_bytes(raw: bytes, dtype: str, shape: list[int]) -> torch.Tensor:
    array = np.frombuffer(raw, dtype=DTYPES[dtype][1]).reshape(shape)
    return torch.from_numpy(array.copy())


def _check_match(model: nn.Module, meta: dict[str, Any], source: str) -> None:
    """The file's layers and tensors must be exactly those of ``model``, with the same shapes."""
    problems = []
    layers = candidate_layers(model)
    file_weights = set()
    for layer in meta["layers"]:
        module = layers.get(layer["name"])
        file_weights.add(f"{layer['name']}.weight")
        if module is None:
            problems.append(f"no Conv/Linear layer {layer['name']!r}")
        elif list(module.weight.shape) != layer["shape"]:
            problems.append(
                f"{layer['name']} is {list(module.weight.shape)}, file has {layer['shape']}"
            )
    state = model.state_dict()
    file_tensors = {t["name"]: t["shape"] for t in meta["tensors"]}
    for name, shape in file_tensors.items():
        if name not in state:
            problems.append(f"unexpected {name}")
        elif list(state[name].shape) != shape:
            problems.append(f"{name} is {list(state[name].shape)}, file has {shape}")
    missing = [k for k in state if k not in file_tensors and k not in file_weights]
    problems += [f"missing {k}" for k in missing]
    if problems:
        more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
        raise InputError(f"{source} does not match the model: {'; '.join(problems[:3])}{more}")
