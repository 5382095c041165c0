"""The SH unit's RTL in the Amaranth simulator (no Verilator): the corner parameter sets the presets miss (the
narrowest and the widest of every field), random traffic and backpressure, every transfer against the TLM."""

import dataclasses
import re

import numpy as np
import pytest
from amaranth.sim import Simulator

from hw.sh_unit import ShUnit
from hw.sh_unit.params import ShUnitParams
from sim.cosim.workload_sh_unit import random_sh_workload
from sim.tlm.sh_unit import ShUnitTLM, sh_config_word

CASES = {
    "tiny": ShUnitParams(dir_bits=4, max_out_bits=2, mult_bits=2, offset_bits=2),
    "widest": ShUnitParams(dir_bits=20, max_out_bits=16, mult_bits=24, offset_bits=48),
}


def simulate(p: ShUnitParams, phases) -> list[tuple[list, list]]:
    """Load and stream each phase as the cocotb testbench does; per phase the observed ``(cycle, payload)``
    of every input and output transfer, cycles counted from the cycle after the loading."""
    dut = ShUnit(params=p)
    seen = []

    async def bench(ctx):
        for ph in phases:
            ctx.set(dut.cfg.en, 1)
            ctx.set(dut.cfg.data.as_value(), sh_config_word(p, ph.out_bits, ph.shift))
            await ctx.tick()
            ctx.set(dut.cfg.en, 0)
            ctx.set(dut.consts.en, 1)
            for k, mult, offset in ph.const_words:
                ctx.set(dut.consts.k, k)
                ctx.set(dut.consts.mult, mult)
                ctx.set(dut.consts.offset, offset)
                await ctx.tick()
            ctx.set(dut.consts.en, 0)
            await ctx.tick()
            ins, outs, nxt, t = [], [], 0, 0
            while len(outs) < len(ph.inputs):
                offered = nxt < len(ph.inputs) and ph.offer_cycles[nxt] <= t
                ctx.set(dut.i.valid, int(offered))
                if offered:
                    ctx.set(dut.i.payload.as_value(), ph.in_payloads[nxt])
                ctx.set(dut.o.ready, int(t >= len(ph.ready) or ph.ready[t]))
                if ctx.get(dut.i.valid) and ctx.get(dut.i.ready):
                    ins.append((t, ph.in_payloads[nxt]))
                    nxt += 1
                if ctx.get(dut.o.valid) and ctx.get(dut.o.ready):
                    outs.append((t, ctx.get(dut.o.payload.as_value())))
                await ctx.tick()
                t += 1
                assert t < 10_000
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.o.ready, 0)
            await ctx.tick()
            seen.append((ins, outs))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return seen


@pytest.mark.parametrize("name", CASES)
def test_rtl_matches_the_model_at_the_corner_widths(name):
    p = CASES[name]
    phases = random_sh_workload(p, 150, 11, phases=3)
    seen = simulate(p, phases)
    clamped = 0
    for ph, (ins, outs) in zip(phases, seen):
        pred = ShUnitTLM(p, ph.mult, ph.offset, shift=ph.shift, out_bits=ph.out_bits).run(
            ph.inputs, ph.offer_cycles, ph.ready)
        assert ins == list(zip(pred.accept_cycles.tolist(), ph.in_payloads))
        assert outs == list(zip(pred.out_cycles.tolist(), pred.payloads))
        lim = 1 << (ph.out_bits - 1)
        clamped += int(((pred.outputs == -lim) | (pred.outputs == lim - 1)).sum())
    assert clamped > 0


def test_rtl_at_full_rate_with_the_largest_shift():
    """II = 1, latency 5, and S = shift_max with a rounding constant 2^(S-1) of shift_max bits."""
    p = CASES["widest"]
    (ph,) = random_sh_workload(p, 40, 3, phases=1, idle=False, backpressure=False)
    ph = dataclasses.replace(ph, shift=p.shift_max)
    ((ins, outs),) = simulate(p, [ph])
    assert [t for t, _ in ins] == list(range(40)) and [t for t, _ in outs] == list(range(5, 45))
    pred = ShUnitTLM(p, ph.mult, ph.offset, shift=p.shift_max, out_bits=ph.out_bits).run(ph.inputs)
    assert [v for _, v in outs] == pred.payloads


def test_ports_and_errors():
    p = ShUnitParams()
    dut = ShUnit(params=p)
    assert len(dut.i.payload.as_value()) == 3 * p.dir_bits
    assert len(dut.o.payload.as_value()) == 16 * p.max_out_bits
    assert len(dut.cfg.data.as_value()) == sum(bits for _, bits in p.config_fields)
    assert (len(dut.consts.k), len(dut.consts.mult), len(dut.consts.offset)) == (4, p.mult_bits, p.offset_bits)
    assert dut.params is p
    with pytest.raises(TypeError, match=re.escape("params must be a ShUnitParams, not 3")):
        ShUnit(params=3)


def test_constants_written_to_one_coefficient_only():
    """A write to coefficient k changes M_k and O_k only (the others keep the power-up zeros)."""
    p = ShUnitParams(dir_bits=6, max_out_bits=8, mult_bits=6, offset_bits=8)
    (ph,) = random_sh_workload(p, 12, 2, phases=1, idle=False, backpressure=False)
    mult, offset = np.zeros(16, np.int64), np.zeros(16, np.int64)
    mult[9], offset[9], offset[4] = -7, 100, -3
    ph = dataclasses.replace(ph, mult=mult, offset=offset, shift=2, out_bits=8, const_words=[(9, -7, 100), (4, 0, -3)])
    ((_, outs),) = simulate(p, [ph])
    pred = ShUnitTLM(p, mult, offset, shift=2, out_bits=8).run(ph.inputs)
    assert [v for _, v in outs] == pred.payloads
    assert (pred.outputs[:, [0, 1, 2, 3, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15]] == 0).all()
    assert (pred.outputs[:, 4] == -1).all() and (pred.outputs[:, 9] != 0).any()
