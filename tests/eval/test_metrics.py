import math

import pytest
import torch

from compgs.eval.metrics import lpips, lpips_status, psnr, ssim


def test_psnr_known_value():
    a = torch.zeros(8, 8, 3)
    b = torch.full((8, 8, 3), 0.1)
    assert psnr(a, b) == pytest.approx(20.0)
    assert math.isinf(psnr(a, a))


def test_ssim_identity_and_agreement_with_skimage():
    skimage = pytest.importorskip("skimage.metrics")
    g = torch.Generator().manual_seed(0)
    a = torch.rand(40, 48, 3, generator=g, dtype=torch.float64)
    b = (a + 0.1 * torch.randn(40, 48, 3, generator=g, dtype=torch.float64)).clamp(0, 1)
    assert float(ssim(a, a)) == pytest.approx(1.0)
    ours = float(ssim(a, b))
    ref = skimage.structural_similarity(
        a.numpy(), b.numpy(), channel_axis=2, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=1.0,
    )  # fmt: skip
    # skimage crops the borders, we zero-pad them (as 3DGS does): close, not equal
    assert ours == pytest.approx(ref, abs=0.02)
    assert 0 < ours < 1


def test_ssim_is_differentiable():
    a = torch.rand(1, 16, 16, 3, requires_grad=True)
    b = torch.rand(1, 16, 16, 3)
    (1 - ssim(a, b)).backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()


def test_lpips_never_silently_zero():
    available, reason = lpips_status()
    value = lpips(torch.rand(32, 32, 3), torch.rand(32, 32, 3))
    if available:
        assert value is not None and value > 0
    else:
        assert value is None and reason
