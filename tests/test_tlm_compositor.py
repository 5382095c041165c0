"""The compositing unit's model (sim.tlm.compositor): the RTL's reformulation of the reference arithmetic, the
reference against float volume rendering, T(D) against exp(-D), and the cycle model (no simulator needed).

Measured (and asserted below):

* T(D) against exp(-D), D over [0, 2^depth_bits) in steps of at most 2^-20 of its range: max |error|
  3.43e-4 = 22.5 LSB of T for the defaults (Ft = 16, G = 10), 5.5e-3 = 5.6 LSB for Ft = 10, G = 6; both
  within the bound ``e^-D (2^delta - 1) + 2^-Ft``, ``delta = 2^-(G+1) + D 2^-(l2e_bits+1)`` (the rounding
  of the exponent to G fractional bits and of log2 e, then one LSB for the table word and the shift),
  whose first term, ln2 2^-(G+1) = 3.4e-4 at D = 0, is the table's resolution: a finer T needs a larger G.
* Pixels against float volume rendering (alpha = 1 - exp(-sigma delta), cumulative product transmittance,
  background; the colour codes and densities dequantized, no early termination), 2000 random rays of
  0..40 samples: every channel within a per-ray bound (``pixel_bound``) that adds up the rounding of the
  pixel multipliers, the T error above at each sample weighted by the colour change there, the input
  quantization of q and the early termination's remainder; the bound is reached to within 10 %. Largest
  differences: 1.2 LSB of an 8-bit pixel for the defaults (stated bound 2), 15 LSB for the small preset
  (G = 6: T is off by up to 0.5 % at each of up to 40 samples; stated bound 24), 3.5 LSB of a 16-bit
  pixel for "wide" (stated bound 5). For the defaults about half of it is the colour multiplier: one
  shift S serves M_c, M_l and M_b, and M_b = bg 255 2^(S-Ft) must fit 24 signed bits, so M_c = 255
  2^(S-Ft) / 65535 has only 7 to 8 significant bits for 16-bit colour codes (a gain error up to 0.4 %,
  about 1 LSB at full scale).
"""

import dataclasses
import math
import re

import numpy as np
import pytest

from hw.compositor.params import CompositorParams
from hw.config import ConfigError
from sim.cosim.workload_compositor import random_compositor_workload, ray_events
from sim.tlm.compositor import (
    CompositorTLM,
    PixelConstants,
    check_constants,
    composite_reference,
    constants_word,
    depth_step,
    exp2_table,
    pixel_constants,
    pixel_payload,
    ray_payload,
    sample_payload,
    stream_cycles,
    transmittance,
)
from sim.tlm.transfers import unpack_vector
from tests.conftest import CONFIGS

DEFAULT = CompositorParams()
SMALL = CompositorParams(sigma_bits=8, color_bits=8, trans_bits=10, depth_frac=12, q_bits=16, exp_index_bits=6,
                         l2e_bits=12, pixel_bits=8, pix_mult_bits=16, count_bits=6)
WIDE = CompositorParams(sigma_bits=12, color_bits=10, trans_bits=20, depth_frac=32, q_bits=40, exp_index_bits=14,
                        l2e_bits=24, pixel_bits=16, pix_mult_bits=24, count_bits=8)
CASES = {"default": DEFAULT, "small": SMALL, "wide": WIDE}


def test_presets_are_the_cases():
    from hw.registry import load_config

    assert load_config(CONFIGS / "comp-default.yaml")["compositor"] == DEFAULT
    assert load_config(CONFIGS / "comp-small.yaml")["compositor"] == SMALL


# --- the RTL's formulation against the reference ------------------------------------------------------------
def rtl_style(sigma, color, counts, q, consts: PixelConstants, p: CompositorParams):
    """The unit's datapath in plain Python integers, token by token (``hw.compositor.rtl``): D restarts at a
    ray's first token and is updated only while D < depth_limit (saturating add of the clipped step),
    w = T_prev - T(D) with T_prev = 2^Ft at the first token, A restarts at the first token, T_end = T(D)
    of the last token; a ray without samples is one token with sigma 0 and colour 0."""
    one, dmax = 1 << p.trans_bits, p.depth_max
    t_of = {}

    def T(d):
        if d not in t_of:
            t_of[d] = int(transmittance(d, p))
        return t_of[d]

    pixels, pos = [], 0
    for count, qr in zip(counts, q):
        tokens = [(int(sigma[pos + i]), [int(c) for c in color[pos + i]]) for i in range(count)] or [(0, [0, 0, 0])]
        pos += count
        d, t_prev, acc = 0, one, [0, 0, 0]
        for s, c in tokens:
            step = min(s * int(qr), dmax + 1)
            if d < consts.depth_limit:
                d = min(d + step, dmax)
            t = T(d)
            w = t_prev - t
            assert 0 <= w <= one  # the RTL's weight register is unsigned Ft + 1 bits
            acc = [a + w * ci for a, ci in zip(acc, c)]
            t_prev = t
        assert max(acc) < 1 << p.acc_bits
        pix = []
        for a in acc:
            v = a * consts.mult_color + (one - t_prev) * consts.mult_low + t_prev * consts.mult_background
            assert -(1 << (p.pixel_sum_bits - 1)) <= v + (1 << consts.shift >> 1) < 1 << (p.pixel_sum_bits - 1)
            v = (v + (1 << consts.shift >> 1)) >> consts.shift
            pix.append(min(max(v, 0), (1 << p.pixel_bits) - 1))
        pixels.append(pix)
    return np.array(pixels, np.int64).reshape(-1, 3)


@pytest.mark.parametrize("name", CASES)
def test_rtl_formulation_equals_the_reference(name):
    """Early termination freezing D, weights from the previous T, background tokens: the same pixels."""
    p = CASES[name]
    for seed, ph in enumerate(random_compositor_workload(p, 90, seed=11, phases=3)):
        ref = composite_reference(ph.sigma, ph.color, ph.counts, ph.q, ph.consts, p)
        assert np.array_equal(rtl_style(ph.sigma, ph.color, ph.counts, ph.q, ph.consts, p), ref.pixels), seed
        events = ray_events(ph, p)
        assert events["zero_rays"] and events["early_rays"] and events["saturations"]


@pytest.mark.parametrize("name", CASES)
def test_extreme_constants_stay_inside_the_widths(name):
    """The largest colour sums (every colour code at its maximum) with the most negative and the largest
    multipliers, every shift: ``rtl_style`` asserts the weight, sum and pixel-sum widths."""
    p = CASES[name]
    half = 1 << (p.pix_mult_bits - 1)
    cmax, smax = (1 << p.color_bits) - 1, (1 << p.sigma_bits) - 1
    counts = np.array([5, 0, 3])
    sigma = np.array([smax, 1, 0, 7, smax, 0, smax, smax])
    color = np.full((8, 3), cmax)
    q = np.array([(1 << p.q_bits) - 1, 3, 1 << (p.depth_frac - 3)])
    for mults in ((-half, -half, -half), (half - 1, half - 1, half - 1), (half - 1, -half, half - 1)):
        for shift in (0, 1, p.pixel_shift_max // 2, p.pixel_shift_max):
            consts = PixelConstants(*mults, shift, p.depth_max)
            ref = composite_reference(sigma, color, counts, q, consts, p)
            assert np.array_equal(rtl_style(sigma, color, counts, q, consts, p), ref.pixels)


# --- the exp2 table and T(D) ----------------------------------------------------------------------------------
def test_rom_words_are_the_reference_table_for_every_width():
    for ft in range(8, 21):
        for g in range(4, 15):
            p = CompositorParams(trans_bits=ft, exp_index_bits=g)
            table = exp2_table(p)
            assert tuple(table.tolist()) == p.exp2_entries()
            assert table[0] == 1 << ft and table.max() < 1 << (ft + 1)


def test_transmittance_is_nonincreasing_for_every_width():
    """So every weight T(D_i) - T(D_i+1) is in [0, 2^Ft] (the RTL's unsigned weight): T over the whole
    exponent domain y (k <= Ft + 2), for every (trans_bits, exp_index_bits)."""
    from sim.tlm.fixed import round_shift

    for ft in range(8, 21):
        for g in range(4, 15):
            p = CompositorParams(trans_bits=ft, exp_index_bits=g)
            y = np.arange((ft + 3) << g)
            k, idx = y >> g, y & ((1 << g) - 1)
            t = np.where(k > ft + 1, 0, round_shift(exp2_table(p)[idx], np.minimum(k, ft + 2)))
            assert (np.diff(t) <= 0).all(), (ft, g)
            assert t[0] == 1 << ft and t[-1] == 0


def test_transmittance_is_zero_at_saturation():
    for p in CASES.values():
        assert int(transmittance(p.depth_max, p)) == 0
        assert int(transmittance(0, p)) == 1 << p.trans_bits


def t_error_bound(d, p: CompositorParams) -> np.ndarray:
    """|T(D) / 2^Ft - exp(-D)| <= e^-D (2^delta - 1) + 2^-Ft, delta = 2^-(G+1) + D 2^-(l2e_bits+1), D in units."""
    delta = 2.0 ** -(p.exp_index_bits + 1) + d * 2.0 ** -(p.l2e_bits + 1)
    return np.exp(-d) * np.expm1(delta * math.log(2)) + 2.0 ** -p.trans_bits


@pytest.mark.parametrize("name, measured", [("default", 3.43e-4), ("small", 5.49e-3), ("wide", 2.11e-5)])
def test_transmittance_against_exp(name, measured):
    p = CASES[name]
    d_int = np.unique(np.concatenate([np.arange(0, p.depth_max + 1, max(1, (p.depth_max + 1) >> 20)),
                                      np.arange(0, 1 << 16)]))
    d = d_int / 2.0 ** p.depth_frac
    err = np.abs(transmittance(d_int, p) / 2.0 ** p.trans_bits - np.exp(-d))
    assert (err <= t_error_bound(d, p)).all()
    # the measured maximum (module docstring), near the table's resolution ln2 2^-(G+1)
    assert err.max() == pytest.approx(measured, rel=0.02)
    assert err.max() > 0.9 * math.log(2) * 2.0 ** -(p.exp_index_bits + 1)


# --- the reference against float volume rendering ---------------------------------------------------------
def float_render(sigma, values, counts, delta, background):
    """Volume rendering in float64 (``nerf.render``): alpha = 1 - exp(-sigma delta), T_i = prod_{j<i} (1 -
    alpha_j), ``rgb = sum_i T_i alpha_i c_i + T_N background``. Returns (rgb (R, 3), T per ray per sample)."""
    rgb, trans, pos = np.zeros((len(counts), 3)), [], 0
    for r, count in enumerate(counts):
        alpha = 1.0 - np.exp(-sigma[pos:pos + count] * delta[r])
        t = np.concatenate([[1.0], np.cumprod(1.0 - alpha)])
        rgb[r] = ((t[:-1] * alpha)[:, None] * values[pos:pos + count]).sum(0) + t[-1] * background
        trans.append(t)
        pos += count
    return rgb, trans


def pixel_bound(p, consts, step, low, background, sigma, color, counts, q, ref, trans_f):
    """Per ray and channel, the largest |pixel - float pixel| the arithmetic allows, in pixel LSBs:

    * 0.5, the final rounding (the clamp only brings the two closer);
    * the rounding of M_c, M_l, M_b, 2^(Ft-S-1) pixel LSBs per unit each: times the colour sum in codes
      (at most the largest colour code of the ray), plus once for (1 - T) M_l + T M_b;
    * the T errors, by telescoping ``sum_i (T_i - T_i+1) c_i``: s step [sum_{i=1}^{n-1} e_i |c_i - c_i-1|
      + e_n c_n-1] + s |bg - low| e_n, with e_i >= |T_hw(D_i) - T_float(D_i)|: ``t_error_bound`` at the
      hardware's D plus the quantization of q (D off by at most sum sigma 2^-(depth_frac+1));
    * early termination: the float samples after the n = ``contributed`` the hardware took add at most
      s T_float(n) max_{i >= n} |v_i - bg|.
    """
    s = (1 << p.pixel_bits) - 1
    m_err = 2.0 ** (p.trans_bits - consts.shift - 1)
    bounds, pos = [], 0
    for r, count in enumerate(counts):
        n = int(ref.contributed[r])
        sg = sigma[pos:pos + count].astype(np.float64)
        col = color[pos:pos + count].astype(np.float64)
        pos += count
        d_hw = np.minimum(np.concatenate([[0], np.cumsum(sg * q[r])]), p.depth_max) / 2.0 ** p.depth_frac
        eta = np.concatenate([[0], np.cumsum(sg)]) * 2.0 ** -(p.depth_frac + 1)
        e = t_error_bound(d_hw, p) + np.exp(-d_hw) * np.expm1(eta)
        b = np.full(3, 0.5 + m_err + 1e-9) + s * abs(background - low) * e[n]
        if n:
            b += m_err * col[:n].max(0)
            b += s * step * ((e[1:n, None] * np.abs(np.diff(col[:n], axis=0))).sum(0) + e[n] * col[n - 1])
        if n < count:
            b += s * trans_f[r][n] * np.abs(step * col[n:] + low - background).max()
        bounds.append(b)
    return np.array(bounds)


@pytest.mark.parametrize("name, largest", [("default", 2.0), ("small", 24.0), ("wide", 5.0)])
def test_reference_against_float_volume_rendering(name, largest):
    p = CASES[name]
    rng = np.random.default_rng(5)
    rays = 2000
    cmax, smax = (1 << p.color_bits) - 1, (1 << p.sigma_bits) - 1
    step, low, background = 1.0 / cmax, 0.0, 0.35
    consts = pixel_constants(step, low, background, 1e-4, p)
    counts = rng.integers(0, 41, rays)
    n = int(counts.sum())
    sigma_step = 50.0 / smax  # densities up to 50 per world unit
    sigma = rng.integers(0, smax + 1, n)
    sigma[rng.random(n) < 0.5] = 0
    color = rng.integers(0, cmax + 1, (n, 3))
    delta = rng.uniform(0.001, 0.1, rays) * rng.choice([0.1, 1.0, 3.0], rays)
    q = depth_step(delta, sigma_step, p)
    ref = composite_reference(sigma, color, counts, q, consts, p)
    rgb, trans_f = float_render(sigma * sigma_step, color * step + low, counts, delta, background)
    s = (1 << p.pixel_bits) - 1
    diff = np.abs(ref.pixels - np.clip(rgb * s, 0, s))
    bound = pixel_bound(p, consts, step, low, background, sigma, color, counts, q, ref, trans_f)
    assert (diff <= bound).all(), np.argwhere(diff > bound)[:3]
    assert diff.max() <= largest  # the stated bound for these random rays (module docstring)
    assert (ref.contributed < counts).any() and (counts == 0).any()  # early termination, empty rays
    # the bound is not vacuous: typically within a few LSB of the difference
    assert np.median(bound - diff) < (1.5 if name == "default" else 8.0)
    assert (diff / bound).max() > 0.5


# --- constants and payloads -------------------------------------------------------------------------------------
def test_constants_are_checked_and_packed():
    p = SMALL
    consts = PixelConstants(-5, 7, -(1 << 15), 3, 1234)
    word = constants_word(p, consts)
    fields, pos = {}, 0
    for name, bits in p.config_fields:
        fields[name] = (word >> pos) & ((1 << bits) - 1)
        pos += bits
    assert fields == {"mult_color": (1 << 16) - 5, "mult_low": 7, "mult_background": 1 << 15, "shift": 3,
                      "depth_limit": 1234}
    assert sum(bits for _, bits in p.config_fields) == 3 * 16 + p.shift_bits + p.depth_bits
    for bad, message in [(dataclasses.replace(consts, mult_low=1 << 15), "PixelConstants.mult_low must be an "
                          "integer in [-32768, 32767], not 32768"),
                         (dataclasses.replace(consts, shift=p.pixel_shift_max + 1), "PixelConstants.shift"),
                         (dataclasses.replace(consts, depth_limit=1 << p.depth_bits), "PixelConstants.depth_limit"),
                         (dataclasses.replace(consts, depth_limit=-1), "PixelConstants.depth_limit")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            check_constants(bad, p)
        with pytest.raises(ValueError):
            CompositorTLM(p, bad)


def test_payloads():
    p = SMALL
    assert ray_payload(0x1234, 5, p) == 0x1234 | 5 << 16
    word = sample_payload(200, [1, 2, 255], p)
    assert word & 0xFF == 200 and unpack_vector(word >> 8, 3, 8, signed=False) == [1, 2, 255]
    assert unpack_vector(pixel_payload([3, 0, 255], p), 3, 8, signed=False) == [3, 0, 255]


def test_inputs_are_checked():
    tlm = CompositorTLM(SMALL, PixelConstants(1, 0, 0, 0, 10))
    with pytest.raises(ValueError, match=r"sigma\[1\] = 256 is outside the unsigned 8-bit range"):
        tlm.run([1, 256], [[0, 0, 0]] * 2, [2], [1])
    with pytest.raises(ValueError, match="do not describe the same rays"):
        tlm.run([1, 2], [[0, 0, 0]] * 2, [1], [1])
    with pytest.raises(ValueError, match=r"counts\[0\] = 64 is outside the unsigned 6-bit range"):
        tlm.run(np.zeros(64, int), np.zeros((64, 3), int), [64], [1])


def test_params_are_validated():
    with pytest.raises(ConfigError, match="trans_bits"):
        CompositorParams(trans_bits=7)
    assert DEFAULT.config_fields[-1] == ("depth_limit", DEFAULT.depth_bits)
    assert DEFAULT.exp_shift >= 2 and DEFAULT.exp_bits > DEFAULT.exp_index_bits


# --- the cycle model -------------------------------------------------------------------------------------------
def _run(p, counts, ray_offers=None, sample_offers=None, ready=None, seed=0):
    rng = np.random.default_rng(seed)
    counts = np.asarray(counts)
    n = int(counts.sum())
    sigma = rng.integers(0, 1 << p.sigma_bits, n)
    color = rng.integers(0, 1 << p.color_bits, (n, 3))
    q = rng.integers(0, 1 << 10, len(counts))
    consts = pixel_constants(1 / 255, 0.0, 1.0, 1e-3, p)
    return CompositorTLM(p, consts).run(sigma, color, counts, q, ray_offers, sample_offers, ready)


def test_latency_of_one_ray():
    p = SMALL
    assert (p.PIPELINE_STAGES, p.LATENCY, p.HEADER_CYCLES, p.OUT_FIFO_DEPTH) == (10, 11, 1, 13)
    r = _run(p, [0])
    assert r.ray_accept_cycles.tolist() == [0] and r.out_cycles.tolist() == [p.HEADER_CYCLES + p.LATENCY] == [12]
    r = _run(p, [5], ray_offers=[3])
    assert r.sample_accept_cycles.tolist() == [4, 5, 6, 7, 8] and r.out_cycles.tolist() == [8 + p.LATENCY]


@pytest.mark.parametrize("seed", range(4))
def test_full_rate_takes_the_closed_form_cycles(seed):
    """One sample per cycle across rays, one cycle per ray without samples, any mix."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 4 if seed % 2 else 41, 60)
    counts[rng.random(60) < 0.3] = 0
    r = _run(SMALL, counts)
    assert r.cycles == stream_cycles(SMALL, counts) == int(np.maximum(counts, 1).sum()) + 12
    assert r.credit_stalls == 0
    # samples back to back, but for a cycle per ray without samples between two rays with samples
    busy = np.flatnonzero(counts)
    between = int((counts[busy[0]:busy[-1]] == 0).sum()) if len(busy) else 0
    assert (np.diff(r.sample_accept_cycles) - 1).sum() == between


def test_credits_and_the_header_queue_hold_the_inputs():
    p = SMALL
    # output stalled for 100 cycles: exactly OUT_FIFO_DEPTH rays without samples are accepted
    r = _run(p, [0] * 20, ready=np.zeros(100, bool))
    assert (r.ray_accept_cycles < 100).sum() == p.OUT_FIFO_DEPTH
    assert r.out_cycles[0] == 100 and r.credit_stalls > 0
    # pixels leave one per cycle from 100, then the credits come back
    assert r.out_cycles[:p.OUT_FIFO_DEPTH].tolist() == list(range(100, 100 + p.OUT_FIFO_DEPTH))
    # a ray whose samples come late: only HEADER_DEPTH headers are taken meanwhile
    r = _run(p, [3, 0, 0, 0], sample_offers=[50, 50, 50])
    assert r.ray_accept_cycles.tolist()[:2] == [0, 1] and r.ray_accept_cycles[2] > 50
    assert r.sample_accept_cycles.tolist() == [50, 51, 52]


def test_schedule_respects_offers_and_ready():
    p = SMALL
    for ph in random_compositor_workload(p, 60, seed=4, phases=3):
        r = CompositorTLM(p, ph.consts).run(ph.sigma, ph.color, ph.counts, ph.q, ph.ray_offers, ph.sample_offers,
                                            ph.ready)
        assert (r.ray_accept_cycles >= ph.ray_offers).all() and (np.diff(r.ray_accept_cycles) > 0).all()
        assert (r.sample_accept_cycles >= ph.sample_offers).all() and (np.diff(r.sample_accept_cycles) > 0).all()
        assert (np.diff(r.out_cycles) > 0).all()
        assert all(t >= len(ph.ready) or ph.ready[t] for t in r.out_cycles)
        ends = np.cumsum(ph.counts)
        for k, count in enumerate(ph.counts):  # a pixel no earlier than LATENCY after its ray's last sample
            if count:
                assert r.out_cycles[k] >= r.sample_accept_cycles[ends[k] - 1] + p.LATENCY
                assert r.sample_accept_cycles[ends[k] - count] > r.ray_accept_cycles[k]
            else:
                assert r.out_cycles[k] >= r.ray_accept_cycles[k] + p.HEADER_CYCLES + p.LATENCY
