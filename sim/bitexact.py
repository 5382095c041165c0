"""The bit-exact reference of the accelerator top, vectorized: whole frames from the exported integers.

It composes the units' reference arithmetic in data-flow order (``hw.top.params``): the hash encoder
(``sim.tlm.hash_encoder.HashEncoderTLM.encode``), the requantizer, the density MLP engine
(``sim.tlm.mlp_engine.reference_forward``), the density activation table, the SH unit once per ray,
the colour MLP engine on the geometry features beside the ray's SH codes, the colour table, and the
compositor. NumPy int64 throughout (no torch), so each step is what the RTL computes; the TLMs are
tested equal to these functions.

The host's side (``host_rays``): per ray its samples' fixed-point positions, its unit direction as
SH-unit codes and its q = delta * sigma step (``sim.tlm.compositor.depth_step``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.tlm.activation import activation_reference
from sim.tlm.compositor import CompositeResult, composite_reference
from sim.tlm.hash_encoder import HashEncoderTLM
from sim.tlm.mlp_engine import reference_forward
from sim.tlm.requant import requant_reference
from sim.tlm.sh_unit import sh_reference

__all__ = ["RayBatch", "SampleCodes", "sample_codes", "render_int"]


@dataclass(frozen=True)
class RayBatch:
    """Rays as the top takes them.

    Attributes:
        coords: int64 (N, 3), the samples' fixed-point positions (``coord_bits``), ray 0's first, near to far.
        counts: int64 (R,), samples per ray (0: the ray hits nothing the occupancy grid keeps).
        dirs: int64 (R, 3), the rays' unit directions as SH-unit codes.
        q: int64 (R,), optical depth per density code (``depth_frac`` fractional bits).
    """

    coords: np.ndarray
    counts: np.ndarray
    dirs: np.ndarray
    q: np.ndarray


@dataclass(frozen=True)
class SampleCodes:
    """Per-sample codes at the compositor's input: sigma int64 (N,), colour int64 (N, 3)."""

    sigma: np.ndarray
    color: np.ndarray


def sample_codes(m, rays: RayBatch, encoder: HashEncoderTLM | None = None) -> SampleCodes:
    """Every sample through encoder, requant, both MLP engines, SH unit and activation tables.

    Args:
        m: a ``quant.int_export.IntModel``.
        encoder: a ``HashEncoderTLM`` over ``m``'s tables (built when None; pass one to reuse it).
    """
    top = m.top
    enc = encoder or HashEncoderTLM(top.encoder, m.tables)
    n = len(rays.coords)
    u = enc.encode(rays.coords).reshape(n, -1) if n else np.zeros((0, top.requant.lanes), np.int64)
    x = requant_reference(u, m.requant_mult, m.requant_offset, m.requant_shift, m.requant_bits, top.requant)
    d = m.density
    z = reference_forward(d.layers, d.weights, d.biases, x)
    sigma = activation_reference(z[:, 0], m.density_table, m.geo_bits, top.density_act)
    sh = sh_reference(rays.dirs, m.sh_mult, m.sh_offset, m.sh_shift, m.geo_bits, top.sh)
    ray = np.repeat(np.arange(len(rays.counts)), rays.counts)
    c = m.color
    logits = reference_forward(c.layers, c.weights, c.biases, np.concatenate([z[:, 1:], sh[ray]], axis=1))
    color = activation_reference(logits, m.color_table, m.bits["color.l2.out"], top.color_act)
    return SampleCodes(sigma, color)


def render_int(m, rays: RayBatch, encoder: HashEncoderTLM | None = None) -> CompositeResult:
    """The top's pixels for a batch of rays: ``CompositeResult`` (pixels int64 (R, 3), ``pixel_bits`` codes)."""
    s = sample_codes(m, rays, encoder)
    return composite_reference(s.sigma, s.color, rays.counts, rays.q, m.pixel, m.top.compositor)
