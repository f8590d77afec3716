"""Scalar quantizers: uniform absmax and k-means levels, per tensor and per channel."""

from __future__ import annotations

import pytest
import torch

from compgs.errors import InputError
from compgs.vq import (
    LevelCodes,
    UniformCodes,
    dequantize,
    fake_quantize_levels,
    fake_quantize_uniform,
    fit_levels,
    quantize_kmeans,
    quantize_levels,
    quantize_uniform,
)


def weights(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g) * torch.rand(
        shape[0], *([1] * (len(shape) - 1)), generator=g
    )


@pytest.mark.parametrize("bits", [2, 4, 8, 12, 16])
@pytest.mark.parametrize("axis", [None, 0, 1, -1])
def test_uniform_round_trip_error_is_half_a_step(bits, axis):
    w = weights(12, 20)
    q = quantize_uniform(w, bits, axis=axis)
    qmax = 2 ** (bits - 1) - 1
    assert q.codes.dtype == (torch.int8 if bits <= 8 else torch.int16)
    assert int(q.codes.abs().max()) == qmax  # the absmax value maps to the top code
    if axis is None:
        assert q.scale.shape == ()
    else:
        assert q.scale.shape[axis % 2] == w.shape[axis] and q.scale.numel() == w.shape[axis]
    error = (dequantize(q) - w).abs()
    assert bool((error <= q.scale / 2 * (1 + 1e-5)).all())


def test_uniform_zero_channel_and_exact_grid():
    w = torch.tensor([[0.0, 0.0, 0.0], [-3.0, 1.0, 3.0]])
    q = quantize_uniform(w, 3, axis=0)  # codes in [-3, 3], scale 1 for row 1
    assert q.codes.tolist() == [[0, 0, 0], [-3, 1, 3]]
    assert torch.equal(q.dequantize(), w)


def test_uniform_straight_through():
    w = weights(8, 5).requires_grad_(True)
    out = fake_quantize_uniform(w, 4, axis=1)
    assert torch.equal(out.detach(), quantize_uniform(w, 4, axis=1).dequantize())
    (out * torch.arange(5.0)).sum().backward()
    assert torch.equal(w.grad, torch.arange(5.0).expand(8, 5))


def test_kmeans_recovers_exact_levels():
    g = torch.Generator().manual_seed(1)
    true_levels = torch.tensor([-2.0, -0.5, 0.0, 0.25, 1.0, 3.0, 7.0, 8.0])
    w = true_levels[torch.randint(0, 8, (40, 30), generator=g)]
    w.view(-1)[:8] = true_levels  # every level present
    q = quantize_kmeans(w, 3)
    assert isinstance(q, LevelCodes) and q.codes.dtype == torch.uint8
    assert torch.equal(q.levels, true_levels)
    assert torch.equal(q.dequantize(), w)


def brute_nearest_level(values: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    return (values.double()[..., None] - levels.double()).abs().argmin(dim=-1)


def test_quantize_levels_is_the_nearest_level_with_ties_low():
    levels = torch.tensor([-1.0, 0.0, 0.5, 2.0])
    values = torch.tensor([-5.0, -0.5, 0.25, 1.25, 0.1, 9.0, 2.0, -0.49])
    q = quantize_levels(values, levels)
    assert q.codes.tolist() == brute_nearest_level(values, levels).tolist()
    assert q.codes.tolist()[:4] == [0, 0, 1, 2]  # midpoints -0.5, 0.25, 1.25 go low


def test_kmeans_levels_per_channel_equal_per_tensor_on_each_channel():
    w = weights(5, 300, seed=2)
    per_channel = quantize_kmeans(w, 2, axis=0)
    assert per_channel.levels.shape == (5, 4)
    for c in range(5):
        alone = quantize_kmeans(w[c], 2)
        assert torch.equal(per_channel.levels[c], alone.levels)
        assert torch.equal(per_channel.codes[c], alone.codes)
    # axis=1 on the transpose is the same thing
    transposed = quantize_kmeans(w.t().contiguous(), 2, axis=1)
    assert torch.equal(transposed.levels, per_channel.levels)
    assert torch.equal(transposed.dequantize().t(), per_channel.dequantize())


def test_kmeans_beats_uniform_on_heavy_tails():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(4000, generator=g) ** 3  # heavy tails
    err_k = (quantize_kmeans(w, 3).dequantize() - w).pow(2).mean()
    err_u = (quantize_uniform(w, 3).dequantize() - w).pow(2).mean()
    assert err_k < 0.5 * err_u


def test_fewer_distinct_values_than_levels():
    w = torch.tensor([[1.0, 1.0, 1.0], [2.0, -2.0, 2.0]])
    whole = quantize_kmeans(w, 4)
    assert torch.equal(whole.levels, torch.tensor([-2.0, 1.0, 2.0]))
    rows = quantize_kmeans(w, 4, axis=0)
    assert rows.levels.shape == (2, 2)  # padded by repeating the top level
    assert torch.equal(rows.levels[0], torch.tensor([1.0, 1.0]))
    assert torch.equal(rows.dequantize(), w)


def test_levels_straight_through_and_reuse():
    w = weights(6, 50, seed=4).requires_grad_(True)
    levels = fit_levels(w, 3, axis=0)
    out = fake_quantize_levels(w, levels, axis=0)
    assert torch.equal(out.detach(), quantize_levels(w, levels, axis=0).dequantize())
    out.pow(2).sum().backward()
    assert torch.allclose(w.grad, 2 * out.detach())


def test_half_input():
    w = weights(4, 64, seed=5).half()
    q = quantize_kmeans(w, 3, axis=0)
    expected = torch.stack([brute_nearest_level(w[c], q.levels[c]) for c in range(4)])
    assert torch.equal(q.codes.long(), expected)
    assert fake_quantize_uniform(w, 8).dtype == torch.float16


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda w: quantize_uniform(w, 1), "bits"),
        (lambda w: quantize_uniform(w, 17), "bits"),
        (lambda w: quantize_kmeans(w, 0), "bits"),
        (lambda w: quantize_uniform(w, 4, axis=2), "axis"),
        (lambda w: quantize_uniform(w.long(), 4), "floating"),
        (lambda w: quantize_uniform(torch.zeros(0), 4), "non-empty"),
        (lambda w: quantize_uniform(w.index_fill(0, torch.tensor([0]), float("nan")), 4), "NaN"),
        (lambda w: quantize_levels(w, torch.zeros(3, 2), axis=0), "rows"),
        (lambda w: quantize_levels(w, torch.zeros(4), axis=0), "rank 2"),
        (lambda w: dequantize(w), "UniformCodes"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(InputError, match=message):
        call(weights(4, 5))


def test_codes_types():
    q = quantize_uniform(weights(3, 3), 8)
    assert isinstance(q, UniformCodes) and q.bits == 8 and q.axis is None
    big = quantize_levels(torch.linspace(0, 1, 1000), torch.linspace(0, 1, 300))
    assert big.codes.dtype == torch.int16 and big.bits == 9
