"""Occupancy grid for empty-space skipping (Instant-NGP Sec. 5.3 / App. E.2; KiloNeRF Sec. 3.3).

A ``res^3`` grid over the model's bounding box keeps a decayed maximum of the density seen in each
cell; a cell is occupied while that value exceeds ``min(mean, threshold)``. Samples in empty cells
are skipped by the renderer.
"""

from __future__ import annotations

import torch

__all__ = ["OccupancyGrid"]


class OccupancyGrid:
    """Args: bbox float (2, 3) world units; res cells per axis; decay per update; threshold in 1/world unit."""

    def __init__(self, bbox: torch.Tensor, *, res: int = 64, decay: float = 0.95, threshold: float = 0.01):
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
