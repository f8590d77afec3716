"""Scenes: cameras, images and initial points parsed from the folders users point at."""

from compgs.data.cameras import Cameras

__all__ = ["Cameras"]
