"""sim.tlm.requant: the arithmetic against its definition (exact ties, clamps, the widest operands), the cycle
model against its formulas, the workload."""

import re

import numpy as np
import pytest

from hw.config import ConfigError
from hw.requant.params import RequantConfig, RequantParams
from sim.cosim.workload_requant import random_requant_workload, rounding_counts
from sim.tlm.requant import (
    RequantTLM,
    config_word,
    const_writes,
    requant_reference,
    stream_cycles,
    unpack_vector,
    vector_latency,
)
from tests.test_tlm_activation import recurrence

CASES = {
    "small": RequantParams(lanes=4, in_bits=32, max_out_bits=8, mult_bits=14, offset_bits=48),  # rq-small
    "enc": RequantParams(lanes=32, in_bits=32, max_out_bits=16, mult_bits=12, offset_bits=40),  # rq-enc
    "widest": RequantParams(lanes=3, in_bits=40, max_out_bits=16, mult_bits=20, offset_bits=48),  # u * M: 60 bits
    "tiny": RequantParams(lanes=1, in_bits=2, max_out_bits=2, mult_bits=1, offset_bits=2),
}


# --- independent reference (plain Python integers) --------------------------------------------------------
def brute(u: int, m: int, o: int, shift: int, out_bits: int) -> int:
    """The documented arithmetic: v = u M + O, (v + 2^(S-1)) / 2^S rounded down (v for S = 0), clamped
    to [0, 2^out_bits - 1]."""
    v = u * m + o
    r = v if shift == 0 else (v + 2 ** (shift - 1)) // 2 ** shift
    return min(max(r, 0), 2 ** out_bits - 1)


def brute_outputs(u, mult, offset, shift, out_bits):
    return [[brute(int(x), int(m), int(o), shift, out_bits) for x, m, o in zip(row, mult, offset)] for row in u]


def _random(rng, p: RequantParams, count: int):
    u = rng.integers(-(1 << (p.in_bits - 1)), 1 << (p.in_bits - 1), size=(count, p.lanes), dtype=np.int64)
    mult = rng.integers(0, 1 << p.mult_bits, size=p.lanes, dtype=np.int64)
    offset = rng.integers(-(1 << (p.offset_bits - 1)), 1 << (p.offset_bits - 1), size=p.lanes, dtype=np.int64)
    return u, mult, offset


# --- arithmetic ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
def test_reference_and_model_equal_the_definition(name):
    p = CASES[name]
    rng = np.random.default_rng(5)
    for shift in sorted({0, 1, 2, p.prod_bits // 2, p.prod_bits - p.max_out_bits, p.shift_max - 1, p.shift_max}):
        for out_bits in sorted({2, p.max_out_bits}):
            u, mult, offset = _random(rng, p, 20)
            u[0], u[1] = -(1 << (p.in_bits - 1)), (1 << (p.in_bits - 1)) - 1  # the widest products
            mult[0], offset[0] = (1 << p.mult_bits) - 1, -(1 << (p.offset_bits - 1))
            want = brute_outputs(u, mult, offset, shift, out_bits)
            assert requant_reference(u, mult, offset, shift, out_bits, p).tolist() == want
            model = RequantTLM(p, RequantConfig(shift=shift, out_bits=out_bits), mult, offset)
            res = model.run(u)
            assert res.outputs.dtype == np.int64 and res.outputs.tolist() == want
            assert [unpack_vector(w, p.lanes, p.max_out_bits, signed=False) for w in res.payloads] == want


def test_exact_ties_round_half_up_on_both_sides_of_zero():
    p = RequantParams(lanes=1, in_bits=16, max_out_bits=16, mult_bits=4, offset_bits=16)
    for shift in (1, 2, 5):
        half = 1 << (shift - 1)
        k = np.arange(-6, 7)
        v = (k << shift) + half  # exactly k + 1/2 after the shift
        got = requant_reference(v[:, None], [1], [0], shift, 16, p)[:, 0]
        assert got.tolist() == [max(int(x) + 1, 0) for x in k]  # up, also for negatives: -2.5 -> -2 -> 0
        got = requant_reference(v[:, None] - 1 - (1 << 15), [1], [1 << 15], shift, 16, p)[:, 0]  # just below
        assert got.tolist() == [max(int(x), 0) for x in k]
        # the offset moves v by whole units of 2^S: same ties, one step higher
        assert requant_reference(v[:, None], [1], [1 << shift], shift, 16, p)[:, 0].tolist() == [
            max(int(x) + 2, 0) for x in k]
    # 2.5 -> 3 and 3.5 -> 4 (not to even), with M = 5, S = 1: 5u + O = 5, 7
    assert requant_reference([[1], [1]], [5], [0], 1, 8, p).tolist() == [[3], [3]]
    assert requant_reference([[1]], [7], [0], 1, 8, p).tolist() == [[4]]
    assert requant_reference([[3]], [1], [0], 0, 8, p).tolist() == [[3]]  # S = 0: no rounding at all


def test_clamps_to_the_run_time_width():
    p = CASES["small"]
    u = np.array([[-1000, -1, 0, 3], [4, 15, 16, 255], [256, 1000, 1 << 20, -(1 << 31)]])
    ones, zeros = np.ones(4, dtype=np.int64), np.zeros(4, dtype=np.int64)
    assert requant_reference(u, ones, zeros, 0, 2, p).tolist() == [[0, 0, 0, 3], [3, 3, 3, 3], [3, 3, 3, 0]]
    assert requant_reference(u, ones, zeros, 0, 4, p).tolist() == [[0, 0, 0, 3], [4, 15, 15, 15], [15, 15, 15, 0]]
    assert requant_reference(u, ones, zeros, 0, 8, p).tolist() == [[0, 0, 0, 3], [4, 15, 16, 255],
                                                                    [255, 255, 255, 0]]
    # M = 0: the offset alone, rounded
    assert requant_reference(u, zeros, np.array([-1, 5, 6, 1 << 40]), 2, 8, p).tolist() == [[0, 1, 2, 255]] * 3


def test_widest_operands_stay_exact_in_int64():
    p = CASES["widest"]
    assert (p.prod_bits, p.shift_max, p.sum_bits) == (60, 60, 62)
    u = np.array([[-(1 << 39), (1 << 39) - 1, -(1 << 39)]])
    mult = np.full(3, (1 << 20) - 1)
    offset = np.array([-(1 << 47), (1 << 47) - 1, (1 << 47) - 1])
    for shift in (0, 30, 44, 59, 60):
        want = brute_outputs(u, mult, offset, shift, 16)
        assert requant_reference(u, mult, offset, shift, 16, p).tolist() == want
    # lane 1: v = 2^59 - 2^39 + 2^47 - 2^20, v / 2^44 = 32776.47..; lanes 0 and 2 negative
    assert brute_outputs(u, mult, offset, 44, 16) == [[0, 32776, 0]]
    assert brute_outputs(u, mult, offset, 60, 16) == [[0, 1, 0]]  # v + 2^59 just above 2^60


def test_rounding_counts():
    cfg = RequantConfig(shift=1, out_bits=2)
    counts = rounding_counts(cfg, [1, 1], [0, 0], np.array([[1, -1], [5, 7], [9, -3]]))
    # v = 1 -> 1 (tie, kept), -1 -> 0 (tie, r = 0 kept), 5 -> 3 (tie), 7 -> 4 (tie, clamped high),
    # 9 -> 5 (clamped high), -3 -> -1 (tie, clamped low)
    assert counts == {"ties": 3, "clamped_low": 1, "clamped_high": 2}
    assert rounding_counts(RequantConfig(shift=0, out_bits=2), [1], [0], [[1], [-1]])["ties"] == 0


def test_model_rejects_bad_config_constants_and_inputs():
    p = CASES["small"]
    mult, offset = np.ones(4, dtype=np.int64), np.zeros(4, dtype=np.int64)
    with pytest.raises(ConfigError, match=re.escape("RequantConfig.shift must be an integer in [0, 48], not 49")):
        RequantTLM(p, RequantConfig(shift=49, out_bits=8), mult, offset)
    with pytest.raises(ConfigError, match=re.escape("RequantConfig.out_bits must be an integer in [2, 8], not 9")):
        RequantTLM(p, RequantConfig(shift=0, out_bits=9), mult, offset)
    with pytest.raises(ConfigError, match="cfg must be a RequantConfig"):
        RequantTLM(p, {"shift": 0}, mult, offset)
    with pytest.raises(ValueError, match=re.escape("mult[2] = 16384 is outside the unsigned 14-bit range [0, 16383]")):
        RequantTLM(p, RequantConfig(shift=0, out_bits=8), np.array([0, 1, 1 << 14, 0]), offset)
    with pytest.raises(ValueError, match=re.escape("offset[0] = -140737488355329 is outside the signed 48-bit range")):
        RequantTLM(p, RequantConfig(shift=0, out_bits=8), mult, np.array([-(1 << 47) - 1, 0, 0, 0]))
    with pytest.raises(ValueError, match=re.escape("offset must be an integer array of shape (4,), not int64 (3,)")):
        const_writes(p, mult, offset[:3])
    model = RequantTLM(p, RequantConfig(shift=3, out_bits=5), mult, offset)
    with pytest.raises(ValueError, match=re.escape("vectors[0, 1] = 2147483648 is outside the signed 32-bit range")):
        model.run(np.array([[0, 1 << 31, 0, 0]]))
    with pytest.raises(ValueError, match=re.escape("vectors must be an integer array of shape (N, 4)")):
        model.forward(np.zeros((2, 5), dtype=np.int64))
    assert model.run(np.zeros((0, 4), dtype=np.int64)).cycles == 0


def test_write_formats():
    p = CASES["small"]
    assert p.config_fields == (("shift", 6), ("out_bits", 4))
    word = config_word(p, RequantConfig(shift=48, out_bits=8))
    assert word == 48 | (8 << 6)
    assert const_writes(p, [1, 2, 3, 4], [-1, 0, 5, -(1 << 47)]) == [(0, 1, -1), (1, 2, 0), (2, 3, 5),
                                                                      (3, 4, -(1 << 47))]
    model = RequantTLM(p, RequantConfig(shift=0, out_bits=8), np.ones(4, dtype=np.int64), np.zeros(4, dtype=np.int64))
    assert unpack_vector(model.in_payload([-1, 2, -(1 << 31), 7]), 4, 32, signed=True) == [-1, 2, -(1 << 31), 7]
    assert model.payload([255, 0, 1, 3]) == 255 | (1 << 16) | (3 << 24)


# --- timing -----------------------------------------------------------------------------------------
def test_closed_forms():
    p = CASES["enc"]
    assert vector_latency(p) == p.LATENCY == 4 and p.OUT_FIFO_DEPTH == 5
    assert stream_cycles(p, 7) == 11 and stream_cycles(p, 0) == 0
    model = RequantTLM(p, RequantConfig(shift=0, out_bits=8), np.ones(32, dtype=np.int64), np.zeros(32, dtype=np.int64))
    res = model.run(np.zeros((7, 32), dtype=np.int64))
    assert res.accept_cycles.tolist() == list(range(7)) and res.out_cycles.tolist() == list(range(4, 11))
    assert res.cycles == stream_cycles(p, 7)


@pytest.mark.parametrize("name", CASES)
def test_cycle_model_equals_the_documented_recurrence(name):
    p = CASES[name]
    rng = np.random.default_rng(13)
    for seed in range(3):
        for ph in random_requant_workload(p, 60, seed, phases=3):
            model = RequantTLM(p, ph.cfg, ph.mult, ph.offset)
            for ready in (ph.ready, None, rng.random(len(ph.ready)) < 0.2):
                for offers in (ph.offer_cycles, np.zeros_like(ph.offer_cycles)):
                    acc, out = model.schedule(offers, ready)
                    want_acc, want_out = recurrence(p.LATENCY, p.OUT_FIFO_DEPTH, offers, ready)
                    assert acc.tolist() == want_acc and out.tolist() == want_out


def test_a_stalled_output_holds_five_vectors():
    p = CASES["small"]
    model = RequantTLM(p, RequantConfig(shift=0, out_bits=8), np.ones(4, dtype=np.int64), np.zeros(4, dtype=np.int64))
    acc, out = model.schedule(np.zeros(8, dtype=np.int64), np.zeros(20, dtype=bool))
    assert acc.tolist() == [0, 1, 2, 3, 4, 21, 22, 23] and out.tolist() == list(range(20, 28))


# --- the co-simulation workload -------------------------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
def test_workload_exercises_ties_and_both_clamps(name):
    p = CASES[name]
    phases = random_requant_workload(p, 120, 2, phases=6)
    assert [ph.kind for ph in phases] == ["scaled", "direct", "ties"] * 2
    assert phases[0].cfg.out_bits == p.max_out_bits and phases[1].cfg.out_bits == 2
    totals = {"ties": 0, "clamped_low": 0, "clamped_high": 0}
    for ph in phases:
        p.check_config(ph.cfg)
        assert ph.inputs[0].tolist() == [-(1 << (p.in_bits - 1))] * p.lanes
        assert ph.inputs[1].tolist() == [(1 << (p.in_bits - 1)) - 1] * p.lanes
        assert ph.cfg.shift == 0 if ph.kind == "direct" else ph.kind == "scaled" or 1 <= ph.cfg.shift <= 3
        counts = rounding_counts(ph.cfg, ph.mult, ph.offset, ph.inputs)
        if ph.kind == "ties" and p.in_bits > 2:
            assert counts["ties"] > 0
        totals = {k: totals[k] + counts[k] for k in totals}
        RequantTLM(p, ph.cfg, ph.mult, ph.offset).run(ph.inputs, ph.offer_cycles, ph.ready)
    if name == "tiny":  # u M + O <= 1 * 1 + 1 < 3: nothing can clamp high
        assert totals["ties"] > 0 and totals["clamped_low"] > 0 and totals["clamped_high"] == 0
    else:
        assert all(v > 0 for v in totals.values()), totals
    again = random_requant_workload(p, 120, 2, phases=6)
    assert all(a.in_payloads == b.in_payloads and a.const_words == b.const_words for a, b in zip(phases, again))
    with pytest.raises(ValueError, match="need at least one vector per phase, not 2 vectors for 3 phases"):
        random_requant_workload(p, 2, 1)
