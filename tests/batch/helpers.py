"""Tiny collections and child-process targets for the batch tests."""

from __future__ import annotations

from pathlib import Path

from compgs.data.synthetic import generate
from tests.batch.arkit_raw import write_raw_video

# A few CompGS steps on a 24x18 scene: quantization starts at step 8 (20k/30k of 12),
# so every scene writes and evaluates a real scene.cgs, in seconds.
TINY = {"max_steps": 12, "test_every": 3, "checkpoint_every": 0, "save_renders": False}
METHOD = "compgs-32k"
# Columns that measure time, not results: they differ between identical runs.
TIMING = {"train_seconds", "train_wall_seconds", "wall_seconds", "fps"}


ARKIT = "41069021"  # a raw ARKit video: the batch prepares it before training
ORDER = (ARKIT, "bad", "s0")  # the scenes, in the order the batch lists (and runs) them


def make_collection(root: Path) -> Path:
    """``root/scenes/{41069021,bad,s0}``: a raw ARKit video (held rolled, with depth),
    a corrupt scene and a generated nerfstudio scene, all tiny."""
    scenes = Path(root) / "scenes"
    write_raw_video(scenes, ARKIT, num_frames=9, sky="right")
    generate(scenes / "s0", width=24, height=18, num_views=6, num_points=300, supersample=1)
    (scenes / "bad").mkdir(parents=True)
    (scenes / "bad" / "transforms.json").write_text('{"frames": [')  # truncated
    return scenes


def results_without_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]
