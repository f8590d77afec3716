"""assign(): equals a float64 brute force, ties to the lowest index, chunk-independent."""

from __future__ import annotations

from unittest import mock

import pytest
import torch

import compgs.vq.nearest as nearest_module
from compgs.errors import InputError
from compgs.vq import assign, faiss_available
from tests.vq.helpers import brute_assign, brute_sq_dist


def random_case(n: int, k: int, d: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    c = torch.randn(k, d, generator=g)
    # Ties on purpose: duplicated centroids, and points sitting on a centroid.
    c[7] = c[2]
    c[k - 1] = c[2]
    x[:10] = c[2]
    x[10:20] = c[5]
    return x, c


@pytest.mark.parametrize("d", [1, 2, 3, 4, 7, 45])
@pytest.mark.parametrize("k", [40, 517])  # 517: blockwise row minima with a padded last block
def test_equals_brute_force_with_ties(d, k):
    x, c = random_case(1500, k, d, seed=d)
    expected = brute_assign(x, c)
    assert torch.equal(assign(x, c, backend="torch"), expected)
    assert torch.equal(assign(x, c), expected)  # auto (the sorted path for d = 1)
    # duplicated centroids 2, 7, K-1: only the lowest index is ever chosen
    got = assign(x, c, backend="torch")
    assert (got == 2).sum() >= 10 and not bool(((got == 7) | (got == k - 1)).any())


def near_tie_case(k: int = 16, repeats: int = 50):
    """Points ~1000 away from two centroids 1 apart, placed within 1e-4 of their bisector:
    float32 screening cannot separate them, so the float64 decision must."""
    g = torch.Generator().manual_seed(3)
    c = torch.randn(k, 3, generator=g)
    c[:, 1] = -1.0 - c[:, 1].abs()  # every other centroid is farther from the points
    c[9] = torch.tensor([-0.5, 0.0, 0.0])  # the right one has the LOWER index
    c[4] = torch.tensor([0.5, 0.0, 0.0])
    t = torch.tensor([0.0, 1e-4, -1e-4, 3e-5, -3e-5, 0.0]).repeat(repeats)
    x = torch.stack([t, torch.full_like(t, 1000.0), torch.zeros_like(t)], dim=1)
    x = torch.cat([x, torch.randn(4 * repeats, 3, generator=g)])
    return x, c


@pytest.mark.parametrize("k", [16, 300])
def test_near_ties_are_decided_exactly_and_the_exact_path_runs(k):
    x, c = near_tie_case(k)
    expected = brute_assign(x, c)
    # The case is really tied in float32 screening and really separated in float64.
    dist = brute_sq_dist(x, c)
    assert set(expected[:300].tolist()) == {4, 9}
    assert bool((expected[:300:6] == 4).all())  # exact ties (t = 0) -> lower index 4
    assert float((dist[:300, 4] - dist[:300, 9]).abs().max()) < 1e-3
    with mock.patch.object(
        nearest_module, "_decide_exactly", wraps=nearest_module._decide_exactly
    ) as spy:
        got = assign(x, c, backend="torch")
    assert spy.called
    assert torch.equal(got, expected)


@pytest.mark.parametrize("case", ["random", "random_big_k", "near_tie"])
def test_chunked_equals_unchunked(case):
    if case == "near_tie":
        x, c = near_tie_case(300, repeats=10)
    else:
        x, c = random_case(300, 33 if case == "random" else 700, 5, seed=11)
    whole = assign(x, c, backend="torch", chunk_size=x.shape[0])
    for chunk in (1, 7, 64, None):
        assert torch.equal(assign(x, c, backend="torch", chunk_size=chunk), whole)


def test_threads_do_not_change_the_result():
    x, c = random_case(3000, 300, 6, seed=13)
    threads = torch.get_num_threads()
    try:
        results = []
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            results.append(assign(x, c, backend="torch", chunk_size=100))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(r, results[0]) for r in results)
    assert torch.equal(results[0], brute_assign(x, c))
    assert torch.get_num_threads() == threads


def test_half_and_double_inputs():
    x, c = random_case(500, 20, 6, seed=5)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        xh, ch = x.to(dtype), c.to(dtype)
        assert torch.equal(assign(xh, ch, backend="torch"), brute_assign(xh, ch))
    x1, c1 = random_case(500, 20, 1, seed=6)
    assert torch.equal(assign(x1.half(), c1.half()), brute_assign(x1.half(), c1.half()))


@pytest.mark.parametrize("k", [10, 300])
def test_float32_overflow_falls_back_to_float64(k):
    g = torch.Generator().manual_seed(8)
    x, c = torch.randn(100, 3, generator=g) * 1e20, torch.randn(k, 3, generator=g) * 1e20
    assert torch.equal(assign(x, c, backend="torch"), brute_assign(x, c))


def test_single_centroid_and_single_vector():
    x, c = random_case(50, 20, 3, seed=1)
    assert torch.equal(assign(x, c[:1]), torch.zeros(50, dtype=torch.long))
    assert torch.equal(assign(x[:1], c), brute_assign(x[:1], c))


def test_sorted_path_matches_torch_path_on_symmetric_ties():
    # 0 is equidistant from -1 and +1; 2.0 sits on the midpoint of 1.5 and 2.5.
    c = torch.tensor([[1.0], [-1.0], [2.5], [1.5], [-1.0]])
    x = torch.tensor([[0.0], [2.0], [-1.0], [100.0], [-100.0], [1.25]])
    expected = brute_assign(x, c)
    assert expected.tolist() == [0, 2, 1, 2, 1, 0]
    assert torch.equal(assign(x, c), expected)
    assert torch.equal(assign(x, c, backend="torch"), expected)


def test_sorted_path_is_exact_one_ulp_around_every_midpoint():
    g = torch.Generator().manual_seed(12)
    c = torch.randn(30, 1, generator=g)
    c[5] = 1.0
    c[6] = torch.nextafter(torch.tensor(1.0), torch.tensor(2.0))  # midpoint not a float32
    c[7] = c[3]
    values = torch.sort(c[:, 0].double()).values
    mids = ((values[1:] + values[:-1]) / 2).float()  # nearest float32 to every midpoint
    inf = torch.tensor(float("inf"))
    near = [mids, torch.nextafter(mids, inf), torch.nextafter(mids, -inf)]
    near += [torch.nextafter(near[1], inf), torch.nextafter(near[2], -inf)]
    x = torch.cat(near)[:, None]
    assert torch.equal(assign(x, c), brute_assign(x, c))
    assert torch.equal(assign(x.double(), c.double()), brute_assign(x.double(), c.double()))


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu not installed")
def test_faiss_backend_agrees_except_within_float32_rounding():
    x, c = random_case(3000, 64, 8, seed=9)
    got = assign(x, c, backend="faiss")
    dist = brute_sq_dist(x, c)
    expected = dist.argmin(dim=1)
    two = dist.topk(2, dim=1, largest=False).values
    clear = (two[:, 1] - two[:, 0]) > 1e-4 * two[:, 1].clamp(min=1)
    assert torch.equal(got[clear], expected[clear])
    assert (got == expected).float().mean() > 0.999
    assert not bool(((got == 7) | (got == 63)).any())  # duplicates of 2: lowest index


@pytest.mark.skipif(not faiss_available(), reason="faiss-cpu not installed")
def test_faiss_backend_gives_ties_between_identical_centroids_to_the_lowest_index():
    g = torch.Generator().manual_seed(3)
    base = torch.randn(64, 3, generator=g)
    c = base[torch.randperm(256, generator=g) % 64]  # every centroid four times
    x = torch.randn(5000, 3, generator=g)
    got = assign(x, c, backend="faiss")
    lowest = {}
    for j in range(len(c)):
        lowest.setdefault(tuple(c[j].tolist()), j)
    assert all(lowest[tuple(c[j].tolist())] == j for j in got.tolist())
    assert (got == brute_assign(x, c)).float().mean() > 0.999


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda x, c: (x.clone().index_fill_(0, torch.tensor([3]), float("nan")), c), "NaN"),
        (lambda x, c: (x, c.clone().index_fill_(0, torch.tensor([1]), float("inf"))), "Inf"),
        (lambda x, c: (x, c.double()), "dtype|float64"),
        (lambda x, c: (x, c[:, :2]), "dimension"),
        (lambda x, c: (x, c[:0]), "at least one"),
        (lambda x, c: (x[0], c), r"\[N, d\]"),
        (lambda x, c: (x.long(), c), "floating"),
        (lambda x, c: (x, c.to("meta")), "meta"),
    ],
)
def test_bad_input(make, message):
    x, c = random_case(30, 10, 3, seed=0)
    bad_x, bad_c = make(x, c)
    with pytest.raises(InputError, match=message):
        assign(bad_x, bad_c)


def test_bad_options():
    x, c = random_case(30, 10, 3, seed=0)
    with pytest.raises(InputError, match="chunk_size"):
        assign(x, c, chunk_size=0)
    with pytest.raises(InputError, match="backend"):
        assign(x, c, backend="gpu")
