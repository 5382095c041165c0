"""Image metrics: PSNR (dB) and SSIM (scikit-image's implementation, Wang et al. 2004)."""

from __future__ import annotations

import numpy as np

__all__ = ["psnr", "ssim"]


def psnr(img: np.ndarray, ref: np.ndarray) -> float:
    """PSNR in dB of float images in [0, 1] of equal shape: ``-10 log10(MSE)``."""
    mse = float(np.mean((np.asarray(img, np.float64) - np.asarray(ref, np.float64)) ** 2))
    return float("inf") if mse == 0 else -10.0 * np.log10(mse)


def ssim(img: np.ndarray, ref: np.ndarray) -> float:
    """Mean SSIM of float RGB images (H, W, 3) in [0, 1] (7x7 Gaussian-free window, data range 1)."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(np.asarray(img, np.float64), np.asarray(ref, np.float64),
                                       channel_axis=-1, data_range=1.0))
