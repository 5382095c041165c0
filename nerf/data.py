"""Radiance-field scenes for training: the public entry points and the random ray batches.

The camera and scene types live in :mod:`nerf.cameras` (conventions: OpenGL camera-to-world poses,
float32 images in [0, 1] on white, pinhole rays with camera-space z = -1, row-major pixels), the
loaders in :mod:`nerf.loaders` (one module per format and a registry). This module re-exports
what callers use (``load_scene``, ``SceneData``, ``DataError``, ``get_rays``, ...) and defines
:class:`RayBatcher`, the training-ray sampler.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from nerf.cameras import (BLENDER_BBOX, BLENDER_FAR, BLENDER_NEAR, SPLITS, DataError, OpenCVDistortion, SceneData,
                          camera_directions, check_count, check_pose, get_rays)
from nerf.loaders import LOADERS, MissingFramesWarning, find_loader, load_blender, load_llff, load_ngp, load_scene
from nerf.loaders.llff import LLFF_BD_FACTOR

__all__ = [
    "DataError",
    "SceneData",
    "SPLITS",
    "BLENDER_NEAR",
    "BLENDER_FAR",
    "BLENDER_BBOX",
    "LLFF_BD_FACTOR",
    "LOADERS",
    "MissingFramesWarning",
    "OpenCVDistortion",
    "check_pose",
    "find_loader",
    "load_blender",
    "load_llff",
    "load_ngp",
    "load_scene",
    "camera_directions",
    "get_rays",
    "RayBatcher",
    "training_batch",
    "rays_for_budget",
]


class RayBatcher:
    """Random training rays drawn uniformly, with replacement, from all pixels of all images.

    Rays are built per batch (not precomputed), so memory stays at the images' own. The draw uses a
    ``numpy.random.Generator`` seeded with ``seed``: two batchers with the same data, batch size and
    seed yield the same sequence; ``rng.bit_generator.state`` is all the state a checkpoint needs.
    Iterating never ends; call :meth:`next_batch` or ``next()``.

    Each batch is ``(origins, directions, rgb)``, float32 arrays of shape (batch_size, 3), with the
    conventions of :func:`get_rays` (directions not normalised, the scene's pinhole intrinsics);
    :meth:`next_batch_alpha` adds each pixel's alpha.
    """

    def __init__(self, data: SceneData, batch_size: int, *, seed: int = 0):
        self.data = data
        self.batch_size = check_count(batch_size, "batch_size", error=ValueError)
        self.rng = np.random.default_rng(seed)
        self._pixels = data.images.reshape(-1, 3)
        self._alpha = None if data.alpha is None else data.alpha.reshape(-1)

    def next_batch_alpha(self, size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """``(origins, directions, rgb, alpha)``: alpha float32 (size,) in [0, 1], or None for an opaque scene."""
        d = self.data
        flat = self.rng.integers(0, len(self._pixels), size=self.batch_size if size is None else int(size))
        n, rest = np.divmod(flat, d.height * d.width)
        j, i = np.divmod(rest, d.width)
        cam = camera_directions(i + 0.5, j + 0.5, d.height, d.width, d.focal, **d.intrinsics)
        rot = d.poses[n, :3, :3]
        dirs = np.einsum("bij,bj->bi", rot, cam)
        origins = d.poses[n, :3, 3]
        alpha = None if self._alpha is None else self._alpha[flat]
        return np.ascontiguousarray(origins), dirs.astype(np.float32), self._pixels[flat], alpha

    def next_batch(self, size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One batch of ``size`` rays (default: ``batch_size``): origins, directions, RGB on white."""
        return self.next_batch_alpha(size)[:3]

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.next_batch()


def training_batch(batcher: RayBatcher, rays: int, background: str, generator, device: str = "cpu"):
    """The next ``rays`` training rays: ``(origins, dirs, target, bg)``, float32 tensors on ``device``.

    ``origins``, ``dirs``, ``target``: (rays, 3). On a scene with alpha and ``background`` "random",
    each ray gets a random RGB ``bg`` (rays, 3) drawn from ``generator`` and its target is seen against
    it (images are stored on white, so ``target + (bg - 1)(1 - alpha)``); otherwise ``bg`` is 1.0 (white).
    ``generator``: a ``torch.Generator``.
    """
    import torch

    origins, dirs, target, alpha = batcher.next_batch_alpha(rays)
    origins, dirs, target = (torch.from_numpy(a).to(device) for a in (origins, dirs, target))
    bg = 1.0
    if alpha is not None and background == "random":
        bg = torch.rand(target.shape[0], 3, generator=generator).to(device)
        target = target + (bg - 1.0) * (1.0 - torch.from_numpy(alpha).to(device)[:, None])
    return origins, dirs, target, bg


def rays_for_budget(samples_evaluated: int, rays: int, batch_samples: int, max_rays: int = 16384) -> int:
    """Instant-NGP's fixed sample budget: the next batch's ray count, ``batch_samples`` / (field evaluations per
    ray of the last batch), clamped to [64, ``max_rays``]."""
    per_ray = max(samples_evaluated / max(rays, 1), 1.0)
    return int(min(max(round(batch_samples / per_ray), 64), max_rays))
