"""CompGS's quantization-aware training: k-means codebooks for colour and covariance.

From ``qat_start`` on, the DC colour, SH rest, scale (log) and rotation (raw
quaternion) of every Gaussian are replaced in the forward pass by their
codebook centroid; the straight-through estimator sends the gradient to the
full-precision values, which Adam keeps updating. Centroids follow the mean of
their members every step; members are re-assigned every ``assign_every`` steps
until ``freeze``. At the end the codebooks and indices are written as .cgs and
the metrics are measured on the decoded file.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from compgs.codec import CodecOptions, decode, encode_ordered, group_vectors
from compgs.errors import InputError
from compgs.quantize import clamp_size, parse_sizes, set_group_vectors
from compgs.splats import Splats
from compgs.train.config import TrainConfig
from compgs.train.trainer import TrainHook
from compgs.vq import Codebook, QATAction, QATSchedule

log = logging.getLogger(__name__)

LAYOUTS = {
    "separate": {"dc": ("sh0",), "sh": ("shN",), "scale": ("scales",), "rot": ("quats",)},
    "shared-shdc": {"shdc": ("sh0", "shN"), "scale": ("scales",), "rot": ("quats",)},
    "sh-only": {"sh": ("shN",)},
}


def group_layout(name: str, sh_degree: int) -> dict[str, tuple[str, ...]]:
    """Codebook groups of a layout; SH rest drops out at SH degree 0."""
    groups = {}
    for group, fields in LAYOUTS[name].items():
        kept = tuple(f for f in fields if f != "shN" or sh_degree > 0)
        if kept:
            groups[group] = kept
    return groups


class QATHook(TrainHook):
    def __init__(self, config: TrainConfig):
        cfg = config.compgs
        self.config = config
        self.groups = group_layout(cfg.groups, config.sh_degree)
        if not self.groups:
            raise InputError(
                f"codebook layout {cfg.groups!r} quantizes nothing at SH degree {config.sh_degree}"
            )
        sizes = parse_sizes(cfg.codebook_sizes)
        sizes.setdefault("shdc", sizes.get("sh", 4096))
        missing = [g for g in self.groups if g not in sizes]
        if missing:
            raise InputError(f"--compgs.codebook-sizes gives no size for {missing}")
        self.sizes = {g: sizes[g] for g in self.groups}
        start = config.scaled_step(cfg.qat_start)
        if start < config.effective_densify().refine_stop:
            raise InputError(
                "quantization must start after densification stops (qat_start >= refine_stop)"
            )
        self.schedule = QATSchedule(
            start=start,
            assign_every=max(10, config.scaled_step(cfg.assign_every)),
            freeze=max(start, config.scaled_step(cfg.freeze)),
        )
        self.codebooks: dict[str, Codebook] = {}
        self.transferred = (
            load_codebooks(cfg.codebook_from, self.groups) if cfg.codebook_from else None
        )

    # -- codebooks ------------------------------------------------------------------

    def _build(self, n: int, device: torch.device) -> None:
        for i, name in enumerate(self.groups):
            if self.transferred is not None:
                book = Codebook.from_centroids(self.transferred[name].to(device), frozen=True)
            else:
                k = clamp_size(self.sizes[name], n)
                if k != self.sizes[name]:
                    log.info(
                        "codebook %r: %d codes clamped to %d for %d Gaussians",
                        name,
                        self.sizes[name],
                        k,
                        n,
                    )
                book = Codebook(
                    k, self._dim(name), iters=self.config.compgs.fit_iters, lloyd_iters=1,
                    seed=self.config.seed + i, device=device,
                )  # fmt: skip
            self.codebooks[name] = book

    def _dim(self, name: str) -> int:
        probe = Splats.empty(1, sh_degree=self.config.sh_degree)
        return group_vectors(probe, self.groups[name]).shape[1]

    def quantized(self, splats: Splats, action: QATAction | None) -> Splats:
        """Splats with every group replaced by its centroids (straight-through)."""
        out = splats
        for name, fields in self.groups.items():
            x = group_vectors(splats, fields)
            book = self.codebooks[name]
            xq = book.quantize(x) if action is None else book.step(x, action)
            out = set_group_vectors(out, fields, xq)
        return out

    # -- hook -------------------------------------------------------------------------

    def render_splats(self, trainer, splats: Splats, step: int) -> Splats:
        action = self.schedule.step(step)
        if action is QATAction.OFF:
            return splats
        if not self.codebooks:
            self._build(splats.num_gaussians, splats.device)
        for book in self.codebooks.values():
            if book.centroids.device != splats.device:  # restored from a CPU checkpoint
                book.to(splats.device)
        return self.quantized(splats, action)

    def export_splats(self, trainer, splats: Splats) -> Splats:
        return self.quantized(splats, None) if self.codebooks else splats

    def on_remove(self, keep: torch.Tensor) -> None:
        for book in self.codebooks.values():
            if book.assignments.numel():
                book.select(keep)

    def state_dict(self) -> dict:
        return {name: book.state_dict() for name, book in self.codebooks.items()}

    def load_state_dict(self, state: dict) -> None:
        self.codebooks = {}
        for name, book_state in state.items():
            k, d = book_state["centroids"].shape
            book = Codebook(k, d, iters=self.config.compgs.fit_iters, lloyd_iters=1)
            book.load_state_dict(book_state)
            self.codebooks[name] = book

    # -- the compressed output ------------------------------------------------------------

    def codec_options(self) -> CodecOptions:
        base = CodecOptions.bitq() if self.config.compgs.bitq else CodecOptions()
        return CodecOptions(**{**base.__dict__, "groups": self.groups})

    def finish(self, trainer, splats: Splats, run_dir: Path) -> dict:
        """Write scene.cgs; the run's metrics are then measured on its decoded contents."""
        if not self.codebooks:
            log.warning("training ended before quantization started: no scene.cgs written")
            return {}
        from compgs.atomic import atomic_write_bytes

        model = trainer.model.splats()
        with torch.no_grad():
            quantized = self.export_splats(trainer, model).detach().to("cpu")
        codebooks = {name: book.centroids.cpu() for name, book in self.codebooks.items()}
        indices = {name: book.assignments.cpu() for name, book in self.codebooks.items()}
        meta = {"method": self.config.method, "steps": trainer.step, "scene": str(self.config.data)}
        data, _ = encode_ordered(quantized, codebooks, indices, self.codec_options(), metadata=meta)
        path = Path(run_dir) / "scene.cgs"
        atomic_write_bytes(path, data)
        decoded = decode(data, str(path))
        if self.config.compgs.export_decompressed_ply:
            from compgs.io.ply import write_ply

            write_ply(decoded, Path(run_dir) / "scene_decompressed.ply")
        ply = Path(run_dir) / "splats.ply"
        from compgs.eval.evaluate import ply_size_bytes

        ply_bytes = ply.stat().st_size if ply.is_file() else ply_size_bytes(quantized)
        return {
            "splats": decoded.to(trainer.device),
            "size_bytes": len(data),
            "size_file": "scene.cgs",
            "ply_bytes": ply_bytes,
            "compression_ratio": ply_bytes / len(data),
            "bits_per_gaussian": 8 * len(data) / max(decoded.num_gaussians, 1),
            "codebook_sizes": {name: book.num_codes for name, book in self.codebooks.items()},
        }


def load_codebooks(source: Path, groups: dict[str, tuple[str, ...]]) -> dict[str, torch.Tensor]:
    """Centroids of another run's scene.cgs (or a .cgs file), checked against ``groups``."""
    from compgs.codec.files import read_cgs_compressed

    path = Path(source)
    if path.is_dir():
        path = path / "scene.cgs"
    if not path.is_file():
        raise InputError(f"{source}: no scene.cgs to take codebooks from")
    compressed = read_cgs_compressed(path)
    stored = {g["name"]: tuple(g["fields"]) for g in compressed.meta["groups"]}
    if stored != groups:
        raise InputError(f"{path}: codebook groups {stored} do not match this run's {groups}")
    return compressed.codebooks
