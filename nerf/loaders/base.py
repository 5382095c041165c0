"""The scene-loader base class and the readers every loader shares (images, JSON fields, paths).

A loader (one module per format, as in ngp_pl's ``datasets/``) subclasses :class:`SceneLoader`:
``name`` (the registry key), ``detect(path)`` (does this folder or file hold my format?) and
``load(path, split, downscale=, skip_missing=)`` returning a :class:`~nerf.cameras.SceneData`.
``nerf.loaders.load_scene`` asks the registered loaders in order and calls the first that detects.
"""

from __future__ import annotations

import abc
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, ValidationError

from common.validate import describe
from nerf.cameras import SPLITS, DataError, SceneData, check_count

__all__ = ["SceneLoader", "JSONFields", "check_split", "check_downscale", "check_folder", "read_json",
           "parse_fields", "read_image", "box_downscale", "frame_file", "IMAGE_SUFFIXES"]

#: Image files the loaders read (8-bit PNG or JPEG, any case).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")


class SceneLoader(abc.ABC):
    """One scene format. Subclasses set ``name`` and implement ``detect`` and ``load``."""

    name: ClassVar[str] = ""
    #: one line for error messages: what a scene of this format looks like on disk
    describes: ClassVar[str] = ""

    @abc.abstractmethod
    def detect(self, path: Path) -> bool:
        """True when ``path`` (a folder, or a file for formats that name one) is in this format."""

    @abc.abstractmethod
    def load(self, path: Path, split: str, *, downscale: int = 1, skip_missing: bool = False) -> SceneData:
        """One split of the scene at ``path``. Raises DataError (naming the file and the field)."""


class JSONFields(BaseModel):
    """Base of the pydantic models of a loader's JSON fields: strict types, other keys ignored.

    Strict: ``true`` is not a number and ``"3"`` is not a number. Keys a model does not name are
    ignored: real capture files carry many (``applied_transform``, ``sharpness``, ...).
    """

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_fields(model: type[JSONFields], data: Any, where: str, *, sep: str = ": ",
                 missing: str = "{where}: no {name!r}"):
    """Validate a parsed JSON object against ``model``; DataError naming ``where`` and the field.

    Messages: ``<where>: no 'frames'`` (``missing`` formats a required field that is absent from
    ``where`` and ``name``), ``<where><sep>'aabb_scale' must be a finite number > 0, not -1``, or
    ``<where> must be a JSON object, not [1, 2]``.
    """
    if not isinstance(data, dict):
        raise DataError(f"{where} must be a JSON object, not {_short(data)}")
    try:
        return model(**data) if all(isinstance(k, str) for k in data) else model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = err.get("loc") or ()
        name = str(loc[0]) if loc else "?"
        if err["type"] == "missing":
            raise DataError(missing.format(where=where, name=name)) from None
        info = model.model_fields.get(name)
        annotation = info.annotation if info is not None else None
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # Optional[X]: describe X
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else annotation
        what = describe(annotation, info.metadata) if info is not None else err["msg"]
        if info is not None and typing.get_origin(info.annotation) is not None and len(loc) > 1:
            what = f"{what} ({err['msg'].lower()} at {'.'.join(str(x) for x in loc[1:])})"
        raise DataError(f"{where}{sep}{name!r} must be {what}, not {_short(err.get('input'))}") from None


def check_split(split: str, where: object) -> str:
    if split not in SPLITS:
        raise DataError(f"{where}: unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    return split


def check_downscale(downscale: int) -> int:
    return check_count(downscale, "downscale")


def check_folder(root) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    return root


def read_json(path: Path) -> Any:
    """Parse a JSON file. Raises DataError ``<path>: cannot read JSON (...)``."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise DataError(f"{path}: cannot read JSON ({e})") from e


def read_image(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """An 8-bit image as float32 RGB (H, W, 3) in [0, 1] (value / 255) and alpha (H, W) or None.

    Alpha is returned when the file has an alpha channel (RGBA, LA, or a palette with
    transparency); it is straight (not premultiplied), as PNG stores it.

    Raises:
        DataError: the file cannot be read or decoded as an image (message names the path).
    """
    try:
        with Image.open(path) as im:
            has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
            arr = np.asarray(im.convert("RGBA" if has_alpha else "RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError, Image.DecompressionBombError) as e:  # UnidentifiedImageError is an OSError
        raise DataError(f"{path}: cannot read image ({e})") from e
    return (arr[..., :3], arr[..., 3]) if has_alpha else (arr, None)


def box_downscale(image: np.ndarray, factor: int, where: object) -> np.ndarray:
    """Mean over ``factor`` x ``factor`` blocks of (H, W[, C]); the remainder (bottom, right) is dropped.

    Dropping the remainder keeps every output pixel a full box, so the pixel pitch is exactly
    ``factor`` source pixels and the focal lengths and principal point simply divide by ``factor``.
    """
    if factor == 1:
        return image
    h, w = image.shape[:2]
    ho, wo = h // factor, w // factor
    if ho == 0 or wo == 0:
        raise DataError(f"{where}: downscale {factor} is larger than the image ({w}x{h})")
    blocks = image[: ho * factor, : wo * factor].reshape(ho, factor, wo, factor, *image.shape[2:])
    return blocks.mean(axis=(1, 3), dtype=np.float32)


def frame_file(root: Path, file_path: str, where: str, *, suffixes: tuple[str, ...] = (".png",)) -> tuple[Path, list[Path]]:
    """The image file of a frame: ``root / file_path``, trying ``suffixes`` when it has none.

    NeRF-synthetic paths usually omit ".png" (``./train/r_0``). The path may not leave ``root``:
    an absolute path or one whose ``..`` climb above the folder is refused (checked on the path's
    text, so a symbolic link placed inside the folder on purpose still works).

    Returns:
        (the file, or the last candidate when none exists; every candidate tried).

    Raises:
        DataError: ``<where> 'file_path' '../x' leaves the scene folder <root>``.
    """
    if "\x00" in file_path or os.path.isabs(file_path) or file_path.startswith(("/", "\\")):
        raise DataError(f"{where} 'file_path' {file_path!r} leaves the scene folder {root} (absolute path)")
    normal = os.path.normpath(file_path.replace("\\", "/"))
    if normal == ".":
        raise DataError(f"{where} 'file_path' {file_path!r} names no file")
    if normal == os.pardir or normal.startswith(os.pardir + os.sep):
        raise DataError(f"{where} 'file_path' {file_path!r} leaves the scene folder {root}")
    given = root / normal
    if given.suffix.lower() in IMAGE_SUFFIXES:
        candidates = [given]
    else:
        candidates = [given.with_name(given.name + s) for s in suffixes]
    for c in candidates:
        if c.is_file():
            return c, candidates
    return candidates[0], candidates
