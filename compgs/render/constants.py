"""Constants shared by every backend, so that they all draw the same picture.

They are those of the 3DGS rasterizer (Kerbl et al. 2023) as gsplat uses them.
"""

from __future__ import annotations

import math

ALPHA_MIN = 1.0 / 255.0  # contributions below this alpha are skipped
ALPHA_MAX = 0.99  # alpha is clamped here so that transmittance never reaches 0
T_MIN = 1e-4  # a pixel stops compositing before its transmittance drops below this
EPS2D = 0.3  # low-pass filter added to the 2D covariance (pixels^2)
NEAR_PLANE = 0.01
FAR_PLANE = 1e10
# The Jacobian of the projection is evaluated at x/z clamped to the field of view
# widened by this fraction, as in 3DGS (keeps Gaussians far off-screen finite).
FOV_CLAMP = 0.3
# A Gaussian reaches alpha >= ALPHA_MIN only where its Mahalanobis power is at most
# log(255 * opacity); its screen extent per axis is sqrt(2 * that * var). The small
# margins keep float32 rounding from cutting a pixel the threshold would keep.
EXTENT_REL_MARGIN = 1e-4
EXTENT_ABS_MARGIN = 0.01
LOG_255 = math.log(255.0)
