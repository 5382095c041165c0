"""cocotb testbench of the bit-serial MLP engine: random configurations, traffic, backpressure, TLM scoreboard.

Run through ``sim.cosim.runner``; the job (parameters, vector count, phases, optional layer sizes, seed,
optional injected model fault, result path) arrives as a JSON file named by ``NERFHW_COSIM_JOB``.
The run has several phases (``sim.cosim.workload_mlp_engine.random_mlp_workload``): each writes a new
configuration, weights and biases while the engine is idle, then streams its vectors (``sim.cosim.harness.run_phases``); cycle 0 of a
phase is the cycle after its loading ends. One scoreboard per stream checks every transfer of all
phases in order (cycles relative to the phase). The coroutine name has no ``test_`` prefix so that
pytest does not collect it.
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import RisingEdge

from hw.mlp_engine.params import MlpEngineParams
from sim.cosim.harness import EngineTB, load_job, run_phases, write_result
from sim.cosim.workload_mlp_engine import MlpPhase, random_mlp_workload
from sim.tlm.mlp_engine import MlpEngineTLM, config_word

__all__ = ["MlpTB"]


class MlpTB(EngineTB):
    """Clock, reset, configuration and weight loading for one ``mlp_engine`` DUT."""

    def __init__(self, dut, params: MlpEngineParams):
        super().__init__(dut, params, ("cfg__en", "cfg__layers_en", "weights__en", "bias__en"))

    async def configure(self, phase: MlpPhase) -> int:
        """Write the layer settings, the layer count, the weight bit-planes (``phase.weight_words``) and
        the biases (``phase.bias_words``), one word per cycle, then one idle cycle. Returns the cycles spent."""
        p, dut = self.params, self.dut
        cycles = 0
        dut.cfg__en.value = 1
        for l, layer in enumerate(phase.layers):
            dut.cfg__layer.value = l
            dut.cfg__data.value = config_word(p, layer)
            await RisingEdge(dut.clk)
            cycles += 1
        dut.cfg__en.value = 0
        dut.cfg__layers_en.value = 1
        dut.cfg__layers.value = len(phase.layers)
        await RisingEdge(dut.clk)
        dut.cfg__layers_en.value = 0
        dut.weights__en.value = 1
        for lyr, rt, ct, plane, word in phase.weight_words:
            dut.weights__layer.value = lyr
            dut.weights__row_tile.value = rt
            dut.weights__col_tile.value = ct
            dut.weights__plane.value = plane
            dut.weights__data.value = word
            await RisingEdge(dut.clk)
            cycles += 1
        dut.weights__en.value = 0
        dut.bias__en.value = 1
        for lyr, rt, word in phase.bias_words:
            dut.bias__layer.value = lyr
            dut.bias__row_tile.value = rt
            dut.bias__data.value = word
            await RisingEdge(dut.clk)
            cycles += 1
        dut.bias__en.value = 0
        await RisingEdge(dut.clk)
        return cycles + 2


@cocotb.test()
async def mlp_engine_random_traffic(dut):
    """Random configurations, vectors, gaps and backpressure; every transfer's payload and cycle against the TLM."""
    job = load_job()
    params = MlpEngineParams.from_dict(job["params"])
    phases = random_mlp_workload(params, job["vectors"], job["seed"], phases=job.get("phases", 3),
                                 shapes=job.get("shapes"), idle=job.get("idle", True),
                                 backpressure=job.get("backpressure", True))
    models = [MlpEngineTLM(params, ph.layers, ph.weights, ph.biases) for ph in phases]
    tb = MlpTB(dut, params)
    await tb.reset()
    result = await run_phases(tb, phases, models, fault=job.get("fault"),
                              describe=lambda ph, model, pred: {"layers": [layer.to_dict() for layer in ph.layers]})
    write_result(job, result)
    assert not result["mismatches"], f"{result['mismatches']} mismatches, first: {result['mismatch_examples'][0]}"
