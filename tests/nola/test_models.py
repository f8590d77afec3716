"""apply_nola on real architectures (tiny random configs, nothing downloaded).

Each test skips when its optional package (transformers, timm, torchvision,
efficientnet-lite-pytorch; the `nola` extra) is absent.
"""

from __future__ import annotations

import pytest
import torch

from compgs.nola import (
    QuantSpec,
    adapters,
    apply_nola,
    count_trained,
    encode_nola,
    load_coefficients,
    load_nola,
    merge_adapters,
    quantize_coefficients,
    save_nola,
    unmerge_adapters,
)
from tests.nola.helpers import randomize

pytestmark = pytest.mark.slow  # several seconds each: big imports and models


def check(model, targets, inputs, expected_layers, tmp_path, make_fresh, **kwargs):
    """Adapter at init = base; merged = adapter; k + l each; save/load gives the same outputs."""
    model.eval()
    with torch.no_grad():
        ref = model(*inputs)
    coefficients = apply_nola(model, targets, rank=2, k=8, l=8, seed=1, **kwargs)
    assert len(adapters(model)) == expected_layers
    assert count_trained(model) == 16 * expected_layers == sum(p.numel() for p in coefficients)
    with torch.no_grad():
        torch.testing.assert_close(model(*inputs), ref, rtol=0, atol=0)
    randomize(coefficients, scale=0.3)
    with torch.no_grad():
        adapted = model(*inputs)
        assert not torch.allclose(adapted, ref, atol=1e-4)
        merge_adapters(model)
        torch.testing.assert_close(model(*inputs), adapted, rtol=1e-4, atol=1e-5)
        unmerge_adapters(model)
    spec = QuantSpec(8)
    save_nola(tmp_path / "m.nola", model, spec)
    load_coefficients(model, quantize_coefficients(model, spec).dequantize())
    fresh = make_fresh().eval()
    load_nola(tmp_path / "m.nola", fresh)  # adapters re-created, bases regenerated
    with torch.no_grad():
        expected, out = model(*inputs), fresh(*inputs)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(out, adapted, rtol=0.05, atol=0.05 * float(adapted.abs().max()))
    return adapted, out


def test_gpt2_conv1d_layers(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=97, n_positions=16)

    def make():
        torch.manual_seed(0)
        return transformers.GPT2LMHeadModel(config)

    model = make()
    ids = torch.randint(0, 97, (2, 10), generator=torch.Generator().manual_seed(0))

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, x):
            return self.m(x).logits

    # "c_proj" is both attn.c_proj and mlp.c_proj: 3 layers per block.
    check(Logits(model), ["c_attn", "c_proj"], (ids,), 6, tmp_path, lambda: Logits(make()))
    assert len(encode_nola(model, QuantSpec(4))) < 1500


def test_timm_vit_qkv(tmp_path):
    timm = pytest.importorskip("timm")

    def make():
        torch.manual_seed(0)
        return timm.create_model(
            "vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, num_classes=10
        )

    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    adapted, _ = check(make(), r"blocks\.\d+\.attn\.qkv", (x,), 12, tmp_path, make)
    assert adapted.shape == (2, 10)


def test_torchvision_resnet_convs(tmp_path):
    torchvision = pytest.importorskip("torchvision")

    def make():
        torch.manual_seed(0)
        return torchvision.models.resnet18(weights=None, num_classes=10)

    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    check(make(), ["layer4.1.conv1", "layer4.1.conv2", "fc"], (x,), 3, tmp_path, make)


def test_efficientnet_lite_static_same_padding_convs(tmp_path):
    lite = pytest.importorskip("efficientnet_lite_pytorch")

    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def make():
        torch.manual_seed(0)
        model = lite.EfficientNet.from_name("efficientnet-lite0", image_size=32, num_classes=10)
        # Random weights with unit BN statistics saturate every ReLU6; calibrate them once.
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None
        with torch.no_grad():
            model.train()(torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
        return model.eval()

    targets = ["_blocks.15._expand_conv", "_blocks.15._depthwise_conv", "_conv_head"]
    check(make(), targets, (x,), 3, tmp_path, make)
