"""Training configuration: dataclasses that tyro turns into flags (one source of truth).

Schedule steps are given for the 3DGS reference budget of 30k steps and scaled
proportionally to ``max_steps`` (``scale_schedule``), so a 7k-step CPU run
densifies, resets opacity and raises the SH degree at the same *fractions* of
training as the paper's 30k-step runs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import yaml

from compgs.train.densify import DensifyConfig

REFERENCE_STEPS = 30_000


@dataclasses.dataclass
class LearningRates:
    """Adam learning rates per parameter (defaults: 3DGS / gsplat)."""

    means: float = 1.6e-4
    """Initial position LR, multiplied by the scene extent."""
    means_final: float = 1.6e-6
    """Position LR at the last step (exponential decay), multiplied by the extent."""
    scales: float = 5e-3
    quats: float = 1e-3
    opacities: float = 5e-2
    sh0: float = 2.5e-3
    shN: float = 2.5e-3 / 20


@dataclasses.dataclass
class CompGSConfig:
    """CompGS (Navaneet et al., ECCV 2024): quantization-aware codebooks, opacity regularisation.

    Steps are given at the 30k reference and scaled like the rest of the schedule.
    """

    quantize: bool = False
    """Learn k-means codebooks for colour and covariance while training (QAT)."""
    codebook_sizes: str = "dc=4096,sh=4096,scale=32768,rot=32768"
    """K per group (clamped for small scenes: at least 4 Gaussians per code)."""
    groups: Literal["separate", "shared-shdc", "sh-only"] = "separate"
    """separate: dc, sh, scale, rot codebooks; shared-shdc: one codebook for DC+SH; sh-only: quantize SH only."""
    qat_start: int = 20_000
    """First quantized step (k-means fit of every codebook)."""
    assign_every: int = 100
    """Re-assign (one Lloyd iteration) every this many steps (scaled, at least 10)."""
    freeze: int = 25_000
    """Assignments are fixed from this step on; centroids keep following their members."""
    fit_iters: int = 10
    """Lloyd iterations of the first fit."""
    codebook_from: Path | None = None
    """Freeze the codebooks of another run (its scene.cgs) and learn only assignments."""
    opacity_reg: float = 0.0
    """lambda of lambda * sum(sigmoid(opacity)) (the paper: 1e-7 at ~1M Gaussians; 0 = off)."""
    opacity_reg_reference: int = 1_000_000
    """The regulariser is scaled by reference / N (see docs): its pull relative to the photometric gradient of one Gaussian then does not depend on how many there are."""
    reg_start: int = 15_000
    reg_stop: int = 20_000
    prune_every: int = 1000
    """Prune Gaussians below `prune_opacity` every this many steps inside the regulariser window."""
    prune_opacity: float = 0.005
    bitq: bool = False
    """Store 16-bit positions, 8-bit opacity and half-precision codebooks (the paper's BitQ)."""
    export_decompressed_ply: bool = False
    """Also write the decoded .cgs as scene_decompressed.ply for other viewers."""


@dataclasses.dataclass
class TrainConfig:
    """How to train one scene (`compgs train --help` lists every field as a flag)."""

    data: Path = Path(".")
    """Scene folder (COLMAP, nerfstudio/DL3DV, LLFF, Blender, ARKit raw)."""
    method: str = "3dgs"
    """Name of the preset this config came from (see compgs/methods.py)."""
    max_steps: int = 30_000
    """Training steps."""
    scale_schedule: bool = True
    """Scale the schedule's step counts by max_steps / 30000."""
    downscale: int = 1
    """Image downscale factor (reads images_F/ when present, else creates and caches it)."""
    masks: bool = True
    """Use object masks when the scene has them (background set to `background`)."""
    test_every: int = 8
    """Hold out every N-th image for testing (Mip-NeRF 360 / 3DGS protocol)."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:1, ..."""
    output_dir: Path = Path("outputs")
    """Runs are written to OUTPUT_DIR/<scene>/<method>/<timestamp>/."""
    seed: int = 0
    sh_degree: int = 3
    """Highest SH degree; raised by one every `sh_degree_interval` steps from 0."""
    sh_degree_interval: int = 1000
    ssim_lambda: float = 0.2
    """Loss = (1 - lambda) L1 + lambda (1 - SSIM)."""
    background: tuple[float, float, float] | None = None
    """Background colour; None: the scene's own (e.g. masked captures) or black."""
    init_random_points: int = 100_000
    """Number of random initial points when the scene has no point cloud."""
    max_init_points: int = 200_000
    """Subsample larger initial point clouds to this many."""
    init_opacity: float = 0.1
    init_scale: float = 1.0
    """Initial scale multiplier of the nearest-neighbour distance."""
    lr: LearningRates = dataclasses.field(default_factory=LearningRates)
    densify: DensifyConfig = dataclasses.field(default_factory=DensifyConfig)
    compgs: CompGSConfig = dataclasses.field(default_factory=CompGSConfig)
    backend: Literal["auto", "cpu", "gsplat", "reference"] = "auto"
    """Rasterizer backend."""
    eval_every: int = 0
    """Evaluate on the test split every N steps (0: only at the end)."""
    checkpoint_every: int = 2000
    """Save a resumable checkpoint every N steps (and at the end, and on Ctrl-C)."""
    save_renders: bool = True
    """Write test-view renders (PNG) at the end."""
    export_ply: bool = True
    """Write the final Gaussians as INRIA PLY."""

    def scaled_step(self, step_at_30k: int) -> int:
        """A schedule step given at the 30k reference, for this run's budget."""
        if not self.scale_schedule:
            return int(step_at_30k)
        return max(1, round(step_at_30k * self.max_steps / REFERENCE_STEPS))

    def effective_densify(self) -> DensifyConfig:
        d = self.densify
        return dataclasses.replace(
            d,
            refine_start=self.scaled_step(d.refine_start),
            refine_stop=self.scaled_step(d.refine_stop),
            reset_every=self.scaled_step(d.reset_every) if d.reset_every else 0,
        )


def to_dict(config) -> dict:
    def convert(value):
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, tuple):
            return list(value)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return convert(dataclasses.asdict(config))


def from_dict(cls, data: dict):
    """Rebuild a (nested) config dataclass from `to_dict` output; unknown keys are errors."""
    import typing

    hints = typing.get_type_hints(cls)
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value, hint = data[f.name], hints[f.name]
        if dataclasses.is_dataclass(hint):
            value = from_dict(hint, value or {})
        elif value is not None and (hint is Path or Path in typing.get_args(hint)):
            value = Path(value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def save_yaml(config, path: Path) -> None:
    from compgs.atomic import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(config), sort_keys=False))


def load_yaml(cls, path: Path):
    return from_dict(cls, yaml.safe_load(Path(path).read_text()) or {})
