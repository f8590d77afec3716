""".cgs bytes -> Splats: check the layout, decode the sections, gather the fields.

1. `layout.checked_layout`: header, table, metadata and every section's decoded
   size, before any payload is touched.
2. Each section is read (CRC, zstd, byte unshuffle) and turned into what it holds
   (floats, indices, run lengths). Sections are independent of each other.
3. Every quantized field is gathered from its codebook columns straight into the
   field's own new array, in blocks of rows.

Steps 2 and 3 run on ``torch.get_num_threads()`` threads of the decoder's own:
every kernel under them (zlib, zstd, numpy; torch only for float16 conversion,
in blocks below its parallel grain) is single-threaded and releases the GIL. (torch's intra-op threads would split each small step across cores and make
every thread wait at the end of each one, which a busy machine turns into
scheduler-sized stalls.) Row gathers go through numpy's ``take`` on rows viewed
as single opaque items, one memcpy-like copy per Gaussian. Every output array
is allocated by numpy, which asks Linux for transparent huge pages for large
arrays (torch's CPU allocator does not): first touching the 248 MB of 1M SH-3
Gaussians then costs one page fault per 2 MB instead of per 4 KB, half the CPU.

Finite values are checked on what the file holds: codebooks (K rows, not the N
gathered ones), positions and opacities (all their possible values when they
are 8/16-bit codes), raw fields. A decoded `Splats` is therefore finite without
a pass over its 248 MB (1M Gaussians at SH degree 3).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from compgs.codec import container
from compgs.codec.bitpack import unpack_bits
from compgs.codec.cgs import field_shapes
from compgs.codec.layout import checked_layout
from compgs.codec.rle import expand_runs
from compgs.codec.u8 import u8_to_opacity_logit
from compgs.errors import CorruptFileError
from compgs.splats import FIELDS, Splats

# Below this many bytes of work, handing it to threads costs more than it saves.
PARALLEL_BYTES = 4 << 20  # 100k SH-0 Gaussians (1.3 MB of sections) decode faster on one
TORCH_GRAIN = 32768  # at::internal::GRAIN_SIZE: torch ops on fewer elements use no threads
GATHER_ROWS = 1 << 17  # rows per gather task: a few per field and thread, each >= 1.5 MB


@dataclasses.dataclass
class CompressedSplats:
    """A decoded .cgs file before codebook gathers: what the file holds, as tensors."""

    num_gaussians: int
    sh_degree: int
    meta: dict
    codebooks: dict[str, torch.Tensor]  # group -> [K, d] float32
    indices: dict[str, torch.Tensor]  # group -> [N] int32 (int64 if K > 2^31); runs expanded
    means: torch.Tensor
    opacities: torch.Tensor
    raw_fields: dict[str, torch.Tensor]  # non-quantized fields, [N, ...]

    def to_splats(self) -> Splats:
        """The Gaussians: each quantized field gathered from its codebook columns.

        One gather per field into the field's own new array (no [N, dim] group
        intermediate to split and copy), split into blocks of rows across threads.
        """
        n = self.num_gaussians
        shapes = field_shapes(self.sh_degree)
        fields = {"means": self.means, "opacities": self.opacities, **self.raw_fields}
        tasks = []
        for group, name, start, width in field_columns(self.meta["groups"], shapes):
            out = np.empty((n, *shapes[name]), np.float32)
            fields[name] = torch.from_numpy(out)
            if width:
                codebook = _numpy(self.codebooks[group])[:, start : start + width]
                rows = _as_rows(np.ascontiguousarray(codebook))
                index = _numpy(self.indices[group])
                tasks += _gather_tasks(rows, index, _as_rows(out.reshape(n, width)))
        _run(tasks, parallel=sum(4 * n * s for s in _widths(shapes)) >= PARALLEL_BYTES)
        return Splats(**{name: fields[name] for name in FIELDS})


def decode(data: bytes, source: str = "<bytes>") -> Splats:
    """Splats from .cgs bytes (quantized fields expanded as codebook[index])."""
    return decode_compressed(data, source).to_splats()


def decode_compressed(data: bytes, source: str = "<bytes>") -> CompressedSplats:
    """The file's codebooks, indices and per-Gaussian arrays, validated, not expanded."""

    def fail(section: str, message: str):
        raise CorruptFileError(f"{source}: section '{section}': {message}")

    n, meta, table, bbox = checked_layout(data, source, fail)
    degree = meta["sh_degree"]
    shapes = field_shapes(degree)
    groups, raw_fields = meta["groups"], meta["raw_fields"]

    # What to make of each section's decoded bytes, by section name.
    makers: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "means": lambda b: _positions(b, n, meta["positions"]["encoding"], bbox, fail),
        "opacities": lambda b: _opacities(b, n, meta["opacities"]["encoding"], fail),
    }
    for g in groups:
        makers[f"cb.{g['name']}"] = lambda b, g=g: _floats(b, g["codebook"], (g["k"], g["dim"]))
        if g["index"] == "runs":
            makers[f"rle.{g['name']}"] = lambda b, g=g: _runs(b, g, n, fail)
        else:
            makers[f"idx.{g['name']}"] = lambda b, g=g: _index(b, g, n, fail)
    for r in raw_fields:
        shape = (n, *shapes[r["field"]])
        makers[f"raw.{r['field']}"] = lambda b, r=r, shape=shape: _floats(b, r["encoding"], shape)

    def section(name: str) -> Callable[[], np.ndarray]:
        return lambda: makers[name](container.section_array(data, table[name], source))

    # Largest first, so that the last task to start is a short one; errors are raised
    # in table order, as a sequential reader would meet them.
    names = sorted(makers, key=lambda name: -table[name].raw)
    done = _run(
        [section(name) for name in names],
        parallel=sum(table[name].raw for name in names) >= PARALLEL_BYTES,
        report_order=sorted(range(len(names)), key=lambda i: list(table).index(names[i])),
    )
    out = {name: torch.from_numpy(array) for name, array in zip(names, done, strict=True)}

    raw = {r["field"]: out[f"raw.{r['field']}"] for r in raw_fields}
    if degree == 0 and "shN" not in raw and all("shN" not in g["fields"] for g in groups):
        raw["shN"] = torch.zeros(n, 0, 3)
    compressed = CompressedSplats(
        num_gaussians=n,
        sh_degree=degree,
        meta=meta,
        codebooks={g["name"]: out[f"cb.{g['name']}"] for g in groups},
        indices={
            g["name"]: out[f"{'rle' if g['index'] == 'runs' else 'idx'}.{g['name']}"]
            for g in groups
        },
        means=out["means"],
        opacities=out["opacities"],
        raw_fields=raw,
    )
    _check_fields_finite(compressed, source)
    return compressed


def field_columns(groups: list[dict], shapes: dict):
    """(group name, field, first column, width) of every quantized field, in file order."""
    for group in groups:
        start = 0
        for field in group["fields"]:
            width = math.prod(shapes[field])
            yield group["name"], field, start, width
            start += width


# --- threads ----------------------------------------------------------------------


def _run(tasks: list[Callable], parallel: bool, report_order: list[int] | None = None) -> list:
    """Each task's result, computed on up to ``torch.get_num_threads()`` threads.

    If tasks fail, the exception of the first one in ``report_order`` (default: list
    order) is raised, whatever the order in which the threads met them.
    """
    threads = min(torch.get_num_threads(), len(tasks))
    if not parallel or threads <= 1:
        results = [None] * len(tasks)
        for i in report_order or range(len(tasks)):
            results[i] = tasks[i]()
        return results
    with ThreadPoolExecutor(threads, thread_name_prefix="compgs-decode") as pool:
        futures = [pool.submit(task) for task in tasks]
        try:
            for i in report_order or range(len(tasks)):
                futures[i].result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        return [future.result() for future in futures]


# --- gathers ----------------------------------------------------------------------


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().cpu().numpy()


def _widths(shapes: dict) -> list[int]:
    return [math.prod(shape) for shape in shapes.values()]


def _as_rows(array: np.ndarray) -> np.ndarray:
    """A C-contiguous [R, W] float32 array as R opaque W x 4-byte items (a view)."""
    return array.view(np.dtype((np.void, array.shape[1] * array.itemsize))).reshape(-1)


def _gather_tasks(rows: np.ndarray, index: np.ndarray, out: np.ndarray) -> list[Callable]:
    """``out[i] = rows[index[i]]`` in blocks of `GATHER_ROWS`; indices already checked < K."""

    def block(first: int) -> Callable[[], None]:
        last = first + GATHER_ROWS
        return lambda: np.take(rows, index[first:last], out=out[first:last], mode="clip")

    return [block(first) for first in range(0, len(out), GATHER_ROWS)]


# --- section payloads -------------------------------------------------------------


def _floats(data: np.ndarray, encoding: str, shape: tuple[int, ...]) -> np.ndarray:
    """Little-endian f32 or f16 bytes as a new float32 array of ``shape``."""
    out = np.empty(shape, np.float32)
    if encoding == "f32":
        np.copyto(out.reshape(-1), np.frombuffer(data, "<f4"))
        return out
    # torch converts float16 with vector instructions, numpy one number at a time (3x
    # slower). Blocks of at most torch's grain size run on the calling thread: a larger
    # one would start an OpenMP team inside this worker thread.
    stored = np.frombuffer(data, "<f2")
    if not stored.flags.writeable:  # a raw section: a view of the caller's bytes
        stored = stored.copy()  # (torch wraps only writable arrays without a warning)
    halves = torch.from_numpy(stored)
    floats = torch.from_numpy(out.reshape(-1))
    for first in range(0, len(floats), TORCH_GRAIN):
        floats[first : first + TORCH_GRAIN].copy_(halves[first : first + TORCH_GRAIN])
    return out


def _positions(data: np.ndarray, n: int, encoding: str, bbox, fail) -> np.ndarray:
    if encoding != "u16":
        means = _floats(data, encoding, (n, 3))
        if not np.isfinite(means).all():
            fail("means", "holds non-finite values")
        return means
    lo, hi = bbox
    span = np.where(hi > lo, hi - lo, 1.0)
    # Each axis holds one of 65536 values: dequantise those with the per-Gaussian
    # formula (float64, so the result is the same), check that they are finite (that
    # covers every position), then look the stored ones up.
    q = np.arange(65536, dtype=np.float64)[:, None]
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is what we look for
        levels = np.ascontiguousarray((lo + q / 65535.0 * span).astype(np.float32).T)
    if not np.isfinite(levels).all():
        fail("means", "the bounding box dequantises to non-finite positions")
    means, stored = np.empty((n, 3), np.float32), data.view("<u2").reshape(n, 3)
    for axis in range(3):
        np.take(levels[axis], stored[:, axis], out=means[:, axis], mode="clip")
    return means


def _opacities(data: np.ndarray, n: int, encoding: str, fail) -> np.ndarray:
    if encoding == "u8":
        # 256 possible bytes: convert those (finite by construction), then look them up
        levels = u8_to_opacity_logit(np.arange(256, dtype=np.uint8))
        return np.take(levels, data, out=np.empty(n, np.float32), mode="clip")
    opacities = _floats(data, encoding, (n,))
    if not np.isfinite(opacities).all():
        fail("opacities", "holds non-finite values")
    return opacities


def _index_type(k: int):
    return np.int32 if k <= 1 << 31 else np.int64


def _index(data: np.ndarray, group: dict, n: int, fail) -> np.ndarray:
    name, k = group["name"], group["k"]
    index = unpack_bits(data, n, group["bits"], _index_type(k))
    # every value of `bits` bits is a valid index when K is a power of two
    if n and k < 1 << group["bits"] and int(index.max()) >= k:
        fail(f"idx.{name}", f"index {int(index.max())} outside a codebook of {k}")
    return index


def _runs(data: np.ndarray, group: dict, n: int, fail) -> np.ndarray:
    name, k = group["name"], group["k"]
    counts = unpack_bits(data, k, group["count_bits"])
    if int(counts.sum()) != n:
        fail(f"rle.{name}", f"run lengths sum to {int(counts.sum())}, not {n}")
    return expand_runs(counts, _index_type(k))


def _check_fields_finite(compressed: CompressedSplats, source: str) -> None:
    """Raise what `Splats.validate_finite` would raise on the decoded Gaussians.

    Positions and opacities have been checked with their sections. A quantized
    field is non-finite exactly where its index points at a non-finite codebook
    row, so K rows are checked, and N indices only when some row is bad. (A bad
    row that no Gaussian uses is accepted, as the JavaScript reader does.)
    """
    n, shapes = compressed.num_gaussians, field_shapes(compressed.sh_degree)
    columns = {
        field: (group, start)
        for group, field, start, _ in field_columns(compressed.meta["groups"], shapes)
    }
    for field in FIELDS:  # validate_finite's order, so the same field is named
        width = math.prod(shapes[field])
        if field in columns:
            group, start = columns[field]
            rows = compressed.codebooks[group].numpy()[:, start : start + width]
            if np.isfinite(rows).all():  # one pass; the per-row test only when it fails
                continue
            bad = ~np.isfinite(rows).all(axis=1)[compressed.indices[group].numpy()]
        elif field in compressed.raw_fields and width:
            values = compressed.raw_fields[field].numpy().reshape(n, width)
            bad = ~np.isfinite(values).all(axis=1)
        else:
            continue
        if bad.any():
            raise CorruptFileError(
                f"{source}: Splats.{field} holds non-finite values in {int(bad.sum())} "
                f"Gaussian(s), first at index {int(bad.argmax())}"
            )
