"""Property test: whatever happens to a valid file, the reader raises CorruptFileError or succeeds."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compgs.codec import CodecOptions, decode, encode
from compgs.errors import CorruptFileError
from tests.codec.helpers import random_quantized


def _valid_files():
    out = []
    for opts in (CodecOptions(), CodecOptions.bitq(positions="u16"), CodecOptions(zstd_level=None)):
        splats, cbs, idx = random_quantized(120, sizes={"dc": 8, "sh": 16, "scale": 32, "rot": 4})
        out.append(encode(splats, cbs, idx, opts))
    return out


VALID = _valid_files()

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 64)),
)


def mutate(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for kind, pos, value in ops:
        if not buf:
            break
        pos %= len(buf)
        if kind == "flip":
            buf[pos] ^= value
        elif kind == "truncate":
            del buf[pos:]
        elif kind == "insert":
            buf.insert(pos, value)
        else:
            del buf[pos : pos + value]
    return bytes(buf)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(VALID) - 1), ops=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_files_raise_only_corrupt_file_error(which, ops):
    data = mutate(VALID[which], ops)
    try:
        decode(data)
    except CorruptFileError:
        pass


@pytest.mark.parametrize("data", [b"", b"\x89CGS", b"\x89CGS\r\n\x1a\n" + b"\0" * 24, b"ply\n"])
def test_short_inputs(data):
    with pytest.raises(CorruptFileError):
        decode(data)


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.text(max_size=8)),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(VALID) - 1), pick=st.integers(0, 10**6), value=json_values)
def test_consistent_checksums_with_lying_metadata(which, pick, value):
    """Structure-aware: rewrite one metadata value and re-checksum, so only semantics can catch it."""
    import json

    from compgs.codec import container

    c = container.unpack_container(VALID[which])
    meta = json.loads(c.sections["meta"])
    paths = [p for p in _paths(meta) if p]
    path = paths[pick % len(paths)]
    target = meta
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    sections = dict(c.sections, meta=json.dumps(meta).encode())
    data = container.pack_container(c.num_gaussians, sections, zstd_level=None)
    try:
        decode(data)
    except CorruptFileError:
        pass


def _relabel(data: bytes, edit) -> bytes:
    """``data`` with its metadata rewritten by ``edit`` (which returns the names of sections to
    drop), re-checksummed: only the reader's semantic checks can catch it."""
    import json

    from compgs.codec import container

    c = container.unpack_container(data)
    meta = json.loads(c.sections["meta"])
    dropped = edit(meta) or ()
    sections = {k: v for k, v in c.sections.items() if k not in dropped}
    sections["meta"] = json.dumps(meta).encode()
    return container.pack_container(c.num_gaussians, sections, zstd_level=None)


def _duplicate_group_name(meta):
    # dc and scale have the same width and K: named alike, the section table would match
    # the metadata again once dc's own sections are gone; only distinct names can tell.
    dc = next(g for g in meta["groups"] if g["name"] == "dc")
    dc["name"] = "scale"
    return ("cb.dc", "idx.dc")


def _field_twice(meta):
    meta["raw_fields"] = [{"field": "scales", "encoding": "f32"}]


def _field_missing(meta):
    meta["groups"] = [g for g in meta["groups"] if "scales" not in g["fields"]]
    return ("cb.scale", "idx.scale")


@pytest.mark.parametrize(
    "edit, message",
    [(_duplicate_group_name, "not distinct"), (_field_twice, "stored twice"),
     (_field_missing, "stored nowhere")],
)  # fmt: skip
def test_metadata_that_names_fields_inconsistently_is_corrupt(edit, message):
    sizes = {"dc": 8, "sh": 8, "scale": 8, "rot": 8}
    data = encode(*random_quantized(64, sizes=sizes), CodecOptions(zstd_level=None, sort_key="rot"))
    with pytest.raises(CorruptFileError, match=message):
        decode(_relabel(data, edit))
