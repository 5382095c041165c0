"""The pictures the image INRs are fitted to: scikit-image's sample images (torch-free).

They ship inside the scikit-image wheel (``skimage.data``; never downloaded). ``load_image`` returns
float32 (H, W, C) in [0, 1], C = 1 for grayscale and 3 for RGB, downscaled with anti-aliasing.
Importing this module is cheap (no torch, no skimage until an image is loaded), so the CLI can list
the names while parsing its options.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field

from common.validate import checker

__all__ = ["IMAGES", "load_image"]

#: Image name -> ``skimage.data`` function name. All ship inside the scikit-image wheel.
IMAGES: dict[str, str] = {
    "camera": "camera", "astronaut": "astronaut", "coffee": "coffee", "chelsea": "chelsea", "rocket": "rocket",
    "moon": "moon", "coins": "coins", "brick": "brick", "grass": "grass", "gravel": "gravel", "page": "page",
    "text": "text", "clock": "clock", "immunohistochemistry": "immunohistochemistry",
    "hubble_deep_field": "hubble_deep_field", "retina": "retina",
}
_check_size = checker(Annotated[int, Field(ge=8)])


def load_image(name: str, *, size: int | None = 256) -> np.ndarray:
    """One of ``IMAGES`` from ``skimage.data``, as float32 (H, W, C) in [0, 1].

    Grayscale images get C = 1, RGB C = 3 (an alpha channel is dropped). With ``size``, the image is
    downscaled (``skimage.transform.resize`` with anti-aliasing) so that its longer side is ``size``
    pixels, keeping the aspect ratio; an image already that small is kept as is.

    Raises:
        ValueError: an unknown name (naming it and listing the choices), or size not an int >= 8.
    """
    if name not in IMAGES:
        raise ValueError(f"unknown image {name!r} (choices: {', '.join(sorted(IMAGES))})")
    if size is not None:
        _check_size(size, "image size")
    import skimage.data
    from skimage.transform import resize

    img = np.asarray(getattr(skimage.data, IMAGES[name])())
    if img.dtype == np.uint8:
        img = img.astype(np.float64) / 255.0
    else:
        img = img.astype(np.float64)
        img = (img - img.min()) / max(img.max() - img.min(), 1e-12)
    if img.ndim == 2:
        img = img[:, :, None]
    img = img[:, :, :3]
    h, w = img.shape[:2]
    if size is not None and max(h, w) > size:
        scale = size / max(h, w)
        img = resize(img, (max(1, round(h * scale)), max(1, round(w * scale)), img.shape[2]), anti_aliasing=True)
    return np.clip(img, 0.0, 1.0).astype(np.float32)
