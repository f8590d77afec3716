"""Images for fine-tuning and fidelity checks: folders of photos -> normalized crops.

Random-resized crops (the ImageNet training transform, deterministic given a
seed) let a handful of photos stand in for a few hundred unlabeled inputs,
e.g. to distill a quantized backbone from its float original.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from compgs.errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def normalize(x: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] in [0, 1] -> ImageNet-normalized."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """[N, C, H, W] -> [N, C, size, size], antialiased bilinear."""
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def random_crops(
    image: torch.Tensor,
    count: int,
    size: int,
    *,
    scale: tuple[float, float] = (0.25, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``count`` square crops of ``image`` [3, H, W] covering ``scale`` of its area,
    resized to ``size``: [count, 3, size, size]."""
    _, h, w = image.shape
    gen = generator or torch.Generator().manual_seed(0)
    crops = []
    for _ in range(count):
        area = float(torch.empty(1).uniform_(*scale, generator=gen)) * h * w
        side = max(1, min(h, w, round(area**0.5)))
        top = int(torch.randint(0, h - side + 1, (1,), generator=gen))
        left = int(torch.randint(0, w - side + 1, (1,), generator=gen))
        crops.append(image[:, top : top + side, left : left + side])
    return torch.cat([resize(c[None], size) for c in crops])


def image_files(folder: str | os.PathLike) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no images ({', '.join(SUFFIXES)})")
    return files


def read_image(path: Path) -> torch.Tensor:
    """[3, H, W] float in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"{path}: cannot read image ({e})") from None
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def load_crops(
    files: list[Path],
    size: int,
    crops_per_image: int = 1,
    *,
    scale: tuple[float, float] = (0.25, 1.0),
    seed: int = 0,
) -> torch.Tensor:
    """Normalized random crops of every file: [len(files) x crops_per_image, 3, size, size]."""
    gen = torch.Generator().manual_seed(seed)
    out = [
        random_crops(read_image(f), crops_per_image, size, scale=scale, generator=gen)
        for f in files
    ]
    return normalize(torch.cat(out))
