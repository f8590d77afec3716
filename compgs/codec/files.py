"""`.cgs` files: read into Splats, and the size breakdown `compgs info` prints."""

from __future__ import annotations

import os
from pathlib import Path

from compgs.codec import container
from compgs.codec.reader import CompressedSplats, decode_compressed
from compgs.splats import Splats


def sniff(head: bytes) -> bool:
    return head.startswith(container.MAGIC)


def _read(path: str | os.PathLike) -> bytes:
    from compgs.io.common import read_input_bytes

    return read_input_bytes(path)


def read_cgs_compressed(path: str | os.PathLike) -> CompressedSplats:
    return decode_compressed(_read(path), str(path))


def read_cgs(path: str | os.PathLike) -> Splats:
    # decode_compressed has already rejected non-finite codebooks, positions, opacities
    # and raw fields, so every gathered field is finite: no pass over the whole output.
    return read_cgs_compressed(path).to_splats()


def size_breakdown(data: bytes, source: str = "<bytes>") -> dict:
    """Bytes by category (the paper's Table 3.6) and bits per Gaussian by attribute."""
    compressed = decode_compressed(data, source)
    _, n, table = container.read_table(data, source)
    header = container.header_size(len(table))
    categories = {"non-quantized attributes": 0, "indices": 0, "codebooks": 0, "metadata": header}
    attributes: dict[str, int] = {}
    for name, info in table.items():
        kind, _, attr = name.partition(".")
        if name == "meta":
            categories["metadata"] += info.stored
            continue
        if kind in ("idx", "rle"):
            categories["indices"] += info.stored
        elif kind == "cb":
            categories["codebooks"] += info.stored
        else:
            categories["non-quantized attributes"] += info.stored
        attr = attr or name
        attributes[attr] = attributes.get(attr, 0) + info.stored
    total = len(data)
    return {
        "num_gaussians": n,
        "total_bytes": total,
        "categories": categories,
        "attributes": attributes,
        "sections": {name: (info.encoding, info.stored, info.raw) for name, info in table.items()},
        "meta": compressed.meta,
    }


def describe(path: Path) -> list[tuple[str, list[tuple[str, str]]]]:
    """Sections for `compgs info`: storage breakdown and per-attribute bits."""
    b = size_breakdown(_read(path), str(path))
    n, total = b["num_gaussians"], b["total_bytes"]

    def bits(size: int) -> str:
        return f"{8 * size / n:.2f}" if n else "-"

    meta = b["meta"]
    rows = [
        (name, f"{size:,} B  ({size / total:.1%})  {bits(size)} bits/G")
        for name, size in b["categories"].items()
    ]
    rows.append(("total", f"{total:,} B  {bits(total)} bits/G  ({total / max(n, 1):.2f} B/G)"))
    groups = {g["name"]: g for g in meta["groups"]}
    attrs = []
    for name, size in b["attributes"].items():
        g = groups.get(name)
        what = (
            f"K={g['k']}, {g['bits']}-bit {'runs' if g['index'] == 'runs' else 'indices'}"
            if g
            else ""
        )
        attrs.append((name, f"{bits(size)} bits/G  {size:,} B  {what}".rstrip()))
    settings = [
        ("sort key", str(meta.get("sort_key"))),
        ("positions", meta["positions"]["encoding"]),
        ("opacities", meta["opacities"]["encoding"]),
        ("creator", meta.get("creator", "?")),
        ("method", str(meta.get("metadata", {}).get("method", "-"))),
    ]
    sections = [
        (f"{name} ({enc})", f"{stored:,} B stored, {raw:,} B raw")
        for name, (enc, stored, raw) in b["sections"].items()
    ]
    return [
        ("Storage breakdown", rows),
        ("Bits per Gaussian by attribute", attrs),
        ("Settings", settings),
        ("Sections", sections),
    ]
