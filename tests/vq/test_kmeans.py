"""kmeans() and update_centroids(): recovery, monotone inertia, empty codes, d = 1 path."""

from __future__ import annotations

import logging

import pytest
import torch

from compgs.errors import InputError
from compgs.vq import inertia, kmeans, update_centroids
from compgs.vq.members import SUM_PART, Membership, scatter_sums
from tests.vq.helpers import agreement, blobs, brute_assign

PATHS = [{"backend": "auto"}, {"backend": "torch"}]


@pytest.mark.parametrize("d", [1, 3, 45])
def test_recovers_known_clusters(d):
    k = 6 if d == 1 else 12
    x, labels = blobs(2400, k, d, seed=d, spread=0.05)
    if d == 1:  # well-separated points on a line
        labels = torch.arange(2400) % k
        x = (
            labels.float() * 3.0
            + 0.05 * torch.randn(2400, generator=torch.Generator().manual_seed(1))
        )[:, None]
    # One k-means++ draw can put two seeds in one blob (a local optimum); the best of
    # a few restarts, as in every k-means library, finds them all.
    runs = [kmeans(x, k, iters=50, seed=s) for s in range(5)]
    best = min(runs, key=lambda r: r.inertia)
    assert agreement(labels, best.assignments, k) > 0.99
    assert torch.equal(best.assignments, brute_assign(x, best.centroids))


@pytest.mark.parametrize(
    "d, path", [(1, "auto"), (1, "torch"), (4, "torch"), (4, "faiss_or_torch")]
)
def test_inertia_never_increases(d, path, monkeypatch):
    if path == "faiss_or_torch":  # reach faiss inside the loop at a test's size
        monkeypatch.setattr("compgs.vq.nearest.FAISS_MIN_WORK", 1)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1500, d, generator=g) * torch.rand(1500, 1, generator=g)
    init = x[:20].clone()
    backend = "auto" if path == "faiss_or_torch" else path
    values = [kmeans(x, 20, iters=t, init=init, backend=backend).inertia for t in range(10)]
    assert values[-1] < values[0] * 0.9  # it did something
    for before, after in zip(values, values[1:]):
        assert after <= before * (1 + 1e-7)


def test_one_dim_path_equals_generic_path_exactly_on_exact_sums():
    # Integer data: every float32 sum is exact, so both paths compute identical means.
    g = torch.Generator().manual_seed(4)
    x = torch.randint(-500, 500, (5000, 1), generator=g).float()
    w = torch.randint(0, 4, (5000,), generator=g).float()
    for weights in (None, w):
        fast = kmeans(x, 16, iters=40, seed=3, weights=weights)
        slow = kmeans(x, 16, iters=40, seed=3, weights=weights, backend="torch")
        assert torch.equal(fast.centroids, slow.centroids)
        assert torch.equal(fast.assignments, slow.assignments)
        assert fast.iterations == slow.iterations
        assert fast.inertia == slow.inertia


def test_one_dim_path_close_to_generic_path_on_floats():
    x = torch.randn(4000, 1, generator=torch.Generator().manual_seed(5))
    fast = kmeans(x, 8, iters=100, seed=1)
    slow = kmeans(x, 8, iters=100, seed=1, backend="torch")
    assert torch.allclose(fast.centroids, slow.centroids, atol=1e-4)
    assert fast.inertia == pytest.approx(slow.inertia, rel=1e-5)
    # whatever the path, the assignments are the exact nearest centroids
    assert torch.equal(fast.assignments, brute_assign(x, fast.centroids))


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("d", [1, 3])
def test_empty_codes_are_reseeded(path, d):
    g = torch.Generator().manual_seed(6)
    x = torch.randn(600, d, generator=g)
    init = torch.cat([x[:4], torch.full((12, d), 1e3)])  # 12 codes far from every point
    result = kmeans(x, 16, iters=5, init=init, **path)
    assert bool((torch.bincount(result.assignments, minlength=16) > 0).all())
    assert torch.equal(result.assignments, brute_assign(x, result.centroids))


@pytest.mark.parametrize("path", PATHS)
def test_every_code_used_with_exactly_k_distinct_vectors(path):
    g = torch.Generator().manual_seed(7)
    distinct = torch.randn(10, 2, generator=g)
    x = distinct[torch.randint(0, 10, (500,), generator=g)]
    x[:10] = distinct
    result = kmeans(x, 10, iters=20, init="random", seed=0, **path)
    assert bool((torch.bincount(result.assignments, minlength=10) > 0).all())
    assert result.inertia == pytest.approx(0.0, abs=1e-9)


def test_too_few_distinct_vectors_warns(caplog):
    x = torch.zeros(50, 3)
    x[25:] = 1.0
    with caplog.at_level(logging.WARNING, logger="compgs.vq.kmeans"):
        result = kmeans(x, 4, iters=3)
    assert "stay empty" in caplog.text
    assert result.inertia == 0.0


@pytest.mark.parametrize("d", [1, 5])
def test_deterministic_given_a_seed(d):
    x = torch.randn(800, d, generator=torch.Generator().manual_seed(8))
    a = kmeans(x, 12, iters=10, seed=42)
    b = kmeans(x, 12, iters=10, seed=42)
    c = kmeans(x, 12, iters=10, seed=43)
    assert torch.equal(a.centroids, b.centroids) and torch.equal(a.assignments, b.assignments)
    assert not torch.equal(a.centroids, c.centroids)


@pytest.mark.parametrize("d", [1, 3])
def test_integer_weights_equal_repeated_points(d):
    g = torch.Generator().manual_seed(9)
    x = torch.randint(-50, 50, (300, d), generator=g).float()
    w = torch.randint(1, 4, (300,), generator=g)
    init = x[:8].clone()
    weighted = kmeans(x, 8, iters=30, init=init, weights=w.float())
    repeated = kmeans(x.repeat_interleave(w, dim=0), 8, iters=30, init=init)
    assert torch.allclose(weighted.centroids, repeated.centroids, atol=1e-5)
    assert weighted.inertia == pytest.approx(repeated.inertia, rel=1e-6)


@pytest.mark.parametrize("init", ["kmeans++", "random"])
def test_init_picks_distinct_data_points(init):
    x = torch.randn(300, 4, generator=torch.Generator().manual_seed(10))
    result = kmeans(x, 30, iters=0, init=init, seed=1)
    rows = {tuple(r.tolist()) for r in result.centroids}
    assert len(rows) == 30 and rows <= {tuple(r.tolist()) for r in x}
    assert result.iterations == 0
    assert torch.equal(result.assignments, brute_assign(x, result.centroids))


def test_kmeanspp_spreads_seeds_better_than_random():
    x, _ = blobs(3000, 30, 2, seed=14)
    inertia_of = {
        init: sum(kmeans(x, 30, iters=0, init=init, seed=s).inertia for s in range(5))
        for init in ("kmeans++", "random")
    }
    assert inertia_of["kmeans++"] < 0.5 * inertia_of["random"]


def test_half_precision_input():
    x, labels = blobs(900, 5, 3, seed=11)
    result = kmeans(x.half(), 5, iters=20, seed=2)
    assert result.centroids.dtype == torch.float16
    assert agreement(labels, result.assignments, 5) > 0.99


# --- update_centroids ---------------------------------------------------------


def reference_means(x, a, k, w=None):
    w = torch.ones(len(x), dtype=torch.float64) if w is None else w.double()
    out = torch.zeros(k, x.shape[1], dtype=torch.float64)
    for j in range(k):
        m = a == j
        if m.any() and w[m].sum() > 0:
            out[j] = (x.double()[m] * w[m, None]).sum(0) / w[m].sum()
    return out


@pytest.mark.parametrize("weighted", [False, True])
def test_update_centroids_is_the_member_mean(weighted):
    g = torch.Generator().manual_seed(12)
    x = torch.randn(1000, 6, generator=g)
    a = torch.randint(0, 9, (1000,), generator=g)  # code 9 stays empty
    w = torch.rand(1000, generator=g) if weighted else None
    previous = torch.randn(10, 6, generator=g)
    got = update_centroids(x, a, 10, weights=w, previous=previous)
    ref = reference_means(x, a, 10, w)
    assert torch.allclose(got[:9].double(), ref[:9], atol=1e-6)
    assert torch.equal(got[9], previous[9])
    assert torch.equal(update_centroids(x, a, 10)[9], torch.zeros(6))


@pytest.mark.parametrize("sparse", [True, False])
def test_membership_sums_equal_index_add(sparse):
    g = torch.Generator().manual_seed(15)
    x = torch.randn(2000, 7, generator=g)
    a = torch.randint(0, 50, (2000,), generator=g)
    members = Membership.build(a, 53, torch.float32)  # codes 50..52 empty
    if not sparse:
        members.matrix = None  # the path taken on GPUs
    expected = torch.zeros(53, 7, dtype=torch.float64).index_add_(0, a, x.double())
    assert torch.allclose(members.sums(x).double(), expected, atol=1e-4)
    assert torch.equal(members.counts, torch.bincount(a, minlength=53).float())


def test_large_scatter_sums_do_not_depend_on_threads():
    g = torch.Generator().manual_seed(16)
    n = 2 * SUM_PART + 1234  # three parts
    x = torch.randn(n, 3, generator=g)
    a = torch.randint(0, 20, (n,), generator=g)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = scatter_sums(x, a, 20)
        torch.set_num_threads(2)
        two = scatter_sums(x, a, 20)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    expected = torch.zeros(20, 3, dtype=torch.float64).index_add_(0, a, x.double())
    assert torch.allclose(one.double(), expected, atol=1e-3)
    assert torch.get_num_threads() == threads


def test_update_centroids_half_accumulates_in_float32():
    g = torch.Generator().manual_seed(13)
    x = (torch.randn(20000, 2, generator=g) + 30).half()  # float16 sums would saturate
    a = torch.randint(0, 3, (20000,), generator=g)
    got = update_centroids(x, a, 3)
    assert got.dtype == torch.float16
    assert torch.allclose(got.double(), reference_means(x, a, 3), atol=0.02)


# --- bad input ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"k": 0}, "must be >= 1"),
        ({"k": 101}, "exceeds the number of vectors"),
        ({"k": 2.5}, "must be an int"),
        ({"k": 4, "iters": -1}, "iters"),
        ({"k": 4, "init": "bogus"}, "init"),
        ({"k": 4, "init": torch.zeros(3, 2)}, "init must have shape"),
        ({"k": 4, "init": torch.zeros(4, 2, dtype=torch.float64)}, "dtype|float64"),
        ({"k": 4, "weights": torch.ones(7)}, "weights must have shape"),
        ({"k": 4, "weights": -torch.ones(100)}, ">= 0"),
        ({"k": 4, "weights": torch.zeros(100)}, "all zero"),
    ],
)
def test_kmeans_bad_input(kwargs, message):
    x = torch.randn(100, 2)
    with pytest.raises(InputError, match=message):
        kmeans(x, **kwargs)


def test_kmeans_rejects_nan_and_inf():
    x = torch.randn(100, 2)
    x[5, 1] = float("nan")
    with pytest.raises(InputError, match="NaN or Inf"):
        kmeans(x, 3)
    x[5, 1] = float("inf")
    with pytest.raises(InputError, match="NaN or Inf"):
        kmeans(x, 3)


def test_update_centroids_bad_input():
    x = torch.randn(10, 2)
    with pytest.raises(InputError, match=r"in \[0, 3\)"):
        update_centroids(x, torch.arange(10), 3)
    with pytest.raises(InputError, match="shape"):
        update_centroids(x, torch.zeros(9, dtype=torch.long), 3)
    with pytest.raises(InputError, match="integer"):
        update_centroids(x, torch.zeros(10), 3)
    with pytest.raises(InputError, match="3 rows"):
        update_centroids(x, torch.zeros(10, dtype=torch.long), 3, previous=torch.zeros(2, 2))


def test_inertia_matches_definition():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    c = torch.tensor([[0.0, 0.0]])
    assert inertia(x, c, torch.zeros(2, dtype=torch.long)) == 25.0
    w = torch.tensor([1.0, 2.0])
    assert inertia(x, c, torch.zeros(2, dtype=torch.long), weights=w) == 50.0
