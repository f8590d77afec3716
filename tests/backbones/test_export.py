import json
import math

import pytest
import torch

from compgs.backbones import (
    VQConfig,
    export_model,
    load_model,
    quantize_model,
    quantized_layers,
    read_meta,
)
from compgs.codec import container
from compgs.errors import CorruptFileError, InputError

from .conftest import TinyNet


def quantized(net, **kw):
    config = dict(num_codes=8, dim=2, min_size=500) | kw
    return quantize_model(net, VQConfig(**config))


@pytest.mark.parametrize("dtypes", [("f32", "f32"), ("f16", "f16")])
@pytest.mark.parametrize("share,scale", [("layer", False), ("all", False), ("layer", True)])
def test_round_trip_bit_exact(tiny_net, tmp_path, dtypes, share, scale):
    quantized(tiny_net, share=share, num_codes=6, channel_scale=scale)  # 3-bit indices
    path = tmp_path / "net.cgm"
    result = export_model(tiny_net, path, codebook_dtype=dtypes[0], float_dtype=dtypes[1])
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        expected = tiny_net(x)
    loaded = load_model(path, TinyNet())
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)
    original, restored = quantized_layers(tiny_net), quantized_layers(loaded)
    assert list(original) == list(restored)
    for name in original:
        assert torch.equal(original[name].indices, restored[name].indices)
        assert torch.equal(original[name].book.centroids, restored[name].book.centroids)
        assert restored[name].book.frozen
        if scale:
            assert torch.equal(original[name].scale, restored[name].scale)
        else:
            assert restored[name].scale is None
    # Exporting the loaded model again gives the same bytes.
    again = export_model(loaded, codebook_dtype=dtypes[0], float_dtype=dtypes[1])
    assert again.data == result.data == path.read_bytes()


def test_f32_export_keeps_float_leftovers_exactly(tiny_net, tmp_path):
    reference = {k: v.clone() for k, v in tiny_net.state_dict().items()}
    quantized(tiny_net)
    export_model(tiny_net, tmp_path / "a.cgm", codebook_dtype="f32", float_dtype="f32")
    loaded = load_model(tmp_path / "a.cgm", TinyNet())
    state = loaded.state_dict()
    for name in ("stem.weight", "dw.weight", "head.weight", "bn1.running_var", "pw.bias"):
        assert torch.equal(state[name], reference[name])


def test_f16_export_snaps_the_live_model(tiny_net):
    quantized(tiny_net)
    export_model(tiny_net)
    for vq in quantized_layers(tiny_net).values():
        c = vq.book.centroids
        assert torch.equal(c, c.half().float())
    assert torch.equal(tiny_net.bn0.running_mean, tiny_net.bn0.running_mean.half().float())


def test_reported_size_equals_file_size(tiny_net, tmp_path):
    quantized(tiny_net, num_codes=16, dim=1)
    path = tmp_path / "net.cgm"
    report = export_model(tiny_net, path, zstd_level=None).report
    assert report.total_bytes == path.stat().st_size
    assert sum(report.categories().values()) == path.stat().st_size
    layers = {layer.name: layer for layer in report.layers}
    assert set(layers) == {"conv", "pw", "fc1"}
    for layer in report.layers:
        assert layer.index_bytes == math.ceil(layer.params * 4 / 8)  # K=16: 4 bits per weight
        assert layer.codebook_bytes == 16 * 2  # 16 half-precision levels of its own
    assert report.sections["indices"] == sum(layer.index_bytes for layer in report.layers)
    params = sum(t.numel() for t in TinyNet().state_dict().values())
    assert report.params == params
    float32 = sum(
        t.numel() * (4 if t.is_floating_point() else 8) for t in TinyNet().state_dict().values()
    )
    assert report.float32_bytes == float32
    assert report.ratio == pytest.approx(float32 / path.stat().st_size)
    # Channel scales: 2 bytes per output channel, counted per layer and in the total.
    net = quantize_model(TinyNet(), VQConfig(num_codes=16, min_size=500, channel_scale=True))
    report = export_model(net, path, zstd_level=None).report
    assert [layer.scale_bytes for layer in report.layers] == [32, 64, 128]
    assert report.categories()["channel scales"] == 224
    assert report.total_bytes == path.stat().st_size
    # With zstd the totals are still the file's bytes.
    report = export_model(tiny_net, path, zstd_level=19).report
    assert report.total_bytes == path.stat().st_size
    assert any("float leftovers" in line for line in report.lines())


def test_load_rebuilds_recorded_architecture():
    from compgs.backbones import build_model, register_architecture

    register_architecture("tests-tiny", TinyNet)
    net = build_model("tests-tiny", num_classes=7).eval()
    quantize_model(net, VQConfig(bits=4, min_size=500))
    data = export_model(net, arch={"name": "tests-tiny", "kwargs": {"num_classes": 7}}).data
    assert read_meta(data)["arch"]["name"] == "tests-tiny"
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(load_model(data)(x), net(x))


def test_load_without_architecture_needs_a_model(tiny_net):
    quantized(tiny_net)
    data = export_model(tiny_net).data
    with pytest.raises(InputError, match="records no architecture"):
        load_model(data)


def test_model_that_does_not_match(tiny_net):
    quantized(tiny_net)
    data = export_model(tiny_net).data
    with pytest.raises(InputError, match="does not match the model"):
        load_model(data, TinyNet(num_classes=3))  # head of another shape
    other = TinyNet()
    other.pw = torch.nn.Conv2d(16, 24, 1)
    with pytest.raises(InputError, match="does not match the model: pw is"):
        load_model(data, other)
    with pytest.raises(InputError, match="already quantized"):
        load_model(data, tiny_net)


def test_export_needs_a_quantized_model(tiny_net):
    with pytest.raises(InputError, match="no quantized layer"):
        export_model(tiny_net)


def repack(data: bytes, **changes) -> bytes:
    """The same file with some sections replaced (valid CRCs: tests the semantic checks)."""
    parsed = container.unpack_container(data)
    sections = dict(parsed.sections) | changes
    return container.pack_container(parsed.num_gaussians, sections, None)


def test_corrupt_files(tiny_net):
    quantized(tiny_net, num_codes=6, channel_scale=True)
    data = export_model(tiny_net, zstd_level=None).data
    _, _, table = container.read_table(data)
    for name, info in table.items():  # a flipped byte in every section
        if not info.stored:
            continue
        bad = bytearray(data)
        bad[info.offset + info.stored // 2] ^= 0x40
        with pytest.raises(CorruptFileError, match=name):
            load_model(bytes(bad), TinyNet())
    for cut in (10, 100, len(data) - 1):
        with pytest.raises(CorruptFileError):
            load_model(data[:cut], TinyNet())
    meta = read_meta(data)
    sections = container.unpack_container(data).sections
    # Index values >= K (K = 6 with 3-bit indices).
    with pytest.raises(CorruptFileError, match="index >= K"):
        load_model(repack(data, indices=b"\xff" * len(sections["indices"])), TinyNet())
    # Sections whose size does not fit the metadata.
    with pytest.raises(CorruptFileError, match="tensors"):
        load_model(repack(data, tensors=sections["tensors"][:-4]), TinyNet())
    broken = json.loads(json.dumps(meta))
    broken["layers"][0]["vectors"] += 1
    with pytest.raises(CorruptFileError, match="meta"):
        load_model(repack(data, meta=json.dumps(broken).encode()), TinyNet())
    with pytest.raises(CorruptFileError, match="not a compgs model"):
        load_model(repack(data, meta=json.dumps({"format": "cgs"}).encode()), TinyNet())
    nan = bytearray(sections["codebooks"])
    nan[0:2] = b"\x00\x7e"  # f16 NaN
    with pytest.raises(CorruptFileError, match="not finite"):
        load_model(repack(data, codebooks=bytes(nan)), TinyNet())
    with pytest.raises(CorruptFileError, match="scales"):
        load_model(repack(data, scales=b"\x00\x7e" * (len(sections["scales"]) // 2)), TinyNet())


def test_f16_leftovers_round_trip_exactly_as_stored(tiny_net, tmp_path):
    """f16 leftovers: the file holds the f16 value of every float entry, and loading
    gives back exactly those values (the rounding happens once, at export)."""
    reference = {k: v.clone() for k, v in tiny_net.state_dict().items()}
    quantized(tiny_net)
    path = tmp_path / "a.cgm"
    export_model(tiny_net, path, float_dtype="f16")
    meta = read_meta(path)
    assert meta["float_dtype"] == "f16"
    stored = {t["name"]: t["dtype"] for t in meta["tensors"]}
    assert stored["bn1.running_var"] == "f16" and stored["bn1.num_batches_tracked"] == "i64"
    state = load_model(path, TinyNet()).state_dict()
    for name in ("stem.weight", "dw.weight", "head.weight", "bn1.running_var", "pw.bias"):
        assert torch.equal(state[name], reference[name].half().float())
        assert not torch.equal(state[name], reference[name])  # f16 did round something


def test_size_report_leftovers_by_kind(tiny_net, tmp_path):
    quantized(tiny_net, num_codes=16, dim=1)  # conv, pw, fc1; stem, dw, head stay float
    path = tmp_path / "a.cgm"
    report = export_model(tiny_net, path, zstd_level=None).report
    assert report.leftovers == {
        "stem": 2 * 108, "batch-norm affine": 2 * 2 * (4 + 16),
        "batch-norm statistics": 2 * 2 * (4 + 16) + 2 * 8, "small layers": 2 * 144,
        "biases": 2 * (16 + 16 + 32 + 64 + 5), "head": 2 * 320,
    }  # fmt: skip
    assert sum(report.leftovers.values()) == report.sections["tensors"]  # no zstd: raw = stored
