"""Blender (NeRF-synthetic) scenes: ``transforms_{train,val,test}.json`` + RGBA PNGs."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Annotated, Any, Sequence

import numpy as np
from pydantic import Field

from nerf.cameras import BLENDER_BBOX, BLENDER_FAR, BLENDER_NEAR, DataError, SceneData, check_pose
from nerf.loaders.base import (JSONFields, SceneLoader, box_downscale, check_downscale, check_folder, check_split,
                               frame_file, parse_fields, read_image, read_json)

__all__ = ["BlenderLoader", "load_blender", "MissingFramesWarning"]


class MissingFramesWarning(UserWarning):
    """Frames listed in a transforms file whose images are missing were left out (``skip_missing``)."""


class _BlenderTransforms(JSONFields):
    camera_angle_x: Annotated[float, Field(gt=0, lt=math.pi, allow_inf_nan=False)]
    frames: Annotated[list[Any], Field(min_length=1)]


class _BlenderFrame(JSONFields):
    file_path: str
    transform_matrix: Any


def missing_frames_error(path: Path, missing: list[tuple[int, str, list[Path]]]) -> DataError:
    """The error for frames whose images are missing: every one named (index, file_path, tried)."""
    first = missing[0]
    head = (f"{path}: frame {first[0]} 'file_path' {first[1]!r}: no such image file "
            f"({' or '.join(str(t) for t in first[2])})")
    if len(missing) > 1:
        rest = ", ".join(f"frame {k} {fp!r}" for k, fp, _ in missing[1:])
        head += f"; also missing: {rest}"
    return DataError(head + f" ({len(missing)} listed frames missing; --skip-missing loads the rest)")


def warn_skipped(path: Path, missing: list[tuple[int, str, list[Path]]]) -> None:
    names = ", ".join(repr(fp) for _, fp, _ in missing)
    warnings.warn(f"{path}: skipped {len(missing)} listed but missing frame(s): {names}", MissingFramesWarning,
                  stacklevel=3)


def load_blender(root, split: str, *, downscale: int = 1, background: Sequence[float] = (1.0, 1.0, 1.0),
                 skip_missing: bool = False) -> SceneData:
    """Load one split of a NeRF-synthetic (Blender) scene.

    Reads ``root/transforms_{split}.json`` (``camera_angle_x`` in radians; ``frames[].file_path``
    relative to ``root``, with or without ".png"; ``frames[].transform_matrix`` camera-to-world 4x4,
    OpenGL axes) and the RGBA PNGs it names.

    Order of operations: each PNG (straight, non-premultiplied alpha) is composited at full
    resolution, ``rgb * alpha + background * (1 - alpha)``, in float32, and the result is then
    box-filtered by ``downscale`` (mean of each ``downscale`` x ``downscale`` block). Compositing is
    linear in premultiplied colour and alpha, so this equals box-filtering premultiplied RGBA first
    and compositing afterwards; no colour fringes appear at silhouettes. Rows/columns beyond a
    multiple of ``downscale`` are dropped. ``alpha`` is box-filtered the same way and returned, so
    that training can composite onto other backgrounds (exact only for a white ``background``).

    Args:
        root: the scene folder.
        split: "train", "val" or "test".
        downscale: integer factor >= 1; the returned images are (H // downscale, W // downscale).
        background: RGB in [0, 1] that transparent pixels become.
        skip_missing: leave out frames whose image is missing (with a ``MissingFramesWarning``
            naming them) instead of raising.

    Returns:
        :class:`SceneData` with ``focal = 0.5 * W / tan(0.5 * camera_angle_x)`` for the downscaled
        width W, near/far = 2/6, bbox = [-1.5, 1.5]^3, alpha and name = the folder name.

    Raises:
        DataError: missing folder, transforms file or image (every missing one named); a transforms
            file that is not JSON or lacks ``camera_angle_x`` / ``frames``; a frame without
            ``file_path`` or with a degenerate ``transform_matrix``; a ``file_path`` leaving the
            folder; images of different sizes; an unknown split or bad argument.
    """
    root = check_folder(root)
    check_split(split, root)
    factor = check_downscale(downscale)
    bg = np.asarray(background, dtype=np.float32)
    if bg.shape != (3,) or not np.all((bg >= 0) & (bg <= 1)):
        raise DataError(f"background must be 3 values in [0, 1], not {background!r}")

    path = root / f"transforms_{split}.json"
    if not path.is_file():
        raise DataError(f"{path}: no such file (needed for split {split!r})")
    meta = parse_fields(_BlenderTransforms, read_json(path), str(path))

    listed = []  # (index, file_path, image path, pose)
    missing = []
    for k, raw in enumerate(meta.frames):
        frame = parse_fields(_BlenderFrame, raw, f"{path}: frame {k}", sep=" ", missing="{where} has no {name!r}")
        pose = check_pose(frame.transform_matrix, f"{path}: frame {k} 'transform_matrix'")
        image_path, tried = frame_file(root, frame.file_path, f"{path}: frame {k}")
        if image_path.is_file():
            listed.append((k, image_path, pose))
        else:
            missing.append((k, frame.file_path, tried))
    if missing and not skip_missing:
        raise missing_frames_error(path, missing)
    if missing:
        warn_skipped(path, missing)
    if not listed:
        raise DataError(f"{path}: none of the {len(meta.frames)} listed frames has its image")

    images, alphas, poses = [], [], []
    first_size = None
    for k, image_path, pose in listed:
        rgb, alpha = read_image(image_path)
        if alpha is None:
            alpha = np.ones(rgb.shape[:2], np.float32)
        if first_size is not None and rgb.shape[:2] != first_size:
            raise DataError(f"{image_path}: frame {k} image is {rgb.shape[1]}x{rgb.shape[0]}, "
                            f"frame {listed[0][0]}'s is {first_size[1]}x{first_size[0]}")
        first_size = rgb.shape[:2]
        a = alpha[..., None]
        images.append(box_downscale(rgb * a + bg * (1.0 - a), factor, image_path))
        alphas.append(box_downscale(alpha, factor, image_path))
        poses.append(pose)

    stack = np.clip(np.stack(images), 0.0, 1.0)
    height, width = stack.shape[1:3]
    return SceneData(
        images=stack,
        poses=np.stack(poses).astype(np.float32),
        focal=float(0.5 * width / math.tan(0.5 * meta.camera_angle_x)),
        height=int(height),
        width=int(width),
        near=BLENDER_NEAR,
        far=BLENDER_FAR,
        bbox=BLENDER_BBOX.copy(),
        name=root.name,
        split=split,
        alpha=np.clip(np.stack(alphas), 0.0, 1.0).astype(np.float32),
    )


class BlenderLoader(SceneLoader):
    """A folder with ``transforms_{split}.json`` files (NeRF-synthetic)."""

    name = "blender"
    describes = "a Blender folder with transforms_*.json"

    def detect(self, path: Path) -> bool:
        return path.is_dir() and any(path.glob("transforms_*.json"))

    def load(self, path: Path, split: str, *, downscale: int = 1, skip_missing: bool = False) -> SceneData:
        return load_blender(path, split, downscale=downscale, skip_missing=skip_missing)
