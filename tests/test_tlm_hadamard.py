import math
import re
from fractions import Fraction

import numpy as np
import pytest

from hw.params import ConfigError, HadamardConfig, HadamardParams
from sim.cosim.workload_hadamard import count_ties, random_hadamard_workload
from sim.tlm.hadamard import (
    HadamardTLM,
    bias_writes,
    config_word,
    fwht,
    hadamard_matrix,
    pack_vector,
    reference_forward,
    requantize,
    rne,
    scale_writes,
    stream_cycles,
    unpack_vector,
    vector_cycles,
    vector_latency,
    weight_writes,
)

CASES = {
    "small": HadamardParams(n=8, out_size=5, in_bits=6, weight_bits=4, max_act_bits=5, out_bits=6, rows=3, cols=8,
                            mult_bits=10),  # had-small: T_min 4 < F 6, two front credits
    "tiled": HadamardParams(n=16, out_size=7, in_bits=5, weight_bits=3, max_act_bits=4, out_bits=5, rows=2, cols=4,
                            mult_bits=8),  # partial row tile, four column tiles
    "inr": HadamardParams(n=64, out_size=64, in_bits=8, weight_bits=8, max_act_bits=8, out_bits=8, rows=8, cols=16,
                          mult_bits=16),
    "wide": HadamardParams(n=128, out_size=16, in_bits=12, weight_bits=6, max_act_bits=12, out_bits=16, rows=4,
                           cols=16, mult_bits=20),
    "fast": HadamardParams(n=128, out_size=4, in_bits=16, weight_bits=16, max_act_bits=16, out_bits=16, rows=4,
                           cols=128, mult_bits=6),  # T = 2a, F = 10: five front credits; the widest everything
    "tiny": HadamardParams(n=2, out_size=1, in_bits=2, weight_bits=2, max_act_bits=2, out_bits=2, rows=1, cols=1,
                           mult_bits=1),
}


# --- independent references (plain Python integers and fractions) ------------------------------------
def popcount_matrix(n):
    """H_n straight from its definition, ``(-1)^popcount(i & j)``."""
    return [[-1 if bin(i & j).count("1") % 2 else 1 for j in range(n)] for i in range(n)]


def brute_rne(v: int, shift: int) -> int:
    """v / 2^shift rounded to nearest, ties to even, with exact fractions."""
    x = Fraction(v, 1 << shift)
    lo = math.floor(x)
    frac = x - lo
    if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and lo % 2):
        return lo + 1
    return lo


def brute_requantize(v: int, mult: int, shift: int, bits: int) -> int:
    lim = 2 ** (bits - 1) - 1
    return max(-lim, min(lim, brute_rne(v * mult, shift)))


def brute_forward(p: HadamardParams, cfg: HadamardConfig, w, b, x):
    """The documented semantics element by element: explicit matrix, fractions, Python ints."""
    h = popcount_matrix(p.n)
    us, accs, ys = [], [], []
    for row in x.tolist():
        t = [sum(row[i] * h[i][j] for i in range(p.n)) for j in range(p.n)]
        u = [brute_requantize(v, cfg.mult_a, cfg.shift_a, cfg.act_bits) for v in t]
        acc = [sum(u[j] * int(w[o, j]) for j in range(p.n)) + int(b[o]) for o in range(p.out_size)]
        y = [brute_requantize(v, cfg.mult_o, cfg.shift_o, p.out_bits) for v in acc]
        us.append(u)
        accs.append(acc)
        ys.append(y)
    return us, accs, ys


def bit_serial_accumulators(p: HadamardParams, act_bits: int, w, b, u):
    """The array's algorithm: per (row tile, column tile, activation plane j) the sum over the tile's
    columns of the weights whose activation bit j is set, shifted by j, negative for the MSB plane
    j = a - 1, accumulated from the bias modulo 2^acc_bits."""
    R, C = p.rows, p.cols
    wp = np.zeros((p.row_tiles * R, p.n), dtype=np.int64)
    wp[:p.out_size] = w
    bp = np.zeros(p.row_tiles * R, dtype=np.int64)
    bp[:p.out_size] = b
    codes = u & ((1 << act_bits) - 1)  # two's complement a-bit codes
    mod = 1 << p.acc_bits
    acc = np.zeros((len(u), p.row_tiles * R), dtype=np.int64)
    for rt in range(p.row_tiles):
        rows = slice(rt * R, (rt + 1) * R)
        tile = np.broadcast_to(bp[rows], (len(u), R)).copy()
        for ct in range(p.col_tiles):
            cols = slice(ct * C, (ct + 1) * C)
            for j in range(act_bits):
                bits = (codes[:, cols] >> j) & 1  # (N, C)
                sums = bits @ wp[rows, cols].T  # (N, R): masked weight sums
                tile = (tile + (-1 if j == act_bits - 1 else 1) * (sums << j)) % mod
        acc[:, rows] = np.where(tile >= mod // 2, tile - mod, tile)
    return acc[:, :p.out_size]


def recurrence(p: HadamardParams, T: int, offers, ready):
    """The documented general timing (hw.hadamard docstring), written as the formulas read."""
    n, F, Q, D = len(offers), p.front_cycles, p.front_depth, p.OUT_FIFO_DEPTH
    a, l, o = [0] * n, [0] * n, [0] * n

    def next_ready(t):
        while ready is not None and t < len(ready) and not ready[t]:
            t += 1
        return t

    for k in range(n):
        a[k] = max([offers[k]] + ([a[k - 1] + 1] if k else []) + ([l[k - Q]] if k >= Q else []))
        l[k] = max([a[k] + F] + ([l[k - 1] + T] if k else []) + ([o[k - D] + 1] if k >= D else []))
        o[k] = next_ready(max([l[k] + T + 5] + ([o[k - 1] + 1] if k else [])))
    return np.array(a), np.array(o)


def _workload(name, seed, vectors=12, **kw):
    return random_hadamard_workload(CASES[name], vectors, seed, **kw)


def _model(p, phase):
    return HadamardTLM(p, phase.cfg, phase.weights, phase.bias)


# --- the Hadamard matrix and the transform -----------------------------------------------------------
@pytest.mark.parametrize("n", [1, 2, 4, 8, 16, 32, 64, 128])
def test_hadamard_matrix_is_the_popcount_sign_matrix(n):
    h = hadamard_matrix(n)
    assert h.dtype == np.int64 and h.tolist() == popcount_matrix(n)
    assert np.array_equal(h, h.T) and np.array_equal(h @ h, n * np.eye(n, dtype=np.int64))


def test_hadamard_matrix_rejects_other_sizes():
    for bad in (3, 96):
        with pytest.raises(ValueError, match=re.escape(f"n must be a power of two >= 1, not {bad!r}")):
            hadamard_matrix(bad)
    for bad in (0, -4, 2.0, True):
        with pytest.raises(ValueError, match=re.escape(f"n must be an integer >= 1, not {bad!r}")):
            hadamard_matrix(bad)
    with pytest.raises(ValueError, match=re.escape("n must be a power of two >= 1, not 12")):
        fwht(np.zeros((2, 12), dtype=np.int64))


@pytest.mark.parametrize("n", [2, 8, 64, 128])
def test_fwht_is_exact_at_full_growth(n):
    in_bits = 16
    lo, hi = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    rng = np.random.default_rng(n)
    x = rng.choice([lo, hi, lo + 1, 0, -1, 1], size=(40, n))
    x[0], x[1] = lo, hi
    x[2] = np.where(hadamard_matrix(n)[n - 1] > 0, hi, lo)  # row n-1 of H: its output reaches +n(2^15) - n/2
    t, stages = fwht(x, stages=True)
    assert np.array_equal(t, x @ hadamard_matrix(n)) and len(stages) == n.bit_length() - 1
    assert t[0, 0] == -n * (1 << (in_bits - 1)) == -(1 << (in_bits - 1 + n.bit_length() - 1))
    for s, v in enumerate(stages):  # stage s holds in_bits + s + 1 signed bits, and needs them
        assert v.min() >= -(1 << (in_bits + s)) and v.max() < 1 << (in_bits + s)
        assert v.min() == -(1 << (in_bits + s))
    x3 = rng.integers(lo, hi + 1, size=(2, 3, n))  # leading axes are batch axes
    assert np.array_equal(fwht(x3), x3 @ hadamard_matrix(n))


# --- rounding and clamping ------------------------------------------------------------------------
def test_rne_rounds_ties_to_even_and_matches_torch_round():
    assert rne(np.array([1, 3, 5, 7, -1, -3, -5, -7]), 1).tolist() == [0, 2, 2, 4, 0, -2, -2, -4]
    assert rne(np.array([2, 6, 10, 14, -2, -6, -10]), 2).tolist() == [0, 2, 2, 4, 0, -2, -2]  # x.5 ties
    assert rne(np.array([3, 5, -3, -5, 1, -1]), 2).tolist() == [1, 1, -1, -1, 0, 0]  # .75, 1.25, ...: no ties
    assert rne(np.array([9, 7, 8, 24, 40]), 4).tolist() == [1, 0, 0, 2, 2]  # 8/16 -> 0, 24/16 -> 2, 40/16 -> 2
    v = np.arange(-300, 301)
    assert rne(v, 0).tolist() == v.tolist()  # S = 0: the identity
    for s in range(1, 10):  # np.round is half-to-even like torch.round; v / 2^s is exact in float64
        assert rne(v, s).tolist() == np.round(v / 2.0**s).astype(np.int64).tolist()


def test_rne_against_fractions_on_wide_values():
    rng = np.random.default_rng(3)
    v = np.concatenate([rng.integers(-(1 << 58), 1 << 58, size=300), np.arange(-40, 41)])
    for s in (0, 1, 2, 5, 17, 31, 45, 58):
        tie = v.copy()
        if s:
            tie = (v >> s << s) + (1 << (s - 1))  # force exact ties
        for arr in (v, tie):
            assert rne(arr, s).tolist() == [brute_rne(int(a), s) for a in arr]


def test_rtl_rounding_expression_is_round_half_to_even():
    """hw.hadamard: q + (g & (s | q_0)), q = v >> S, g = bit S-1 of v (guard mask), s = OR of the bits
    below it (sticky mask), both masks 0 for S = 0; the masks are the ones the RTL registers."""
    rng = np.random.default_rng(0)
    values = [int(v) for v in rng.integers(-(1 << 40), 1 << 40, size=200)] + list(range(-20, 21))
    width = 44
    for s in range(0, width):
        guard = sum(1 << b for b in range(width - 1) if s == b + 1)
        sticky = sum(1 << b for b in range(width - 1) if s > b + 1)
        for v in values:
            low = v & ((1 << (width - 1)) - 1)
            q = v >> s
            rtl = q + (bool(low & guard) and (bool(low & sticky) or bool(q & 1)))
            assert rtl == brute_rne(v, s), (v, s)


def test_requantize_clamps_to_the_narrow_symmetric_range():
    v = np.array([-1000, -128, -127, -8, -7, 0, 7, 8, 127, 1000])
    assert requantize(v, 1, 0, 4).tolist() == [-7, -7, -7, -7, -7, 0, 7, 7, 7, 7]  # never -8
    assert requantize(v, 1, 0, 8).tolist() == [-127, -127, -127, -8, -7, 0, 7, 8, 127, 127]
    assert requantize(v, 3, 1, 2).tolist() == [-1, -1, -1, -1, -1, 0, 1, 1, 1, 1]
    assert requantize(np.array([5, -5, 3, -3]), 1, 1, 8).tolist() == [2, -2, 2, -2]  # 2.5 -> 2, 1.5 -> 2
    assert requantize(np.array([5]), 0, 0, 8).tolist() == [0]  # M = 0


# --- the data path against the brute-force definition ---------------------------------------------------
@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("seed", [1, 2])
def test_reference_equals_the_definition(name, seed):
    p = CASES[name]
    # two extreme vectors per phase, then random ones
    phases = _workload(name, seed, vectors=9 if p.n >= 64 else 12, phases=3)
    ties = 0
    for ph in phases:
        u, acc, y = _model(p, ph).forward(ph.inputs)
        assert u.dtype == acc.dtype == y.dtype == np.int64
        bu, bacc, by = brute_forward(p, ph.cfg, ph.weights, ph.bias, ph.inputs)
        assert u.tolist() == bu and acc.tolist() == bacc and y.tolist() == by
        ties += count_ties(fwht(ph.inputs), ph.cfg.mult_a, ph.cfg.shift_a)
        ties += count_ties(acc, ph.cfg.mult_o, ph.cfg.shift_o)
    assert ties > 0  # the ties phase rounds exact halves: half-to-even is exercised


def test_extreme_inputs_clamp_both_ends():
    p = CASES["small"]
    cfg = HadamardConfig(act_bits=3, mult_a=1, shift_a=0, mult_o=1, shift_o=0)
    x = np.array([[-32] * 8, [31] * 8, [31, -32, 31, -32, 31, -32, 31, -32]])
    w = np.zeros((5, 8), dtype=np.int64)
    w[0, 0], w[1, 1], w[2, :] = 7, -7, 7
    u, acc, y = reference_forward(p, cfg, w, np.array([0, 0, 0, 1000, -1000]), x)
    t = fwht(x)
    assert t[0, 0] == -256 and t[1, 0] == 248 and t[2, 1] == 252  # x @ H, full growth
    assert u.tolist() == np.clip(t, -3, 3).tolist()
    assert np.abs(u).max() == 3 and u.min() == -3  # narrow: -4 never appears
    assert y[:, 3].tolist() == [31] * 3 and y[:, 4].tolist() == [-31] * 3  # the bias drives the clamp
    # u = [-3, 0, ...], [3, 0, ...], [-3, 3, 0, ...]: row 0 of W sees u_0, row 1 u_1, row 2 their sum
    assert y[:, :3].tolist() == [[-21, 0, -21], [21, 0, 21], [-21, -21, 0]]


@pytest.mark.parametrize("name", ["small", "tiled", "wide", "fast", "tiny"])
def test_bit_serial_planes_sum_to_the_exact_accumulator(name):
    p = CASES[name]
    for ph in _workload(name, 4):
        u, acc, _ = _model(p, ph).forward(ph.inputs)
        got = bit_serial_accumulators(p, ph.cfg.act_bits, ph.weights, ph.bias, u)
        assert np.array_equal(got, acc)
    # the extreme corner: every u and weight at its narrow extreme, the bias at its most negative
    a, lim_w = p.max_act_bits, (1 << (p.weight_bits - 1)) - 1
    u = np.full((1, p.n), -((1 << (a - 1)) - 1))
    w = np.full((p.out_size, p.n), -lim_w)
    b = np.full(p.out_size, -(1 << (p.bias_bits - 1)))
    assert np.array_equal(bit_serial_accumulators(p, a, w, b, u), u @ w.T + b)


def test_tlm_rejects_bad_weights_bias_inputs_and_config():
    p = CASES["small"]
    cfg = HadamardConfig(act_bits=4)
    w = np.zeros((5, 8), dtype=np.int64)
    with pytest.raises(ValueError, match=re.escape("weights must be an integer array of shape (out_size, n) = "
                                                   "(5, 8), not int64 (8, 5)")):
        HadamardTLM(p, cfg, w.T)
    bad = w.copy()
    bad[1, 3] = -8  # the full-range minimum is outside the narrow range
    with pytest.raises(ValueError, match=re.escape("weights[1, 3] = -8 is outside the narrow signed 4-bit range "
                                                   "[-7, 7]")):
        HadamardTLM(p, cfg, bad)
    with pytest.raises(ValueError, match=re.escape("bias[2] = 1024 is outside the signed 11-bit range [-1024, 1023]")):
        HadamardTLM(p, cfg, w, np.array([0, 0, 1024, 0, 0]))
    with pytest.raises(ValueError, match=re.escape("bias must be an integer array of shape (5,), not float64 (5,)")):
        HadamardTLM(p, cfg, w, np.zeros(5))
    with pytest.raises(ConfigError, match=re.escape("HadamardConfig.act_bits must be an integer in [2, 5], not 6")):
        HadamardTLM(p, HadamardConfig(act_bits=6), w)
    model = HadamardTLM(p, cfg, w)  # no bias: zeros
    assert model.bias.tolist() == [0] * 5
    with pytest.raises(ValueError, match=re.escape("vectors[1, 2] = 32 is outside the signed 6-bit range [-32, 31]")):
        model.run(np.array([[0] * 8, [0, 0, 32, 0, 0, 0, 0, 0]]))
    with pytest.raises(ValueError, match=re.escape("vectors must be an integer array of shape (N, 8)")):
        model.forward(np.zeros((2, 7), dtype=np.int64))
    with pytest.raises(ValueError, match=re.escape("offer_cycles has 1 entries for 2 vectors")):
        model.run(np.zeros((2, 8), dtype=np.int64), [0])


# --- driver formats ---------------------------------------------------------------------------------
def test_config_word_layout():
    p = CASES["wide"]
    cfg = HadamardConfig(act_bits=12, mult_a=(1 << 20) - 1, shift_a=p.shift_a_max, mult_o=12345, shift_o=p.shift_o_max)
    word, pos = config_word(p, cfg), 0
    for name, bits in p.config_fields:
        assert (word >> pos) & ((1 << bits) - 1) == getattr(cfg, name), name
        pos += bits
    assert word < 1 << pos
    with pytest.raises(ValueError, match=re.escape("HadamardConfig field act_bits = 16 does not fit in 3 bits")):
        config_word(CASES["small"], HadamardConfig(act_bits=16))


def test_weight_and_bias_words_rebuild_the_matrix():
    p = CASES["tiled"]  # R = 2, m = 7: a partial last row tile; C = 4: four column tiles
    rng = np.random.default_rng(1)
    w = rng.integers(-3, 4, size=(7, 16))
    words = weight_writes(p, w)
    assert [(rt, ct) for rt, ct, _ in words] == [(rt, ct) for rt in range(4) for ct in range(4)]
    rebuilt = np.zeros((8, 16), dtype=np.int64)
    for rt, ct, data in words:
        assert data < 1 << p.weight_word_bits
        fields = unpack_vector(data, p.rows * p.cols, p.weight_bits, signed=True)
        rebuilt[rt * 2:(rt + 1) * 2, ct * 4:(ct + 1) * 4] = np.array(fields).reshape(2, 4)
    assert np.array_equal(rebuilt[:7], w) and not rebuilt[7:].any()
    junk = weight_writes(p, w, padding=np.random.default_rng(2))
    rebuilt_junk = np.zeros((8, 16), dtype=np.int64)
    for rt, ct, data in junk:
        rebuilt_junk[rt * 2:(rt + 1) * 2, ct * 4:(ct + 1) * 4] = np.array(
            unpack_vector(data, 8, p.weight_bits, signed=True)).reshape(2, 4)
    assert np.array_equal(rebuilt_junk[:7], w) and rebuilt_junk[7:].any()  # junk only past m
    b = np.array([-5, 6, 100, -(1 << (p.bias_bits - 1)), (1 << (p.bias_bits - 1)) - 1, 0, 1])
    got = []
    for rt, data in bias_writes(p, b):
        got += unpack_vector(data, p.rows, p.bias_bits, signed=True)
    assert got[:7] == b.tolist() and got[7:] == [0]


# --- timing: closed form, cycle model, documented recurrence ---------------------------------------------
def test_closed_forms_of_the_inr_layer():
    p = CASES["inr"]  # 8 row tiles x 4 column tiles
    assert vector_cycles(p, 8) == 8 * 4 * 8 == 256
    assert vector_latency(p, 8) == 256 + 6 + 8  # log2 n + T + 8
    assert stream_cycles(p, 8, 10) == 10 * 256 + 9 + 6 and stream_cycles(p, 8, 0) == 0
    with pytest.raises(ValueError, match=re.escape("act_bits must be an integer in [2, 8], not 9")):
        vector_cycles(p, 9)
    with pytest.raises(ValueError, match=re.escape("act_bits must be an integer in [2, 8], not 1")):
        stream_cycles(p, 1, 3)
    with pytest.raises(ValueError, match=re.escape("vectors must be an integer >= 0, not -1")):
        stream_cycles(p, 8, -1)


def test_cycles_scale_linearly_in_act_bits_and_n_not_weight_bits():
    base = dict(out_size=16, in_bits=8, weight_bits=8, max_act_bits=8, out_bits=8, rows=4, cols=8, mult_bits=12)
    for n in (8, 16, 32, 64, 128):
        p = HadamardParams(n=n, **base)
        for a in range(2, 9):
            assert vector_cycles(p, a) == a * 4 * (n // 8)  # linear in a and in n
            # N more vectors cost N * T more cycles, T linear in a
            assert stream_cycles(p, a, 20) - stream_cycles(p, a, 10) == 10 * vector_cycles(p, a)
        assert stream_cycles(p, 8, 5) - stream_cycles(p, 4, 5) == 5 * 4 * 4 * (n // 8)
        for wb in (2, 5, 16):  # weight bits: area, not cycles
            q = HadamardParams(n=n, **{**base, "weight_bits": wb})
            assert [vector_cycles(q, a) for a in (2, 5, 8)] == [vector_cycles(p, a) for a in (2, 5, 8)]
            assert vector_latency(q, 3) == vector_latency(p, 3)
    # the latency grows by one cycle per doubling of n (one more butterfly stage) beyond T
    lat = [vector_latency(HadamardParams(n=n, **base), 2) - vector_cycles(HadamardParams(n=n, **base), 2)
           for n in (8, 16, 32, 64, 128)]
    assert lat == [11, 12, 13, 14, 15]


@pytest.mark.parametrize("name", CASES)
def test_closed_form_agrees_with_the_cycle_model(name):
    p = CASES[name]
    for ph in _workload(name, 2, vectors=6, phases=3):
        model = _model(p, ph)
        a = ph.cfg.act_bits
        T = vector_cycles(p, a)
        assert T == model.T == math.ceil(p.out_size / p.rows) * (p.n // p.cols) * a
        n = 9
        res = model.run(np.repeat(ph.inputs[:1], n, axis=0))  # offered from cycle 0, always ready
        assert res.out_cycles[0] - res.accept_cycles[0] == vector_latency(p, a) == T + p.log2_n + 8
        assert np.all(np.diff(res.out_cycles) == T)  # initiation interval
        assert res.cycles == stream_cycles(p, a, n) == n * T + p.front_cycles + 6
        # a vector that finds the engine idle again has the same latency
        acc, out = model.schedule([0, 5 * T + 80])
        assert out[1] - acc[1] == vector_latency(p, a) and acc[1] == 5 * T + 80


@pytest.mark.parametrize("name", CASES)
def test_documented_recurrence_agrees_with_the_cycle_model(name):
    p = CASES[name]
    rng = np.random.default_rng(11)
    for seed in range(2):
        for ph in _workload(name, seed, vectors=24, phases=3):
            model = _model(p, ph)
            offers = np.asarray(ph.offer_cycles)
            for ready in (ph.ready, None, rng.random(len(ph.ready)) < 0.2):
                for offs in (offers, np.zeros_like(offers)):
                    acc, out = model.schedule(offs, ready)
                    want_acc, want_out = recurrence(p, model.T, offs, ready)
                    assert acc.tolist() == want_acc.tolist() and out.tolist() == want_out.tolist()


@pytest.mark.parametrize("name", ["small", "fast", "inr"])
def test_backpressure_stops_loads_after_four_credits_then_the_front_end(name):
    p = CASES[name]
    model = _model(p, _workload(name, 3, vectors=3)[0])
    stall = 40 * (model.T + p.front_cycles)
    n = p.OUT_FIFO_DEPTH + p.front_depth + 3
    acc, out = model.schedule(np.zeros(n, dtype=np.int64), np.zeros(stall, dtype=bool))
    # four vectors loaded (output credits), front_depth more wait in the front end, the next is refused
    assert (acc < stall).sum() == p.OUT_FIFO_DEPTH + p.front_depth
    assert out[:4].tolist() == [stall, stall + 1, stall + 2, stall + 3]  # the FIFO drains one per cycle
    # the first output transfer returns a credit, the next load follows in the cycle after, and the
    # refused vector enters in that load's cycle
    assert acc[p.OUT_FIFO_DEPTH + p.front_depth] == stall + 1


def test_one_stalled_cycle_delays_exactly_one_output():
    p = CASES["tiled"]
    model = _model(p, _workload("tiled", 2)[1])
    base_acc, base_out = model.schedule(np.zeros(5, dtype=np.int64))
    ready = np.ones(base_out[-1] + 10, dtype=bool)
    ready[base_out[2]] = False
    acc, out = model.schedule(np.zeros(5, dtype=np.int64), ready)
    assert acc.tolist() == base_acc.tolist()
    assert out.tolist() == base_out[:2].tolist() + [base_out[2] + 1] + base_out[3:].tolist()


def test_schedule_rejects_bad_offers():
    p = CASES["tiny"]
    model = HadamardTLM(p, HadamardConfig(act_bits=2), np.zeros((1, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="offer_cycles must be a 1-D array of non-negative cycles"):
        model.schedule([0, -1])
    assert model.run(np.zeros((0, 2), dtype=np.int64)).cycles == 0


def test_run_payloads_and_total_cycles():
    p = CASES["tiled"]
    ph = _workload("tiled", 5)[0]
    model = _model(p, ph)
    res = model.run(ph.inputs, ph.offer_cycles, ph.ready)
    assert res.cycles == res.out_cycles.max() + 1
    assert np.all(res.accept_cycles >= ph.offer_cycles) and np.all(np.diff(res.accept_cycles) >= 1)
    assert np.all(np.diff(res.out_cycles) >= 1)
    assert res.payloads[3] == pack_vector(res.outputs[3], p.out_bits) < 1 << (p.out_size * p.out_bits)
    assert unpack_vector(res.payloads[3], p.out_size, p.out_bits, signed=True) == res.outputs[3].tolist()
    assert ph.in_payloads[3] == model.in_payload(ph.inputs[3])
    assert unpack_vector(ph.in_payloads[3], p.n, p.in_bits, signed=True) == ph.inputs[3].tolist()


def test_workload_phases_vary_the_configuration():
    p = CASES["wide"]
    phases = random_hadamard_workload(p, 10, 1, phases=4)
    assert [len(ph.inputs) for ph in phases] == [3, 3, 2, 2]
    assert phases[0].cfg.act_bits == p.max_act_bits and phases[1].cfg.act_bits == 2
    assert phases[2].cfg.mult_a in (1, 3) and phases[2].cfg.shift_a >= 1  # the ties phase
    for ph in phases:
        p.check_config(ph.cfg)
        assert ph.inputs[0].tolist() == [-(1 << 11)] * p.n and ph.inputs[1].tolist() == [(1 << 11) - 1] * p.n
    with pytest.raises(ValueError, match="need at least one vector per phase, not 2 vectors for 3 phases"):
        random_hadamard_workload(p, 2, 1)
    again = random_hadamard_workload(p, 10, 1, phases=4)
    assert all(a.in_payloads == b.in_payloads and a.weight_words == b.weight_words for a, b in zip(phases, again))


# --- per-row output multipliers (per_row_scales) ---------------------------------------------------------
ROWS = HadamardParams(n=16, out_size=7, in_bits=6, weight_bits=4, max_act_bits=4, out_bits=6, rows=3, cols=8,
                      mult_bits=10, per_row_scales=True)  # had-rows


def _rows_workload(seed, vectors=12, **kw):
    return random_hadamard_workload(ROWS, vectors, seed, **kw)


@pytest.mark.parametrize("seed", [1, 2])
def test_per_row_multipliers_follow_the_definition_row_by_row(seed):
    ties = 0
    for ph in _rows_workload(seed, phases=3):
        assert ph.mult_o is not None and ph.mult_o.shape == (7,)
        u, acc, y = HadamardTLM(ROWS, *ph.model_args()).forward(ph.inputs)
        for r in range(7):  # row r is the per-tensor definition with M_o = M_o[r]
            cfg = HadamardConfig(**{**ph.cfg.to_dict(), "mult_o": int(ph.mult_o[r])})
            bu, bacc, by = brute_forward(ROWS, cfg, ph.weights, ph.bias, ph.inputs)
            assert u.tolist() == bu and acc.tolist() == bacc
            assert y[:, r].tolist() == [row[r] for row in by]
        ties += count_ties(acc, ph.mult_o, ph.cfg.shift_o)
        # the configuration's mult_o is ignored: it differs from the rows', and changing it changes nothing
        assert (ph.mult_o != ph.cfg.mult_o).any()
        other = HadamardConfig(**{**ph.cfg.to_dict(), "mult_o": 0})
        assert np.array_equal(HadamardTLM(ROWS, other, ph.weights, ph.bias, ph.mult_o).forward(ph.inputs)[2], y)
    assert ties > 0  # the ties phase: round half to even with per-row multipliers


def test_reference_takes_an_int_or_a_row_vector_as_the_output_multiplier():
    p = CASES["tiled"]  # per_row_scales False: the reference itself does not look at it
    ph = _workload("tiled", 3)[0]
    base = reference_forward(p, ph.cfg, ph.weights, ph.bias, ph.inputs)
    for mult in (ph.cfg.mult_o, np.full(p.out_size, ph.cfg.mult_o)):  # the same M_o, as an int or per row
        assert all(np.array_equal(a, b) for a, b in zip(reference_forward(p, ph.cfg, ph.weights, ph.bias, ph.inputs,
                                                                          mult), base))
    rows = np.arange(p.out_size) * 37 % 256
    _, acc, y = reference_forward(p, ph.cfg, ph.weights, ph.bias, ph.inputs, rows)
    assert np.array_equal(y, requantize(acc, rows[None, :], ph.cfg.shift_o, p.out_bits))
    assert not y[:, 0].any()  # M_o[0] = 0
    assert np.array_equal(y[:, 3], requantize(acc[:, 3], int(rows[3]), ph.cfg.shift_o, p.out_bits))


def test_per_row_tlm_checks_its_multipliers():
    cfg = HadamardConfig(act_bits=4)
    w = np.zeros((7, 16), dtype=np.int64)
    with pytest.raises(ValueError, match=re.escape("per_row_scales=True: the per-row multipliers mult_o (an integer "
                                                   "array of shape (7,)) are required")):
        HadamardTLM(ROWS, cfg, w)
    with pytest.raises(ValueError, match=re.escape("mult_o must be an integer array of shape (7,), not int64 (6,)")):
        HadamardTLM(ROWS, cfg, w, None, np.ones(6, dtype=np.int64))
    with pytest.raises(ValueError, match=re.escape("mult_o must be an integer array of shape (7,), not float64 (7,)")):
        HadamardTLM(ROWS, cfg, w, None, np.ones(7))
    with pytest.raises(ValueError, match=re.escape("mult_o[4] = 1024 is outside the unsigned 10-bit range [0, 1023]")):
        HadamardTLM(ROWS, cfg, w, None, np.array([1, 2, 3, 4, 1024, 5, 6]))
    with pytest.raises(ValueError, match=re.escape("mult_o[0] = -1 is outside the unsigned 10-bit range")):
        HadamardTLM(ROWS, cfg, w, None, -np.ones(7, dtype=np.int64))
    with pytest.raises(ValueError, match=re.escape("mult_o need HadamardParams.per_row_scales=True")):
        HadamardTLM(CASES["small"], cfg, np.zeros((5, 8), dtype=np.int64), None, np.ones(5, dtype=np.int64))
    model = HadamardTLM(ROWS, cfg, w, None, np.arange(7))
    assert model.mult_o.dtype == np.int64 and model.mult_o.tolist() == list(range(7))
    assert HadamardTLM(CASES["small"], cfg, np.zeros((5, 8), dtype=np.int64)).mult_o is None


def test_scale_words_rebuild_the_multipliers():
    rows = np.array([0, 1, 1023, 512, 77, 5, 1000])
    words = scale_writes(ROWS, rows)
    assert [rt for rt, _ in words] == [0, 1, 2]
    got = []
    for _, data in words:
        assert data < 1 << ROWS.scale_word_bits
        got += unpack_vector(data, ROWS.rows, ROWS.mult_bits, signed=False)
    assert got == rows.tolist() + [0, 0]  # 0 past m
    junk = []
    for _, data in scale_writes(ROWS, rows, padding=np.random.default_rng(3)):
        junk += unpack_vector(data, ROWS.rows, ROWS.mult_bits, signed=False)
    assert junk[:7] == rows.tolist() and any(junk[7:])


@pytest.mark.parametrize("seed", [0, 1])
def test_per_row_multipliers_change_no_cycle(seed):
    """The table is read alongside stage 2: the schedule of a per-row engine is the per-tensor one's."""
    plain = HadamardParams(**{**ROWS.to_dict(), "per_row_scales": False})
    for ph in _rows_workload(seed, vectors=18, phases=3):
        rows, flat = HadamardTLM(ROWS, *ph.model_args()), HadamardTLM(plain, ph.cfg, ph.weights, ph.bias)
        assert rows.T == flat.T == vector_cycles(ROWS, ph.cfg.act_bits)
        for ready in (ph.ready, None):
            a, o = rows.schedule(ph.offer_cycles, ready)
            assert [x.tolist() for x in (a, o)] == [x.tolist() for x in flat.schedule(ph.offer_cycles, ready)]
            want_a, want_o = recurrence(ROWS, rows.T, ph.offer_cycles, ready)
            assert a.tolist() == want_a.tolist() and o.tolist() == want_o.tolist()
    assert vector_latency(ROWS, 4) == vector_latency(plain, 4)
    assert stream_cycles(ROWS, 3, 5) == stream_cycles(plain, 3, 5)


def test_per_row_workload_draws_extremes_and_keeps_the_plain_stream():
    phases = _rows_workload(4, vectors=16, phases=4)
    top = (1 << ROWS.mult_bits) - 1
    for k, ph in enumerate(phases):
        ROWS.check_config(ph.cfg)
        assert ph.mult_o.min() >= 0 and ph.mult_o.max() <= top
        assert len(ph.scale_words) == ROWS.row_tiles
        if k % 3 == 2:  # ties phase
            assert set(ph.mult_o.tolist()) <= {1, 3}
        else:
            assert top in ph.mult_o and 0 in ph.mult_o
    # without per_row_scales the workload draws nothing more: the existing streams stay as they were
    plain = random_hadamard_workload(CASES["tiled"], 8, 4, phases=2)
    assert all(ph.mult_o is None and ph.scale_words == () for ph in plain)
