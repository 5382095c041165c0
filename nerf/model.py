"""Instant-NGP-style radiance field, as in the A-CAQ reference code.

Architecture (Müller et al. 2022; Liu et al., "Content-Aware Radiance Fields", A-CAQ): hash grid
(L = 16 levels, F = 2 -> 32 features) -> density MLP 32 -> 64 -> 16 (ReLU, no biases); output 0
through a truncated exp is the density sigma (1/world unit), outputs 1..15 are geometry features ->
concatenated with the degree-4 SH view encoding (16) -> colour MLP 31 -> 64 -> 64 -> 3 (ReLU,
sigmoid, no biases).

Layer shapes and component names: ``nerf.layout.model_layout(arch)`` (torch-free, re-exported here),
which ``quant/`` and ``sim/`` read without building the model.

Quantization hook points: every quantizable tensor passes through ``self.quant[name]`` when such a
module is installed (``install_quantizer``); the names are those of ``quant.policy.component_names``
(``hash.levelNN``, ``enc.out``, ``density.l0.weight`` ...). ``nerf`` never imports ``quant``: it only
offers the points. An MLP layer replaced by another module (``quant.hadamard.dhq_wrap`` puts DHQLinear
wrappers in place of the ``nn.Linear`` layers) is called as it is, and quantizes its own weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nerf.encoding import HashGrid
from nerf.layout import ARCH_KEYS, model_layout
from nerf.sh import sh_encode

__all__ = ["InstantNGP", "QuantHooks", "trunc_exp", "ARCH_KEYS", "model_layout"]


class _TruncExp(torch.autograd.Function):
    """exp(x) whose gradient uses exp(min(x, 15)), as in Instant-NGP / torch-ngp, to avoid blow-ups."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15.0))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    return _TruncExp.apply(x)


class QuantHooks:
    """The quantization hook points of a field (module doc): a component ``name`` passes through
    ``self.quant[name]`` once ``install_quantizer`` put a module there. Needs ``self.quant``, an ``nn.ModuleDict``."""

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "__")

    def install_quantizer(self, name: str, module: nn.Module) -> None:
        """Route component ``name`` (a ``quant.policy`` name) through ``module``."""
        self.quant[self._key(name)] = module

    def clear_quantizers(self) -> None:
        self.quant = nn.ModuleDict()

    def _q(self, name: str, x: torch.Tensor) -> torch.Tensor:
        key = self._key(name)
        return self.quant[key](x) if key in self.quant else x


class InstantNGP(QuantHooks, nn.Module):
    """The radiance field. All keyword-only; ``bbox`` is ((xmin, ymin, zmin), (xmax, ymax, zmax)) in world units."""

    def __init__(self, *, levels: int = 16, log2_table_size: int = 15, features: int = 2, n_min: int = 16,
                 n_max: int = 512, hidden: int = 64, geo_features: int = 15,
                 bbox=((-1.5, -1.5, -1.5), (1.5, 1.5, 1.5))):
        super().__init__()
        self.arch = {"levels": levels, "log2_table_size": log2_table_size, "features": features, "n_min": n_min,
                     "n_max": n_max, "hidden": hidden, "geo_features": geo_features,
                     "bbox": [list(map(float, bbox[0])), list(map(float, bbox[1]))]}
        self.encoding = HashGrid(levels=levels, log2_table_size=log2_table_size, features=features,
                                 n_min=n_min, n_max=n_max)
        # layer shapes from the one torch-free definition (nerf.layout), shared with quant/ and sim/
        for shape in model_layout(self.arch).layers.values():
            setattr(self, shape.name.replace(".", "_"), nn.Linear(shape.in_size, shape.out_size, bias=False))
        box = torch.tensor(bbox, dtype=torch.float32)
        self.register_buffer("bbox", box)
        self.quant = nn.ModuleDict()
        self.encoding.table_hook = lambda level, t: self._q(f"hash.level{level:02d}", t)

    def _linear(self, name: str, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if type(layer) is not nn.Linear:  # a wrapper that quantizes itself (quant.hadamard.DHQLinear)
            return layer(x)
        return F.linear(x, self._q(f"{name}.weight", layer.weight))

    # --- field ----------------------------------------------------------------------------------
    def normalize(self, pts: torch.Tensor) -> torch.Tensor:
        """World points (B, 3) -> [0, 1)^3 of the bounding box (clamped inside)."""
        lo, hi = self.bbox[0], self.bbox[1]
        return ((pts - lo) / (hi - lo)).clamp(0.0, 1.0 - 1e-6)

    def density(self, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points (B, 3) -> (sigma (B,) in 1/world unit, geometry features (B, 15))."""
        h = self._q("enc.out", self.encoding(self.normalize(pts)))
        h = F.relu(self._linear("density.l0", self.density_l0, h))
        h = self._q("density.l1.act_in", h)
        out = self._q("density.l1.out", self._linear("density.l1", self.density_l1, h))
        sigma = self._q("density.out", trunc_exp(out[:, 0]))
        return sigma, out[:, 1:]

    def color(self, geo: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
        """Geometry features (B, 15) and unit view directions (B, 3) -> RGB (B, 3) in [0, 1]."""
        sh = self._q("sh.out", sh_encode(dirs))
        h = F.relu(self._linear("color.l0", self.color_l0, torch.cat([geo, sh], dim=-1)))
        h = F.relu(self._linear("color.l1", self.color_l1, self._q("color.l1.act_in", h)))
        out = self._q("color.l2.out", self._linear("color.l2", self.color_l2, self._q("color.l2.act_in", h)))
        return self._q("color.out", torch.sigmoid(out))

    def forward(self, pts: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sigma, geo = self.density(pts)
        return sigma, self.color(geo, dirs)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
