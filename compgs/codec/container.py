"""The `.cgs` container: header, section table, section payloads (docs/format.md).

The container knows bytes only: named sections, an optional zstd stage per
section (kept only when it makes the section smaller; for sections of 2- or
4-byte numbers optionally after a byte shuffle, which groups the bytes of equal
significance so that zstd sees the slowly varying high bytes together), a CRC32 per stored
section and one over the header and table. Readers validate every offset,
length and checksum before touching a payload, and inflate zstd sections into
a buffer that starts at a size the stored bytes can plausibly produce and only
doubles once real output has filled it, so no allocation is ever sized from a
number read from the file before real data backs it.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib

from compgs.errors import CorruptFileError

MAGIC = b"\x89CGS\r\n\x1a\n"
VERSION = 1
HEADER = struct.Struct("<8sIIQII")  # magic, version, flags, N, num_sections, header CRC
ENTRY = struct.Struct("<16sB7xQQQI4x")  # name, encoding, offset, stored, raw length, CRC
MAX_SECTIONS = 64
RAW, ZSTD, ZSTD_SHUFFLE2, ZSTD_SHUFFLE4 = 0, 1, 2, 3
ENCODINGS = {
    RAW: "raw",
    ZSTD: "zstd",
    ZSTD_SHUFFLE2: "zstd-shuffle2",
    ZSTD_SHUFFLE4: "zstd-shuffle4",
}
SHUFFLE_WIDTH = {"zstd-shuffle2": 2, "zstd-shuffle4": 4}
INFLATE_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class SectionInfo:
    name: str
    encoding: str  # "raw", "zstd", "zstd-shuffle2" or "zstd-shuffle4"
    offset: int
    stored: int  # bytes in the file
    raw: int  # bytes after the entropy stage is undone
    crc32: int


@dataclasses.dataclass
class Container:
    version: int
    num_gaussians: int
    sections: dict[str, bytes]  # decoded payloads
    table: dict[str, SectionInfo]
    header_bytes: int  # header + section table


# zstd's levels: negative ones trade ratio for speed, 22 is the slowest and smallest.
ZSTD_MIN_LEVEL, ZSTD_MAX_LEVEL = -7, 22


def header_size(num_sections: int) -> int:
    return HEADER.size + num_sections * ENTRY.size


def shuffle(raw: bytes, width: int) -> bytes:
    """Byte ``j`` of every ``width``-byte element, for j = 0 .. width - 1, one plane after another."""
    import numpy as np

    return np.frombuffer(raw, np.uint8).reshape(-1, width).T.tobytes()


def unshuffle(planes, width: int):
    """Inverse of `shuffle`, as a uint8 array.

    Computed as little-endian ``width``-byte integers, plane j shifted by 8 j bits
    and OR-ed in: a few contiguous vectorised passes (strided byte copies cost 2x,
    a transpose 10x at 6 MB).
    """
    import numpy as np

    planes = np.frombuffer(planes, np.uint8).reshape(width, -1)
    word = np.dtype(f"<u{width}")
    out = np.left_shift(planes[-1], word.type(8 * (width - 1)), dtype=word)
    for j in range(width - 2, 0, -1):
        out |= np.left_shift(planes[j], word.type(8 * j), dtype=word)
    out |= planes[0]
    return out.view(np.uint8)


def pack_container(
    num_gaussians: int,
    sections: dict[str, bytes],
    zstd_level: int | None,
    widths: dict[str, int] | None = None,
) -> bytes:
    """Lay out sections in order; each is zstd-compressed when that makes it smaller.

    ``widths`` gives the element size of sections that hold 2- or 4-byte numbers: those
    are also tried byte-shuffled before zstd, and the smallest of the three is kept.
    """
    if len(sections) > MAX_SECTIONS:
        raise ValueError(f"at most {MAX_SECTIONS} sections, got {len(sections)}")
    stored = []
    for name, raw in sections.items():
        if len(name.encode("ascii")) > 16:
            raise ValueError(f"section name {name!r} is longer than 16 bytes")
        encoding, payload = RAW, raw
        if zstd_level is not None and raw:
            import zstandard

            compressor = zstandard.ZstdCompressor(level=zstd_level)
            candidates = [(ZSTD, compressor.compress(raw))]
            width = (widths or {}).get(name, 1)
            if width in (2, 4) and len(raw) % width == 0:
                code = ZSTD_SHUFFLE2 if width == 2 else ZSTD_SHUFFLE4
                candidates.append((code, compressor.compress(shuffle(raw, width))))
            code, packed = min(candidates, key=lambda c: len(c[1]))
            if len(packed) < len(raw):
                encoding, payload = code, packed
        stored.append((name, encoding, payload, len(raw)))
    offset = header_size(len(stored))
    table = b""
    for name, encoding, payload, raw_len in stored:
        crc = zlib.crc32(payload)
        table += ENTRY.pack(name.encode("ascii"), encoding, offset, len(payload), raw_len, crc)
        offset += len(payload)
    head = HEADER.pack(MAGIC, VERSION, 0, num_gaussians, len(stored), 0)[:-4]
    crc = zlib.crc32(head + table)
    return head + struct.pack("<I", crc) + table + b"".join(p for _, _, p, _ in stored)


def read_table(data: bytes, source: str = "<bytes>") -> tuple[int, int, dict[str, SectionInfo]]:
    """(version, N, table) after checking the header, its CRC and every section's bounds."""
    fail = _failer(source)
    if len(data) < HEADER.size:
        fail("header", f"file is {len(data)} bytes, shorter than the {HEADER.size}-byte header")
    magic, version, _flags, n, count, crc = HEADER.unpack_from(data)
    if magic != MAGIC:
        fail("header", "not a .cgs file (wrong magic)")
    if version != VERSION:
        fail("header", f"unsupported version {version} (this reader knows {VERSION})")
    if count > MAX_SECTIONS:
        fail("header", f"{count} sections declared (at most {MAX_SECTIONS})")
    end = header_size(count)
    if len(data) < end:
        fail("section table", f"file ends inside the table of {count} sections")
    if zlib.crc32(data[: HEADER.size - 4] + data[HEADER.size : end]) != crc:
        fail("header", "CRC mismatch in header or section table")
    table: dict[str, SectionInfo] = {}
    expected_offset = end
    for i in range(count):
        raw_name, encoding, offset, stored, raw, scrc = ENTRY.unpack_from(
            data, HEADER.size + i * ENTRY.size
        )
        try:
            name = raw_name.rstrip(b"\0").decode("ascii")
        except UnicodeDecodeError:
            fail(f"section #{i}", "name is not ASCII")
        if not name or name in table:
            fail(f"section #{i}", f"empty or repeated name {name!r}")
        if encoding not in ENCODINGS:
            fail(name, f"unknown encoding {encoding}")
        if offset != expected_offset or offset + stored > len(data):
            fail(name, f"out of bounds (offset {offset}, {stored} bytes, file {len(data)} bytes)")
        if encoding == RAW and raw != stored:
            fail(name, f"raw section declares {raw} bytes but stores {stored}")
        if raw % SHUFFLE_WIDTH.get(ENCODINGS[encoding], 1):
            fail(name, f"{raw} bytes are not whole {ENCODINGS[encoding][-1]}-byte elements")
        table[name] = SectionInfo(name, ENCODINGS[encoding], offset, stored, raw, scrc)
        expected_offset = offset + stored
    return version, n, table


def read_section(data: bytes, info: SectionInfo, source: str = "<bytes>") -> bytes:
    """The decoded payload of one section, CRC-checked, inflated as `section_array` does."""
    return section_array(data, info, source).tobytes()


def section_array(data: bytes | memoryview, info: SectionInfo, source: str = "<bytes>"):
    """`read_section` as a uint8 numpy array, without copying a raw section.

    A raw section is a read-only view into ``data``; an inflated one is a fresh
    array. This is the decoder's path: payloads of several MB are neither sliced
    into new bytes objects nor rebuilt from chunk lists.
    """
    import numpy as np

    fail = _failer(source)
    payload = memoryview(data)[info.offset : info.offset + info.stored]
    if zlib.crc32(payload) != info.crc32:
        fail(info.name, "CRC mismatch")
    if info.encoding == "raw":
        return np.frombuffer(payload, np.uint8)
    out = _inflate(payload, info, fail)
    if info.encoding in SHUFFLE_WIDTH:
        return unshuffle(out, SHUFFLE_WIDTH[info.encoding])
    return out


def _inflate(payload: memoryview, info: SectionInfo, fail):
    """The one zstd frame in ``payload``, which must inflate to exactly ``info.raw`` bytes.

    The output buffer starts at a size the stored bytes can plausibly produce and
    doubles only once real output has filled it, so a table that claims a huge
    decoded length allocates no more than about twice what the frame really holds.
    """
    import numpy as np
    import zstandard

    capacity = min(info.raw + 1, max(INFLATE_CHUNK, 8 * info.stored))
    out = np.empty(capacity, np.uint8)
    filled = 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(payload) as reader:
            while True:
                if filled == len(out):
                    if len(out) > info.raw:  # one byte more than the table allows
                        break
                    grown = np.empty(min(info.raw + 1, 2 * len(out)), np.uint8)
                    grown[:filled] = out[:filled]
                    out = grown
                got = reader.readinto(memoryview(out)[filled:])
                if not got:
                    break
                filled += got
    except zstandard.ZstdError as e:
        fail(info.name, f"corrupt zstd stream: {e}")
    if filled != info.raw:
        fail(
            info.name,
            f"inflates to {filled}{'+' if filled > info.raw else ''} bytes, table says {info.raw}",
        )
    return out[:filled]


def unpack_container(data: bytes, source: str = "<bytes>") -> Container:
    version, n, table = read_table(data, source)
    sections = {name: read_section(data, info, source) for name, info in table.items()}
    return Container(version, n, sections, table, header_size(len(table)))


def _failer(source: str):
    def fail(section: str, message: str):
        raise CorruptFileError(f"{source}: section '{section}': {message}")

    return fail
