"""What the Python side says about a file, in the shape the page reports (window.compgs)."""

from __future__ import annotations

import io as stdio
import re
import zlib

import numpy as np
import pytest

from compgs.codec import container, decode
from compgs.errors import CompgsError, InputError
from compgs.splats import Splats


def field_checksums(splats: Splats) -> dict[str, str]:
    """CRC-32 of each field's little-endian float32 bytes (the page computes the same)."""
    return {
        name: f"{zlib.crc32(np.ascontiguousarray(value, '<f4').tobytes()):08x}"
        for name, value in splats.numpy().items()
    }


def cgs_summary(data: bytes, name: str) -> dict:
    """Count, field and section checksums of .cgs bytes, or the failure (section named)."""
    try:
        sections = container.unpack_container(data, name).sections
        splats = decode(data, name)
        try:
            splats.validate_finite()
        except InputError as e:
            raise CompgsError(f"{name}: {e}") from e
    except CompgsError as e:
        return {"ok": False, "error": str(e)}
    return {
        "ok": True,
        "count": splats.num_gaussians,
        "shDegree": splats.sh_degree,
        "checksums": field_checksums(splats),
        "sections": {k: f"{zlib.crc32(v):08x}" for k, v in sections.items()},
    }


def failure_key(error: str) -> str:
    """The part of an error both readers must agree on: the section, or the whole message."""
    found = re.search(r"section '([^']*)'", error)
    return f"section {found.group(1)}" if found else error


def comparable(summary: dict) -> dict:
    if not summary["ok"]:
        return {"ok": False, "failure": failure_key(summary["error"])}
    keys = ("ok", "count", "shDegree", "checksums", "sections")
    return {k: summary[k] for k in keys if k in summary}


def camera_json(cameras) -> dict:
    """One compgs Cameras entry as the page's setCamera() argument."""
    K = cameras.K[0].tolist()
    return {
        "camtoworld": cameras.camtoworld[0].flatten().tolist(),
        "fx": K[0][0],
        "fy": K[1][1],
        "cx": K[0][2],
        "cy": K[1][2],
        "width": int(cameras.width[0]),
        "height": int(cameras.height[0]),
    }


def reference_image(splats: Splats, cameras) -> np.ndarray:
    """uint8 [H, W, 3]: the project's own renderer, black background."""
    render_module = pytest.importorskip("compgs.render", reason="compgs.render has not landed")
    if not hasattr(render_module, "render"):
        pytest.skip("compgs.render.render has not landed")
    import torch

    width, height = int(cameras.width[0]), int(cameras.height[0])
    out = render_module.render(
        splats,
        cameras,
        width=width,
        height=height,
        sh_degree=splats.sh_degree,
        background=torch.zeros(3),
    )
    rgb = out.rgb[0].detach().clamp(0, 1).cpu().numpy()
    return (rgb * 255 + 0.5).astype(np.uint8)


def png_to_array(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(stdio.BytesIO(png)).convert("RGB"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))
