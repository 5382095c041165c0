"""cocotb testbench of the hash encoder: random traffic, backpressure, TLM scoreboard.

Run through ``sim.cosim.runner``; the job (parameters, workload size, seed, optional injected model
fault, result path) arrives as a JSON file named by the environment variable ``NERFHW_COSIM_JOB``.
The coroutine name has no ``test_`` prefix so that pytest does not collect it.
"""

from __future__ import annotations

import time

import cocotb
from cocotb.triggers import RisingEdge

from hw.hash_encoder.params import HashEncoderParams
from sim.cosim.harness import JOB_ENV, EngineTB, load_job, scoreboard_result, stream_and_check, write_result
from sim.cosim.scoreboard import Scoreboard, inject_fault
from sim.cosim.workload_hash_encoder import random_traffic
from sim.tlm.hash_encoder import HashEncoderTLM, pack_features, pack_point

__all__ = ["TB", "inject_fault", "JOB_ENV"]


class TB(EngineTB):
    """Clock, reset and table loading for one ``hash_encoder`` DUT."""

    def __init__(self, dut, params: HashEncoderParams):
        super().__init__(dut, params, ("table__en",))

    async def load_tables(self, tables) -> None:
        """Write every entry through the ``table`` port, one per cycle."""
        p, dut = self.params, self.dut
        dut.table__en.value = 1
        for level in range(p.levels):
            dut.table__level.value = level
            for index in range(p.table_size):
                dut.table__index.value = index
                dut.table__data.value = pack_features(tables[level, index], p.feature_bits)
                await RisingEdge(dut.clk)
        dut.table__en.value = 0
        await RisingEdge(dut.clk)


@cocotb.test()
async def hash_encoder_random_traffic(dut):
    """Random points, gaps and backpressure; every transfer's payload and cycle against the TLM."""
    job = load_job()
    params = HashEncoderParams.from_dict(job["params"])
    traffic = random_traffic(params, job["points"], job["seed"],
                             idle=job.get("idle", True), backpressure=job.get("backpressure", True))
    model = HashEncoderTLM(params, traffic.tables)
    t0 = time.perf_counter()
    predicted = model.run(traffic.coords, traffic.offer_cycles, traffic.ready)
    tlm_seconds = time.perf_counter() - t0
    in_payloads = [pack_point(code, params.coord_bits) for code in traffic.coords]
    board_in = Scoreboard("i", list(zip(predicted.accept_cycles.tolist(), in_payloads)))
    board_out = Scoreboard("o", inject_fault(list(zip(predicted.out_cycles.tolist(), predicted.payloads)),
                                             job.get("fault")))

    tb = TB(dut, params)
    await tb.reset()
    await tb.load_tables(traffic.tables)

    # Cycle 0 of the run is the cycle after this edge; all components start here.
    t0 = time.perf_counter()
    n_in, n_out, cycles_rtl = await stream_and_check(
        dut, items=in_payloads, offer_cycles=traffic.offer_cycles, ready=traffic.ready,
        board_in=board_in, board_out=board_out, limit=predicted.cycles + 64 * params.groups + 1000)
    sim_seconds = time.perf_counter() - t0
    result = scoreboard_result((board_in, board_out), n_in=n_in, n_out=n_out, cycles_rtl=cycles_rtl,
                               cycles_tlm=predicted.cycles, sim_seconds=sim_seconds, tlm_seconds=tlm_seconds)
    write_result(job, result)
    assert not result["mismatches"], f"{result['mismatches']} mismatches, first: {result['mismatch_examples'][0]}"
