"""Niantic `.spz`: versions 1-3 are a gzip stream of a 16-byte header and
attribute-major arrays; version 4 is a 32-byte plain header, a table of
contents and one zstd stream per attribute.

Reads versions 1-4 and writes 3 (default) or 4, following Niantic's reference
library (load-spz.cc): 24-bit fixed-point positions, u8 alpha / colour /
log-scale, "smallest three" rotations (v3+) or xyz bytes (v2), and SH as
int8-like bytes quantised to 5 bits (band 1) and 4 bits (bands 2-3).

SPZ stores RUB axes (x right, y up, z back); Splats and PLY use RDF (x right,
y down, z forward). The two differ by a 180-degree turn about x, applied here
to positions, rotations and SH coefficients in both directions.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib

import numpy as np
import torch

from compgs.atomic import atomic_open
from compgs.codec.u8 import opacity_logit_to_u8, to_u8, u8_to_opacity_logit
from compgs.errors import CorruptFileError, InputError, UnsupportedFormatError
from compgs.io.common import checked_finite, read_input_bytes
from compgs.splats import Splats, num_rest_coeffs

MAGIC = 0x5053474E  # "NGSP" little-endian
HEADER = struct.Struct("<IIIBBBB")
HEADER_V4 = struct.Struct("<IIIBBBBI12x")  # ... num_streams u8, toc offset u32, reserved
TOC_ENTRY = struct.Struct("<QQ")  # compressed size, uncompressed size
COLOR_SCALE = 0.15
SQRT1_2 = 1.0 / math.sqrt(2.0)
FLAG_ANTIALIASED = 0x1
# RDF <-> RUB (flip y and z): sign of each position axis, quaternion xyz, SH coefficient.
FLIP_P = np.array([1.0, -1.0, -1.0])
FLIP_Q_XYZ = np.array([1.0, -1.0, -1.0])
FLIP_SH = np.array([-1, -1, 1, -1, 1, 1, -1, 1, -1, 1, -1, -1, 1, -1, 1], dtype=np.float64)
# For "smallest three": the indices (xyzw order) that are stored when index L is dropped.
OTHERS = np.array([[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]])


def sniff(head: bytes) -> bool:
    return head[:2] == b"\x1f\x8b" or head[:4] == b"NGSP"


# --- rotations ---------------------------------------------------------------


def pack_smallest_three(q_xyzw: np.ndarray) -> np.ndarray:
    """Unit quaternions [N,4] (xyzw) -> u32 codes: 2-bit index of the largest, 3 x 10 bits."""
    q = q_xyzw / np.maximum(np.linalg.norm(q_xyzw, axis=1, keepdims=True), 1e-12)
    largest = np.argmax(np.abs(q), axis=1)
    negate = q[np.arange(len(q)), largest] < 0
    comp = largest.astype(np.uint32)
    for j in range(3):
        v = q[np.arange(len(q)), OTHERS[largest, j]]
        negbit = ((v < 0) ^ negate).astype(np.uint32)
        mag = np.minimum((511.0 * (np.abs(v) / SQRT1_2) + 0.5).astype(np.uint32), 511)
        comp = (comp << 10) | (negbit << 9) | mag
    return comp


def unpack_smallest_three(comp: np.ndarray) -> np.ndarray:
    comp = comp.astype(np.uint32)
    largest = (comp >> 30).astype(np.int64)
    fields = np.stack([(comp >> (10 * (2 - j))) & 0x3FF for j in range(3)], axis=1)
    vals = SQRT1_2 * (fields & 0x1FF).astype(np.float64) / 511.0
    vals = np.where((fields >> 9) & 1, -vals, vals)
    q = np.zeros((len(comp), 4))
    np.put_along_axis(q, OTHERS[largest], vals, axis=1)
    q[np.arange(len(q)), largest] = np.sqrt(np.maximum(0.0, 1.0 - (vals**2).sum(axis=1)))
    return q


# --- SH ----------------------------------------------------------------------


def quantize_sh(x: np.ndarray, bucket: int) -> np.ndarray:
    q = np.round(x.astype(np.float64) * 128.0).astype(np.int64) + 128
    q = (q + bucket // 2) // bucket * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


# --- reading -------------------------------------------------------------------


def _section_sizes(n: int, version: int, sh_degree: int) -> list[tuple[str, int]]:
    return [
        ("positions", n * 3 * (2 if version == 1 else 3)),
        ("alphas", n),
        ("colors", n * 3),
        ("scales", n * 3),
        ("rotations", n * (4 if version >= 3 else 3)),
        ("sh", n * num_rest_coeffs(sh_degree) * 3),
    ]


def _check_header(path, version: int, sh_degree: int, fractional_bits: int) -> None:
    if not 1 <= version <= 4:
        raise UnsupportedFormatError(f"{path}: SPZ version {version} is not supported (1-4)")
    if sh_degree > 3:
        raise CorruptFileError(f"{path}: SPZ header declares SH degree {sh_degree} (max 3)")
    if fractional_bits > 23:
        raise CorruptFileError(f"{path}: SPZ header declares {fractional_bits} fractional bits")


def _inflate_gzip(path, data: bytes) -> tuple[tuple, bytes]:
    """Header fields and exactly the payload they declare, never inflating more."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        head = d.decompress(data, HEADER.size)
    except zlib.error as e:
        raise CorruptFileError(f"{path}: SPZ gzip stream is corrupt: {e}") from e
    if len(head) < HEADER.size:
        raise CorruptFileError(f"{path}: SPZ stream ends inside its 16-byte header")
    fields = HEADER.unpack(head)
    magic, version, n, sh_degree, fractional_bits, _, _ = fields
    if magic != MAGIC:
        raise CorruptFileError(f"{path}: not an SPZ file (wrong magic 0x{magic:08x})")
    _check_header(path, version, sh_degree, fractional_bits)
    if version == 4:
        raise CorruptFileError(f"{path}: SPZ version 4 must not be gzip-wrapped")
    expected = sum(size for _, size in _section_sizes(n, version, sh_degree))
    # Bounded: inflate at most what the header declares (a bomb cannot grow us).
    try:
        body = d.decompress(d.unconsumed_tail, expected) if expected else b""
    except zlib.error as e:
        raise CorruptFileError(f"{path}: SPZ gzip stream is corrupt: {e}") from e
    if len(body) < expected:
        raise CorruptFileError(
            f"{path}: SPZ header declares {n} Gaussians ({expected} bytes) "
            f"but the stream holds only {len(body)} bytes"
        )
    return fields, body


def _inflate_v4(path, data: bytes) -> tuple[tuple, bytes]:
    """Version 4: plain header, table of contents, one zstd stream per attribute."""
    import zstandard

    if len(data) < HEADER_V4.size:
        raise CorruptFileError(f"{path}: SPZ file ends inside its 32-byte header")
    magic, version, n, sh_degree, fractional_bits, flags, num_streams, toc = HEADER_V4.unpack_from(
        data
    )
    _check_header(path, version, sh_degree, fractional_bits)
    if version != 4:
        raise CorruptFileError(f"{path}: uncompressed SPZ header with version {version} (not 4)")
    sections = [(name, size) for name, size in _section_sizes(n, 4, sh_degree) if size]
    if num_streams != len(sections):
        raise CorruptFileError(
            f"{path}: SPZ declares {num_streams} streams, {len(sections)} expected for {n} Gaussians"
        )
    if toc < HEADER_V4.size or toc + num_streams * TOC_ENTRY.size > len(data):
        raise CorruptFileError(f"{path}: SPZ table of contents lies outside the file")
    offset, chunks = toc + num_streams * TOC_ENTRY.size, []
    for i, (name, size) in enumerate(sections):
        packed, unpacked = TOC_ENTRY.unpack_from(data, toc + i * TOC_ENTRY.size)
        if unpacked != size or offset + packed > len(data):
            raise CorruptFileError(f"{path}: SPZ stream {name!r} has a bad size or lies outside")
        try:
            # decompressobj grows with the real output, not with the declared size
            chunk = (
                zstandard.ZstdDecompressor()
                .decompressobj()
                .decompress(data[offset : offset + packed])
            )
        except zstandard.ZstdError as e:
            raise CorruptFileError(f"{path}: SPZ stream {name!r} is corrupt: {e}") from e
        if len(chunk) != size:
            raise CorruptFileError(
                f"{path}: SPZ stream {name!r} holds {len(chunk)} bytes, header implies {size}"
            )
        chunks.append(chunk)
        offset += packed
    return (magic, version, n, sh_degree, fractional_bits, flags, 0), b"".join(chunks)


def read_spz(path: str | os.PathLike) -> Splats:
    data = read_input_bytes(path)
    inflate = _inflate_v4 if data[:4] == b"NGSP" else _inflate_gzip
    (_, version, n, sh_degree, fractional_bits, _, _), body = inflate(path, data)
    parts, offset = {}, 0
    for name, size in _section_sizes(n, version, sh_degree):
        parts[name] = np.frombuffer(body, dtype=np.uint8, count=size, offset=offset)
        offset += size

    if version == 1:
        means = parts["positions"].view("<f2").astype(np.float64).reshape(n, 3)
    else:
        b = parts["positions"].reshape(n * 3, 3).astype(np.int32)
        fixed = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
        means = fixed.reshape(n, 3).astype(np.float64) / (1 << fractional_bits)
    means = means * FLIP_P

    if version >= 3:
        q_xyzw = unpack_smallest_three(parts["rotations"].view("<u4"))
    else:
        xyz = parts["rotations"].reshape(n, 3).astype(np.float64) / 127.5 - 1.0
        w = np.sqrt(np.maximum(0.0, 1.0 - (xyz**2).sum(axis=1, keepdims=True)))
        q_xyzw = np.concatenate([xyz, w], axis=1)
    quats = np.concatenate([q_xyzw[:, 3:], q_xyzw[:, :3] * FLIP_Q_XYZ], axis=1)

    k = num_rest_coeffs(sh_degree)
    sh = (parts["sh"].reshape(n, k, 3).astype(np.float64) - 128.0) / 128.0
    sh = sh * FLIP_SH[:k, None]
    colors = (parts["colors"].reshape(n, 3).astype(np.float64) / 255.0 - 0.5) / COLOR_SCALE
    splats = Splats(
        means=torch.from_numpy(means.astype(np.float32)),
        quats=torch.from_numpy(quats.astype(np.float32)),
        scales=torch.from_numpy(
            (parts["scales"].reshape(n, 3).astype(np.float32) / 16.0 - 10.0).astype(np.float32)
        ),
        opacities=torch.from_numpy(u8_to_opacity_logit(parts["alphas"])),
        sh0=torch.from_numpy(colors.astype(np.float32).reshape(n, 1, 3)),
        shN=torch.from_numpy(sh.astype(np.float32)),
    )
    return checked_finite(path, splats)


# --- writing -------------------------------------------------------------------


def fractional_bits_for(means: np.ndarray, preferred: int = 12) -> int:
    """The most fractional bits (<= preferred) at which every coordinate fits in 24 bits."""
    extent = float(np.abs(means).max()) if means.size else 0.0
    limit = (1 << 23) - 1
    bits = preferred
    while bits > 0 and extent * (1 << bits) > limit:
        bits -= 1
    if extent * (1 << bits) > limit:
        raise InputError(f"positions up to {extent:g} do not fit SPZ's 24-bit fixed point")
    return bits


def encode_spz(splats: Splats, *, version: int = 3, antialiased: bool = False) -> bytes:
    """SPZ bytes: version 3 (gzip, the widely read one) or 4 (zstd streams)."""
    if version not in (3, 4):
        raise InputError(f"SPZ can be written as version 3 or 4, not {version}")
    a = {k: v.astype(np.float64) for k, v in splats.numpy().items()}
    n, degree = splats.num_gaussians, splats.sh_degree
    bits = fractional_bits_for(a["means"])
    fixed = np.round(a["means"] * FLIP_P * (1 << bits)).astype(np.int64).reshape(-1)
    positions = np.stack([(fixed >> s) & 0xFF for s in (0, 8, 16)], axis=1).astype(np.uint8)

    q = a["quats"]
    q_xyzw = np.concatenate([q[:, 1:] * FLIP_Q_XYZ, q[:, :1]], axis=1)
    k = num_rest_coeffs(degree)
    sh = a["shN"] * FLIP_SH[:k, None]
    sh_bytes = np.empty((n, k, 3), np.uint8)
    sh_bytes[:, : min(k, 3)] = quantize_sh(sh[:, :3], 1 << (8 - 5))
    if k > 3:
        sh_bytes[:, 3:] = quantize_sh(sh[:, 3:], 1 << (8 - 4))
    sections = [
        positions.tobytes(),
        opacity_logit_to_u8(a["opacities"]).tobytes(),
        to_u8(a["sh0"].reshape(n, 3) * (COLOR_SCALE * 255.0) + 0.5 * 255.0).tobytes(),
        to_u8((a["scales"] + 10.0) * 16.0).tobytes(),
        pack_smallest_three(q_xyzw).astype("<u4").tobytes(),
        sh_bytes.tobytes(),
    ]
    flags = FLAG_ANTIALIASED if antialiased else 0
    if version == 3:
        header = HEADER.pack(MAGIC, 3, n, degree, bits, flags, 0)
        return gzip.compress(header + b"".join(sections), compresslevel=6, mtime=0)
    import zstandard

    sections = [sec for sec in sections if sec]
    streams = [zstandard.ZstdCompressor(level=12).compress(sec) for sec in sections]
    header = HEADER_V4.pack(MAGIC, 4, n, degree, bits, flags, len(streams), HEADER_V4.size)
    toc = b"".join(TOC_ENTRY.pack(len(z), len(sec)) for z, sec in zip(streams, sections))
    return header + toc + b"".join(streams)


def write_spz(splats: Splats, path: str | os.PathLike, *, version: int = 3) -> None:
    data = encode_spz(splats, version=version)
    with atomic_open(path) as f:
        f.write(data)
