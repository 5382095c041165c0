"""cocotb testbench of the SH unit: random constants, settings, directions, traffic and backpressure, TLM
scoreboard.

Run through ``sim.cosim.runner``; the job (parameters, direction count, phases, seed, optional injected
model fault, result path) arrives as a JSON file named by ``NERFHW_COSIM_JOB``. Each phase
(``sim.cosim.workload_sh_unit.random_sh_workload``) writes the settings and the 16 constants while the
unit is idle, then streams its directions (``sim.cosim.harness.run_phases``); cycle 0 of a phase is the
cycle after its loading ends. One scoreboard per stream checks every transfer of all phases in order.
The coroutine name has no ``test_`` prefix so that pytest does not collect it.
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import RisingEdge

from hw.sh_unit.params import ShUnitParams
from sim.cosim.harness import EngineTB, load_job, run_phases, write_result
from sim.cosim.workload_sh_unit import ShPhase, phase_stats, random_sh_workload
from sim.tlm.sh_unit import ShUnitTLM, sh_config_word

__all__ = ["ShUnitTB"]


class ShUnitTB(EngineTB):
    """Clock, reset, settings and constant loading for one ``sh_unit`` DUT."""

    def __init__(self, dut, params: ShUnitParams):
        super().__init__(dut, params, ("cfg__en", "consts__en"))

    async def configure(self, phase: ShPhase) -> int:
        """Write the settings, then the constants (``phase.const_words``, one per cycle, as two's
        complement), then one idle cycle. Returns the cycles spent."""
        dut, p = self.dut, self.params
        dut.cfg__en.value = 1
        dut.cfg__data.value = sh_config_word(p, phase.out_bits, phase.shift)
        await RisingEdge(dut.clk)
        dut.cfg__en.value = 0
        dut.consts__en.value = 1
        for k, mult, offset in phase.const_words:
            dut.consts__k.value = k
            dut.consts__mult.value = mult & ((1 << p.mult_bits) - 1)
            dut.consts__offset.value = offset & ((1 << p.offset_bits) - 1)
            await RisingEdge(dut.clk)
        dut.consts__en.value = 0
        await RisingEdge(dut.clk)
        return len(phase.const_words) + 2


@cocotb.test()
async def sh_unit_random_traffic(dut):
    """Random constants, settings, directions, gaps and backpressure; every transfer's payload and cycle
    against the TLM."""
    job = load_job()
    params = ShUnitParams.from_dict(job["params"])
    phases = random_sh_workload(params, job["vectors"], job["seed"], phases=job.get("phases", 3),
                                idle=job.get("idle", True), backpressure=job.get("backpressure", True))
    models = [ShUnitTLM(params, ph.mult, ph.offset, shift=ph.shift, out_bits=ph.out_bits) for ph in phases]
    tb = ShUnitTB(dut, params)
    await tb.reset()
    result = await run_phases(tb, phases, models, fault=job.get("fault"),
                              describe=lambda ph, model, pred: phase_stats(params, ph, pred.outputs))
    write_result(job, result)
    assert not result["mismatches"], f"{result['mismatches']} mismatches, first: {result['mismatch_examples'][0]}"
