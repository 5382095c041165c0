"""cocotb testbench of the bit-serial MLP engine: random configurations, traffic, backpressure, TLM scoreboard.

Run through ``sim.cosim.runner``; the job (parameters, vector count, phases, optional layer sizes, seed,
optional injected model fault, result path) arrives as a JSON file named by ``NERFHW_COSIM_JOB``.

One weight bank: the run has several phases (``sim.cosim.workload_mlp_engine.random_mlp_workload``):
each writes a new configuration, weights and biases while the engine is idle, then streams its vectors
(``sim.cosim.harness.run_phases``); cycle 0 of a phase is the cycle after its loading ends. One
scoreboard per stream checks every transfer of all phases in order (cycles relative to the phase).

Two weight banks: one run of random cell visits from reset (``random_cell_workload``; the job's phases
are the distinct cells). A loader coroutine (``CellLoader``) fills visit k's cell into bank k % 2 as
``sim.tlm.mlp_engine`` (part d) specifies, driven by the engine's ``banks.free``, while the source,
the sink and the monitors stream the vectors, so loads overlap computation. Four scoreboards against
``MlpCellsTLM``: the input and output transfers (payloads with ``last``), the loader's (commit, seen)
cycles per visit, and every change of ``banks.free``.

Model faults (``job["fault"]``), to show the scoreboards catch a wrong model: "cycle" and "bit" (the
middle output one cycle late, or one bit wrong; ``inject_fault``); with two banks also "load" (a model
that ignores the load time beyond one word per cycle) and "swap" (a model that computes each visit
after the first with the other bank, i.e. the previous visit's cell; needs cells of one input size).

The coroutine names have no ``test_`` prefix so that pytest does not collect them.
"""

from __future__ import annotations

import random
import time

import cocotb
from cocotb.triggers import ReadOnly, RisingEdge

from hw.mlp_engine.params import MlpEngineParams
from sim.cosim.harness import EngineTB, load_job, run_phases, scoreboard_result, stream_and_check, write_result
from sim.cosim.scoreboard import Scoreboard, inject_fault
from sim.cosim.workload_mlp_engine import MlpCellRun, MlpPhase, random_cell_workload, random_mlp_workload
from sim.tlm.mlp_engine import MlpCellsTLM, MlpEngineTLM, config_word, reference_forward

__all__ = ["MlpTB", "CellLoader", "ValueMonitor"]

_WRITE_ENABLES = ("cfg__en", "cfg__layers_en", "weights__en", "bias__en")


class MlpTB(EngineTB):
    """Clock, reset, configuration and weight loading for one ``mlp_engine`` DUT."""

    def __init__(self, dut, params: MlpEngineParams):
        super().__init__(dut, params, _WRITE_ENABLES + (("banks__commit",) if params.banked else ()))

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


class CellLoader:
    """The weight loader of an engine with two weight banks (``sim.tlm.mlp_engine``, part d).

    For visit k: from cycle c_{k-1} + 1 it waits for ``banks.free`` bit k % 2, seen in cycle t_k; in cycles
    t_k + 1 .. t_k + load_cycles[k] it writes the cell's words into bank k % 2 at the run's slots (the other
    cycles carry random bits with every enable low); in cycle c_k = t_k + 1 + load_cycles[k] it pulses
    ``banks.commit``. Cycles count from the edge it is started at, as the stream components do.
    ``seen`` and ``commits`` collect t_k and c_k.
    """

    def __init__(self, dut, run: MlpCellRun, seed: int):
        self.dut, self.run = dut, run
        self.rand = random.Random(seed)
        self.seen: list[int] = []
        self.commits: list[int] = []
        dut.banks__commit.value = 0

    def start(self):
        return cocotb.start_soon(self._run())

    def _idle(self) -> None:
        dut, rand = self.dut, self.rand
        for port in _WRITE_ENABLES:
            getattr(dut, port).value = 0
        for port in ("cfg__bank", "weights__bank", "bias__bank"):  # junk: the engine must ignore it
            getattr(dut, port).value = rand.getrandbits(1)
        dut.weights__data.value = rand.getrandbits(len(dut.weights__data))

    def _write(self, word: tuple, bank: int) -> None:
        dut = self.dut
        self._idle()
        kind, *fields = word
        if kind == "cfg":
            dut.cfg__en.value, dut.cfg__bank.value = 1, bank
            dut.cfg__layer.value, dut.cfg__data.value = fields
        elif kind == "layers":
            dut.cfg__layers_en.value, dut.cfg__bank.value = 1, bank
            dut.cfg__layers.value = fields[0]
        elif kind == "weights":
            dut.weights__en.value, dut.weights__bank.value = 1, bank
            (dut.weights__layer.value, dut.weights__row_tile.value, dut.weights__col_tile.value,
             dut.weights__plane.value, dut.weights__data.value) = fields
        else:
            dut.bias__en.value, dut.bias__bank.value = 1, bank
            dut.bias__layer.value, dut.bias__row_tile.value, dut.bias__data.value = fields

    async def _run(self) -> None:
        dut, run = self.dut, self.run
        clk = dut.clk
        cycle = 0
        for k, cell in enumerate(run.visits.tolist()):
            bank = k % 2
            while True:
                await ReadOnly()
                if int(dut.banks__free.value) >> bank & 1:
                    break
                await RisingEdge(clk)
                cycle += 1
            self.seen.append(cycle)
            await RisingEdge(clk)
            cycle += 1
            slots = iter(run.slots[k].tolist())
            writes = iter(run.cells[cell].writes)
            slot = next(slots, -1)
            for offset in range(int(run.load_cycles[k])):
                if offset == slot:
                    self._write(next(writes), bank)
                    slot = next(slots, -1)
                else:
                    self._idle()
                await RisingEdge(clk)
                cycle += 1
            self._idle()
            dut.banks__commit.value, dut.banks__commit_bank.value = 1, bank
            self.commits.append(cycle)
            await RisingEdge(clk)
            cycle += 1
            dut.banks__commit.value, dut.banks__commit_bank.value = 0, self.rand.getrandbits(1)
        self._idle()


class ValueMonitor:
    """Records ``(cycle, value)`` of a signal in cycle 0 and in every cycle it changes (``changes``)."""

    def __init__(self, dut, name: str):
        self.clk, self.signal = dut.clk, getattr(dut, name)
        self.changes: list[tuple[int, int]] = []

    def start(self):
        return cocotb.start_soon(self._run())

    async def _run(self) -> None:
        cycle, last = 0, None
        while True:
            await ReadOnly()
            value = int(self.signal.value)
            if value != last:
                self.changes.append((cycle, value))
                last = value
            await RisingEdge(self.clk)
            cycle += 1


def _swapped_payloads(model: MlpCellsTLM, run: MlpCellRun, pred) -> list[int]:
    """The "swap" fault: each visit k >= 1 computed with visit k - 1's cell (the other bank)."""
    payloads, pos = list(pred.payloads), 0
    for k, x in enumerate(run.inputs):
        if k:
            cell = model.cells[int(run.visits[k - 1])]
            if cell.layers[0].in_size != x.shape[1]:
                raise ValueError("the swap fault needs cells of one input size (give shapes)")
            y = reference_forward(cell.layers, cell.weights, cell.biases, x)
            payloads[pos:pos + len(x)] = [model.payload(row, i == len(x) - 1) for i, row in enumerate(y)]
        pos += len(x)
    return payloads


async def run_cells(tb: MlpTB, run: MlpCellRun, *, seed: int, fault: str | None = None) -> dict:
    """Stream one run of cell visits with the loader alongside and check it against ``MlpCellsTLM``.

    Returns:
        The result dict (``scoreboard_result``) with cycles_rtl, cycles_tlm, sim_seconds, tlm_seconds,
        ``cells`` (per cell: layers, cycles per vector, words), ``visits`` (per visit: cell, vectors,
        load cycles, words, and the seen / commit cycles of the RTL's loader and of the model),
        ``groups``, ``load_cycles`` and ``load_words`` (per visit).
    """
    p, dut = tb.params, tb.dut
    t0 = time.perf_counter()
    model = MlpCellsTLM(p, [MlpEngineTLM(p, c.layers, c.weights, c.biases) for c in run.cells])
    pred = model.run(run.visits, run.inputs, run.offer_cycles, run.ready, run.load_cycles)
    tlm_seconds = time.perf_counter() - t0
    wrong = pred
    if fault == "load":  # ignores the memory system: one word per cycle, nothing more
        wrong = model.run(run.visits, run.inputs, run.offer_cycles, run.ready, None)
    expected_out = list(zip(wrong.out_cycles.tolist(), _swapped_payloads(model, run, wrong) if fault == "swap"
                            else wrong.payloads))
    board_in = Scoreboard("i", list(zip(wrong.accept_cycles.tolist(), run.in_payloads)))
    board_out = Scoreboard("o", inject_fault(expected_out, fault if fault in ("cycle", "bit") else None))
    board_load = Scoreboard("load", list(zip(wrong.commit.tolist(), wrong.seen.tolist())))
    board_free = Scoreboard("free", wrong.free_trace)
    loader = CellLoader(dut, run, seed)
    free = ValueMonitor(dut, "banks__free")
    t_max = max(m.T for m in model.cells)
    t0 = time.perf_counter()
    n_in, n_out, cycles = await stream_and_check(
        dut, items=run.in_payloads, offer_cycles=run.offer_cycles, ready=run.ready, board_in=board_in,
        board_out=board_out, limit=pred.cycles + 4 * t_max + 1000, components=(loader, free))
    sim_seconds = time.perf_counter() - t0
    for commit, seen in zip(loader.commits, loader.seen):
        board_load.check(commit, seen)
    for t, value in free.changes:
        if t < cycles:  # the model's trace ends with the last output transfer
            board_free.check(t, value)
    counts = run.counts
    visits = [{"cell": int(v), "vectors": n, "load_cycles": int(load), "words": model.words[int(v)],
               "seen_rtl": loader.seen[k] if k < len(loader.seen) else None,
               "commit_rtl": loader.commits[k] if k < len(loader.commits) else None,
               "seen_tlm": int(pred.seen[k]), "commit_tlm": int(pred.commit[k]), "release_tlm": int(pred.release[k])}
              for k, (v, n, load) in enumerate(zip(run.visits.tolist(), counts, run.load_cycles.tolist()))]
    cells = [{"layers": [x.to_dict() for x in m.layers], "cycles_per_vector": m.T, "words": w}
             for m, w in zip(model.cells, model.words)]
    return scoreboard_result((board_in, board_out, board_load, board_free), n_in=n_in, n_out=n_out,
                             cycles_rtl=cycles, cycles_tlm=pred.cycles, sim_seconds=sim_seconds,
                             tlm_seconds=tlm_seconds, cells=cells, visits=visits, groups=counts,
                             load_cycles=[v["load_cycles"] for v in visits], load_words=[v["words"] for v in visits])


@cocotb.test()
async def mlp_engine_random_traffic(dut):
    """Random configurations (or cell visits), vectors, gaps and backpressure; every transfer against the TLM."""
    job = load_job()
    params = MlpEngineParams.from_dict(job["params"])
    tb = MlpTB(dut, params)
    if params.banked:
        run = random_cell_workload(params, job["vectors"], job["seed"], cells=job.get("phases", 3),
                                   shapes=job.get("shapes"), idle=job.get("idle", True),
                                   backpressure=job.get("backpressure", True))
        await tb.reset()
        result = await run_cells(tb, run, seed=job["seed"], fault=job.get("fault"))
    else:
        phases = random_mlp_workload(params, job["vectors"], job["seed"], phases=job.get("phases", 3),
                                     shapes=job.get("shapes"), idle=job.get("idle", True),
                                     backpressure=job.get("backpressure", True))
        models = [MlpEngineTLM(params, ph.layers, ph.weights, ph.biases) for ph in phases]
        await tb.reset()
        result = await run_phases(tb, phases, models, fault=job.get("fault"),
                                  describe=lambda ph, model, pred: {"layers": [layer.to_dict() for layer in ph.layers]})
    write_result(job, result)
    assert not result["mismatches"], f"{result['mismatches']} mismatches, first: {result['mismatch_examples'][0]}"
