"""sim.tlm.activation: the lookup against its definition, the cycle model against its formulas, the workload."""

import re

import numpy as np
import pytest

from hw.activation.params import ActivationConfig, ActivationParams
from hw.config import ConfigError
from sim.cosim.workload_activation import index_counts, phase_widths, random_activation_workload
from sim.tlm.activation import (
    ActivationTLM,
    activation_reference,
    activation_table,
    config_word,
    lut_index,
    pack_vector,
    stream_cycles,
    table_writes,
    unpack_vector,
    vector_latency,
)

CASES = {
    "density": ActivationParams(lanes=1, in_bits=12, out_bits=10, index_bits=8),  # act-density: B > A and B <= A
    "colour": ActivationParams(lanes=3, in_bits=8, out_bits=8, index_bits=10),  # act-colour: A > every B
    "tiny": ActivationParams(lanes=4, in_bits=2, out_bits=2, index_bits=2),
    "coarse": ActivationParams(lanes=2, in_bits=16, out_bits=16, index_bits=2),  # buckets of up to 2^14 codes
}


# --- independent references (plain Python integers) -----------------------------------------------------
def brute_index(z: int, bits: int, index_bits: int) -> int:
    """The documented index: the unsigned offset code u = z + 2^(B-1), divided by the bucket size
    2^max(0, B - A), rounded down."""
    return (z + 2 ** (bits - 1)) // 2 ** max(0, bits - index_bits)


def brute_outputs(p: ActivationParams, bits: int, table, codes) -> list[list[int]]:
    return [[int(table[brute_index(int(z), bits, p.index_bits)]) for z in row] for row in codes]


def recurrence(latency: int, depth: int, offers, ready):
    """The documented timing (hw.activation.rtl, sim.tlm.credit_pipe), written as the formulas read."""
    n = len(offers)
    a, o = [0] * n, [0] * n

    def next_ready(t):
        while ready is not None and t < len(ready) and not ready[t]:
            t += 1
        return t

    for k in range(n):
        a[k] = max([int(offers[k])] + ([a[k - 1] + 1] if k else []) + ([o[k - depth] + 1] if k >= depth else []))
        o[k] = next_ready(max([a[k] + latency] + ([o[k - 1] + 1] if k else [])))
    return a, o


def _codes(rng, p: ActivationParams, bits: int, count: int) -> np.ndarray:
    half = 1 << (bits - 1)
    return rng.integers(-half, half, size=(count, p.lanes))


# --- the lookup -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
def test_index_equals_the_definition_for_every_width(name):
    p = CASES[name]
    for bits in range(2, p.in_bits + 1):
        half = 1 << (bits - 1)
        z = np.arange(-half, half) if bits <= 12 else np.random.default_rng(bits).integers(-half, half, 5000)
        z = np.concatenate([z, [-half, half - 1]])
        got = lut_index(z, bits, p.index_bits)
        assert got.tolist() == [brute_index(int(v), bits, p.index_bits) for v in z]
        assert got.min() >= 0 and got.max() < p.used_entries(bits) <= p.depth
        assert got[-2] == 0 and got[-1] == p.used_entries(bits) - 1  # the extremes hit either end of the table


def test_wide_codes_share_an_entry_in_buckets_of_equal_size():
    p = CASES["density"]  # A = 8
    for bits, size in ((12, 16), (9, 2), (8, 1), (5, 1)):
        half = 1 << (bits - 1)
        idx = lut_index(np.arange(-half, half), bits, p.index_bits)
        assert np.array_equal(np.bincount(idx), np.full(p.used_entries(bits), size))
        assert np.all(np.diff(idx) >= 0)  # monotone in the code
    # B <= A: the code itself, offset to unsigned; B > A: its top A bits
    assert lut_index([-2048, -2033, -2032, 0, 2047], 12, 8).tolist() == [0, 0, 1, 128, 255]
    assert lut_index([-4, -1, 0, 3], 3, 8).tolist() == [0, 3, 4, 7]


@pytest.mark.parametrize("name", CASES)
def test_reference_and_model_equal_the_definition(name):
    p = CASES[name]
    rng = np.random.default_rng(3)
    for bits in sorted({2, p.in_bits, min(p.in_bits, p.index_bits), min(p.in_bits, p.index_bits + 1)}):
        table = rng.integers(0, 1 << p.out_bits, size=p.depth)
        codes = _codes(rng, p, bits, 50)
        want = brute_outputs(p, bits, table, codes)
        assert activation_reference(codes, table, bits, p).tolist() == want
        model = ActivationTLM(p, ActivationConfig(bits=bits), table[:p.used_entries(bits)])  # the used part only
        y = model.forward(codes)
        assert y.dtype == np.int64 and y.tolist() == want
        res = model.run(codes)
        assert res.outputs.tolist() == want and res.indices.tolist() == lut_index(codes, bits, p.index_bits).tolist()
        assert [unpack_vector(w, p.lanes, p.out_bits, signed=False) for w in res.payloads] == want


def test_activation_table_entries_are_the_bucket_middles():
    p = ActivationParams(lanes=1, in_bits=12, out_bits=12, index_bits=4)
    ident = lambda x: x  # noqa: E731
    code = lambda v: np.round(v * 2).astype(np.int64)  # noqa: E731 - keeps the halves exact
    # B > A: entry i is the activation at code (i + 1/2) 2^(B-A) - 1/2, the middle of its bucket
    t = activation_table(ident, 1.0, 0.0, 8, code, p)
    assert t.dtype == np.int64 and t.tolist() == [2 * (16 * i) + 15 for i in range(16)]  # 2 * (16 i + 7.5)
    # B <= A: one entry per code, the value of the code (in_step * code + in_low), 2^B entries
    t = activation_table(ident, 0.5, 1.0, 3, code, p)
    assert t.tolist() == [c + 2 for c in range(8)]  # 2 * (0.5 c + 1)
    with pytest.raises(ValueError, match="activation table entries must be unsigned 12-bit codes"):
        activation_table(ident, 1.0, 0.0, 8, lambda v: v.astype(np.int64) - 8, p)  # entry 0: 7 - 8


def test_payloads_sign_extend_codes_to_in_bits():
    p = CASES["colour"]
    model = ActivationTLM(p, ActivationConfig(bits=3), np.arange(8))
    assert model.in_payload([-4, 3, -1]) == 0b11111100 | (0b00000011 << 8) | (0b11111111 << 16)
    assert unpack_vector(model.in_payload([-4, 3, -1]), 3, 8, signed=True) == [-4, 3, -1]
    assert model.payload([7, 0, 255]) == 7 | (255 << 16) == pack_vector([7, 0, 255], 8)
    assert model.forward(np.array([[-4, 3, -1]])).tolist() == [[0, 7, 3]]


def test_model_rejects_bad_config_table_and_codes():
    p = CASES["density"]
    table = np.zeros(256, dtype=np.int64)
    with pytest.raises(ConfigError, match=re.escape("ActivationConfig.bits must be an integer in [2, 12], not 13")):
        ActivationTLM(p, ActivationConfig(bits=13), table)
    with pytest.raises(ConfigError, match=re.escape("ActivationConfig.bits must be an integer in [2, 12], not 1")):
        ActivationTLM(p, ActivationConfig(bits=1), table)
    with pytest.raises(ConfigError, match="cfg must be an ActivationConfig, not 8"):
        ActivationTLM(p, 8, table)
    with pytest.raises(ValueError, match=re.escape("table has 128 entries, fewer than the 256 that bits = 9 indexes")):
        ActivationTLM(p, ActivationConfig(bits=9), table[:128])
    ActivationTLM(p, ActivationConfig(bits=7), table[:128])  # B = 7 indexes 128 entries
    bad = table.copy()
    bad[17] = 1024
    with pytest.raises(ValueError, match=re.escape("table[17] = 1024 is outside the unsigned 10-bit range [0, 1023]")):
        ActivationTLM(p, ActivationConfig(bits=8), bad)
    with pytest.raises(ValueError, match=re.escape("table must be a 1-D integer array of 1..256 (depth) entries, "
                                                   "not int64 (257,)")):
        table_writes(p, np.zeros(257, dtype=np.int64))
    model = ActivationTLM(p, ActivationConfig(bits=6), table)
    with pytest.raises(ValueError, match=re.escape("codes[1, 0] = 32 is outside the signed 6-bit range [-32, 31]")):
        model.run(np.array([[0], [32]]))
    with pytest.raises(ValueError, match=re.escape("codes must be an integer array of shape (N, 1), not int64 (2, 2)")):
        model.forward(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match=re.escape("offer_cycles has 1 entries for 2 vectors")):
        model.run(np.zeros((2, 1), dtype=np.int64), [0])
    assert model.run(np.zeros((0, 1), dtype=np.int64)).cycles == 0


def test_write_formats():
    p = CASES["density"]
    assert p.config_fields == (("bits", 4),)
    assert config_word(p, ActivationConfig(bits=12)) == 12
    with pytest.raises(ValueError, match="ActivationConfig field bits = 16 does not fit in 4 bits"):
        config_word(p, ActivationConfig(bits=16))
    assert table_writes(p, np.array([5, 0, 1023])) == [(0, 5), (1, 0), (2, 1023)]


# --- timing -----------------------------------------------------------------------------------------
def test_closed_forms():
    p = CASES["colour"]
    assert vector_latency(p) == p.LATENCY == 3 and p.OUT_FIFO_DEPTH == 4
    assert stream_cycles(p, 10) == 13 and stream_cycles(p, 0) == 0
    model = ActivationTLM(p, ActivationConfig(bits=8), np.zeros(256, dtype=np.int64))
    res = model.run(np.zeros((10, 3), dtype=np.int64))
    assert res.accept_cycles.tolist() == list(range(10))  # II = 1
    assert res.out_cycles.tolist() == list(range(3, 13)) and res.cycles == stream_cycles(p, 10)
    acc, out = model.schedule([0, 40])  # a vector that finds the unit idle again has the same latency
    assert (out - acc).tolist() == [3, 3] and acc[1] == 40


@pytest.mark.parametrize("name", CASES)
def test_cycle_model_equals_the_documented_recurrence(name):
    p = CASES[name]
    rng = np.random.default_rng(11)
    for seed in range(3):
        for ph in random_activation_workload(p, 60, seed, phases=3):
            model = ActivationTLM(p, ph.cfg, ph.table)
            for ready in (ph.ready, None, rng.random(len(ph.ready)) < 0.2):
                for offers in (ph.offer_cycles, np.zeros_like(ph.offer_cycles)):
                    acc, out = model.schedule(offers, ready)
                    want_acc, want_out = recurrence(p.LATENCY, p.OUT_FIFO_DEPTH, offers, ready)
                    assert acc.tolist() == want_acc and out.tolist() == want_out


def test_a_stalled_output_holds_four_vectors_then_drains_one_per_cycle():
    p = CASES["density"]
    model = ActivationTLM(p, ActivationConfig(bits=8), np.zeros(256, dtype=np.int64))
    stall = 30
    acc, out = model.schedule(np.zeros(8, dtype=np.int64), np.zeros(stall, dtype=bool))
    assert acc[:4].tolist() == [0, 1, 2, 3] and (acc < stall).sum() == 4  # the credits run out
    assert out[:4].tolist() == [30, 31, 32, 33]
    assert acc[4:].tolist() == [31, 32, 33, 34]  # each output transfer frees a credit for the next cycle
    assert out[4:].tolist() == [34, 35, 36, 37]


def test_one_stalled_cycle_delays_exactly_one_output():
    p = CASES["tiny"]
    model = ActivationTLM(p, ActivationConfig(bits=2), np.zeros(4, dtype=np.int64))
    base_acc, base_out = model.schedule(np.zeros(6, dtype=np.int64))
    ready = np.ones(20, dtype=bool)
    ready[base_out[2]] = False
    acc, out = model.schedule(np.zeros(6, dtype=np.int64), ready)
    assert acc.tolist() == base_acc.tolist()  # a credit spare: the input never notices
    assert out.tolist() == base_out[:2].tolist() + [o + 1 for o in base_out[2:].tolist()]


# --- the co-simulation workload -------------------------------------------------------------------------
def test_workload_phases_cover_the_index_corners():
    rng = np.random.default_rng(0)
    assert phase_widths(CASES["density"], 5, rng)[:4] == [12, 8, 9, 2]  # B > A, B = A, one bit of bucket, B = 2
    assert phase_widths(CASES["colour"], 2, rng) == [8, 2]  # A > in_bits: every B indexes codes
    assert phase_widths(CASES["tiny"], 2, rng) == [2, 2]
    p = CASES["density"]
    phases = random_activation_workload(p, 40, 1, phases=4)
    assert [len(ph.inputs) for ph in phases] == [10] * 4
    for ph in phases:
        b = ph.cfg.bits
        assert ph.inputs[0].tolist() == [-(1 << (b - 1))] and ph.inputs[1].tolist() == [(1 << (b - 1)) - 1]
        assert p.used_entries(b) <= len(ph.table) <= p.depth and len(ph.table_words) == len(ph.table)
        assert 0 in ph.table[:p.used_entries(b)] and (1 << p.out_bits) - 1 in ph.table[:p.used_entries(b)]
        counts = index_counts(p, ph.cfg, ph.inputs)
        assert counts["first_entry"] >= 1 and counts["last_entry"] >= 1
        assert (counts["bucket_edges"] > 0) == (b > p.index_bits)
        ActivationTLM(p, ph.cfg, ph.table).run(ph.inputs, ph.offer_cycles, ph.ready)
    assert len(phases[0].table) == p.depth
    again = random_activation_workload(p, 40, 1, phases=4)
    assert all(a.in_payloads == b.in_payloads and a.table_words == b.table_words for a, b in zip(phases, again))
    with pytest.raises(ValueError, match="need at least one vector per phase, not 2 vectors for 3 phases"):
        random_activation_workload(p, 2, 1)
