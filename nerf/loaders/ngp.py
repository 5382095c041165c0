"""Instant-NGP / nerfstudio captures: one ``transforms.json`` for every frame, JPEG or PNG images.

The file (Instant-NGP ``scripts/colmap2nerf.py``, nerfstudio ``ns-process-data``) holds::

    {"camera_model": "OPENCV",                       # optional; OPENCV / PINHOLE / SIMPLE_PINHOLE / ...
     "fl_x": 1100.0, "fl_y": 1102.0, "cx": 640.5, "cy": 360.2, "w": 1280, "h": 720,
     "k1": -0.05, "k2": 0.01, "p1": 0.0002, "p2": -0.0001,
     "aabb_scale": 4, "scale": 0.33, "offset": [0.5, 0.5, 0.5],   # optional, Instant-NGP's
     "frames": [{"file_path": "images/frame_00001.jpg", "transform_matrix": [[...4x4...]], ...}],
     "train_filenames": [...], "val_filenames": [...], "test_filenames": [...]}   # optional

Camera fields (``fl_x fl_y cx cy w h k1 k2 p1 p2 camera_angle_x camera_angle_y``) may be global or
per frame (a frame's own value wins), as both tools allow. ``fl_x`` may be replaced by
``camera_angle_x`` (``fl_x = 0.5 w / tan(camera_angle_x / 2)``); ``fl_y`` defaults to
``camera_angle_y``'s focal, else ``fl_x``; ``cx, cy`` default to ``w / 2, h / 2``.

Conventions (Instant-NGP ``src/nerf_loader.cu``, ``include/neural-graphics-primitives/nerf_loader.h``):

* ``transform_matrix`` is camera-to-world in OpenGL/NeRF camera axes (x right, y up, looking down
  -z): exactly our pose convention, so poses are used as given and our world unit is the file's.
* Instant-NGP maps a world point p into its unit cube as ``p_ngp = p * scale + offset`` (default
  ``scale`` 0.33, ``offset`` (0.5, 0.5, 0.5); it then cycles the axes x,y,z -> y,z,x, which does not
  change a cube centred at 0.5) and trains the hash grid over the cube of side ``aabb_scale``
  centred at 0.5 in those units: ``[0.5 - aabb_scale / 2, 0.5 + aabb_scale / 2]^3``. We keep world
  units and carry that box back instead: ``bbox = ([0.5 -+ aabb_scale / 2] - offset) / scale`` per
  axis, i.e. ``[-1.515 aabb_scale, +1.515 aabb_scale]^3`` with the defaults (aabb_scale 1 ->
  [-1.515, 1.515]^3, NeRF-synthetic's box). The hash grid covers ``bbox``. An ``"aabb"`` entry
  ``[[min], [max]]`` sets ``scale = 1 / longest side`` and the offset that puts its centre at 0.5,
  as Instant-NGP does.
* Lens distortion: OpenCV radial-tangential ``k1 k2 p1 p2`` (:class:`~nerf.cameras.OpenCVDistortion`),
  removed at load time by resampling every image onto a pinhole camera (below).

Undistortion (what OpenCV's ``initUndistortRectifyMap`` + ``remap`` do): each output pixel centre
(u, v) of the pinhole camera (fx', fy', cx', cy') is mapped to normalised coordinates, distorted with
the frame's forward model, projected with the frame's own intrinsics, and the source image is read
there by bilinear interpolation (RGB composited on white and alpha alike, both linear). The output
camera is the first frame's (sorted by ``file_path``) with both focal lengths multiplied by the
smallest zoom >= 1 that keeps every output pixel inside every distorted source image (so no pixel
is invented; a barrel lens usually needs none). Frames whose camera already equals the output
camera are not resampled. Frames of other intrinsics or sizes are resampled onto it as well.

Splits: ``train_filenames`` / ``val_filenames`` / ``test_filenames`` when the file names them
(``val`` falls back to the test list and back); otherwise the frames, sorted by ``file_path`` (as
Instant-NGP and nerfstudio sort them), hold out every 8th (indices 0, 8, 16, ...) as "test" and
"val", the rest being "train" (the LLFF convention).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from nerf.cameras import DataError, OpenCVDistortion, SceneData, check_pose
from nerf.loaders.base import (IMAGE_SUFFIXES, JSONFields, SceneLoader, box_downscale, check_downscale, check_split,
                               frame_file, parse_fields, read_image, read_json)
from nerf.loaders.blender import missing_frames_error, warn_skipped

__all__ = ["NGPLoader", "load_ngp", "NGP_SCALE", "NGP_OFFSET", "CAMERA_MODELS", "HOLDOUT", "TRANSFORMS"]

#: Instant-NGP's default world -> unit-cube scale (``NERF_SCALE``) and offset.
NGP_SCALE: float = 0.33
NGP_OFFSET: tuple[float, float, float] = (0.5, 0.5, 0.5)
#: camera_model values with a pinhole projection and (at most) k1 k2 p1 p2 distortion.
CAMERA_MODELS: tuple[str, ...] = ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL", "PERSPECTIVE")
#: Every HOLDOUT-th frame (sorted by file_path) is held out when the file names no splits.
HOLDOUT: int = 8
#: The file name looked for in a scene folder.
TRANSFORMS: str = "transforms.json"
#: Zoom beyond which undistortion is refused (the lens would be far outside the model's range).
_MAX_ZOOM = 4.0

_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_Finite = Annotated[float, Field(allow_inf_nan=False)]
_Size = Annotated[int, Field(ge=1, le=1 << 16)]
_Angle = Annotated[float, Field(gt=0, lt=math.pi, allow_inf_nan=False)]
# distortion coefficients of other lens models: refused when present and non-zero
_OTHER_DISTORTION = re.compile(r"^(k[3-9]|p[3-9]|s[1-4]|ftheta_p\d+|omega|tx|ty)$")


class _Camera(JSONFields):
    camera_model: str | None = None
    fl_x: _Positive | None = None
    fl_y: _Positive | None = None
    cx: _Finite | None = None
    cy: _Finite | None = None
    w: _Size | None = None
    h: _Size | None = None
    camera_angle_x: _Angle | None = None
    camera_angle_y: _Angle | None = None
    k1: _Finite | None = None
    k2: _Finite | None = None
    p1: _Finite | None = None
    p2: _Finite | None = None
    is_fisheye: bool | None = None


class _Transforms(_Camera):
    frames: Annotated[list[Any], Field(min_length=1)]
    aabb_scale: _Positive | None = None
    scale: _Positive | None = None
    offset: _Finite | Annotated[list[_Finite], Field(min_length=3, max_length=3)] | None = None
    aabb: Annotated[list[Annotated[list[_Finite], Field(min_length=3, max_length=3)]],
                    Field(min_length=2, max_length=2)] | None = None
    train_filenames: list[str] | None = None
    val_filenames: list[str] | None = None
    test_filenames: list[str] | None = None


class _Frame(_Camera):
    file_path: str
    transform_matrix: Any


@dataclass(frozen=True)
class _Pinhole:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion: OpenCVDistortion

    def pixel_to_source(self, out: "_Pinhole", u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Continuous pixel coordinates in this (distorted) camera seen by ``out``'s pixels (u, v)."""
        xd, yd = self.distortion.apply((u - out.cx) / out.fx, (v - out.cy) / out.fy)
        return self.fx * xd + self.cx, self.fy * yd + self.cy


def _camera(meta: _Camera, frame: _Camera, where: str, image_size: tuple[int, int] | None) -> _Pinhole:
    """The frame's camera: its own fields over the global ones (``image_size`` = (w, h) read)."""
    def get(name):
        value = getattr(frame, name)
        return getattr(meta, name) if value is None else value

    model = get("camera_model")
    if model is not None and model.upper() not in CAMERA_MODELS:
        raise DataError(f"{where}: 'camera_model' {model!r} is not supported (supported: {', '.join(CAMERA_MODELS)}; "
                        "fisheye, equirectangular and other non-pinhole models are not)")
    if get("is_fisheye"):
        raise DataError(f"{where}: 'is_fisheye' is true: only pinhole cameras with OpenCV k1 k2 p1 p2 are supported")
    w, h = get("w"), get("h")
    if image_size is not None:
        if (w is not None and w != image_size[0]) or (h is not None and h != image_size[1]):
            raise DataError(f"{where}: the image is {image_size[0]}x{image_size[1]}, but 'w' x 'h' say {w}x{h}")
        w, h = image_size
    if w is None or h is None:
        raise DataError(f"{where}: no 'w' / 'h' (needed when the image is missing)")
    fx = get("fl_x")
    if fx is None and get("camera_angle_x") is not None:
        fx = 0.5 * w / math.tan(0.5 * get("camera_angle_x"))
    if fx is None:
        raise DataError(f"{where}: no 'fl_x' (nor 'camera_angle_x')")
    fy = get("fl_y")
    if fy is None and get("camera_angle_y") is not None:
        fy = 0.5 * h / math.tan(0.5 * get("camera_angle_y"))
    fy = fx if fy is None else fy
    cx, cy = get("cx"), get("cy")
    dist = OpenCVDistortion(*(float(get(k) or 0.0) for k in ("k1", "k2", "p1", "p2")))
    return _Pinhole(int(w), int(h), float(fx), float(fy), float(w / 2 if cx is None else cx),
                    float(h / 2 if cy is None else cy), dist)


def _other_distortion(data: dict, where: str) -> None:
    for key, value in data.items():
        if isinstance(key, str) and _OTHER_DISTORTION.match(key) and value not in (0, 0.0, None, False):
            raise DataError(f"{where}: distortion key {key!r} (= {value!r}) is not supported: only the OpenCV "
                            "radial-tangential k1 k2 p1 p2 are")


def _zoom(cameras: list[_Pinhole], ref: _Pinhole) -> float:
    """Smallest zoom >= 1 of ``ref``'s focal lengths whose pixels all fall inside every camera's image."""
    if all(c == ref and c.distortion.is_identity for c in cameras):
        return 1.0
    # the image border and a coarse interior grid: the extremes of a real lens are on the border
    e_u = np.concatenate([np.linspace(0.5, ref.width - 0.5, 64), np.full(64, 0.5), np.full(64, ref.width - 0.5),
                          np.linspace(0.5, ref.width - 0.5, 64)])
    e_v = np.concatenate([np.full(64, 0.5), np.linspace(0.5, ref.height - 0.5, 64),
                          np.linspace(0.5, ref.height - 0.5, 64), np.full(64, ref.height - 0.5)])
    gu, gv = np.meshgrid(np.linspace(0.5, ref.width - 0.5, 9), np.linspace(0.5, ref.height - 0.5, 9))
    u, v = np.concatenate([e_u, gu.ravel()]), np.concatenate([e_v, gv.ravel()])

    def fits(s: float) -> bool:
        out = _Pinhole(ref.width, ref.height, ref.fx * s, ref.fy * s, ref.cx, ref.cy, OpenCVDistortion())
        for c in cameras:
            with np.errstate(all="ignore"):
                us, vs = c.pixel_to_source(out, u, v)
            # bilinear reads need the 2 x 2 neighbourhood: centres of the outermost pixels are the limit
            if not (np.all((us >= 0.5 - 1e-6) & (us <= c.width - 0.5 + 1e-6))
                    and np.all((vs >= 0.5 - 1e-6) & (vs <= c.height - 0.5 + 1e-6))):
                return False
        return True

    if fits(1.0):
        return 1.0
    lo, hi = 1.0, _MAX_ZOOM
    if not fits(hi):
        return math.inf
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi


def _bilinear(image: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Sample (H, W[, C]) at continuous pixel coordinates (pixel centres at i + 0.5), edge-clamped."""
    h, w = image.shape[:2]
    fx = np.clip(xs - 0.5, 0.0, w - 1.0)
    fy = np.clip(ys - 0.5, 0.0, h - 1.0)
    x0 = np.minimum(np.floor(fx).astype(np.int64), max(w - 2, 0))
    y0 = np.minimum(np.floor(fy).astype(np.int64), max(h - 2, 0))
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    ax, ay = fx - x0, fy - y0
    if image.ndim == 3:
        ax, ay = ax[..., None], ay[..., None]
    top = image[y0, x0] * (1 - ax) + image[y0, x1] * ax
    bottom = image[y1, x0] * (1 - ax) + image[y1, x1] * ax
    return (top * (1 - ay) + bottom * ay).astype(np.float32)


def _resample(image: np.ndarray, src: _Pinhole, out: _Pinhole) -> np.ndarray:
    """``image`` of camera ``src`` (with its distortion) seen through the pinhole ``out``."""
    v, u = np.mgrid[0:out.height, 0:out.width].astype(np.float64) + 0.5
    us, vs = src.pixel_to_source(out, u, v)
    return _bilinear(image, us, vs)


def _bbox(meta: _Transforms, where: str) -> np.ndarray:
    scale = NGP_SCALE if meta.scale is None else meta.scale
    offset = np.asarray(NGP_OFFSET if meta.offset is None else meta.offset, np.float64) * np.ones(3)
    if meta.aabb is not None:  # Instant-NGP: fit this box into the unit cube, centred at 0.5
        lo, hi = np.asarray(meta.aabb[0], np.float64), np.asarray(meta.aabb[1], np.float64)
        scale = 1.0 / max(float(np.max(np.abs(hi - lo))), 1e-6)
        offset = 0.5 - 0.5 * (lo + hi) * scale
    a = 1.0 if meta.aabb_scale is None else meta.aabb_scale
    with np.errstate(all="ignore"):
        box = np.stack([(0.5 - 0.5 * a - offset) / scale, (0.5 + 0.5 * a - offset) / scale])
    if not np.all(np.isfinite(box)) or not np.all(box[1] > box[0]):
        raise DataError(f"{where}: 'aabb_scale' / 'scale' / 'offset' give no finite scene box ({box.tolist()})")
    return box


def _split_names(meta: _Transforms, split: str) -> list[str] | None:
    lists = {"train": meta.train_filenames, "val": meta.val_filenames, "test": meta.test_filenames}
    if all(v is None for v in lists.values()):
        return None
    names = lists[split]
    if names is None and split in ("val", "test"):
        names = lists["test" if split == "val" else "val"]
    return [] if names is None else names


def _norm(p: str) -> str:
    return re.sub(r"^(\./)+", "", p.replace("\\", "/"))


def transforms_path(path) -> Path:
    """``path`` itself when it is a file, else ``path / transforms.json``; DataError when absent."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError(f"{path}: no such folder")
    file = path / TRANSFORMS
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    return file


def load_ngp(path, split: str, *, downscale: int = 1, skip_missing: bool = False, holdout: int = HOLDOUT) -> SceneData:
    """Load one split of an Instant-NGP / nerfstudio capture (see the module docstring).

    Args:
        path: the capture folder (holding ``transforms.json``) or the JSON file itself; frame paths
            are relative to the file's folder and may not leave it.
        split: "train", "val" or "test".
        downscale: integer factor >= 1, a box filter after undistortion (intrinsics divide by it).
        skip_missing: leave out frames whose image is missing (a ``MissingFramesWarning`` names
            them) instead of raising.
        holdout: every ``holdout``-th frame is a test/val frame when the file names no splits.

    Returns:
        :class:`SceneData`: images undistorted onto the output pinhole camera (``focal``,
        ``focal_y``, ``cx``, ``cy`` in output pixels), ``alpha`` when the images have an alpha
        channel (else None), poses as in the file, ``bbox`` from ``aabb_scale``/``scale``/``offset``,
        near 0 and far = the largest distance from a camera to a corner of ``bbox`` (the renderer
        only uses ``bbox``), name = the folder name.

    Raises:
        DataError, naming the file and the field: no transforms file; not JSON; a missing or
        ill-typed field (``fl_x``/``camera_angle_x``, ``frames``, ``file_path``, ...); an unknown
        ``camera_model``; a distortion key other than k1 k2 p1 p2; a degenerate
        ``transform_matrix``; a ``file_path`` that leaves the folder; frames listed but missing
        (all named); an image whose size is not ``w`` x ``h``; an empty split; a lens too strong
        to undistort (zoom > 4).
    """
    file = transforms_path(path)
    root = file.parent
    check_split(split, file)
    factor = check_downscale(downscale)
    raw = read_json(file)
    meta = parse_fields(_Transforms, raw, str(file))
    _other_distortion(raw, str(file))
    frames = []
    for k, item in enumerate(meta.frames):
        where = f"{file}: frame {k}"
        frame = parse_fields(_Frame, item, where, sep=" ", missing="{where} has no {name!r}")
        _other_distortion(item, where)
        pose = check_pose(frame.transform_matrix, f"{where} 'transform_matrix'")
        image, tried = frame_file(root, frame.file_path, where, suffixes=IMAGE_SUFFIXES)
        frames.append((frame.file_path, k, frame, pose, image, tried))
    frames.sort(key=lambda f: f[0])  # Instant-NGP and nerfstudio order frames by file_path

    names = _split_names(meta, split)
    if names is None:
        index = np.arange(len(frames))
        keep = (index % holdout == 0) if split in ("val", "test") else (index % holdout != 0)
        chosen = [f for f, k in zip(frames, keep) if k]
    else:
        wanted = {_norm(n) for n in names}
        chosen = [f for f in frames if _norm(f[0]) in wanted]
        unknown = wanted - {_norm(f[0]) for f in frames}
        if unknown:
            raise DataError(f"{file}: '{split}_filenames' names {len(unknown)} file(s) no frame has: "
                            f"{', '.join(sorted(unknown)[:5])}")
    if not chosen:
        raise DataError(f"{file}: split {split!r} is empty ({len(frames)} frames)")

    missing = [(k, fp, tried) for fp, k, _, _, image, tried in frames if not image.is_file()]
    if missing and not skip_missing:
        raise missing_frames_error(file, missing)
    if missing:
        warn_skipped(file, missing)
        chosen = [f for f in chosen if f[4].is_file()]
        if not chosen:
            raise DataError(f"{file}: every frame of split {split!r} is missing")

    # the output camera: the first frame's (over all splits, so that they agree), zoomed to fit
    present = [f for f in frames if f[4].is_file()]
    _, ref_k, ref_frame, _, ref_image, _ = present[0]
    ref = _camera(meta, ref_frame, f"{file}: frame {ref_k}", _image_size(ref_image))
    cams = [ref] + [_camera(meta, f[2], f"{file}: frame {f[1]}", _image_size(f[4])) for f in present[1:]]
    zoom = _zoom(cams, ref)
    if not math.isfinite(zoom):
        raise DataError(f"{file}: the lens distortion (k1 k2 p1 p2) is too strong to undistort onto a pinhole "
                        f"camera with at most {_MAX_ZOOM:g}x zoom")
    out = _Pinhole(ref.width, ref.height, ref.fx * zoom, ref.fy * zoom, ref.cx, ref.cy, OpenCVDistortion())
    cam_of = {id(f): c for f, c in zip(present, cams)}

    images, alphas, poses = [], [], []
    any_alpha = False
    for f in chosen:
        fp, k, _, pose, image_path, _ = f
        rgb, alpha = read_image(image_path)
        any_alpha |= alpha is not None
        if alpha is None:
            alpha = np.ones(rgb.shape[:2], np.float32)
        rgb = rgb * alpha[..., None] + (1.0 - alpha[..., None])  # onto white, straight alpha
        cam = cam_of[id(f)]
        if cam != out:
            rgb, alpha = _resample(rgb, cam, out), _resample(alpha, cam, out)
        images.append(box_downscale(rgb, factor, image_path))
        alphas.append(box_downscale(alpha, factor, image_path))
        poses.append(pose)

    bbox = _bbox(meta, str(file))
    centres = np.stack(poses)[:, :3, 3]
    corners = np.stack(np.meshgrid(*bbox.T, indexing="ij"), axis=-1).reshape(-1, 3)
    far = float(np.max(np.linalg.norm(centres[:, None] - corners[None], axis=-1)))
    stack = np.clip(np.stack(images), 0.0, 1.0).astype(np.float32)
    height, width = stack.shape[1:3]
    return SceneData(
        images=stack,
        poses=np.stack(poses).astype(np.float32),
        focal=out.fx / factor,
        focal_y=out.fy / factor,
        cx=out.cx / factor,
        cy=out.cy / factor,
        height=int(height),
        width=int(width),
        near=0.0,
        far=far,
        bbox=bbox.astype(np.float32),
        name=root.name,
        split=split,
        alpha=np.clip(np.stack(alphas), 0.0, 1.0).astype(np.float32) if any_alpha else None,
    )


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file without decoding it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot read image ({e})") from e


class NGPLoader(SceneLoader):
    """A folder with ``transforms.json`` (Instant-NGP / nerfstudio), or that JSON file itself."""

    name = "ngp"
    describes = "an Instant-NGP / nerfstudio folder with transforms.json"

    def detect(self, path: Path) -> bool:
        return (path.is_dir() and (path / TRANSFORMS).is_file()) or (path.is_file() and path.suffix.lower() == ".json")

    def load(self, path: Path, split: str, *, downscale: int = 1, skip_missing: bool = False) -> SceneData:
        return load_ngp(path, split, downscale=downscale, skip_missing=skip_missing)
