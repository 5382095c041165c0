"""Model of ``hw.compositor.Compositor``: the bit-exact compositing arithmetic (``composite_reference``),
vectorized over whole frames.

Per ray (``hw.compositor.params`` has the derivation), with Ft = trans_bits, G = exp_index_bits:

    D_0 = 0;  D_{i+1} = min(D_i + sigma_i * q, 2^depth_bits - 1)      optical depth, depth_frac bits
    T(D) = round_shift(EXP2[g], k) if k <= Ft + 1 else 0,             transmittance, Ft bits
           (k, g) = divmod(round_shift(D * L2E, depth_frac + l2e_bits - G), 2^G),
           EXP2[g] = round(2^Ft * 2^(-g / 2^G)),  L2E = round(log2(e) * 2^l2e_bits)
    sample i contributes iff D_i < depth_limit (early ray termination: it and every later sample of
    the ray add nothing once the depth reached the limit, D stops there; T is nonincreasing in D, so
    ``pixel_constants`` sets the limit to the smallest D with T(D) <= floor(t_min 2^Ft), i.e. the
    software renderer's test T > t_min)
    w_i = T(D_i) - T(D_{i+1});  A_c = sum_i w_i * color_i,c;  T_end = T(D) where the ray stopped
    pixel_c = clamp(round_shift(A_c * M_c + (2^Ft - T_end) * M_l + T_end * M_b, S), pixel_bits, unsigned)

The software renderer (``nerf.render``) computes alpha_i = 1 - exp(-sigma_i delta), T_i as the product
of (1 - alpha_j) and ``rgb = sum_i T_i alpha_i c_i + T_N bg``; with one delta per ray, T_i = exp(-D_i)
and T_i alpha_i = T_i - T_{i+1}, the same sums.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hw.compositor.params import CompositorParams
from sim.tlm.fixed import clamp_bits, round_shift

__all__ = ["PixelConstants", "CompositeResult", "exp2_table", "transmittance", "composite_reference",
           "pixel_constants", "depth_step"]


@dataclass(frozen=True)
class PixelConstants:
    """The compositor's run-time constants (loaded once per model).

    Fields:
        mult_color: M_c, the colour code step in pixel units (signed ``pix_mult_bits``).
        mult_low: M_l, the colour offset in pixel units (signed).
        mult_background: M_b, the background in pixel units (signed).
        shift: S.
        depth_limit: early ray termination: a sample contributes only while D < this (``depth_frac``
            fractional bits).
    """

    mult_color: int
    mult_low: int
    mult_background: int
    shift: int
    depth_limit: int


@dataclass(frozen=True)
class CompositeResult:
    """``composite_reference``'s outputs for R rays.

    Attributes:
        pixels: int64 (R, 3), unsigned ``pixel_bits`` codes.
        trans: int64 (R,), T_end (``trans_bits`` fractional bits).
        contributed: int64 (R,), samples before early ray termination.
    """

    pixels: np.ndarray
    trans: np.ndarray
    contributed: np.ndarray


def exp2_table(params: CompositorParams) -> np.ndarray:
    """EXP2[g] = round(2^Ft * 2^(-g / 2^G)), int64 (2^G,); EXP2[0] = 2^Ft."""
    g = np.arange(1 << params.exp_index_bits, dtype=np.float64)
    return np.rint(2.0 ** (params.trans_bits - g / (1 << params.exp_index_bits))).astype(np.int64)


def transmittance(depth, params: CompositorParams) -> np.ndarray:
    """T(D) (module doc) for optical depths D (int array, ``depth_frac`` fractional bits), int64."""
    p = params
    d = np.asarray(depth, dtype=np.int64)
    y = round_shift(d * p.l2e, p.depth_frac + p.l2e_bits - p.exp_index_bits)
    k, g = y >> p.exp_index_bits, y & ((1 << p.exp_index_bits) - 1)
    t = round_shift(exp2_table(p)[g], np.minimum(k, p.trans_bits + 2))
    return np.where(k > p.trans_bits + 1, 0, t)


def composite_reference(sigma, color, counts, q, consts: PixelConstants, params: CompositorParams) -> CompositeResult:
    """Pixels of R rays from their samples (module doc).

    Args:
        sigma: int (N,), unsigned density codes, the samples of ray 0 first, then ray 1, ...
        color: int (N, 3), unsigned colour codes.
        counts: int (R,), samples per ray (0 allowed: the pixel is the background); sum N.
        q: int (R,), each ray's optical depth per density code (``depth_frac`` fractional bits).
        consts: the pixel constants.

    Raises:
        ValueError: the counts do not add up to the samples.
    """
    p = params
    sigma = np.asarray(sigma, np.int64)
    color = np.asarray(color, np.int64).reshape(-1, 3)
    counts = np.asarray(counts, np.int64)
    q = np.asarray(q, np.int64)
    if counts.sum() != len(sigma) or len(color) != len(sigma) or len(q) != len(counts):
        raise ValueError(f"counts sum to {int(counts.sum())} for {len(sigma)} samples and {len(color)} colours, "
                         f"{len(q)} q for {len(counts)} rays")
    rays = len(counts)
    dmax = (1 << p.depth_bits) - 1
    ray = np.repeat(np.arange(rays), counts)
    step = np.minimum(sigma * q[ray], dmax + 1)  # clipped before the sum, so int64 cannot overflow
    csum = np.cumsum(step)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    before = np.concatenate([[0], csum[:-1]]) - np.concatenate([[0], csum])[start][ray]
    after = before + step
    t_before = transmittance(np.minimum(before, dmax), p)
    t_after = transmittance(np.minimum(after, dmax), p)
    alive = before < consts.depth_limit
    w = np.where(alive, t_before - t_after, 0)
    acc = np.zeros((rays, 3), np.int64)
    np.add.at(acc, ray, w[:, None] * color)
    contributed = np.bincount(ray, weights=alive, minlength=rays).astype(np.int64)
    # T_end: after the last contributing sample (samples contribute in a prefix of each ray)
    t_end = np.full(rays, 1 << p.trans_bits, np.int64)
    last = start + contributed - 1
    has = contributed > 0
    t_end[has] = t_after[last[has]]
    full = np.int64(1 << p.trans_bits)
    pix = round_shift(acc * consts.mult_color + ((full - t_end) * consts.mult_low)[:, None]
                      + (t_end * consts.mult_background)[:, None], consts.shift)
    return CompositeResult(clamp_bits(pix, p.pixel_bits, signed=False), t_end, contributed)


def pixel_constants(color_step: float, color_low: float, background: float, t_min: float,
                    params: CompositorParams) -> PixelConstants:
    """The constants for colour codes on the grid ``value = color_step * code + color_low``, a background
    value in [0, 1] and the software renderer's ``t_min``: ``M = round(v (2^P - 1) 2^(S - Ft))`` for v the
    step, offset and background, S the largest shift keeping each inside ``pix_mult_bits`` (signed);
    depth limit the smallest D with ``T(D) <= floor(t_min * 2^Ft)`` (binary search; T is nonincreasing).

    Raises:
        ValueError: no shift fits.
    """
    p = params
    scale = (1 << p.pixel_bits) - 1
    lim = 1 << (p.pix_mult_bits - 1)
    for s in range(p.pixel_shift_max, -1, -1):
        m = [round(v * scale * 2.0 ** (s - p.trans_bits)) for v in (color_step, color_low, background)]
        if max(abs(v) for v in m) < lim:
            return PixelConstants(m[0], m[1], m[2], s, _depth_limit(math.floor(t_min * (1 << p.trans_bits)), p))
    raise ValueError(f"pixel constants do not fit pix_mult_bits = {p.pix_mult_bits}")


def _depth_limit(threshold: int, p: CompositorParams) -> int:
    lo, hi = 0, (1 << p.depth_bits) - 1  # T(hi) = 0 <= threshold
    while lo < hi:
        mid = (lo + hi) // 2
        if int(transmittance(mid, p)) <= threshold:
            hi = mid
        else:
            lo = mid + 1
    return lo


def depth_step(delta, sigma_step: float, params: CompositorParams) -> np.ndarray:
    """q per ray: ``round(delta * sigma_step * 2^depth_frac)`` for ray steps ``delta`` (float (R,), world
    units) and the density code step (1/world unit), int64.

    Raises:
        ValueError: a q that does not fit ``q_bits`` (naming the ray and value).
    """
    q = np.rint(np.asarray(delta, np.float64) * sigma_step * (1 << params.depth_frac)).astype(np.int64)
    bad = np.flatnonzero((q < 0) | (q >= 1 << params.q_bits))
    if bad.size:
        raise ValueError(f"ray {int(bad[0])}: q = {int(q[bad[0]])} does not fit q_bits = {params.q_bits}")
    return q
