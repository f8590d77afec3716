"""8-bit encodings shared by the `.splat` and `.spz` formats.

Both store activated opacity and colour as bytes. Decoding must give finite
logits (bytes 0 and 255 would map to -inf/+inf), and re-encoding a decoded
value must give back the same byte, so that a file read and written again is
unchanged: bytes 0 and 255 decode to the logits of 0.25/255 and 254.75/255,
which round back to 0 and 255.
"""

from __future__ import annotations

import numpy as np


def to_u8(x: np.ndarray) -> np.ndarray:
    """Round to nearest and clamp to [0, 255] (the reference writers' toUint8)."""
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def opacity_logit_to_u8(logits: np.ndarray) -> np.ndarray:
    return to_u8(255.0 / (1.0 + np.exp(-logits.astype(np.float64))))


def u8_to_opacity_logit(alpha: np.ndarray) -> np.ndarray:
    p = np.clip(alpha.astype(np.float64), 0.25, 254.75) / 255.0
    return (np.log(p) - np.log1p(-p)).astype(np.float32)
