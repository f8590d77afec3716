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


def test_inflating_a_highly_compressed_section_grows_its_buffer_to_the_exact_size():
    """Zeros inflate ~10^4-fold: the reader's buffer starts small and doubles as output arrives."""
    big = bytes(3 << 20)
    data = container.pack_container(1, {"z": big, "s": b"\1\2" * 700_000}, 3, widths={"s": 2})
    _, _, table = container.read_table(data)
    assert table["z"].encoding == "zstd" and table["z"].stored * 100 < len(big)
    assert container.read_section(data, table["z"]) == big
    assert container.section_array(data, table["s"]).tobytes() == b"\1\2" * 700_000


def test_a_frame_that_inflates_past_its_table_length_is_corrupt():
    import zstandard

    big = bytes(3 << 20)
    data = bytearray(container.pack_container(1, {"z": big}, 3))
    entry = container.HEADER.size
    struct.pack_into("<Q", data, entry + 40, len(big) - 1)  # the table now claims one byte less
    _, _, _, _, count, _ = container.HEADER.unpack_from(data)
    head = bytes(data[: container.HEADER.size - 4])
    table = bytes(data[container.HEADER.size : container.header_size(count)])
    struct.pack_into("<I", data, container.HEADER.size - 4, zlib.crc32(head + table))
    _, _, parsed = container.read_table(bytes(data))
    assert zstandard.frame_content_size(bytes(data[parsed["z"].offset :])) == len(big)
    with pytest.raises(CorruptFileError, match="section 'z': inflates to"):
        container.read_section(bytes(data), parsed["z"])


def _rewrite(data: bytes, edit) -> bytes:
    """``data`` with its metadata/sections changed by ``edit`` and everything re-checksummed."""
    import json

    c = container.unpack_container(data)
    meta = json.loads(c.sections["meta"])
    sections = dict(c.sections)
    edit(meta, sections)
    sections["meta"] = json.dumps(meta).encode()
    return container.pack_container(c.num_gaussians, sections, zstd_level=None)


def test_non_finite_codebook_rows_are_rejected_where_gaussians_use_them():
    splats, cbs, idx = random_quantized(200, sizes={"dc": 8, "sh": 8, "scale": 512, "rot": 8})
    data = encode(splats, cbs, idx, CodecOptions(zstd_level=None, sort_key="rot"))
    stored = decode_compressed(data)
    used = int(stored.indices["scale"][17])
    count = int((stored.indices["scale"] == used).sum())
    first = int((stored.indices["scale"] == used).nonzero()[0])

    def nan_row(row):
        def edit(meta, sections):
            values = np.frombuffer(sections["cb.scale"], "<f4").copy()
            values[3 * row + 1] = np.nan
            sections["cb.scale"] = values.tobytes()

        return edit

    message = f"Splats.scales holds non-finite values in {count} Gaussian.*first at index {first}"
    for read in (decode, decode_compressed):
        with pytest.raises(CorruptFileError, match=message):
            read(_rewrite(data, nan_row(used)))
    unused = min(set(range(512)) - set(stored.indices["scale"].tolist()))
    # no Gaussian takes that row: the Gaussians are finite, the file is accepted
    assert torch.isfinite(decode(_rewrite(data, nan_row(unused))).scales).all()


def test_non_finite_raw_fields_and_f16_positions_are_rejected():
    splats, cbs, idx = random_quantized(100, sizes={"dc": 8, "sh": 8, "scale": 8, "rot": 8})
    groups = {"dc": ("sh0",), "rot": ("quats",)}  # shN and scales stored raw
    data = encode(splats, cbs, idx, CodecOptions.bitq(groups=groups, zstd_level=None))

    def inf_in(section, at, dtype="<f2"):
        def edit(meta, sections):
            values = np.frombuffer(sections[section], dtype).copy()
            values[at] = np.inf
            sections[section] = values.tobytes()

        return edit

    with pytest.raises(CorruptFileError, match=r"Splats.scales holds .* in 1 Gaussian.*index 4"):
        decode(_rewrite(data, inf_in("raw.scales", 3 * 4 + 2)))
    with pytest.raises(CorruptFileError, match="section 'means': holds non-finite"):
        decode(_rewrite(data, inf_in("means", 7)))


@pytest.mark.parametrize("bbox", [[[0, 0, -1e39], [1, 1, 1]], [[0, 0, 0], [1, 1e308, 1]]])
def test_a_u16_bounding_box_beyond_float32_is_corrupt(bbox):
    splats, cbs, idx = random_quantized(50, sizes={"dc": 8, "sh": 8, "scale": 8, "rot": 8})
    data = encode(splats, cbs, idx, CodecOptions.bitq(positions="u16", zstd_level=None))

    def edit(meta, sections):
        meta["positions"]["bbox"] = bbox

    with pytest.raises(CorruptFileError, match="section 'means': .*non-finite"):
        decode(_rewrite(data, edit))


@pytest.mark.parametrize("threads", [1, 2])
def test_decoding_on_one_or_more_threads_gives_the_same_gaussians(threads):
    splats, cbs, idx = random_quantized(3000, sizes={"dc": 64, "sh": 64, "scale": 300, "rot": 90})
    data = encode(splats, cbs, idx, CodecOptions.bitq(positions="u16"))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        out = decode(data)
    finally:
        torch.set_num_threads(before)
    reference = decode(data)
    for name in FIELDS:
        assert torch.equal(getattr(out, name), getattr(reference, name)), name
