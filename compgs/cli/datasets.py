"""`compgs datasets arkit200|dl3dv140 ...`: the scene lists of the paper's large collections.

Each writes a list file for `compgs batch --scenes FILE --root DOWNLOAD_DIR`
(one relative scene path per line, # comments), or prints it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

LISTS = {
    "arkit200": "200 ARKitScenes raw videos with poses, seeded (datasets/arkit200.md)",
    "dl3dv140": "the 140 scenes of the DL3DV benchmark (datasets/dl3dv140.md)",
}


def datasets(argv: list[str]) -> None:
    from compgs.cli.main import _fail, parse

    if not argv or argv[0] in ("-h", "--help"):
        print("usage: compgs datasets <list> [options]   (compgs datasets <list> --help)\n")
        for name, summary in LISTS.items():
            print(f"  {name:<9} {summary}")
        if not argv:
            raise SystemExit(2)
        return
    if argv[0] not in LISTS:
        _fail(f"unknown list {argv[0]!r}; known: {', '.join(LISTS)}", 2)
    parse(
        {"arkit200": arkit200, "dl3dv140": dl3dv140}[argv[0]],
        list(argv[1:]),
        f"compgs datasets {argv[0]}",
    )


datasets.raw_argv = True  # a sub-command per collection


def arkit200(
    manifest: Path,
    seed: int = 0,
    count: int = 200,
    poses_manifest: Path | None = None,
    fold: Literal["all", "Training", "Validation"] = "all",
    out: Path | None = None,
) -> None:
    """List ARKit-200: videos with poses, ranked by sha256("<seed>:<video_id>").

    Args:
        manifest: ARKitScenes' raw_train_val_splits.csv.
        seed: the selection's seed (the published list uses 0).
        count: how many videos.
        poses_manifest: 3dod_train_val_splits.csv (the videos with poses); default: the
            built-in list of the 24 raw videos without poses.
        fold: restrict to one fold.
        out: write the list here (lines '<fold>/<video_id>'); default: print it.
    """
    from compgs.batch.datasets import arkit200 as select

    folds = ("Training", "Validation") if fold == "all" else (fold,)
    videos = select(manifest, seed=seed, count=count, poses_manifest=poses_manifest, folds=folds)
    header = [
        f"ARKit-{count}: compgs datasets arkit200 --seed {seed} ({Path(manifest).name}, folds {'+'.join(folds)})",
        "paths under <download_dir>/raw: compgs batch --scenes THIS --root <download_dir>/raw",
    ]
    _emit(header, [v.relative_path for v in videos], out)


def dl3dv140(
    meta: Path,
    valid: Path | None = None,
    layout: Literal["benchmark", "10k"] = "benchmark",
    out: Path | None = None,
) -> None:
    """List the DL3DV-140 benchmark scenes.

    Args:
        meta: the benchmark's meta file (index,hash,labels... per line).
        valid: DL3DV-10K's DL3DV-valid.csv (gives each scene's batch; needed for --layout 10k).
        layout: benchmark: '<hash>' lines (DL3DV-10K-Benchmark download: <hash>/nerfstudio,
            <hash>/gaussian_splat); 10k: '<batch>/<hash>' lines (DL3DV-10K download).
        out: write the list here; default: print it.
    """
    from compgs.batch.datasets import dl3dv140 as read
    from compgs.errors import InputError

    if layout == "10k" and valid is None:
        raise InputError("--layout 10k needs --valid DL3DV-valid.csv (it maps hashes to batches)")
    scenes = read(meta, valid=valid)
    header = [f"DL3DV-140: compgs datasets dl3dv140 ({Path(meta).name}), {len(scenes)} scenes"]
    if layout == "benchmark":
        lines = [s.hash for s in scenes]
    else:
        missing = [s.hash for s in scenes if s.batch is None]
        lines = [f"{s.batch}/{s.hash}" for s in scenes if s.batch is not None]
        header += [f"not in DL3DV-10K (filtered out): {h}" for h in missing]
    _emit(header, lines, out)


def _emit(header: list[str], lines: list[str], out: Path | None) -> None:
    text = "".join(f"# {h}\n" for h in header) + "".join(f"{line}\n" for line in lines)
    if out is None:
        print(text, end="")
        return
    from compgs.atomic import atomic_write_text

    atomic_write_text(out, text)
    print(f"{out}: {len(lines)} scenes")
