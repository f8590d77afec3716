"""compgs: compress 3D Gaussian Splatting scenes (CompGS, Navaneet et al., ECCV 2024)."""

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
