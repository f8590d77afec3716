"""Bytes: bit packing, run lengths, the .cgs container, and Splats <-> .cgs."""

from compgs.codec.cgs import (
    DEFAULT_GROUPS,
    CodecOptions,
    encode,
    encode_ordered,
    group_vectors,
)
from compgs.codec.files import read_cgs, read_cgs_compressed, size_breakdown
from compgs.codec.reader import CompressedSplats, decode, decode_compressed

__all__ = [
    "DEFAULT_GROUPS",
    "CodecOptions",
    "CompressedSplats",
    "decode",
    "decode_compressed",
    "encode",
    "encode_ordered",
    "group_vectors",
    "read_cgs",
    "read_cgs_compressed",
    "size_breakdown",
]
