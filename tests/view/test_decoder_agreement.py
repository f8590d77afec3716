"""The JavaScript .cgs reader (run in the browser) against the Python one, bit for bit.

Every file below is decoded by both: they must agree on the decoded bytes of
every section (CRC-32), on every decoded field (CRC-32 of its float32 bytes),
and, for damaged files, on rejecting them and on the section they blame.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import struct
import zlib

import pytest
import torch

from compgs.codec import CodecOptions, container, encode
from compgs.splats import Splats
from tests.codec.helpers import random_quantized
from tests.view.reference import cgs_summary, comparable

pytestmark = pytest.mark.slow


def _file(n=300, degree=3, sizes=None, groups=None, options=None, seed=0, opacities=None):
    groups = groups or {k: v for k, v in CodecOptions().groups.items() if degree or k != "sh"}
    sizes = sizes or {name: 37 for name in groups}
    splats, codebooks, assignments = random_quantized(
        n, sizes=sizes, degree=degree, seed=seed, groups=groups
    )
    if opacities is not None:
        splats.opacities = opacities
    splats.means *= 3.0
    options = options or CodecOptions()
    return encode(splats, codebooks, assignments, dataclasses.replace(options, groups=groups))


def _every_opacity_byte():
    """Logits whose u8 encoding takes every value 0..255 (the JS logit table is checked whole)."""
    p = torch.tensor([min(max(b, 0.25), 254.75) / 255 for b in range(256)] * 2, dtype=torch.float64)
    return (torch.log(p) - torch.log1p(-p)).float()


def _empty_file():
    splats = Splats.empty(0, 1)
    codebooks = {
        "dc": torch.rand(3, 3),
        "sh": torch.rand(2, 9),
        "scale": torch.rand(5, 3),
        "rot": torch.rand(4, 4),
    }
    return encode(splats, codebooks, {k: torch.zeros(0, dtype=torch.long) for k in codebooks})


def valid_files() -> dict[str, bytes]:
    bitq = CodecOptions.bitq
    return {
        "default": _file(),
        "bitq": _file(options=bitq()),
        "u16_positions": _file(options=bitq(positions="u16")),
        "f16_opacity_f32_codebooks": _file(options=CodecOptions(opacities="f16", codebooks="f32")),
        "every_u8_opacity": _file(n=512, options=bitq(), opacities=_every_opacity_byte()),
        "degree0": _file(degree=0, options=bitq()),
        "degree1": _file(degree=1),
        "degree2_no_zstd": _file(degree=2, options=CodecOptions(zstd_level=None)),
        "no_morton": _file(options=CodecOptions(morton_within_runs=False)),
        "sort_by_dc": _file(options=CodecOptions(sort_key="dc")),
        "k1_and_odd_sizes": _file(sizes={"dc": 1, "sh": 2, "scale": 1000, "rot": 129}, n=700),
        "wide_codes": _file(
            sizes={"dc": 5000, "sh": 3, "scale": 70000, "rot": 9}, n=2000, options=bitq()
        ),
        "two_groups": _file(groups={"color": ("sh0", "shN"), "shape": ("scales", "quats")}),
        "raw_fields": _file(groups={"dc": ("sh0",)}, options=bitq()),
        "one_gaussian": _file(n=1),
        "no_gaussians": _empty_file(),
    }


def _repack(data: bytes, edit) -> bytes:
    """Change the metadata or sections of a valid file and re-checksum everything."""
    c = container.unpack_container(data)
    meta = json.loads(c.sections["meta"])
    sections = dict(c.sections)
    edit(meta, sections)
    if sections["meta"] is c.sections["meta"]:  # the edit changed the parsed metadata
        sections["meta"] = json.dumps(meta).encode()
    return container.pack_container(c.num_gaussians, sections, zstd_level=None)


def _group(meta, name):
    return next(g for g in meta["groups"] if g["name"] == name)


def _with_stored(data: bytes, name: str, stored: bytes) -> bytes:
    """Replace one section's stored (zstd) payload, keeping its decoded length; re-checksum."""
    c = container.unpack_container(data)
    table, payloads = b"", []
    offset = container.header_size(len(c.table))
    for info in c.table.values():
        payload = stored if info.name == name else data[info.offset : info.offset + info.stored]
        encoding = container.ZSTD if info.name == name else {"raw": 0, "zstd": 1}[info.encoding]
        table += container.ENTRY.pack(
            info.name.encode(), encoding, offset, len(payload), info.raw, zlib.crc32(payload)
        )
        payloads.append(payload)
        offset += len(payload)
    head = container.HEADER.pack(container.MAGIC, 1, 0, c.num_gaussians, len(c.table), 0)[:-4]
    return head + struct.pack("<I", zlib.crc32(head + table)) + table + b"".join(payloads)


def zstd_cases(valid: bytes) -> dict[str, bytes]:
    """Hostile zstd payloads with correct CRCs: only the inflation checks can catch them."""
    import zstandard

    raw = container.unpack_container(valid).sections["cb.sh"]
    frame = zstandard.ZstdCompressor(level=3).compress(raw)
    no_size = zstandard.ZstdCompressor(level=3, write_content_size=False)
    return {
        "zstd_trailing_bytes": _with_stored(valid, "cb.sh", frame + b"garbage!"),
        "zstd_two_frames": _with_stored(valid, "cb.sh", frame + frame),
        "zstd_too_short": _with_stored(valid, "cb.sh", zstandard.compress(raw[:-8])),
        "zstd_too_long": _with_stored(valid, "cb.sh", no_size.compress(raw + b"12345678")),
        "zstd_wrong_declared_size": _with_stored(valid, "cb.sh", zstandard.compress(raw + b"1234")),
        "zstd_truncated_frame": _with_stored(valid, "cb.sh", frame[: len(frame) // 2]),
        "zstd_not_a_frame": _with_stored(valid, "cb.sh", b"\x28\xb5\x2f\xfe" + frame[4:]),
        "zstd_ok_without_size": _with_stored(valid, "cb.sh", no_size.compress(raw)),
    }


def _with_header(data: bytes, **changes) -> bytes:
    magic, version, flags, n, count, _ = container.HEADER.unpack_from(data)
    fields = {"version": version, "n": n, "count": count, **changes}
    head = container.HEADER.pack(magic, fields["version"], flags, fields["n"], fields["count"], 0)[
        :-4
    ]
    table = data[container.HEADER.size : container.header_size(count)]
    return (
        head
        + struct.pack("<I", zlib.crc32(head + table))
        + table
        + data[container.header_size(count) :]
    )


def damaged_files(valid: bytes) -> dict[str, bytes]:
    _, _, table = container.read_table(valid)
    out = {}
    for name, info in table.items():  # one flipped byte in every section
        data = bytearray(valid)
        data[info.offset + info.stored // 2] ^= 0x10
        out[f"flip_{name}"] = bytes(data)
    for cut in (0, 20, 40, 200, len(valid) // 2, len(valid) - 1):
        out[f"truncated_{cut}"] = valid[:cut]
    out["flip_header"] = valid[:20] + bytes([valid[20] ^ 1]) + valid[21:]
    out["wrong_magic"] = b"\x89CGX" + valid[4:]
    out["version_7"] = _with_header(valid, version=7)
    out["huge_count"] = _with_header(valid, n=2**60)
    out["count_minus_one"] = _with_header(valid, n=300 - 1)
    out["too_many_sections"] = _with_header(valid, count=65)

    def set_meta(path, value):
        def edit(meta, _):
            target = meta
            for key in path[:-1]:
                if isinstance(key, tuple):  # a group, by name
                    target = next(g for g in target if g["name"] == key[0])
                else:
                    target = target[key]
            target[path[-1]] = value

        return edit

    lies = {
        "meta_count": (("num_gaussians",), 299),
        "meta_degree": (("sh_degree",), 2),
        "meta_degree_4": (("sh_degree",), 4),
        "meta_positions": (("positions", "encoding"), "f16"),
        "meta_positions_unknown": (("positions", "encoding"), "f64"),
        "meta_opacities": (("opacities", "encoding"), "u8"),
        "meta_bits": (("groups", ("dc",), "bits"), 7),
        "meta_k": (("groups", ("dc",), "k"), 36),
        "meta_k_zero": (("groups", ("dc",), "k"), 0),
        "meta_codebook": (("groups", ("sh",), "codebook"), "f16"),
        "meta_dim": (("groups", ("rot",), "dim"), 3),
        "meta_fields": (("groups", ("scale",), "fields"), ["quats"]),
        "meta_unknown_field": (("groups", ("scale",), "fields"), ["colour"]),
        "meta_count_bits": (("groups", ("rot",), "count_bits"), 12),
        "meta_index_kind": (("groups", ("rot",), "index"), "packed"),
    }
    for name, (path, value) in lies.items():
        out[name] = _repack(valid, set_meta(path, value))
    out["meta_not_json"] = _repack(valid, lambda meta, s: s.update(meta=b"{not json"))
    out["meta_not_utf8"] = _repack(valid, lambda meta, s: s.update(meta=b'{"a": "\xff"}'))
    out["missing_section"] = _repack(valid, lambda meta, s: s.pop("cb.sh"))
    out["extra_section"] = _repack(valid, lambda meta, s: s.update({"extra": b"1234"}))
    out["no_meta"] = container.pack_container(300, {"means": b"\0" * 3600}, zstd_level=None)

    def bad_runs(meta, sections):
        from compgs.codec.bitpack import pack_bits, unpack_bits

        rot = _group(meta, "rot")
        counts = unpack_bits(sections["rle.rot"], rot["k"], rot["count_bits"])
        counts[counts.argmin()] += 1  # one Gaussian too many
        sections["rle.rot"] = pack_bits(counts, rot["count_bits"])

    def index_past_k(meta, sections):
        from compgs.codec.bitpack import pack_bits

        dc = _group(meta, "dc")
        dc["k"] = 33  # still 6 bits, but index 36 is outside
        sections["cb.dc"] = sections["cb.dc"][: 33 * dc["dim"] * 4]
        sections["idx.dc"] = pack_bits(torch.full((300,), 36).numpy(), dc["bits"])

    def nan_codebook(meta, sections):
        values = bytearray(sections["cb.scale"])
        values[:4] = struct.pack("<f", math.nan)
        sections["cb.scale"] = bytes(values)

    def nan_means(meta, sections):
        values = bytearray(sections["means"])
        values[:4] = struct.pack("<f", math.inf)
        sections["means"] = bytes(values)

    out["runs_wrong_sum"] = _repack(valid, bad_runs)
    out["index_past_k"] = _repack(valid, index_past_k)
    out["nan_in_codebook"] = _repack(valid, nan_codebook)
    out["inf_in_means"] = _repack(valid, nan_means)
    return out


@pytest.fixture(scope="module")
def decoder_page(browser, tmp_path_factory):
    """A loaded viewer page (any file); its window.compgs.decodeBase64 is the JS reader."""
    from compgs.view import ViewerServer

    path = tmp_path_factory.mktemp("page") / "one.cgs"
    path.write_bytes(_file(n=10))
    page = browser.new_page()
    with ViewerServer(path, port=0).start() as server:
        page.goto(server.url + "?hud=0")
        page.wait_for_function(
            "window.compgs && window.compgs.state.status === 'ready'", timeout=60_000
        )
    yield page
    page.close()


def js_summaries(page, files: dict[str, bytes]) -> dict[str, dict]:
    payload = {name: base64.b64encode(data).decode() for name, data in files.items()}
    return page.evaluate(
        """async files => {
            const out = {};
            for (const [name, b64] of Object.entries(files)) {
                out[name] = await window.compgs.decodeBase64(b64, name + ".cgs", "cgs");
            }
            return out;
        }""",
        payload,
    )


def test_valid_files_decode_identically(decoder_page):
    files = valid_files()
    got = js_summaries(decoder_page, files)
    for name, data in files.items():
        want = cgs_summary(data, name + ".cgs")
        assert want["ok"], (name, want)
        assert comparable(got[name]) == comparable(want), name
        assert want["sections"], name


def test_damaged_files_are_rejected_alike(decoder_page):
    sizes = {"dc": 37, "sh": 37, "scale": 37, "rot": 37}
    valid = _file(n=300, sizes=sizes, options=CodecOptions(zstd_level=None, sort_key="rot"))
    files = damaged_files(valid)
    valid_zstd = _file(n=300, sizes=sizes, options=CodecOptions(sort_key="rot"))
    files |= {f"zstd_{k}": v for k, v in damaged_files(valid_zstd).items() if k.startswith("flip_")}
    files |= zstd_cases(valid)
    got = js_summaries(decoder_page, files)
    disagreements = {}
    for name, data in files.items():
        want = comparable(cgs_summary(data, name + ".cgs"))
        if comparable(got[name]) != want:
            disagreements[name] = {"python": want, "js": got[name].get("error", "accepted")}
    assert not disagreements, json.dumps(disagreements, indent=1)
    rejected = [name for name in files if not got[name]["ok"]]
    assert len(rejected) == len(files) - 1  # all but zstd_ok_without_size
    assert got["zstd_ok_without_size"]["ok"]
