"""Compact adapter checkpoints in the project's container (docs/nola.md, docs/format.md).

A checkpoint holds what cannot be regenerated: for every adapted layer its path,
kind, weight shape and adapter config (method, rank, k, l, c, seed, basis
sharing, conv layout), and the trained coefficients, either float32 or as
bit-packed codes plus tiny codebooks. Random bases are never stored: the
reader regenerates them from the seed. Small extra tensors (e.g. a new
classification head) can ride along as float32.

Sections (the container's header field N holds the number of coefficients):

* ``meta``: UTF-8 JSON, format "nola", version 1;
* ``coef``: float32 LE coefficients, all layers in order (unquantized), or
* ``codes``: every code, bit-packed LSB-first at ``quant.bits`` bits, and
  ``codebook``: float32 LE, per group in order its scale (uniform) or its levels;
* ``extra``: float32 LE, the extra tensors in order (when any).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np
import torch
from torch import nn

import compgs
from compgs.atomic import atomic_write_bytes
from compgs.codec import bitpack, container
from compgs.errors import CorruptFileError, InputError, UnsupportedFormatError
from compgs.nola.inject import adapters, wrap_layer
from compgs.nola.quant import (
    CoefficientCodes,
    CoefficientQAT,
    QuantSpec,
    load_coefficients,
    quantize_coefficients,
)
from compgs.nola.views import layer_kind

FORMAT, VERSION = "nola", 1
ZSTD_LEVEL = 19


@dataclasses.dataclass
class NOLACheckpoint:
    """A read checkpoint: meta, coefficient values by "layer.coefficient", extra tensors."""

    meta: dict
    coefficients: dict[str, torch.Tensor]
    extra: dict[str, torch.Tensor]
    size_bytes: int


def save_nola(
    path: str | os.PathLike,
    model: nn.Module,
    quant: QuantSpec | CoefficientCodes | CoefficientQAT | None = None,
    *,
    extra: dict[str, torch.Tensor] | None = None,
    metadata: dict | None = None,
) -> int:
    """Write the adapters of ``model`` to ``path``; returns the file size in bytes.

    ``quant``: None stores float32; a `QuantSpec` quantizes post-training; codes
    (`quantize_coefficients`) or a `CoefficientQAT` store exactly those codes.
    """
    data = encode_nola(model, quant, extra=extra, metadata=metadata)
    atomic_write_bytes(path, data)
    return len(data)


def encode_nola(model, quant=None, *, extra=None, metadata=None) -> bytes:
    found = adapters(model)
    if not found:
        raise InputError("model has no adapters: apply_nola() or apply_lora() first")
    layers = []
    for path, adapter in found.items():
        entry = {
            "path": path,
            "kind": adapter.view.kind,
            "shape": list(adapter.view.weight_shape),
            "config": {**adapter.config(), "seed": adapter.seed},
            "coefficients": [[n, list(p.shape)] for n, p in adapter.coefficients().items()],
        }
        if adapter.name != path:
            entry["name"] = adapter.name
        layers.append(entry)
    count = sum(p.numel() for a in found.values() for p in a.coefficients().values())
    meta = {"format": FORMAT, "version": VERSION, "creator": f"compgs {compgs.__version__}"}
    meta.update(layers=layers, quant=None, extra=[], metadata=metadata or {})
    sections: dict[str, bytes] = {}
    if isinstance(quant, QuantSpec):
        quant = quantize_coefficients(model, quant)
    elif isinstance(quant, CoefficientQAT):
        quant = quant.codes()
    if quant is None:
        flat = torch.cat(
            [
                p.detach().reshape(-1).cpu()
                for a in found.values()
                for p in a.coefficients().values()
            ]
        )
        sections["coef"] = flat.to(torch.float32).numpy().astype("<f4").tobytes()
    elif isinstance(quant, CoefficientCodes):
        meta["quant"], sections["codes"], sections["codebook"] = _encode_codes(quant, found)
    else:
        raise InputError(
            f"quant must be None, a QuantSpec, codes or a CoefficientQAT, got {type(quant).__name__}"
        )
    if extra:
        blobs = []
        for name, tensor in extra.items():
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                raise InputError(f"extra tensor {name!r} must be a floating torch.Tensor")
            meta["extra"].append([name, list(tensor.shape)])
            blobs.append(tensor.detach().cpu().to(torch.float32).numpy().astype("<f4").tobytes())
        sections["extra"] = b"".join(blobs)
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode()
    return container.pack_container(count, {"meta": meta_bytes, **sections}, ZSTD_LEVEL)


def _encode_codes(codes: CoefficientCodes, found: dict) -> tuple[dict, bytes, bytes]:
    spec = codes.spec
    order = {f"{p}.{n}": i for i, (p, a) in enumerate(found.items()) for n in a.coefficients()}
    groups, tables, all_codes = [], [], []
    for group in codes.groups:
        members = []
        for m in group.members:
            if m.key not in order:
                raise InputError(f"codes hold {m.key!r}, which the model does not have")
            members.append([order[m.key], m.coefficient])
        table = group.scale.reshape(1) if group.levels is None else group.levels
        groups.append({"members": members, "table": int(table.numel())})
        tables.append(table.detach().cpu().to(torch.float32).numpy().astype("<f4").tobytes())
        all_codes.append(group.codes.detach().cpu().numpy())
    quant = {**dataclasses.asdict(spec), "groups": groups}
    packed = bitpack.pack_bits(np.concatenate(all_codes), spec.bits)
    return quant, packed, b"".join(tables)


# --- reading ---------------------------------------------------------------------


def read_nola(path: str | os.PathLike) -> NOLACheckpoint:
    """Read and validate a checkpoint without a model."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror})") from e
    return decode_nola(data, str(path))


def decode_nola(data: bytes, source: str = "<bytes>") -> NOLACheckpoint:
    packed = container.unpack_container(data, source)

    def fail(message: str):
        raise CorruptFileError(f"{source}: {message}")

    try:
        meta = json.loads(packed.sections.get("meta", b"").decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        fail(f"section 'meta' is not JSON ({e})")
    if not isinstance(meta, dict):
        fail("section 'meta' is not a JSON object")
    if meta.get("format") != FORMAT:
        raise UnsupportedFormatError(
            f"{source}: not a NOLA checkpoint (format {meta.get('format')!r})"
        )
    if meta.get("version") != VERSION:
        raise UnsupportedFormatError(
            f"{source}: NOLA checkpoint version {meta.get('version')!r} (this reader knows {VERSION})"
        )
    try:
        members = [
            (f"{layer['path']}.{name}", tuple(int(s) for s in shape))
            for layer in meta["layers"]
            for name, shape in layer["coefficients"]
        ]
        extra_specs = [(str(n), tuple(int(s) for s in shape)) for n, shape in meta["extra"]]
        quant = meta["quant"]
        layers_ok = all(
            isinstance(layer["path"], str)
            and layer["kind"] in ("linear", "conv1d", "conv2d")
            and all(isinstance(d, int) and d > 0 for d in layer["shape"])
            and isinstance(layer["config"], dict)
            and layer["config"]["method"] in ("nola", "lora")
            for layer in meta["layers"]
        )
    except (KeyError, TypeError, ValueError) as e:
        fail(f"section 'meta' lacks or garbles a field ({e!r})")
    shapes = [shape for _, shape in members] + [shape for _, shape in extra_specs]
    if not layers_ok or not all(d >= 0 for shape in shapes for d in shape):
        fail("section 'meta' describes a layer or tensor that cannot exist")
    sizes = [math.prod(shape) for _, shape in members]
    count = sum(sizes)
    if count != packed.num_gaussians:
        fail(f"header says {packed.num_gaussians} coefficients, meta describes {count}")
    expected = {"meta"} | ({"extra"} if extra_specs else set())
    if quant is None:
        expected.add("coef")
        flat = _floats(packed.sections, "coef", count, fail)
    else:
        expected |= {"codes", "codebook"}
        flat = _decode_quant(packed.sections, quant, members, count, fail)
    if set(packed.sections) != expected:
        fail(f"sections {sorted(packed.sections)}, expected {sorted(expected)}")
    coefficients = {
        key: part.reshape(shape) for (key, shape), part in zip(members, torch.split(flat, sizes))
    }
    extra_flat = _floats(packed.sections, "extra", sum(math.prod(s) for _, s in extra_specs), fail)
    extra_sizes = [math.prod(s) for _, s in extra_specs]
    extra = {
        n: t.reshape(s) for (n, s), t in zip(extra_specs, torch.split(extra_flat, extra_sizes))
    }
    if not all(bool(torch.isfinite(t).all()) for t in [flat, extra_flat]):
        fail("coefficients or extra tensors hold NaN or Inf")
    return NOLACheckpoint(meta, coefficients, extra, len(data))


def _floats(sections: dict, name: str, count: int, fail) -> torch.Tensor:
    raw = sections.get(name, b"")
    if len(raw) != 4 * count:
        fail(f"section '{name}' has {len(raw)} bytes, expected {4 * count}")
    return torch.from_numpy(np.frombuffer(raw, dtype="<f4").astype(np.float32).copy())


def _decode_quant(sections: dict, quant: dict, members: list, count: int, fail) -> torch.Tensor:
    try:
        spec = QuantSpec(int(quant["bits"]), quant["method"], quant["granularity"])
        groups = [
            ([(int(i), str(n)) for i, n in g["members"]], int(g["table"])) for g in quant["groups"]
        ]
    except (KeyError, TypeError, ValueError, InputError) as e:
        fail(f"section 'meta' has a bad 'quant' entry ({e})")
    table = _floats(sections, "codebook", sum(t for _, t in groups), fail)
    packed = sections.get("codes", b"")
    if len(packed) != bitpack.packed_size(count, spec.bits):
        fail(
            f"section 'codes' has {len(packed)} bytes, expected {bitpack.packed_size(count, spec.bits)}"
        )
    codes = torch.from_numpy(bitpack.unpack_bits(packed, count, spec.bits))
    return _dequantize_groups(spec, groups, table, codes, members, fail)


def _dequantize_groups(spec, groups, table, codes, members, fail) -> torch.Tensor:
    """Values in member order from per-group codes (groups list members by layer index)."""
    layer_index = {}
    for key, _ in members:
        layer_index.setdefault(key.rpartition(".")[0], len(layer_index))
    slot = {
        (layer_index[k.rpartition(".")[0]], k.rpartition(".")[2]): i
        for i, (k, _) in enumerate(members)
    }
    sizes = [math.prod(s) for _, s in members]
    values: list[torch.Tensor | None] = [None] * len(members)
    code_pos, table_pos = 0, 0
    for group_members, table_len in groups:
        width = [sizes[slot[m]] if m in slot else -1 for m in group_members]
        if -1 in width or any(values[slot[m]] is not None for m in group_members):
            fail("section 'meta': a quantizer group names an unknown or repeated coefficient")
        n = sum(width)
        group_codes = codes[code_pos : code_pos + n]
        group_table = table[table_pos : table_pos + table_len]
        if group_codes.numel() != n:
            fail("section 'codes' holds fewer codes than the quantizer groups need")
        top = int(group_codes.max()) if n else 0
        if spec.method == "uniform":
            if table_len != 1 or top > 2 * spec.qmax:
                fail("section 'codes': a uniform group's codes or scale are out of range")
            flat = (group_codes - spec.qmax).to(torch.float32) * group_table[0]
        else:
            if not 1 <= table_len <= 2**spec.bits or top >= table_len:
                fail("section 'codes': a k-means group's codes or levels are out of range")
            flat = group_table[group_codes]
        for m, part in zip(group_members, torch.split(flat, width)):
            values[slot[m]] = part
        code_pos, table_pos = code_pos + n, table_pos + table_len
    if any(v is None for v in values):
        fail("section 'meta': the quantizer groups do not cover every coefficient")
    return torch.cat(values)


# --- loading into a model -----------------------------------------------------------


def load_nola(path: str | os.PathLike, model: nn.Module) -> NOLACheckpoint:
    """Load a checkpoint into ``model``: a base model gets the adapters first, a model
    that already has them must have the same ones. Extra tensors are copied into the
    model's parameters or buffers of the same name; every parameter ends frozen.

    Raises InputError when the checkpoint was made for a different architecture; then
    the model is left exactly as it was (everything is checked before anything changes).
    """
    ckpt = read_nola(path)
    source = str(path)
    to_wrap = _check_layers(model, ckpt, source)
    state = dict(model.named_parameters()) | dict(model.named_buffers())
    for name, tensor in ckpt.extra.items():
        target = state.get(name)
        if target is None or tuple(target.shape) != tuple(tensor.shape):
            raise InputError(
                f"{source}: extra tensor '{name}' {tuple(tensor.shape)} has no match in the model"
            )
    made = []
    try:
        for layer in to_wrap:
            made.append(_wrap_from_checkpoint(model, layer, source))
        load_coefficients(model, ckpt.coefficients)
    except Exception:
        for layer_path, adapter in made:  # leave the model as it was
            parent_name, _, child = layer_path.rpartition(".")
            setattr(model.get_submodule(parent_name), child, adapter.base)
        raise
    with torch.no_grad():
        for name, tensor in ckpt.extra.items():
            state[name].copy_(tensor)
    for p in model.parameters():
        p.requires_grad_(False)
    return ckpt


def _check_layers(model: nn.Module, ckpt: NOLACheckpoint, source: str) -> list[dict]:
    """The checkpoint's layers that still need an adapter, after checking every layer."""
    layers = ckpt.meta["layers"]
    present = adapters(model)
    wanted = [layer["path"] for layer in layers]
    if present and sorted(present) != sorted(wanted):
        raise InputError(
            f"{source}: the model's adapters {sorted(present)} differ from the checkpoint's {sorted(wanted)}"
        )
    modules = dict(model.named_modules())
    to_wrap = []
    for layer in layers:
        path = layer["path"]
        module = present.get(path)
        base = module.base if module is not None else modules.get(path)
        if (
            base is None
            or layer_kind(base) != layer["kind"]
            or list(base.weight.shape) != layer["shape"]
        ):
            got = "nothing" if base is None else f"a {type(base).__name__}"
            if base is not None and hasattr(base, "weight"):
                got += f" with weight {list(base.weight.shape)}"
            raise InputError(
                f"{source}: made for a different architecture: layer '{path}' should be a "
                f"{layer['kind']} with weight {layer['shape']}, the model has {got}"
            )
        if module is None:
            to_wrap.append(layer)
        elif {**module.config(), "seed": module.seed} != layer["config"]:
            raise InputError(
                f"{source}: adapter '{path}' is configured differently from the checkpoint"
            )
    return to_wrap


def _wrap_from_checkpoint(model: nn.Module, layer: dict, source: str):
    """(path, adapter) for one checkpoint layer, wrapped around the model's module."""
    config = dict(layer["config"])
    method = config.pop("method", None)
    layout = config.pop("layout", None)
    config["conv_layout"] = "square" if layout == "natural" else layout
    path = layer["path"]
    try:
        return path, wrap_layer(model, path, method, name=layer.get("name", path), **config)
    except TypeError as e:
        raise CorruptFileError(f"{source}: layer '{path}' has a bad adapter config ({e})") from e
