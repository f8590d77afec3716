"""The `Splats` dataclass: one set of 3D Gaussians, stored pre-activation.

Conventions (those of the INRIA 3DGS code, gsplat and nerfstudio):

==========  ===========  =====================================================
field       shape        meaning
==========  ===========  =====================================================
means       [N, 3]       centres, world coordinates
quats       [N, 4]       raw rotation quaternions, **wxyz**, not normalised
scales      [N, 3]       log of the per-axis standard deviations
opacities   [N]          opacity logits
sh0         [N, 1, 3]    degree-0 SH coefficient (RGB)
shN         [N, K, 3]    higher SH bands, K = (degree + 1)^2 - 1 (0, 3, 8, 15)
==========  ===========  =====================================================

Activations live here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import torch

from compgs.errors import InputError

SH_C0 = 0.28209479177387814
FIELDS = ("means", "quats", "scales", "opacities", "sh0", "shN")
# Number of higher-band SH coefficients per colour channel, by degree.
NUM_REST = {0: 0, 1: 3, 2: 8, 3: 15}
_NUMPY_FLOATS = (torch.float16, torch.float32, torch.float64)


def num_rest_coeffs(degree: int) -> int:
    if degree not in NUM_REST:
        raise InputError(f"SH degree must be 0..3, got {degree}")
    return NUM_REST[degree]


def sh_degree_from_rest(k: int) -> int:
    for degree, count in NUM_REST.items():
        if count == k:
            return degree
    raise InputError(f"{k} higher-band SH coefficients per channel match no SH degree 0..3")


# --- activations ------------------------------------------------------------


def activate_opacity(logits: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(logits)


def inverse_sigmoid(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p) - torch.log1p(-p)


def activate_scale(log_scales: torch.Tensor) -> torch.Tensor:
    return torch.exp(log_scales)


def log_of_linear_scales(scales: np.ndarray) -> np.ndarray:
    """float32 log-scales of stored linear scales (log in float64, rounded once)."""
    return np.log(scales.astype(np.float64)).astype(np.float32)


def normalize_quat(quats: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(quats, dim=-1)


def sh0_to_rgb(sh0: torch.Tensor) -> torch.Tensor:
    return 0.5 + SH_C0 * sh0


def rgb_to_sh0(rgb: torch.Tensor) -> torch.Tensor:
    return (rgb - 0.5) / SH_C0


# --- the dataclass -----------------------------------------------------------


@dataclasses.dataclass
class Splats:
    """A set of N Gaussians (see the module docstring for shapes and units)."""

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    sh0: torch.Tensor
    shN: torch.Tensor
    # Linear scales exactly as a file stored them ([N, 3] float32), or None.
    # exp() of a float32 log-scale cannot reach every float32 scale, so a
    # format that stores linear scales (.splat) could not be rewritten byte
    # for byte from `scales` alone. Writers use a row of this only while
    # `scales` still equals its log (see `linear_scales_for_writing`); any
    # edit of `scales` makes the row stale and it is ignored, never trusted.
    source_scales: torch.Tensor | None = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._check_shapes()

    # -- validation --

    def _check_shapes(self) -> None:
        for name in FIELDS:
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor):
                raise InputError(
                    f"Splats.{name} must be a torch.Tensor, got {type(value).__name__}"
                )
            if not value.is_floating_point():
                raise InputError(f"Splats.{name} must be floating point, got {value.dtype}")
        n = self.means.shape[0] if self.means.ndim == 2 else -1
        expected = {
            "means": (n, 3),
            "quats": (n, 4),
            "scales": (n, 3),
            "opacities": (n,),
            "sh0": (n, 1, 3),
        }
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape or n < 0:
                want = "x".join("N" if s == n else str(s) for s in shape)
                raise InputError(f"Splats.{name} must have shape [{want}], got {list(got)}")
        shn = self.shN
        if shn.ndim != 3 or shn.shape[0] != n or shn.shape[2] != 3:
            raise InputError(f"Splats.shN must have shape [N, K, 3], got {list(shn.shape)}")
        sh_degree_from_rest(shn.shape[1])
        src = self.source_scales
        if src is not None and (not isinstance(src, torch.Tensor) or tuple(src.shape) != (n, 3)):
            raise InputError("Splats.source_scales must be None or a tensor of shape [N, 3]")
        dtypes = {getattr(self, f).dtype for f in FIELDS}
        if len(dtypes) != 1:
            raise InputError(f"Splats fields must share one dtype, got {sorted(map(str, dtypes))}")
        devices = {getattr(self, f).device for f in FIELDS}
        if len(devices) != 1:
            raise InputError(
                f"Splats fields must be on one device, got {sorted(map(str, devices))}"
            )

    def validate_finite(self) -> Splats:
        """Raise `InputError` naming the first field that holds NaN or Inf."""
        for name in FIELDS:
            value = getattr(self, name)
            if value.device.type == "cpu" and value.dtype in _NUMPY_FLOATS:
                # numpy's check is one vectorised pass; torch's CPU isfinite is ~15x slower
                if np.isfinite(value.detach().numpy()).all():
                    continue
            bad = ~torch.isfinite(value)
            if bool(bad.any()):
                rows = bad.reshape(value.shape[0], -1).any(dim=1).nonzero().flatten()
                raise InputError(
                    f"Splats.{name} holds non-finite values in {rows.numel()} Gaussian(s), "
                    f"first at index {int(rows[0])}"
                )
        return self

    # -- sizes --

    @property
    def num_gaussians(self) -> int:
        return int(self.means.shape[0])

    def __len__(self) -> int:
        return self.num_gaussians

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_rest(int(self.shN.shape[1]))

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    # -- activated views --

    def activated_opacities(self) -> torch.Tensor:
        return activate_opacity(self.opacities)

    def activated_scales(self) -> torch.Tensor:
        return activate_scale(self.scales)

    def normalized_quats(self) -> torch.Tensor:
        return normalize_quat(self.quats)

    def dc_colors(self) -> torch.Tensor:
        """RGB of the view-independent colour, [N, 3] (may leave [0, 1])."""
        return sh0_to_rgb(self.sh0[:, 0, :])

    def sh_coeffs(self) -> torch.Tensor:
        """All SH coefficients, [N, (degree+1)^2, 3]."""
        return torch.cat([self.sh0, self.shN], dim=1)

    # -- transforms --

    def map(self, fn) -> Splats:
        """A new Splats with ``fn`` applied to every field tensor (and to `source_scales`)."""
        src = None if self.source_scales is None else fn(self.source_scales)
        return Splats(**{name: fn(getattr(self, name)) for name in FIELDS}, source_scales=src)

    def to(
        self, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Splats:
        return self.map(lambda t: t.to(device=device, dtype=dtype))

    def detach(self) -> Splats:
        return self.map(lambda t: t.detach())

    def clone(self) -> Splats:
        return self.map(lambda t: t.clone())

    def index(self, selector: torch.Tensor | np.ndarray | Sequence[int] | slice) -> Splats:
        """Select Gaussians by boolean mask, integer indices or slice."""
        if isinstance(selector, np.ndarray):
            selector = torch.from_numpy(selector)
        elif not isinstance(selector, (torch.Tensor, slice)):
            selector = torch.as_tensor(selector, dtype=torch.long)
        if isinstance(selector, torch.Tensor):
            selector = selector.to(self.device)
            if selector.dtype == torch.bool and selector.shape != (self.num_gaussians,):
                raise InputError(
                    f"boolean mask must have shape [{self.num_gaussians}], got {list(selector.shape)}"
                )
        return self.map(lambda t: t[selector])

    def with_sh_degree(self, degree: int) -> Splats:
        """Truncate or zero-pad the higher SH bands to ``degree``."""
        k = num_rest_coeffs(degree)
        have = self.shN.shape[1]
        if k <= have:
            shn = self.shN[:, :k]
        else:
            pad = self.shN.new_zeros(self.num_gaussians, k - have, 3)
            shn = torch.cat([self.shN, pad], dim=1)
        return dataclasses.replace(self, shN=shn.contiguous())

    @staticmethod
    def cat(parts: Sequence[Splats]) -> Splats:
        """Concatenate along N; SH degrees are raised to the highest one present."""
        if not parts:
            raise InputError("Splats.cat needs at least one Splats")
        degree = max(p.sh_degree for p in parts)
        parts = [p.with_sh_degree(degree) for p in parts]
        srcs = [p.source_scales for p in parts]
        src = None if any(t is None for t in srcs) else torch.cat(srcs)
        return Splats(
            **{name: torch.cat([getattr(p, name) for p in parts]) for name in FIELDS},
            source_scales=src,
        )

    # -- construction --

    @staticmethod
    def empty(n: int = 0, sh_degree: int = 0, dtype: torch.dtype = torch.float32) -> Splats:
        """N Gaussians with identity rotation, unit scale, opacity 0.5, grey colour."""
        quats = torch.zeros(n, 4, dtype=dtype)
        quats[:, 0] = 1
        return Splats(
            means=torch.zeros(n, 3, dtype=dtype),
            quats=quats,
            scales=torch.zeros(n, 3, dtype=dtype),
            opacities=torch.zeros(n, dtype=dtype),
            sh0=torch.zeros(n, 1, 3, dtype=dtype),
            shN=torch.zeros(n, num_rest_coeffs(sh_degree), 3, dtype=dtype),
        )

    @staticmethod
    def random(
        n: int,
        sh_degree: int = 3,
        *,
        seed: int = 0,
        extent: float = 1.0,
        dtype: torch.dtype = torch.float32,
    ) -> Splats:
        """Plausible random Gaussians (for tests and benchmarks), deterministic in ``seed``."""
        g = torch.Generator().manual_seed(seed)
        k = num_rest_coeffs(sh_degree)
        mean_scale = math.log(extent * 0.01)
        return Splats(
            means=(torch.rand(n, 3, generator=g) * 2 - 1) * extent,
            quats=torch.randn(n, 4, generator=g),
            scales=mean_scale + 0.5 * torch.randn(n, 3, generator=g),
            opacities=torch.randn(n, generator=g) * 2,
            sh0=torch.randn(n, 1, 3, generator=g) * 0.8,
            shN=torch.randn(n, k, 3, generator=g) * 0.1,
        ).to(dtype=dtype)

    def linear_scales_for_writing(self) -> np.ndarray:
        """Activated scales as float32 [N, 3], exact where the file's own value is still valid.

        A row of `source_scales` is used where its log (computed as the readers
        compute it) still equals `scales`; elsewhere exp() is taken in float64.
        """
        log_scales = self.scales.detach().to("cpu", torch.float32).numpy()
        out = np.exp(log_scales.astype(np.float64)).astype(np.float32)
        if self.source_scales is not None:
            src = self.source_scales.detach().to("cpu", torch.float32).numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                valid = log_of_linear_scales(src) == log_scales
            out[valid] = src[valid]
        return out

    def numpy(self) -> dict[str, np.ndarray]:
        """Fields as float32 numpy arrays on the CPU (for writers)."""
        return {
            name: getattr(self, name).detach().to("cpu", torch.float32).numpy() for name in FIELDS
        }
