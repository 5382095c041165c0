"""Camera and scene data types shared by every loader, the built-in scene and the training loop.

Conventions of every :class:`SceneData` (whichever loader made it):

* Poses are camera-to-world 4x4 float32 matrices in OpenGL camera axes: x right, y up, and the
  camera looks down -z. The world unit is the scene's own (Blender: the .blend unit; LLFF: rescaled,
  see ``nerf.loaders.llff``; transforms.json: the file's own unit, see ``nerf.loaders.ngp``).
* Images are float32 (N, H, W, 3) in [0, 1], the stored 8-bit values / 255 (sRGB, no gamma
  handling), already composited onto white. Scenes with transparency also carry ``alpha``
  (N, H, W), so that training can composite onto another background:
  ``rgb_on_b = images + (b - 1) * (1 - alpha)`` (compositing is linear, so this also holds after
  the loaders' box downscaling).
* Pinhole camera with focal lengths ``focal`` (x) and ``focal_y`` (y) and principal point
  (``cx``, ``cy``), all in pixels (default: ``focal_y = focal``, principal point at the image centre
  (W/2, H/2)). Continuous pixel coordinates: column i spans x in [i, i + 1), so pixel (row j,
  column i) is sampled at its centre (i + 0.5, j + 0.5). Lens distortion is removed by the loaders.
* Ray directions are *not* normalised: their camera-space z is -1, so the ray parameter t is the
  depth along the optical axis, and ``near``/``far`` are depths in world units.
* Pixels are flattened row-major: index ``j * W + i``, the order of ``images[n].reshape(-1, 3)``.

Every loader error is a :class:`DataError` (a ``ValueError``) whose message starts with the file or
folder concerned and names the offending field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated

import numpy as np
from pydantic import Field, TypeAdapter, ValidationError

__all__ = [
    "DataError",
    "SceneData",
    "SPLITS",
    "BLENDER_NEAR",
    "BLENDER_FAR",
    "BLENDER_BBOX",
    "OpenCVDistortion",
    "camera_directions",
    "get_rays",
    "check_pose",
    "check_count",
]

#: Splits every loader accepts.
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Depth range of the NeRF-synthetic scenes (cameras at radius ~4, object inside the bbox).
BLENDER_NEAR: float = 2.0
BLENDER_FAR: float = 6.0
#: The NeRF-synthetic scene bound, [-1.5, 1.5]^3, as (min corner, max corner); shape (2, 3).
BLENDER_BBOX: np.ndarray = np.array([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]], dtype=np.float32)
BLENDER_BBOX.setflags(write=False)


class DataError(ValueError):
    """A scene folder or file is missing or malformed; the message names the path and the field."""


@dataclass(frozen=True, eq=False)
class SceneData:
    """One split of a scene, ready for training or evaluation.

    Attributes:
        images: float32 (N, H, W, 3) RGB in [0, 1], composited onto white.
        poses: float32 (N, 4, 4) camera-to-world matrices, OpenGL camera axes (see module docstring).
        focal: focal length along x in pixels at this resolution.
        height, width: image size in pixels (H, W).
        near, far: depth range along the optical axis, world units.
        bbox: float32 (2, 3): min and max corner of an axis-aligned box holding the scene content
            (the box the hash grid covers).
        name: scene name (the folder name, or "builtin").
        split: "train", "val" or "test".
        alpha: float32 (N, H, W) coverage in [0, 1], or None for an opaque capture (every pixel 1).
        focal_y: focal length along y in pixels (None: ``focal``).
        cx, cy: principal point in continuous pixel coordinates (None: W / 2, H / 2).
    """

    images: np.ndarray = field(repr=False)
    poses: np.ndarray = field(repr=False)
    focal: float
    height: int
    width: int
    near: float
    far: float
    bbox: np.ndarray = field(repr=False)
    name: str
    split: str
    alpha: np.ndarray | None = field(default=None, repr=False)
    focal_y: float | None = None
    cx: float | None = None
    cy: float | None = None

    def __post_init__(self):
        n = len(self.images)
        if self.images.shape != (n, self.height, self.width, 3) or self.images.dtype != np.float32:
            raise ValueError(f"SceneData.images must be float32 ({n}, {self.height}, {self.width}, 3), "
                             f"not {self.images.dtype} {self.images.shape}")
        if self.poses.shape != (n, 4, 4) or self.poses.dtype != np.float32:
            raise ValueError(f"SceneData.poses must be float32 ({n}, 4, 4), not {self.poses.dtype} {self.poses.shape}")
        if self.bbox.shape != (2, 3):
            raise ValueError(f"SceneData.bbox must have shape (2, 3), not {self.bbox.shape}")
        if self.alpha is not None and (self.alpha.shape != (n, self.height, self.width)
                                       or self.alpha.dtype != np.float32):
            raise ValueError(f"SceneData.alpha must be float32 ({n}, {self.height}, {self.width}), "
                             f"not {self.alpha.dtype} {self.alpha.shape}")
        # the defaults are written out so that every consumer reads plain numbers
        object.__setattr__(self, "focal", float(self.focal))
        object.__setattr__(self, "focal_y", float(self.focal if self.focal_y is None else self.focal_y))
        object.__setattr__(self, "cx", float(0.5 * self.width if self.cx is None else self.cx))
        object.__setattr__(self, "cy", float(0.5 * self.height if self.cy is None else self.cy))

    @property
    def num_images(self) -> int:
        return len(self.images)

    @property
    def intrinsics(self) -> dict[str, float]:
        """The pinhole keywords of :func:`camera_directions` / :func:`get_rays`: focal_y, cx, cy."""
        return {"focal_y": self.focal_y, "cx": self.cx, "cy": self.cy}


def camera_directions(x, y, height: int, width: int, focal: float, *, focal_y: float | None = None,
                      cx: float | None = None, cy: float | None = None) -> np.ndarray:
    """Camera-space ray directions through continuous pixel coordinates (pinhole, no distortion).

    Args:
        x, y: arrays (same shape S) of pixel coordinates; column i's centre is x = i + 0.5, row j's
            centre is y = j + 0.5, y grows downwards in the image.
        height, width: image size in pixels.
        focal: focal length along x in pixels; ``focal_y`` along y (default ``focal``).
        cx, cy: principal point in pixels (default the image centre, width / 2 and height / 2).

    Returns:
        float32 (*S, 3): ``((x - cx) / fx, -(y - cy) / fy, -1)``, OpenGL axes, not normalised.
    """
    fy = focal if focal_y is None else focal_y
    cx = 0.5 * width if cx is None else cx
    cy = 0.5 * height if cy is None else cy
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    d = np.stack([(x - cx) / focal, -(y - cy) / fy, -np.ones_like(x)], axis=-1)
    return d.astype(np.float32)


def get_rays(height: int, width: int, focal: float, pose, *, focal_y: float | None = None,
             cx: float | None = None, cy: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """World-space rays through every pixel centre of one camera.

    Args:
        height, width: image size in pixels.
        focal, focal_y, cx, cy: the pinhole, as in :func:`camera_directions` (``SceneData.intrinsics``
            gives the last three of a scene).
        pose: (4, 4) or (3, 4) camera-to-world matrix, OpenGL axes.

    Returns:
        ``(origins, directions)``, each float32 (H * W, 3), pixels row-major. Directions are not
        normalised: camera-space z = -1, so ``origins + t * directions`` is at depth t.
    """
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape not in ((4, 4), (3, 4)):
        raise ValueError(f"pose must be (4, 4) or (3, 4), not {pose.shape}")
    j, i = np.mgrid[0:height, 0:width]
    cam = camera_directions(i.ravel() + 0.5, j.ravel() + 0.5, height, width, focal, focal_y=focal_y,
                            cx=cx, cy=cy).astype(np.float64)
    dirs = cam @ pose[:3, :3].T
    origins = np.broadcast_to(pose[:3, 3], dirs.shape)
    return origins.astype(np.float32), dirs.astype(np.float32)


@lru_cache(maxsize=None)
def _count_adapter(ge: int) -> TypeAdapter:
    return TypeAdapter(Annotated[int, Field(strict=True, ge=ge)])


def check_count(value, name: str, *, ge: int = 1, where: str | None = None, error: type[Exception] = DataError) -> int:
    """``value`` as an int >= ``ge`` (pydantic, strict: no bool, float or string; numpy integers pass).

    Raises:
        error: ``[<where>: ]<name> must be an integer >= <ge>, not <value>``.
    """
    try:
        return int(_count_adapter(ge).validate_python(int(value) if isinstance(value, np.integer) else value))
    except ValidationError:
        raise error(f"{where + ': ' if where else ''}{name} must be an integer >= {ge}, not {value!r}") from None


#: Largest deviation of a pose's rotation block from orthonormal (max |R^T R - I|) that is accepted.
POSE_TOLERANCE: float = 1e-2


def check_pose(pose, where: str) -> np.ndarray:
    """A camera-to-world matrix as float64 (4, 4), or a DataError naming ``where``.

    Accepted: 4x4 (or 3x4, completed with the row 0 0 0 1) finite numbers whose rotation block is
    orthonormal within :data:`POSE_TOLERANCE` and whose last row is 0 0 0 1. Refused: anything
    else, in particular a zero matrix, a singular or scaled rotation and NaN/inf entries (rays
    from such a camera would be degenerate or skewed).

    Raises:
        DataError: ``"<where> must be a 4x4 matrix of numbers"`` or ``"<where> is degenerate: ..."``.
    """
    try:
        m = np.asarray(pose, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        m = None
    if m is None or m.shape not in ((4, 4), (3, 4)):
        raise DataError(f"{where} must be a 4x4 matrix of numbers")
    if m.shape == (3, 4):
        m = np.concatenate([m, [[0.0, 0.0, 0.0, 1.0]]])
    if not np.all(np.isfinite(m)):
        raise DataError(f"{where} is degenerate: it contains NaN or infinite entries")
    if np.max(np.abs(m[3] - [0.0, 0.0, 0.0, 1.0])) > POSE_TOLERANCE:
        raise DataError(f"{where} is degenerate: the last row is {m[3].tolist()}, not [0, 0, 0, 1]")
    rot = m[:3, :3]
    err = float(np.max(np.abs(rot.T @ rot - np.eye(3))))
    if err > POSE_TOLERANCE:
        sv = np.linalg.svd(rot, compute_uv=False)
        raise DataError(f"{where} is degenerate: the rotation block is not orthonormal (singular values "
                        f"{np.round(sv, 4).tolist()}, a camera-to-world rotation has 1, 1, 1)")
    return m


@dataclass(frozen=True)
class OpenCVDistortion:
    """OpenCV's radial-tangential lens distortion (``k1 k2 p1 p2``), on normalised image coordinates.

    The model (OpenCV, "Camera Calibration and 3D Reconstruction", ``cv::projectPoints``; the
    COLMAP / nerfstudio / Instant-NGP ``OPENCV`` camera) maps an undistorted normalised point
    (x, y) = ((u - cx) / fx, (v - cy) / fy) of a pinhole camera to the distorted one::

        r2 = x^2 + y^2,  radial = 1 + k1 r2 + k2 r2^2
        x_d = x radial + 2 p1 x y + p2 (r2 + 2 x^2)
        y_d = y radial + p1 (r2 + 2 y^2) + 2 p2 x y

    and the pixel seen is (fx x_d + cx, fy y_d + cy). Image y grows downwards here, as in OpenCV.
    """

    k1: float = 0.0
    k2: float = 0.0
    p1: float = 0.0
    p2: float = 0.0

    @property
    def is_identity(self) -> bool:
        return self.k1 == 0 and self.k2 == 0 and self.p1 == 0 and self.p2 == 0

    def apply(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Distort normalised coordinates (float64 arrays of one shape): the forward model above."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        r2 = x * x + y * y
        radial = 1.0 + r2 * (self.k1 + self.k2 * r2)
        xd = x * radial + 2.0 * self.p1 * x * y + self.p2 * (r2 + 2.0 * x * x)
        yd = y * radial + self.p1 * (r2 + 2.0 * y * y) + 2.0 * self.p2 * x * y
        return xd, yd

    def invert(self, xd, yd, *, iterations: int = 50) -> tuple[np.ndarray, np.ndarray]:
        """Undistort normalised coordinates: the (x, y) with ``apply(x, y) == (xd, yd)``.

        Fixed-point iteration as in OpenCV's ``cvUndistortPointsInternal``:
        ``x <- (xd - tangential_x(x, y)) / radial(x, y)`` (same for y), from x = xd. It converges for
        the moderate distortions of real lenses (|k1| r2 well below 1); the result is checked and a
        ValueError is raised where the residual stays above 1e-9.
        """
        xd = np.asarray(xd, dtype=np.float64)
        yd = np.asarray(yd, dtype=np.float64)
        x, y = xd.copy(), yd.copy()
        for _ in range(iterations):
            r2 = x * x + y * y
            radial = 1.0 + r2 * (self.k1 + self.k2 * r2)
            dx = 2.0 * self.p1 * x * y + self.p2 * (r2 + 2.0 * x * x)
            dy = self.p1 * (r2 + 2.0 * y * y) + 2.0 * self.p2 * x * y
            x, y = (xd - dx) / radial, (yd - dy) / radial
        ex, ey = self.apply(x, y)
        residual = float(np.max(np.hypot(ex - xd, ey - yd), initial=0.0))
        if not residual <= 1e-9:
            raise ValueError(f"distortion inverse did not converge (residual {residual:.3g}) for {self}")
        return x, y
