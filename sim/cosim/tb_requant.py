"""cocotb testbench of the requantizer: random settings, constants, traffic, backpressure, TLM scoreboard.

Run through ``sim.cosim.runner``; the job (parameters, vector count, phases, seed, optional injected model
fault, result path) arrives as a JSON file named by ``NERFHW_COSIM_JOB``. The run has several phases
(``sim.cosim.workload_requant.random_requant_workload``): each writes new settings and per-lane constants
while the unit is idle, then streams its vectors (``sim.cosim.harness.run_phases``); cycle 0 of a phase is
the cycle after its loading ends. One scoreboard per stream checks every transfer of all phases in order
(cycles relative to the phase). The coroutine name has no ``test_`` prefix so that pytest does not
collect it.
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import RisingEdge

from hw.requant.params import RequantParams
from sim.cosim.harness import EngineTB, load_job, run_phases, write_result
from sim.cosim.workload_requant import RequantPhase, random_requant_workload, rounding_counts
from sim.tlm.requant import RequantTLM, config_word

__all__ = ["RequantTB"]


class RequantTB(EngineTB):
    """Clock, reset, configuration and constant loading for one ``requant`` DUT."""

    def __init__(self, dut, params: RequantParams):
        super().__init__(dut, params, ("cfg__en", "consts__en"))

    async def configure(self, phase: RequantPhase) -> int:
        """Write the settings, then each lane's multiplier and offset (``phase.const_words``), one lane per
        cycle, then one idle cycle. Returns the cycles spent."""
        dut = self.dut
        mask = (1 << self.params.offset_bits) - 1
        dut.cfg__en.value = 1
        dut.cfg__data.value = config_word(self.params, phase.cfg)
        await RisingEdge(dut.clk)
        dut.cfg__en.value = 0
        dut.consts__en.value = 1
        for lane, mult, offset in phase.const_words:
            dut.consts__lane.value = lane
            dut.consts__mult.value = mult
            dut.consts__offset.value = offset & mask  # two's complement
            await RisingEdge(dut.clk)
        dut.consts__en.value = 0
        await RisingEdge(dut.clk)
        return len(phase.const_words) + 2


def _describe(phase: RequantPhase, model: RequantTLM, pred) -> dict:
    """A phase's settings and how much of the rounding and clamping it exercised."""
    return {"kind": phase.kind, "cfg": phase.cfg.to_dict(),
            **rounding_counts(phase.cfg, phase.mult, phase.offset, phase.inputs)}


@cocotb.test()
async def requant_random_traffic(dut):
    """Random settings, constants, vectors, gaps and backpressure; every transfer's payload and cycle against
    the TLM."""
    job = load_job()
    params = RequantParams.from_dict(job["params"])
    phases = random_requant_workload(params, job["vectors"], job["seed"], phases=job.get("phases", 3),
                                     idle=job.get("idle", True), backpressure=job.get("backpressure", True))
    models = [RequantTLM(params, ph.cfg, ph.mult, ph.offset) for ph in phases]
    tb = RequantTB(dut, params)
    await tb.reset()
    result = await run_phases(tb, phases, models, fault=job.get("fault"), describe=_describe)
    write_result(job, result)
    assert not result["mismatches"], f"{result['mismatches']} mismatches, first: {result['mismatch_examples'][0]}"
