"""The figures and images of ``make inr``: histograms, reconstructions, and the per-cell PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common.atomic import atomic_write
from flows.inr.stats import rotated_tensors
from flows.report import pyplot, save_figure

__all__ = ["plot_histograms", "plot_reconstructions", "to_png", "from_png", "recon_path"]


def plot_histograms(model, coords, stats: list[dict], path: Path, title: str) -> None:
    """Rows = layers; columns = weights before / after the rotation, activations before / after."""
    plt = pyplot()
    tensors = rotated_tensors(model, coords)
    fig, axes = plt.subplots(len(tensors), 4, figsize=(13, 2.1 * len(tensors)), dpi=100, squeeze=False)
    for r, (t, s) in enumerate(zip(tensors, stats)):
        for c, (kind, when) in enumerate((("weight", 0), ("weight", 1), ("act", 0), ("act", 1))):
            ax = axes[r][c]
            v = t[kind][when].flatten().numpy()
            ax.hist(v, bins=80, color="tab:blue" if when == 0 else "tab:orange", density=True)
            st = s[kind]["before" if when == 0 else "after"]
            ax.set_title(f"{t['layer']} {kind} {'before' if when == 0 else 'after H'}: kurt {st['kurtosis']:.2f}, "
                         f"max/std {st['absmax_over_std']}", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def plot_reconstructions(images: list[tuple[str, np.ndarray]], path: Path) -> None:
    """One row of labelled images (H, W, C) in [0, 1]."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(images), figsize=(2.6 * len(images), 2.9), dpi=100, squeeze=False)
    for ax, (label, img) in zip(axes[0], images):
        ax.imshow(img[:, :, 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    save_figure(fig, path)


def to_png(img: np.ndarray, path: Path) -> None:
    """Write an image (H, W, C) in [0, 1] as an 8-bit PNG (grayscale when C = 1), atomically."""
    from PIL import Image

    a = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    pil = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
    atomic_write(path, lambda tmp: pil.save(tmp, format="png"))


def from_png(path: Path) -> np.ndarray:
    """Read a PNG written by ``to_png`` back as float32 (H, W, C) in [0, 1]."""
    from PIL import Image

    a = np.asarray(Image.open(path), dtype=np.float32) / 255.0
    return a[:, :, None] if a.ndim == 2 else a


def recon_path(out: Path, method: str, bits: int) -> Path:
    """``<out>/recon/<method>-<B>b.png``: a cell's reconstruction (its presence marks the cell done)."""
    return out / "recon" / f"{method}-{bits}b.png"
