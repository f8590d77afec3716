"""The engine on CUDA tensors gives what it gives on CPU (skipped without a GPU)."""

import pytest
import torch

from compgs.vq import Codebook, assign, kmeans, update_centroids

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _data(n=4000, d=4, k=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)


@cuda
@pytest.mark.parametrize("d", [1, 4, 45])
def test_assign_on_cuda_equals_cpu(d):
    x, c = _data(d=d)
    assert torch.equal(assign(x.cuda(), c.cuda()).cpu(), assign(x, c, backend="torch"))


@cuda
def test_update_centroids_on_cuda_matches_cpu():
    x, c = _data()
    a = assign(x, c)
    got = update_centroids(x.cuda(), a.cuda(), 64).cpu()
    torch.testing.assert_close(got, update_centroids(x, a, 64), rtol=1e-5, atol=1e-6)


@cuda
def test_kmeans_on_cuda_matches_cpu_from_the_same_start():
    x, c = _data(k=16)
    cpu = kmeans(x, 16, iters=5, init=c)
    gpu = kmeans(x.cuda(), 16, iters=5, init=c.cuda())
    assert (gpu.assignments.cpu() == cpu.assignments).float().mean() > 0.999
    assert gpu.inertia == pytest.approx(cpu.inertia, rel=1e-4)


@cuda
def test_straight_through_codebook_on_cuda():
    x, _ = _data()
    x = x.cuda().requires_grad_(True)
    book = Codebook(32, 4, iters=3, device="cuda")
    book.fit(x.detach())
    y = book(x)
    y.sum().backward()
    assert y.is_cuda and torch.equal(x.grad, torch.ones_like(x))


@cuda
def test_nola_basis_on_cuda_equals_cpu():
    from compgs.nola.generator import basis

    cpu = basis(7, "layer.A", 3, 5, 4)
    assert torch.equal(basis(7, "layer.A", 3, 5, 4, device="cuda").cpu(), cpu)
