"""Initial Gaussians from a point cloud (as 3DGS): one isotropic Gaussian per point."""

from __future__ import annotations

import numpy as np
import torch

from compgs.errors import InputError
from compgs.splats import Splats, inverse_sigmoid, num_rest_coeffs, rgb_to_sh0


def nearest_neighbour_distance(points: np.ndarray, k: int = 3) -> np.ndarray:
    """Mean distance of each point to its k nearest neighbours (3DGS's initial scale)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(k, len(points) - 1)
    if k < 1:
        return np.ones(len(points))
    nn = NearestNeighbors(n_neighbors=k + 1).fit(points)
    dist, _ = nn.kneighbors(points)
    return dist[:, 1:].mean(axis=1)


def splats_from_points(
    points: torch.Tensor,
    colors: torch.Tensor | None,
    *,
    sh_degree: int,
    init_opacity: float = 0.1,
    init_scale: float = 1.0,
) -> Splats:
    """Gaussians at ``points`` [P,3] with ``colors`` [P,3] in [0,1] (grey when None)."""
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise InputError(
            f"initial points must be a non-empty [P, 3] array, got {list(points.shape)}"
        )
    p = points.detach().cpu().double().numpy()
    dist = nearest_neighbour_distance(p)
    dist = np.clip(dist, max(np.median(dist) * 1e-3, 1e-7), None) * init_scale
    n = len(p)
    rgb = colors.float().cpu() if colors is not None else torch.full((n, 3), 0.5)
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    return Splats(
        means=points.float().cpu(),
        quats=quats,
        scales=torch.from_numpy(np.log(dist)).float()[:, None].repeat(1, 3),
        opacities=inverse_sigmoid(torch.full((n,), float(init_opacity))),
        sh0=rgb_to_sh0(rgb.clamp(0, 1)).reshape(n, 1, 3),
        shN=torch.zeros(n, num_rest_coeffs(sh_degree), 3),
    )
