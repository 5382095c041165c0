"""KiloNeRF: a grid of tiny MLPs, one per cell of a coarse grid over the scene box.

Reiser et al., "KiloNeRF: Speeding up Neural Radiance Fields with Thousands of Tiny MLPs", ICCV 2021,
Sec. 3.1-3.2 and the reference code (``creiser/kilonerf``, ``cfgs/paper/distill/*.yaml``: hidden 32,
2 hidden layers, late-fed direction of 32, 10 position and 4 direction frequencies). Each network:

    layer        in                 out          activation
    density.l0   63 (pe.out)        32           ReLU
    density.l1   32                 32           ReLU
    density.l2   32                 1 + 32       output 0 -> ReLU -> density sigma (1/world unit); 1..32 features
    color.l0     32 + 27 (dir.out)  32           ReLU
    color.l1     32                 3            sigmoid -> RGB

``pe.out`` is NeRF's positional encoding of the point (``[x, sin(2^k pi x), cos(2^k pi x)]``, k < 10,
3 + 60 = 63 elements) in the cell's local coordinates, mapped to [-1, 1]^3 (each network sees its own
cell at full input range); ``dir.out`` encodes the unit view direction with 4 frequencies (27 elements).
All networks share the architecture, have their own weights and biases, and are evaluated together: the
samples are grouped by cell and cut into chunks of ``CHUNK`` samples of one cell, so every layer is one
batched matrix product over (chunk, network) pairs (``torch.baddbmm``), on CPU and CUDA alike.

Quantization hook points as in ``nerf.model.InstantNGP``: ``install_quantizer(name, module)`` routes a
component (``kilonerf_layout`` below lists them) through a module; one quantizer per component is
shared by every network (its weights of all cells pass through it together).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from nerf.layout import kilonerf_layers
from nerf.model import QuantHooks

__all__ = ["KiloNeRF", "KILO_ARCH_KEYS", "kilonerf_layout", "positional_encoding", "grid_shape", "frame_cells", "CHUNK",
           "T_MIN", "POS_FREQS", "DIR_FREQS", "HIDDEN"]

#: Position and direction frequencies and the hidden width of the reference code.
POS_FREQS, DIR_FREQS, HIDDEN = 10, 4, 32
#: Samples of one cell per batched matrix product (the last chunk of a cell is zero-padded).
CHUNK = 64
#: Early ray termination: a ray stops once its transmittance falls below this (KiloNeRF Sec. 3.3).
T_MIN = 0.01
#: Constructor arguments that define the architecture (checked when a checkpoint is loaded).
KILO_ARCH_KEYS = ("model", "grid", "bbox", "hidden", "pos_freqs", "dir_freqs")


def kilonerf_layout(arch: Mapping) -> dict[str, tuple[int, int]]:
    """Layer name -> (in_size, out_size) of one tiny network, in data-flow order (``nerf.layout.kilonerf_layers``).

    Raises:
        KeyError: a key of ``arch`` is missing.
    """
    return {name: (ly.in_size, ly.out_size) for name, ly in kilonerf_layers(arch).items()}


def grid_shape(extent, cells_longest: int) -> tuple[int, int, int]:
    """Cells per axis of a grid of cubic cells over a box: ``cells_longest`` along its longest side,
    ``ceil(side / cell)`` along the others (KiloNeRF's lego box gives 9 x 16 x 10 at 16).

    Raises:
        ValueError: ``cells_longest`` < 1 or a side not positive (names the value).
    """
    if isinstance(cells_longest, bool) or not isinstance(cells_longest, int) or cells_longest < 1:
        raise ValueError(f"cells along the longest axis must be a positive integer, not {cells_longest!r}")
    sides = [float(s) for s in extent]
    if min(sides) <= 0:
        raise ValueError(f"every side of the box must be positive, not {sides}")
    cell = max(sides) / cells_longest
    return tuple(max(1, math.ceil(s / cell - 1e-6)) for s in sides)


def positional_encoding(x: torch.Tensor, freqs: int) -> torch.Tensor:
    """NeRF's encoding (Mildenhall et al. 2020, eq. 4): float (N, 3) -> (N, 3 + 6 * freqs),
    ``[x, sin(2^0 pi x), cos(2^0 pi x), ..., sin(2^(f-1) pi x), cos(2^(f-1) pi x)]`` per frequency."""
    scales = (2.0 ** torch.arange(freqs, device=x.device, dtype=x.dtype)) * math.pi
    ang = (x[:, None, :] * scales[:, None]).reshape(x.shape[0], -1)  # (N, f * 3)
    return torch.cat([x, torch.stack([ang.sin(), ang.cos()], dim=-1).reshape(x.shape[0], -1)], dim=-1)


class KiloNeRF(QuantHooks, nn.Module):
    """The grid of tiny MLPs (module doc). Keyword-only.

    Args:
        grid: cells (nx, ny, nz), each >= 1.
        bbox: ((xmin, ymin, zmin), (xmax, ymax, zmax)) in world units; the grid's cells tile it.
        hidden, pos_freqs, dir_freqs: the tiny network's width and encodings (the paper's by default).
        seed: initialisation seed; every network starts from the same weights (the reference code's
            ``use_same_initialization_for_all_networks``), PyTorch's ``nn.Linear`` uniform init.

    Raises:
        ValueError: a cell count not a positive integer, naming the axis and the value.
    """

    #: Early ray termination threshold of whole-view renders (``nerf.render.model_t_min``).
    t_min = T_MIN

    def __init__(self, *, grid, bbox, hidden: int = HIDDEN, pos_freqs: int = POS_FREQS, dir_freqs: int = DIR_FREQS,
                 seed: int = 0):
        super().__init__()
        grid = list(grid)
        if len(grid) != 3:
            raise ValueError(f"grid must have 3 cell counts (x, y, z), not {grid!r}")
        for axis, n in zip("xyz", grid):
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise ValueError(f"grid cells along {axis} must be a positive integer, not {n!r}")
        self.arch = {"model": "kilonerf", "grid": grid, "bbox": [list(map(float, bbox[0])), list(map(float, bbox[1]))],
                     "hidden": hidden, "pos_freqs": pos_freqs, "dir_freqs": dir_freqs}
        self.register_buffer("bbox", torch.tensor(self.arch["bbox"], dtype=torch.float32))
        self.register_buffer("grid", torch.tensor(grid, dtype=torch.int64))
        n = self.networks
        gen = torch.Generator().manual_seed(seed)
        self.weights, self.biases = nn.ParameterDict(), nn.ParameterDict()
        for name, (fan_in, fan_out) in kilonerf_layout(self.arch).items():
            bound = 1.0 / math.sqrt(fan_in)
            w = (torch.rand(fan_out, fan_in, generator=gen) * 2 - 1) * bound
            b = (torch.rand(fan_out, generator=gen) * 2 - 1) * bound
            self.weights[self._key(name)] = nn.Parameter(w.expand(n, -1, -1).clone())
            self.biases[self._key(name)] = nn.Parameter(b.expand(n, -1).clone())
        self.quant = nn.ModuleDict()

    @property
    def networks(self) -> int:
        """Tiny networks, one per cell: nx * ny * nz."""
        return int(math.prod(self.arch["grid"]))

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def layer_weight(self, name: str) -> torch.Tensor:
        """float (networks, out, in): layer ``name``'s weights of every network, through its quantizer."""
        return self._q(f"{name}.weight", self.weights[self._key(name)])

    # --- geometry ---------------------------------------------------------------------------------
    def cell_of(self, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points (N, 3) -> (flat cell index int64 (N,), local coordinates float (N, 3) in [-1, 1]).

        Cell (i, j, k) has flat index ``(i * ny + j) * nz + k``; points outside the box are clamped to
        the nearest cell.
        """
        g = self.grid.to(pts.device)
        u = (pts - self.bbox[0]) / (self.bbox[1] - self.bbox[0]) * g  # grid units
        ijk = u.floor().long().clamp(min=0)
        ijk = torch.minimum(ijk, g - 1)
        local = ((u - ijk) * 2 - 1).clamp(-1.0, 1.0)
        return (ijk[:, 0] * g[1] + ijk[:, 1]) * g[2] + ijk[:, 2], local

    # --- evaluation -------------------------------------------------------------------------------
    def forward(self, pts: torch.Tensor, dirs: torch.Tensor, cells: torch.Tensor | None = None):
        """World points (N, 3) and unit view directions (N, 3) -> (sigma (N,) 1/world unit, RGB (N, 3)).

        ``cells`` overrides the cell of each point (int64 (N,)), e.g. for training points sampled per
        cell; local coordinates are still taken from the point.
        """
        cell, local = self.cell_of(pts)
        if cells is not None:
            cell = cells
        if pts.shape[0] == 0:
            return pts.new_zeros(0), pts.new_zeros(0, 3)
        plan = _Plan(cell, self.networks)
        h = plan.pack(self._q("pe.out", positional_encoding(local, self.arch["pos_freqs"])))
        h = F.relu(plan.linear(self, "density.l0", h))
        h = F.relu(plan.linear(self, "density.l1", self._q("density.l1.act_in", h)))
        out = self._q("density.l2.out", plan.linear(self, "density.l2", self._q("density.l2.act_in", h)))
        sigma = self._q("density.out", F.relu(out[..., 0]))
        d = plan.pack(self._q("dir.out", positional_encoding(dirs, self.arch["dir_freqs"])))
        h = F.relu(plan.linear(self, "color.l0", torch.cat([out[..., 1:], d], dim=-1)))
        rgb = self._q("color.out", torch.sigmoid(self._q("color.l1.out", plan.linear(
            self, "color.l1", self._q("color.l1.act_in", h)))))
        return plan.unpack(sigma[..., None])[:, 0], plan.unpack(rgb)


def frame_cells(model: KiloNeRF, occupancy, data, view: int, *, n_samples: int, size: int):
    """The samples ``model`` evaluates for view ``view`` of ``data`` rendered at ``size`` x ``size`` pixels, in
    accelerator order (``nerf.render.sample_positions``): (cell int64 (N,), ray int64 (N,)), the cell as
    ``KiloNeRF.cell_of`` numbers it."""
    import numpy as np

    from nerf.render import sample_positions

    u, rays = sample_positions(model, occupancy, data, [view], n_samples=n_samples, height=size, width=size,
                               with_rays=True)
    grid = np.array(model.arch["grid"])
    ijk = np.minimum((u * grid).astype(np.int64), grid - 1)  # u is the point in the box, [0, 1)^3
    return (ijk[:, 0] * grid[1] + ijk[:, 1]) * grid[2] + ijk[:, 2], rays


class _Plan:
    """Samples grouped by cell into chunks of ``CHUNK``: (chunks, CHUNK, features) tensors and the
    network of each chunk, so a layer is one ``baddbmm``."""

    def __init__(self, cell: torch.Tensor, networks: int):
        n = cell.shape[0]
        order = torch.argsort(cell, stable=True)
        sorted_cell = cell[order]
        counts = torch.bincount(sorted_cell, minlength=networks)
        used = counts.nonzero().squeeze(1)
        per = (counts[used] + CHUNK - 1) // CHUNK  # chunks of each used cell
        first_chunk = torch.cumsum(per, 0) - per
        start = torch.cumsum(counts, 0) - counts  # first sorted position of each cell
        slot_chunk = torch.zeros(networks, dtype=torch.long, device=cell.device)
        slot_chunk[used] = first_chunk
        pos = torch.arange(n, device=cell.device) - start[sorted_cell]
        self.chunk = slot_chunk[sorted_cell] + pos // CHUNK
        self.slot = pos % CHUNK
        self.net = torch.repeat_interleave(used, per)  # network of each chunk
        self.order, self.chunks = order, int(per.sum())

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        out = x.new_zeros(self.chunks, CHUNK, x.shape[-1])
        return out.index_put((self.chunk, self.slot), x[self.order])

    def unpack(self, y: torch.Tensor) -> torch.Tensor:
        out = y.new_empty(self.order.shape[0], y.shape[-1])
        return out.index_put((self.order,), y[self.chunk, self.slot])

    def linear(self, model: KiloNeRF, name: str, x: torch.Tensor) -> torch.Tensor:
        w = model.layer_weight(name)[self.net]  # (chunks, out, in)
        b = model.biases[model._key(name)][self.net]
        return torch.baddbmm(b[:, None, :], x, w.transpose(1, 2))
