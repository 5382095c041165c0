"""cocotb testbench of the accelerator top: an integer model loaded through the write ports, whole rays
streamed with random idle gaps and pixel backpressure, every transfer against ``sim.tlm.top.TopTLM``.

Run through ``sim.cosim.runner``; the job (JSON named by ``NERFHW_COSIM_JOB``) names the model file
(``quant.int_export.save_int``), the rays (``sim.cosim.workload_top.save_rays``), the traffic seed, whether
inputs idle and the output stalls, an optional injected model fault and the result path.

After reset, every write port of every unit is written in parallel (``sim.tlm.top.load_writes``, one word
per port per cycle, each port's enables low when it has nothing to write), then one idle cycle; cycle 0 of
the run is the cycle after it. A source drives ``rays``, another ``samples``, a sink drives the pixels'
ready, and a monitor on each stream feeds its scoreboard: the ray and sample transfers (cycle and
payload) and the pixel transfers (cycle and payload) against the model.

Model faults (``job["fault"]``): "cycle" or "bit" (the middle pixel one cycle late, or one bit wrong;
``sim.cosim.scoreboard.inject_fault``), to show the scoreboard catches a wrong model.

The coroutine names have no ``test_`` prefix so that pytest does not collect them.
"""

from __future__ import annotations

import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from quant.int_export import load_int
from sim.cosim.harness import load_job, scoreboard_result, write_result
from sim.cosim.scoreboard import Scoreboard, inject_fault
from sim.cosim.stream import StreamMonitor, StreamSink, StreamSource
from sim.cosim.workload_top import load_rays, top_traffic
from sim.tlm.top import TopTLM, load_writes

__all__ = ["load_model", "run_rays"]

#: The enables a write port may have (the MLP engines' ``cfg`` has two).
_ENABLES = ("en", "layers_en")


def _enables(dut, ports) -> list:
    return [getattr(dut, f"{port}__{e}") for port in ports for e in _ENABLES if hasattr(dut, f"{port}__{e}")]


async def load_model(dut, writes: dict) -> int:
    """Write every port's words (``load_writes``) in parallel, one per port per cycle, then one idle cycle.
    Returns the cycles spent."""
    ports = list(writes)
    enables = _enables(dut, ports)
    n = max((len(w) for w in writes.values()), default=0)
    for c in range(n):
        for sig in enables:
            sig.value = 0
        for port in ports:
            if c < len(writes[port]):
                for name, value in writes[port][c].items():
                    sig = getattr(dut, f"{port}__{name}")
                    sig.value = int(value) & ((1 << len(sig)) - 1)
        await RisingEdge(dut.clk)
    for sig in enables:
        sig.value = 0
    await RisingEdge(dut.clk)
    return n + 1


async def run_rays(dut, tlm: TopTLM, rays, traffic, *, fault: str | None = None) -> dict:
    """Stream the rays and samples with ``traffic`` and check every transfer against the model.

    Returns:
        The result dict (``scoreboard_result``) with rays, samples, cycles_rtl, cycles_tlm, sim_seconds and
        tlm_seconds.
    """
    t0 = time.perf_counter()
    pred = tlm.run(rays, traffic.ray_offers, traffic.sample_offers, traffic.ready)
    tlm_seconds = time.perf_counter() - t0
    ray_items, sample_items = tlm.in_payloads(rays)
    boards = (Scoreboard("rays", list(zip(pred.ray_accept.tolist(), ray_items))),
              Scoreboard("samples", list(zip(pred.sample_accept.tolist(), sample_items))),
              Scoreboard("pixels", inject_fault(list(zip(pred.pixel_cycles.tolist(), pred.payloads)), fault)))
    clk = dut.clk
    ready = [] if traffic.ready is None else traffic.ready.tolist()
    components = [StreamSource(clk, "rays", dut, ray_items, traffic.ray_offers.tolist()),
                  StreamSource(clk, "samples", dut, sample_items, traffic.sample_offers.tolist()),
                  StreamSink(clk, "pixels", dut, ready)]
    monitors = [StreamMonitor(clk, name, dut) for name in ("rays", "samples", "pixels")]
    tasks = [c.start() for c in (*components, *monitors)]
    R = len(ray_items)
    limit = pred.cycles + 1000
    cycles = 0
    t0 = time.perf_counter()
    for _ in range(limit):
        await RisingEdge(clk)
        for mon, board in zip(monitors, boards):
            while not mon.queue.empty():
                t, payload = mon.queue.get_nowait()
                board.check(t, payload)
                if board is boards[2]:
                    cycles = t + 1
        if monitors[2].count >= R:
            break
    sim_seconds = time.perf_counter() - t0
    for task in tasks:
        task.cancel()
    dut.rays__valid.value = 0
    dut.samples__valid.value = 0
    dut.pixels__ready.value = 0
    return scoreboard_result(boards, n_in=monitors[0].count + monitors[1].count, n_out=monitors[2].count,
                             rays=R, samples=len(sample_items), cycles_rtl=cycles, cycles_tlm=pred.cycles,
                             sim_seconds=round(sim_seconds, 3), tlm_seconds=round(tlm_seconds, 3))


@cocotb.test()
async def top_whole_rays(dut):
    """An integer model loaded through the ports, whole rays with random gaps and backpressure, against TopTLM."""
    job = load_job()
    m = load_int(job["model"])
    rays = load_rays(job["rays"])
    tlm = TopTLM(m)
    T = max(sum(cycles) for cycles in tlm.issue.values())
    traffic = top_traffic(rays.counts, job["seed"], cycles_per_sample=T, idle=job.get("idle", True),
                          backpressure=job.get("backpressure", True))
    writes = load_writes(m)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    for sig in (dut.rays__valid, dut.samples__valid, dut.pixels__ready, *_enables(dut, writes)):
        sig.value = 0
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    t0 = time.perf_counter()
    load_cycles = await load_model(dut, writes)
    load_seconds = time.perf_counter() - t0
    result = await run_rays(dut, tlm, rays, traffic, fault=job.get("fault"))
    result.update(load_cycles=load_cycles, load_seconds=round(load_seconds, 3),
                  load_words={port: len(w) for port, w in writes.items()})
    write_result(job, result)
    assert not result["mismatches"], f"{result['mismatches']} mismatches, first: {result['mismatch_examples'][0]}"
