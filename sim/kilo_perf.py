"""Frame latency of KiloNeRF on the accelerator: two MLP engines with ping-pong weight banks.

The mapping (``nerf.layout.kilonerf_layers``): the ``density`` engine runs layers density.l0-l2
(63 -> 32 -> 32 -> 33) and the ``color`` engine color.l0-l1 ([32 features, 27 direction] -> 32 -> 3), each
an ``hw.mlp_engine`` of the preset's array with ``weight_banks`` 2; every cell has its own weights and
biases, so both engines switch weights whenever the sample stream moves to another cell. No hash
encoder: the positional and direction encodings are small fixed-function units that keep up (assumed).

Visit order (stated, KiloNeRF's own on the GPU): rays are taken in batches of ``batch_rays`` in scanline
order; the samples of one batch (after empty-space skipping and early ray termination) are grouped by
cell and the cells visited in ascending flat index (``cell_visits``); a visit is one cell group of n_k
vectors. Both engines see the same visits.

Per engine, a visit's weights come from DRAM as the engine's own write words (``sim.tlm.mlp_engine.
cell_writes``: config words, weight bit-planes of R x C bits, bias words), stored contiguously per cell,
so the loader streams them without reformatting. The loader's ``load_cycles`` for a cell (module d of
``sim.tlm.mlp_engine``) = a row-conflict access ``tRP + tRCD + tCL`` + the cell's bytes in AXI beats
(``ceil(bytes / bus_bytes) * beat_interval``), at least ``cell_words`` (one write per cycle).

Per engine the cycles are ``sim.tlm.mlp_engine.cell_schedule`` (the closed form, equal to ``MlpCellsTLM``
at full rate, proven in ``tests/test_kilo_perf.py``): visit k costs ``max(n_k T, load_{k+1} + 2..7)``.
Split: compute ``sum n_k T``; weight switching = the rest (cycles the engine waits for the next bank),
of which the DRAM-bound part (loads longer than their write words) is reported as memory stalls.
The frame is the slower engine plus the other's fill (its first visit's load and one vector), the
engines being decoupled by a FIFO (an estimate for the pair; each engine alone is exact).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from hw.params import ConfigError, MlpEngineParams, MlpLayer
from nerf.layout import kilonerf_layers
from sim.mapping import AcceleratorPreset, check_bits
from sim.memory.dram import DramTiming, load_dram
from sim.tlm.mlp_engine import cell_schedule, cell_words, vector_cycles

__all__ = ["KILO_ENGINES", "kilo_layers", "kilo_engines", "kilo_engines_for_policy", "cell_visits", "cell_bytes",
           "load_cycles",
           "EnginePerf", "KiloFramePerf", "kilo_frame_perf", "BATCH_RAYS"]

#: Engine -> its layers (``nerf.layout.kilonerf_layers`` names).
KILO_ENGINES = {"density": ("density.l0", "density.l1", "density.l2"), "color": ("color.l0", "color.l1")}
#: Rays whose samples are grouped by cell together (an on-chip sample buffer of this many rays).
BATCH_RAYS = 4096


def kilo_layers(policy: Mapping[str, int], arch: Mapping, mlp: MlpEngineParams) -> dict[str, list[MlpLayer]]:
    """Each engine's layer settings under ``policy`` (a ``quant.policy.KiloPolicy``): sizes from the layout,
    weight bits of ``<layer>.weight``, activation bits the widest input component, output bits the next
    layer's input (the last layer: its ``.out`` component), ReLU on hidden layers, a bias on every layer.

    Raises:
        ConfigError: a width above the engine's maxima (naming the component; 32 bits = full precision).
    """
    shapes = kilonerf_layers(arch)
    out: dict[str, list[MlpLayer]] = {}
    for engine, names in KILO_ENGINES.items():
        layers = []
        for i, name in enumerate(names):
            ly = shapes[name]
            w = check_bits(policy, ly.weight, mlp.max_weight_bits, "max_weight_bits")
            a = max(check_bits(policy, n, mlp.max_act_bits, "max_act_bits") for n in ly.inputs)
            last = i == len(names) - 1
            o = check_bits(policy, f"{name}.out" if last else shapes[names[i + 1]].inputs[0], mlp.max_act_bits,
                           "max_act_bits")
            layers.append(MlpLayer(in_size=ly.in_size, out_size=ly.out_size, weight_bits=w, act_bits=a,
                                   act_signed=i == 0, relu=not last, out_bits=o, bias=True))
        out[engine] = layers
    return out


def kilo_engines(preset: AcceleratorPreset, arch: Mapping) -> MlpEngineParams:
    """The MLP engine both KiloNeRF engines are generated as: the preset's array with two weight banks,
    ``max_in`` / ``max_out`` / ``max_layers`` covering the tiny network.

    Raises:
        ConfigError: the preset's array cannot hold the network (e.g. fewer than 3 layers is fixed here).
    """
    shapes = kilonerf_layers(arch).values()
    return replace(preset.mlp, weight_banks=2, max_in=max(preset.mlp.max_in, max(ly.in_size for ly in shapes)),
                   max_out=max(preset.mlp.max_out, max(ly.out_size for ly in shapes)),
                   max_layers=max(preset.mlp.max_layers, max(len(v) for v in KILO_ENGINES.values())))


def kilo_engines_for_policy(preset: AcceleratorPreset, arch: Mapping, policy: Mapping[str, int]) -> MlpEngineParams:
    """``kilo_engines`` at exactly the policy's widest weight and widest activation (input or output):
    the engine ``make verilog`` generates for a KiloNeRF policy (``engines.yaml``).

    Raises:
        ConfigError: a width above the preset's engine (e.g. 32 bits, full precision)."""
    mlp = kilo_engines(preset, arch)
    layers = [x for ls in kilo_layers(policy, arch, mlp).values() for x in ls]
    return replace(mlp, max_weight_bits=max(x.weight_bits for x in layers),
                   max_act_bits=max(max(x.act_bits, x.out_bits) for x in layers))


def cell_visits(cells: np.ndarray, rays: np.ndarray, batch_rays: int = BATCH_RAYS) -> tuple[np.ndarray, np.ndarray]:
    """The visit order (module doc): samples' cells int (N,) and rays int (N,) in accelerator order ->
    (cell of each visit int64 (K,), vectors of each visit int64 (K,)); the counts sum to N.

    Raises:
        ValueError: mismatched lengths or ``batch_rays`` < 1.
    """
    cells, rays = np.asarray(cells, np.int64), np.asarray(rays, np.int64)
    if cells.shape != rays.shape or cells.ndim != 1:
        raise ValueError(f"cells and rays must be 1-D of one length, not {cells.shape} and {rays.shape}")
    if isinstance(batch_rays, bool) or not isinstance(batch_rays, (int, np.integer)) or batch_rays < 1:
        raise ValueError(f"batch_rays must be a positive integer, not {batch_rays!r}")
    if cells.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    batch = rays // batch_rays
    order = np.lexsort((cells, batch))  # by batch, then cell; stable
    key_b, key_c = batch[order], cells[order]
    start = np.flatnonzero(np.r_[True, (key_b[1:] != key_b[:-1]) | (key_c[1:] != key_c[:-1])])
    counts = np.diff(np.r_[start, cells.size])
    return key_c[start], counts


def cell_bytes(params: MlpEngineParams, layers) -> int:
    """Bytes of one cell in DRAM as the loader's write words: config words and the layer count (one
    config word each, ``config_fields`` bits), weight planes (R x C bits) and bias words (R x ``bias_bits``),
    each word rounded up to whole bytes."""
    R, C = params.rows, params.cols
    cfg_bits = sum(b for _, b in params.config_fields)
    planes = sum(-(-x.out_size // R) * -(-x.in_size // C) * x.weight_bits for x in layers)
    biases = sum(-(-x.out_size // R) for x in layers if x.bias)
    return (len(layers) + 1) * -(-cfg_bits // 8) + planes * -(-R * C // 8) + biases * -(-R * params.bias_bits // 8)


def load_cycles(params: MlpEngineParams, layers, dram: DramTiming, bus_bytes: int) -> int:
    """The loader's cycles for one cell (module doc): ``max(cell_words, tRP + tRCD + tCL + beats * beat_interval)``."""
    beats = -(-cell_bytes(params, layers) // bus_bytes)
    return max(cell_words(params, layers), dram.t_rp + dram.t_rcd + dram.t_cl + beats * dram.beat_interval)


@dataclass(frozen=True)
class EnginePerf:
    """One engine's frame: cycles (last output + 1), compute (sum n_k T), switch (cycles waiting for the
    next cell's bank), memory_stall (the part of ``switch`` in visits whose load is DRAM-bound), T (cycles
    per vector), load (cycles per cell), words (writes per cell), cell_bytes, dram_bytes (per frame)."""

    cycles: int
    compute: int
    switch: int
    memory_stall: int
    T: int
    load: int
    words: int
    cell_bytes: int
    dram_bytes: int


@dataclass(frozen=True)
class KiloFramePerf:
    """A KiloNeRF frame: cycles, latency_ms, visits, samples, the engines' ``EnginePerf``, the bottleneck."""

    cycles: int
    latency_ms: float
    visits: int
    samples: int
    engines: dict
    bottleneck: str

    def to_dict(self) -> dict:
        return {"cycles": self.cycles, "latency_ms": self.latency_ms, "visits": self.visits, "samples": self.samples,
                "bottleneck": self.bottleneck, "engines": {k: v.__dict__ for k, v in self.engines.items()}}


def _engine(params: MlpEngineParams, layers, counts: np.ndarray, dram: DramTiming, bus_bytes: int) -> EnginePerf:
    T = vector_cycles(params, layers)
    load = load_cycles(params, layers, dram, bus_bytes)
    words = cell_words(params, layers)
    if counts.size == 0:
        return EnginePerf(0, 0, 0, 0, T, load, words, cell_bytes(params, layers), 0)
    times = cell_schedule(params, counts, T, load)
    compute = int(counts.sum()) * T
    # the engine issues n_k T cycles per visit; every other cycle up to its last issue it waits for a bank
    switch = int(times.last_issue[-1]) - compute
    stall = switch if load > words else 0
    return EnginePerf(times.cycles, compute, switch, stall, T, load, words, cell_bytes(params, layers),
                      int(counts.size) * cell_bytes(params, layers))


def kilo_frame_perf(preset: AcceleratorPreset, arch: Mapping, policy: Mapping[str, int], cells, rays, *,
                    batch_rays: int = BATCH_RAYS) -> KiloFramePerf:
    """Cycles of one KiloNeRF frame whose evaluated samples (accelerator order) lie in ``cells`` along ``rays``.

    Args:
        preset: the hardware preset (its MLP array and clock; its DRAM, or LPDDR4 for a preset without one).
        arch: ``KiloNeRF.arch``; policy: a ``KiloPolicy`` (every width must fit the engines).
        cells, rays: int (N,), each sample's cell (``KiloNeRF.cell_of``) and ray (``nerf.render.sample_positions``
            with ``with_rays``).

    Raises:
        ConfigError: a policy width the engines cannot run. ValueError: bad cells / rays / batch_rays.
    """
    params = kilo_engines(preset, arch)
    layers = kilo_layers(policy, arch, params)
    cell, counts = cell_visits(cells, rays, batch_rays)
    if preset.memory is not None:
        dram, bus = preset.dram_timing(), preset.memory.bus_bytes
    else:  # tables on chip: the weights still come from DRAM
        bus = 16
        dram = DramTiming.of(load_dram("lpddr4"), preset.mlp.clock_mhz, bus)
    engines = {name: _engine(params, layers[name], counts, dram, bus) for name in KILO_ENGINES}
    slow = max(engines, key=lambda k: engines[k].cycles)
    other = [v for k, v in engines.items() if k != slow]
    fill = sum(v.load + v.T for v in other) if counts.size else 0
    cycles = engines[slow].cycles + fill
    return KiloFramePerf(cycles, params.cycles_to_ms(cycles), int(counts.size), int(counts.sum()), engines, slow)
