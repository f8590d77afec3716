"""Metrics and reports: PSNR, SSIM, LPIPS (when its weights are local), size, FPS."""

from compgs.eval.metrics import lpips_status, psnr, ssim

__all__ = ["lpips_status", "psnr", "ssim"]
