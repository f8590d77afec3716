"""Imported by the batch's fork server: everything a scene process would otherwise import
on its first training step, so that each scene starts warm (see `compgs.batch.isolate`).

Only imports and numba's CPU target set-up (its typing and lowering tables):
nothing here compiles, runs a kernel or starts a thread, because the scene
processes are forked from the process that imports this module.
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

MODULES = (
    "numpy",
    "torch",
    "torch.optim",
    "torch._dynamo",  # imported by the first Adam step: seconds on its own
    "PIL.Image",
    "PIL.PngImagePlugin",
    "PIL.JpegImagePlugin",
    "plyfile",
    "zstandard",
    "sklearn.neighbors",
    "compgs.methods",
    "compgs.data.scene",
    "compgs.data.points",
    "compgs.data.init_points",
    "compgs.io",
    "compgs.render.cpu",
    "compgs.train.run",
    "compgs.train.trainer",
    "compgs.train.qat",
    "compgs.train.opacity_reg",
    "compgs.eval.evaluate",
    "compgs.eval.report",
    "compgs.batch.scene_job",
)


def warm() -> None:
    for name in MODULES:
        try:
            importlib.import_module(name)
        except ImportError as e:  # an optional piece: the scene imports it (or not) itself
            log.debug("preload %s: %s", name, e)
    try:  # the typing/lowering registries numba fills on its first compile or cache load
        from numba.core.registry import cpu_target

        cpu_target.target_context.refresh()
    except Exception as e:  # numba internals: a missing attribute only costs the warm start
        log.debug("numba target set-up skipped: %s", e)


warm()
