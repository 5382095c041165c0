"""cocotb testbench of the hash encoder with external tables: random points, gaps and backpressure on the
streams, an AXI4 read responder timed by the shared DRAM model with random extra delays, and TLM
scoreboards on the input, the output and the AR channel.

The responder is ``sim.memory.dram.AxiReadResponder`` (the TLM uses the same class) over the packed
table image (``TableLayout.pack``); it also checks the AXI rules the engine must keep (ARVALID held
until ARREADY, one burst outstanding, ARLEN / ARSIZE / ARBURST of a line, RREADY high for every beat).
Run through ``sim.cosim.runner``; the job arrives as in ``sim.cosim.harness``.
"""

from __future__ import annotations

import time

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from hw.hash_encoder_axi.params import AXI_BURST_INCR, HashEncoderAxiParams
from sim.cosim.harness import JOB_ENV, EngineTB, load_job, scoreboard_result, stream_and_check, write_result
from sim.cosim.scoreboard import Mismatch, Scoreboard, inject_fault
from sim.cosim.workload_hash_encoder_axi import dram_of, random_traffic
from sim.memory.dram import AxiReadResponder
from sim.tlm.hash_encoder import pack_point
from sim.tlm.hash_encoder_axi import HashEncoderAxiTLM

__all__ = ["AxiResponder", "inject_fault", "JOB_ENV"]


class AxiResponder:
    """Drives ARREADY and the R channel from ``AxiReadResponder``'s timing; records every AR transfer.

    Cycle 0 is the cycle after the edge at which ``start`` is called (as the stream components).
    ``requests``: ``(cycle, araddr)`` of every AR transfer; ``errors``: protocol violations seen.
    """

    def __init__(self, dut, params: HashEncoderAxiParams, image: bytes, timing, delays):
        self.dut, self.params, self.image = dut, params, image
        self.model = AxiReadResponder(timing, params.beats, delays)
        self.requests: list[tuple[int, int]] = []
        self.errors: list[str] = []
        dut.axi__arready.value = 0
        dut.axi__rvalid.value = 0
        dut.axi__rlast.value = 0
        dut.axi__rdata.value = 0

    def start(self):
        return cocotb.start_soon(self._run())

    def _beat(self, addr: int, i: int) -> int:
        bus = self.params.bus_bytes
        return int.from_bytes(self.image[addr + i * bus:addr + (i + 1) * bus], "little")

    async def _run(self) -> None:
        dut, p = self.dut, self.params
        cycle = 0
        rose = None  # cycle ARVALID rose for the waiting request
        beats: dict[int, tuple[int, int]] = {}  # cycle -> (beat, addr) of the burst in flight
        busy = False
        while True:
            beat = beats.get(cycle)
            dut.axi__arready.value = int(not busy and cycle >= self.model.free)
            dut.axi__rvalid.value = int(beat is not None)
            dut.axi__rlast.value = int(beat is not None and beat[0] == p.beats - 1)
            dut.axi__rdata.value = self._beat(beat[1], beat[0]) if beat is not None else 0
            await ReadOnly()
            arvalid = bool(dut.axi__arvalid.value)
            if beat is not None and not dut.axi__rready.value:
                self.errors.append(f"cycle {cycle}: RREADY low during beat {beat[0]}")
            if arvalid and rose is None:
                rose = cycle
                if busy:
                    self.errors.append(f"cycle {cycle}: ARVALID while a burst is outstanding")
                if (int(dut.axi__arlen.value), int(dut.axi__arsize.value), int(dut.axi__arburst.value)) != \
                        (p.beats - 1, p.bus_bytes.bit_length() - 1, AXI_BURST_INCR):
                    self.errors.append(f"cycle {cycle}: ARLEN/ARSIZE/ARBURST not one INCR line burst")
            elif rose is not None and not arvalid:
                self.errors.append(f"cycle {cycle}: ARVALID dropped before ARREADY")
                rose = None
            if arvalid and not busy and cycle >= self.model.free:
                addr = int(dut.axi__araddr.value)
                a, cycles = self.model.serve(rose, addr)
                if a != cycle:
                    self.errors.append(f"cycle {cycle}: AR transfer expected at {a}")
                self.requests.append((cycle, addr))
                beats = {c: (i, addr) for i, c in enumerate(cycles)}
                busy, rose = True, None
            if beat is not None and beat[0] == p.beats - 1:
                busy = False
            await RisingEdge(dut.clk)
            cycle += 1


@cocotb.test()
async def hash_encoder_axi_random_traffic(dut):
    """Random points, gaps, backpressure and DRAM delays; every transfer against the TLM."""
    job = load_job()
    params = HashEncoderAxiParams.from_dict(job["params"])
    traffic = random_traffic(params, job["points"], job["seed"],
                             idle=job.get("idle", True), backpressure=job.get("backpressure", True),
                             delays=job.get("delays", True))
    timing = dram_of(job, params)
    model = HashEncoderAxiTLM(params, traffic.tables, dram=timing, delays=traffic.delays)
    t0 = time.perf_counter()
    predicted = model.run(traffic.coords, traffic.offer_cycles, traffic.ready)
    tlm_seconds = time.perf_counter() - t0
    in_payloads = [pack_point(code, params.coord_bits) for code in traffic.coords]
    board_in = Scoreboard("i", list(zip(predicted.accept_cycles.tolist(), in_payloads)))
    board_out = Scoreboard("o", inject_fault(list(zip(predicted.out_cycles.tolist(), predicted.payloads)),
                                             job.get("fault")))
    board_ar = Scoreboard("ar", [(r[1], r[2]) for r in predicted.requests])

    tb = EngineTB(dut, params, ())
    responder = AxiResponder(dut, params, params.layout.pack(traffic.tables), timing, traffic.delays)
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    # Reset is released for the cycle after this edge, cycle 0 of the contract (the clear phase starts
    # there), and every component counts from it.
    dut.rst.value = 0
    task = responder.start()
    t0 = time.perf_counter()
    n_in, n_out, cycles_rtl = await stream_and_check(
        dut, items=in_payloads, offer_cycles=traffic.offer_cycles, ready=traffic.ready,
        board_in=board_in, board_out=board_out, limit=predicted.cycles + 64 * params.groups + 1000)
    sim_seconds = time.perf_counter() - t0
    task.cancel()
    for cycle, addr in responder.requests:
        board_ar.check(cycle, addr)
    result = scoreboard_result((board_in, board_out, board_ar), n_in=n_in, n_out=n_out, cycles_rtl=cycles_rtl,
                               cycles_tlm=predicted.cycles, sim_seconds=sim_seconds, tlm_seconds=tlm_seconds)
    accesses = int(predicted.hits.sum() + predicted.misses.sum())
    result.update(axi_requests=len(responder.requests), protocol_errors=responder.errors[:10],
                  hit_rate=float(predicted.hits.sum() / accesses) if accesses else 0.0,
                  hits=predicted.hits.tolist(), misses=predicted.misses.tolist(),
                  stall_cycles=int(predicted.stall_cycles), dram=job.get("dram"))
    if responder.errors:
        result["mismatches"] += len(responder.errors)
        result["mismatch_examples"] += [Mismatch("axi", i, "protocol", None, None).to_dict()
                                        for i in range(min(3, len(responder.errors)))]
    write_result(job, result)
    assert not result["mismatches"], (f"{result['mismatches']} mismatches, first: "
                                      f"{(result['mismatch_examples'] or [None])[0]}, {responder.errors[:3]}")
