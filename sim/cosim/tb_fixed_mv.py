"""cocotb testbench of the fixed-point matrix-vector engine: random shifts, weights, traffic, backpressure, TLM
scoreboard.

Run through ``sim.cosim.runner``; the job (parameters, vector count, phases, seed, optional injected model
fault, result path) arrives as a JSON file named by ``NERFHW_COSIM_JOB``. Each phase
(``sim.cosim.workload_fixed_mv.random_fixed_mv_workload``) writes a new configuration, weights and biases while
the engine is idle, then streams its vectors (``sim.cosim.harness.run_phases``); cycle 0 of a phase is the cycle
after its loading ends. The coroutine name has no ``test_`` prefix so that pytest does not collect it.
"""

from __future__ import annotations

import cocotb

from hw.fixed_mv.params import FixedMvParams
from sim.cosim.harness import load_job, run_phases, write_result
from sim.cosim.tb_hadamard import HadamardTB
from sim.cosim.workload_fixed_mv import FixedMvPhase, count_ties, random_fixed_mv_workload
from sim.tlm.fixed_mv import FixedMvTLM

__all__ = ["FixedMvTB"]


class FixedMvTB(HadamardTB):
    """Clock, reset, configuration and weight loading for one ``fixed_mv`` DUT: the ports are the Hadamard
    engine's (``cfg``, ``weights``, ``bias``), so is the loading (one word per cycle, then one idle cycle)."""


def _describe(phase: FixedMvPhase, model: FixedMvTLM, pred) -> dict:
    """A phase's setting and how much of the rounding and clamping it exercised."""
    half = 1 << (model.params.out_bits - 1)
    return {
        "cfg": phase.cfg.to_dict(),
        "ties": count_ties(pred.accumulators, phase.cfg.shift_o),
        "clamped": int(((pred.outputs == half - 1) | (pred.outputs == -half)).sum()),
    }


@cocotb.test()
async def fixed_mv_random_traffic(dut):
    """Random shifts, weights, vectors, gaps and backpressure; every transfer's payload and cycle against the TLM."""
    job = load_job()
    params = FixedMvParams.from_dict(job["params"])
    phases = random_fixed_mv_workload(params, job["vectors"], job["seed"], phases=job.get("phases", 3),
                                      idle=job.get("idle", True), backpressure=job.get("backpressure", True))
    models = [FixedMvTLM(params, ph.cfg, ph.weights, ph.bias) for ph in phases]
    tb = FixedMvTB(dut, params)
    await tb.reset()
    result = await run_phases(tb, phases, models, fault=job.get("fault"), describe=_describe)
    write_result(job, result)
    assert not result["mismatches"], f"{result['mismatches']} mismatches, first: {result['mismatch_examples'][0]}"
