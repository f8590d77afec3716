import pytest
import torch
from torch.nn.utils import parametrize

from compgs.backbones import (
    VQConfig,
    codebook_groups,
    materialize,
    qat_step,
    quantize_model,
    quantized_layers,
    select_layers,
    vectors_to_weight,
    weight_to_vectors,
)
from compgs.errors import InputError
from compgs.vq import QATAction, assign, update_centroids


def reference_weight(vq, shape):
    """centroids[index] laid out by hand: (out, *kernel, in) order, input channel fastest,
    times the per-output-channel scale when there is one."""
    values = vq.book.centroids[vq.indices].reshape(-1)
    if len(shape) == 4:
        out, cin, kh, kw = shape
        w = values.reshape(out, kh, kw, cin).permute(0, 3, 1, 2)
    else:
        w = values.reshape(shape)
    if vq.scale is not None:
        w = w * vq.scale.reshape(-1, *([1] * (len(shape) - 1)))
    return w


@pytest.mark.parametrize("dim,codes", [(1, 8), (4, 16)])
def test_effective_weight_is_codebook_lookup(tiny_net, dim, codes):
    quantize_model(tiny_net, VQConfig(num_codes=codes, dim=dim, min_size=0, quantize_head=True))
    layers = quantized_layers(tiny_net)
    assert set(layers) == {"stem", "conv", "dw", "pw", "fc1", "head"}
    modules = dict(tiny_net.named_modules())
    for name, vq in layers.items():
        weight = modules[name].weight
        assert torch.equal(weight, reference_weight(vq, weight.shape)), name
        assert vq.book.centroids.shape == (codes, dim)
        assert int(vq.indices.max()) < codes
    # Scalar codebooks: every weight of a layer is one of its K levels.
    if dim == 1:
        for name, vq in layers.items():
            values = torch.unique(modules[name].weight)
            assert values.numel() <= codes
            assert torch.isin(values, vq.book.centroids[:, 0]).all()


def test_channel_scales(tiny_net):
    with torch.no_grad():
        tiny_net.pw.weight[3] *= 50  # one loud channel
    w = {n: getattr(tiny_net, n).weight.detach().clone() for n in ("conv", "dw", "pw")}
    quantize_model(tiny_net, VQConfig(num_codes=8, dim=1, min_size=0, channel_scale=True))
    layers = quantized_layers(tiny_net)
    for name, weight in w.items():
        vq = layers[name]
        rms = weight.reshape(weight.shape[0], -1).pow(2).mean(1).sqrt()
        assert torch.equal(vq.scale, rms.half().float())
        effective = getattr(tiny_net, name).weight
        assert torch.equal(effective, reference_weight(vq, weight.shape))
    # The loud channel no longer takes the codebook for itself: every channel of pw keeps
    # a small relative error, which one shared codebook without scales cannot give.
    err = (tiny_net.pw.weight.detach() - w["pw"]).reshape(32, -1).norm(dim=1) / w["pw"].reshape(
        32, -1
    ).norm(dim=1)
    assert float(err.max()) < 0.5
    x = torch.randn(2, 16, 4, 4, requires_grad=True)
    tiny_net.pw(x).sum().backward()
    grad = tiny_net.pw.parametrizations.weight.original.grad
    assert torch.allclose(grad[0, :, 0, 0], x.sum(dim=(0, 2, 3)), atol=1e-5)  # identity STE
    # QAT updates work in codebook units: centroids = means of the normalized shadows.
    vq = layers["pw"]
    qat_step(tiny_net, QATAction.UPDATE)
    shadow = tiny_net.pw.parametrizations.weight.original.detach()
    x = weight_to_vectors(shadow / vq.scale.view(-1, 1, 1, 1), 1)
    expected = update_centroids(x, vq.indices, 8, previous=vq.book.centroids)
    assert torch.allclose(vq.book.centroids, expected, atol=1e-6)


def test_layout_round_trip_and_input_dimension():
    w = torch.arange(2 * 8 * 3 * 3, dtype=torch.float32).reshape(2, 8, 3, 3)
    v = weight_to_vectors(w, 4)
    # First vector: output 0, kernel position (0, 0), input channels 0..3.
    assert torch.equal(v[0], w[0, :4, 0, 0])
    assert torch.equal(vectors_to_weight(v, w.shape), w)
    lin = torch.randn(6, 8)
    assert torch.equal(weight_to_vectors(lin, 2)[1], lin[0, 2:4])


def test_straight_through_gradient_reaches_shadow_weights(tiny_net):
    quantize_model(tiny_net, VQConfig(bits=2, dim=2, min_size=0))
    conv = tiny_net.conv
    x = torch.randn(2, 4, 6, 6)
    probe = torch.randn(2, 16, 6, 6)
    (conv(x) * probe).sum().backward()
    # Reference: the gradient with respect to a plain tensor holding the quantized weight.
    q = conv.weight.detach().clone().requires_grad_(True)
    out = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 1, 1, 1)), q, conv.bias)
    (grad,) = torch.autograd.grad((out * probe).sum(), q)
    shadow = conv.parametrizations.weight.original
    assert shadow.grad is not None and torch.allclose(shadow.grad, grad, atol=1e-5)
    assert shadow.grad.abs().sum() > 0
    # Codebooks are buffers: the optimizer never sees them.
    assert all("book" not in n for n, _ in tiny_net.named_parameters())


def test_small_layers_and_head_stay_untouched(tiny_net):
    before = {n: p.detach().clone() for n, p in tiny_net.named_parameters()}
    ids = {n: id(m.weight) for n, m in tiny_net.named_modules() if hasattr(m, "weight")}
    quantize_model(tiny_net, VQConfig(bits=4, min_size=500))
    assert set(quantized_layers(tiny_net)) == {"conv", "pw", "fc1"}  # >= 500 weights, not the head
    for name in ("stem", "dw", "head"):
        module = getattr(tiny_net, name)
        assert not parametrize.is_parametrized(module)
        assert id(module.weight) == ids[name]
        assert torch.equal(module.weight, before[f"{name}.weight"])
    for name, p in tiny_net.named_parameters():
        if name in before:  # biases and batch norm untouched too
            assert torch.equal(p, before[name]), name


def test_shared_codebooks(tiny_net):
    quantize_model(tiny_net, VQConfig(bits=2, dim=2, min_size=500, share="all"))
    groups = codebook_groups(tiny_net)
    assert len(groups) == 1 and groups[0].layers == ["conv", "pw", "fc1"]
    assert groups[0].book.assignments.numel() == (576 + 512 + 2048) // 2
    modules = dict(tiny_net.named_modules())
    for name, vq in quantized_layers(tiny_net).items():
        assert torch.equal(modules[name].weight, reference_weight(vq, modules[name].weight.shape))


def test_share_by_pattern(tiny_net):
    config = VQConfig(bits=4, min_size=0, share=r"^(stem|conv|dw|pw)$")
    assert config.group_of("fc1") == "fc1" and config.group_of("dw") == "dw"
    config = VQConfig(bits=4, min_size=0, share=r"(conv|pw|fc)")
    quantize_model(tiny_net, config)
    names = sorted(g.name for g in codebook_groups(tiny_net))
    assert names == ["conv", "dw", "fc", "pw", "stem"]


def test_qat_step_update_and_assign(tiny_net):
    quantize_model(tiny_net, VQConfig(num_codes=8, dim=2, min_size=500))
    shadow = tiny_net.pw.parametrizations.weight.original
    vq = quantized_layers(tiny_net)["pw"]
    with torch.no_grad():
        shadow.add_(0.05 * torch.randn_like(shadow))
    x = weight_to_vectors(shadow.detach(), 2)
    qat_step(tiny_net, QATAction.UPDATE)
    expected = update_centroids(x, vq.indices, 8, previous=vq.book.centroids)
    assert torch.allclose(vq.book.centroids, expected, atol=1e-6)
    qat_step(tiny_net, QATAction.ASSIGN)
    assert torch.equal(vq.indices, assign(x, vq.book.centroids))
    assert torch.equal(tiny_net.pw.weight, reference_weight(vq, shadow.shape))


def test_materialize_keeps_outputs(tiny_net):
    quantize_model(tiny_net, VQConfig(bits=2, min_size=0))
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        before = tiny_net(x)
    materialize(tiny_net)
    assert not quantized_layers(tiny_net)
    assert not any(parametrize.is_parametrized(m) for m in tiny_net.modules())
    with torch.no_grad():
        assert torch.equal(tiny_net(x), before)


@pytest.mark.parametrize(
    "config,message",
    [
        (dict(include=("nothing_like_this",)), "matches no Conv/Linear layer"),
        (dict(exclude=("nope",)), "matches no Conv/Linear layer"),
        (dict(num_codes=64, dim=4, min_size=0), "fewer than K=64 codes"),
        (dict(num_codes=200, min_size=0, exclude=("stem",)), "layer 'dw' has 144 weight vectors"),
        (dict(dim=5, bits=2, min_size=0), "not a multiple of dim=5"),
        (dict(min_size=10**9), "no layer selected"),
    ],
)
def test_bad_selection(tiny_net, config, message):
    with pytest.raises(InputError, match=message):
        quantize_model(tiny_net, VQConfig(**config))
    assert not quantized_layers(tiny_net)


def test_bad_config_values():
    with pytest.raises(InputError, match="whole number"):
        VQConfig(bits=1.5, dim=1)
    with pytest.raises(InputError, match="dim"):
        VQConfig(dim=0)
    with pytest.raises(InputError, match="bad layer pattern"):
        VQConfig(include=("(",))
    assert VQConfig(bits=0.5, dim=4).codes == 4
    assert VQConfig(bits=2, dim=4).codes == 256


def test_refuses_double_quantization(tiny_net):
    quantize_model(tiny_net, VQConfig(bits=4, min_size=0))
    with pytest.raises(InputError, match="already quantized"):
        quantize_model(tiny_net, VQConfig(bits=4, min_size=0))


def test_select_layers_order(tiny_net):
    assert select_layers(tiny_net, VQConfig(min_size=0)) == ["stem", "conv", "dw", "pw", "fc1"]
    config = VQConfig(min_size=0, include=("fc", "head"), quantize_head=True)
    assert select_layers(tiny_net, config) == ["fc1", "head"]
