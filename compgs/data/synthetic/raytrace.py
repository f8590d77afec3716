"""A tiny deterministic ray tracer for the embedded default scene (numpy, float64).

Analytic primitives (a square ground plane, spheres, boxes turned about z),
procedural textures from an integer hash (identical on every machine), one
directional light with hard shadows, ambient light and a Blinn-Phong specular
highlight, so the colour of a surface point depends on where it is seen from.
World axes: z up; units are arbitrary (the scene spans about 5 units).
"""

from __future__ import annotations

import dataclasses

import numpy as np

EPS = 1e-6
INF = np.inf


def hash01(*ints: np.ndarray, seed: int = 0) -> np.ndarray:
    """A value in [0,1] per integer cell, from integer arithmetic only (bit-identical anywhere)."""
    mask = np.uint64(0xFFFFFFFF)
    shape = np.broadcast(*ints).shape
    h = np.full(shape, (seed * 83492791 + 2654435761) & 0xFFFFFFFF, np.uint64)
    for k, prime in zip(ints, (73856093, 19349663, 83492791)):
        k = np.asarray(k, np.int64).astype(np.uint64)  # negative cells wrap, as intended
        h = ((h ^ ((k * np.uint64(prime)) & mask)) * np.uint64(2246822519)) & mask
        h ^= h >> np.uint64(13)
    return (h & np.uint64(0xFFFF)).astype(np.float64) / 65535.0


@dataclasses.dataclass(frozen=True)
class Material:
    color_a: tuple[float, float, float]
    color_b: tuple[float, float, float]
    tile: float  # pattern period (world units, or stripes per turn on spheres)
    specular: float  # strength of the Blinn-Phong highlight
    shininess: float


@dataclasses.dataclass(frozen=True)
class Sphere:
    center: tuple[float, float, float]
    radius: float
    material: Material


@dataclasses.dataclass(frozen=True)
class Box:
    center: tuple[float, float, float]
    half: tuple[float, float, float]
    yaw: float  # rotation about z, radians
    material: Material


@dataclasses.dataclass(frozen=True)
class SyntheticSpec:
    """The scene: ground square of half-size ``ground_half`` at z=0, spheres, boxes, light."""

    ground_half: float
    ground: Material
    spheres: tuple[Sphere, ...]
    boxes: tuple[Box, ...]
    light_dir: tuple[float, float, float]
    ambient: float
    background: tuple[float, float, float]
    seed: int = 0

    # -- geometry ------------------------------------------------------------------
    def intersect(self, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Nearest hit of rays ``o + t d`` [N,3]: (t [N] (inf on a miss), primitive id [N]
        (-1 miss, 0 ground, then spheres, then boxes), unit normal [N,3])."""
        n = len(o)
        t_best = np.full(n, INF)
        prim = np.full(n, -1)
        normal = np.zeros((n, 3))
        candidates = [(0, *self._ground(o, d))]
        for i, sph in enumerate(self.spheres):
            candidates.append((1 + i, *self._sphere(o, d, sph.center, sph.radius)))
        for i, b in enumerate(self.boxes):
            # Only rays through the bounding sphere can hit the box: test those alone.
            t_bound, _ = self._sphere(o, d, b.center, float(np.linalg.norm(b.half)) * 1.001)
            near = np.isfinite(t_bound)
            t, nrm = np.full(n, INF), np.zeros((n, 3))
            if near.any():
                t[near], nrm[near] = self._box(o[near], d[near], b)
            candidates.append((1 + len(self.spheres) + i, t, nrm))
        for pid, t, nrm in candidates:
            closer = t < t_best
            t_best = np.where(closer, t, t_best)
            prim = np.where(closer, pid, prim)
            normal[closer] = nrm[closer]
        return t_best, prim, normal

    def _ground(self, o, d):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = -o[:, 2] / d[:, 2]
        p = o + t[:, None] * d
        ok = (
            (t > EPS)
            & (np.abs(p[:, 0]) <= self.ground_half)
            & (np.abs(p[:, 1]) <= self.ground_half)
        )
        nrm = np.zeros_like(o)
        nrm[:, 2] = np.where(d[:, 2] < 0, 1.0, -1.0)
        return np.where(ok, t, INF), nrm

    @staticmethod
    def _sphere(o, d, center, radius: float):
        """Nearest positive hit (t, normal) of unit-direction rays with a sphere."""
        oc = o - np.asarray(center)
        b = np.einsum("ij,ij->i", oc, d)
        c = np.einsum("ij,ij->i", oc, oc) - radius**2
        disc = b * b - c
        root = np.sqrt(np.maximum(disc, 0))
        t0, t1 = -b - root, -b + root
        t = np.where(t0 > EPS, t0, np.where(t1 > EPS, t1, INF))
        t = np.where(disc >= 0, t, INF)
        nrm = (oc + np.where(np.isfinite(t), t, 0)[:, None] * d) / radius
        return t, nrm

    @staticmethod
    def _box_frame(b: Box) -> np.ndarray:
        c, s = np.cos(b.yaw), np.sin(b.yaw)
        return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])  # local -> world

    def _box(self, o, d, b: Box):
        R = self._box_frame(b)
        lo = (o - np.asarray(b.center)) @ R
        ld = d @ R
        half = np.asarray(b.half)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / ld
            t1, t2 = (-half - lo) * inv, (half - lo) * inv
        tmin = np.nanmax(np.minimum(t1, t2), axis=1)
        tmax = np.nanmin(np.maximum(t1, t2), axis=1)
        t = np.where(tmin > EPS, tmin, tmax)
        ok = (tmax >= np.maximum(tmin, EPS)) & np.isfinite(t)
        p = lo + np.where(ok, t, 0)[:, None] * ld
        axis = np.abs(p / half).argmax(axis=1)
        nl = np.zeros_like(p)
        nl[np.arange(len(p)), axis] = np.sign(p[np.arange(len(p)), axis])
        return np.where(ok, t, INF), nl @ R.T

    def surface_distance(self, p: np.ndarray) -> np.ndarray:
        """Unsigned distance [N] from points [N,3] to the nearest surface (ground truth)."""
        q = np.abs(p[:, :2]) - self.ground_half
        outside = np.linalg.norm(np.maximum(q, 0), axis=1)
        dist = np.sqrt(outside**2 + p[:, 2] ** 2)
        for s in self.spheres:
            dist = np.minimum(
                dist, np.abs(np.linalg.norm(p - np.asarray(s.center), axis=1) - s.radius)
            )
        for b in self.boxes:
            lp = np.abs((p - np.asarray(b.center)) @ self._box_frame(b)) - np.asarray(b.half)
            sdf = np.linalg.norm(np.maximum(lp, 0), axis=1) + np.minimum(lp.max(axis=1), 0)
            dist = np.minimum(dist, np.abs(sdf))
        return dist

    # -- appearance ----------------------------------------------------------------
    def albedo(self, p: np.ndarray, prim: np.ndarray) -> np.ndarray:
        """Texture colour [N,3] at surface points ``p`` of primitives ``prim``."""
        out = np.zeros((len(p), 3))
        for pid in np.unique(prim[prim >= 0]):
            sel = prim == pid
            out[sel] = self._albedo_of(int(pid), p[sel])
        return out

    def _albedo_of(self, pid: int, p: np.ndarray) -> np.ndarray:
        ns = len(self.spheres)
        if pid == 0:
            m, cells = self.ground, np.floor(p[:, :2] / self.ground.tile).astype(np.int64)
            parity = (cells[:, 0] + cells[:, 1]) & 1
            tint = hash01(cells[:, 0], cells[:, 1], seed=self.seed)
            frac = p[:, :2] / m.tile - cells
            grout = ((frac < 0.04) | (frac > 0.96)).any(axis=1)
            base = _mix(m, parity, 0.75 + 0.5 * tint)
            # A hue per tile and one dot at a hashed spot: features a matcher can tell apart.
            hue = np.stack(
                [
                    hash01(cells[:, 0], cells[:, 1], np.full_like(parity, k), seed=self.seed)
                    for k in range(3)
                ],
                1,
            )
            base = 0.7 * base + 0.3 * hue
            spot = np.stack(
                [
                    hash01(cells[:, 0], cells[:, 1], np.full_like(parity, k), seed=self.seed)
                    for k in (3, 4)
                ],
                1,
            )
            dot = np.linalg.norm(frac - (0.25 + 0.5 * spot), axis=1) < 0.13
            base = np.where(dot[:, None], 1.0 - base, base)
            return np.where(grout[:, None], base * 0.45, base)
        if pid <= ns:
            s = self.spheres[pid - 1]
            q = (p - np.asarray(s.center)) / s.radius
            phi = np.arctan2(q[:, 1], q[:, 0]) / (2 * np.pi) + 0.5
            theta = np.arccos(np.clip(q[:, 2], -1, 1)) / np.pi
            u = np.floor(phi * s.material.tile).astype(np.int64)
            v = np.floor(theta * s.material.tile / 2).astype(np.int64)
            spot = hash01(u, v, np.full_like(u, pid), seed=self.seed)
            return _mix(s.material, (u + v) & 1, 0.8 + 0.4 * spot)
        b = self.boxes[pid - ns - 1]
        lp = (p - np.asarray(b.center)) @ self._box_frame(b)
        cells = np.floor(lp / b.material.tile).astype(np.int64)
        face = np.abs(lp / np.asarray(b.half)).argmax(axis=1)
        parity = (cells.sum(axis=1)) & 1
        tint = hash01(cells[:, 0], cells[:, 1] * 7 + cells[:, 2], face + 10 * pid, seed=self.seed)
        return _mix(b.material, parity, 0.7 + 0.6 * tint)

    def material(self, prim: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mats = [self.ground] + [s.material for s in self.spheres] + [b.material for b in self.boxes]
        spec = np.array([m.specular for m in mats])[np.maximum(prim, 0)]
        shine = np.array([m.shininess for m in mats])[np.maximum(prim, 0)]
        return spec, shine

    def diffuse_colour(self, p, normal, prim, lit: np.ndarray | None = None) -> np.ndarray:
        """The view-independent part of the colour (albedo x (ambient + lit diffuse))."""
        light = np.asarray(self.light_dir) / np.linalg.norm(self.light_dir)
        lit = self._unshadowed(p, normal, light) if lit is None else lit
        lambert = np.maximum((normal * light).sum(1), 0) * lit
        return self.albedo(p, prim) * (self.ambient + (1 - self.ambient) * lambert)[:, None]

    def _unshadowed(self, p, normal, light) -> np.ndarray:
        t, _, _ = self.intersect(p + normal * 1e-5, np.broadcast_to(light, p.shape).copy())
        return (~np.isfinite(t)).astype(np.float64)

    def shade(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Colour [N,3] in [0,1] seen along rays (background where they miss)."""
        t, prim, normal = self.intersect(o, d)
        hit = np.isfinite(t)
        out = np.tile(np.asarray(self.background, np.float64), (len(o), 1))
        if not hit.any():
            return out
        p, nrm, pr, dd = o[hit] + t[hit, None] * d[hit], normal[hit], prim[hit], d[hit]
        light = np.asarray(self.light_dir) / np.linalg.norm(self.light_dir)
        lit = self._unshadowed(p, nrm, light)
        colour = self.diffuse_colour(p, nrm, pr, lit)
        half = light - dd
        half /= np.linalg.norm(half, axis=1, keepdims=True)
        ks, shine = self.material(pr)
        highlight = ks * np.maximum((nrm * half).sum(1), 0) ** shine * lit
        out[hit] = np.clip(colour + highlight[:, None], 0.0, 1.0)
        return out


def _mix(m: Material, parity: np.ndarray, brightness: np.ndarray) -> np.ndarray:
    a, b = np.asarray(m.color_a), np.asarray(m.color_b)
    base = np.where(parity[:, None] == 1, b, a)
    return np.clip(base * brightness[:, None], 0.0, 1.0)


def default_spec(seed: int = 0) -> SyntheticSpec:
    """The embedded scene: three spheres and two boxes on a tiled square."""

    def mat(a, b, tile, spec=0.0, shine=1.0):
        return Material(a, b, tile, spec, shine)

    return SyntheticSpec(
        ground_half=2.5,
        ground=mat((0.78, 0.76, 0.70), (0.35, 0.38, 0.42), 0.5, 0.08, 20.0),
        spheres=(
            Sphere(
                (0.55, 0.45, 0.5), 0.5, mat((0.85, 0.15, 0.12), (0.95, 0.92, 0.85), 8, 0.9, 60.0)
            ),
            Sphere(
                (-0.75, 0.55, 0.35), 0.35, mat((0.15, 0.3, 0.85), (0.95, 0.8, 0.2), 6, 0.25, 12.0)
            ),
            Sphere((0.15, -0.85, 0.3), 0.3, mat((0.1, 0.6, 0.25), (0.9, 0.95, 0.9), 10, 0.6, 40.0)),
        ),
        boxes=(
            Box(
                (-0.65, -0.45, 0.3),
                (0.3, 0.3, 0.3),
                0.5,
                mat((0.95, 0.55, 0.1), (0.3, 0.15, 0.05), 0.15),
            ),
            Box(
                (1.0, -0.55, 0.2),
                (0.35, 0.15, 0.2),
                -0.35,
                mat((0.55, 0.25, 0.7), (0.95, 0.95, 0.95), 0.1, 0.3, 25.0),
            ),
        ),
        light_dir=(0.45, 0.3, 0.85),
        ambient=0.35,
        background=(0.72, 0.80, 0.90),
        seed=seed,
    )
