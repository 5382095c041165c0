"""cocotb-side helpers shared by the testbenches: the job and result files, and one streaming phase.

The host side (``sim.cosim.runner.run``) writes the job as JSON and names it in the environment
variable ``NERFHW_COSIM_JOB``; the testbench reads it with ``load_job`` and writes its result JSON to
``job["result"]`` with ``write_result``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from common.atomic import atomic_write_text
from sim.cosim.scoreboard import Scoreboard, inject_fault
from sim.cosim.stream import StreamMonitor, StreamSink, StreamSource

__all__ = ["JOB_ENV", "load_job", "write_result", "stream_and_check", "EngineTB", "scoreboard_result", "run_phases"]

JOB_ENV = "NERFHW_COSIM_JOB"


class EngineTB:
    """Clock (10 ns), idle stream handshakes and write ports, and reset, for any engine DUT.

    Args:
        dut: the cocotb handle; params: the engine's parameters; write_enables: the names of the
            DUT's write-port enables, held low until the testbench loads memories.
    """

    def __init__(self, dut, params, write_enables: Sequence[str]):
        self.dut = dut
        self.params = params
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        dut.i__valid.value = 0
        dut.o__ready.value = 0
        for port in write_enables:
            getattr(dut, port).value = 0

    async def write_words(self, port: str, fields: Sequence[str], words) -> int:
        """Write ``words`` through the write port ``port``, one per cycle: each word is its ``fields``'
        values (the address fields) followed by ``data``; the enable drops after the last. Returns the count."""
        dut, count = self.dut, 0
        getattr(dut, f"{port}__en").value = 1
        for word in words:
            for field, value in zip((*fields, "data"), word, strict=True):
                getattr(dut, f"{port}__{field}").value = value
            await RisingEdge(dut.clk)
            count += 1
        getattr(dut, f"{port}__en").value = 0
        return count

    async def reset(self, cycles: int = 2) -> None:
        self.dut.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)


def load_job() -> dict:
    """The job dict of this run (parameters, workload size, seed, fault, result path)."""
    with open(os.environ[JOB_ENV]) as f:
        return json.load(f)


def write_result(job: dict, result: dict) -> None:
    """Write the testbench's result dict where the host expects it (atomically)."""
    atomic_write_text(job["result"], json.dumps(result, indent=2))


async def stream_and_check(dut, *, items: Sequence[int], offer_cycles: Sequence[int], ready: Sequence[bool],
                           board_in: Scoreboard, board_out: Scoreboard, limit: int,
                           i_bus: str = "i", o_bus: str = "o", components: Sequence = ()) -> tuple[int, int, int]:
    """Stream ``items`` into an engine with one output per input and check every transfer.

    Starts a source on ``i_bus`` (item i offered from ``offer_cycles[i]``), a sink on ``o_bus``
    (``ready[t]`` in cycle t, ready past the end), a monitor on each and ``components`` (more drivers
    or monitors with a ``start()`` that counts cycles the same way, e.g. a weight loader) at the
    current edge, so cycle 0 is the cycle after it. Each observed transfer ``(cycle, payload)`` goes
    to the scoreboard of its stream. Returns once ``len(items)`` outputs have transferred or after
    ``limit`` cycles, with every component stopped and the output not ready.

    Returns:
        ``(input transfers, output transfers, cycles)``, cycles = last output transfer cycle + 1
        (0 if none).
    """
    clk = dut.clk
    source = StreamSource(clk, i_bus, dut, items, offer_cycles)
    sink = StreamSink(clk, o_bus, dut, ready)
    mon_in = StreamMonitor(clk, i_bus, dut)
    mon_out = StreamMonitor(clk, o_bus, dut)
    tasks = [component.start() for component in (source, sink, mon_in, mon_out, *components)]
    n = len(items)
    cycles = 0
    for _ in range(limit):
        await RisingEdge(clk)
        while not mon_in.queue.empty():
            board_in.check(*mon_in.queue.get_nowait())
        while not mon_out.queue.empty():
            t, payload = mon_out.queue.get_nowait()
            board_out.check(t, payload)
            cycles = t + 1
        if mon_out.count >= n:
            break
    for task in tasks:
        task.cancel()
    getattr(dut, f"{i_bus}__valid").value = 0
    getattr(dut, f"{o_bus}__ready").value = 0
    return mon_in.count, mon_out.count, cycles


def scoreboard_result(boards: Sequence[Scoreboard], *, n_in: int, n_out: int, **extra) -> dict:
    """The result dict of a run: transfer counts, the boards' mismatches (first 10 as examples), ``extra``."""
    mismatches = [m for board in boards for m in board.finish()]
    return {"transactions": n_out, "input_transactions": n_in, "mismatches": len(mismatches),
            "mismatch_examples": [m.to_dict() for m in mismatches[:10]], **extra}


async def run_phases(tb: EngineTB, phases: Sequence, models: Sequence, *, fault: str | None = None,
                     describe: Callable[[object, object, object], dict] = lambda phase, model, pred: {}) -> dict:
    """Load and stream each phase of a multi-phase workload, checking every transfer against its model.

    Each phase has ``inputs``, ``in_payloads``, ``offer_cycles`` and ``ready``; each model has
    ``run(inputs, offer_cycles, ready)`` (a prediction with ``accept_cycles``, ``out_cycles``,
    ``payloads`` and ``cycles``) and ``T``, its cycles per vector; ``tb.configure(phase)`` loads a
    phase while the engine is idle. Cycle 0 of a phase is the cycle after its loading ends; one
    scoreboard per stream checks the transfers of all phases in order (cycles relative to the phase),
    the output one against predictions with ``fault`` injected (``inject_fault``).

    Returns:
        The result dict (``scoreboard_result``) with cycles_rtl, cycles_tlm, sim_seconds, tlm_seconds
        and ``phases``: per phase ``describe(phase, model, prediction)`` followed by vectors,
        cycles_per_vector, cycles_rtl and cycles_tlm.
    """
    t0 = time.perf_counter()
    predicted = [model.run(ph.inputs, ph.offer_cycles, ph.ready) for model, ph in zip(models, phases)]
    tlm_seconds = time.perf_counter() - t0
    expected_in, expected_out = [], []
    for ph, pred in zip(phases, predicted):
        expected_in += list(zip(pred.accept_cycles.tolist(), ph.in_payloads))
        expected_out += list(zip(pred.out_cycles.tolist(), pred.payloads))
    board_in = Scoreboard("i", expected_in)
    board_out = Scoreboard("o", inject_fault(expected_out, fault))
    dut = tb.dut
    sim_seconds = 0.0
    n_in = n_out = cycles_rtl = 0
    summary = []
    for ph, pred, model in zip(phases, predicted, models):
        await tb.configure(ph)
        # Cycle 0 of the phase is the cycle after this edge; the streaming components start here.
        t0 = time.perf_counter()
        got_in, got_out, cycles = await stream_and_check(
            dut, items=ph.in_payloads, offer_cycles=ph.offer_cycles, ready=ph.ready,
            board_in=board_in, board_out=board_out, limit=pred.cycles + 4 * model.T + 1000)
        sim_seconds += time.perf_counter() - t0
        n_in, n_out, cycles_rtl = n_in + got_in, n_out + got_out, cycles_rtl + cycles
        summary.append({**describe(ph, model, pred), "vectors": len(ph.in_payloads), "cycles_per_vector": model.T,
                        "cycles_rtl": cycles, "cycles_tlm": pred.cycles})
        # Let the last output's cycle close before the next phase writes a new configuration.
        await RisingEdge(dut.clk)
    return scoreboard_result((board_in, board_out), n_in=n_in, n_out=n_out, cycles_rtl=cycles_rtl,
                             cycles_tlm=sum(pred.cycles for pred in predicted), sim_seconds=sim_seconds,
                             tlm_seconds=tlm_seconds, phases=summary)
