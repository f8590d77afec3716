"""INRIA 3DGS PLY: binary (or ASCII) PLY with one `vertex` element of floats.

Reading checks the header against the file size before any array sized from
the declared vertex count is allocated; writing emits exactly the INRIA layout
(62 float32 per Gaussian at SH degree 3), so PLY -> Splats -> PLY is bit-exact.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import plyfile
import torch

from compgs.atomic import atomic_open
from compgs.errors import CorruptFileError, UnsupportedFormatError
from compgs.io.common import checked_finite, read_input_bytes
from compgs.splats import Splats, sh_degree_from_rest

MAX_HEADER_BYTES = 1 << 16
PLY_NUMPY = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}  # fmt: skip
PLY_TYPE_SIZES = {name: np.dtype(code).itemsize for name, code in PLY_NUMPY.items()}
REQUIRED = (
    ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity"]
    + [f"scale_{i}" for i in range(3)]
    + [f"rot_{i}" for i in range(4)]
)


def sniff(head: bytes) -> bool:
    return head.startswith(b"ply\n") or head.startswith(b"ply\r\n")


def _parse_header(path: Path, data: bytes) -> tuple[str, int, list[tuple[str, str]], int | None]:
    """Return (format, vertex count, vertex properties, offset of the first vertex row in a
    binary file, or None when it cannot be known from the header: ASCII, or list rows before)."""
    end = data.find(b"end_header", 0, MAX_HEADER_BYTES)
    if not sniff(data[:5]) or end < 0:
        raise CorruptFileError(f"{path}: not a PLY file (no 'ply' magic or no end_header)")
    body_start = data.find(b"\n", end) + 1
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    fmt, elements = "", []  # elements: [name, count, [(type, name)], has_list]
    for line in lines[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) >= 2:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3 and words[2].isdigit():
            elements.append([words[1], int(words[2]), [], False])
        elif words[0] == "property" and elements and len(words) >= 3:
            if words[1] == "list":
                elements[-1][3] = True
            elif words[1] in PLY_TYPE_SIZES:
                elements[-1][2].append((words[1], words[2]))
            else:
                raise CorruptFileError(f"{path}: unknown PLY property type {words[1]!r}")
        else:
            raise CorruptFileError(f"{path}: malformed PLY header line {line!r}")
    vertex = [e for e in elements if e[0] == "vertex"]
    if not vertex:
        raise CorruptFileError(f"{path}: PLY has no 'vertex' element")
    _, count, props, has_list = vertex[0]
    if has_list:
        raise UnsupportedFormatError(f"{path}: list properties on 'vertex' are not 3DGS data")
    # Bytes that must be present: fixed-size rows of every element up to the vertex one.
    needed, before, offset_known = 0, 0, True
    for name, n, ps, lst in elements:
        if name == "vertex":
            needed += n * sum(PLY_TYPE_SIZES[t] for t, _ in ps)
            break
        if lst:
            needed, offset_known = 0, False  # variable-size rows: only check vertex itself
        else:
            rows = n * sum(PLY_TYPE_SIZES[t] for t, _ in ps)
            needed, before = needed + rows, before + rows
    available = len(data) - body_start
    if fmt in ("binary_little_endian", "binary_big_endian"):
        if available < needed:
            raise CorruptFileError(
                f"{path}: truncated PLY: header declares {count} vertices "
                f"({needed} bytes) but only {available} bytes follow the header"
            )
    elif fmt == "ascii":
        # Each value takes at least one digit and one separator.
        if count * len(props) * 2 > available:
            raise CorruptFileError(f"{path}: truncated PLY: {count} vertices declared")
    else:
        raise CorruptFileError(f"{path}: unknown PLY format {fmt!r}")
    binary = fmt != "ascii"
    return fmt, count, props, body_start + before if binary and offset_known else None


def read_ply(path: str | os.PathLike) -> Splats:
    path = Path(path)
    data = read_input_bytes(path)
    fmt, count, props, vertex_offset = _parse_header(path, data)
    names = [name for _, name in props]
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise CorruptFileError(
            f"{path}: PLY is missing required 3DGS properties: {', '.join(missing)}"
        )
    rest = sorted(
        (n for n in names if n.startswith("f_rest_") and n[7:].isdigit()), key=lambda n: int(n[7:])
    )
    if len(rest) % 3 or [int(n[7:]) for n in rest] != list(range(len(rest))):
        raise CorruptFileError(f"{path}: f_rest_* properties are not a complete SH set")
    try:
        sh_degree_from_rest(len(rest) // 3)
    except Exception as e:
        raise CorruptFileError(f"{path}: {len(rest)} f_rest_* properties match no SH degree") from e
    if vertex_offset is not None:
        # The rows as one structured array, as plyfile does for files on disk (from bytes in
        # memory plyfile parses value by value: 100x slower).
        order = "<" if fmt == "binary_little_endian" else ">"
        dtype = np.dtype([(name, order + PLY_NUMPY[t]) for t, name in props])
        vertex = np.frombuffer(data, dtype=dtype, count=count, offset=vertex_offset)
    else:
        try:
            vertex = plyfile.PlyData.read(io.BytesIO(data))["vertex"].data
        except Exception as e:  # plyfile raises several unrelated types on bad input
            raise CorruptFileError(f"{path}: unreadable PLY: {e}") from e
    if len(vertex) != count:
        raise CorruptFileError(f"{path}: PLY holds {len(vertex)} of {count} declared vertices")

    def cols(keys: list[str]) -> np.ndarray:
        return np.stack([np.asarray(vertex[k], dtype=np.float32) for k in keys], axis=-1)

    n, k = count, len(rest) // 3
    # f_rest is channel-major: R for every band, then G, then B.
    shn = cols(rest).reshape(n, 3, k).transpose(0, 2, 1) if k else np.zeros((n, 0, 3), np.float32)
    splats = Splats(
        means=torch.from_numpy(cols(["x", "y", "z"])),
        quats=torch.from_numpy(cols([f"rot_{i}" for i in range(4)])),
        scales=torch.from_numpy(cols([f"scale_{i}" for i in range(3)])),
        opacities=torch.from_numpy(cols(["opacity"])[:, 0].copy()),
        sh0=torch.from_numpy(cols(["f_dc_0", "f_dc_1", "f_dc_2"]).reshape(n, 1, 3)),
        shN=torch.from_numpy(np.ascontiguousarray(shn)),
    )
    return checked_finite(path, splats)


def ply_property_names(sh_degree: int) -> list[str]:
    k = 3 * ((sh_degree + 1) ** 2 - 1)
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(k)]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def write_ply(splats: Splats, path: str | os.PathLike) -> None:
    a = splats.numpy()
    n, k = splats.num_gaussians, splats.shN.shape[1]
    table = np.concatenate(
        [
            a["means"],
            np.zeros((n, 3), np.float32),
            a["sh0"].reshape(n, 3),
            a["shN"].transpose(0, 2, 1).reshape(n, 3 * k),
            a["opacities"].reshape(n, 1),
            a["scales"],
            a["quats"],
        ],
        axis=1,
    )
    names = ply_property_names(splats.sh_degree)
    dtype = np.dtype([(name, "<f4") for name in names])
    rows = np.ascontiguousarray(table, dtype="<f4").view(dtype).reshape(n)
    element = plyfile.PlyElement.describe(rows, "vertex")
    with atomic_open(path) as f:
        plyfile.PlyData([element], text=False, byte_order="<").write(f)
