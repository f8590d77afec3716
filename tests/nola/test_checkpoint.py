"""The compact checkpoint: round trips, size, corrupt files, wrong architectures."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

from compgs.codec import container
from compgs.errors import CorruptFileError, InputError, UnsupportedFormatError
from compgs.nola import (
    CoefficientQAT,
    QuantSpec,
    adapters,
    apply_lora,
    apply_nola,
    coefficient_state,
    decode_nola,
    encode_nola,
    load_coefficients,
    load_nola,
    quantize_coefficients,
    read_nola,
    save_nola,
)
from tests.nola.helpers import randomize, tiny

X = torch.randn(4, 3, 7, 7, generator=torch.Generator().manual_seed(0))
TARGETS = ["conv", "same", "proj", "fc"]


def trained(seed=0, **kwargs):
    model = tiny()
    cfg = dict(rank=2, k=24, l=16, seed=seed) | kwargs
    randomize(apply_nola(model, TARGETS, **cfg), seed=seed + 1)
    return model


SPECS = [
    None,
    QuantSpec(8),
    QuantSpec(4),
    QuantSpec(2),
    QuantSpec(3, "kmeans"),
    QuantSpec(2, "kmeans", "global"),
]


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_round_trip_is_bit_exact(tmp_path, spec):
    model = trained()
    path = tmp_path / "task.nola"
    size = save_nola(path, model, spec, extra={"norm.weight": model.norm.weight.detach() + 1})
    assert size == os.path.getsize(path)
    expected = (
        coefficient_state(model)
        if spec is None
        else quantize_coefficients(model, spec).dequantize()
    )
    fresh = tiny()  # the same base weights, no adapters yet
    ckpt = load_nola(path, fresh)
    assert sorted(adapters(fresh)) == sorted(TARGETS)
    loaded = coefficient_state(fresh)
    assert loaded.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key
    assert torch.equal(fresh.norm.weight, model.norm.weight + 1)
    assert ckpt.size_bytes == size
    # the regenerated bases are the trained ones: identical outputs
    load_coefficients(model, expected)
    with torch.no_grad():
        model.norm.weight.add_(1)
    assert torch.equal(fresh(X), model(X))
    # writing what was read gives the same bytes
    assert encode_nola(fresh, spec, extra={"norm.weight": fresh.norm.weight}) == path.read_bytes()


def test_qat_codes_are_stored_exactly(tmp_path):
    model = trained()
    qat = CoefficientQAT(model, QuantSpec(3))
    qat.step(0)
    out = model(X)
    save_nola(tmp_path / "q.nola", model, qat)
    fresh = tiny()
    load_nola(tmp_path / "q.nola", fresh)
    assert torch.equal(fresh(X), out)


def test_quantized_files_are_small():
    model = trained(k=200, l=200)
    sizes = {bits: len(encode_nola(model, QuantSpec(bits))) for bits in (8, 4, 2)}
    full = len(encode_nola(model))
    coefficients = 4 * 400
    assert full >= coefficients * 4 * 0.9  # float32 coefficients barely compress
    assert sizes[8] < full / 2.5 and sizes[2] < sizes[4] < sizes[8]
    overhead = sizes[4] - coefficients * 4 // 8
    assert overhead < 700  # header + table + compressed meta + one scale per tensor


def test_loading_into_a_model_that_already_has_the_adapters(tmp_path):
    model = trained(seed=3)
    save_nola(tmp_path / "a.nola", model)
    target = trained(seed=3)
    with torch.no_grad():
        for a in adapters(target).values():
            a.alpha.zero_()
    load_nola(tmp_path / "a.nola", target)
    assert torch.equal(target(X), model(X))
    other = trained(seed=4)  # same layers, other seed: other bases
    with pytest.raises(InputError, match="configured differently"):
        load_nola(tmp_path / "a.nola", other)


def test_lora_checkpoint_and_shared_basis(tmp_path):
    lora = tiny()
    randomize(apply_lora(lora, ["fc", "same"], rank=2))
    save_nola(tmp_path / "l.nola", lora, QuantSpec(8))
    fresh = tiny()
    load_nola(tmp_path / "l.nola", fresh)
    assert type(fresh.fc).__name__ == "LoRAAdapter"
    shared = trained(shared_basis=True, conv_layout="out_in")
    save_nola(tmp_path / "s.nola", shared)
    fresh = tiny()
    load_nola(tmp_path / "s.nola", fresh)
    assert fresh.same.shared_basis and fresh.same.view.layout == "out_in"
    assert torch.equal(fresh(X), shared(X))


class Other(nn.Module):
    def __init__(self, width=5):
        super().__init__()
        self.fc = nn.Linear(12, width)


def test_a_checkpoint_for_another_architecture_is_refused(tmp_path):
    model = tiny()
    randomize(apply_nola(model, ["fc"], rank=1, k=3, l=3))
    save_nola(tmp_path / "a.nola", model)
    with pytest.raises(
        InputError,
        match="different architecture: layer 'fc' should be a linear with weight \\[5, 12\\]",
    ):
        load_nola(tmp_path / "a.nola", Other(width=7))
    with pytest.raises(InputError, match="different architecture"):
        load_nola(tmp_path / "a.nola", nn.Sequential(nn.Linear(12, 5)))
    with pytest.raises(InputError, match="differ from the checkpoint"):
        load_nola(tmp_path / "a.nola", trained())
    save_nola(tmp_path / "x.nola", model, extra={"head.weight": torch.zeros(3)})
    with pytest.raises(InputError, match="extra tensor 'head.weight'"):
        load_nola(tmp_path / "x.nola", tiny())


def test_a_refused_checkpoint_leaves_the_model_as_it_was(tmp_path):
    save_nola(tmp_path / "a.nola", trained(), extra={"nope": torch.zeros(2)})
    save_nola(tmp_path / "b.nola", trained())
    for path, breaks in (("a.nola", lambda m: None), ("b.nola", _widen_fc)):
        model = tiny()
        breaks(model)
        before = {k: v.clone() for k, v in model.state_dict().items()}
        grads = {k: p.requires_grad for k, p in model.named_parameters()}
        with pytest.raises(InputError):  # the earlier layers match: only the last one differs
            load_nola(tmp_path / path, model)
        assert adapters(model) == {}
        after = model.state_dict()
        assert before.keys() == after.keys()
        assert all(torch.equal(before[k], after[k]) for k in before)
        assert grads == {k: p.requires_grad for k, p in model.named_parameters()}


def _widen_fc(model):
    model.fc = nn.Linear(model.fc.in_features, model.fc.out_features + 1)


def test_every_corrupted_byte_is_detected(tmp_path):
    data = encode_nola(trained(k=5, l=5), QuantSpec(4), extra={"x": torch.ones(3)})
    step = max(1, len(data) // 150)
    for i in range(0, len(data), step):
        bad = bytearray(data)
        bad[i] ^= 0x5A
        with pytest.raises((CorruptFileError, UnsupportedFormatError)):
            decode_nola(bytes(bad))
    for cut in (0, 10, 40, len(data) // 2, len(data) - 1):
        with pytest.raises(CorruptFileError):
            decode_nola(data[:cut])
    path = tmp_path / "bad.nola"
    path.write_bytes(data[:-3])
    with pytest.raises(CorruptFileError, match="bad.nola"):
        load_nola(path, tiny())


def rebuilt(data: bytes, edit) -> bytes:
    """The file with its meta (and sections) edited, every checksum valid: a lying writer."""
    c = container.unpack_container(data)
    sections = dict(c.sections)
    meta = json.loads(sections["meta"])
    n = edit(meta, sections)  # an int replaces the header's coefficient count
    sections["meta"] = json.dumps(meta).encode()
    return container.pack_container(n if isinstance(n, int) else c.num_gaussians, sections, None)


@pytest.mark.parametrize(
    "edit, error",
    [
        (lambda m, s: m.update(format="cgs"), UnsupportedFormatError),
        (lambda m, s: m.update(version=2), UnsupportedFormatError),
        (lambda m, s: m.pop("layers"), CorruptFileError),
        (lambda m, s: m["layers"][0].pop("kind"), CorruptFileError),
        (lambda m, s: m["layers"][1].update(kind="embedding"), CorruptFileError),
        (lambda m, s: m["layers"][0]["config"].update(method="dora"), CorruptFileError),
        (lambda m, s: m["layers"][0].update(shape=[-6, 3, 3, 3]), CorruptFileError),
        (lambda m, s: m["extra"][0].__setitem__(1, [-3]), CorruptFileError),
        (lambda m, s: 999, CorruptFileError),
        (lambda m, s: s.update(codes=s["codes"][:-1]), CorruptFileError),
        (lambda m, s: s.update(codebook=s["codebook"] + b"\0\0\0\0"), CorruptFileError),
        (lambda m, s: s.update(extra=b""), CorruptFileError),
        (lambda m, s: s.update(stray=b"1"), CorruptFileError),
        (lambda m, s: m["quant"].update(bits=40), CorruptFileError),
        (lambda m, s: m["quant"]["groups"][0]["members"].append([0, "alpha"]), CorruptFileError),
        (lambda m, s: m["quant"]["groups"].pop(), CorruptFileError),
        (lambda m, s: s.update(codes=b"\xff" * len(s["codes"])), CorruptFileError),
        (
            lambda m, s: s.update(codebook=b"\0\0\xc0\x7f" * (len(s["codebook"]) // 4)),
            CorruptFileError,
        ),
    ],
)
def test_lying_metadata_is_refused(edit, error):
    data = encode_nola(trained(k=5, l=5), QuantSpec(3), extra={"x": torch.ones(3)})
    decode_nola(rebuilt(data, lambda m, s: None))  # the unedited rebuild reads fine
    with pytest.raises(error):
        decode_nola(rebuilt(data, edit))


def test_kmeans_codes_beyond_the_levels_are_refused():
    data = encode_nola(trained(k=5, l=5), QuantSpec(2, "kmeans"))

    def shrink(meta, sections):
        meta["quant"]["groups"][0]["table"] = 1  # fewer levels than the codes use
        sections["codebook"] = sections["codebook"][12:]

    with pytest.raises(CorruptFileError, match="out of range"):
        decode_nola(rebuilt(data, shrink))


def test_read_errors_name_the_file(tmp_path):
    with pytest.raises(InputError, match="missing.nola"):
        read_nola(tmp_path / "missing.nola")
    with pytest.raises(InputError, match="no adapters"):
        encode_nola(nn.Linear(2, 2))
