"""compgs: compress 3D Gaussian Splatting scenes (CompGS, Navaneet et al., ECCV 2024)."""

import os

# Before torch or numba start their OpenMP runtimes (each reads this once, when
# it loads): idle worker threads sleep instead of spinning. On a busy or small
# machine, spinning workers of one runtime starve the other's, and a training
# step was measured 10x slower. Set the variable yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from compgs.errors import CompgsError, CorruptFileError, InputError, UnsupportedFormatError
from compgs.splats import Splats

__version__ = "0.1.0"

__all__ = [
    "CompgsError",
    "CorruptFileError",
    "InputError",
    "Splats",
    "UnsupportedFormatError",
    "__version__",
]
