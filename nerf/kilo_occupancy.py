"""KiloNeRF's empty-space skipping grid and the box its network grid is fitted to, both from a teacher.

KiloNeRF Sec. 3.3: an occupancy grid at a finer resolution than the network grid (16x per axis in the
paper), a voxel occupied when the teacher's density exceeds a threshold at any of 3 x 3 x 3 points
spread over it. The threshold here is the project's empty-step criterion (``nerf.occupancy``:
density x step >= 0.01, ~1 % opacity per step) at the step the KiloNeRF renderer takes.

Two savings on 2 cores, both stated: only voxels whose centre lies in a cell of the teacher's own
occupancy grid dilated by one cell are measured (the others are empty in the teacher's grid, so the
teacher skips them too), and the box is fitted to the teacher's occupied cells with quantiles that drop
isolated floaters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["VoxelOccupancy", "fit_box", "measure_occupancy"]


class VoxelOccupancy:
    """A boolean voxel grid over a box, with the ``query`` the renderer calls (``nerf.render.render_rays``).

    Args:
        bbox: float (2, 3) world units. occupied: bool (nx, ny, nz).
    """

    def __init__(self, bbox: torch.Tensor, occupied: torch.Tensor):
        self.lo, self.hi = bbox[0].clone().float(), bbox[1].clone().float()
        self.occupied = occupied.bool()
        self.shape = torch.tensor(occupied.shape, dtype=torch.int64)

    def voxel_index(self, pts: torch.Tensor) -> torch.Tensor:
        """World points (N, 3) -> (N, 3) int64 voxel indices, clamped to the grid."""
        u = ((pts - self.lo) / (self.hi - self.lo) * self.shape).floor().long()
        return torch.minimum(u.clamp(min=0), self.shape - 1)

    def query(self, pts: torch.Tensor) -> torch.Tensor:
        """bool (N,): the point's voxel is occupied (points outside the box: their nearest voxel)."""
        ijk = self.voxel_index(pts)
        return self.occupied[ijk[:, 0], ijk[:, 1], ijk[:, 2]]

    @property
    def fraction(self) -> float:
        """Share of occupied voxels."""
        return float(self.occupied.float().mean())

    def state_dict(self) -> dict:
        return {"bbox": torch.stack([self.lo, self.hi]), "occupied": self.occupied.clone()}

    @classmethod
    def from_state(cls, state: dict) -> "VoxelOccupancy":
        return cls(state["bbox"], state["occupied"])


def fit_box(occupancy, *, quantile: float = 0.001, margin_cells: int = 1) -> torch.Tensor:
    """The box KiloNeRF's grid covers: per axis, the [q, 1 - q] quantiles of the teacher's occupied
    cells (``nerf.occupancy.OccupancyGrid``), widened by ``margin_cells`` cells and kept inside its box.

    Returns:
        float (2, 3) world units.

    Raises:
        ValueError: the teacher's grid has no occupied cell.
    """
    res = occupancy.res
    occ = occupancy.occupied.reshape(res, res, res)
    idx = occ.nonzero().float()
    if idx.shape[0] == 0:
        raise ValueError("the teacher's occupancy grid has no occupied cell: nothing to fit the box to")
    lo_i = torch.quantile(idx, quantile, dim=0) - margin_cells
    hi_i = torch.quantile(idx, 1.0 - quantile, dim=0) + 1 + margin_cells
    lo_i, hi_i = lo_i.clamp(0, res), hi_i.clamp(0, res)
    cell = (occupancy.hi - occupancy.lo) / res
    return torch.stack([occupancy.lo + lo_i * cell, occupancy.lo + hi_i * cell])


@torch.no_grad()
def measure_occupancy(density_fn, teacher_occupancy, bbox: torch.Tensor, shape, threshold: float, *,
                      chunk: int = 1 << 16, progress: bool = True) -> VoxelOccupancy:
    """The voxel grid (module doc): occupied if ``density_fn`` > ``threshold`` at any of 3 x 3 x 3 points
    (voxel-relative offsets 1/6, 1/2, 5/6 per axis) of a voxel whose centre lies in the teacher's dilated
    occupied cells.

    Args:
        density_fn: world points float (n, 3) -> density float (n,) (1/world unit).
        teacher_occupancy: the teacher's ``OccupancyGrid``.
        bbox: float (2, 3); shape: voxels (nx, ny, nz); threshold: density (1/world unit).
    """
    from tqdm import tqdm

    shape_t = torch.tensor(list(shape))
    axes = [torch.arange(n, dtype=torch.float32) for n in shape]
    ijk = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    size = (bbox[1] - bbox[0]) / shape_t
    centres = bbox[0] + (ijk + 0.5) * size
    res = teacher_occupancy.res
    dil = F.max_pool3d(teacher_occupancy.occupied.reshape(1, 1, res, res, res).float(), 3, stride=1, padding=1)
    teacher = dil.reshape(-1) > 0
    candidates = teacher[teacher_occupancy.cell_index(centres)].nonzero().squeeze(1)
    offsets = torch.tensor([1 / 6, 0.5, 5 / 6])
    sub = torch.stack(torch.meshgrid(offsets, offsets, offsets, indexing="ij"), dim=-1).reshape(-1, 3)  # (27, 3)
    occupied = torch.zeros(ijk.shape[0], dtype=torch.bool)
    per = max(1, chunk // sub.shape[0])
    for a in tqdm(range(0, candidates.numel(), per), desc="occupancy", unit="chunk", disable=not progress,
                  leave=False):
        vox = candidates[a:a + per]
        pts = (bbox[0] + (ijk[vox, None, :] + sub[None]) * size).reshape(-1, 3)
        sigma = density_fn(pts).reshape(vox.numel(), sub.shape[0])
        occupied[vox] = (sigma > threshold).any(dim=1)
    return VoxelOccupancy(bbox, occupied.reshape(*shape))
