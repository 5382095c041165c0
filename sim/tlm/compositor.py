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

``CompositorTLM`` is the cycle-for-cycle model of the unit (payloads from ``composite_reference``; the
cycle of every ray-header, sample and pixel transfer from ``CompositorTLM.schedule``, which steps the
RTL's control state). Cycle 0 is the first cycle after the constants were written (the unit idle); a
transfer "at cycle t" means valid and ready were both high when cycle t's closing rising edge sampled
them. Ray k's header is offered from ``max(ray_offers[k], header transfer of ray k-1 + 1)``, sample j
from ``max(sample_offers[j], transfer of sample j-1 + 1)``; ``ready[t]`` is the pixel output's ready.
With P = ``PIPELINE_STAGES``, H = ``HEADER_DEPTH``, Q = ``OUT_FIFO_DEPTH`` (``hw.compositor.rtl`` has
the derivation), per cycle t:

    rays.ready    = (headers queued < H) and (credits < Q)      credits: rays accepted, pixel not out
    samples.ready = the head ray (queued since before t) has samples
    a head ray without samples is a background token at t; a head ray's last sample pops it at t
    a ray's pixel is pushed P cycles after its last token and may transfer from the next cycle on

Full rate (everything offered at cycle 0, output always ready): ``stream_cycles`` = sum_k max(count_k, 1)
+ P + 2.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from hw.compositor.params import CompositorParams
from sim.tlm.fixed import clamp_bits, fit_shift, round_shift
from sim.tlm.transfers import ReadyPattern, check_offers, check_range, pack_vector

__all__ = ["PixelConstants", "CompositeResult", "exp2_table", "transmittance", "composite_reference",
           "CompositorTiming", "pixel_constants", "depth_step", "check_constants", "constants_word", "ray_payload",
           "sample_payload", "pixel_payload", "stream_cycles", "CompositorRun", "CompositorTLM"]


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
    fit = fit_shift(lambda s: [[round(v * scale * 2.0 ** (s - p.trans_bits)) for v in (color_step, color_low,
                                                                                       background)]],
                    (1 << (p.pix_mult_bits - 1),), p.pixel_shift_max)
    if fit is None:
        raise ValueError(f"pixel constants do not fit pix_mult_bits = {p.pix_mult_bits}")
    s, (m,) = fit
    return PixelConstants(m[0], m[1], m[2], s, _depth_limit(math.floor(t_min * (1 << p.trans_bits)), p))


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


# --- the unit's ports (the drivers' view) ----------------------------------------------------------------
def check_constants(consts: PixelConstants, params: CompositorParams) -> PixelConstants:
    """``consts`` if every field fits the unit's ``cfg`` word: the multipliers in signed ``pix_mult_bits``,
    S in [0, ``pixel_shift_max``], the depth limit in [0, 2^depth_bits - 1].

    Raises:
        ValueError: naming the field, its range and the value.
    """
    p = params
    half = 1 << (p.pix_mult_bits - 1)
    ranges = {"mult_color": (-half, half - 1), "mult_low": (-half, half - 1), "mult_background": (-half, half - 1),
              "shift": (0, p.pixel_shift_max), "depth_limit": (0, p.depth_max)}
    for name, (lo, hi) in ranges.items():
        value = getattr(consts, name)
        if not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
            raise ValueError(f"PixelConstants.{name} must be an integer in [{lo}, {hi}], not {value!r}")
    return consts


def constants_word(params: CompositorParams, consts: PixelConstants) -> int:
    """The ``cfg.data`` word of the constants: the fields of ``params.config_fields`` from bit 0 up, the
    multipliers as two's complement (``check_constants`` first)."""
    check_constants(consts, params)
    word, pos = 0, 0
    for name, bits in params.config_fields:
        word |= (int(getattr(consts, name)) & ((1 << bits) - 1)) << pos
        pos += bits
    return word


def ray_payload(q: int, count: int, params: CompositorParams) -> int:
    """``rays`` payload: q in the low ``q_bits``, then count (``count_bits``)."""
    return int(q) | (int(count) << params.q_bits)


def sample_payload(sigma: int, color, params: CompositorParams) -> int:
    """``samples`` payload: sigma in the low ``sigma_bits``, then the 3 colour codes (``color_bits`` each, R first)."""
    return int(sigma) | (pack_vector(color, params.color_bits) << params.sigma_bits)


def pixel_payload(pixel, params: CompositorParams) -> int:
    """``pixels`` payload: 3 x ``pixel_bits``, R in the low bits."""
    return pack_vector(pixel, params.pixel_bits)


def stream_cycles(params: CompositorParams, counts) -> int:
    """Total cycles (last pixel transfer + 1) of rays with these sample counts when every header and
    sample is offered from cycle 0 and the output is always ready: ``sum_k max(count_k, 1) + P + 2``
    (P = ``PIPELINE_STAGES``; 0 for no rays). One sample per cycle; a ray without samples takes a cycle."""
    c = np.asarray(counts, np.int64)
    return int(np.maximum(c, 1).sum()) + params.PIPELINE_STAGES + 2 if len(c) else 0


# --- the cycle model ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompositorRun:
    """What ``CompositorTLM.run`` predicts for R rays with N samples in all.

    Attributes:
        ray_accept_cycles: int64 (R,), cycle of each header transfer.
        sample_accept_cycles: int64 (N,), cycle of each sample transfer.
        out_cycles: int64 (R,), cycle of each pixel transfer (pixels leave in ray order).
        pixels: int64 (R, 3), unsigned ``pixel_bits`` codes (``composite_reference``).
        trans: int64 (R,), T_end. contributed: int64 (R,), samples before early ray termination.
        payloads: R pixel payloads (``pixel_payload``).
        cycles: last pixel transfer + 1 (0 for no rays).
        credit_stalls: cycles in which a header was offered, the header queue had room, and every credit
            was held (rays in flight waiting for their pixels to transfer: output backpressure).
    """

    ray_accept_cycles: np.ndarray
    sample_accept_cycles: np.ndarray
    out_cycles: np.ndarray
    pixels: np.ndarray
    trans: np.ndarray
    contributed: np.ndarray
    payloads: list[int]
    cycles: int
    credit_stalls: int = 0


class CompositorTiming:
    """The unit's control state (``hw.compositor``), stepped one cycle at a time: what ``CompositorTLM.schedule``
    runs, and what ``sim.tlm.top`` composes with the other units of the accelerator top.

    State: the header queue (rays, each at the head from the cycle after its header transfer), the samples
    taken of its head ray, the credits, the pixel pushes travelling down the pipeline and the output queue.
    In a cycle, ``rays_ready``, ``samples_ready`` and ``pixels_valid`` depend on the state alone;
    ``clock(ray_fire, sample_fire, pixel_fire)`` is the edge that closes the cycle.

    Args:
        params: the unit's parameters.
        counts: int (R,), the samples of each ray, in ray order (what each header's ``count`` holds).
    """

    def __init__(self, params: CompositorParams, counts) -> None:
        self.P, self.H, self.Q = params.PIPELINE_STAGES, params.HEADER_DEPTH, params.OUT_FIFO_DEPTH
        self.counts = [int(c) for c in counts]
        self.t = 0
        self.headers: deque[int] = deque()  # header queue (rays)
        self.pushes: deque[tuple[int, int]] = deque()  # (push cycle, ray)
        self.outq: deque[int] = deque()
        self.taken = self.credits = self.n_rays = 0

    @property
    def header_room(self) -> bool:
        """The header queue has room (one half of ``rays.ready``)."""
        return len(self.headers) < self.H

    @property
    def credit_free(self) -> bool:
        """A credit is free (the other half of ``rays.ready``)."""
        return self.credits < self.Q

    @property
    def rays_ready(self) -> bool:
        """``rays.ready``."""
        return len(self.headers) < self.H and self.credits < self.Q

    @property
    def samples_ready(self) -> bool:
        """``samples.ready``: the head ray has samples still to take."""
        return bool(self.headers) and self.counts[self.headers[0]] > 0

    @property
    def pixels_valid(self) -> bool:
        """``pixels.valid``: the output queue holds a pixel."""
        return bool(self.outq)

    def clock(self, ray_fire: bool, sample_fire: bool, pixel_fire: bool) -> None:
        """The edge closing the current cycle: a header transfer (only while ``rays_ready``), a sample
        transfer (only while ``samples_ready``) and a pixel transfer (only while ``pixels_valid``); a head
        ray without samples leaves as one background token by itself."""
        t = self.t
        head = self.headers[0] if self.headers else None
        if pixel_fire:
            self.outq.popleft()
        if self.pushes and self.pushes[0][0] == t:
            self.outq.append(self.pushes.popleft()[1])
        if sample_fire:
            self.taken += 1
            if self.taken == self.counts[head]:
                self.headers.popleft()
                self.pushes.append((t + self.P, head))
                self.taken = 0
        elif head is not None and self.counts[head] == 0:  # the background token
            self.headers.popleft()
            self.pushes.append((t + self.P, head))
        if ray_fire:
            self.headers.append(self.n_rays)
            self.n_rays += 1
        self.credits += int(ray_fire) - int(pixel_fire)
        self.t += 1


class CompositorTLM:
    """Model of one ``hw.compositor.Compositor`` under one set of constants (module docstring).

    Args:
        params: the unit's parameters.
        consts: the run-time constants, checked by ``check_constants``.

    Raises:
        ValueError: a constant out of range, naming it.
    """

    def __init__(self, params: CompositorParams, consts: PixelConstants) -> None:
        self.params = params
        self.consts = check_constants(consts, params)

    def check_inputs(self, sigma, color, counts, q) -> tuple[np.ndarray, ...]:
        """Validate and convert the rays: sigma int (N,), color int (N, 3), counts int (R,) summing to
        N, q int (R,), each within its field's unsigned width.

        Raises:
            ValueError: a wrong shape or an element out of range, naming the array, position and value.
        """
        p = self.params
        sigma, color, counts, q = (np.asarray(a) for a in (sigma, color, counts, q))
        for name, a, ndim in (("sigma", sigma, 1), ("color", color, 2), ("counts", counts, 1), ("q", q, 1)):
            if a.ndim != ndim or (a.size and not np.issubdtype(a.dtype, np.integer)):
                raise ValueError(f"{name} must be a {ndim}-D integer array, not {a.dtype} {a.shape}")
        if color.shape != (len(sigma), 3) or len(q) != len(counts) or counts.sum() != len(sigma):
            raise ValueError(f"{len(sigma)} sigma, color {color.shape}, {len(counts)} counts summing to "
                             f"{int(counts.sum())} and {len(q)} q do not describe the same rays")
        for name, a, bits in (("sigma", sigma, p.sigma_bits), ("color", color, p.color_bits),
                              ("counts", counts, p.count_bits), ("q", q, p.q_bits)):
            check_range(a, 0, (1 << bits) - 1, name, f"unsigned {bits}-bit")
        return tuple(a.astype(np.int64) for a in (sigma, color, counts, q))

    def schedule(self, counts, ray_offers=None, sample_offers=None, ready=None):
        """Transfer cycles of R rays with ``counts`` samples, stepping the RTL's control state.

        Args:
            counts: int (R,), samples per ray.
            ray_offers: int (R,), the first cycle header k may be offered; None: all 0.
            sample_offers: int (N,), the first cycle sample j may be offered; None: all 0.
            ready: bool (T,), pixel ready per cycle; cycles >= T are ready. None: always ready.

        Returns:
            ``(ray_accept_cycles, sample_accept_cycles, out_cycles, credit_stalls)``: int64 (R,), (N,),
            (R,) and the count of ``CompositorRun.credit_stalls``.

        State mirrored from ``hw.compositor``: the header queue, the samples taken of its head ray, the
        credits, the pixel pushes travelling down the pipeline and the output queue.
        """
        p = self.params
        counts = np.asarray(counts, np.int64)
        rays, total = len(counts), int(counts.sum())
        r_offers = check_offers(ray_offers, rays, "rays")
        s_offers = check_offers(sample_offers, total, "samples")
        ready_at = ReadyPattern(ready)
        ray_acc = np.full(rays, -1, np.int64)
        smp_acc = np.full(total, -1, np.int64)
        out = np.full(rays, -1, np.int64)
        state = CompositorTiming(p, counts)
        nr = ns = done = stalls = 0
        t = 0
        while done < rays:
            s_fire = state.samples_ready and ns < total and s_offers[ns] <= t
            r_offered = nr < rays and bool(r_offers[nr] <= t) and state.header_room
            r_fire = r_offered and state.credit_free
            stalls += int(r_offered and not r_fire)
            o_fire = state.pixels_valid and ready_at(t)
            state.clock(r_fire, s_fire, o_fire)
            if o_fire:
                out[done] = t
                done += 1
            if s_fire:
                smp_acc[ns] = t
                ns += 1
            if r_fire:
                ray_acc[nr] = t
                nr += 1
            t += 1
        return ray_acc, smp_acc, out, stalls

    def run(self, sigma, color, counts, q, ray_offers=None, sample_offers=None, ready=None) -> CompositorRun:
        """Predict a whole run: pixels (``composite_reference``) and transfer cycles (``schedule``).

        Args:
            sigma: int (N,), density codes; color: int (N, 3), colour codes; the samples of ray 0 first.
            counts: int (R,), samples per ray (0 allowed); q: int (R,), each ray's q.
            ray_offers, sample_offers, ready: as ``schedule``.
        """
        sigma, color, counts, q = self.check_inputs(sigma, color, counts, q)
        ref = composite_reference(sigma, color, counts, q, self.consts, self.params)
        ray_acc, smp_acc, out, stalls = self.schedule(counts, ray_offers, sample_offers, ready)
        payloads = [pixel_payload(row, self.params) for row in ref.pixels]
        return CompositorRun(ray_acc, smp_acc, out, ref.pixels, ref.trans, ref.contributed, payloads,
                             int(out.max()) + 1 if len(out) else 0, stalls)
