import struct
import zlib

import numpy as np
import pytest
import torch

from compgs.codec import CodecOptions, container, decode, decode_compressed, encode
from compgs.codec.bitpack import bits_for, packed_size
from compgs.errors import CorruptFileError, InputError
from compgs.splats import FIELDS
from tests.codec.helpers import random_quantized


def test_f16_codebooks_are_gathered_exactly():
    splats, cbs, idx = tagged(200, seed=4)
    out = decode(encode(splats, cbs, idx, CodecOptions(codebooks="f16")))
    source = source_of(out, idx)
    assert torch.equal(out.scales, cbs["scale"].half().float()[idx["scale"][source]])
    assert torch.equal(out.shN.reshape(200, -1), cbs["sh"].half().float()[idx["sh"][source]])


def canonical(splats):
    """Gaussians as a set: rows sorted by position, for order-free comparison."""
    order = np.lexsort(splats.means.numpy().T[::-1])
    return splats.index(torch.from_numpy(order))


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_lossless_round_trip_f32(degree):
    splats, cbs, idx = random_quantized(500, degree=degree, seed=degree)
    groups = {k: v for k, v in CodecOptions().groups.items() if degree or k != "sh"}
    cbs = {k: cbs[k] for k in groups}
    idx = {k: idx[k] for k in groups}
    opts = CodecOptions(groups=groups)
    back = decode(encode(splats, cbs, idx, opts))
    a, b = canonical(splats), canonical(back)
    for name in FIELDS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_quantized_fields_are_codebook_gathers_and_order_is_consistent():
    """Tag each Gaussian by a unique DC code; every attribute must travel with its tag."""
    n = 300
    splats, cbs, idx = tagged(n, seed=3)
    compressed = decode_compressed(
        encode(splats, cbs, idx, CodecOptions.bitq(positions="f32", codebooks="f32"))
    )
    out = compressed.to_splats()
    source = source_of(out, idx)
    assert torch.equal(out.means, splats.means[source])
    for name in ("sh", "scale", "rot"):
        assert torch.equal(compressed.indices[name], idx[name][source])
        fields = CodecOptions().groups[name]
        got = torch.cat([getattr(out, f).reshape(n, -1) for f in fields], 1)
        assert torch.equal(got, cbs[name][idx[name][source]])
    p = splats.activated_opacities()[source]
    assert (out.activated_opacities() - p).abs().max() <= 0.5 / 255 + 1e-6


def tagged(n, seed=0, **sizes):
    """Quantized splats whose DC code is a unique tag per Gaussian (dc codebook = arange)."""
    splats, cbs, idx = random_quantized(
        n, sizes={"dc": n, "sh": 16, "scale": 32, "rot": 8, **sizes}, seed=seed
    )
    cbs["dc"] = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
    idx["dc"] = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    splats.sh0 = cbs["dc"][idx["dc"]].reshape(n, 1, 3).clone()
    return splats, cbs, idx


def source_of(out, idx):
    """For each decoded Gaussian, the index of the input Gaussian it came from."""
    return torch.argsort(idx["dc"])[out.sh0[:, 0, 0].long() // 3]


@pytest.mark.parametrize("positions", ["f16", "u16"])
def test_position_precision(positions):
    splats, cbs, idx = tagged(2000, seed=5)
    splats.means *= 7.0
    out = decode(encode(splats, cbs, idx, CodecOptions(positions=positions)))
    want = splats.means[source_of(out, idx)].double()
    err = (out.means.double() - want).abs()
    if positions == "u16":
        span = splats.means.max(0).values - splats.means.min(0).values
        assert (err <= span / 65535 / 2 + 1e-6).all()
    else:  # half a float16 ulp: 2^-11 relative
        assert (err <= want.abs() * 2.0**-11 + 2.0**-25).all()


def test_sort_key_costs_no_per_gaussian_bits():
    n, k = 4000, 64
    splats, cbs, idx = random_quantized(n, sizes={"dc": 16, "sh": 16, "scale": 16, "rot": k})
    data = encode(splats, cbs, idx, CodecOptions(sort_key="rot", zstd_level=None))
    _, _, table = container.read_table(data)
    assert "idx.rot" not in table
    meta = decode_compressed(data).meta
    rot = next(g for g in meta["groups"] if g["name"] == "rot")
    assert rot["index"] == "runs" and table["rle.rot"].raw == packed_size(k, rot["count_bits"])
    assert rot["count_bits"] <= bits_for(n + 1)
    # the other indices cost exactly ceil(log2 K) bits each
    assert table["idx.dc"].raw == packed_size(n, 4)


def test_default_sort_key_is_the_widest_index():
    splats, cbs, idx = random_quantized(500, sizes={"dc": 16, "sh": 16, "scale": 128, "rot": 32})
    assert decode_compressed(encode(splats, cbs, idx)).meta["sort_key"] == "scale"


def test_bad_encode_inputs():
    splats, cbs, idx = random_quantized(50)
    with pytest.raises(InputError, match="needs a codebook"):
        encode(splats, {k: v for k, v in cbs.items() if k != "rot"}, idx)
    bad = dict(idx, dc=idx["dc"] + 1000)
    with pytest.raises(InputError, match="outside"):
        encode(splats, cbs, bad)
    with pytest.raises(InputError, match="codebook must be"):
        encode(splats, dict(cbs, dc=torch.zeros(4, 5)), idx)


def test_size_of_a_million_gaussians_with_bitq():
    """The issue's bar: <= 13 bytes per Gaussian at (4096, 4096, 16384, 16384) with BitQ."""
    n = 1_000_000
    sizes = {"dc": 4096, "sh": 4096, "scale": 16384, "rot": 16384}
    splats, cbs, idx = random_quantized(n, sizes=sizes, seed=11)
    data = encode(splats, cbs, idx, CodecOptions.bitq())
    assert len(data) / n <= 13.0
    back = decode_compressed(data)
    assert back.num_gaussians == n


# --- corruption -------------------------------------------------------------------


@pytest.fixture(scope="module")
def valid_file():
    splats, cbs, idx = random_quantized(400, sizes={"dc": 32, "sh": 32, "scale": 64, "rot": 64})
    return encode(splats, cbs, idx, CodecOptions.bitq())


def with_header(data: bytes, **changes) -> bytes:
    """Rewrite header fields and recompute the header CRC (a consistent-looking lie)."""
    magic, version, flags, n, count, _ = container.HEADER.unpack_from(data)
    fields = {"version": version, "n": n, "count": count, **changes}
    head = container.HEADER.pack(magic, fields["version"], flags, fields["n"], fields["count"], 0)[
        :-4
    ]
    end = container.header_size(count)
    table = data[container.HEADER.size : end]
    crc = zlib.crc32(head + table)
    return head + struct.pack("<I", crc) + table + data[end:]


def test_every_section_detects_a_flipped_byte(valid_file):
    _, _, table = container.read_table(valid_file)
    for name, info in table.items():
        corrupted = bytearray(valid_file)
        corrupted[info.offset + info.stored // 2] ^= 0x40
        with pytest.raises(CorruptFileError, match=f"section '{name}': CRC mismatch"):
            decode(bytes(corrupted))
    corrupted = bytearray(valid_file)
    corrupted[20] ^= 1  # inside the header
    with pytest.raises(CorruptFileError, match="section 'header': CRC mismatch"):
        decode(bytes(corrupted))


def test_truncations(valid_file):
    for cut in (0, 10, 40, 200, len(valid_file) // 2, len(valid_file) - 1):
        with pytest.raises(CorruptFileError):
            decode(valid_file[:cut])


def test_count_larger_than_payload_without_allocating(valid_file):
    import tracemalloc

    tracemalloc.start()
    with pytest.raises(CorruptFileError, match="section 'meta'|metadata implies"):
        decode(with_header(valid_file, n=2**60))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 8 << 20


def test_unknown_version(valid_file):
    with pytest.raises(CorruptFileError, match="section 'header': unsupported version 7"):
        decode(with_header(valid_file, version=7))


def test_section_out_of_bounds(valid_file):
    data = bytearray(valid_file)
    entry = container.HEADER.size + 2 * container.ENTRY.size  # third section
    struct.pack_into("<Q", data, entry + 24, 10**12)  # its offset
    _, _, _, _, count, _ = container.HEADER.unpack_from(data)
    head = bytes(data[: container.HEADER.size - 4])
    table = bytes(data[container.HEADER.size : container.header_size(count)])
    struct.pack_into("<I", data, container.HEADER.size - 4, zlib.crc32(head + table))
    with pytest.raises(CorruptFileError, match="out of bounds"):
        decode(bytes(data))


def test_byte_shuffle_is_kept_only_where_it_makes_a_section_smaller():
    smooth = np.linspace(-3, 3, 50_000).astype("<f2").tobytes()  # slowly varying high bytes
    noise = np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    sections = {"a": smooth, "b": noise, "c": smooth[:-1]}  # odd length: no 2-byte elements
    data = container.pack_container(7, sections, 19, widths={"a": 2, "b": 2, "c": 2})
    _, _, table = container.read_table(data)
    assert table["a"].encoding == "zstd-shuffle2" and table["b"].encoding == "raw"
    assert table["c"].encoding == "zstd"
    plain = container.pack_container(7, sections, 19)  # no widths: zstd only
    assert len(data) < len(plain)
    assert container.unpack_container(data).sections == sections


def test_a_shuffled_section_of_broken_elements_is_corrupt():
    data = bytearray(container.pack_container(1, {"a": np.arange(900, dtype="<f4").tobytes()},
                                              19, widths={"a": 4}))  # fmt: skip
    entry = container.HEADER.size
    assert data[entry + 16] == container.ZSTD_SHUFFLE4
    struct.pack_into("<Q", data, entry + 40, 3598)  # raw length: not whole 4-byte numbers
    _, _, _, _, count, _ = container.HEADER.unpack_from(data)
    head = bytes(data[: container.HEADER.size - 4])
    table = bytes(data[container.HEADER.size : container.header_size(count)])
    struct.pack_into("<I", data, container.HEADER.size - 4, zlib.crc32(head + table))
    with pytest.raises(CorruptFileError, match="not whole 4-byte elements"):
        container.read_table(bytes(data))
