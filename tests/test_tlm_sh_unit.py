"""The SH unit's model (sim.tlm.sh_unit): the reference arithmetic against an independent one and against the
float basis (nerf.sh), the monomial widths the RTL relies on, and the cycle model against its closed form."""

import itertools
import re

import numpy as np
import pytest

from hw.config import ConfigError
from hw.sh_unit.params import SH_COEFFICIENTS, ShUnitParams
from sim.cosim.workload_sh_unit import (
    count_ties,
    extreme_directions,
    job_workload,
    phase_stats,
    random_sh_workload,
    summary_lines,
)
from sim.tlm.sh_unit import (
    SH_CONSTANT,
    SH_SCALE,
    ShUnitTLM,
    const_writes,
    sh_config_word,
    sh_constants,
    sh_monomials,
    sh_reference,
    stream_cycles,
    to_direction_codes,
)
from sim.tlm.transfers import unpack_vector

CASES = {
    "default": ShUnitParams(),  # sh-default: dir 16, out <= 16, mult 18, offset 40
    "small": ShUnitParams(dir_bits=10, max_out_bits=8, mult_bits=12, offset_bits=24),  # sh-small
    "tiny": ShUnitParams(dir_bits=4, max_out_bits=2, mult_bits=2, offset_bits=2),
    "widest": ShUnitParams(dir_bits=20, max_out_bits=16, mult_bits=24, offset_bits=48),
}


# --- an independent reference: the documented formulas on Python integers --------------------------
def _r(v: int, s: int) -> int:
    return (v + (1 << (s - 1))) >> s if s else v


def brute_outputs(p: ShUnitParams, code, mult, offset, shift: int, out_bits: int) -> list[int]:
    q = p.frac_bits
    one = 1 << q
    x, y, z = (int(c) for c in code)
    xx, yy, zz, xy, yz, xz = (_r(a * b, q) for a, b in ((x, x), (y, y), (z, z), (x, y), (y, z), (x, z)))
    mono = [one, y, z, x, xy, yz, zz, xz, xx - yy, _r(y * (yy - 3 * xx), q), _r(xy * z, q),
            _r(y * (one - 5 * zz), q), _r(z * (5 * zz - 3 * one), q), _r(x * (one - 5 * zz), q),
            _r(z * (xx - yy), q), _r(x * (3 * yy - xx), q)]
    lo, hi = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
    return [max(lo, min(hi, _r(mk * int(mm) + int(ok), shift))) for mk, mm, ok in zip(mono, mult, offset)]


def _random_constants(rng, p: ShUnitParams):
    mult = rng.integers(-(1 << (p.mult_bits - 1)), 1 << (p.mult_bits - 1), size=16)
    offset = rng.integers(-(1 << (p.offset_bits - 1)), 1 << (p.offset_bits - 1), size=16)
    mult[:2] = -(1 << (p.mult_bits - 1)), (1 << (p.mult_bits - 1)) - 1
    offset[2:4] = -(1 << (p.offset_bits - 1)), (1 << (p.offset_bits - 1)) - 1
    return mult, offset


def _codes(rng, p: ShUnitParams, n: int):
    half = 1 << p.frac_bits
    return np.concatenate([extreme_directions(p), rng.integers(-half, half, size=(n, 3))])


@pytest.mark.parametrize("name", CASES)
def test_reference_is_the_documented_arithmetic(name):
    p = CASES[name]
    rng = np.random.default_rng(len(name))
    codes = _codes(rng, p, 60)
    for _ in range(4):
        mult, offset = _random_constants(rng, p)
        shift = int(rng.integers(0, p.shift_max + 1))
        out_bits = int(rng.integers(2, p.max_out_bits + 1))
        got = sh_reference(codes, mult, offset, shift, out_bits, p)
        assert got.dtype == np.int64 and got.shape == (len(codes), SH_COEFFICIENTS)
        assert got.tolist() == [brute_outputs(p, c, mult, offset, shift, out_bits) for c in codes]


@pytest.mark.parametrize("dir_bits", [4, 5, 6])
def test_monomials_reach_their_bounds_and_fit_their_registers_everywhere(dir_bits):
    """Exhaustively over the whole signed code range (-2^Q included): max |m_k| = bound_k * 2^Q
    (``MONOMIAL_BOUNDS``; the components reach 2^Q at -2^Q), inside the RTL's ``monomial_widths``."""
    p = ShUnitParams(dir_bits=dir_bits)
    r = np.arange(-(1 << p.frac_bits), 1 << p.frac_bits)
    codes = np.stack(np.meshgrid(r, r, r, indexing="ij"), axis=-1).reshape(-1, 3)
    m = sh_monomials(codes, p)
    bounds = [b or 1 for b in p.MONOMIAL_BOUNDS]
    assert (np.abs(m).max(axis=0) == np.array(bounds) << p.frac_bits).all()
    w = np.array(p.monomial_widths)
    assert ((m >= -(1 << (w - 1))) & (m < (1 << (w - 1)))).all()
    assert max(p.monomial_widths) == p.monomial_bits == p.frac_bits + 4


@pytest.mark.parametrize("name", ["default", "widest"])
def test_wide_monomials_stay_within_their_bounds(name):
    p = CASES[name]
    codes = _codes(np.random.default_rng(3), p, 20000)
    m = np.abs(sh_monomials(codes, p))
    bounds = np.array([b or 1 for b in p.MONOMIAL_BOUNDS]) << p.frac_bits
    assert (m <= bounds).all() and (m.max(axis=0) == bounds).all()  # the corners reach them


def test_monomial_widths():
    assert CASES["default"].monomial_widths == (17, 16, 16, 16, 17, 17, 17, 17, 17, 18, 17, 19, 18, 19, 17, 18)


@pytest.mark.parametrize("dir_bits, bound", [(16, 2e-4), (12, 3e-3)])
def test_grid_constants_decode_to_the_float_basis(dir_bits, bound):
    """sh_constants for a fine 16-bit grid over [-0.75, 0.75]: the decoded outputs of random unit
    directions, the axes and the diagonals are within ``bound`` of ``nerf.sh.sh_encode`` (the module
    docstring has the measured maxima, 1.52e-4 and 2.21e-3, both on the z axis)."""
    import torch

    from nerf.sh import sh_encode

    rng = np.random.default_rng(0)
    d = rng.normal(size=(200_000, 3))
    axes = [v for v in itertools.product((-1.0, 0.0, 1.0), repeat=3) if any(v)]
    d = np.concatenate([np.array(axes), d])
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    want = sh_encode(torch.from_numpy(d)).numpy()
    p = ShUnitParams(dir_bits=dir_bits, max_out_bits=16, mult_bits=18, offset_bits=40)
    step, low, bits = 1.5 / (1 << 16), -0.75, 16
    mult, offset, shift = sh_constants(step, low, bits, p)
    assert shift == p.frac_bits  # the 18-bit multipliers hold c_k / step, so S = Q
    codes = to_direction_codes(d, dir_bits)
    got = step * (sh_reference(codes, mult, offset, shift, bits, p) + (1 << (bits - 1))) + low
    err = np.abs(got - want)
    assert err.max() < bound
    worst = np.unravel_index(err.argmax(), err.shape)
    assert worst[1] == 12 and abs(d[worst[0], 2]) == 1.0  # z (5 z^2 - 3) at z = +-1, coded as +-(1 - 2^-Q)
    assert err.max() > bound / 2  # and the bound is not loose


def test_sh_constants_match_the_basis_and_refuse_a_too_fine_step():
    p = CASES["small"]
    step, low, bits = 0.01, -0.8, 8
    mult, offset, shift = sh_constants(step, low, bits, p)
    assert max(abs(v) for v in mult) < 1 << (p.mult_bits - 1) <= 2 * max(abs(v) for v in mult)  # the largest S
    for k in range(SH_COEFFICIENTS):
        assert mult[k] == round(SH_SCALE[k] / step * 2.0 ** (shift - p.frac_bits))
        assert offset[k] == round(((SH_CONSTANT[k] - low) / step - (1 << (bits - 1))) * 2.0 ** shift)
    with pytest.raises(ValueError, match=re.escape("SH output step 1e-09 needs multipliers wider than mult_bits = 12")):
        sh_constants(1e-9, low, bits, p)


def test_direction_codes_round_and_clamp():
    codes = to_direction_codes([[1.0, -1.0, 0.0], [0.6, -0.8, 1 / 1024]], 10)
    assert codes.tolist() == [[511, -511, 0], [307, -410, 0]]


# --- the model: payloads, validation ------------------------------------------------------------------
def _model(p, rng, **kw):
    mult, offset = _random_constants(rng, p)
    return ShUnitTLM(p, mult, offset, shift=kw.get("shift", p.frac_bits), out_bits=kw.get("out_bits", p.max_out_bits))


@pytest.mark.parametrize("name", CASES)
def test_run_reuses_the_reference_and_packs_the_payloads(name):
    p = CASES[name]
    rng = np.random.default_rng(5)
    model = _model(p, rng, out_bits=2)
    codes = _codes(rng, p, 30)
    res = model.run(codes)
    want = sh_reference(codes, model.mult, model.offset, model.shift, model.out_bits, p)
    assert np.array_equal(res.outputs, want) and np.array_equal(res.monomials, sh_monomials(codes, p))
    assert np.array_equal(model.forward(codes), want)
    for row, payload in zip(want, res.payloads):
        assert unpack_vector(payload, 16, p.max_out_bits, signed=True) == row.tolist()
    assert model.in_payload([-1, 2, -3]) == sum((v % (1 << p.dir_bits)) << (i * p.dir_bits)
                                                for i, v in enumerate([-1, 2, -3]))


def test_config_word_and_const_writes():
    p = CASES["small"]  # out_bits: 4 bits, shift: 5 bits (shift_max 25)
    assert p.config_fields == (("out_bits", 4), ("shift", 5)) and p.shift_max == 25
    assert sh_config_word(p, 8, 25) == 8 | 25 << 4
    with pytest.raises(ValueError, match=re.escape("shift must be an integer in [0, 25], not 26")):
        sh_config_word(p, 8, 26)
    with pytest.raises(ValueError, match=re.escape("out_bits must be an integer in [2, 8], not 9")):
        sh_config_word(p, 9, 0)
    mult, offset = list(range(16)), list(range(-16, 0))
    assert const_writes(mult, offset) == [(k, k, k - 16) for k in range(16)]
    model = ShUnitTLM(p, mult, offset, shift=3, out_bits=5)
    assert model.config_word() == 5 | 3 << 4 and model.const_writes() == const_writes(mult, offset)


def test_model_rejects_bad_constants_settings_and_codes():
    p = CASES["small"]
    zeros = np.zeros(16, dtype=np.int64)
    bad = zeros.copy()
    bad[7] = 2048
    with pytest.raises(ValueError, match=re.escape("mult[7] = 2048 is outside the signed 12-bit range [-2048, 2047]")):
        ShUnitTLM(p, bad, zeros, shift=0, out_bits=8)
    with pytest.raises(ValueError, match=re.escape("offset must be an integer array of shape (16,), not int64 (15,)")):
        ShUnitTLM(p, zeros, zeros[:15], shift=0, out_bits=8)
    with pytest.raises(ValueError, match=re.escape("shift must be an integer in [0, 25], not -1")):
        ShUnitTLM(p, zeros, zeros, shift=-1, out_bits=8)
    with pytest.raises(ValueError, match=re.escape("out_bits must be an integer in [2, 8], not 1")):
        ShUnitTLM(p, zeros, zeros, shift=0, out_bits=1)
    model = ShUnitTLM(p, zeros, zeros, shift=0, out_bits=8)
    with pytest.raises(ValueError, match=re.escape("codes[1, 2] = 512 is outside the signed 10-bit range")):
        model.run([[0, 0, 0], [0, 0, 512]])
    with pytest.raises(ValueError, match=re.escape("codes must be an integer array of shape (N, 3)")):
        model.run(np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(ValueError, match=re.escape("offer_cycles has 1 entries for 2 directions")):
        model.run(np.zeros((2, 3), dtype=np.int64), offer_cycles=[0])


def test_params_are_validated_and_derive_the_timing():
    with pytest.raises(ConfigError, match="dir_bits"):
        ShUnitParams(dir_bits=3)
    p = CASES["default"]
    assert (p.PIPELINE_STAGES, p.latency, p.fifo_depth) == (4, 5, 6)
    assert p.shift_max == max(p.monomial_bits + p.mult_bits, p.offset_bits) == 40


# --- the cycle model ------------------------------------------------------------------------------
def recurrence(p: ShUnitParams, offers, ready):
    """The documented timing (module docstrings of sim.tlm.sh_unit and hw.sh_unit.rtl), as the formulas read."""
    n, L, F = len(offers), p.latency, p.fifo_depth
    a, o = [0] * n, [0] * n

    def next_ready(t):
        while ready is not None and t < len(ready) and not ready[t]:
            t += 1
        return t

    for k in range(n):
        a[k] = max([offers[k]] + ([a[k - 1] + 1] if k else []) + ([o[k - F] + 1] if k >= F else []))
        o[k] = next_ready(max([a[k] + L] + ([o[k - 1] + 1] if k else [])))
    return np.array(a), np.array(o)


@pytest.mark.parametrize("seed", range(6))
def test_schedule_is_the_closed_form_under_random_traffic(seed):
    p = CASES["small"]
    for ph in random_sh_workload(p, 240, seed, phases=3):
        model = ShUnitTLM(p, ph.mult, ph.offset, shift=ph.shift, out_bits=ph.out_bits)
        accept, out = model.schedule(ph.offer_cycles, ph.ready)
        want_a, want_o = recurrence(p, ph.offer_cycles.tolist(), ph.ready)
        assert accept.tolist() == want_a.tolist() and out.tolist() == want_o.tolist()
        assert (accept >= ph.offer_cycles).all() and (np.diff(accept) >= 1).all() and (out - accept >= 5).all()
        assert not all(ph.ready[:len(ph.ready) // 2])  # the pattern stalls


def test_full_rate_is_one_direction_per_cycle():
    p = CASES["default"]
    model = _model(p, np.random.default_rng(1))
    res = model.run(_codes(np.random.default_rng(2), p, 40))
    n = len(res.outputs)
    assert res.accept_cycles.tolist() == list(range(n))
    assert res.out_cycles.tolist() == list(range(5, n + 5))
    assert res.cycles == stream_cycles(p, n) == n + 5 and stream_cycles(p, 0) == 0
    assert model.run(np.zeros((0, 3), dtype=np.int64)).cycles == 0


def test_a_stalled_output_holds_six_directions_then_stops_the_input():
    p = CASES["small"]
    model = _model(p, np.random.default_rng(1))
    ready = np.zeros(50, dtype=bool)  # stalled until cycle 50
    accept, out = model.schedule(np.zeros(10, dtype=np.int64), ready)
    assert accept[:6].tolist() == list(range(6))  # fifo_depth credits
    assert accept[6:].tolist() == [51, 52, 53, 54]  # a credit comes back the cycle after each output
    assert out.tolist() == list(range(50, 56)) + [56, 57, 58, 59]


# --- the co-simulation workload -------------------------------------------------------------------
def test_workload_covers_corners_ties_clamps_and_is_deterministic():
    p = CASES["small"]
    phases = random_sh_workload(p, 300, 7, phases=3)
    again = random_sh_workload(p, 300, 7, phases=3)
    assert all(np.array_equal(a.inputs, b.inputs) and a.const_words == b.const_words for a, b in zip(phases, again))
    assert [ph.kind for ph in phases] == ["grid", "random", "ties"]
    assert [ph.out_bits for ph in phases][:2] == [p.max_out_bits, 2]
    stats = []
    for ph in phases:
        assert ph.inputs[:11].tolist() == extreme_directions(p).tolist()
        assert sorted(k for k, _, _ in ph.const_words) == list(range(16))
        model = ShUnitTLM(p, ph.mult, ph.offset, shift=ph.shift, out_bits=ph.out_bits)
        stats.append(phase_stats(p, ph, model.run(ph.inputs).outputs))
    assert stats[2]["ties"] > 20 and all(s["clamped"] > 0 for s in stats)
    assert all(s["at_limit"] >= s["clamped"] for s in stats)
    with pytest.raises(ValueError, match="need at least one direction per phase, not 2 directions for 3 phases"):
        random_sh_workload(p, 2, 1)


def test_count_ties_and_job_workload():
    assert count_ties([2, 6, 3, -2, 5], 2) == 3 and count_ties([1, 2], 0) == 0
    assert job_workload(CASES["small"], points=5, vectors=9, phases=None, shapes=None) == {"vectors": 9, "phases": 3}
    with pytest.raises(ValueError, match="need at least one direction per phase"):
        job_workload(CASES["small"], vectors=2, phases=3)
    s = {"params": CASES["small"].to_dict(), "phases": [
        {"kind": "grid", "out_bits": 8, "shift": 11, "vectors": 4, "ties": 1, "clamped": 2, "cycles_rtl": 9,
         "cycles_tlm": 9}]}
    assert summary_lines(s) == [
        "dir_bits=10 out<=8 mult_bits=12 offset_bits=24",
        "phase 0 (grid): out_bits=8 S=11, 4 directions, ties 1, clamped 2; cycles RTL 9 / TLM 9"]
