"""TensoRF-VM radiance field (Chen et al., "TensoRF: Tensorial Radiance Fields", ECCV 2022, Sec. 4).

Both density and appearance are sums of vector-matrix (VM) components, eq. 3 / 5 of the paper:
for the three modes ``m`` (the plane spans two axes, the line the third; the reference code's
``matMode = [[0, 1], [0, 2], [1, 2]]`` and ``vecMode = [2, 1, 0]``),

    sigma_feat(x) = sum_m sum_r  M^m_{sigma,r}(x_plane(m)) * v^m_{sigma,r}(x_line(m))
    a(x)          = B · concat_m,r ( M^m_{c,r}(x_plane(m)) * v^m_{c,r}(x_line(m)) )

with bilinear (plane) and linear (line) interpolation, the basis matrix B (3 R_c -> ``app_dim``), the
density ``sigma = distance_scale * softplus(sigma_feat + density_shift)`` (the reference code's
``softplus`` activation, shift -10 and ``distance_scale`` 25 folded into sigma, so that the renderer's
``alpha = 1 - exp(-sigma * delta)`` with delta in world units matches theirs), and the appearance decoder
of the paper's main results: the small MLP ``MLP_Fea`` (input: the features, the view direction and
their frequency encodings with ``fea_pe`` / ``view_pe`` frequencies; two ReLU layers; sigmoid RGB).

Plane ``m`` is a float32 tensor (1, R, grid[plane(m)[1]], grid[plane(m)[0]]), line ``m`` is
(1, R, grid[line(m)], 1), as in the reference code. ``feature_planes(arch)`` (torch-free) lists
their names and shapes: that list is what ``quant.ectensorf`` compresses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from nerf.model import QuantHooks

__all__ = ["TensoRF", "MAT_MODE", "VEC_MODE", "TENSORF_ARCH_KEYS", "grid_for_voxels", "feature_planes",
           "frequency_encoding"]

MAT_MODE = ((0, 1), (0, 2), (1, 2))
VEC_MODE = (2, 1, 0)
#: Fields of ``TensoRF.arch`` that must match for a checkpoint to load (the grid size changes while training).
TENSORF_ARCH_KEYS = ("model", "density_components", "app_components", "app_dim", "hidden", "view_pe", "fea_pe",
                     "bbox", "density_shift", "distance_scale")


def grid_for_voxels(voxels: int, bbox) -> list[int]:
    """Grid size per axis for ``voxels`` cubic voxels in ``bbox`` (TensoRF's ``N_to_reso``)."""
    lo, hi = bbox
    extent = [float(h) - float(l) for l, h in zip(lo, hi)]
    size = (math.prod(extent) / voxels) ** (1.0 / 3.0)
    return [max(2, int(e / size)) for e in extent]


def feature_planes(arch: Mapping) -> dict[str, tuple[int, int, int]]:
    """Name -> (channels, height, width) of every feature plane of ``arch``, in the model's order:
    ``density.plane0..2`` then ``app.plane0..2`` (the matrices M of eq. 3; the lines are not listed)."""
    grid = arch["grid"]
    out = {}
    for kind, comps in (("density", arch["density_components"]), ("app", arch["app_components"])):
        for m, (a, b) in enumerate(MAT_MODE):
            out[f"{kind}.plane{m}"] = (int(comps), int(grid[b]), int(grid[a]))
    return out


def frequency_encoding(x: torch.Tensor, freqs: int) -> torch.Tensor:
    """TensoRF's ``positional_encoding``: (B, D) -> (B, 2 D freqs), sin then cos of x * 2^k, k < freqs."""
    scaled = (x[..., None] * (2.0 ** torch.arange(freqs, device=x.device, dtype=x.dtype))).reshape(x.shape[0], -1)
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=-1)


class TensoRF(QuantHooks, nn.Module):
    """The VM-decomposed field. All keyword-only; ``bbox`` ((xmin, ymin, zmin), (xmax, ymax, zmax)) world units.

    Args:
        grid: voxels per axis [x, y, z] (``grid_for_voxels``).
        density_components, app_components: R_sigma and R_c per mode (paper: 16 and 48).
        app_dim: rows of the basis matrix B (paper: 27). hidden: the decoder MLP's width (paper: 128).
        view_pe, fea_pe: frequencies of the view-direction and feature encodings (paper: 2 and 2).
        init_scale: std of the Gaussian initialisation of planes and lines (reference code: 0.1).
    """

    t_min = 1e-4

    def __init__(self, *, grid, bbox, density_components: int = 8, app_components: int = 24, app_dim: int = 27,
                 hidden: int = 64, view_pe: int = 2, fea_pe: int = 2, density_shift: float = -10.0,
                 distance_scale: float = 25.0, init_scale: float = 0.1, model: str = "tensorf"):
        super().__init__()
        self.arch = {"model": "tensorf", "grid": [int(g) for g in grid], "density_components": density_components,
                     "app_components": app_components, "app_dim": app_dim, "hidden": hidden, "view_pe": view_pe,
                     "fea_pe": fea_pe, "bbox": [list(map(float, bbox[0])), list(map(float, bbox[1]))],
                     "density_shift": float(density_shift), "distance_scale": float(distance_scale)}
        self.register_buffer("bbox", torch.tensor(bbox, dtype=torch.float32))
        g = self.arch["grid"]
        for kind, comps in (("density", density_components), ("app", app_components)):
            planes = [nn.Parameter(init_scale * torch.randn(1, comps, g[b], g[a])) for a, b in MAT_MODE]
            lines = [nn.Parameter(init_scale * torch.randn(1, comps, g[v], 1)) for v in VEC_MODE]
            setattr(self, f"{kind}_planes", nn.ParameterList(planes))
            setattr(self, f"{kind}_lines", nn.ParameterList(lines))
        self.basis = nn.Linear(3 * app_components, app_dim, bias=False)
        in_mlp = app_dim + 3 + 2 * view_pe * 3 + 2 * fea_pe * app_dim
        self.mlp = nn.Sequential(nn.Linear(in_mlp, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, hidden),
                                 nn.ReLU(inplace=True), nn.Linear(hidden, 3))
        nn.init.constant_(self.mlp[-1].bias, 0)
        self.quant = nn.ModuleDict()
        #: planes used in place of the parameters (name -> tensor), e.g. decoded by ``quant.ectensorf``
        self.plane_override: dict[str, torch.Tensor] = {}

    # --- the factorisation ------------------------------------------------------------------------
    def plane(self, name: str) -> torch.Tensor:
        """The plane ``name`` of ``feature_planes`` (``density.plane0`` ..), float (1, R, H, W): its override if
        one is installed, else the parameter through its quantization hook."""
        if name in self.plane_override:
            return self.plane_override[name]
        kind, plane = name.split(".")
        return self._q(name, getattr(self, f"{kind}_planes")[int(plane[-1])])

    def normalize(self, pts: torch.Tensor) -> torch.Tensor:
        """World points (B, 3) -> [-1, 1]^3 of the bounding box (``grid_sample``'s coordinates)."""
        lo, hi = self.bbox[0], self.bbox[1]
        return ((pts - lo) / (hi - lo) * 2.0 - 1.0).clamp(-1.0, 1.0)

    def _components(self, kinds: tuple[str, ...], xyz: torch.Tensor) -> list[torch.Tensor]:
        """Per mode: plane(x) * line(x), float (sum of R over ``kinds``, B); the kinds' planes of one mode
        share a shape, so they are sampled together (one ``grid_sample`` per mode for planes and lines)."""
        out = []
        for m, ((a, b), v) in enumerate(zip(MAT_MODE, VEC_MODE)):
            pc = xyz[:, [a, b]].view(1, -1, 1, 2)
            lc = torch.stack([torch.zeros_like(xyz[:, v]), xyz[:, v]], dim=-1).view(1, -1, 1, 2)
            plane = torch.cat([self.plane(f"{k}.plane{m}") for k in kinds], dim=1)
            line = torch.cat([self._q(f"{k}.line{m}", getattr(self, f"{k}_lines")[m]) for k in kinds], dim=1)
            p = F.grid_sample(plane, pc, mode="bilinear", align_corners=True).view(-1, xyz.shape[0])
            ln = F.grid_sample(line, lc, mode="bilinear", align_corners=True).view(-1, xyz.shape[0])
            out.append(p * ln)
        return out

    def _sigma(self, comps: list[torch.Tensor]) -> torch.Tensor:
        r = self.arch["density_components"]
        feat = sum(c[:r].sum(0) for c in comps)
        return self.arch["distance_scale"] * F.softplus(feat + self.arch["density_shift"])

    def density(self, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points (B, 3) -> (sigma (B,) in 1/world unit, normalised points (B, 3))."""
        xyz = self.normalize(pts)
        return self._sigma(self._components(("density",), xyz)), xyz

    def _color(self, comps: list[torch.Tensor], dirs: torch.Tensor) -> torch.Tensor:
        r = comps[0].shape[0] - self.arch["app_components"]
        feat = self.basis(torch.cat([c[r:] for c in comps], dim=0).t())
        h = torch.cat([feat, dirs, frequency_encoding(feat, self.arch["fea_pe"]),
                       frequency_encoding(dirs, self.arch["view_pe"])], dim=-1)
        return torch.sigmoid(self.mlp(h))

    def color(self, xyz: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
        """Normalised points (B, 3) and unit view directions (B, 3) -> RGB (B, 3) in [0, 1]."""
        return self._color(self._components(("app",), xyz), dirs)

    def forward(self, pts: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points (B, 3), unit directions (B, 3) -> (sigma (B,) 1/world unit, RGB (B, 3))."""
        comps = self._components(("density", "app"), self.normalize(pts))
        return self._sigma(comps), self._color(comps, dirs)

    # --- training helpers -------------------------------------------------------------------------
    def grid_parameters(self) -> list[nn.Parameter]:
        """Planes and lines (the reference code's ``lr_init`` group)."""
        return [*self.density_planes, *self.density_lines, *self.app_planes, *self.app_lines]

    def density_l1(self) -> torch.Tensor:
        """The reference code's ``density_L1``: sum over modes of mean |plane| + mean |line|."""
        return sum(p.abs().mean() + ln.abs().mean() for p, ln in zip(self.density_planes, self.density_lines))

    @torch.no_grad()
    def upsample(self, grid) -> None:
        """Resample every plane and line to ``grid`` voxels per axis (bilinear, align_corners, as the
        reference ``upsample_volume_grid``); replaces the parameters (rebuild the optimiser)."""
        g = [int(x) for x in grid]
        for kind in ("density", "app"):
            planes, lines = getattr(self, f"{kind}_planes"), getattr(self, f"{kind}_lines")
            for m, ((a, b), v) in enumerate(zip(MAT_MODE, VEC_MODE)):
                planes[m] = nn.Parameter(F.interpolate(planes[m].data, size=(g[b], g[a]), mode="bilinear",
                                                       align_corners=True))
                lines[m] = nn.Parameter(F.interpolate(lines[m].data, size=(g[v], 1), mode="bilinear",
                                                      align_corners=True))
        self.arch["grid"] = g

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def feature_parameter_count(self) -> int:
        """Elements of the feature planes (what ECTensoRF compresses)."""
        return sum(math.prod(s) for s in feature_planes(self.arch).values())
