import pytest
import torch
from torch import nn

from compgs.backbones import (
    VQConfig,
    conv_bn_pairs,
    export_model,
    fold_batchnorm,
    load_model,
    quantize_model,
    quantized_layers,
    read_meta,
)
from compgs.errors import InputError

from .conftest import TinyNet


def test_pairs_follow_the_data_flow(tiny_net):
    assert conv_bn_pairs(tiny_net, torch.randn(1, 3, 8, 8)) == [("stem", "bn0"), ("conv", "bn1")]


def test_folded_model_computes_the_same(tiny_net):
    x = torch.randn(6, 3, 8, 8)
    with torch.no_grad():
        expected = tiny_net(x)
    pairs = fold_batchnorm(tiny_net, x[:2])
    assert pairs == [("stem", "bn0"), ("conv", "bn1")]
    assert isinstance(tiny_net.bn0, nn.Identity) and isinstance(tiny_net.bn1, nn.Identity)
    assert tiny_net.stem.bias.shape == (4,)  # the conv had no bias: folding gives it one
    assert not any(isinstance(m, nn.BatchNorm2d) for m in tiny_net.modules())
    with torch.no_grad():
        out = tiny_net(x)
    assert torch.allclose(out, expected, rtol=1e-5, atol=1e-6)
    # Four vectors per batch norm (+ its counter) became one bias vector.
    assert (
        sum(t.numel() for t in tiny_net.state_dict().values())
        == sum(t.numel() for t in TinyNet().state_dict().values()) - 4 * (4 + 16) - 2 + 4
    )


def test_fold_keeps_an_existing_bias():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3, bias=True), nn.BatchNorm2d(3), nn.ReLU()).eval()
    with torch.no_grad():
        net[1].running_mean.uniform_(-1, 1)
        net[1].running_var.uniform_(0.5, 2)
    x = torch.randn(2, 2, 5, 5)
    with torch.no_grad():
        expected = net(x)
    assert fold_batchnorm(net, x) == [("0", "1")]
    with torch.no_grad():
        assert torch.allclose(net(x), expected, rtol=1e-5, atol=1e-6)


def test_conv_output_used_twice_is_refused():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # folding would change the second use

    net = Branchy().eval()
    with torch.no_grad():
        net.bn.running_var.fill_(4.0)
    with pytest.raises(InputError, match="changed the outputs"):
        fold_batchnorm(net, torch.randn(2, 3, 4, 4))


@pytest.mark.parametrize("channel_scale", [False, True])
def test_fold_into_a_quantized_model(tiny_net, tmp_path, channel_scale):
    """After QAT with batch norm: the batch norm goes into the channel scales, the
    codebooks and indices stay, and the folded file computes what the unfolded model did."""
    config = VQConfig(num_codes=16, min_size=0, channel_scale=channel_scale)
    quantize_model(tiny_net, config)
    x = torch.randn(6, 3, 8, 8)
    with torch.no_grad():
        expected = tiny_net(x)
    before = {n: vq.indices.clone() for n, vq in quantized_layers(tiny_net).items()}
    units = {n: _codebook_units(tiny_net, n) for n in before}
    assert fold_batchnorm(tiny_net, x[:2]) == [("stem", "bn0"), ("conv", "bn1")]
    layers = quantized_layers(tiny_net)
    assert {n: vq.indices for n, vq in layers.items()}.keys() == before.keys()
    assert all(torch.equal(layers[n].indices, before[n]) for n in before)
    assert layers["stem"].scale is not None and layers["conv"].scale is not None
    with torch.no_grad():
        assert torch.allclose(tiny_net(x), expected, rtol=1e-5, atol=1e-5)
    path = tmp_path / "folded.cgm"
    export_model(tiny_net, path)  # snaps the scales to f16
    with torch.no_grad():
        snapped = tiny_net(x)
    assert torch.allclose(snapped, expected, rtol=1e-2, atol=1e-2)  # f16 scales: close
    loaded = load_model(path, TinyNet())
    with torch.no_grad():
        assert torch.equal(loaded(x), snapped)
    assert export_model(loaded).data == path.read_bytes()
    # QAT can go on: the shadow weights were scaled with their channels, so in codebook
    # units (what k-means sees) they are where they were.
    for name in before:
        assert torch.allclose(_codebook_units(tiny_net, name), units[name], rtol=1e-2, atol=1e-6)


def _codebook_units(net, name):
    weight = dict(net.named_modules())[name].parametrizations.weight
    return weight[0].normalize(weight.original.detach()).clone()


@pytest.mark.parametrize("float_dtype", ["f16", "f32"])
def test_folded_file_round_trip(tiny_net, tmp_path, float_dtype):
    x = torch.randn(4, 3, 8, 8)
    fold_batchnorm(tiny_net, x)
    quantize_model(tiny_net, VQConfig(num_codes=16, min_size=0, quantize_head=True))
    path = tmp_path / "folded.cgm"
    result = export_model(tiny_net, path, float_dtype=float_dtype)
    assert read_meta(path)["folded"] == [["stem", "bn0"], ["conv", "bn1"]]
    assert set(result.report.leftovers) == {"biases"}  # every weight quantized, no batch norm
    assert result.report.total_bytes == path.stat().st_size
    loaded = load_model(path, TinyNet())  # an unfolded network: load folds its structure
    assert isinstance(loaded.bn0, nn.Identity)
    with torch.no_grad():
        assert torch.equal(loaded(x), tiny_net(x))
    assert export_model(loaded, float_dtype=float_dtype).data == path.read_bytes()
