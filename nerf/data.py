"""Radiance-field scenes: Blender (NeRF-synthetic) and LLFF loaders, camera rays, ray batches.

Conventions shared by every scene this module returns (and by ``nerf.scene``):

* Poses are camera-to-world 4x4 float32 matrices in OpenGL camera axes: x right, y up, and the
  camera looks down -z. The world unit is the scene's own (Blender: the .blend unit; LLFF: rescaled,
  see :func:`load_llff`).
* Images are float32 (N, H, W, 3) in [0, 1], the stored 8-bit values / 255 (sRGB, no gamma
  handling), already composited onto the background.
* Pinhole camera with the principal point at the image centre (W/2, H/2). Pixel (row j, column i)
  is sampled at its centre, continuous pixel coordinates (i + 0.5, j + 0.5).
* Ray directions are *not* normalised: their camera-space z is -1, so the ray parameter t is the
  depth along the optical axis, and ``near``/``far`` are depths in world units.
* Pixels are flattened row-major: index ``j * W + i``, the order of ``images[n].reshape(-1, 3)``.

Every loader error is a :class:`DataError` (a ``ValueError``) whose message starts with the file or
folder concerned and names the offending field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

__all__ = [
    "DataError",
    "SceneData",
    "SPLITS",
    "BLENDER_NEAR",
    "BLENDER_FAR",
    "BLENDER_BBOX",
    "LLFF_BD_FACTOR",
    "load_blender",
    "load_llff",
    "load_scene",
    "camera_directions",
    "get_rays",
    "RayBatcher",
]

#: Splits every loader accepts.
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Depth range of the NeRF-synthetic scenes (cameras at radius ~4, object inside the bbox).
BLENDER_NEAR: float = 2.0
BLENDER_FAR: float = 6.0
#: The NeRF-synthetic scene bound, [-1.5, 1.5]^3, as (min corner, max corner); shape (2, 3).
BLENDER_BBOX: np.ndarray = np.array([[-1.5, -1.5, -1.5], [1.5, 1.5, 1.5]], dtype=np.float32)
BLENDER_BBOX.setflags(write=False)

#: NeRF's LLFF ``bd_factor``: after rescaling, the closest near bound sits at 1 / 0.75 world units.
LLFF_BD_FACTOR: float = 0.75

_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class DataError(ValueError):
    """A scene folder or file is missing or malformed; the message names the path and the field."""


@dataclass(frozen=True, eq=False)
class SceneData:
    """One split of a scene, ready for training or evaluation.

    Attributes:
        images: float32 (N, H, W, 3) RGB in [0, 1], composited onto the background.
        poses: float32 (N, 4, 4) camera-to-world matrices, OpenGL camera axes (see module docstring).
        focal: focal length in pixels (same for x and y) at this resolution.
        height, width: image size in pixels (H, W).
        near, far: depth range along the optical axis, world units.
        bbox: float32 (2, 3): min and max corner of an axis-aligned box holding the scene content.
        name: scene name (the folder name, or "builtin").
        split: "train", "val" or "test".
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

    def __post_init__(self):
        n = len(self.images)
        if self.images.shape != (n, self.height, self.width, 3) or self.images.dtype != np.float32:
            raise ValueError(f"SceneData.images must be float32 ({n}, {self.height}, {self.width}, 3), "
                             f"not {self.images.dtype} {self.images.shape}")
        if self.poses.shape != (n, 4, 4) or self.poses.dtype != np.float32:
            raise ValueError(f"SceneData.poses must be float32 ({n}, 4, 4), not {self.poses.dtype} {self.poses.shape}")
        if self.bbox.shape != (2, 3):
            raise ValueError(f"SceneData.bbox must have shape (2, 3), not {self.bbox.shape}")

    @property
    def num_images(self) -> int:
        return len(self.images)


# --------------------------------------------------------------------------------------------
# argument checks and small readers


def _check_split(split: str, where: object) -> str:
    if split not in SPLITS:
        raise DataError(f"{where}: unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    return split


def _check_downscale(downscale: int) -> int:
    if isinstance(downscale, bool) or not isinstance(downscale, (int, np.integer)) or downscale < 1:
        raise DataError(f"downscale must be an integer >= 1, not {downscale!r}")
    return int(downscale)


def _check_folder(root) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    return root


def _read_image(path: Path, mode: str) -> np.ndarray:
    """float32 (H, W, C) in [0, 1] from an 8-bit image converted to ``mode`` ("RGB" or "RGBA")."""
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode), dtype=np.float32) / 255.0
    except OSError as e:  # PIL's UnidentifiedImageError is an OSError
        raise DataError(f"{path}: cannot read image ({e})") from e


def _box_downscale(image: np.ndarray, factor: int, where: object) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks; a remainder of rows/columns (bottom, right) is dropped.

    Dropping the remainder keeps every output pixel a full box, so the pixel pitch is exactly
    ``factor`` source pixels and the focal length simply divides by ``factor``.
    """
    if factor == 1:
        return image
    h, w, c = image.shape
    ho, wo = h // factor, w // factor
    if ho == 0 or wo == 0:
        raise DataError(f"{where}: downscale {factor} is larger than the image ({w}x{h})")
    blocks = image[: ho * factor, : wo * factor].reshape(ho, factor, wo, factor, c)
    return blocks.mean(axis=(1, 3), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# Blender / NeRF-synthetic


def _frame_image_path(root: Path, file_path: str) -> tuple[Path, list[Path]]:
    """The frame's image file; NeRF-synthetic paths usually omit ".png" (``./train/r_0``)."""
    given = root / file_path
    candidates = ([given] if given.suffix else []) + [given.with_name(given.name + ".png")]
    for c in candidates:
        if c.is_file():
            return c, candidates
    return candidates[-1], candidates


def load_blender(root, split: str, *, downscale: int = 1,
                 background: Sequence[float] = (1.0, 1.0, 1.0)) -> SceneData:
    """Load one split of a NeRF-synthetic (Blender) scene.

    Reads ``root/transforms_{split}.json`` (``camera_angle_x`` in radians; ``frames[].file_path``
    relative to ``root``, with or without ".png"; ``frames[].transform_matrix`` camera-to-world 4x4,
    OpenGL axes) and the RGBA PNGs it names.

    Order of operations: each PNG (straight, non-premultiplied alpha) is composited at full
    resolution, ``rgb * alpha + background * (1 - alpha)``, in float32, and the result is then
    box-filtered by ``downscale`` (mean of each ``downscale`` x ``downscale`` block). Compositing is
    linear in premultiplied colour and alpha, so this equals box-filtering premultiplied RGBA first
    and compositing afterwards; no colour fringes appear at silhouettes. Rows/columns beyond a
    multiple of ``downscale`` are dropped.

    Args:
        root: the scene folder.
        split: "train", "val" or "test".
        downscale: integer factor >= 1; the returned images are (H // downscale, W // downscale).
        background: RGB in [0, 1] that transparent pixels become.

    Returns:
        :class:`SceneData` with ``focal = 0.5 * W / tan(0.5 * camera_angle_x)`` for the downscaled
        width W, near/far = 2/6, bbox = [-1.5, 1.5]^3 and name = the folder name.

    Raises:
        DataError: missing folder, transforms file or image; a transforms file that is not JSON or
            lacks ``camera_angle_x`` / ``frames``; a frame without ``file_path`` or a 4x4
            ``transform_matrix``; images of different sizes; an unknown split or bad argument.
    """
    root = _check_folder(root)
    _check_split(split, root)
    factor = _check_downscale(downscale)
    bg = np.asarray(background, dtype=np.float32)
    if bg.shape != (3,) or not np.all((bg >= 0) & (bg <= 1)):
        raise DataError(f"background must be 3 values in [0, 1], not {background!r}")

    path = root / f"transforms_{split}.json"
    if not path.is_file():
        raise DataError(f"{path}: no such file (needed for split {split!r})")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read JSON ({e})") from e
    if not isinstance(meta, dict):
        raise DataError(f"{path}: top level must be an object with 'camera_angle_x' and 'frames'")
    angle = meta.get("camera_angle_x")
    if isinstance(angle, bool) or not isinstance(angle, (int, float)) or not 0 < angle < math.pi:
        what = "no 'camera_angle_x'" if angle is None else f"'camera_angle_x' must be in (0, pi) radians, not {angle!r}"
        raise DataError(f"{path}: {what}")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        what = "no 'frames'" if frames is None else "'frames' must be a non-empty list"
        raise DataError(f"{path}: {what}")

    images, poses = [], []
    for k, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise DataError(f"{path}: frame {k} must be an object")
        if not isinstance(frame.get("file_path"), str):
            raise DataError(f"{path}: frame {k} has no 'file_path'")
        if "transform_matrix" not in frame:
            raise DataError(f"{path}: frame {k} has no 'transform_matrix'")
        try:
            pose = np.asarray(frame["transform_matrix"], dtype=np.float64)
        except (TypeError, ValueError):
            pose = None
        if pose is None or pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
            raise DataError(f"{path}: frame {k} 'transform_matrix' must be a 4x4 matrix of numbers")
        image_path, tried = _frame_image_path(root, frame["file_path"])
        if not image_path.is_file():
            raise DataError(f"{path}: frame {k} 'file_path' {frame['file_path']!r}: no such image file "
                            f"({' or '.join(str(t) for t in tried)})")
        rgba = _read_image(image_path, "RGBA")
        if images and rgba.shape[:2] != first_size:
            raise DataError(f"{image_path}: frame {k} image is {rgba.shape[1]}x{rgba.shape[0]}, "
                            f"frame 0's is {first_size[1]}x{first_size[0]}")
        first_size = rgba.shape[:2]
        alpha = rgba[..., 3:]
        rgb = rgba[..., :3] * alpha + bg * (1.0 - alpha)
        images.append(_box_downscale(rgb, factor, image_path))
        poses.append(pose)

    stack = np.clip(np.stack(images), 0.0, 1.0)
    height, width = stack.shape[1:3]
    return SceneData(
        images=stack,
        poses=np.stack(poses).astype(np.float32),
        focal=float(0.5 * width / math.tan(0.5 * angle)),
        height=int(height),
        width=int(width),
        near=BLENDER_NEAR,
        far=BLENDER_FAR,
        bbox=BLENDER_BBOX.copy(),
        name=root.name,
        split=split,
    )


# --------------------------------------------------------------------------------------------
# LLFF


def _normalize(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _average_pose(c2w: np.ndarray) -> np.ndarray:
    """NeRF's ``poses_avg``: mean centre, summed viewing axis and up vector, re-orthonormalised."""
    centre = c2w[:, :3, 3].mean(axis=0)
    z = _normalize(c2w[:, :3, 2].sum(axis=0))
    x = _normalize(np.cross(c2w[:, :3, 1].sum(axis=0), z))
    y = np.cross(z, x)
    avg = np.eye(4)
    avg[:3, :4] = np.stack([x, y, z, centre], axis=1)
    return avg


def _frustum_bbox(c2w: np.ndarray, height: int, width: int, focal: float, near: float, far: float) -> np.ndarray:
    """AABB (2, 3) of every view's frustum between the near and far depth (its 8 corners)."""
    px = np.array([0.0, width, 0.0, width])
    py = np.array([0.0, 0.0, height, height])
    dirs = camera_directions(px, py, height, width, focal).astype(np.float64)  # (4, 3), z = -1
    corners = np.concatenate([dirs * near, dirs * far])  # (8, 3) camera space
    world = np.einsum("nij,kj->nki", c2w[:, :3, :3], corners) + c2w[:, None, :3, 3]
    pts = world.reshape(-1, 3)
    return np.stack([pts.min(axis=0), pts.max(axis=0)])


def load_llff(root, split: str, *, downscale: int = 1, holdout: int = 8, factor: int = 8) -> SceneData:
    """Load one split of an LLFF forward-facing capture (``poses_bounds.npy`` + image folder).

    ``poses_bounds.npy`` holds one row of 17 numbers per image (sorted by file name): a 3x5 matrix
    ``[R | t | (H, W, f)]`` flattened row-major (camera-to-world, columns = LLFF's [down, right,
    back] axes; H, W, f of the full-size capture), then the near and far scene depth of that view.

    Processing, as in the original NeRF ``load_llff_data`` (without NDC or spherify):

    1. Axes: ``[down, right, back] -> [right, up, back]``, i.e. new columns ``[c1, -c0, c2]``
       (NeRF's ``concatenate([p[:, 1:2], -p[:, 0:1], p[:, 2:]])``).
    2. Scale: translations and bounds times ``1 / (min_near * 0.75)`` (NeRF's ``bd_factor``), so the
       closest near bound becomes 1.33 world units whatever the capture's scale.
    3. Recentre: left-multiply every pose by the inverse of the average pose, so the mean camera
       sits at the origin looking down -z with +y up.

    All three use every view, so the splits share one world frame. ``near = 0.9 * min(near bounds)``
    and ``far = max(far bounds)`` over all views (a margin in front; the far bound is already the
    deepest point seen). ``bbox`` is the axis-aligned box of all views' frusta cut at ``near`` and
    ``far``: conservative, it holds every point any view sees within that depth range.

    Images: from ``images_{factor}/`` if it exists, else ``images/``; then box-filtered by
    ``downscale`` (see :func:`load_blender`). ``focal = f * (H_loaded / H) / downscale`` with H, f
    from the first row, so it is right whichever folder was read.

    Args:
        root: the scene folder.
        split: "test" = views 0, holdout, 2 * holdout, ...; "train" = the others; "val" = "test".
        downscale: integer factor >= 1 applied to the images that were read.
        holdout: test-view spacing, >= 2 (NeRF's ``llffhold``).
        factor: which pre-shrunk folder ``images_{factor}`` to prefer.

    Returns:
        :class:`SceneData` with name = the folder name.

    Raises:
        DataError: missing folder, ``poses_bounds.npy``, or image folder; an array that is not
            (N, 17) finite numbers with positive bounds; an image count different from N; images of
            different sizes; an unknown split or bad argument.
    """
    root = _check_folder(root)
    _check_split(split, root)
    scale_down = _check_downscale(downscale)
    if isinstance(holdout, bool) or not isinstance(holdout, (int, np.integer)) or holdout < 2:
        raise DataError(f"holdout must be an integer >= 2, not {holdout!r}")

    path = root / "poses_bounds.npy"
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read array ({e})") from e
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] != 17 or not np.issubdtype(arr.dtype, np.number):
        raise DataError(f"{path}: expected an (N, 17) numeric array, got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise DataError(f"{path}: contains non-finite values")
    bounds = arr[:, 15:17].copy()
    if not np.all(bounds > 0):
        raise DataError(f"{path}: near/far bounds (columns 15, 16) must be positive")
    mats = arr[:, :15].reshape(-1, 3, 5)
    full_h, _, full_f = mats[0, :, 4]
    if full_h <= 0 or full_f <= 0:
        raise DataError(f"{path}: row 0 hwf must have positive H and f, not {mats[0, :, 4].tolist()}")

    folder = root / f"images_{factor}"
    if not folder.is_dir():
        folder = root / "images"
    if not folder.is_dir():
        raise DataError(f"{root}: no 'images_{factor}' or 'images' folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file())
    if len(files) != len(arr):
        raise DataError(f"{folder}: {len(files)} images, but {path} has {len(arr)} poses")

    c2w = np.tile(np.eye(4), (len(arr), 1, 1))
    c2w[:, :3, :4] = np.concatenate([mats[:, :, 1:2], -mats[:, :, 0:1], mats[:, :, 2:4]], axis=2)
    scale = 1.0 / (bounds.min() * LLFF_BD_FACTOR)
    c2w[:, :3, 3] *= scale
    bounds *= scale
    c2w = np.linalg.inv(_average_pose(c2w)) @ c2w
    near = float(0.9 * bounds[:, 0].min())
    far = float(bounds[:, 1].max())

    test = np.arange(0, len(arr), holdout)
    index = test if split in ("test", "val") else np.setdiff1d(np.arange(len(arr)), test)
    if len(index) == 0:
        raise DataError(f"{path}: split {split!r} is empty ({len(arr)} views, holdout {holdout})")

    images = []
    for k in index:
        rgb = _read_image(files[k], "RGB")
        if images and rgb.shape[:2] != src_size:
            raise DataError(f"{files[k]}: image is {rgb.shape[1]}x{rgb.shape[0]}, "
                            f"{files[index[0]].name} is {src_size[1]}x{src_size[0]}")
        src_size = rgb.shape[:2]
        images.append(_box_downscale(rgb, scale_down, files[k]))
    stack = np.stack(images)
    height, width = stack.shape[1:3]
    focal = float(full_f * src_size[0] / full_h / scale_down)
    return SceneData(
        images=stack,
        poses=c2w[index].astype(np.float32),
        focal=focal,
        height=int(height),
        width=int(width),
        near=near,
        far=far,
        bbox=_frustum_bbox(c2w, height, width, focal, near, far).astype(np.float32),
        name=root.name,
        split=split,
    )


# --------------------------------------------------------------------------------------------
# dispatch


def load_scene(spec, split: str, *, downscale: int = 1) -> SceneData:
    """Load a scene by spec: "builtin", a Blender folder or an LLFF folder.

    * ``"builtin"``: :func:`nerf.scene.builtin_scene`, rendered directly at
      ``DEFAULT_RESOLUTION // downscale`` pixels square (the string wins over a folder of that name).
    * a folder with ``transforms_*.json``: :func:`load_blender`.
    * a folder with ``poses_bounds.npy``: :func:`load_llff`.

    Raises:
        DataError: anything else (naming the path), or whatever the chosen loader raises.
    """
    if isinstance(spec, str) and spec == "builtin":
        from nerf import scene  # late: nerf.scene imports this module

        factor = _check_downscale(downscale)
        if scene.DEFAULT_RESOLUTION // factor < 1:
            raise DataError(f"builtin: downscale {factor} leaves no pixels")
        return scene.builtin_scene(split, resolution=scene.DEFAULT_RESOLUTION // factor)
    path = Path(spec)
    if not path.is_dir():
        raise DataError(f"{path}: no such folder (a scene is 'builtin', a Blender folder with "
                        f"transforms_*.json or an LLFF folder with poses_bounds.npy)")
    if any(path.glob("transforms_*.json")):
        return load_blender(path, split, downscale=downscale)
    if (path / "poses_bounds.npy").is_file():
        return load_llff(path, split, downscale=downscale)
    raise DataError(f"{path}: not a scene folder (no transforms_*.json for Blender, "
                    f"no poses_bounds.npy for LLFF)")


# --------------------------------------------------------------------------------------------
# rays


def camera_directions(x, y, height: int, width: int, focal: float) -> np.ndarray:
    """Camera-space ray directions through continuous pixel coordinates.

    Args:
        x, y: arrays (same shape S) of pixel coordinates; column i's centre is x = i + 0.5, row j's
            centre is y = j + 0.5, y grows downwards in the image.
        height, width: image size in pixels (the principal point is (width / 2, height / 2)).
        focal: focal length in pixels.

    Returns:
        float32 (*S, 3): ``((x - W/2) / f, -(y - H/2) / f, -1)``, OpenGL axes, not normalised.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    d = np.stack([(x - 0.5 * width) / focal, -(y - 0.5 * height) / focal, -np.ones_like(x)], axis=-1)
    return d.astype(np.float32)


def get_rays(height: int, width: int, focal: float, pose) -> tuple[np.ndarray, np.ndarray]:
    """World-space rays through every pixel centre of one camera.

    Args:
        height, width: image size in pixels.
        focal: focal length in pixels.
        pose: (4, 4) or (3, 4) camera-to-world matrix, OpenGL axes.

    Returns:
        ``(origins, directions)``, each float32 (H * W, 3), pixels row-major. Directions are not
        normalised: camera-space z = -1, so ``origins + t * directions`` is at depth t.
    """
    pose = np.asarray(pose, dtype=np.float64)
    if pose.shape not in ((4, 4), (3, 4)):
        raise ValueError(f"pose must be (4, 4) or (3, 4), not {pose.shape}")
    j, i = np.mgrid[0:height, 0:width]
    cam = camera_directions(i.ravel() + 0.5, j.ravel() + 0.5, height, width, focal).astype(np.float64)
    dirs = cam @ pose[:3, :3].T
    origins = np.broadcast_to(pose[:3, 3], dirs.shape)
    return origins.astype(np.float32), dirs.astype(np.float32)


class RayBatcher:
    """Random training rays drawn uniformly, with replacement, from all pixels of all images.

    Rays are built per batch (not precomputed), so memory stays at the images' own. The draw uses a
    ``numpy.random.Generator`` seeded with ``seed``: two batchers with the same data, batch size and
    seed yield the same sequence. Iterating never ends; call :meth:`next_batch` or ``next()``.

    Each batch is ``(origins, directions, rgb)``, float32 arrays of shape (batch_size, 3), with the
    conventions of :func:`get_rays` (directions not normalised).
    """

    def __init__(self, data: SceneData, batch_size: int, *, seed: int = 0):
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, not {batch_size!r}")
        self.data = data
        self.batch_size = int(batch_size)
        self.rng = np.random.default_rng(seed)
        self._pixels = data.images.reshape(-1, 3)

    def next_batch(self, size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One batch of ``size`` rays (default: ``batch_size``)."""
        d = self.data
        flat = self.rng.integers(0, len(self._pixels), size=self.batch_size if size is None else int(size))
        n, rest = np.divmod(flat, d.height * d.width)
        j, i = np.divmod(rest, d.width)
        cam = camera_directions(i + 0.5, j + 0.5, d.height, d.width, d.focal)
        rot = d.poses[n, :3, :3]
        dirs = np.einsum("bij,bj->bi", rot, cam)
        origins = d.poses[n, :3, 3]
        return np.ascontiguousarray(origins), dirs.astype(np.float32), self._pixels[flat]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.next_batch()
