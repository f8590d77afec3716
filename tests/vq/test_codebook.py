"""Codebook (straight-through quantization, state dict, freezing, groups) and QATSchedule."""

from __future__ import annotations

import io

import pytest
import torch

from compgs.errors import InputError
from compgs.vq import Codebook, QATAction, QATSchedule, join_groups, update_centroids
from tests.vq.helpers import brute_assign


def data(n: int = 600, d: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def fitted(k: int = 16, d: int = 3, n: int = 600) -> tuple[Codebook, torch.Tensor]:
    x = data(n, d)
    book = Codebook(k, d, iters=5)
    book.fit(x)
    return book, x


def test_straight_through_gradient_equals_gradient_wrt_quantized():
    book, x0 = fitted()
    x = x0.clone().requires_grad_(True)
    q = book.quantize(x)
    assert torch.equal(q.detach(), book.centroids[book.assignments])  # exact values
    target = torch.randn_like(x0)

    def loss_fn(t):
        return ((t - target) ** 2 * torch.arange(1.0, 4.0)).sum() + t.sin().sum()

    loss_fn(q).backward()
    q_leaf = q.detach().clone().requires_grad_(True)
    loss_fn(q_leaf).backward()
    assert torch.equal(x.grad, q_leaf.grad)
    assert book.centroids.grad is None  # centroids are data, not parameters


@pytest.mark.parametrize("d", [3, 20])  # 20: the sparse (CSR) update path on CPU
def test_fit_assign_update_semantics(d):
    book, x = fitted(d=d)
    assert book.ready and book.assignments.shape == (600,)
    assert torch.equal(book.assignments, brute_assign(x, book.centroids))
    moved = x + 0.3
    before = book.centroids.clone()
    book.update(moved)  # assignments unchanged, centroids = member means
    expected = update_centroids(moved, book.assignments, 16, previous=before)
    assert torch.allclose(book.centroids, expected, atol=1e-6)
    book.assign(moved)
    assert torch.equal(book.assignments, brute_assign(moved, book.centroids))
    # after a re-assignment the prepared membership is rebuilt
    book.update(moved)
    expected = update_centroids(moved, book.assignments, 16, previous=book.centroids)
    assert torch.allclose(book.centroids, expected, atol=1e-6)
    assert (book._members.matrix is not None) == (d >= 16)
    w = torch.rand(600)
    book.update(moved, weights=w)
    expected = update_centroids(moved, book.assignments, 16, weights=w, previous=book.centroids)
    assert torch.allclose(book.centroids, expected, atol=1e-6)


def test_num_bits():
    assert [Codebook(k, 2).num_bits for k in (1, 2, 3, 4096, 4097, 16384)] == [0, 1, 2, 12, 13, 14]


def test_state_dict_round_trip():
    book, x = fitted()
    book.freeze()
    buffer = io.BytesIO()
    torch.save(book.state_dict(), buffer)
    buffer.seek(0)
    other = Codebook(1, 3)  # other K and no assignments: shapes come from the state
    other.load_state_dict(torch.load(buffer))
    assert torch.equal(other.centroids, book.centroids)
    assert torch.equal(other.assignments, book.assignments)
    assert other.frozen and other.ready and other.num_codes == 16
    assert torch.equal(other.quantize(x), book.quantize(x))


def test_schedule_actions():
    s = QATSchedule(start=3, assign_every=4, freeze=13)
    got = [s.step(i).value for i in range(17)]
    expected = ["off"] * 3 + ["fit", "update", "update", "update", "assign"]
    expected += ["update"] * 3 + ["assign", "update", "update", "update", "update", "update"]
    assert got == expected
    assert QATSchedule(start=0, assign_every=1).step(5) is QATAction.ASSIGN


@pytest.mark.parametrize(
    "kwargs",
    [{"start": -1}, {"assign_every": 0}, {"start": 5, "freeze": 4}, {"start": 1.5}],
)
def test_schedule_bad_config(kwargs):
    with pytest.raises(InputError):
        QATSchedule(**kwargs)


def test_training_loop_with_schedule():
    """x drifts like trained parameters; the codebook follows the schedule."""
    schedule = QATSchedule(start=2, assign_every=3, freeze=9)
    book = Codebook(8, 2, iters=5)
    x = data(300, 2)
    history = []
    for i in range(12):
        x = x + 0.05 * torch.sin(x * (i + 1))  # the optimizer moves the vectors
        action = schedule.step(i)
        before = book.assignments.clone()
        q = book.step(x, action)
        history.append((action, before, book.assignments.clone()))
        if action is QATAction.OFF:
            assert q is x
            continue
        if action in (QATAction.FIT, QATAction.ASSIGN):
            # k-means output: every vector sits with its nearest centroid
            assert torch.equal(book.assignments, brute_assign(x, book.centroids))
        else:
            # updates never re-assign; centroids are the member means of the current vectors
            assert torch.equal(book.assignments, before)
            means = update_centroids(x, book.assignments, 8, previous=book.centroids)
            assert torch.allclose(book.centroids, means, atol=1e-6)
    frozen_steps = [h for i, h in enumerate(history) if i >= 9]
    assert all(a is QATAction.UPDATE and torch.equal(b, c) for a, b, c in frozen_steps)


def test_frozen_codebook_transfer_only_assigns():
    source, _ = fitted()
    other_scene = data(400, 3, seed=5) * 1.5
    book = Codebook.from_centroids(source.centroids)
    assert book.frozen
    fixed = book.centroids.clone()
    for action in (QATAction.FIT, QATAction.UPDATE, QATAction.ASSIGN, QATAction.UPDATE):
        q = book.step(other_scene, action)
        assert torch.equal(book.centroids, fixed)
        assert torch.equal(book.assignments, brute_assign(other_scene, fixed))
        assert torch.equal(q, fixed[book.assignments])
    for verb in (book.fit, book.update, book.lloyd):
        with pytest.raises(InputError, match="frozen"):
            verb(other_scene)
    book.unfreeze().fit(other_scene)
    assert not torch.equal(book.centroids, fixed)


def test_shared_codebook_concat_groups_gradients_reach_both():
    g = torch.Generator().manual_seed(1)
    dc = torch.randn(200, 1, 3, generator=g).requires_grad_(True)
    sh = torch.randn(200, 15, 3, generator=g).requires_grad_(True)
    x, layout = join_groups([dc, sh])
    assert x.shape == (200, 48)
    book = Codebook(10, 48, iters=3)
    dc_q, sh_q = layout.split(book.step(x, QATAction.FIT))
    assert dc_q.shape == dc.shape and sh_q.shape == sh.shape
    centroids = book.centroids[book.assignments]
    assert torch.equal(dc_q.reshape(200, 3).detach(), centroids[:, :3])
    (dc_q.sum() * 2 + (sh_q**2).sum()).backward()
    assert torch.equal(dc.grad, torch.full_like(dc, 2.0))
    assert torch.allclose(sh.grad, 2 * sh_q.detach())


def test_shared_codebook_stack_groups():
    a, b = data(100, 3, seed=2), data(50, 3, seed=3) + 5
    x, layout = join_groups([a, b], mode="stack")
    assert x.shape == (150, 3)
    book = Codebook(6, 3, iters=5)
    qa, qb = layout.split(book.step(x, QATAction.FIT))
    assert qa.shape == a.shape and qb.shape == b.shape
    assert torch.equal(torch.cat([qa, qb]), book.centroids[book.assignments])


def test_join_groups_bad_input():
    with pytest.raises(InputError, match="same number of rows"):
        join_groups([torch.zeros(3, 2), torch.zeros(4, 2)])
    with pytest.raises(InputError, match="same row width"):
        join_groups([torch.zeros(3, 2), torch.zeros(4, 3)], mode="stack")
    with pytest.raises(InputError, match="mode"):
        join_groups([torch.zeros(3, 2)], mode="zip")


def test_select_after_pruning():
    book, x = fitted()
    keep = torch.arange(600) % 3 != 0
    kept = book.assignments[keep].clone()
    book.select(keep)
    assert torch.equal(book.assignments, kept)
    book.update(x[keep])  # counts are recomputed for the kept vectors
    assert torch.allclose(
        book.centroids[torch.unique(kept)],
        update_centroids(x[keep], kept, 16)[torch.unique(kept)],
    )


def test_dtype_move_keeps_updates_right():
    book, x = fitted()
    book.update(x)  # prepares the membership in float32
    book.double()
    book.update(x.double() + 1.0)
    expected = update_centroids(x.double() + 1.0, book.assignments, 16, previous=book.centroids)
    assert book.centroids.dtype == torch.float64
    assert torch.allclose(book.centroids, expected, atol=1e-6)


def test_resumed_without_codebook_fits_on_first_step():
    book = Codebook(8, 3)
    book.step(data(), QATAction.UPDATE)
    assert book.ready and book.assignments.shape == (600,)


def test_bad_input():
    book, x = fitted()
    with pytest.raises(InputError, match=r"\[N, 3\]"):
        book.quantize(torch.zeros(5, 4))
    with pytest.raises(InputError, match="assignments for 600 vectors, got 5"):
        book.quantize(torch.zeros(5, 3))
    with pytest.raises(InputError, match="meta"):
        book.assign(torch.zeros(5, 3, device="meta"))
    with pytest.raises(InputError, match="not fitted"):
        Codebook(4, 3).assign(x)
    with pytest.raises(InputError, match="exceeds"):
        Codebook(700, 3).fit(x)
    with pytest.raises(InputError, match="NaN"):
        book.assign(torch.full((5, 3), float("nan")))
    with pytest.raises(InputError, match="num_codes"):
        Codebook(0, 3)
    with pytest.raises(InputError, match="QATAction"):
        book.step(x, "assign")
    with pytest.raises(InputError, match="NaN"):
        book.update(x.clone().index_fill_(0, torch.tensor([7]), float("inf")))
    with pytest.raises(InputError, match="bool mask"):
        book.select(torch.ones(5, dtype=torch.bool))


def test_half_inputs_keep_their_dtype():
    book, x = fitted()
    q = book.step(x.half(), QATAction.ASSIGN)
    assert q.dtype == torch.float16 and book.centroids.dtype == torch.float32
