"""`Cameras`: a batch of pinhole cameras in one documented convention.

Convention (OpenCV / COLMAP, as gsplat uses): camera-to-world matrices map
camera coordinates with x right, y down, z forward (the viewing direction)
to world coordinates. Pixel centres sit at +0.5: the centre of the top-left
pixel is (0.5, 0.5), so a principal point at the image centre is (W/2, H/2).
Parsers convert every other convention (OpenGL, LLFF, ARKit) into this one.
"""

from __future__ import annotations

import dataclasses

import torch

from compgs.errors import InputError


@dataclasses.dataclass
class Cameras:
    """C cameras. ``K`` [C,3,3] intrinsics in pixels, ``camtoworld`` [C,4,4], sizes [C]."""

    K: torch.Tensor
    camtoworld: torch.Tensor
    width: torch.Tensor
    height: torch.Tensor
    # OpenCV distortion (k1, k2, p1, p2, k3, k4) per camera [C,6], or None for pinhole.
    distortion: torch.Tensor | None = None
    camera_model: str = "PINHOLE"
    names: list[str] | None = None

    def __post_init__(self) -> None:
        c = self.K.shape[0] if self.K.ndim == 3 else -1
        if self.K.shape != (c, 3, 3) or c < 0:
            raise InputError(f"Cameras.K must be [C,3,3], got {list(self.K.shape)}")
        if self.camtoworld.shape != (c, 4, 4):
            raise InputError(
                f"Cameras.camtoworld must be [{c},4,4], got {list(self.camtoworld.shape)}"
            )
        self.width = torch.as_tensor(self.width, dtype=torch.long).reshape(-1).expand(c).clone()
        self.height = torch.as_tensor(self.height, dtype=torch.long).reshape(-1).expand(c).clone()
        if self.distortion is not None and self.distortion.shape[0] != c:
            raise InputError(f"Cameras.distortion must have {c} rows")
        if self.names is not None and len(self.names) != c:
            raise InputError(f"Cameras.names must have {c} entries, got {len(self.names)}")

    def __len__(self) -> int:
        return int(self.K.shape[0])

    @property
    def device(self) -> torch.device:
        return self.K.device

    def viewmats(self) -> torch.Tensor:
        """World-to-camera matrices [C,4,4] (the inverse of ``camtoworld``)."""
        R = self.camtoworld[:, :3, :3]
        t = self.camtoworld[:, :3, 3:]
        view = torch.zeros_like(self.camtoworld)
        view[:, :3, :3] = R.transpose(1, 2)
        view[:, :3, 3:] = -R.transpose(1, 2) @ t
        view[:, 3, 3] = 1
        return view

    def centers(self) -> torch.Tensor:
        """Camera centres in world coordinates [C,3]."""
        return self.camtoworld[:, :3, 3]

    def __getitem__(self, index) -> Cameras:
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        names = self.names
        if names is not None:
            picked = torch.arange(len(self))[index].reshape(-1).tolist()
            names = [names[i] for i in picked]
        return Cameras(
            K=self.K[index],
            camtoworld=self.camtoworld[index],
            width=self.width[index],
            height=self.height[index],
            distortion=None if self.distortion is None else self.distortion[index],
            camera_model=self.camera_model,
            names=names,
        )

    def to(self, device: str | torch.device) -> Cameras:
        return dataclasses.replace(
            self,
            K=self.K.to(device),
            camtoworld=self.camtoworld.to(device),
            distortion=None if self.distortion is None else self.distortion.to(device),
        )

    def scaled(self, factor: float) -> Cameras:
        """Cameras for images downscaled by ``factor`` (sizes rounded as image resizers do)."""
        K = self.K.clone()
        K[:, :2, :] /= factor
        K[:, 2, 2] = 1
        return dataclasses.replace(
            self,
            K=K,
            width=torch.floor(self.width / factor).long(),
            height=torch.floor(self.height / factor).long(),
        )
