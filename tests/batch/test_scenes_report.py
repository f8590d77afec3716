"""Scene lists, names, batch options and the reports, without training anything."""

from __future__ import annotations

import csv
import json
import math

import pytest

from compgs.batch.engines import gpu_slots
from compgs.batch.layout import BatchDir
from compgs.batch.report import psnr_am, read_results_csv, summary_markdown, write_results_csv
from compgs.batch.run import BatchOptions, _claim, run_batch
from compgs.batch.scene_job import SceneJob, build_config, scene_row
from compgs.batch.scenes import SceneEntry, collect_scenes, resolve_scene_dir, unique_names
from compgs.errors import InputError


def _scene(path, kind="nerfstudio"):
    path.mkdir(parents=True)
    (path / {"nerfstudio": "transforms.json", "llff": "poses_bounds.npy"}[kind]).write_text("{}")
    return path


def test_collect_from_list_folder_and_glob(tmp_path):
    a = _scene(tmp_path / "data" / "Training" / "111")
    b = _scene(tmp_path / "data" / "Validation" / "111")
    c = _scene(tmp_path / "data" / "Training" / "222" / "nerfstudio")
    listing = tmp_path / "list.txt"
    listing.write_text(
        "# ARKit-ish\nTraining/111\n\nValidation/111  # same id, other fold\nTraining/2*\nTraining/111\n"
    )
    entries = collect_scenes(str(listing), root=tmp_path / "data")
    assert [e.path for e in entries] == [a, b, c.parent]  # the duplicate runs once
    assert [e.name for e in entries] == ["Training-111", "Validation-111", "222"]
    assert resolve_scene_dir(c.parent) == c  # DL3DV benchmark layout: <hash>/nerfstudio
    by_folder = collect_scenes(str(tmp_path / "data" / "Training"))
    assert [e.name for e in by_folder] == ["111", "222"]
    assert collect_scenes(str(a))[0].path == a  # a scene folder is one scene
    by_glob = collect_scenes("*/111", root=tmp_path / "data")
    assert [e.path for e in by_glob] == [a, b]
    with pytest.raises(InputError, match="matches nothing"):
        collect_scenes("nothing/*", root=tmp_path)
    listing.write_text("Training/999\n")
    entries = collect_scenes(str(listing), root=tmp_path / "data")  # missing: fails in its worker
    assert entries[0].name == "999"


def test_unique_names():
    assert unique_names(["/x/a/scene", "/y/b/scene", "/z/c"]) == ["a-scene", "b-scene", "c"]
    assert unique_names(["/d/we ird:name"]) == ["we_ird_name"]


def test_gpu_slots():
    assert gpu_slots(0, 1) == []
    assert gpu_slots(4, 1) == ["0", "1", "2", "3"]
    assert gpu_slots(4, 2) == ["0,1", "2,3"]
    assert gpu_slots(2, 0.5) == ["0", "0", "1", "1"]
    with pytest.raises(InputError, match="whole number"):
        gpu_slots(4, 1.5)
    with pytest.raises(InputError, match="has 2 GPU"):
        gpu_slots(2, 4)


def test_build_config_overrides(tmp_path):
    config = build_config(
        "compgs-32k", {"max_steps": 7, "compgs.opacity_reg": 0.5}, tmp_path, tmp_path / "o"
    )
    assert config.max_steps == 7 and config.compgs.opacity_reg == 0.5 and config.compgs.quantize
    assert config.data == tmp_path and config.output_dir == tmp_path / "o"
    with pytest.raises(InputError, match="unknown training option 'max_step'"):
        build_config("3dgs", {"max_step": 1}, tmp_path, tmp_path)
    with pytest.raises(InputError, match="no group 'nope'"):
        build_config("3dgs", {"nope.x": 1}, tmp_path, tmp_path)
    with pytest.raises(InputError, match="unknown method"):
        build_config("4dgs", {}, tmp_path, tmp_path)


def test_resume_needs_the_same_batch(tmp_path):
    batch = BatchDir(tmp_path / "out")
    entries = [SceneEntry("a", tmp_path / "a")]
    _claim(batch, entries, BatchOptions(method="3dgs", overrides={"max_steps": 5}))
    with pytest.raises(InputError, match="already holds a batch; pass --resume"):
        _claim(batch, entries, BatchOptions(method="3dgs", overrides={"max_steps": 5}))
    with pytest.raises(InputError, match="resume with the same method"):
        _claim(batch, entries, BatchOptions(method="3dgs", overrides={"max_steps": 6}, resume=True))
    with pytest.raises(InputError, match="scene 'a' was"):
        _claim(
            batch,
            [SceneEntry("a", tmp_path / "b")],
            BatchOptions(method="3dgs", overrides={"max_steps": 5}, resume=True),
        )
    more = entries + [SceneEntry("b", tmp_path / "b")]
    _claim(batch, more, BatchOptions(method="3dgs", overrides={"max_steps": 5}, resume=True))
    assert set(json.loads(batch.batch_json.read_text())["scenes"]) == {"a", "b"}
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file").write_text("")
    with pytest.raises(InputError, match="not empty and not a batch folder"):
        _claim(BatchDir(tmp_path / "other"), entries, BatchOptions())


def test_one_driver_per_batch_folder(tmp_path):
    import fcntl
    import os

    (tmp_path / "out").mkdir()
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "transforms.json").write_text("{}")
    with open(tmp_path / "out" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        held.write(f"{os.getpid()}\n")
        held.flush()
        with pytest.raises(
            InputError, match=f"another batch is running there \\(pid {os.getpid()}\\)"
        ):
            run_batch(collect_scenes(str(tmp_path / "s")), tmp_path / "out", BatchOptions())
    assert not (tmp_path / "out" / "batch.json").exists()


def _row(name, psnrs, size=1000):
    metrics = {
        "eval": {
            "mean": {"psnr": sum(psnrs) / len(psnrs), "ssim": 0.9, "lpips": None, "psnr_am": 0.0},
            "per_image": [{"psnr": p} for p in psnrs],
            "num_images": len(psnrs),
        },
        "num_gaussians": 10, "size_bytes": size, "steps": 3, "train_seconds": 60.0,
        "compression_ratio": 20.0, "bits_per_gaussian": 800.0,
    }  # fmt: skip
    job = SceneJob(name, f"/data/{name}", "/out", "compgs-32k", {}, {})
    return scene_row(job, metrics, 61.0)


def test_psnr_am_summary_and_csv(tmp_path):
    rows = [_row("a", [20.0, 30.0]), _row("b", [40.0], size=3000)]
    # PSNR-AM averages the squared error over the 3 images, then takes the PSNR
    want = -10 * math.log10((1e-2 + 1e-3 + 1e-4) / 3)
    assert psnr_am(rows) == pytest.approx(want, rel=1e-12)
    assert want < sum([25.0, 40.0]) / 2  # below the mean of PSNRs: the point of PSNR-AM
    rows.append(
        {"scene": "c", "status": "failed", "error": "CorruptFileError: x | y", "log": "logs/c.log"}
    )
    rows.append({"scene": "d", "status": "pending"})
    text = summary_markdown(rows, method="compgs-32k")
    assert "4 scenes: 2 done, 1 failed, 1 not run." in text
    assert f"| {want:.2f} dB |" in text and "| mean PSNR | 32.50 dB |" in text
    assert (
        "| total size | 0.004 MB |" in text
        and "| mean compression ratio (vs PLY) | 20.0x |" in text
    )
    assert "| c | failed | CorruptFileError: x \\| y | logs/c.log |" in text
    path = tmp_path / "results.csv"
    write_results_csv(path, rows)
    back = read_results_csv(path)
    assert [r["scene"] for r in back] == ["a", "b", "c", "d"] and [r["status"] for r in back][
        2:
    ] == ["failed", "pending"]
    assert float(back[0]["mse"]) == rows[0]["mse"]  # floats written exactly
    assert psnr_am(back) == pytest.approx(want, rel=1e-12)
    with path.open() as f:
        assert next(csv.reader(f))[:4] == ["scene", "status", "error", "psnr"]
