"""Scene lists of the two large collections: ARKit-200 (our reproducible rule) and DL3DV-140.

ARKit-200 (see datasets/arkit200.md): the raw videos of ARKitScenes'
``raw_train_val_splits.csv`` that have poses, ranked by
``sha256(f"{seed}:{video_id}")`` (hex digest, ascending); the first 200 are
the selection, listed in ``video_id`` order. A hash ranking is the same in
any language and any numpy version, and adding or removing candidate rows
never reorders the others.

DL3DV-140 (see datasets/dl3dv140.md): the benchmark's meta file, one scene per
line, the first field the row index and the second the 64-hex scene hash.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import logging
import re
from pathlib import Path

from compgs.errors import CorruptFileError, InputError

log = logging.getLogger(__name__)

ARKIT200_SIZE = 200
# The raw videos that ship no lowres_wide.traj: the rows of raw_train_val_splits.csv
# that 3dod_train_val_splits.csv leaves out (both files as published by apple/ARKitScenes).
# Used when no poses manifest is given, so that the raw manifest alone defines ARKit-200.
ARKIT_VIDEOS_WITHOUT_POSES = frozenset(
    """
    42446164 42897421 42897612 42897848 42899148 42899153 45261582 45663223
    45663226 45663227 47332198 47333152 47333155 47333960 47334515 47334522
    47334523 47429677 47430089 47895482 48018149 48018733 48458535 48458541
    """.split()
)
DL3DV140_SIZE = 140
HASH = re.compile(r"^[0-9a-f]{64}$")


@dataclasses.dataclass(frozen=True)
class ArkitVideo:
    video_id: str
    visit_id: str
    fold: str  # Training | Validation: the folder the raw download puts the video in

    @property
    def relative_path(self) -> str:
        """Where ARKitScenes' download script puts it under ``<download_dir>/raw``."""
        return f"{self.fold}/{self.video_id}"


def read_arkit_manifest(path: Path) -> list[ArkitVideo]:
    """Rows of an ARKitScenes ``*_train_val_splits.csv`` (video_id,visit_id,fold)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: manifest not found")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = {"video_id", "fold"} - set(reader.fieldnames or ())
        if missing:
            raise CorruptFileError(
                f"{path}: expected columns video_id,visit_id,fold; missing {sorted(missing)}"
            )
        rows = []
        for n, row in enumerate(reader, 2):
            video = (row.get("video_id") or "").strip()
            if not video.isdigit():
                raise CorruptFileError(f"{path}:{n}: video_id {video!r} is not a number")
            rows.append(ArkitVideo(video, (row.get("visit_id") or "").strip(), row["fold"].strip()))
    if not rows:
        raise CorruptFileError(f"{path}: no videos")
    return rows


def arkit_rank_key(seed: int, video_id: str) -> str:
    return hashlib.sha256(f"{seed}:{video_id}".encode()).hexdigest()


def arkit200(
    manifest: Path,
    *,
    seed: int = 0,
    count: int = ARKIT200_SIZE,
    poses_manifest: Path | None = None,
    folds: tuple[str, ...] = ("Training", "Validation"),
) -> list[ArkitVideo]:
    """The ARKit-200 selection (module docstring), sorted by video_id.

    ``poses_manifest`` (``3dod_train_val_splits.csv``) names the videos that
    have poses; without it the built-in list of the 24 pose-less raw videos
    is excluded.
    """
    videos = read_arkit_manifest(manifest)
    if poses_manifest is not None:
        posed = {v.video_id for v in read_arkit_manifest(poses_manifest)}
        candidates = [v for v in videos if v.video_id in posed]
    else:
        candidates = [v for v in videos if v.video_id not in ARKIT_VIDEOS_WITHOUT_POSES]
    unknown = set(folds) - {v.fold for v in videos}
    if unknown:
        raise InputError(f"{manifest}: no videos in fold(s) {sorted(unknown)}")
    candidates = [v for v in candidates if v.fold in folds]
    seen: dict[str, ArkitVideo] = {}
    for v in candidates:  # a duplicated row must not count twice
        seen.setdefault(v.video_id, v)
    if count > len(seen):
        raise InputError(
            f"{manifest}: asked for {count} videos but only {len(seen)} have poses in {folds}"
        )
    ranked = sorted(seen.values(), key=lambda v: arkit_rank_key(seed, v.video_id))
    chosen = sorted(ranked[:count], key=lambda v: v.video_id)
    log.info(
        "%s: %d videos, %d with poses in %s; picked %d with seed %d",
        manifest,
        len(videos),
        len(seen),
        "+".join(folds),
        len(chosen),
        seed,
    )
    return chosen


@dataclasses.dataclass(frozen=True)
class Dl3dvScene:
    index: int
    hash: str
    labels: tuple[str, ...]  # the remaining fields of the row (frequency, bounded, ...)
    batch: str | None = None  # DL3DV-10K batch (1K..11K) when known


def read_dl3dv_benchmark(path: Path) -> list[Dl3dvScene]:
    """The benchmark meta file: ``index,hash,label,...`` per line; a header row is skipped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: DL3DV benchmark meta file not found")
    scenes = []
    with path.open(newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            fields = [x.strip() for x in row]
            if not any(fields):
                continue
            if len(fields) < 2 or not HASH.match(fields[1].lower()):
                if n == 1 and not any(HASH.match(x.lower()) for x in fields):
                    continue  # a header row
                raise CorruptFileError(
                    f"{path}:{n}: expected 'index,<64-hex hash>,...', got {','.join(row)[:80]!r}"
                )
            try:
                index = int(fields[0]) if fields[0] else len(scenes)
            except ValueError as e:
                raise CorruptFileError(f"{path}:{n}: index {fields[0]!r} is not a number") from e
            scenes.append(Dl3dvScene(index, fields[1].lower(), tuple(fields[2:])))
    hashes = [s.hash for s in scenes]
    dupes = sorted({h for h in hashes if hashes.count(h) > 1})
    if dupes:
        raise CorruptFileError(f"{path}: {len(dupes)} hashes appear twice (first: {dupes[0]})")
    if len(scenes) != DL3DV140_SIZE:
        log.warning("%s: %d scenes, the benchmark has %d", path, len(scenes), DL3DV140_SIZE)
    return scenes


def read_dl3dv_batches(path: Path) -> dict[str, str]:
    """hash -> batch (1K..11K) from DL3DV-10K's ``DL3DV-valid.csv``."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: DL3DV-valid.csv not found")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not {"hash", "batch"} <= set(reader.fieldnames or ()):
            raise CorruptFileError(f"{path}: expected columns hash and batch")
        return {row["hash"].strip().lower(): row["batch"].strip() for row in reader}


def dl3dv140(meta: Path, *, valid: Path | None = None) -> list[Dl3dvScene]:
    """The benchmark scenes; with ``valid`` (DL3DV-valid.csv) each carries its 10K batch."""
    scenes = read_dl3dv_benchmark(meta)
    if valid is None:
        return scenes
    batches = read_dl3dv_batches(valid)
    out = [dataclasses.replace(s, batch=batches.get(s.hash)) for s in scenes]
    missing = [s.hash for s in out if s.batch is None]
    if missing:
        log.warning(
            "%d of %d benchmark scenes are not in %s (dropped by DL3DV's later filtering): %s",
            len(missing),
            len(out),
            valid,
            ", ".join(h[:12] for h in missing),
        )
    return out
