"""Tiny collections and child-process targets for the batch tests."""

from __future__ import annotations

from pathlib import Path

from compgs.data.synthetic import generate

# A few CompGS steps on a 24x18 scene: quantization starts at step 8 (20k/30k of 12),
# so every scene writes and evaluates a real scene.cgs, in seconds.
TINY = {"max_steps": 12, "test_every": 3, "checkpoint_every": 0, "save_renders": False}
METHOD = "compgs-32k"
# Columns that measure time, not results: they differ between identical runs.
TIMING = {"train_seconds", "wall_seconds", "fps"}


def make_collection(root: Path) -> Path:
    """``root/scenes/{bad,s0,s1}``: two tiny generated scenes and a corrupt one."""
    scenes = Path(root) / "scenes"
    for seed in (0, 1):
        generate(scenes / f"s{seed}", seed=seed, width=24, height=18, num_views=6,
                 num_points=300, supersample=1)  # fmt: skip
    (scenes / "bad").mkdir(parents=True)
    (scenes / "bad" / "transforms.json").write_text('{"frames": [')  # truncated
    return scenes


def results_without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
