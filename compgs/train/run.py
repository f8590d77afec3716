"""A whole training run: scene -> Trainer -> run directory with outputs and metrics.

Used by `compgs train`, the demo and batch compression. Ctrl-C saves a
checkpoint first; `resume` continues a run from its newest checkpoint with the
configuration stored beside it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from pathlib import Path

from compgs.atomic import atomic_write_text
from compgs.errors import CompgsError
from compgs.train.config import TrainConfig, save_yaml
from compgs.train.rundir import find_run, load_checkpoint, new_run_dir, save_checkpoint

log = logging.getLogger(__name__)


class Interrupted(CompgsError):
    """Training stopped by Ctrl-C after saving a checkpoint."""


def load_training_scene(config: TrainConfig):
    from compgs.data import load_scene

    return load_scene(
        config.data,
        downscale=config.downscale,
        masks=None if config.masks else False,
        test_every=config.test_every,
        num_random_points=config.init_random_points,
        background=config.background,
        seed=config.seed,
    )


def build_hooks(config: TrainConfig) -> list:
    """Hooks a method needs: CompGS's opacity regulariser and quantization (3DGS: none)."""
    hooks = []
    if config.compgs.opacity_reg > 0:
        from compgs.train.opacity_reg import OpacityRegHook

        hooks.append(OpacityRegHook(config))
    if config.compgs.quantize:
        from compgs.train.qat import QATHook

        hooks.append(QATHook(config))
    return hooks


def train(
    config: TrainConfig,
    *,
    resume: Path | None = None,
    run_dir: Path | None = None,
    progress: bool = True,
    extra_hooks: list | None = None,
) -> Path:
    """Train (or resume) one run; returns its directory, which holds metrics.json at the end."""
    from compgs.train.trainer import Trainer

    checkpoint = None
    if resume is not None:
        run_dir, checkpoint = find_run(resume)
    scene = load_training_scene(config)
    trainer = Trainer(config, scene, hooks=build_hooks(config) + list(extra_hooks or []))
    if checkpoint is not None:
        trainer.load_state_dict(load_checkpoint(checkpoint, map_location=trainer.device))
        log.info("resumed %s at step %d", run_dir, trainer.step)
    if run_dir is None:
        run_dir = new_run_dir(config.output_dir, Path(config.data).resolve().name, config.method)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_yaml(config, run_dir / "config.yml")
    atomic_write_text(run_dir / "scene.json", json.dumps(scene.summary(), indent=2) + "\n")
    # A finished run is marked by metrics.json; a resumed one is unfinished again.
    (run_dir / "metrics.json").unlink(missing_ok=True)

    log_every = max(1, config.max_steps // 20)

    def on_step(t: Trainer, stats: dict) -> None:
        for hook in t.hooks:  # per-step metrics for hooks that show them (the live view)
            if hasattr(hook, "on_step"):
                hook.on_step(t, stats)
        if (
            config.checkpoint_every
            and t.step % config.checkpoint_every == 0
            and t.step < config.max_steps
        ):
            save_checkpoint(run_dir, t.step, t.state_dict())
        if bar is not None:
            bar.update(
                task,
                completed=t.step,
                loss=stats["loss"],
                psnr=stats["psnr"],
                n=t.model.num_gaussians,
            )
        elif progress and (t.step % log_every == 0 or t.step == config.max_steps):
            # not a terminal (logs, batch workers): a line every 5% instead of a bar
            eta = t.elapsed / max(t.step, 1) * (config.max_steps - t.step)
            log.info(
                "step %d/%d  loss %.4f  PSNR %.2f  N %d  %.0f s elapsed, ~%.0f s left",
                t.step, config.max_steps, stats["loss"], stats["psnr"], t.model.num_gaussians,
                t.elapsed, eta,
            )  # fmt: skip

    bar, task = _progress(progress, config, trainer.step)
    try:
        with bar if bar is not None else contextlib.nullcontext(), _ctrl_c_between_steps() as asked:

            def step_then_maybe_stop(t, stats) -> None:
                on_step(t, stats)
                if asked():
                    raise KeyboardInterrupt

            trainer.fit(step_then_maybe_stop)
    except KeyboardInterrupt:
        path = save_checkpoint(run_dir, trainer.step, trainer.state_dict())
        raise Interrupted(
            f"interrupted at step {trainer.step}; checkpoint {path}; "
            f"resume with: compgs train --resume {run_dir}"
        ) from None
    save_checkpoint(run_dir, trainer.step, trainer.state_dict())
    finish(trainer, scene, run_dir)
    return run_dir


@contextlib.contextmanager
def _ctrl_c_between_steps():
    """The first Ctrl-C stops training after the current step (so that the checkpoint never
    holds a half-edited model, e.g. mid-densification); a second one stops at once."""
    pressed = []
    if (
        threading.current_thread() is not threading.main_thread()  # signals reach it only
        or signal.getsignal(signal.SIGINT) in (signal.SIG_IGN, None)  # e.g. under nohup
    ):
        yield lambda: False
        return

    def handler(signum, frame):
        pressed.append(signum)
        signal.signal(signal.SIGINT, previous)
        log.warning("Ctrl-C: stopping after this step (press again to stop at once)")

    previous = signal.signal(signal.SIGINT, handler) or signal.default_int_handler
    try:
        yield lambda: bool(pressed)
    finally:
        if not pressed:
            signal.signal(signal.SIGINT, previous)


def finish(trainer, scene, run_dir: Path) -> dict:
    """Export, evaluate on the test split, write metrics.json (last: it marks completion)."""
    from compgs.eval.evaluate import evaluate, measure_fps, ply_size_bytes
    from compgs.eval.report import write_metrics

    config = trainer.config
    splats = trainer.final_splats()
    ply = trainer.export(run_dir)
    extra = {}
    for hook in trainer.hooks:  # e.g. CompGS writes scene.cgs and evaluates the decoded file
        if hasattr(hook, "finish"):
            extra.update(hook.finish(trainer, splats, run_dir) or {})
    evaluated = extra.pop("splats", splats)
    split = "test" if scene.num_images("test") else "train"
    renders = run_dir / "renders" / split if config.save_renders else None
    result = evaluate(
        evaluated,
        scene,
        split,
        background=trainer.background,
        backend=config.backend,
        renders_dir=renders,
    )
    metrics = {
        "method": config.method,
        "scene": str(config.data),
        "steps": trainer.step,
        "train_seconds": trainer.elapsed,
        "device": str(trainer.device),
        "num_gaussians": evaluated.num_gaussians,
        "size_bytes": ply.stat().st_size if ply else ply_size_bytes(evaluated),
        "size_file": ply.name if ply else "PLY (not written)",
        "fps": measure_fps(evaluated, scene, split, backend=config.backend),
        "eval": result,
        **extra,
    }
    write_metrics(run_dir / "metrics.json", metrics)
    return metrics


def _progress(enabled: bool, config: TrainConfig, start: int):
    import sys

    if not enabled or not sys.stdout.isatty():
        return None, None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[bold]train[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "loss {task.fields[loss]:.4f}  PSNR {task.fields[psnr]:.2f}  N {task.fields[n]:,}"
        ),
        TimeRemainingColumn(),
    )
    task = bar.add_task("train", total=config.max_steps, completed=start, loss=0.0, psnr=0.0, n=0)
    return bar, task
