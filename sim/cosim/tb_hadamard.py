"""cocotb testbench of the DHQ Hadamard datapath: random configurations, traffic, backpressure, TLM scoreboard.

Run through ``sim.cosim.runner``; the job (parameters, vector count, phases, seed, optional injected
model fault, result path) arrives as a JSON file named by ``NERFHW_COSIM_JOB``. The run has several
phases (``sim.cosim.workload_hadamard.random_hadamard_workload``): each writes a new configuration, weights and
biases while the engine is idle, then streams its vectors (``sim.cosim.harness.run_phases``); cycle 0
of a phase is the cycle after its loading ends. One scoreboard per stream checks every transfer of all
phases in order (cycles relative to the phase). The coroutine name has no ``test_`` prefix so that
pytest does not collect it.
"""

from __future__ import annotations

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge

from hw.hadamard.params import HadamardParams
from sim.cosim.harness import EngineTB, load_job, run_phases, write_result
from sim.cosim.workload_hadamard import HadamardPhase, count_ties, random_hadamard_workload
from sim.tlm.hadamard import HadamardTLM, config_word, fwht

__all__ = ["HadamardTB"]


class HadamardTB(EngineTB):
    """Clock, reset, configuration and weight loading for one ``hadamard`` DUT."""

    def __init__(self, dut, params: HadamardParams):
        # FixedMvTB reuses this loading for an engine without per-row multipliers
        self.per_row = getattr(params, "per_row_scales", False)
        ports = ("cfg__en", "weights__en", "bias__en") + (("scales__en",) if self.per_row else ())
        super().__init__(dut, params, ports)

    async def configure(self, phase: HadamardPhase) -> int:
        """Write the settings, the weight tiles (``phase.weight_words``), the biases (``phase.bias_words``)
        and, with ``per_row_scales``, the per-row multipliers (``phase.scale_words``), one word per
        cycle, then one idle cycle. Returns the cycles spent."""
        dut = self.dut
        dut.cfg__en.value = 1
        dut.cfg__data.value = config_word(self.params, phase.cfg)
        await RisingEdge(dut.clk)
        dut.cfg__en.value = 0
        await self.write_words("weights", ("row_tile", "col_tile"), phase.weight_words)
        await self.write_words("bias", ("row_tile",), phase.bias_words)
        scale_words = phase.scale_words if self.per_row else ()
        if self.per_row:
            await self.write_words("scales", ("row_tile",), scale_words)
        await RisingEdge(dut.clk)
        return len(phase.weight_words) + len(phase.bias_words) + len(scale_words) + 2


def _describe(phase: HadamardPhase, model: HadamardTLM, pred) -> dict:
    """A phase's settings and how much of the rounding and clamping it exercised."""
    limit = (1 << (model.params.out_bits - 1)) - 1
    rows = phase.mult_o
    out = {
        "cfg": phase.cfg.to_dict(),
        "ties_a": count_ties(fwht(phase.inputs), phase.cfg.mult_a, phase.cfg.shift_a),
        "ties_o": count_ties(pred.accumulators, phase.cfg.mult_o if rows is None else rows, phase.cfg.shift_o),
        "clamped_o": int((np.abs(pred.outputs) == limit).sum()),
    }
    if rows is not None:
        out["mult_o_rows"] = [int(rows.min()), int(rows.max())]
    return out


@cocotb.test()
async def hadamard_random_traffic(dut):
    """Random configurations, vectors, gaps and backpressure; every transfer's payload and cycle against the TLM."""
    job = load_job()
    params = HadamardParams.from_dict(job["params"])
    phases = random_hadamard_workload(params, job["vectors"], job["seed"], phases=job.get("phases", 3),
                                      idle=job.get("idle", True), backpressure=job.get("backpressure", True))
    models = [HadamardTLM(params, *ph.model_args()) for ph in phases]
    tb = HadamardTB(dut, params)
    await tb.reset()
    result = await run_phases(tb, phases, models, fault=job.get("fault"), describe=_describe)
    write_result(job, result)
    assert not result["mismatches"], f"{result['mismatches']} mismatches, first: {result['mismatch_examples'][0]}"
