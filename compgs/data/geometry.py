"""Pose conventions, projection and the scene normalisation (numpy, float64).

Every parser converts its poses into camera-to-world matrices in the OpenCV
convention of `compgs.data.cameras` (x right, y down, z forward) with these
helpers, so each convention change is written once.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# OpenGL / nerfstudio / Blender cameras look down -z with y up: flip y and z.
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def opengl_to_opencv(c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world [...,4,4] (or [...,3,4]) from OpenGL camera axes to OpenCV axes."""
    c2w = to_homogeneous(c2w)
    return c2w @ GL_TO_CV


def to_homogeneous(m: np.ndarray) -> np.ndarray:
    """[...,3,4] or [...,4,4] -> [...,4,4] float64."""
    m = np.asarray(m, dtype=np.float64)
    if m.shape[-2:] == (4, 4):
        return m.copy()
    out = np.zeros(m.shape[:-2] + (4, 4))
    out[..., :3, :4] = m
    out[..., 3, 3] = 1.0
    return out


def invert_rigid(m: np.ndarray) -> np.ndarray:
    """Inverse of rigid transforms [...,4,4] (rotation transposed, no general inverse)."""
    R = m[..., :3, :3]
    t = m[..., :3, 3:]
    out = np.zeros_like(m)
    out[..., :3, :3] = np.swapaxes(R, -1, -2)
    out[..., :3, 3:] = -np.swapaxes(R, -1, -2) @ t
    out[..., 3, 3] = 1.0
    return out


def axis_angle_to_matrix(v: np.ndarray) -> np.ndarray:
    """Rodrigues: rotation vectors [...,3] (radians) -> rotation matrices [...,3,3]."""
    v = np.asarray(v, dtype=np.float64)
    theta = np.linalg.norm(v, axis=-1, keepdims=True)
    k = v / np.where(theta > 1e-12, theta, 1.0)
    kx, ky, kz = k[..., 0], k[..., 1], k[..., 2]
    zero = np.zeros_like(kx)
    K = np.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], axis=-1).reshape(v.shape + (3,))
    s = np.sin(theta)[..., None]
    c = np.cos(theta)[..., None]
    return np.eye(3) + s * K + (1 - c) * (K @ K)


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Rotation matrices [...,3,3] -> unit quaternions [...,4] (wxyz, w >= 0)."""
    R = np.asarray(R, dtype=np.float64)
    m = R.reshape(-1, 3, 3)
    # Pick, per matrix, the largest of 4|q_i|^2 for a well-conditioned square root.
    diag = np.stack(
        [
            1 + m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2],
            1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
            1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2],
            1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2],
        ],
        axis=1,
    )
    best = diag.argmax(axis=1)
    q = np.zeros((m.shape[0], 4))
    for i in range(m.shape[0]):
        r = m[i]
        s = 2.0 * np.sqrt(max(diag[i, best[i]], 1e-300))
        if best[i] == 0:
            q[i] = [
                s / 4,
                (r[2, 1] - r[1, 2]) / s,
                (r[0, 2] - r[2, 0]) / s,
                (r[1, 0] - r[0, 1]) / s,
            ]
        elif best[i] == 1:
            q[i] = [
                (r[2, 1] - r[1, 2]) / s,
                s / 4,
                (r[0, 1] + r[1, 0]) / s,
                (r[0, 2] + r[2, 0]) / s,
            ]
        elif best[i] == 2:
            q[i] = [
                (r[0, 2] - r[2, 0]) / s,
                (r[0, 1] + r[1, 0]) / s,
                s / 4,
                (r[1, 2] + r[2, 1]) / s,
            ]
        else:
            q[i] = [
                (r[1, 0] - r[0, 1]) / s,
                (r[0, 2] + r[2, 0]) / s,
                (r[1, 2] + r[2, 1]) / s,
                s / 4,
            ]
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).reshape(R.shape[:-2] + (4,))


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Quaternions [...,4] (wxyz, any norm) -> rotation matrices [...,3,3]."""
    q = np.asarray(q, dtype=np.float64)
    w, x, y, z = np.moveaxis(q / np.linalg.norm(q, axis=-1, keepdims=True), -1, 0)
    rows = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]  # fmt: skip
    return np.stack(rows, axis=-1).reshape(q.shape[:-1] + (3, 3))


def interpolate_pose(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Rigid 4x4 pose between ``a`` (t=0) and ``b`` (t=1): slerp rotation, lerp translation."""
    qa, qb = matrix_to_quaternion(a[:3, :3]), matrix_to_quaternion(b[:3, :3])
    if np.dot(qa, qb) < 0:
        qb = -qb
    cos = float(np.clip(np.dot(qa, qb), -1.0, 1.0))
    angle = np.arccos(cos)
    if angle < 1e-8:
        q = qa
    else:
        q = (np.sin((1 - t) * angle) * qa + np.sin(t * angle) * qb) / np.sin(angle)
    out = np.eye(4)
    out[:3, :3] = quaternion_to_matrix(q)
    out[:3, 3] = (1 - t) * a[:3, 3] + t * b[:3, 3]
    return out


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """OpenCV camera-to-world [4,4] at ``eye`` looking at ``target`` (image up ~ ``up``)."""
    forward = np.asarray(target, float) - np.asarray(eye, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, down, forward, eye
    return c2w


def project(points: np.ndarray, K: np.ndarray, c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates [...,N,2] and depths [...,N] of world points [N,3] in cameras.

    ``K`` [...,3,3] and ``c2w`` [...,4,4] (OpenCV); pixel centres at +0.5.
    """
    import torch  # batched 3x3 products: several times faster than numpy's broadcast matmul

    w2c = torch.from_numpy(invert_rigid(to_homogeneous(c2w)))
    pts = torch.from_numpy(np.asarray(points, dtype=np.float64))
    cam = pts @ w2c[..., :3, :3].transpose(-1, -2) + w2c[..., None, :3, 3]
    uvw = cam @ torch.from_numpy(np.asarray(K, dtype=np.float64)).transpose(-1, -2)
    uv = uvw[..., :2] / uvw[..., 2:3]
    return uv.numpy(), cam[..., 2].numpy()


def focus_point(c2w: np.ndarray) -> np.ndarray | None:
    """The point nearest (least squares) to all optical axes, or None if they are ~parallel.

    For captures that ring an object this is the object centre (what nerfstudio
    calls the "focus" centre); forward-facing captures have no such point.
    """
    centres = c2w[:, :3, 3]
    dirs = c2w[:, :3, 2] / np.linalg.norm(c2w[:, :3, 2], axis=1, keepdims=True)
    P = np.eye(3)[None] - dirs[:, :, None] * dirs[:, None, :]
    A = P.sum(axis=0)
    b = (P @ centres[:, :, None]).sum(axis=0)[:, 0]
    eig = np.linalg.eigvalsh(A)
    if len(c2w) < 2 or eig[0] < 1e-3 * eig[-1]:
        return None
    point = np.linalg.solve(A, b)
    # The point must lie in front of most cameras, or it is a mirror artefact.
    in_front = ((point - centres) * dirs).sum(axis=1) > 0
    return point if in_front.mean() > 0.5 else None


@dataclasses.dataclass(frozen=True)
class Normalization:
    """The similarity applied to the dataset's world: ``scene = scale * (world - center)``.

    Everything a `Scene` holds (camera centres, initial points, bounds) is in
    scene coordinates; `to_world` maps trained splat means back (scales of
    Gaussians divide by ``scale``; rotations are unchanged).
    """

    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0

    def apply(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, np.float64) - np.asarray(self.center)) * self.scale

    def to_world(self, points: np.ndarray) -> np.ndarray:
        return np.asarray(points, np.float64) / self.scale + np.asarray(self.center)

    def apply_to_poses(self, c2w: np.ndarray) -> np.ndarray:
        out = np.array(c2w, dtype=np.float64, copy=True)
        out[..., :3, 3] = self.apply(out[..., :3, 3])
        return out

    def matrix(self) -> np.ndarray:
        """4x4 scene-from-world matrix."""
        m = np.eye(4) * self.scale
        m[3, 3] = 1.0
        m[:3, 3] = -self.scale * np.asarray(self.center)
        return m

    @staticmethod
    def from_camera_centres(centres: np.ndarray) -> Normalization:
        """Centre on the mean camera centre; scale the farthest camera to distance 1."""
        centres = np.asarray(centres, np.float64)
        center = centres.mean(axis=0)
        radius = float(np.linalg.norm(centres - center, axis=1).max()) if len(centres) else 0.0
        scale = 1.0 / radius if radius > 1e-9 else 1.0
        return Normalization(tuple(float(c) for c in center), scale)


def camera_extent(centres: np.ndarray) -> float:
    """3DGS's ``cameras_extent``: 1.1 x the largest distance of a camera from their mean."""
    centres = np.asarray(centres, np.float64)
    if len(centres) == 0:
        return 1.0
    radius = float(np.linalg.norm(centres - centres.mean(axis=0), axis=1).max()) * 1.1
    return radius if radius > 1e-9 else 1.0
