"""cocotb testbench of the activation unit: random widths, tables, traffic, backpressure, TLM scoreboard.

Run through ``sim.cosim.runner``; the job (parameters, vector count, phases, seed, optional injected model
fault, result path) arrives as a JSON file named by ``NERFHW_COSIM_JOB``. The run has several phases
(``sim.cosim.workload_activation.random_activation_workload``): each writes a new width B and table while
the unit is idle, then streams its vectors (``sim.cosim.harness.run_phases``); cycle 0 of a phase is the
cycle after its loading ends. One scoreboard per stream checks every transfer of all phases in order
(cycles relative to the phase). The coroutine name has no ``test_`` prefix so that pytest does not
collect it.
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import RisingEdge

from hw.activation.params import ActivationParams
from sim.cosim.harness import EngineTB, load_job, run_phases, write_result
from sim.cosim.workload_activation import ActivationPhase, index_counts, random_activation_workload
from sim.tlm.activation import ActivationTLM, config_word

__all__ = ["ActivationTB"]


class ActivationTB(EngineTB):
    """Clock, reset, configuration and table loading for one ``activation`` DUT."""

    def __init__(self, dut, params: ActivationParams):
        super().__init__(dut, params, ("cfg__en", "table__en"))

    async def configure(self, phase: ActivationPhase) -> int:
        """Write B, then the table entries (``phase.table_words``), one per cycle, then one idle cycle.
        Returns the cycles spent."""
        dut = self.dut
        dut.cfg__en.value = 1
        dut.cfg__data.value = config_word(self.params, phase.cfg)
        await RisingEdge(dut.clk)
        dut.cfg__en.value = 0
        await self.write_words("table", ("addr",), phase.table_words)
        await RisingEdge(dut.clk)
        return len(phase.table_words) + 2


def _describe(phase: ActivationPhase, model: ActivationTLM, pred) -> dict:
    """A phase's setting and which corners of the lookup it exercised."""
    p = model.params
    return {"cfg": phase.cfg.to_dict(), "shift": max(0, phase.cfg.bits - p.index_bits),
            "table_entries": len(phase.table_words), **index_counts(p, phase.cfg, phase.inputs)}


@cocotb.test()
async def activation_random_traffic(dut):
    """Random widths, tables, codes, gaps and backpressure; every transfer's payload and cycle against the TLM."""
    job = load_job()
    params = ActivationParams.from_dict(job["params"])
    phases = random_activation_workload(params, job["vectors"], job["seed"], phases=job.get("phases", 3),
                                        idle=job.get("idle", True), backpressure=job.get("backpressure", True))
    models = [ActivationTLM(params, ph.cfg, ph.table) for ph in phases]
    tb = ActivationTB(dut, params)
    await tb.reset()
    result = await run_phases(tb, phases, models, fault=job.get("fault"), describe=_describe)
    write_result(job, result)
    assert not result["mismatches"], f"{result['mismatches']} mismatches, first: {result['mismatch_examples'][0]}"
