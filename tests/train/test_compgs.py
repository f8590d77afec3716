"""CompGS on a tiny generated scene: the QAT schedule, the regulariser window, pruning,
codebook transfer, and the written .cgs rendering exactly like the in-memory model."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from compgs.codec.files import read_cgs_compressed
from compgs.data import load_scene
from compgs.data.synthetic import generate
from compgs.render import render
from compgs.train.config import CompGSConfig, LearningRates, TrainConfig
from compgs.train.densify import DensifyConfig
from compgs.train.opacity_reg import OpacityRegHook
from compgs.train.qat import QATHook
from compgs.train.run import build_hooks, finish
from compgs.train.trainer import Trainer


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    return generate(
        tmp_path_factory.mktemp("cgs"), width=48, height=36, num_views=10, num_points=1200
    )


@pytest.fixture(scope="module")
def scene(scene_dir):
    return load_scene(scene_dir, test_every=5)


def config(scene_dir, **compgs) -> TrainConfig:
    options = dict(
        quantize=True, codebook_sizes="dc=64,sh=64,scale=128,rot=128", qat_start=40, assign_every=10,
        freeze=60, opacity_reg=1e-5, reg_start=20, reg_stop=40, prune_every=10, fit_iters=3,
    )  # fmt: skip
    return TrainConfig(
        data=scene_dir, method="compgs-test", max_steps=80, scale_schedule=False, sh_degree=1,
        densify=DensifyConfig(refine_start=5, refine_every=5, refine_stop=20, reset_every=0),
        backend="cpu", test_every=5, checkpoint_every=0, compgs=CompGSConfig(**{**options, **compgs}),
        lr=LearningRates(opacities=0.2),  # opacities reach the pruning threshold within the window
    )  # fmt: skip


def hook(trainer, kind):
    return next(h for h in trainer.hooks if isinstance(h, kind))


def test_schedule_regulariser_and_pruning(scene_dir, scene):
    cfg = config(scene_dir)
    trainer = Trainer(cfg, scene, hooks=build_hooks(cfg))
    qat, reg = hook(trainer, QATHook), hook(trainer, OpacityRegHook)
    history = []
    counts = []
    while trainer.step < cfg.max_steps:
        step = trainer.step
        in_window = reg.extra_loss(trainer, None, step) is not None
        assert in_window == (20 <= step < 40)
        n_before = trainer.model.num_gaussians
        trainer.train_step()
        counts.append((step, n_before, trainer.model.num_gaussians))
        if qat.codebooks:
            history.append(
                (step, {k: b.assignments.clone() for k, b in qat.codebooks.items()},
                 {k: b.centroids.clone() for k, b in qat.codebooks.items()})
            )  # fmt: skip
    assert not any(step < 40 for step, _, _ in history)  # nothing quantized before qat_start
    assert history[0][0] == 40
    for (_, a0, c0), (s1, a1, c1) in zip(history, history[1:]):
        changed = any(not torch.equal(a0[k], a1[k]) for k in a0)
        if changed:  # re-assignment only on schedule, never after the freeze
            assert (s1 - 40) % 10 == 0 and s1 < 60, s1
        # centroids follow their members every step
        assert any(not torch.equal(c0[k], c1[k]) for k in c0), s1
    assert any(not torch.equal(history[0][1][k], history[-1][1][k]) for k in history[0][1])
    # Gaussian count changes only by densification (< 20) and pruning (at 30 and 40)
    for step, before, after in counts:
        if before != after:
            assert step < 20 or step + 1 in (30, 40), step
    assert reg.pruned > 0
    assert trainer.model.num_gaussians == qat.codebooks["dc"].assignments.shape[0]


def test_written_cgs_renders_like_the_quantized_model(scene_dir, scene, tmp_path):
    cfg = config(scene_dir, opacity_reg=0.0, bitq=False)
    trainer = Trainer(cfg, scene, hooks=build_hooks(cfg))
    trainer.fit()
    metrics = finish(trainer, scene, tmp_path)
    assert (tmp_path / "scene.cgs").is_file()
    assert metrics["size_bytes"] == (tmp_path / "scene.cgs").stat().st_size
    assert metrics["compression_ratio"] > 1
    decoded = read_cgs_compressed(tmp_path / "scene.cgs").to_splats()
    in_memory = trainer.final_splats()
    cam = scene.cameras("test")[0]
    kwargs = dict(
        width=int(cam.width[0]),
        height=int(cam.height[0]),
        backend="cpu",
        background=scene.background,
    )
    a = render(decoded, cam, **kwargs).rgb
    b = render(in_memory, cam, **kwargs).rgb
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # the metrics of the run were measured on the decoded file
    assert metrics["num_gaussians"] == decoded.num_gaussians


def test_codebook_transfer_freezes_centroids(scene_dir, scene, tmp_path):
    source_cfg = config(scene_dir, opacity_reg=0.0)
    source = Trainer(source_cfg, scene, hooks=build_hooks(source_cfg))
    source.fit()
    finish(source, scene, tmp_path / "a")
    centroids = read_cgs_compressed(tmp_path / "a" / "scene.cgs").codebooks

    cfg = config(scene_dir, opacity_reg=0.0, codebook_from=tmp_path / "a")
    cfg = dataclasses.replace(cfg, seed=1)
    trainer = Trainer(cfg, scene, hooks=build_hooks(cfg))
    trainer.fit(stop_at=41)  # the first quantized step (qat_start = 40)
    qat = hook(trainer, QATHook)
    first = {name: book.assignments.clone() for name, book in qat.codebooks.items()}
    trainer.fit()
    for name, book in qat.codebooks.items():
        assert book.frozen
        torch.testing.assert_close(book.centroids.cpu(), centroids[name])
    # only the centroids are frozen: the Gaussians still move between codes (until 60)
    assert any(not torch.equal(first[k], b.assignments) for k, b in qat.codebooks.items())


def test_transfer_rejects_mismatched_groups(scene_dir, scene, tmp_path):
    from compgs.errors import InputError

    cfg = config(scene_dir, opacity_reg=0.0)
    trainer = Trainer(cfg, scene, hooks=build_hooks(cfg))
    trainer.fit()
    finish(trainer, scene, tmp_path)
    with pytest.raises(InputError, match="do not match"):
        QATHook(config(scene_dir, groups="sh-only", codebook_from=tmp_path))
