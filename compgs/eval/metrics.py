"""Image metrics on [..., H, W, 3] tensors in [0, 1] (the renderer's layout).

SSIM follows Wang et al. 2004 as used by 3DGS: an 11x11 Gaussian window with
sigma 1.5, C1 = 0.01^2, C2 = 0.03^2, averaged over pixels and channels.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
import torch.nn.functional as F


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a - b) ** 2).mean()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]."""
    return psnr_from_mse(float(mse(a, b)))


def psnr_from_mse(value: float) -> float:
    return float("inf") if value <= 0 else -10.0 * math.log10(value)


@functools.lru_cache(maxsize=8)
def _window(
    size: int, sigma: float, channels: int, dtype: torch.dtype, device: str
) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    w = (g[:, None] * g[None, :]).to(dtype=dtype, device=device)
    return w.expand(channels, 1, size, size).contiguous()


def ssim_map(
    a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5
) -> torch.Tensor:
    """Per-pixel SSIM [B, 3, H, W] (zero padding at the borders, as the 3DGS code does)."""
    x = a.reshape(-1, *a.shape[-3:]).permute(0, 3, 1, 2)
    y = b.reshape(-1, *b.shape[-3:]).permute(0, 3, 1, 2)
    c = x.shape[1]
    w = _window(window, sigma, c, x.dtype, str(x.device))
    pad = window // 2
    mu_x = F.conv2d(x, w, padding=pad, groups=c)
    mu_y = F.conv2d(y, w, padding=pad, groups=c)
    sxx = F.conv2d(x * x, w, padding=pad, groups=c) - mu_x**2
    syy = F.conv2d(y * y, w, padding=pad, groups=c) - mu_y**2
    sxy = F.conv2d(x * y, w, padding=pad, groups=c) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean SSIM (differentiable; 1 for identical images)."""
    return ssim_map(a, b).mean()


# --- LPIPS: only with weights already on this machine ---------------------------

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


def lpips_status() -> tuple[bool, str]:
    """(available, reason). LPIPS needs the `lpips` package and AlexNet weights on disk."""
    try:
        import lpips  # noqa: F401
    except ImportError:
        return False, "the 'lpips' package is not installed"
    checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE
    if not checkpoint.is_file():
        return False, f"AlexNet weights not found at {checkpoint} (nothing is downloaded)"
    return True, "lpips (AlexNet)"


@functools.lru_cache(maxsize=1)
def _lpips_net():
    import lpips

    return lpips.LPIPS(net="alex", verbose=False).eval()


def lpips(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """LPIPS (AlexNet) of two [H, W, 3] images, or None when unavailable (never 0)."""
    if not lpips_status()[0]:
        return None
    net = _lpips_net()
    x = a.permute(2, 0, 1)[None].float().cpu() * 2 - 1
    y = b.permute(2, 0, 1)[None].float().cpu() * 2 - 1
    with torch.no_grad():
        return float(net(x, y))
