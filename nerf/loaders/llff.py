"""LLFF forward-facing captures: ``poses_bounds.npy`` + an image folder (NeRF's ``load_llff_data``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nerf.cameras import DataError, SceneData, camera_directions, check_count, check_pose
from nerf.loaders.base import (IMAGE_SUFFIXES, SceneLoader, box_downscale, check_downscale, check_folder, check_split,
                               read_image)

__all__ = ["LLFFLoader", "load_llff", "LLFF_BD_FACTOR"]

#: NeRF's LLFF ``bd_factor``: after rescaling, the closest near bound sits at 1 / 0.75 world units.
LLFF_BD_FACTOR: float = 0.75


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
            (N, 17) finite numbers with positive bounds; a degenerate pose (row named); an image count different from N; images of
            different sizes; an unknown split or bad argument.
    """
    root = check_folder(root)
    check_split(split, root)
    scale_down = check_downscale(downscale)
    check_count(holdout, "holdout", ge=2)

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
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if len(files) != len(arr):
        raise DataError(f"{folder}: {len(files)} images, but {path} has {len(arr)} poses")

    c2w = np.tile(np.eye(4), (len(arr), 1, 1))
    c2w[:, :3, :4] = np.concatenate([mats[:, :, 1:2], -mats[:, :, 0:1], mats[:, :, 2:4]], axis=2)
    for k in range(len(arr)):  # a zero or singular rotation would give degenerate rays
        check_pose(c2w[k], f"{path}: row {k} (image {files[k].name}) pose")
    scale = 1.0 / (bounds.min() * LLFF_BD_FACTOR)
    c2w[:, :3, 3] *= scale
    bounds *= scale
    with np.errstate(all="ignore"):
        avg = _average_pose(c2w)
        try:
            c2w = np.linalg.inv(avg) @ c2w
        except np.linalg.LinAlgError:
            c2w = np.full_like(c2w, np.nan)
    if not np.all(np.isfinite(c2w)):  # e.g. viewing axes that cancel out: no average orientation
        raise DataError(f"{path}: the poses have no well-defined average camera (viewing axes or up "
                        f"vectors cancel out); cannot recentre them")
    near = float(0.9 * bounds[:, 0].min())
    far = float(bounds[:, 1].max())

    test = np.arange(0, len(arr), holdout)
    index = test if split in ("test", "val") else np.setdiff1d(np.arange(len(arr)), test)
    if len(index) == 0:
        raise DataError(f"{path}: split {split!r} is empty ({len(arr)} views, holdout {holdout})")

    images = []
    for k in index:
        rgb, _ = read_image(files[k])  # an alpha channel, if any, is ignored: LLFF captures are opaque
        if images and rgb.shape[:2] != src_size:
            raise DataError(f"{files[k]}: image is {rgb.shape[1]}x{rgb.shape[0]}, "
                            f"{files[index[0]].name} is {src_size[1]}x{src_size[0]}")
        src_size = rgb.shape[:2]
        images.append(box_downscale(rgb, scale_down, files[k]))
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


class LLFFLoader(SceneLoader):
    """A folder with ``poses_bounds.npy`` (LLFF)."""

    name = "llff"
    describes = "an LLFF folder with poses_bounds.npy"

    def detect(self, path: Path) -> bool:
        return path.is_dir() and (path / "poses_bounds.npy").is_file()

    def load(self, path: Path, split: str, *, downscale: int = 1, skip_missing: bool = False) -> SceneData:
        return load_llff(path, split, downscale=downscale)
