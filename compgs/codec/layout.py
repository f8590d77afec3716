"""What a .cgs file must satisfy before any payload is read (docs/format.md, "Reading safely").

Header and table (their CRC, every section's bounds), the metadata (JSON, types,
groups, fields stored exactly once) and the decoded size of every section as
implied by N and the metadata. Only a file that passes all of that has its
payloads read (`compgs.codec.reader`), so no allocation is sized by a number the
file's real data does not back.
"""

from __future__ import annotations

import json
import math

import numpy as np

from compgs.codec import container
from compgs.codec.bitpack import bits_for, packed_size
from compgs.codec.cgs import FLOAT_BYTES, OPACITY_BYTES, POSITION_BYTES, field_shapes
from compgs.errors import InputError
from compgs.splats import FIELDS


def checked_layout(data: bytes, source: str, fail):
    """(N, meta, table, u16 bounding box or None) once sizes and metadata agree.

    ``fail(section, message)`` raises; it is called for the first problem found.
    """
    _, n, table = container.read_table(data, source)
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
    bbox = None
    if pos_enc == "u16":
        try:
            lo, hi = (np.asarray(v, dtype=np.float64).reshape(3) for v in meta["positions"]["bbox"])
        except (KeyError, ValueError, TypeError):
            fail("meta", "u16 positions need a bounding box")
        bbox = lo, hi
    return n, meta, table, bbox


def _json_int(value) -> int:
    """A JSON integer (not a string, float or boolean that int() would accept)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected an integer, got {value!r}")
    return value
