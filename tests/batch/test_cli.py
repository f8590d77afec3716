"""`compgs prepare arkit`, `compgs datasets ...` and `compgs batch` flag handling, in-process."""

from __future__ import annotations

import json

import pytest

from compgs.cli.main import main, run
from compgs.errors import InputError
from tests.batch.arkit_raw import write_raw_video


def test_prepare_arkit_command(tmp_path, capsys):
    raw = write_raw_video(tmp_path / "raw" / "Training", num_frames=6, sky="right")
    out = tmp_path / "scene"
    run(["prepare", "arkit", "--raw-root", str(tmp_path / "raw"), "--video-id", raw.video_id,
         "--out", str(out), "--frames", "3"])  # fmt: skip
    assert "3 of 6 posed frames, sky right (1 quarter turns)" in capsys.readouterr().out
    assert len(json.loads((out / "transforms.json").read_text())["frames"]) == 3
    with pytest.raises(SystemExit) as exc:
        main(["prepare", "arkit", "--raw-root", str(tmp_path / "raw"), "--video-id", raw.video_id,
              "--out", str(out)])  # fmt: skip
    assert exc.value.code == 1 and "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["prepare", "colmap"])
    assert exc.value.code == 2


def test_datasets_commands(shared_data, tmp_path, capsys):
    manifests = shared_data / "manifests"
    if not (manifests / "dl3dv" / "dl3dv140.txt").is_file():
        pytest.skip(f"no manifests in {manifests}")
    out = tmp_path / "a200.txt"
    run(["datasets", "arkit200", "--manifest",
         str(manifests / "arkitscenes" / "raw_train_val_splits.csv"), "--out", str(out)])  # fmt: skip
    lines = [x for x in out.read_text().splitlines() if not x.startswith("#")]
    assert len(lines) == 200 and all(x.split("/")[0] in ("Training", "Validation") for x in lines)
    assert capsys.readouterr().out.strip() == f"{out}: 200 scenes"
    run(["datasets", "dl3dv140", "--meta", str(manifests / "dl3dv" / "dl3dv140.txt")])
    printed = [x for x in capsys.readouterr().out.splitlines() if not x.startswith("#")]
    assert len(printed) == len(set(printed)) == 140
    run(["datasets", "dl3dv140", "--meta", str(manifests / "dl3dv" / "dl3dv140.txt"), "--valid",
         str(manifests / "dl3dv" / "DL3DV-valid.csv"), "--layout", "10k", "--out", str(out)])  # fmt: skip
    lines = [x for x in out.read_text().splitlines() if not x.startswith("#")]
    assert len(lines) == 135 and lines[0].endswith("/" + printed[0]) and "/" in lines[0]
    with pytest.raises(InputError, match="needs --valid"):
        run(["datasets", "dl3dv140", "--meta", str(manifests / "dl3dv" / "dl3dv140.txt"),
             "--layout", "10k"])  # fmt: skip


def test_batch_flag_errors(tmp_path):
    with pytest.raises(InputError, match="no such list file or folder"):
        run(["batch", "--scenes", str(tmp_path / "missing"), "--out", str(tmp_path / "o")])
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "transforms.json").write_text("{}")
    with pytest.raises(InputError, match="expected KEY=VALUE"):
        run(["batch", "--scenes", str(tmp_path / "s"), "--out", str(tmp_path / "o"),
             "--override", "max_steps"])  # fmt: skip
    with pytest.raises(InputError, match="unknown training option 'max_step'"):
        run(["batch", "--scenes", str(tmp_path / "s"), "--out", str(tmp_path / "o"),
             "--override", "max_step=3"])  # fmt: skip
    assert not (tmp_path / "o").exists()  # nothing written before the options are valid


def test_batch_with_a_ray_address_that_does_not_answer(tmp_path):
    pytest.importorskip("ray")
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "transforms.json").write_text("{}")
    args = [
        "batch",
        "--scenes",
        str(tmp_path / "s"),
        "--out",
        str(tmp_path / "o"),
        "--engine",
        "ray",
    ]
    with pytest.raises(InputError, match="no Ray cluster answers"):
        run([*args, "--ray-address", "127.0.0.1:1"])
    with pytest.raises(InputError, match="expected HOST:PORT"):
        run([*args, "--ray-address", "nonsense"])
