"""Pick the parser for a folder from its contents (or by name) and run it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from compgs.data import arkit, colmap, llff, transforms
from compgs.data.frames import ParsedScene, list_images
from compgs.errors import InputError

# In detection order: a nerfstudio folder made by ns-process-data also holds a
# COLMAP model; its transforms.json is the one that names the processed images.
MARKERS: dict[str, tuple[str, Callable[[Path], bool]]] = {
    "blender": ("transforms_train.json", lambda r: (r / "transforms_train.json").is_file()),
    "nerfstudio": ("transforms.json", lambda r: (r / "transforms.json").is_file()),
    "colmap": ("sparse/0/cameras.bin|txt", lambda r: colmap.find_model(r) is not None),
    "llff": ("poses_bounds.npy", lambda r: (r / "poses_bounds.npy").is_file()),
    "arkit": ("lowres_wide.traj", lambda r: arkit.find_video(r) is not None),
}
PARSER_NAMES = tuple(MARKERS)


def detect(root: Path) -> str:
    """The name of the parser for ``root``, or an `InputError` saying what is missing."""
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: no such folder")
    if not root.is_dir():
        raise InputError(f"{root}: is a file; pass the scene folder that contains it")
    for name, (_, present) in MARKERS.items():
        if present(root):
            return name
    expected = ", ".join(marker for marker, _ in MARKERS.values())
    if not any(root.iterdir()):
        raise InputError(f"{root}: empty folder, no scene to load (expected one of: {expected})")
    images = list_images(root) or list_images(root / "images")
    if images:
        raise InputError(
            f"{root}: {len(images)} images but no camera poses (expected one of: {expected}); "
            "run COLMAP on the images first"
        )
    raise InputError(f"{root}: no scene found (expected one of: {expected})")


def parse(
    root: Path, parser: str = "auto", *, tolerance: float = 0.05, frame_stride: int = 1
) -> ParsedScene:
    """Read ``root`` with the named parser (``auto``: detect); drop frames with missing images."""
    root = Path(root)
    name = detect(root) if parser == "auto" else parser
    if name not in MARKERS:
        raise InputError(f"unknown parser {parser!r}; choose auto or one of {PARSER_NAMES}")
    if parser != "auto" and not root.is_dir():
        raise InputError(f"{root}: no such folder")
    if parser != "auto" and not MARKERS[name][1](root):
        raise InputError(f"{root}: not a {name} scene (no {MARKERS[name][0]})")
    if name == "blender":
        scene = transforms.parse_blender(root)
    elif name == "nerfstudio":
        scene = transforms.parse_nerfstudio(root)
    elif name == "colmap":
        scene = colmap.parse_colmap(root)
    elif name == "llff":
        scene = llff.parse_llff(root)
    else:
        scene = arkit.parse_arkit(root, tolerance=tolerance, frame_stride=frame_stride)
    scene.keep_existing()
    return scene
