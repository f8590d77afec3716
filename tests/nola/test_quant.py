"""Coefficient quantization: post-training through compgs.vq, and straight-through QAT."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compgs.errors import InputError
from compgs.nola import (
    CoefficientQAT,
    QuantSpec,
    adapters,
    apply_lora,
    apply_nola,
    coefficient_state,
    load_coefficients,
    quantize_coefficients,
)
from compgs.vq import QATAction, QATSchedule, quantize_uniform
from tests.nola.helpers import randomize, tiny

X = torch.randn(4, 3, 7, 7, generator=torch.Generator().manual_seed(0))


def nola_model(seed=0):
    model = tiny(seed)
    randomize(
        apply_nola(model, ["conv", "same", "proj", "fc"], rank=2, k=24, l=16, seed=seed),
        seed=seed + 1,
    )
    return model


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_uniform_ptq_is_the_engines_absmax_quantizer(bits):
    model = nola_model()
    codes = quantize_coefficients(model, QuantSpec(bits, "uniform"))
    values = codes.dequantize()
    state = coefficient_state(model)
    assert len(codes.groups) == 8 and codes.count == 4 * (24 + 16)
    for key, original in state.items():
        expected = quantize_uniform(original, bits).dequantize()
        assert torch.equal(values[key], expected), key
        scale = original.abs().max() / (2 ** (bits - 1) - 1)
        assert float((values[key] - original).abs().max()) <= float(scale) / 2 + 1e-7
    for group in codes.groups:
        assert int(group.codes.min()) >= 0 and int(group.codes.max()) < 2**bits


@pytest.mark.parametrize("bits", [1, 2, 4])
def test_kmeans_ptq_uses_at_most_2_to_the_bits_levels(bits):
    model = nola_model()
    codes = quantize_coefficients(model, QuantSpec(bits, "kmeans"))
    for group in codes.groups:
        assert group.levels.numel() <= 2**bits
        assert torch.equal(torch.sort(group.levels).values, group.levels)
    values, state = codes.dequantize(), coefficient_state(model)
    for key, v in values.items():
        # every value is its nearest level
        group = next(g for g in codes.groups if g.members[0].key == key)
        dist = (state[key][:, None] - group.levels[None]).abs()
        assert torch.allclose(
            (v[:, None] - group.levels[None]).abs().min(1).values, torch.zeros(len(v))
        )
        assert torch.allclose((v - state[key]).abs(), dist.min(1).values)


def test_kmeans_beats_uniform_at_low_bits_and_8_bits_is_nearly_lossless():
    model = nola_model()
    state = coefficient_state(model)

    def error(spec):
        q = quantize_coefficients(model, spec).dequantize()
        return sum(float((q[k] - v).square().sum()) for k, v in state.items())

    assert error(QuantSpec(3, "kmeans")) < error(QuantSpec(3, "uniform"))
    out = model(X).detach()
    load_coefficients(model, quantize_coefficients(model, QuantSpec(8)).dequantize())
    torch.testing.assert_close(model(X), out, rtol=0, atol=2e-2 * float(out.abs().max()))


def test_global_granularity_makes_one_group_per_coefficient_name():
    model = nola_model()
    codes = quantize_coefficients(model, QuantSpec(4, "kmeans", "global"))
    assert [sorted({m.coefficient for m in g.members}) for g in codes.groups] == [
        ["alpha"],
        ["beta"],
    ]
    assert [len(g.members) for g in codes.groups] == [4, 4]
    lora = tiny()
    randomize(apply_lora(lora, ["fc", "proj"], rank=1))
    groups = quantize_coefficients(lora, QuantSpec(4, "uniform", "global")).groups
    assert [g.members[0].coefficient for g in groups] == ["A", "B"]


def test_qat_forward_uses_the_codes_and_gradient_passes_straight_through():
    model = nola_model()
    qat = CoefficientQAT(model, QuantSpec(3, "uniform"), QATSchedule(start=0, assign_every=5))
    assert qat.step(0) is QATAction.FIT
    out = model(X)
    loss = out.square().sum()
    loss.backward()
    grads = {
        f"{n}.{c}": p.grad.clone()
        for n, a in adapters(model).items()
        for c, p in a.coefficients().items()
    }
    codes = qat.codes()
    # Reference: the plain model evaluated at the quantized coefficients.
    reference = nola_model()
    load_coefficients(reference, codes.dequantize())
    ref_out = reference(X)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=0)
    ref_out.square().sum().backward()
    for n, a in adapters(reference).items():
        for c, p in a.coefficients().items():
            # d loss / d x = d loss / d q(x): the straight-through estimator.
            torch.testing.assert_close(grads[f"{n}.{c}"], p.grad, rtol=1e-6, atol=1e-6)
    qat.remove()
    assert not torch.equal(model(X), out)


def test_qat_off_before_start_and_kmeans_update_moves_levels_to_member_means():
    model = nola_model()
    full = model(X)
    qat = CoefficientQAT(
        model, QuantSpec(2, "kmeans", "global"), QATSchedule(start=2, assign_every=100)
    )
    assert qat.step(0) is QATAction.OFF
    assert torch.equal(model(X), full)
    with pytest.raises(InputError, match="not started"):
        qat.codes()
    assert qat.step(2) is QATAction.FIT
    with torch.no_grad():
        for a in adapters(model).values():
            a.alpha.mul_(1.5)
    old = qat.levels[0].clone()
    assert qat.step(3) is QATAction.UPDATE
    alphas = torch.cat([a.alpha.detach() for a in adapters(model).values()])
    nearest = (alphas[:, None] - old[None]).abs().argmin(1)
    expected = torch.stack(
        [alphas[nearest == j].mean() if (nearest == j).any() else old[j] for j in range(len(old))]
    )
    torch.testing.assert_close(qat.levels[0], torch.sort(expected).values)
    assert not torch.allclose(qat.levels[0], old)


def test_qat_codes_match_the_forward_for_kmeans():
    model = nola_model()
    qat = CoefficientQAT(model, QuantSpec(3, "kmeans"), QATSchedule(start=0, assign_every=2))
    for i in range(3):
        qat.step(i)
    out = model(X)
    qat.remove()
    load_coefficients(model, qat.codes().dequantize())
    torch.testing.assert_close(model(X), out, rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(bits=1),
        dict(bits=17),
        dict(bits=0, method="kmeans"),
        dict(method="log"),
        dict(granularity="row"),
    ],
)
def test_bad_specs(kwargs):
    with pytest.raises(InputError):
        QuantSpec(**kwargs)


def test_quantizing_a_model_without_adapters_is_an_error():
    with pytest.raises(InputError, match="no adapters"):
        quantize_coefficients(nn.Linear(2, 2), QuantSpec())
    model = nola_model()
    with pytest.raises(InputError, match="do not fit"):
        load_coefficients(model, {"fc.alpha": torch.zeros(24)})
