"""Evaluate Gaussians on a scene split: PSNR, SSIM, LPIPS, PSNR-AM, count, size, FPS."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from compgs.eval.metrics import lpips, lpips_status, mse, psnr_from_mse, ssim
from compgs.splats import Splats


def ply_size_bytes(splats: Splats) -> int:
    """Bytes of the INRIA PLY of these Gaussians (62 floats at SH 3), without header."""
    floats = 3 + 3 + 3 + 3 * splats.shN.shape[1] + 1 + 3 + 4
    return 4 * floats * splats.num_gaussians


@torch.no_grad()
def render_split(splats: Splats, scene, split: str, *, sh_degree: int, background, backend: str):
    """Yield (index, name, rendered [H,W,3], ground truth [H,W,3]) for every view of a split."""
    from compgs.render import render

    cams = scene.cameras(split)
    for i in range(len(cams)):
        cam = cams[i].to(splats.device)
        gt = scene.image(i, split).to(splats.device)
        out = render(
            splats,
            cam,
            width=int(cam.width[0]),
            height=int(cam.height[0]),
            sh_degree=sh_degree,
            background=background,
            backend=backend,
        )
        name = cams.names[i] if cams.names else f"{i:04d}"
        yield i, name, out.rgb[0].clamp(0, 1), gt


@torch.no_grad()
def evaluate(
    splats: Splats,
    scene,
    split: str = "test",
    *,
    sh_degree: int | None = None,
    background: torch.Tensor | None = None,
    backend: str = "auto",
    renders_dir: Path | None = None,
) -> dict:
    """Per-image and mean metrics of ``splats`` against ``scene``'s ``split`` images."""
    sh_degree = splats.sh_degree if sh_degree is None else sh_degree
    background = scene.background if background is None else background
    background = background.to(splats.device)
    use_lpips, lpips_reason = lpips_status()
    per_image, errors = [], []
    for _, name, rgb, gt in render_split(
        splats, scene, split, sh_degree=sh_degree, background=background, backend=backend
    ):
        err = float(mse(rgb, gt))
        errors.append(err)
        row = {"image": name, "psnr": psnr_from_mse(err), "ssim": float(ssim(rgb[None], gt[None]))}
        row["lpips"] = lpips(rgb, gt) if use_lpips else None
        per_image.append(row)
        if renders_dir is not None:
            _save_png(renders_dir / f"{Path(name).stem}.png", rgb)
    n = len(per_image)
    mean = {
        "psnr": float(np.mean([r["psnr"] for r in per_image])) if n else float("nan"),
        "ssim": float(np.mean([r["ssim"] for r in per_image])) if n else float("nan"),
        "lpips": float(np.mean([r["lpips"] for r in per_image])) if n and use_lpips else None,
        # PSNR of the mean MSE over all images (what collections report as PSNR-AM)
        "psnr_am": psnr_from_mse(float(np.mean(errors))) if n else float("nan"),
    }
    return {
        "split": split,
        "num_images": n,
        "mean": mean,
        "per_image": per_image,
        "lpips_available": use_lpips,
        "lpips_note": lpips_reason,
        "num_gaussians": splats.num_gaussians,
    }


@torch.no_grad()
def measure_fps(
    splats: Splats, scene, split: str = "test", *, backend: str = "auto", repeats: int = 3
) -> float:
    """Frames per second rendering the split's views on the splats' device (best of repeats)."""
    from compgs.render import render

    cams = scene.cameras(split)
    if len(cams) == 0:
        cams = scene.cameras("train")
    cams = cams[: min(len(cams), 8)].to(splats.device)
    kwargs = {"width": int(cams.width[0]), "height": int(cams.height[0]), "backend": backend}
    render(splats, cams[0], **kwargs)  # warm-up (compilation, caches)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(len(cams)):
            render(splats, cams[i], **kwargs)
        if splats.device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / len(cams))
    return 1.0 / best


def _save_png(path: Path, rgb: torch.Tensor) -> None:
    from PIL import Image

    from compgs.atomic import atomic_open

    path.parent.mkdir(parents=True, exist_ok=True)
    array = (rgb.clamp(0, 1).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    with atomic_open(path) as f:
        Image.fromarray(array).save(f, format="PNG")
