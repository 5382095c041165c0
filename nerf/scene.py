"""The built-in scene: analytic shapes, ray-cast exactly, generated without any download.

A checkered slab carrying three spheres and a checkered cube with a fourth sphere on top, all
inside the sphere of radius 1.35 around the origin (so inside [-1.5, 1.5]^3 and, from radius 4,
inside every view with white image corners). Lambertian shading from one fixed directional light
plus an ambient term, no shadows or specular, so a point's colour does not depend on the view:
exactly what a radiance field can represent. World z is up, as in Blender scenes.

Cameras sit on the sphere of radius 4 and look at the origin with NeRF-synthetic lego's
``camera_angle_x``: "train" is a golden-angle spiral over elevations 10..70 degrees, "val" and
"test" are rings at elevations 25 and 45 degrees whose azimuths fall between the training views'.
Near/far (2, 6) and bbox ([-1.5, 1.5]^3) are those of the Blender scenes.

Each pixel is the mean of ``supersample`` x ``supersample`` rays on a regular sub-pixel grid, the
same box filter the loaders use when they downscale.

Alpha: the scene is a set of opaque shapes in empty space, and a ray that misses every shape sees
nothing at all (the white is a backdrop, not an object). So the scene is an RGBA scene like the
NeRF-synthetic ones: a pixel's alpha is the fraction of its sub-pixel rays that hit a shape, and its
RGB is ``shaded * alpha + white * (1 - alpha)`` (exactly what the renderer averages). Training can
therefore composite it onto any background, as it does for lego.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from nerf.cameras import (BLENDER_BBOX, BLENDER_FAR, BLENDER_NEAR, SPLITS, DataError, SceneData, camera_directions,
                          check_count)

__all__ = [
    "CAMERA_ANGLE_X",
    "CAMERA_RADIUS",
    "DEFAULT_RESOLUTION",
    "SPLIT_VIEWS",
    "Sphere",
    "Box",
    "SHAPES",
    "LIGHT_DIRECTION",
    "camera_poses",
    "render",
    "render_rgba",
    "shade_rays",
    "builtin_scene",
]

#: Horizontal field of view in radians (NeRF-synthetic lego's).
CAMERA_ANGLE_X: float = 0.6911112070083618
#: Distance of every camera from the origin, world units.
CAMERA_RADIUS: float = 4.0
#: Default image size (pixels, square).
DEFAULT_RESOLUTION: int = 100
#: Views per split.
SPLIT_VIEWS: dict[str, int] = {"train": 48, "val": 8, "test": 8}
#: Unit vector from the surface towards the light.
LIGHT_DIRECTION: np.ndarray = np.array([0.45, -0.35, 0.82]) / np.linalg.norm([0.45, -0.35, 0.82])
LIGHT_DIRECTION.setflags(write=False)

_AMBIENT = 0.3
_EPS = 1e-9


@dataclass(frozen=True)
class Sphere:
    """A sphere; ``color`` is its RGB albedo in [0, 1]."""

    center: tuple[float, float, float]
    radius: float
    color: tuple[float, float, float]


@dataclass(frozen=True)
class Box:
    """An axis-aligned box from ``lo`` to ``hi`` with a 3-D checker of ``color``/``color2``.

    The checker cell is ``cell`` world units; faces are kept off cell boundaries so no face shows a
    seam of rounding noise.
    """

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    color: tuple[float, float, float]
    color2: tuple[float, float, float]
    cell: float


#: The scene, in world units (z up).
SHAPES: tuple[Sphere | Box, ...] = (
    Box(lo=(-0.8, -0.8, -0.7), hi=(0.8, 0.8, -0.48), color=(0.92, 0.92, 0.88), color2=(0.25, 0.32, 0.5), cell=0.3),
    Sphere(center=(0.4, 0.35, -0.13), radius=0.35, color=(0.85, 0.15, 0.1)),
    Sphere(center=(-0.4, 0.38, -0.18), radius=0.3, color=(0.2, 0.7, 0.25)),
    Sphere(center=(0.35, -0.42, -0.23), radius=0.25, color=(0.15, 0.3, 0.85)),
    Box(lo=(-0.66, -0.66, -0.48), hi=(-0.08, -0.08, 0.1), color=(0.95, 0.6, 0.1), color2=(0.45, 0.2, 0.05), cell=0.14),
    Sphere(center=(-0.37, -0.37, 0.3), radius=0.2, color=(0.95, 0.85, 0.2)),
)


def _look_at(position: np.ndarray) -> np.ndarray:
    """Camera-to-world (4, 4) at ``position`` looking at the origin, image up towards world +z."""
    z = position / np.linalg.norm(position)  # OpenGL cameras look down -z
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, :4] = np.stack([x, np.cross(z, x), z, position], axis=1)
    return pose


def camera_poses(split: str) -> np.ndarray:
    """Camera-to-world matrices of a split: float32 (SPLIT_VIEWS[split], 4, 4), OpenGL axes.

    Raises:
        DataError: unknown split.
    """
    if split not in SPLITS:
        raise DataError(f"builtin: unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    n = SPLIT_VIEWS[split]
    k = np.arange(n)
    if split == "train":
        elevation = np.radians(10.0 + 60.0 * (k + 0.5) / n)
        azimuth = k * math.pi * (3.0 - math.sqrt(5.0))  # golden angle: even azimuth coverage
    else:
        elevation = np.full(n, np.radians(25.0 if split == "val" else 45.0))
        azimuth = 2.0 * math.pi * (k + (0.25 if split == "val" else 0.75)) / n
    positions = CAMERA_RADIUS * np.stack(
        [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)], axis=1)
    return np.stack([_look_at(p) for p in positions]).astype(np.float32)


def _hit_sphere(o: np.ndarray, d: np.ndarray, s: Sphere) -> np.ndarray:
    """Entry distance of rays (3, R) ``o + t d`` (inf on a miss); rays start outside the sphere."""
    oc = o - np.asarray(s.center)[:, None]
    a = (d * d).sum(axis=0)
    b = (oc * d).sum(axis=0)
    disc = b * b - a * ((oc * oc).sum(axis=0) - s.radius**2)
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / a
    return np.where((disc >= 0) & (t > _EPS), t, np.inf)


def _hit_box(o: np.ndarray, d: np.ndarray, b: Box) -> np.ndarray:
    """Entry distance of rays (3, R) by the slab method (inf on a miss); rays start outside."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / d
        t1 = (np.asarray(b.lo)[:, None] - o) * inv
        t2 = (np.asarray(b.hi)[:, None] - o) * inv
    lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
    # row-wise max/min: numpy reductions over a length-3 axis are several times slower
    t_enter = np.maximum(np.maximum(lo[0], lo[1]), lo[2])
    t_exit = np.minimum(np.minimum(hi[0], hi[1]), hi[2])
    return np.where((t_exit >= t_enter) & (t_enter > _EPS), t_enter, np.inf)


def _normal(shape: Sphere | Box, p: np.ndarray) -> np.ndarray:
    """Outward unit normals (3, R) at surface points p (3, R)."""
    if isinstance(shape, Sphere):
        return (p - np.asarray(shape.center)[:, None]) / shape.radius
    lo, hi = np.asarray(shape.lo)[:, None], np.asarray(shape.hi)[:, None]
    gap = np.concatenate([np.abs(p - lo), np.abs(p - hi)])  # (6, R): distance to each face plane
    face = gap.argmin(axis=0)
    n = np.zeros_like(p)
    n[face % 3, np.arange(p.shape[1])] = np.where(face < 3, -1.0, 1.0)
    return n


def _albedo(shape: Sphere | Box, p: np.ndarray, n: np.ndarray) -> np.ndarray:
    """RGB albedo (3, R) at surface points p with normals n."""
    if isinstance(shape, Sphere):
        return np.broadcast_to(np.asarray(shape.color)[:, None], p.shape)
    # sample the checker just inside the surface: on the face itself rounding would pick either side
    parity = np.floor((p - 1e-6 * n) / shape.cell).astype(np.int64).sum(axis=0) % 2
    return np.where(parity == 0, np.asarray(shape.color)[:, None], np.asarray(shape.color2)[:, None])


def shade_rays(o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast rays (3, R) ``o + t d`` (world units, float64): RGB (3, R) and hit (R,) bool.

    RGB is the closest hit's Lambertian shading, white (1, 1, 1) on a miss.
    """
    t_all = np.stack([(_hit_sphere if isinstance(s, Sphere) else _hit_box)(o, d, s) for s in SHAPES])
    winner = t_all.argmin(axis=0)
    t_best = t_all[winner, np.arange(d.shape[1])]
    rgb = np.ones_like(d)
    for k, shape in enumerate(SHAPES):
        sel = np.flatnonzero((winner == k) & np.isfinite(t_best))
        p = o[:, sel] + t_best[sel] * d[:, sel]
        n = _normal(shape, p)
        light = _AMBIENT + (1.0 - _AMBIENT) * np.clip(LIGHT_DIRECTION @ n, 0.0, None)
        rgb[:, sel] = _albedo(shape, p, n) * light
    return rgb, np.isfinite(t_best)


def render_rgba(poses, height: int, width: int, focal: float, *, supersample: int = 2, focal_y: float | None = None,
                cx: float | None = None, cy: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast the built-in scene from each pinhole camera: RGB on white and alpha.

    Args:
        poses: (N, 4, 4) camera-to-world matrices, OpenGL axes.
        height, width: image size in pixels.
        focal, focal_y, cx, cy: the pinhole (see ``nerf.cameras.camera_directions``), pixels.
        supersample: rays per pixel along each axis (>= 1), averaged (box filter).

    Returns:
        (float32 (N, height, width, 3) RGB in [0, 1] composited on white,
         float32 (N, height, width) alpha: the fraction of the pixel's rays that hit a shape).
    """
    poses = np.asarray(poses, dtype=np.float64)
    s = int(supersample)
    if s < 1:
        raise ValueError(f"supersample must be >= 1, not {supersample!r}")
    # sub-pixel grid laid out so that a (H*s, W*s) image box-filters to (H, W)
    j, i = np.mgrid[0 : height * s, 0 : width * s]
    cam = camera_directions((i.ravel() + 0.5) / s, (j.ravel() + 0.5) / s, height, width, focal, focal_y=focal_y,
                            cx=cx, cy=cy).astype(np.float64)
    out = np.empty((len(poses), height, width, 3), dtype=np.float32)
    alpha = np.empty((len(poses), height, width), dtype=np.float32)
    for k, pose in enumerate(poses):
        d = pose[:3, :3] @ cam.T
        o = np.broadcast_to(pose[:3, 3:4], d.shape)
        rgb, hit = shade_rays(o, d)
        out[k] = rgb.T.reshape(height, s, width, s, 3).mean(axis=(1, 3))
        alpha[k] = hit.reshape(height, s, width, s).mean(axis=(1, 3))
    return np.clip(out, 0.0, 1.0), alpha


def render(poses, height: int, width: int, focal: float, *, supersample: int = 2) -> np.ndarray:
    """RGB of :func:`render_rgba`: float32 (N, height, width, 3) in [0, 1] on a white background."""
    return render_rgba(poses, height, width, focal, supersample=supersample)[0]


def _focal(resolution: int) -> float:
    return 0.5 * resolution / math.tan(0.5 * CAMERA_ANGLE_X)


@lru_cache(maxsize=8)
def _images(split: str, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    images, alpha = render_rgba(camera_poses(split), resolution, resolution, _focal(resolution))
    images.setflags(write=False)  # shared by every caller through the cache
    alpha.setflags(write=False)
    return images, alpha


def builtin_scene(split: str = "train", *, resolution: int = DEFAULT_RESOLUTION) -> SceneData:
    """The built-in scene's ``split`` as :class:`~nerf.cameras.SceneData` (name "builtin").

    Deterministic (no randomness). Renders are cached per (split, resolution); every call returns
    fresh, writable copies of the arrays.

    Args:
        split: "train" (48 views), "val" (8) or "test" (8).
        resolution: image width and height in pixels, >= 1.

    Returns:
        SceneData with images float32 (N, resolution, resolution, 3) on white, alpha float32
        (N, resolution, resolution) (see the module docstring), focal for lego's field of view,
        near 2, far 6, bbox [-1.5, 1.5]^3.

    Raises:
        DataError: unknown split or a resolution below 1.
    """
    if split not in SPLITS:
        raise DataError(f"builtin: unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    resolution = check_count(resolution, "resolution", where="builtin")
    images, alpha = _images(split, resolution)
    return SceneData(
        images=images.copy(),
        alpha=alpha.copy(),
        poses=camera_poses(split),
        focal=_focal(resolution),
        height=resolution,
        width=resolution,
        near=BLENDER_NEAR,
        far=BLENDER_FAR,
        bbox=BLENDER_BBOX.copy(),
        name="builtin",
        split=split,
    )
