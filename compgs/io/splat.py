"""antimatter15 `.splat`: headerless, 32 bytes per Gaussian, no SH.

Layout per Gaussian: position 3xf32, scale 3xf32 (activated), RGBA 4xu8
(RGB = (0.5 + C0 * f_dc) * 255, A = sigmoid(opacity) * 255), rotation 4xu8
(normalised wxyz * 128 + 128).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from compgs.atomic import atomic_open
from compgs.codec.u8 import opacity_logit_to_u8, to_u8, u8_to_opacity_logit
from compgs.errors import CorruptFileError
from compgs.io.common import checked_finite, read_input_bytes
from compgs.splats import SH_C0, Splats, log_of_linear_scales

RECORD = np.dtype(
    [("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)]
)
assert RECORD.itemsize == 32


def read_splat(path: str | os.PathLike) -> Splats:
    data = read_input_bytes(path)
    if len(data) % RECORD.itemsize:
        raise CorruptFileError(
            f"{path}: .splat size {len(data)} is not a multiple of {RECORD.itemsize} bytes"
        )
    rec = np.frombuffer(data, dtype=RECORD)
    n = len(rec)
    scale = rec["scale"].copy()
    if (scale <= 0).any():
        raise CorruptFileError(f"{path}: .splat holds non-positive scales")
    rgb = rec["rgba"][:, :3].astype(np.float64) / 255.0
    splats = Splats(
        means=torch.from_numpy(rec["position"].copy()),
        quats=torch.from_numpy((rec["rot"].astype(np.float32) - 128.0) / 128.0),
        scales=torch.from_numpy(log_of_linear_scales(scale)),
        opacities=torch.from_numpy(u8_to_opacity_logit(rec["rgba"][:, 3])),
        sh0=torch.from_numpy(((rgb - 0.5) / SH_C0).astype(np.float32).reshape(n, 1, 3)),
        shN=torch.zeros(n, 0, 3),
        source_scales=torch.from_numpy(scale),
    )
    return checked_finite(path, splats)


def quats_to_u8(quats: np.ndarray) -> np.ndarray:
    """Normalised wxyz quaternion -> bytes, keeping quaternions already on the byte lattice.

    A quaternion read from a .splat is (byte - 128) / 128: not exactly unit length,
    so normalising it again could move a byte by one. Such lattice points (unit
    length within the lattice's rounding) are written back unchanged.
    """
    q = quats.astype(np.float64)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    lattice = q * 128.0
    on_lattice = (
        np.all(np.abs(lattice - np.round(lattice)) < 1e-4, axis=1)
        & np.all((lattice >= -128) & (lattice <= 127), axis=1)
        & (np.abs(norm[:, 0] - 1.0) < 1.0 / 64.0)
    )
    unit = q / np.maximum(norm, 1e-12)
    out = to_u8(unit * 128.0 + 128.0)
    out[on_lattice] = (np.round(lattice[on_lattice]) + 128).astype(np.uint8)
    return out


def importance_order(splats: Splats) -> np.ndarray:
    """Indices by decreasing volume x opacity (what .splat writers do for progressive loading)."""
    a = splats.numpy()
    size = np.exp(a["scales"].astype(np.float64).sum(axis=1))
    opacity = 1.0 / (1.0 + np.exp(-a["opacities"].astype(np.float64)))
    return np.argsort(-size * opacity, kind="stable")


def encode_splat(splats: Splats, *, sort: bool = True) -> bytes:
    if sort:
        splats = splats.index(torch.from_numpy(importance_order(splats)))
    a = splats.numpy()
    n = splats.num_gaussians
    rec = np.empty(n, dtype=RECORD)
    rec["position"] = a["means"]
    rec["scale"] = splats.linear_scales_for_writing()
    rec["rgba"][:, :3] = to_u8((0.5 + SH_C0 * a["sh0"][:, 0].astype(np.float64)) * 255.0)
    rec["rgba"][:, 3] = opacity_logit_to_u8(a["opacities"])
    rec["rot"] = quats_to_u8(a["quats"])
    return rec.tobytes()


def write_splat(splats: Splats, path: str | os.PathLike, *, sort: bool = True) -> None:
    data = encode_splat(splats, sort=sort)
    with atomic_open(path) as f:
        f.write(data)
