"""Occupancy grid for empty-space skipping (Instant-NGP Sec. 5.3 / App. E.2; KiloNeRF Sec. 3.3).

A ``res^3`` grid over the model's bounding box keeps a decayed maximum of the density seen in each
cell; a cell is occupied while that value exceeds ``min(mean, threshold)``. Samples in empty cells
are skipped by the renderer.

The threshold is Instant-NGP's: a cell is empty when one ray step through it would add less than
about 1 % opacity, density * step < 0.01. NVlabs/instant-ngp ``include/neural-graphics-primitives/
nerf_device.cuh`` defines ``NERF_MIN_OPTICAL_THICKNESS() = 0.01`` ("Any alpha below this is
considered invisible") and ``MIN_CONE_STEPSIZE() = STEPSIZE() = SQRT3() / NERF_STEPS()`` (1024);
``src/testbed_nerf.cu`` stores ``optical_thickness = density * MIN_CONE_STEPSIZE()`` per cell
(``splat_grid_samples_nerf_max_nearest_neighbor``) and marks it occupied while it exceeds
``min(NERF_MIN_OPTICAL_THICKNESS(), mean)`` (``grid_to_bitfield``). ngp_pl-derived trainers pass the
same number as a density: ``update_density_grid(0.01*MAX_SAMPLES/3**0.5)``. Here the grid keeps
densities, so the threshold is ``0.01 / step`` per world unit; ``OccupancyGrid.for_steps``
derives the step from this renderer's sampling (``nerf.render.render_rays``: ``n_samples`` uniform
steps over the ray's span in the box).
"""

from __future__ import annotations

import torch

__all__ = ["OccupancyGrid"]


#: Optical thickness (density x step) below which a step is empty: ~1 % opacity (Instant-NGP's
#: ``NERF_MIN_OPTICAL_THICKNESS``).
MIN_OPTICAL_THICKNESS = 0.01


class OccupancyGrid:
    """Args: bbox float (2, 3) world units; res cells per axis; decay per update; threshold density in
    1/world unit (build it with ``for_steps`` to get Instant-NGP's criterion)."""

    @classmethod
    def for_steps(cls, bbox: torch.Tensor, n_samples: int, *, res: int = 64, decay: float = 0.95,
                  min_optical_thickness: float = MIN_OPTICAL_THICKNESS) -> "OccupancyGrid":
        """The grid for a renderer taking ``n_samples`` uniform steps across the box.

        threshold = min_optical_thickness / step with step = box diagonal / n_samples: the longest
        step ``render_rays`` takes (delta = span / n_samples, span <= the diagonal), as Instant-NGP's
        ``sqrt(3) / NERF_STEPS`` is the unit cube's diagonal over its step count. It is the
        conservative choice: a skipped sample would have added at most ~1 % opacity on every ray,
        where the shortest side would let the longest rays skip samples adding more.
        """
        step = float(torch.linalg.vector_norm(bbox[1] - bbox[0])) / n_samples
        return cls(bbox, res=res, decay=decay, threshold=min_optical_thickness / step)

    def __init__(self, bbox: torch.Tensor, *, threshold: float, res: int = 64, decay: float = 0.95):
        self.lo, self.hi = bbox[0].clone(), bbox[1].clone()
        self.res, self.decay, self.threshold = res, decay, threshold
        self.density = torch.zeros(res ** 3)
        self.occupied = torch.ones(res ** 3, dtype=torch.bool)

    def cell_index(self, pts: torch.Tensor) -> torch.Tensor:
        """World points (N, 3) -> flat cell index (N,), int64 (points outside are clamped)."""
        u = ((pts - self.lo) / (self.hi - self.lo) * self.res).long().clamp(0, self.res - 1)
        return (u[:, 0] * self.res + u[:, 1]) * self.res + u[:, 2]

    def query(self, pts: torch.Tensor) -> torch.Tensor:
        """bool (N,): the point's cell is occupied."""
        return self.occupied[self.cell_index(pts)]

    @torch.no_grad()
    def update(self, density_fn, *, cells: int | None = None, generator: torch.Generator | None = None) -> None:
        """Re-measure ``cells`` random cells (all when None) at a jittered point inside each."""
        n = self.res ** 3
        idx = torch.arange(n) if cells is None or cells >= n else torch.randint(0, n, (cells,), generator=generator)
        ijk = torch.stack([idx // (self.res * self.res), (idx // self.res) % self.res, idx % self.res], dim=-1)
        jitter = torch.rand(idx.shape[0], 3, generator=generator)
        pts = self.lo + (ijk.float() + jitter) / self.res * (self.hi - self.lo)
        sigma = torch.cat([density_fn(chunk) for chunk in pts.split(65536)])
        self.density *= self.decay
        self.density[idx] = torch.maximum(self.density[idx], sigma)
        self.occupied = self.density > min(float(self.density.mean()), self.threshold)

    @property
    def fraction(self) -> float:
        """Share of occupied cells."""
        return float(self.occupied.float().mean())

    def state_dict(self) -> dict:
        return {"density": self.density, "res": self.res}

    def load_state_dict(self, state: dict) -> None:
        self.density = state["density"].clone()
        if bool(self.density.any()):
            self.occupied = self.density > min(float(self.density.mean()), self.threshold)
        else:  # never updated (still in warm-up): everything is occupied, as at construction
            self.occupied = torch.ones(self.res ** 3, dtype=torch.bool)
