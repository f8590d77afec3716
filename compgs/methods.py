"""Named training presets (nerfstudio style): `compgs train --method NAME`.

Each preset is a complete `TrainConfig`; every field stays overridable from
the command line (`compgs train --method 3dgs --max-steps 7000 --sh-degree 2`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from compgs.errors import InputError
from compgs.train.config import CompGSConfig, TrainConfig
from compgs.train.densify import DensifyConfig


def _3dgs() -> TrainConfig:
    return TrainConfig(method="3dgs")


def _3dgs_nosh() -> TrainConfig:
    return TrainConfig(method="3dgs-nosh", sh_degree=0)


def _3dgs_fast() -> TrainConfig:
    # A CPU demo budget: fewer steps, a cap on growth, the schedule scaled to fit.
    return TrainConfig(
        method="3dgs-fast",
        max_steps=3000,
        init_random_points=20_000,
        densify=DensifyConfig(max_gaussians=150_000),
    )


def _compgs(name: str, sizes: str, **overrides) -> Callable[[], TrainConfig]:
    """A CompGS preset: opacity regularisation + quantization-aware codebooks."""

    def factory() -> TrainConfig:
        compgs = CompGSConfig(quantize=True, codebook_sizes=sizes, opacity_reg=1e-7, **overrides)
        return TrainConfig(method=name, compgs=compgs)

    return factory


COLOR_4K = "dc=4096,sh=4096"

METHODS: dict[str, tuple[str, Callable[[], TrainConfig]]] = {
    "3dgs": ("3D Gaussian Splatting (Kerbl et al. 2023) with gsplat's defaults", _3dgs),
    "3dgs-nosh": (
        "3DGS with view-independent colour (SH degree 0): the no-SH baseline",
        _3dgs_nosh,
    ),
    "3dgs-fast": ("3DGS on a CPU demo budget (3000 steps, growth capped)", _3dgs_fast),
    "3dgs-opreg": (
        "3DGS + CompGS's opacity regularisation and pruning only (ablation)",
        lambda: TrainConfig(method="3dgs-opreg", compgs=CompGSConfig(opacity_reg=1e-7)),
    ),
    "compgs-4k": (
        "CompGS, 4096 codes for every group",
        _compgs("compgs-4k", COLOR_4K + ",scale=4096,rot=4096"),
    ),
    "compgs-16k": (
        "CompGS, colour 4096 / covariance 16384 codes",
        _compgs("compgs-16k", COLOR_4K + ",scale=16384,rot=16384"),
    ),
    "compgs-32k": (
        "CompGS, colour 4096 / covariance 32768 codes",
        _compgs("compgs-32k", COLOR_4K + ",scale=32768,rot=32768"),
    ),
    "compgs-32k-bitq": (
        "compgs-32k + 16-bit positions, 8-bit opacity (BitQ)",
        _compgs("compgs-32k-bitq", COLOR_4K + ",scale=32768,rot=32768", bitq=True),
    ),
    "compgs-sh": (
        "ablation: quantize only the SH rest (4096 codes)",
        _compgs("compgs-sh", "sh=4096", groups="sh-only"),
    ),
    "compgs-shdc": (
        "ablation: one shared codebook for DC + SH (4096), covariance 32768",
        _compgs("compgs-shdc", "shdc=4096,scale=32768,rot=32768", groups="shared-shdc"),
    ),
}


def register(name: str, summary: str, factory: Callable[[], TrainConfig]) -> None:
    METHODS[name] = (summary, factory)


def get_method(name: str) -> TrainConfig:
    if name not in METHODS:
        raise InputError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    config = METHODS[name][1]()
    return dataclasses.replace(config, method=name)
