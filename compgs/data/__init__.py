"""Scenes: cameras, images and initial points parsed from the folders users point at.

`load_scene(path)` reads COLMAP, nerfstudio/DL3DV, LLFF, Blender and ARKitScenes
folders into a `Scene`; `compgs.data.synthetic` generates the embedded default.
"""

from compgs.data.cameras import Cameras
from compgs.data.geometry import Normalization
from compgs.data.scene import Scene, load_scene

__all__ = ["Cameras", "Normalization", "Scene", "load_scene"]
