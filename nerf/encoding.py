"""Multiresolution hash encoding in plain PyTorch (CPU or CUDA), on the geometry of ``nerf.grid``.

Source: Müller et al., Instant-NGP, SIGGRAPH 2022, Sec. 3. Level resolutions, dense-or-hashed
choice, hash primes and corner order all come from ``nerf.grid`` (shared with ``hw/`` and
``sim/tlm``), so the same point reads the same table entries here and in the hardware model.
"""

from __future__ import annotations

import torch
from torch import nn

from nerf import grid

__all__ = ["HashGrid"]


class HashGrid(nn.Module):
    """Hash-grid encoder: points in [0, 1)^3 -> ``levels * features`` trilinearly interpolated features.

    Args:
        levels: L.
        log2_table_size: each level has T = 2**k entries (dense levels use the first (N+1)^3).
        features: F per entry.
        n_min, n_max: coarsest and finest resolution (cells per axis).
        init_scale: entries start uniform in [-init_scale, init_scale] (Instant-NGP: 1e-4).

    Agreement with the hardware: for fixed-point inputs ``X / 2**C`` the cells (and so the table
    entries read) equal those of ``sim.tlm.hash_encoder`` whenever ``C + log2(n_max) <= 24``, so that
    ``x * N`` is exact in float32; beyond that float32 rounding may move a point across a cell face.

    The table is one parameter ``table`` of shape (L, T, F), float32. ``table_hook(level, entries)``
    may transform a level's entries before interpolation (a fake quantizer, for example).
    """

    def __init__(self, *, levels: int = 16, log2_table_size: int = 15, features: int = 2,
                 n_min: int = 16, n_max: int = 512, init_scale: float = 1e-4):
        super().__init__()
        self.levels, self.features, self.log2_table_size = levels, features, log2_table_size
        self.n_min, self.n_max = n_min, n_max
        self.resolutions = grid.level_resolutions(n_min, n_max, levels)
        size = 1 << log2_table_size
        self.dense = tuple(grid.is_dense(r, size) for r in self.resolutions)
        self.table = nn.Parameter(torch.empty(levels, size, features).uniform_(-init_scale, init_scale))
        self.register_buffer("_res", torch.tensor(self.resolutions, dtype=torch.float32), persistent=False)
        self.register_buffer("_offsets", torch.tensor(grid.CORNER_OFFSETS), persistent=False)
        strides = [[r + 1, (r + 1) ** 2] for r in self.resolutions]
        self.register_buffer("_stride", torch.tensor(strides, dtype=torch.int64), persistent=False)
        self.register_buffer("_dense", torch.tensor(self.dense), persistent=False)
        self.table_hook = None

    @property
    def out_dim(self) -> int:
        return self.levels * self.features

    def corner_indices(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Table indices and cell fractions.

        Args:
            x: float (B, 3) in [0, 1).

        Returns:
            ``(indices, frac)``: int64 (B, L, 8) in corner order of ``nerf.grid``, and float (B, L, 3).
        """
        pos = x[:, None, :] * self._res[None, :, None]  # (B, L, 3)
        cell = pos.floor()
        frac = pos - cell
        c = cell.long()
        two = self._offsets[:2, 0]  # (0, 1)
        # Per axis, the two corner coordinates' contributions; corners combine them by broadcasting,
        # flattened (z, y, x) so that corner c = x + 2y + 4z as in nerf.grid.
        p0, p1, p2 = grid.HASH_PRIMES
        hx = (c[..., 0, None] + two) * p0  # (B, L, 2)
        hy = (c[..., 1, None] + two) * p1
        hz = (c[..., 2, None] + two) * p2
        hashed = (hz[..., :, None, None] ^ hy[..., None, :, None] ^ hx[..., None, None, :]).flatten(-3)
        hashed = hashed & ((1 << self.log2_table_size) - 1)
        if not any(self.dense):
            return hashed, frac
        s1, s2 = self._stride[:, 0, None], self._stride[:, 1, None]  # (L, 1): N+1 and (N+1)^2
        dx = c[..., 0, None] + two
        dy = (c[..., 1, None] + two) * s1
        dz = (c[..., 2, None] + two) * s2
        linear = (dz[..., :, None, None] + dy[..., None, :, None] + dx[..., None, None, :]).flatten(-3)
        idx = torch.where(self._dense[:, None], linear, hashed)
        return idx, frac

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode points: float (B, 3) in [0, 1) -> float (B, L * F), level-major."""
        idx, frac = self.corner_indices(x)
        # Corner weights as an outer product; flattening (z, y, x) gives corner c = x + 2y + 4z.
        wd = torch.stack([1.0 - frac, frac], dim=-1)  # (B, L, 3, 2)
        w = (wd[:, :, 2, :, None, None] * wd[:, :, 1, None, :, None] * wd[:, :, 0, None, None, :]).reshape(
            *idx.shape)  # (B, L, 8)
        table = self.table
        if self.table_hook is not None:
            table = torch.stack([self.table_hook(level, table[level]) for level in range(self.levels)])
        size = table.shape[1]
        flat = table.reshape(-1, self.features)
        base = torch.arange(self.levels, device=x.device)[None, :, None] * size
        entries = flat.index_select(0, (idx + base).reshape(-1)).reshape(*idx.shape, self.features)
        return torch.einsum("blc,blcf->blf", w, entries).reshape(x.shape[0], -1)
