import math
import re

import numpy as np
import pytest

from hw.params import ConfigError, MlpEngineParams, MlpLayer
from sim.cosim.workload_mlp_engine import random_mlp_workload
from sim.tlm.mlp_engine import (
    MlpEngineTLM,
    bias_writes,
    config_word,
    layer_cycles,
    pack_vector,
    reference_forward,
    stream_cycles,
    unpack_vector,
    vector_cycles,
    vector_latency,
    weight_writes,
)

CASES = {
    "nerf": MlpEngineParams(rows=8, cols=8, max_in=64, max_out=64, max_layers=2, max_weight_bits=8,
                            max_act_bits=8, mult_bits=16),
    "odd": MlpEngineParams(rows=3, cols=5, max_in=13, max_out=11, max_layers=3, max_weight_bits=4,
                           max_act_bits=5, mult_bits=10),
    "wide": MlpEngineParams(rows=4, cols=16, max_in=32, max_out=16, max_layers=2, max_weight_bits=16,
                            max_act_bits=16, mult_bits=8),  # acc 38 bits; acc * M stays exact in float64
    "tiny": MlpEngineParams(rows=1, cols=1, max_in=3, max_out=2, max_layers=4, max_weight_bits=2,
                            max_act_bits=2, mult_bits=3),
}


# --- independent references ---------------------------------------------------------------------
def float_forward(layers, weights, biases, x):
    """The quantized MLP in plain float64 arithmetic: matmul, round half up by floor(v + 0.5), ReLU, clip."""
    a = np.asarray(x, dtype=np.float64)
    for l, layer in enumerate(layers):
        acc = a @ np.asarray(weights[l], dtype=np.float64).T
        if layer.bias:
            acc = acc + np.asarray(biases[l], dtype=np.float64)
        assert np.abs(acc).max() * layer.mult < 2.0**52  # every step below is exact in float64
        v = acc * layer.mult / 2.0**layer.shift
        y = np.floor(v + 0.5) if layer.shift else v
        if layer.relu:
            y = np.maximum(y, 0.0)
            y = np.minimum(y, 2.0**layer.out_bits - 1)
        else:
            y = np.clip(y, -(2.0 ** (layer.out_bits - 1)), 2.0 ** (layer.out_bits - 1) - 1)
        a = y
    return a


def bit_serial_accumulators(p: MlpEngineParams, layer: MlpLayer, w, b, x):
    """The array's algorithm: per (row tile, column tile, weight plane, activation plane) an AND of
    bit-planes and a popcount per row, shifted by the planes' significance, negative for the weight
    MSB plane and for a signed activation's MSB plane, accumulated modulo 2^acc_bits."""
    R, C = p.rows, p.cols
    n_out, n_in = w.shape
    rt_n, ct_n = -(-n_out // R), -(-n_in // C)
    wp = np.zeros((rt_n * R, ct_n * C), dtype=np.int64)
    wp[:n_out, :n_in] = w & ((1 << layer.weight_bits) - 1)
    xp = np.zeros((len(x), ct_n * C), dtype=np.int64)
    xp[:, :n_in] = x & ((1 << layer.act_bits) - 1)
    mod = 1 << p.acc_bits
    acc = np.zeros((len(x), rt_n * R), dtype=np.int64)
    for rt in range(rt_n):
        rows = slice(rt * R, (rt + 1) * R)
        tile = np.zeros((len(x), R), dtype=np.int64)
        if layer.bias:
            tile += np.concatenate([b, np.zeros(rt_n * R - n_out, dtype=np.int64)])[rows]
        for ct in range(ct_n):
            cols = slice(ct * C, (ct + 1) * C)
            for i in range(layer.weight_bits):
                wbits = (wp[rows, cols] >> i) & 1  # (R, C)
                for j in range(layer.act_bits):
                    abits = (xp[:, cols] >> j) & 1  # (N, C)
                    pop = abits @ wbits.T  # AND + popcount: (N, R)
                    neg = (i == layer.weight_bits - 1) != (layer.act_signed and j == layer.act_bits - 1)
                    tile = (tile + (-1 if neg else 1) * (pop << (i + j))) % mod
        acc[:, rows] = np.where(tile >= mod // 2, tile - mod, tile)
    return acc[:, :n_out]


def recurrence(T, offers, ready, depth=MlpEngineParams.OUT_FIFO_DEPTH):
    """The documented general timing (hw.mlp_engine docstring), written as the formulas read."""
    n = len(offers)
    a, l, o = [0] * n, [0] * n, [0] * n

    def next_ready(t):
        while ready is not None and t < len(ready) and not ready[t]:
            t += 1
        return t

    for k in range(n):
        a[k] = offers[k] if k == 0 else max(offers[k], a[k - 1] + 1, l[k - 1])
        l[k] = max([a[k] + 1] + ([l[k - 1] + T] if k else []) + ([o[k - depth] + 1] if k >= depth else []))
        o[k] = next_ready(max([l[k] + T + 5] + ([o[k - 1] + 1] if k else [])))
    return np.array(a), np.array(o)


def _workload(name, seed, **kw):
    return random_mlp_workload(CASES[name], 12, seed, **kw)


def _model(p, phase):
    return MlpEngineTLM(p, phase.layers, phase.weights, phase.biases)


# --- data path ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_integer_reference_equals_float_computation(name, seed):
    p = CASES[name]
    for phase in _workload(name, seed):
        got = _model(p, phase).forward(phase.inputs)
        assert got.dtype == np.int64
        want = float_forward(phase.layers, phase.weights, phase.biases, phase.inputs)
        assert np.array_equal(got, want.astype(np.int64)) and np.array_equal(got.astype(np.float64), want)


def test_reference_rounds_half_up_and_clamps():
    layer = MlpLayer(in_size=1, out_size=1, weight_bits=8, act_bits=8, act_signed=True, out_bits=4, mult=1, shift=1)
    x = np.array([[3], [-3], [5], [-5], [1], [-1], [14], [15], [-17], [-18]])
    y = reference_forward([layer], [np.array([[1]])], None, x)[:, 0]
    # 1.5 -> 2, -1.5 -> -1, 2.5 -> 3, -2.5 -> -2, 0.5 -> 1, -0.5 -> 0; 7 is the 4-bit max, -8 the min
    assert y.tolist() == [2, -1, 3, -2, 1, 0, 7, 7, -8, -8]
    relu = MlpLayer(**{**layer.to_dict(), "relu": True})
    assert reference_forward([relu], [np.array([[1]])], None, x)[:, 0].tolist() == [2, 0, 3, 0, 1, 0, 7, 8, 0, 0]
    no_shift = MlpLayer(**{**layer.to_dict(), "shift": 0, "mult": 3, "out_bits": 8})
    assert reference_forward([no_shift], [np.array([[1]])], None, x)[:, 0].tolist() == [9, -9, 15, -15, 3, -3, 42,
                                                                                        45, -51, -54]


def test_rtl_rounding_expression_is_the_documented_rounding():
    rng = np.random.default_rng(0)
    prods = [int(v) for v in rng.integers(-(1 << 40), 1 << 40, size=300)] + [-5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5]
    for s in range(0, 45):
        for v in prods:
            documented = (v + ((1 << (s - 1)) if s else 0)) >> s
            assert ((((2 * v) >> s) + 1) >> 1) == documented


@pytest.mark.parametrize("name", ["odd", "wide", "tiny"])
def test_bit_serial_planes_sum_to_the_exact_accumulator(name):
    p = CASES[name]
    for phase in _workload(name, 4):
        x = phase.inputs
        for l, layer in enumerate(phase.layers):
            w, b = phase.weights[l], phase.biases[l]
            want = x @ w.T + (b if layer.bias else 0)
            assert np.array_equal(bit_serial_accumulators(p, layer, w, b, x), want)
            x = reference_forward([layer], [w], [b], x)
    # the extreme corner: every weight and activation at its most negative, the bias too
    layer = MlpLayer(in_size=p.max_in, out_size=1, weight_bits=p.max_weight_bits, act_bits=p.max_act_bits,
                     act_signed=True, out_bits=2, bias=True)
    w = np.full((1, p.max_in), -(1 << (p.max_weight_bits - 1)))
    x = np.full((1, p.max_in), -(1 << (p.max_act_bits - 1)))
    b = np.array([-(1 << (p.bias_bits - 1))])
    assert bit_serial_accumulators(p, layer, w, b, x)[0, 0] == int(x[0] @ w[0]) + int(b[0])


def test_tlm_rejects_bad_weights_inputs_and_layers():
    p = CASES["odd"]
    layer = MlpLayer(in_size=4, out_size=2, weight_bits=3, act_bits=3, act_signed=True, out_bits=3, bias=True)
    w = np.zeros((2, 4), dtype=np.int64)
    b = np.zeros(2, dtype=np.int64)
    with pytest.raises(ValueError, match=re.escape("weights[0] must be an integer array of shape (out_size, in_size) "
                                                   "= (2, 4), not int64 (4, 2)")):
        MlpEngineTLM(p, [layer], [w.T], [b])
    bad = w.copy()
    bad[1, 3] = 4
    with pytest.raises(ValueError, match=re.escape("weights[0][1, 3] = 4 is outside the signed 3-bit range [-4, 3]")):
        MlpEngineTLM(p, [layer], [bad], [b])
    with pytest.raises(ValueError, match=re.escape("layers[0] adds a bias but biases[0] is None")):
        MlpEngineTLM(p, [layer], [w], [None])
    with pytest.raises(ValueError, match=re.escape("biases[0][0] = 4096 is outside the signed 13-bit range")):
        MlpEngineTLM(p, [layer], [w], [np.array([4096, 0])])
    with pytest.raises(ConfigError, match=re.escape("layers[0].weight_bits must be an integer in [2, 4], not 5")):
        MlpEngineTLM(p, [MlpLayer(**{**layer.to_dict(), "weight_bits": 5})], [w], [b])
    model = MlpEngineTLM(p, [layer], [w], [b])
    with pytest.raises(ValueError, match=re.escape("vectors[1, 2] = 4 is outside the signed 3-bit range [-4, 3]")):
        model.run(np.array([[0, 0, 0, 0], [0, 0, 4, 0]]))
    with pytest.raises(ValueError, match=re.escape("vectors must be an integer array of shape (N, 4)")):
        model.forward(np.zeros((2, 5), dtype=np.int64))


# --- driver formats -----------------------------------------------------------------------------
def test_pack_and_config_word_layout():
    vals = [-5, 0, 7, -8, 3]
    assert unpack_vector(pack_vector(vals, 4), 5, 4, signed=True) == vals
    assert unpack_vector(pack_vector([15, 1], 4), 2, 4, signed=False) == [15, 1]
    p = CASES["odd"]
    layer = MlpLayer(in_size=13, out_size=2, weight_bits=3, act_bits=5, act_signed=True, relu=True, out_bits=4,
                     bias=True, mult=1000, shift=23)
    word, pos = config_word(p, layer), 0
    for name, bits in p.config_fields:
        assert (word >> pos) & ((1 << bits) - 1) == int(getattr(layer, name)), name
        pos += bits
    assert word < 1 << pos


def test_weight_and_bias_words_rebuild_the_matrix():
    p = CASES["odd"]  # R = 3, C = 5: partial tiles both ways
    rng = np.random.default_rng(1)
    w = rng.integers(-4, 4, size=(7, 12))
    words = weight_writes(p, 2, w, 3)
    assert len(words) == 3 * 3 * 3  # ceil(7/3) row tiles x ceil(12/5) column tiles x 3 planes
    rebuilt = np.zeros((9, 15), dtype=np.int64)
    for layer, rt, ct, plane, data in words:
        assert layer == 2 and data < 1 << (p.rows * p.cols)
        for r in range(p.rows):
            for c in range(p.cols):
                rebuilt[rt * 3 + r, ct * 5 + c] |= ((data >> (r * p.cols + c)) & 1) << plane
    rebuilt = np.where(rebuilt >= 4, rebuilt - 8, rebuilt)  # 3-bit two's complement
    assert np.array_equal(rebuilt[:7, :12], w) and not rebuilt[7:].any() and not rebuilt[:, 12:].any()
    junk = weight_writes(p, 2, w, 3, padding=np.random.default_rng(2))
    assert [x[:4] for x in junk] == [x[:4] for x in words]  # same words, same order
    outside = [(a[4] ^ b[4]) for a, b in zip(words, junk)]
    assert any(outside)  # random bits outside the matrix ...
    for (_, rt, ct, _, _), diff in zip(words, outside):  # ... and only there
        for r in range(p.rows):
            for c in range(p.cols):
                if rt * 3 + r < 7 and ct * 5 + c < 12:
                    assert not (diff >> (r * p.cols + c)) & 1
    b = np.array([-5, 6, 100, -4096, 4095, 0, 1])
    got = []
    for layer, rt, data in bias_writes(p, 1, b):
        got += unpack_vector(data, p.rows, p.bias_bits, signed=True)
    assert got[:7] == b.tolist() and got[7:] == [0, 0]


# --- timing: closed form, cycle model, documented recurrence ------------------------------------------
def test_layer_cycles_of_the_nerf_density_mlp():
    p = CASES["nerf"]
    assert layer_cycles(p, in_size=32, out_size=64, weight_bits=8, act_bits=8) == 8 * 4 * 64
    assert layer_cycles(p, in_size=64, out_size=16, weight_bits=8, act_bits=8) == 2 * 8 * 64
    layers = [{"in_size": 32, "out_size": 64, "weight_bits": 8, "act_bits": 8},
              {"in_size": 64, "out_size": 16, "weight_bits": 8, "act_bits": 8}]
    assert vector_cycles(p, layers) == 2048 + 1024 + 4
    assert vector_latency(p, layers) == 3076 + 6
    assert stream_cycles(p, layers, 10) == 10 * 3076 + 7 and stream_cycles(p, layers, 0) == 0
    # 4-bit weights halve the cost: what makes mixed precision pay
    assert layer_cycles(p, in_size=32, out_size=64, weight_bits=4, act_bits=8) == 8 * 4 * 32
    assert layer_cycles(CASES["odd"], in_size=13, out_size=11, weight_bits=3, act_bits=2) == 4 * 3 * 3 * 2
    with pytest.raises(ValueError, match=re.escape("weight_bits must be an integer in [2, 8], not 9")):
        layer_cycles(p, in_size=32, out_size=64, weight_bits=9, act_bits=8)
    with pytest.raises(ValueError, match=re.escape("layers must hold between 1 and 2 layers, not 3")):
        vector_cycles(p, layers + layers[:1])


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("seed", [1, 2])
def test_closed_form_agrees_with_the_cycle_model(name, seed):
    p = CASES[name]
    for phase in _workload(name, seed):
        model = _model(p, phase)
        T = vector_cycles(p, phase.layers)
        assert T == sum(math.ceil(x.out_size / p.rows) * math.ceil(x.in_size / p.cols) * x.weight_bits * x.act_bits
                        for x in phase.layers) + 4 * (len(phase.layers) - 1)
        n = 7
        res = model.run(np.repeat(phase.inputs[:1], n, axis=0))  # offered from cycle 0, always ready
        assert res.out_cycles[0] - res.accept_cycles[0] == vector_latency(p, phase.layers) == T + 6
        assert np.all(np.diff(res.out_cycles) == T)  # initiation interval
        assert np.all(np.diff(res.accept_cycles[1:]) == T)
        assert res.cycles == stream_cycles(p, phase.layers, n)
        # a vector that finds the engine idle again has the same latency
        acc, out = model.schedule([0, 5 * T + 50])
        assert out[1] - acc[1] == T + 6 and acc[1] == 5 * T + 50


@pytest.mark.parametrize("name", CASES)
def test_documented_recurrence_agrees_with_the_cycle_model(name):
    p = CASES[name]
    rng = np.random.default_rng(11)
    for seed in range(3):
        for phase in _workload(name, seed, backpressure=True, idle=True):
            model = _model(p, phase)
            offers = np.asarray(phase.offer_cycles)
            for ready in (phase.ready, None, rng.random(len(phase.ready)) < 0.2):
                acc, out = model.schedule(offers, ready)
                want_acc, want_out = recurrence(model.T, offers, ready)
                assert acc.tolist() == want_acc.tolist() and out.tolist() == want_out.tolist()


def test_backpressure_stops_loads_after_three_credits_then_the_input():
    p = CASES["odd"]
    phase = _workload("odd", 3)[0]
    model = _model(p, phase)
    stall = 50 * model.T
    acc, out = model.schedule(np.zeros(10, dtype=np.int64), np.zeros(stall, dtype=bool))
    # three vectors loaded (credits), a fourth waits in the input register, the fifth is refused
    assert (acc < stall).sum() == p.OUT_FIFO_DEPTH + 1
    assert out[0] == stall and out[1] == stall + 1 and out[2] == stall + 2  # FIFO drains one per cycle
    assert acc[4] == stall + 1  # a credit returns at the first output transfer, the 4th loads, the 5th enters
    assert np.all(np.diff(out) >= 1)


def test_one_stalled_cycle_delays_exactly_one_output():
    p = CASES["odd"]
    model = _model(p, _workload("odd", 2)[1])
    base_acc, base_out = model.schedule(np.zeros(5, dtype=np.int64))
    ready = np.ones(base_out[-1] + 10, dtype=bool)
    ready[base_out[2]] = False
    acc, out = model.schedule(np.zeros(5, dtype=np.int64), ready)
    assert acc.tolist() == base_acc.tolist()
    assert out.tolist() == base_out[:2].tolist() + [base_out[2] + 1] + base_out[3:].tolist()


def test_run_payloads_and_total_cycles():
    p = CASES["odd"]
    phase = _workload("odd", 5)[0]
    res = _model(p, phase).run(phase.inputs, phase.offer_cycles, phase.ready)
    assert res.cycles == res.out_cycles.max() + 1
    assert np.all(res.accept_cycles >= phase.offer_cycles)
    n_out = phase.layers[-1].out_size
    assert res.payloads[3] == pack_vector(res.outputs[3], p.max_act_bits) < 1 << (n_out * p.max_act_bits)
    assert unpack_vector(res.payloads[3], n_out, p.max_act_bits, signed=not phase.layers[-1].relu) == \
        res.outputs[3].tolist()
