"""The Hadamard datapath's RTL pieces in the Amaranth simulator (no Verilator): the FWHT pipeline, signatures."""

import re

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.hadamard import FwhtPipeline, HadamardEngine
from hw.params import HadamardParams
from sim.tlm.hadamard import fwht


def _silence(elaboratable):
    elaboratable._MustUse__silence = True  # built to inspect, never elaborated
    return elaboratable


@pytest.mark.parametrize("n, in_bits", [(2, 3), (8, 6), (32, 16)])
def test_fwht_pipeline_takes_one_vector_per_cycle_and_is_exact(n, in_bits):
    dut = FwhtPipeline(n=n, in_bits=in_bits)
    k = n.bit_length() - 1
    assert len(dut.o_data.as_value()) == n * (in_bits + k)
    rng = np.random.default_rng(n)
    lo, hi = -(1 << (in_bits - 1)), (1 << (in_bits - 1)) - 1
    cycles = 40
    x = rng.integers(lo, hi + 1, size=(cycles, n))
    x[0], x[1] = lo, hi  # full growth: t_0 = -n 2^(in_bits-1)
    valid = rng.random(cycles) < 0.8
    valid[:6] = True  # back to back: one vector per cycle
    want = fwht(x)
    seen = []

    async def testbench(ctx):
        for c in range(cycles + k + 1):
            if c < cycles:
                ctx.set(dut.i_valid, int(valid[c]))
                ctx.set(dut.i_data, [int(v) for v in x[c]])
            else:
                ctx.set(dut.i_valid, 0)
            if ctx.get(dut.o_valid):
                seen.append((c, [ctx.get(dut.o_data[j]) for j in range(n)]))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    fed = [c for c in range(cycles) if valid[c]]
    assert [c for c, _ in seen] == [c + k for c in fed]  # every vector exactly log2(n) cycles later
    assert [t for _, t in seen] == [want[c].tolist() for c in fed]
    assert seen[0][1][0] == -n * (1 << (in_bits - 1))


def test_fwht_pipeline_rejects_bad_sizes():
    with pytest.raises(ValueError, match=re.escape("n must be a power of two >= 2, not 12")):
        FwhtPipeline(n=12, in_bits=8)
    with pytest.raises(ValueError, match=re.escape("n must be an integer >= 2, not 1")):
        FwhtPipeline(n=1, in_bits=8)
    with pytest.raises(ValueError, match=re.escape("in_bits must be an integer >= 1, not 0")):
        FwhtPipeline(n=8, in_bits=0)


def test_engine_signature_follows_params():
    p = HadamardParams(n=16, out_size=7, in_bits=5, weight_bits=3, max_act_bits=4, out_bits=5, rows=2, cols=4,
                       mult_bits=8)
    eng = _silence(HadamardEngine(params=p))
    assert eng.params is p
    assert len(eng.i.payload.as_value()) == 16 * 5 and len(eng.o.payload.as_value()) == 7 * 5
    assert len(eng.weights.data) == 2 * 4 * 3 and len(eng.bias.data) == 2 * p.bias_bits
    assert len(eng.cfg.data.as_value()) == sum(bits for _, bits in p.config_fields)
    assert len(eng.weights.row_tile) == 2 and len(eng.weights.col_tile) == 2  # 4 row tiles, 4 column tiles


def test_engine_rejects_non_params():
    with pytest.raises(TypeError, match=re.escape("params must be a HadamardParams, not {'n': 8}")):
        HadamardEngine(params={"n": 8})
    with pytest.raises(TypeError):
        HadamardEngine(HadamardParams())  # keyword-only


def test_per_row_engine_has_a_scales_port_like_the_bias_port():
    base = dict(n=16, out_size=7, in_bits=5, weight_bits=3, max_act_bits=4, out_bits=5, rows=3, cols=4, mult_bits=8)
    rows = _silence(HadamardEngine(params=HadamardParams(**base, per_row_scales=True)))
    assert len(rows.scales.data) == 3 * 8 and len(rows.scales.row_tile) == len(rows.bias.row_tile) == 2
    assert len(rows.scales.en) == 1
    plain = _silence(HadamardEngine(params=HadamardParams(**base)))
    assert "scales" not in plain.signature.members and "scales" in rows.signature.members
