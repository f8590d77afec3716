"""The training loop on a tiny generated scene: loss falls, resume restores, bad input fails."""

from __future__ import annotations

import json

import pytest
import torch

from compgs.data import load_scene
from compgs.data.synthetic import generate
from compgs.methods import get_method
from compgs.train.config import TrainConfig
from compgs.train.densify import DensifyConfig
from compgs.train.trainer import Trainer


@pytest.fixture(scope="module")
def tiny_scene_dir(tmp_path_factory):
    return generate(
        tmp_path_factory.mktemp("tiny"), width=64, height=48, num_views=12, num_points=1500
    )


def tiny_config(data, **overrides) -> TrainConfig:
    base = dict(
        data=data,
        method="3dgs",
        max_steps=120,
        scale_schedule=False,  # the steps below are meant literally
        sh_degree=1,
        sh_degree_interval=1000,
        densify=DensifyConfig(refine_start=40, refine_every=20, reset_every=0, refine_stop=100),
        checkpoint_every=0,
        backend="cpu",
        test_every=4,
    )
    return TrainConfig(**{**base, **overrides})


def test_loss_falls_and_densification_runs(tiny_scene_dir):
    config = tiny_config(tiny_scene_dir)
    scene = load_scene(tiny_scene_dir, test_every=4)
    trainer = Trainer(config, scene)
    n0 = trainer.model.num_gaussians
    first = [trainer.train_step()["loss"] for _ in range(10)]
    grew = 0
    while trainer.step < config.max_steps:
        stats = trainer.train_step()
        grew += stats.get("cloned", 0) + stats.get("split", 0)
    last = [trainer.train_step()["loss"] for _ in range(10)]
    assert sum(last) / 10 < 0.7 * sum(first) / 10
    assert grew > 0 and trainer.model.num_gaussians != n0


def test_resume_restores_step_params_and_optimizer(tiny_scene_dir):
    config = tiny_config(tiny_scene_dir, max_steps=60)
    scene = load_scene(tiny_scene_dir, test_every=4)
    straight = Trainer(config, scene)
    straight.fit()
    interrupted = Trainer(config, scene)
    interrupted.fit(stop_at=45)  # past a densification round
    state = interrupted.state_dict()
    resumed = Trainer(config, scene)
    resumed.load_state_dict(state)
    assert resumed.step == 45
    for name, p in interrupted.model.params.items():
        assert torch.equal(resumed.model.params[name].detach(), p.detach())
        a = interrupted.model.optimizer.state[p]
        b = resumed.model.optimizer.state[resumed.model.params[name]]
        assert all(torch.equal(a[k], b[k]) for k in a)
    resumed.fit()
    # same RNG streams restored: the resumed run ends where the straight one did
    for name, p in straight.model.params.items():
        torch.testing.assert_close(
            resumed.model.params[name].detach(), p.detach(), rtol=1e-4, atol=1e-5
        )


def test_train_cli_writes_a_run(tiny_scene_dir, tmp_path, capsys):
    from compgs.cli.main import main

    args = [
        "train", "--data", str(tiny_scene_dir), "--method", "3dgs-fast", "--max-steps", "30",
        "--output-dir", str(tmp_path), "--backend", "cpu", "--test-every", "4", "--sh-degree", "1",
    ]  # fmt: skip
    with pytest.raises(SystemExit) as exc:
        main(args)
        raise SystemExit(0)
    assert exc.value.code == 0
    runs = list(tmp_path.glob("*/3dgs-fast/*"))
    assert len(runs) == 1
    run = runs[0]
    for name in ("config.yml", "splats.ply", "metrics.json", "scene.json"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 30 and metrics["eval"]["num_images"] == 3
    assert metrics["eval"]["mean"]["psnr"] > 10
    assert list((run / "renders" / "test").glob("*.png"))
    assert "PSNR" in capsys.readouterr().out

    # compgs eval on the run, and on another file against the run's scene
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(run), "--backend", "cpu", "--per-image"])
        raise SystemExit(0)
    assert exc.value.code == 0
    again = json.loads((run / "eval-test.json").read_text())
    out = capsys.readouterr().out
    for row in again["eval"]["per_image"]:  # the --per-image table names every image
        assert row["image"] in out and f"{row['psnr']:.2f}" in out
    assert again["eval"]["mean"]["psnr"] == pytest.approx(metrics["eval"]["mean"]["psnr"], abs=1e-4)
    with pytest.raises(SystemExit) as exc:
        main(["eval", str(run), "--file", str(run / "missing.ply")])
    assert exc.value.code == 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["--data", "/nonexistent/scene"], "no such scene folder"),
        (["--method", "nope"], "unknown method 'nope'"),
        (["--resume", "/tmp"], "not a training run"),
    ],
)
def test_train_cli_bad_input(args, message, capsys):
    from compgs.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["train", *args])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_presets_exist():
    for name in ("3dgs", "3dgs-nosh", "3dgs-fast"):
        assert get_method(name).method == name
    assert get_method("3dgs-nosh").sh_degree == 0


def test_ctrl_c_stops_after_the_step_with_a_resumable_checkpoint(tiny_scene_dir, tmp_path):
    """SIGINT in the middle of a step (here: inside a hook) finishes that step first."""
    import os
    import signal

    from compgs.train.run import Interrupted, train
    from compgs.train.rundir import checkpoints, load_checkpoint
    from compgs.train.trainer import TrainHook

    class PressCtrlC(TrainHook):
        def extra_loss(self, trainer, splats, step):
            if step == 30:
                os.kill(os.getpid(), signal.SIGINT)  # delivered now, mid-step
            return None

    config = tiny_config(tiny_scene_dir, max_steps=60)
    run_dir = tmp_path / "run"
    # as in a terminal (a background job, e.g. under nohup, starts with SIGINT ignored)
    outside = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(Interrupted, match="interrupted at step 31"):
            train(config, run_dir=run_dir, progress=False, extra_hooks=[PressCtrlC()])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outside)
    [(step, path)] = checkpoints(run_dir)
    state = load_checkpoint(path)
    assert step == 31 and not (run_dir / "metrics.json").exists()
    n = {p.shape[0] for p in state["model"]["params"].values()}
    assert len(n) == 1  # every field has the same Gaussian count
    train(config, resume=run_dir, progress=False)
    assert json.loads((run_dir / "metrics.json").read_text())["steps"] == 60


def test_an_ignored_sigint_stays_ignored():
    """Under nohup (SIGINT ignored) training must not become interruptible by SIGINT."""
    import signal

    from compgs.train.run import _ctrl_c_between_steps

    outside = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with _ctrl_c_between_steps() as asked:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN and not asked()
    finally:
        signal.signal(signal.SIGINT, outside)
