"""`compgs compress IN -o OUT.cgs` and `compgs decompress IN.cgs -o OUT`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import tyro


def compress(
    src: Annotated[Path, tyro.conf.Positional],
    output: Annotated[Path, tyro.conf.arg(aliases=["-o"])],
    codebook_sizes: str = "dc=4096,sh=4096,scale=16384,rot=16384",
    bitq: bool = False,
    positions: Literal["f32", "f16", "u16"] | None = None,
    opacities: Literal["f32", "f16", "u8"] | None = None,
    codebooks: Literal["f32", "f16"] | None = None,
    sort_key: str | None = None,
    zstd_level: int = 19,
    iters: int = 10,
    seed: int = 0,
) -> None:
    """Compress a trained splat file with post-training k-means codebooks (no images needed).

    Args:
        src: input .ply, .splat or .spz (format detected from content).
        output: the .cgs file to write (atomically).
        codebook_sizes: K per group; clamped for small scenes (the clamp is reported).
        bitq: the paper's BitQ: 16-bit positions, 8-bit opacity, half-precision codebooks.
        positions: override position storage (f32, f16, u16 fixed point on the bounding box).
        opacities: override opacity storage (f32/f16 logits, u8 of the activated value).
        codebooks: override codebook storage precision.
        sort_key: group whose index is run-length coded (default: the widest index).
        zstd_level: level of the optional per-section zstd stage (0 disables it).
        iters: Lloyd iterations of k-means per group.
        seed: k-means seed.
    """
    import dataclasses
    import time

    from rich.console import Console
    from rich.table import Table

    from compgs import io
    from compgs.atomic import atomic_write_bytes
    from compgs.codec import CodecOptions, decode
    from compgs.codec.files import describe
    from compgs.errors import InputError
    from compgs.quantize import attribute_rmse, compress_splats, parse_sizes

    console = Console()
    if output.suffix.lower() != ".cgs":
        raise InputError(f"{output}: the output of compress is a .cgs file (name it *.cgs)")
    overrides = {
        k: v
        for k, v in dict(positions=positions, opacities=opacities, codebooks=codebooks).items()
        if v is not None
    }
    base = CodecOptions.bitq() if bitq else CodecOptions()
    options = dataclasses.replace(
        base, **overrides, sort_key=sort_key, zstd_level=zstd_level or None
    )
    splats = io.load(src)  # after the options are checked (sort key, zstd level)
    start = time.perf_counter()
    with console.status(f"k-means on {splats.num_gaussians:,} Gaussians ..."):
        result = compress_splats(
            splats, parse_sizes(codebook_sizes), options, iters=iters, seed=seed,
            metadata={"source": src.name},
        )  # fmt: skip
    seconds = time.perf_counter() - start
    atomic_write_bytes(output, result.data)
    decoded = decode(result.data, str(output))
    rmse = attribute_rmse(splats.index(result.order), decoded)
    in_size, out_size = src.stat().st_size, len(result.data)
    console.print(
        f"{src} ({in_size:,} B) -> {output} ({out_size:,} B): {in_size / out_size:.1f}x smaller, "
        f"{8 * out_size / splats.num_gaussians:.1f} bits/Gaussian, {seconds:.1f} s"
    )
    table = Table(title="Per-attribute RMSE after decode", show_header=True)
    table.add_column("attribute")
    table.add_column("RMSE")
    for name, value in rmse.items():
        table.add_row(name, f"{value:.4g}")
    console.print(table)
    for title, rows in describe(output)[:2]:
        t = Table(title=title, show_header=False, title_justify="left")
        for key, value in rows:
            t.add_row(key, value)
        console.print(t)


def decompress(
    src: Annotated[Path, tyro.conf.Positional],
    output: Annotated[Path, tyro.conf.arg(aliases=["-o"])],
) -> None:
    """Expand a .cgs file into .ply, .splat or .spz (by the output suffix).

    Args:
        src: the .cgs file.
        output: the file to write (atomically).
    """
    from compgs import io
    from compgs.codec.files import read_cgs

    splats = read_cgs(src)
    io.save(splats, output)
    print(f"{src} -> {output}: {splats.num_gaussians:,} Gaussians, {output.stat().st_size:,} B")
