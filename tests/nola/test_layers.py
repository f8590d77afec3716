"""NOLA / LoRA adapters: the update they apply, merging, gradients, counts, bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from compgs.errors import InputError
from compgs.nola import (
    LoRAAdapter,
    NOLAConv2d,
    NOLALinear,
    adapters,
    apply_lora,
    apply_nola,
    count_trained,
    merge_adapters,
    nearly_square,
    unload_adapters,
    unmerge_adapters,
)
from compgs.nola.generator import basis
from compgs.nola.views import matrix_view
from tests.nola.helpers import Conv1D, SamePadConv, randomize, tiny

X = torch.randn(4, 3, 7, 7, generator=torch.Generator().manual_seed(0))


def test_delta_is_the_product_of_the_two_mixtures():
    layer = nn.Linear(20, 12)
    a = NOLALinear(layer, rank=3, k=5, l=7, seed=11, c=6.0, name="enc.q")
    randomize(a.coefficients().values())
    # Independent reconstruction: regenerate the bases and mix them with explicit sums.
    basis_a, basis_b = basis(11, "enc.q/A", 5, 12, 3), basis(11, "enc.q/B", 7, 3, 20)
    a_mix = sum(a.alpha[i] * basis_a[i] for i in range(5))
    b_mix = sum(a.beta[j] * basis_b[j] for j in range(7))
    expected = (a_mix @ b_mix) * 6.0 / 3
    torch.testing.assert_close(a.delta_weight(), expected, rtol=1e-5, atol=1e-6)
    x = torch.randn(9, 20)
    torch.testing.assert_close(a(x), layer(x) + x @ expected.t(), rtol=1e-5, atol=1e-5)


def test_conv_delta_uses_the_nearly_square_view():
    conv = nn.Conv2d(6, 10, 3)  # 540 weights -> 20 x 27
    a = NOLAConv2d(conv, rank=2, k=4, l=3, seed=1, name="c")
    assert (a.view.rows, a.view.cols) == (20, 27)
    randomize(a.coefficients().values())
    basis_a, basis_b = basis(1, "c/A", 4, 20, 2), basis(1, "c/B", 3, 2, 27)
    mix_a = torch.einsum("k,kmr->mr", a.alpha, basis_a)
    mix_b = torch.einsum("l,lrn->rn", a.beta, basis_b)
    expected = (mix_a @ mix_b / 2).reshape(10, 6, 3, 3)
    torch.testing.assert_close(a.delta_weight(), expected, rtol=1e-5, atol=1e-6)
    x6 = X.repeat(1, 2, 1, 1)  # 6 channels
    ref = nn.functional.conv2d(x6, conv.weight + expected, conv.bias)
    torch.testing.assert_close(a(x6), ref, rtol=1e-4, atol=1e-5)


def test_conv1d_layout_is_transposed():
    layer = Conv1D(7, 5)  # weight [in 5, out 7]
    a = NOLALinear(layer, rank=2, k=3, l=3, name="p")
    assert (a.view.rows, a.view.cols) == (7, 5)
    randomize(a.coefficients().values())
    dm = a.delta_matrix()  # [out, in]
    x = torch.randn(2, 3, 5)
    torch.testing.assert_close(a(x), layer(x) + x @ dm.t(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.delta_weight(), dm.t())


@pytest.mark.parametrize(
    "shape, groups",
    [((4, 6, 3, 3), 1), ((8, 1, 5, 5), 8), ((1280, 320, 1, 1), 1), ((7, 11, 1, 1), 1)],
)
def test_conv_reshape_round_trip(shape, groups):
    conv = nn.Conv2d(shape[1] * groups, shape[0], shape[2:], groups=groups)
    assert tuple(conv.weight.shape) == shape
    view = matrix_view(conv, "c")
    w = torch.randn(shape)
    m = view.to_matrix(w)
    assert m.shape == (view.rows, view.cols) and view.rows * view.cols == w.numel()
    assert torch.equal(view.from_matrix(m), w)
    assert torch.equal(m.flatten(), w.flatten())  # row-major: entry order kept
    out_in = matrix_view(conv, "c", "out_in")
    assert (out_in.rows, out_in.cols) == (shape[0], w[0].numel())
    assert torch.equal(out_in.from_matrix(out_in.to_matrix(w)), w)


@pytest.mark.parametrize("n", [1, 2, 12, 97, 288, 409600, 368640, 2**20 + 1])
def test_nearly_square(n):
    p, q = nearly_square(n)
    assert p * q == n and p <= q
    assert not any(n % d == 0 for d in range(p + 1, int(n**0.5) + 1))


def test_adapter_starts_as_the_base_model_and_merge_matches():
    model = tiny()
    ref = model(X)
    apply_nola(model, ["conv", "same", "proj", "fc"], rank=2, k=6, l=4, seed=3, c=2.0)
    torch.testing.assert_close(model(X), ref, rtol=0, atol=0)  # alpha = 0: dW = 0
    randomize([p for a in adapters(model).values() for p in a.coefficients().values()])
    before = {n: p.detach().clone() for n, p in model.named_parameters() if ".base." in n}
    adapted = model(X)
    assert not torch.allclose(adapted, ref, atol=1e-3)
    merge_adapters(model)
    torch.testing.assert_close(model(X), adapted, rtol=0, atol=1e-5)
    unmerge_adapters(model)
    for n, p in model.named_parameters():
        if n in before:
            torch.testing.assert_close(p, before[n], rtol=0, atol=1e-6)
    torch.testing.assert_close(model(X), adapted, rtol=0, atol=1e-6)
    plain = unload_adapters(copy.deepcopy(model))
    assert not adapters(plain) and isinstance(plain.fc, nn.Linear)
    torch.testing.assert_close(plain(X), adapted, rtol=0, atol=1e-5)
    assert not any(".base." in n for n in plain.state_dict())


def test_unmerge_refuses_after_the_coefficients_changed():
    a = NOLALinear(nn.Linear(4, 4), rank=1, k=2, l=2)
    a.merge()
    with pytest.raises(InputError, match="already merged"):
        a.merge()
    with torch.no_grad():
        a.alpha.add_(1.0)
    with pytest.raises(InputError, match="changed while merged"):
        a.unmerge()


def test_gradients_reach_only_the_coefficients():
    model = tiny()
    coefficients = apply_nola(model, ["same", "fc"], rank=2, k=5, l=3, seed=0)
    randomize(coefficients)
    model(X).square().sum().backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"same.alpha", "same.beta", "fc.alpha", "fc.beta"}
    for n, p in model.named_parameters():
        if n in trainable:
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, n
        else:
            assert p.grad is None, n
    assert not any(b.requires_grad for b in model.buffers())


def test_gradient_matches_finite_differences():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Conv2d(1, 2, 2)).double()
    a = NOLALinear(model[0], rank=2, k=3, l=4, seed=5, name="0").double()
    randomize(a.coefficients().values())
    x = torch.randn(3, 6, dtype=torch.float64)

    def loss(alpha, beta):
        coef = {"alpha": alpha, "beta": beta}
        am, bm = a._factors(coef)
        return torch.tanh(model[0](x) + a.scale * (x @ bm.t()) @ am.t()).sum()

    alpha = a.alpha.detach().double().requires_grad_()
    beta = a.beta.detach().double().requires_grad_()
    assert torch.autograd.gradcheck(loss, (alpha, beta))
    # ...and the module's own forward gives the same gradient.
    torch.tanh(a(x)).sum().backward()
    g_alpha, g_beta = torch.autograd.grad(loss(alpha, beta), (alpha, beta))
    torch.testing.assert_close(a.alpha.grad, g_alpha)
    torch.testing.assert_close(a.beta.grad, g_beta)


@pytest.mark.parametrize("shape", [(3, 5), (64, 8), (7, 300)])
def test_trained_count_is_k_plus_l_whatever_the_shape(shape):
    model = nn.Sequential(nn.Linear(shape[1], shape[0]), nn.Conv2d(shape[0], 4, 3))
    apply_nola(model, ["0", "1"], rank=1, k=9, l=13)
    assert count_trained(model) == 2 * (9 + 13)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 2 * (9 + 13)


def test_lora_count_and_init():
    model = nn.Sequential(nn.Linear(10, 6))
    x = torch.randn(2, 10)
    ref = model(x)
    apply_lora(model, ["0"], rank=2)
    assert count_trained(model) == (6 + 10) * 2
    assert isinstance(model[0], LoRAAdapter)
    torch.testing.assert_close(model(x), ref, rtol=0, atol=0)


def test_bases_are_buffers_outside_the_state_dict_and_shared_on_request():
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 4))
    apply_nola(model, ".*", rank=2, k=3, l=3, seed=1, shared_basis=True)
    assert set(model.state_dict()) == {
        f"{i}.{s}" for i in range(3) for s in ("alpha", "beta", "base.weight", "base.bias")
    }
    assert model[0].basis_a is model[1].basis_a  # same shape: one tensor in memory
    assert torch.equal(model[0].basis_b, model[2].basis_b)  # B depends on r x n only
    per_layer = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    apply_nola(per_layer, ".*", rank=2, k=3, l=3, seed=1)
    assert not torch.equal(per_layer[0].basis_a, per_layer[1].basis_a)


def test_target_patterns():
    model = tiny()
    apply_nola(model, r"(conv|fc)", rank=1, k=2, l=2)
    assert sorted(adapters(model)) == ["conv", "fc"]
    with pytest.raises(InputError, match="already adapted"):
        apply_nola(model, ["fc"], rank=1, k=2, l=2)
    apply_lora(model, ["proj"], rank=1)  # a second kind on other layers is fine
    assert sorted(adapters(model)) == ["conv", "fc", "proj"]


@pytest.mark.parametrize(
    "targets, kwargs, message",
    [
        (["nothing"], {}, "match no module"),
        ("no.*match", {}, "match no module"),
        (["norm"], {}, "LayerNorm"),
        ([], {}, "non-empty"),
        (["fc"], {"k": 0}, "k must be"),
        (["fc"], {"l": 0}, "l must be"),
        (["fc"], {"rank": 0}, "rank must be"),
        (["fc"], {"rank": 6}, "rank 6 is larger than layer 'fc'"),
        (["same"], {"rank": 13}, "larger than layer 'same'"),
        (["fc"], {"c": -1.0}, "positive"),
        (["fc"], {"seed": -3}, "seed"),
        (["same"], {"conv_layout": "diagonal"}, "conv_layout"),
        ("[", {}, "not a valid regex"),
    ],
)
def test_bad_input(targets, kwargs, message):
    model = tiny()
    state = copy.deepcopy(model.state_dict())
    with pytest.raises(InputError, match=message):
        apply_nola(model, targets, **({"rank": 1, "k": 2, "l": 2} | kwargs))
    assert not adapters(model) and model.state_dict().keys() == state.keys()


def test_wrapper_classes_check_their_layer():
    with pytest.raises(InputError, match="NOLAConv2d"):
        NOLALinear(nn.Conv2d(2, 2, 1), rank=1, k=1, l=1)
    with pytest.raises(InputError, match="wraps nn.Conv2d"):
        NOLAConv2d(nn.Linear(2, 2), rank=1, k=1, l=1)
    assert isinstance(SamePadConv(2, 2, 3), nn.Conv2d)


def test_uncached_bases_give_the_same_update_and_gradients():
    cached = NOLALinear(nn.Linear(30, 20), rank=3, k=9, l=7, seed=2, name="q")
    lean = NOLALinear(
        copy.deepcopy(cached.base), rank=3, k=9, l=7, seed=2, name="q", cache_basis=False
    )
    assert not hasattr(lean, "basis_a") or lean.basis_a is None
    randomize([cached.alpha, cached.beta])
    with torch.no_grad():
        lean.alpha.copy_(cached.alpha)
        lean.beta.copy_(cached.beta)
    torch.testing.assert_close(lean.delta_weight(), cached.delta_weight(), rtol=1e-5, atol=1e-6)
    x = torch.randn(5, 30)
    cached(x).square().sum().backward()
    lean(x).square().sum().backward()
    torch.testing.assert_close(lean.alpha.grad, cached.alpha.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(lean.beta.grad, cached.beta.grad, rtol=1e-4, atol=1e-5)


def test_mix_basis_chunking_and_gradcheck():
    from compgs.nola.generator import mix_basis

    coef = torch.randn(11, dtype=torch.float64, requires_grad=True)
    whole = mix_basis(coef, 4, "s", 6, 5, chunk=10_000)
    for chunk in (1, 30, 65):  # one matrix per chunk, exactly one, two and a bit
        torch.testing.assert_close(mix_basis(coef, 4, "s", 6, 5, chunk=chunk), whole)
    explicit = torch.einsum("k,kmn->mn", coef.float(), basis(4, "s", 11, 6, 5))
    torch.testing.assert_close(whole, explicit, rtol=1e-5, atol=1e-6)
    # the mixture is linear in coef: its gradient is exactly the basis
    torch.autograd.gradcheck(
        lambda c: mix_basis(c, 4, "s", 6, 5, chunk=40).double(), (coef,), eps=1e-3, atol=1e-3
    )
