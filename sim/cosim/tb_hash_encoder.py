"""cocotb testbench of the hash encoder: random traffic, backpressure, TLM scoreboard.

Run through ``sim.cosim.runner``; the job (parameters, workload size, seed, optional injected model
fault, result path) arrives as a JSON file named by the environment variable ``NERFHW_COSIM_JOB``.
The coroutine name has no ``test_`` prefix so that pytest does not collect it.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from hw.params import HashEncoderParams
from nerf.atomic import atomic_write_text
from sim.cosim.scoreboard import Scoreboard
from sim.cosim.stream import StreamMonitor, StreamSink, StreamSource
from sim.cosim.traffic import random_traffic
from sim.tlm.hash_encoder import HashEncoderTLM, pack_features, pack_point

JOB_ENV = "NERFHW_COSIM_JOB"


def inject_fault(expected: list[tuple[int, int]], fault: str | None) -> list[tuple[int, int]]:
    """A deliberately wrong model, to show the scoreboard catches it.

    ``"cycle"``: the middle output predicted one cycle late. ``"bit"``: bit 0 of its payload flipped.
    """
    if not fault:
        return expected
    out = list(expected)
    i = len(out) // 2
    cycle, payload = out[i]
    if fault == "cycle":
        out[i] = (cycle + 1, payload)
    elif fault == "bit":
        out[i] = (cycle, payload ^ 1)
    else:
        raise ValueError(f"fault must be 'cycle' or 'bit', not {fault!r}")
    return out


class TB:
    """Clock, reset and table loading for one ``hash_encoder`` DUT."""

    def __init__(self, dut, params: HashEncoderParams):
        self.dut = dut
        self.params = params
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.i__valid.value = 0
        dut.o__ready.value = 0
        dut.table__en.value = 0

    async def reset(self, cycles: int = 2) -> None:
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

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
    with open(os.environ[JOB_ENV]) as f:
        job = json.load(f)
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
    source = StreamSource(dut.clk, "i", dut, in_payloads, traffic.offer_cycles)
    sink = StreamSink(dut.clk, "o", dut, traffic.ready)
    mon_in = StreamMonitor(dut.clk, "i", dut)
    mon_out = StreamMonitor(dut.clk, "o", dut)
    t0 = time.perf_counter()
    for component in (source, sink, mon_in, mon_out):
        component.start()
    n = len(in_payloads)
    limit = predicted.cycles + 64 * params.groups + 1000
    cycles_rtl = 0
    for cycle in range(limit):
        await RisingEdge(dut.clk)
        while not mon_in.queue.empty():
            board_in.check(*mon_in.queue.get_nowait())
        while not mon_out.queue.empty():
            t, payload = mon_out.queue.get_nowait()
            board_out.check(t, payload)
            cycles_rtl = t + 1
        if mon_out.count >= n:
            break
    sim_seconds = time.perf_counter() - t0
    mismatches = board_in.finish() + board_out.finish()
    result = {
        "transactions": mon_out.count,
        "input_transactions": mon_in.count,
        "mismatches": len(mismatches),
        "mismatch_examples": [m.to_dict() for m in mismatches[:10]],
        "cycles_rtl": cycles_rtl,
        "cycles_tlm": predicted.cycles,
        "sim_seconds": sim_seconds,
        "tlm_seconds": tlm_seconds,
    }
    atomic_write_text(job["result"], json.dumps(result, indent=2))
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[0]}"
