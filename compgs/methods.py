"""Named training presets (nerfstudio style): `compgs train --method NAME`.

Each preset is a complete `TrainConfig`; every field stays overridable from
the command line (`compgs train --method 3dgs --max-steps 7000 --sh-degree 2`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from compgs.errors import InputError
from compgs.train.config import TrainConfig
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


METHODS: dict[str, tuple[str, Callable[[], TrainConfig]]] = {
    "3dgs": ("3D Gaussian Splatting (Kerbl et al. 2023) with gsplat's defaults", _3dgs),
    "3dgs-nosh": (
        "3DGS with view-independent colour (SH degree 0): the no-SH baseline",
        _3dgs_nosh,
    ),
    "3dgs-fast": ("3DGS on a CPU demo budget (3000 steps, growth capped)", _3dgs_fast),
}


def register(name: str, summary: str, factory: Callable[[], TrainConfig]) -> None:
    METHODS[name] = (summary, factory)


def get_method(name: str) -> TrainConfig:
    if name not in METHODS:
        raise InputError(f"unknown method {name!r}; known methods: {', '.join(METHODS)}")
    config = METHODS[name][1]()
    return dataclasses.replace(config, method=name)
