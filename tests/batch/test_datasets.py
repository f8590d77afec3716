"""ARKit-200 and DL3DV-140 lists: the real manifests, determinism, the documented list."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from compgs.batch.datasets import (
    ARKIT_VIDEOS_WITHOUT_POSES,
    arkit200,
    dl3dv140,
    read_arkit_manifest,
    read_dl3dv_benchmark,
)
from compgs.errors import CorruptFileError, InputError

DOC = Path(__file__).resolve().parents[2] / "datasets" / "arkit200.md"


@pytest.fixture
def manifests(shared_data):
    folder = shared_data / "manifests"
    if not (folder / "arkitscenes" / "raw_train_val_splits.csv").is_file():
        pytest.skip(f"no ARKitScenes/DL3DV manifests in {folder}")
    return folder


def test_arkit200_on_the_real_manifest(manifests):
    raw = manifests / "arkitscenes" / "raw_train_val_splits.csv"
    dod = manifests / "arkitscenes" / "3dod_train_val_splits.csv"
    posed = {v.video_id for v in read_arkit_manifest(dod)}
    no_poses = {v.video_id for v in read_arkit_manifest(raw)} - posed
    assert no_poses == ARKIT_VIDEOS_WITHOUT_POSES  # the built-in list is the manifests' difference
    picked = arkit200(raw, seed=0)
    ids = [v.video_id for v in picked]
    assert len(ids) == len(set(ids)) == 200 and ids == sorted(ids)
    assert not set(ids) & no_poses and set(ids) <= posed
    assert [v.video_id for v in arkit200(raw, seed=0, poses_manifest=dod)] == ids
    assert [v.video_id for v in arkit200(raw, seed=0)] == ids  # deterministic
    other = [v.video_id for v in arkit200(raw, seed=1)]
    assert len(set(other) & set(ids)) < 50  # another seed is another sample
    folds = {v.fold for v in picked}
    assert folds == {"Training", "Validation"}
    # the list published in datasets/arkit200.md is what the rule gives
    documented = re.findall(r"\b(?:Training|Validation)/(\d{8})\b", DOC.read_text())
    assert documented == ids
    assert [v.relative_path for v in picked][0] == f"{picked[0].fold}/{ids[0]}"


def test_arkit200_excludes_pose_less_videos_in_a_small_manifest(tmp_path):
    rows = ["video_id,visit_id,fold", "42446164,1,Training"]  # a video without poses
    rows += [f"{40000000 + i},{i},{'Validation' if i % 4 == 0 else 'Training'}" for i in range(30)]
    path = tmp_path / "raw.csv"
    path.write_text("\n".join(rows) + "\n")
    picked = arkit200(path, count=30)
    assert "42446164" not in {v.video_id for v in picked} and len(picked) == 30
    assert len(arkit200(path, count=5, folds=("Validation",))) == 5
    with pytest.raises(InputError, match="only 30 have poses"):
        arkit200(path, count=31)
    path.write_text("video,fold\n1,Training\n")
    with pytest.raises(CorruptFileError, match="expected columns"):
        arkit200(path)


def test_dl3dv140_on_the_real_list(manifests):
    scenes = dl3dv140(
        manifests / "dl3dv" / "dl3dv140.txt", valid=manifests / "dl3dv" / "DL3DV-valid.csv"
    )
    hashes = [s.hash for s in scenes]
    assert len(hashes) == len(set(hashes)) == 140
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes)
    assert [s.index for s in scenes] == list(range(140))
    assert sum(s.batch is not None for s in scenes) == 135  # 5 were filtered out of DL3DV-10K
    assert scenes[0].labels[1:3] == ("low_freq", "bounded")


def test_dl3dv_list_errors_and_header(tmp_path):
    h = "ab" * 32
    path = tmp_path / "meta.csv"
    path.write_text(f"index,hash,score\n0,{h},1e-6\n1,{'cd' * 32},2e-6\n")
    assert [s.hash for s in read_dl3dv_benchmark(path)] == [h, "cd" * 32]
    path.write_text(f"0,{h}\n1,{h}\n")
    with pytest.raises(CorruptFileError, match="appear twice"):
        read_dl3dv_benchmark(path)
    path.write_text(f"0,{h}\n1,not-a-hash\n")
    with pytest.raises(CorruptFileError, match=r"meta.csv:2: expected"):
        read_dl3dv_benchmark(path)
