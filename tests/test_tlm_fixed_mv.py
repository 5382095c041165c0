"""sim.tlm.fixed_mv: the reference arithmetic (exact beyond int64), the write-port words, and the cycle model
against its closed forms and recurrences."""

import numpy as np
import pytest

from hw.fixed_mv.params import FixedMvConfig, FixedMvParams
from sim.tlm import fixed_mv as fmv
from sim.tlm.transfers import unpack_vector

SMALL = FixedMvParams(n=7, out_size=5, data_bits=8, out_bits=6, rows=3, cols=3)
WIDE = FixedMvParams(n=64, out_size=64, data_bits=32, out_bits=32, rows=8, cols=16)
T1 = FixedMvParams(n=2, out_size=2, data_bits=8, out_bits=8, rows=2, cols=2)


def _python_forward(p, shift, w, b, x):
    """The semantics in plain Python integers and fractions: exact, independent of NumPy."""
    from fractions import Fraction

    out = []
    for row in x:
        ys = []
        for i in range(p.out_size):
            acc = sum(int(a) * int(c) for a, c in zip(row, w[i])) + int(b[i])
            v = Fraction(acc, 1 << shift)
            q = int(np.floor(v)) if v.denominator != 1 else int(v)
            frac = v - q
            q += 1 if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and q % 2) else 0
            ys.append(max(-(1 << (p.out_bits - 1)), min((1 << (p.out_bits - 1)) - 1, q)))
        out.append(ys)
    return out


@pytest.mark.parametrize("p", [SMALL, WIDE], ids=["small", "wide32"])
def test_reference_matches_plain_python(p):
    rng = np.random.default_rng(0)
    half = 1 << (p.data_bits - 1)
    x = rng.integers(-half, half, size=(4, p.n), dtype=np.int64)
    w = rng.integers(-half, half, size=(p.out_size, p.n), dtype=np.int64)
    x[0], w[0] = -half, -half  # the largest accumulator, n * 2^(2d-2)
    b = [int(v) for v in rng.integers(-(1 << 40), 1 << 40, size=p.out_size)]
    b[1] = (1 << (p.bias_bits - 1)) - 1
    for shift in (0, 1, 5, p.data_bits + 3, p.shift_o_max):
        acc, y = fmv.reference_forward(p, FixedMvConfig(shift_o=shift), w, np.array(b, dtype=object), x)
        assert y.dtype == np.int64 and y.tolist() == _python_forward(p, shift, w, b, x)
        assert int(acc[0, 0]) == p.n * half * half + b[0]
    if p is WIDE:
        assert p.acc_bits > 64 and acc.dtype == object and int(acc[0, 0]) > 2 ** 63


def test_rne_ties_to_even_and_clamps_saturate():
    assert fmv.rne(np.array([5, 6, 7, -5, -6, -7, 2, -2]), 2).tolist() == [1, 2, 2, -1, -2, -2, 0, 0]
    assert fmv.rne(np.array([2 ** 70 + 2 ** 9, 2 ** 70 + 3 * 2 ** 9], dtype=object), 10).tolist() == \
        [2 ** 60, 2 ** 60 + 2]
    w = np.array([[127, 127, 127, 127, 127, 127, 127]] * 5)
    model = fmv.FixedMvTLM(SMALL, FixedMvConfig(shift_o=0), w)
    _, y = model.forward(np.array([[127] * 7, [-128] * 7]))
    assert y[0].tolist() == [31] * 5 and y[1].tolist() == [-32] * 5  # full two's-complement range of 6 bits


def test_weight_and_bias_words_place_each_element():
    rng = np.random.default_rng(1)
    w = rng.integers(-128, 128, size=(5, 7))
    words = fmv.weight_writes(SMALL, w)
    assert [(rt, ct) for rt, ct, _ in words] == [(r, c) for r in range(2) for c in range(3)]
    for rt, ct, data in words:
        fields = unpack_vector(data, 9, 8, signed=True)
        for r in range(3):
            for c in range(3):
                i, j = rt * 3 + r, ct * 3 + c
                assert fields[r * 3 + c] == (w[i, j] if i < 5 and j < 7 else 0)
    padded = fmv.weight_writes(SMALL, w, padding=np.random.default_rng(2))
    assert any(unpack_vector(d, 9, 8, signed=True)[8] != 0 for _, _, d in padded)  # padding: random codes
    b = [3, -4, 5, -(1 << 18), (1 << 18) - 1]
    (t0, d0), (t1, d1) = fmv.bias_writes(SMALL, b)
    assert (t0, t1) == (0, 1) and unpack_vector(d0, 3, 19, signed=True) == b[:3]
    assert unpack_vector(d1, 3, 19, signed=True) == b[3:] + [0]


def test_model_checks_its_arguments():
    with pytest.raises(ValueError, match=r"weights\[0, 0\] = 128 is outside the signed 8-bit range"):
        fmv.FixedMvTLM(SMALL, FixedMvConfig(), np.full((5, 7), 128))
    with pytest.raises(ValueError, match="weights must be an integer array of shape"):
        fmv.FixedMvTLM(SMALL, FixedMvConfig(), np.zeros((7, 5), dtype=int))
    with pytest.raises(ValueError, match=r"bias\[2\] = 262144 is outside the signed 19-bit range"):
        fmv.FixedMvTLM(SMALL, FixedMvConfig(), np.zeros((5, 7), dtype=int), [0, 0, 1 << 18, 0, 0])
    with pytest.raises(ValueError, match=r"bias\[1\] = True is not an integer"):
        fmv.FixedMvTLM(SMALL, FixedMvConfig(), np.zeros((5, 7), dtype=int), np.array([0, True, 0, 0, 0], object))
    model = fmv.FixedMvTLM(SMALL, FixedMvConfig(), np.zeros((5, 7), dtype=int))
    with pytest.raises(ValueError, match=r"vectors\[0, 0\] = -129 is outside the signed 8-bit range"):
        model.run(np.full((1, 7), -129))
    with pytest.raises(ValueError, match="offer_cycles has 2 entries for 1 vectors"):
        model.run(np.zeros((1, 7), dtype=int), [0, 0])


@pytest.mark.parametrize("p", [SMALL, WIDE, T1], ids=["small", "wide32", "t1"])
def test_closed_forms(p):
    model = fmv.FixedMvTLM(p, FixedMvConfig(), np.zeros((p.out_size, p.n), dtype=int))
    T = fmv.vector_cycles(p)
    assert T == p.row_tiles * p.col_tiles
    accept, out = model.schedule([0])
    assert accept[0] == 0 and out[0] == fmv.vector_latency(p) == T + 6
    for n in (1, 2, 9):
        r = model.run(np.zeros((n, p.n), dtype=int))
        assert r.cycles == fmv.stream_cycles(p, n) == n * T + 7
        assert np.all(np.diff(r.out_cycles) == T)  # II = T at full rate, T = 1 included
    assert fmv.stream_cycles(p, 0) == 0


def _recurrence(p, offers, ready):
    """The docstring's recurrences for a_k, l_k, o_k."""
    T, D = p.vector_cycles, p.out_fifo_depth
    ready_at = (lambda t: t >= len(ready) or bool(ready[t]))
    a, lo, o = [], [], []
    for k, off in enumerate(offers):
        ak = max([off] + ([a[-1] + 1, lo[-1]] if k else []))
        lk = max([ak + 1] + ([lo[-1] + T] if k else []) + ([o[k - D] + 1] if k >= D else []))
        t = max(lk + T + 5, o[-1] + 1 if k else 0)
        while not ready_at(t):
            t += 1
        a.append(ak), lo.append(lk), o.append(t)
    return a, o


@pytest.mark.parametrize("p", [SMALL, T1, FixedMvParams(n=5, out_size=3, rows=1, cols=5)], ids=["small", "t1", "t3"])
@pytest.mark.parametrize("seed", range(6))
def test_schedule_follows_the_recurrences_under_random_traffic(p, seed):
    rng = np.random.default_rng(seed)
    n = 40
    offers = np.cumsum(np.where(rng.random(n) < 0.5, 0, rng.integers(1, 3 * p.vector_cycles + 2, size=n)))
    ready = rng.random(2000) < rng.uniform(0.2, 0.9)
    model = fmv.FixedMvTLM(p, FixedMvConfig(), np.zeros((p.out_size, p.n), dtype=int))
    accept, out = model.schedule(offers, ready)
    a, o = _recurrence(p, offers.tolist(), ready)
    assert accept.tolist() == a and out.tolist() == o
