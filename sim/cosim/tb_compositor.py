"""cocotb testbench of the compositing unit: random constants, rays, gaps on both input streams, pixel
backpressure, TLM scoreboards on all three streams.

Run through ``sim.cosim.runner``; the job (parameters, ray count, phases, seed, optional injected model
fault, result path) arrives as a JSON file named by ``NERFHW_COSIM_JOB``. Each phase
(``sim.cosim.workload_compositor.random_compositor_workload``) writes its constants through ``cfg`` while
the unit is idle, then streams its ray headers and samples; cycle 0 of a phase is the cycle after its
constants write ends. One scoreboard per stream (``rays``, ``samples``, ``pixels``) checks the cycle and
payload of every transfer of all phases in order (cycles relative to the phase). The coroutine name has
no ``test_`` prefix so that pytest does not collect it.
"""

from __future__ import annotations

import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from hw.compositor.params import CompositorParams
from sim.cosim.harness import load_job, scoreboard_result, write_result
from sim.cosim.scoreboard import Scoreboard, inject_fault
from sim.cosim.stream import StreamMonitor, StreamSink, StreamSource
from sim.cosim.workload_compositor import CompositorPhase, random_compositor_workload, ray_events
from sim.tlm.compositor import CompositorTLM, constants_word

__all__ = ["CompositorTB"]


class CompositorTB:
    """Clock (10 ns), idle handshakes, reset and the constants write for one ``compositor`` DUT."""

    def __init__(self, dut, params: CompositorParams):
        self.dut = dut
        self.params = params
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.rays__valid.value = 0
        dut.samples__valid.value = 0
        dut.pixels__ready.value = 0
        dut.cfg__en.value = 0

    async def reset(self, cycles: int = 2) -> None:
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def configure(self, phase: CompositorPhase) -> None:
        """Write the phase's constants (one cycle), then one idle cycle."""
        dut = self.dut
        dut.cfg__en.value = 1
        dut.cfg__data.value = constants_word(self.params, phase.consts)
        await RisingEdge(dut.clk)
        dut.cfg__en.value = 0
        await RisingEdge(dut.clk)

    async def stream(self, phase: CompositorPhase, boards: dict[str, Scoreboard], limit: int) -> tuple[int, int, int]:
        """Stream one phase's headers and samples, drive the pixel ready, check every transfer.

        All components start at the current edge (cycle 0 is the next cycle). Returns once every pixel
        has transferred or after ``limit`` cycles, with the components stopped.

        Returns:
            ``(header transfers, pixel transfers, cycles)``, cycles = last pixel transfer + 1 (0 if none).
        """
        dut, clk = self.dut, self.dut.clk
        parts = [StreamSource(clk, "rays", dut, phase.ray_payloads, phase.ray_offers),
                 StreamSource(clk, "samples", dut, phase.sample_payloads, phase.sample_offers),
                 StreamSink(clk, "pixels", dut, phase.ready)]
        monitors = {name: StreamMonitor(clk, name, dut) for name in boards}
        tasks = [part.start() for part in (*parts, *monitors.values())]
        n, cycles = len(phase.ray_payloads), 0
        for _ in range(limit):
            await RisingEdge(clk)
            for name, mon in monitors.items():
                while not mon.queue.empty():
                    t, payload = mon.queue.get_nowait()
                    boards[name].check(t, payload)
                    if name == "pixels":
                        cycles = t + 1
            if monitors["pixels"].count >= n:
                break
        for task in tasks:
            task.cancel()
        dut.rays__valid.value = 0
        dut.samples__valid.value = 0
        dut.pixels__ready.value = 0
        return monitors["rays"].count, monitors["pixels"].count, cycles


@cocotb.test()
async def compositor_random_traffic(dut):
    """Random constants, rays, gaps and backpressure; every transfer's payload and cycle against the TLM."""
    job = load_job()
    params = CompositorParams.from_dict(job["params"])
    phases = random_compositor_workload(params, job["vectors"], job["seed"], phases=job.get("phases", 3),
                                        idle=job.get("idle", True), backpressure=job.get("backpressure", True))
    t0 = time.perf_counter()
    predicted = [CompositorTLM(params, ph.consts).run(ph.sigma, ph.color, ph.counts, ph.q, ph.ray_offers,
                                                      ph.sample_offers, ph.ready) for ph in phases]
    tlm_seconds = time.perf_counter() - t0
    expected = {"rays": [], "samples": [], "pixels": []}
    for ph, pred in zip(phases, predicted):
        expected["rays"] += list(zip(pred.ray_accept_cycles.tolist(), ph.ray_payloads))
        expected["samples"] += list(zip(pred.sample_accept_cycles.tolist(), ph.sample_payloads))
        expected["pixels"] += list(zip(pred.out_cycles.tolist(), pred.payloads))
    expected["pixels"] = inject_fault(expected["pixels"], job.get("fault"))
    boards = {name: Scoreboard(name, items) for name, items in expected.items()}

    tb = CompositorTB(dut, params)
    await tb.reset()
    sim_seconds = 0.0
    n_in = n_out = cycles_rtl = 0
    summary = []
    pmax = (1 << params.pixel_bits) - 1
    for ph, pred in zip(phases, predicted):
        await tb.configure(ph)
        t0 = time.perf_counter()
        got_in, got_out, cycles = await tb.stream(ph, boards, pred.cycles + 1000)
        sim_seconds += time.perf_counter() - t0
        n_in, n_out, cycles_rtl = n_in + got_in, n_out + got_out, cycles_rtl + cycles
        summary.append({"consts": vars(ph.consts), "rays": len(ph.counts), "samples": len(ph.sigma),
                        **ray_events(ph, params),
                        "clamped": int(((pred.pixels == 0) | (pred.pixels == pmax)).sum()),
                        "credit_stalls": pred.credit_stalls,
                        "cycles_rtl": cycles, "cycles_tlm": pred.cycles})
        await RisingEdge(dut.clk)  # let the last pixel's cycle close before the next constants write
    result = scoreboard_result(boards.values(), n_in=n_in, n_out=n_out, cycles_rtl=cycles_rtl,
                               cycles_tlm=sum(pred.cycles for pred in predicted), sim_seconds=sim_seconds,
                               tlm_seconds=tlm_seconds, phases=summary,
                               sample_transactions=boards["samples"].seen)
    write_result(job, result)
    assert not result["mismatches"], f"{result['mismatches']} mismatches, first: {result['mismatch_examples'][0]}"
