"""Frame-level performance model of the NeRF accelerator: cycles, latency, utilization, memory traffic.

The accelerator is a pipeline of three engines, each exactly the generated RTL that its TLM models;
which model component runs where, and the engines' pipeline latencies, are ``sim.mapping``'s:

    sample points -> hash encoder -> FIFO -> density MLP engine -> FIFO -> colour MLP engine -> renderer

* the hash encoder (``hw.hash_encoder``, L levels, ``lanes`` pipelines): one point every
  ``G = ceil(L / lanes)`` cycles; point k (all points waiting at cycle 0) leaves at
  ``e_k = k G + G + ENCODER_EXTRA_LATENCY`` (= 7: 6 pipeline stages + the output FIFO);
* two bit-serial MLP engines (``hw.mlp_engine``) of the same array (R x C) running the model's density
  and colour MLPs (``nerf.layout``: 32 -> 64 -> 16 and (15 + 16) -> 64 -> 64 -> 3 for A-CAQ's model);
  each costs ``T = sum_l ceil(out/R) ceil(in/C) w_l a_l + LAYER_GAP (L - 1)`` cycles per vector
  (``sim.tlm.mlp_engine``), its bits taken from the policy;
* between engines, synchronous FIFOs of ``INTER_ENGINE_FIFO`` = 2 words with backpressure (a word
  written at cycle t is offered from t + 1); the renderer (alpha compositing, and the SH encoding
  beside the density engine) keeps up and adds no cycles. That is this pipeline's figure; the
  accelerator top as built (``hw.top``) differs at both ends and per ray ("The top" below), and
  ``frame_perf(..., rays=)`` gives its exact cycles.

Each MLP engine follows the TLM's recurrence with its output always ready: vector k offered at
``offer_k`` is loaded at ``l_k = max(offer_k + 1, l_{k-1} + T)`` and leaves at
``o_k = l_k + T + MLP_EXTRA_LATENCY - 1`` (= l_k + T + 5: an idle engine's output leaves
``T + MLP_EXTRA_LATENCY`` cycles after the input transfer; the TLM's ``o_{k-3} + 1`` credit term never
binds since T >= 4). Offers that are linear in k give linear outputs, ``o_k = k max(s, T) + b + T + 6``
for offers ``k s + b`` (``_linear_stages``), so a frame of any size costs O(1). The recurrence
ignores backpressure: an engine faster than its downstream is stalled by the full FIFO, but the
downstream still finds its next vector waiting whenever it can take one, so the colour engine's
transfer cycles are those of the stall-free pipeline. ``tests/test_perf.py`` checks this, every
colour-engine output cycle, against the three TLMs run back to back with 2-word FIFOs and
backpressure. Frame cycles are the colour engine's last output cycle + 1, about
``(N - 1) max(G, T_density, T_colour) + G + T_density + T_colour + ENCODER_EXTRA_LATENCY
+ 2 MLP_EXTRA_LATENCY + 3`` (= ... + 22).

Bits: the MLP layers' weight and activation bits are the policy's (``sim.mapping.mlp_layers``:
``density.l0``: ``enc.out`` x ``density.l0.weight``; ``density.l1``: ``density.l1.act_in``; ``color.l0``:
the wider of ``density.l1.out`` and ``sh.out``; ``color.l1``/``color.l2``: their ``act_in``); hash-table bits
change the table memory and its read traffic, not the encoder's cycles. A component at 32 bits (full
precision) cannot run on the integer engines: ``frame_perf`` raises for it.

**DHQ: the Hadamard datapath** (``datapath="hadamard"``, the quantizer ``dhq`` of ``make quantize`` and
``make search``). Each MLP layer runs on its own engine, chained in data-flow order with the same
2-word FIFOs between every two engines (``sim.mapping.hadamard_layers``): a rotated layer on a
Hadamard datapath sized for it (``T = ceil(m / R) (n / C) a``, a the layer's activation bits, or
a + log2 n when only its weight is rotated; a vector offered to the idle datapath at cycle t leaves at
``t + T + log2 n + 8``, ``sim.tlm.hadamard.vector_latency``), an unrotated one on a one-layer bit-serial
MLP engine of the preset's array (the MLP engine's layer cycles, leaving at t + T + 6). The Hadamard
engine accepts vector k at ``a_k = max(offer_k, a_{k-1} + 1, l_{k-Q})`` and loads it at
``l_k = max(a_k + F, l_{k-1} + T)`` (``sim.tlm.hadamard``, Q T >= F by its ``front_depth``), so offers
``k s + b`` give outputs ``k max(s, T) + b + T + log2 n + 8`` (``tests/test_dhq_frame.py`` checks it
against ``HadamardTLM``), the same linear form as the MLP engine's: the chain's slope is the largest
T of the chain (so each MLP's ``cycles_per_sample`` is its slowest layer's T) and its intercept adds
every stage's latency and FIFO cycle. The argument for ignoring backpressure is the one above. Tables
on chip only (a ``memory`` preset's event-driven schedule and the accelerator top, ``rays=``, model the
MLP engines) and the array from the preset's ``hadamard`` section or ``flows/configs/had-inr.yaml``
(``sim.mapping.hadamard_base``); the clock is the accelerator's.

**The top.** ``hw.top.AcceleratorTop`` (rays in, pixels out) is the engines plus the renderer's units
and glue, and the assumption above was not exact: (1) a requantizer sits between the encoder and the
density engine, which sees a vector ``RequantParams.LATENCY`` = 4 cycles after the encoder's output
transfer instead of the FIFO's 1; (2) the density engine's outputs go through the density fork and
the SH pairing into the colour engine's input register in the same cycle (no FIFO: one cycle less);
(3) after the colour engine, the colour activation (``ActivationParams.LATENCY`` = 3) and the
compositor, whose pixel leaves ``CompositorParams.LATENCY`` = 11 cycles after the ray's last token;
(4) per ray: the compositor takes one token per cycle, a sample or, for a ray without samples, a
background token, so rays without samples after the last sample add one cycle each (the others fit
between samples), and the SH pairing drops one ray without samples per cycle. At full rate (every ray
and sample offered at cycle 0, pixels always ready) ``top_transfer_cycles`` gives every sample's
cycles and every pixel's: the engines' stall-free chain as above with those couplings
(``o_d = k max(G, T_d) + G + 7 + 4 + T_d + 6``, ``o_c = k max(G, T_d, T_c) + o_d(0) + T_c + 6``, the
compositor's sample transfer ``o_c + 3``), then the compositor's tokens ``t_i = max(t_{i-1} + 1, b_i)``
(b_i a sample's transfer, or ray j's header ``j + 2`` for a ray without samples) and each pixel at its
ray's last token + 11; frame cycles = last pixel + 1, i.e. ``o_c(N - 1) + 3 + E + 12`` with E the
rays without samples after the last sample. Exact, every sample's and every pixel's cycle
(``tests/test_perf.py`` against ``sim.tlm.top.TopTLM``), while the SH pairing holds each sample's ray
before the colour engine can take it: the rays without samples before the first sample are dropped
(one per cycle, ``TOP_PAIRING_LATENCY`` after each ray's transfer) by the first colour offer, those
between two consecutive samples within the bottleneck's interval less 2, and the ray FIFO
(``TopParams.RAY_FIFO_DEPTH``) holds the rays from that of sample k - 4 to that of sample k. The result
says whether a frame meets these (``exact``); otherwise its figure is a lower bound (long runs of rays
without samples make the colour engine wait for the SH pairing, about one cycle per such ray).

**Tables in DRAM.** A preset with a ``memory`` section (``flows/accel/default.yaml``) runs
``hw.hash_encoder_axi``: the tables are bit-packed at each level's ``hash.levelNN`` width in DRAM
behind a per-level cache, so table bits change hits, DRAM traffic and the encoder's stalls, which
depend on where the samples are. ``frame_perf`` then needs the frame's sample positions (``workload``,
``nerf.render.sample_positions``) and costs them with the exact event-driven model
``sim.memory.frame.memory_frame_perf``; the result adds per-level hits, misses and hit rates, DRAM
bytes, requests, row outcomes and stall cycles, and the bottleneck may be ``memory`` (the encoder's
stall cycles exceed its issue cycles). Without a workload it raises: an on-chip answer would be silently
wrong. ``flows/accel/onchip.yaml`` is the same accelerator with the tables on chip (the model above).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from nerf.layout import model_layout
from hw.activation.params import ActivationParams
from hw.compositor.params import CompositorParams
from hw.params import ConfigError
from hw.requant.params import RequantParams
from hw.sh_unit.params import ShUnitParams
from hw.top.params import TopParams
from sim.mapping import (ACCEL_DIR, DATAPATHS, ENCODER, ENCODER_EXTRA_LATENCY, MLP_EXTRA_LATENCY, AcceleratorPreset,
                         check_bits, check_datapath, encoder_params, hadamard_layers, load_accelerator, mlp_layers)
from sim.tlm.mlp_engine import vector_cycles

# AcceleratorPreset, load_accelerator, ACCEL_DIR, encoder_params, mlp_layers and ENCODER_EXTRA_LATENCY
# live in sim.mapping (the accelerator mapping); they stay importable from here.
__all__ = ["AcceleratorPreset", "load_accelerator", "mlp_layers", "encoder_params", "frame_perf", "FramePerf",
           "ACCEL_DIR", "ENCODER_EXTRA_LATENCY", "MLP_EXTRA_LATENCY", "INTER_ENGINE_FIFO", "transfer_cycles",
           "workload_codes", "mlp_cycles", "memory_result", "top_transfer_cycles", "TOP_RAY_TO_TOKEN",
           "TOP_PAIRING_LATENCY", "DATAPATHS"]

#: Words of each FIFO between two engines.
INTER_ENGINE_FIFO = 2


def _linear_stages(g: int, t_mlp: Mapping[str, int]) -> dict[str, tuple[int, int]]:
    """Each engine's output cycles as ``k * slope + intercept`` for sample k: {name: (slope, intercept)}.

    Args:
        g: the encoder's cycles per point G; t_mlp: each MLP engine's T, in pipeline order.

    All points wait at cycle 0, so the encoder accepts point k at ``k G`` (``sim.mapping``). With offers
    ``k s + b`` (non-decreasing) an MLP engine loads at ``l_k = max_j (b + 1 + j s + (k - j) T)
    = k max(s, T) + b + 1`` and outputs at ``l_k + T + MLP_EXTRA_LATENCY - 1 = k max(s, T) + b + T +
    MLP_EXTRA_LATENCY``.
    """
    stages = {ENCODER: (g, g + ENCODER_EXTRA_LATENCY)}
    slope, intercept = stages[ENCODER]
    for name, t in t_mlp.items():
        offer = intercept + 1  # FIFO: written at cycle e, offered from e + 1
        slope, intercept = max(slope, t), offer + t + MLP_EXTRA_LATENCY
        stages[name] = (slope, intercept)
    return stages


@dataclass
class FramePerf:
    """Performance of one frame. Cycles are clock cycles; bytes are bytes per frame."""

    samples: int
    cycles: int
    latency_ms: float
    clock_mhz: int
    engines: dict = field(default_factory=dict)  # name -> {cycles_per_sample, busy_cycles, utilization, ...}
    memory: dict = field(default_factory=dict)  # traffic, bytes per frame
    bottleneck: str = ""  # encoder, density, color, or memory (tables in DRAM: stalls > issue cycles)
    # tables in DRAM only (a preset with memory and a workload):
    levels: list = field(default_factory=list)  # per level {"accesses", "hits", "misses", "hit_rate", "resident", "bits"}
    dram: dict = field(default_factory=dict)  # {"preset", "bytes", "requests", "row": {hit, closed, conflict}, "stall_cycles", "stall_share"}
    workload: dict = field(default_factory=dict)  # {"points", "scale", "note"}: what the statistics were measured on
    # with rays (the accelerator top): {"rays", "empty_rays", "exact", "added_cycles": the cycles after the colour
    # engine's last output (colour activation 3, compositor 11, one per ray without samples after the last sample)}
    renderer: dict = field(default_factory=dict)
    datapath: str = "mlp"  # the MLP layers' datapath: "mlp" (bit-serial MLP engines) or "hadamard" (DHQ)

    def to_dict(self) -> dict:
        out = {"samples": self.samples, "cycles": self.cycles, "latency_ms": self.latency_ms,
               "clock_mhz": self.clock_mhz, "bottleneck": self.bottleneck, "engines": self.engines,
               "memory": self.memory, "fifo_depth": INTER_ENGINE_FIFO}
        if self.dram:
            out.update(levels=self.levels, dram=self.dram, workload=self.workload)
        if self.renderer:
            out["renderer"] = self.renderer
        if self.datapath != "mlp":
            out["datapath"] = self.datapath
        return out


#: The accelerator top (``hw.top``): cycles from a ray's transfer into the top to the earliest token of a
#: ray without samples at the compositor: the ray FIFO (one cycle from write to read) and the compositor's
#: header queue (``HEADER_CYCLES``).
TOP_RAY_TO_TOKEN = 1 + CompositorParams.HEADER_CYCLES


#: The accelerator top: cycles from a ray's transfer to the first cycle the SH pairing can hold it (the SH
#: unit's latency, then the pairing's take).
TOP_PAIRING_LATENCY = ShUnitParams().latency + 1


def top_transfer_cycles(preset: AcceleratorPreset, arch: Mapping, policy: Mapping[str, int], counts) -> dict:
    """The accelerator top (``hw.top``, rays in, pixels out) at full rate: every ray and sample offered at
    cycle 0, the pixels always ready. Exact (``tests/test_perf.py`` checks it against ``sim.tlm.top.TopTLM``,
    every sample's and every pixel's cycle) while the renderer keeps up (module doc, "The top").

    Args:
        counts: int (R,), the frame's samples per ray, in ray order (0: a ray without samples).

    Returns:
        ``{"encoder", "density", "color", "join"}``: int64 (N,), each sample's output transfer at the
        encoder, the density and the colour engine and its transfer into the compositor; ``"pixels"``: int64
        (R,), each ray's pixel transfer; ``"cycles"``: the last pixel transfer + 1 (0 for no rays);
        ``"exact"``: whether the rays meet the conditions under which these are exact (module doc, "The top");
        otherwise they are a lower bound (the SH pairing or the ray splitter makes the colour engine wait).
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 1 or (counts < 0).any():
        raise ValueError(f"counts must be a 1-D array of non-negative sample counts, not {counts!r}")
    enc = encoder_params(preset, arch)
    t_mlp = {name: vector_cycles(preset.mlp, ls) for name, ls in mlp_layers(policy, arch, preset.mlp).items()}
    g, t_d, t_c = enc.groups, t_mlp["density"], t_mlp["color"]
    n, rays = int(counts.sum()), len(counts)
    k = np.arange(n, dtype=np.int64)
    # encoder -> requant -> density engine: offered when the requant's output is valid (no FIFO between)
    e0 = g + ENCODER_EXTRA_LATENCY
    d_slope, d0 = max(g, t_d), e0 + RequantParams.LATENCY + t_d + MLP_EXTRA_LATENCY
    # density engine -> (fork, SH pairing) -> colour engine in the same cycle; colour activation -> join
    c_slope, c0 = max(d_slope, t_c), d0 + t_c + MLP_EXTRA_LATENCY
    out = {"encoder": k * g + e0, "density": k * d_slope + d0, "color": k * c_slope + c0}
    out["join"] = out["color"] + ActivationParams.LATENCY
    # the compositor's tokens, one per cycle at most: each sample at its join, each ray without samples as
    # soon as its header is there (ray j offered at cycle j) and the token before it has passed:
    # t_i = max(t_{i-1} + 1, b_i), i.e. t_i = i + max_{m <= i} (b_m - m)
    ray_of_token = np.repeat(np.arange(rays), np.maximum(counts, 1))
    empty = counts[ray_of_token] == 0
    b = np.empty(len(ray_of_token), dtype=np.int64)
    b[~empty] = out["join"]
    b[empty] = ray_of_token[empty] + TOP_RAY_TO_TOKEN
    i = np.arange(len(b), dtype=np.int64)
    tokens = np.maximum.accumulate(b - i) + i if len(b) else b
    last = np.cumsum(np.maximum(counts, 1)) - 1
    out["pixels"] = tokens[last] + CompositorParams.LATENCY
    out["cycles"] = int(out["pixels"][-1]) + 1 if rays else 0
    out["exact"] = _renderer_keeps_up(counts, out["density"][0] if n else 0, c_slope)
    return out


def _renderer_keeps_up(counts: np.ndarray, first_offer: int, slope: int) -> bool:
    """Whether the rays let the SH pairing hold each sample's ray before the colour engine can take the sample
    (module doc, "The top"): (a) the pairing has dropped the rays without samples before the first sample
    (one per cycle, each ray's SH codes ``TOP_PAIRING_LATENCY`` cycles after it entered the top); (b) it drops
    those between two consecutive samples within the bottleneck's interval; (c) the ray FIFO and the
    compositor's header queue hold every ray from that of sample k - 4 (still before the compositor) to that of
    sample k, so the splitter never waits for the compositor."""
    n = int(counts.sum())
    if n == 0:
        return True
    ray = np.repeat(np.arange(len(counts)), counts)
    if int(ray[0]) + TOP_PAIRING_LATENCY > first_offer:
        return False
    gaps = np.diff(ray) - 1
    if len(gaps) and int(gaps.max()) > slope - 2:
        return False
    lag = ray - ray[np.maximum(np.arange(n) - 4, 0)]
    return bool(lag.max() <= TopParams.RAY_FIFO_DEPTH)


def transfer_cycles(preset: AcceleratorPreset, arch: Mapping, policy: Mapping[str, int], samples: int) -> dict:
    """Output cycle of every sample at each engine: {"encoder", "density", "color"}: int64 (samples,)."""
    enc = encoder_params(preset, arch)
    layers = mlp_layers(policy, arch, preset.mlp)
    stages = _linear_stages(enc.groups, {name: vector_cycles(preset.mlp, ls) for name, ls in layers.items()})
    k = np.arange(samples, dtype=np.int64)
    return {name: k * slope + intercept for name, (slope, intercept) in stages.items()}


def workload_codes(workload, coord_bits: int) -> np.ndarray:
    """int64 (N, 3) fixed-point codes of a workload: float positions in [0, 1)^3 go through
    ``sim.tlm.hash_encoder.to_fixed``; an integer array is taken as codes already."""
    from sim.tlm.hash_encoder import to_fixed

    w = np.asarray(workload)
    if w.ndim != 2 or w.shape[1] != 3:
        raise ValueError(f"workload must have shape (N, 3), not {w.shape}")
    if np.issubdtype(w.dtype, np.integer):
        return np.ascontiguousarray(w, dtype=np.int64)
    return to_fixed(w, coord_bits)


def mlp_cycles(preset: AcceleratorPreset, arch: Mapping, policy: Mapping[str, int], *, datapath: str = "mlp",
               rotations: Mapping[str, tuple[bool, bool]] | None = None) -> dict[str, int]:
    """Each MLP's cycles per vector under ``policy``, in pipeline order: the MLP engine's T (``datapath``
    "mlp"), or with "hadamard" the largest T of its chain of per-layer engines (module doc, "DHQ"), with
    ``rotations`` as ``sim.mapping.hadamard_layers``.

    Raises:
        ValueError: an unknown datapath (naming it); rotations with the "mlp" datapath.
    """
    if _datapath(datapath, rotations) == "hadamard":
        return {name: max(ly["cycles"] for ly in ls)
                for name, ls in hadamard_layers(policy, arch, preset, rotations).items()}
    return {name: vector_cycles(preset.mlp, ls) for name, ls in mlp_layers(policy, arch, preset.mlp).items()}


def _datapath(datapath, rotations) -> str:
    check_datapath(datapath)
    if datapath == "mlp" and rotations is not None:
        raise ValueError("rotations place DHQ's Hadamard transforms: they need datapath 'hadamard', not 'mlp'")
    return datapath


def _chain_stages(g: int, chains: Mapping[str, list[tuple[int, int]]]) -> dict[str, tuple[int, int]]:
    """``_linear_stages`` for engines that are chains of stages: {MLP: [(T, latency less T), ...]} (module doc,
    "DHQ"); each MLP's (slope, intercept) is that of its last stage's outputs."""
    stages = {ENCODER: (g, g + ENCODER_EXTRA_LATENCY)}
    slope, intercept = stages[ENCODER]
    for name, chain in chains.items():
        for t, extra in chain:
            offer = intercept + 1  # FIFO: written at cycle e, offered from e + 1
            slope, intercept = max(slope, t), offer + t + extra
        stages[name] = (slope, intercept)
    return stages


def _hadamard_frame(preset: AcceleratorPreset, arch: Mapping, policy: Mapping[str, int], samples: int,
                    rotations) -> FramePerf:
    """``frame_perf`` with DHQ's per-layer datapaths (module doc, "DHQ"); tables on chip, no rays."""
    layout = model_layout(arch)
    enc = encoder_params(preset, arch)
    layers = hadamard_layers(policy, arch, preset, rotations)
    per_sample = {ENCODER: enc.groups, **{name: max(ly["cycles"] for ly in ls) for name, ls in layers.items()}}
    stages = _chain_stages(enc.groups, {name: [(ly["cycles"], ly["latency_extra"]) for ly in ls]
                                        for name, ls in layers.items()})
    slope, intercept = stages[list(layers)[-1]]
    cycles = (samples - 1) * slope + intercept + 1 if samples else 0
    engines = {name: {"cycles_per_sample": ii, "busy_cycles": ii * samples,
                      "utilization": round(ii * samples / cycles, 6) if cycles else 0.0}
               for name, ii in per_sample.items()}
    for name, ls in layers.items():
        engines[name]["layers"] = [{**ly, "utilization": round(ly["cycles"] * samples / cycles, 6) if cycles else 0.0}
                                   for ly in ls]

    def weight_read_bits(ly):  # per vector: one R x C word of weight_bits per issue cycle, or every bit-plane
        if ly["engine"] == "hadamard":
            return ly["cycles"] * ly["rows"] * ly["cols"] * ly["weight_bits"]
        return ly["in_size"] * ly["out_size"] * ly["weight_bits"]

    streams = _stream_bytes(layout, policy, samples)
    memory = {
        "hash_table_reads": streams["hash_table_reads"],
        "weight_reads": {name: math.ceil(samples * sum(map(weight_read_bits, ls)) / 8) for name, ls in layers.items()},
        "activation_streams": streams["activation_streams"],
    }
    return FramePerf(samples=samples, cycles=cycles, latency_ms=cycles / (preset.clock_mhz * 1e3),
                     clock_mhz=preset.clock_mhz, engines=engines, memory=memory,
                     bottleneck=max(per_sample, key=per_sample.get), datapath="hadamard")


def _stream_bytes(layout, policy: Mapping[str, int], samples: int) -> dict:
    """Per frame, bytes: ``hash_table_reads`` (8 corners of F features per level per sample) and the
    ``activation_streams`` between the units (encoder -> density MLP -> colour MLP -> out)."""
    table_read_bits = sum(8 * layout.features * policy[name] for name in layout.hash_components)  # 8 corners
    geo = layout.layers["color.l0"].input_sizes[0]  # the geometry features of density.l1.out sent on
    act_bits = {"encoder_to_density": layout.encoder_out * policy["enc.out"],
                "density_to_color": geo * policy["density.l1.out"],
                "color_out": layout.activations["color.out"] * policy["color.out"]}
    return {"hash_table_reads": math.ceil(samples * table_read_bits / 8),
            "activation_streams": {name: math.ceil(samples * bits / 8) for name, bits in act_bits.items()}}


def _check_policy(preset: AcceleratorPreset, arch: Mapping, policy: Mapping[str, int]) -> None:
    for name in model_layout(arch).hash_components:
        check_bits(policy, name, preset.feature_bits, "hash_encoder.feature_bits")


def memory_result(preset: AcceleratorPreset, arch: Mapping, policy: Mapping[str, int], m, *, samples: int,
                  points: int, every: int = 1) -> FramePerf:
    """``FramePerf`` of a ``sim.memory.frame.MemoryFramePerf`` ``m`` measured on ``points`` workload points
    (``memory_frame_perf`` or ``policy_perf``), scaled to ``samples`` when the workload is a subset."""
    from sim.memory.frame import _scale

    if samples < points:
        raise ValueError(f"the workload holds {points} points, more than the frame's samples = {samples}")
    scale = samples / points if points else 0.0
    if samples != m.samples:
        m = _scale(m, samples)
    layout = model_layout(arch)
    layers = mlp_layers(policy, arch, preset.mlp)
    enc = encoder_params(preset, arch)
    per_sample = {ENCODER: enc.groups, **{name: vector_cycles(preset.mlp, ls) for name, ls in layers.items()}}
    cycles = int(m.cycles)
    engines = {}
    for name, ii in per_sample.items():
        busy = m.engines[name]["busy_cycles"]
        engines[name] = {"cycles_per_sample": ii, "busy_cycles": busy,
                         "utilization": round(busy / cycles, 6) if cycles else 0.0}
    engines[ENCODER].update(issue_cycles=m.engines[ENCODER]["issue_cycles"],
                            stall_cycles=m.engines[ENCODER]["stall_cycles"])
    for name in layers:
        engines[name]["layers"] = layers[name]
    weight_bits = {name: sum(ly["in_size"] * ly["out_size"] * ly["weight_bits"] for ly in ls)
                   for name, ls in layers.items()}
    streams = _stream_bytes(layout, policy, samples)
    memory = {
        "hash_table_reads": streams["hash_table_reads"],  # from the on-chip caches
        "dram_bytes": int(m.dram_bytes),
        "weight_reads": {name: math.ceil(samples * bits / 8) for name, bits in weight_bits.items()},
        "activation_streams": streams["activation_streams"],
    }
    dram = {"preset": preset.memory.dram, "bytes": int(m.dram_bytes), "requests": int(m.requests),
            "row": dict(m.row), "stall_cycles": int(m.stall_cycles),
            "stall_share": round(m.stall_cycles / cycles, 6) if cycles else 0.0}
    if points == samples and every == 1:
        note = "exact on the workload"
    else:
        parts = []
        if every > 1:
            parts.append(f"estimate from every {every}th chunk of the workload")
        if points != samples:
            parts.append(f"the workload's {points} points stand for the frame's {samples}: counts and cycles "
                         f"scaled by {scale:.4f}, hit rates and the bottleneck are the workload's")
        note = "; ".join(parts)
    return FramePerf(samples=samples, cycles=cycles, latency_ms=cycles / (preset.clock_mhz * 1e3),
                     clock_mhz=preset.clock_mhz, engines=engines, memory=memory, bottleneck=m.bottleneck,
                     levels=[dict(lv) for lv in m.levels], dram=dram,
                     workload={"points": points, "scale": round(scale, 6), "every": every, "note": note})


def frame_perf(preset: AcceleratorPreset, arch: Mapping, policy: Mapping[str, int], *, samples: int,
               workload=None, every: int = 1, rays=None, datapath: str = "mlp",
               rotations: Mapping[str, tuple[bool, bool]] | None = None) -> FramePerf:
    """Cycles, latency, per-engine utilization and memory traffic of one frame of ``samples`` points.

    Returns:
        ``FramePerf``: cycles (last colour output + 1), latency_ms at the preset's clock, per engine
        cycles_per_sample / busy_cycles / utilization (busy / frame cycles), memory traffic in bytes
        per frame (hash-table reads, weight bit-plane reads, inter-engine streams), the bottleneck.

    Args:
        preset: the hardware preset.
        arch: the model's architecture dict (``nerf.model.InstantNGP.arch``).
        policy: component -> bits (``quant.policy`` names); every bit must fit the engines.
        samples: field evaluations in the frame (rays x samples per ray after empty-space skipping).
        workload: tables in DRAM (a preset with ``memory``) only, and required there: the frame's sample
            positions in accelerator order, float (N, 3) in [0, 1)^3 (``nerf.render.sample_positions``)
            or int fixed-point codes. N <= ``samples``; with N < ``samples`` the workload stands for a
            subset of the frame, and cycles, bytes and counts are scaled to ``samples`` (the result's
            ``workload["note"]`` says so). With N = ``samples`` the result is exact
            (``sim.memory.frame.memory_frame_perf``).
        every: > 1: ``memory_frame_perf``'s chunk-subset estimate (its docstring gives the error).
        rays: tables on chip only: the frame's samples per ray, int (R,) in ray order, summing to
            ``samples``: the cycles are then the accelerator top's (``hw.top``, rays in, pixels out:
            ``top_transfer_cycles``), and the result's ``renderer`` says how many rays, how many without
            samples, the cycles the renderer adds after the colour engine's last output and whether the
            figure is exact (module doc, "The top"). Without it, the cycles are the engines' pipeline's.
        datapath: the MLP layers' datapath, "mlp" (default: the two bit-serial MLP engines) or "hadamard"
            (DHQ: one engine per layer, module doc "DHQ"; tables on chip, no ``rays``). With "hadamard"
            each MLP's engine entry has ``cycles_per_sample`` its chain's slowest T and ``layers`` each
            layer's datapath, T and utilization (``sim.mapping.hadamard_layers``).
        rotations: "hadamard" only: layer -> (rotate_weight, rotate_act) (``quant.hadamard``'s placements);
            None: every layer rotates both.

    Raises:
        ConfigError: a policy bitwidth the engines cannot run, or a hash-table width above the
            preset's ``feature_bits``; a preset with memory and no workload; rays with a memory preset.
        ValueError: a workload of more points than ``samples``, or not (N, 3) in [0, 1); rays that do
            not sum to ``samples``; an unknown datapath (naming it), rotations with "mlp".
        ConfigError (datapath "hadamard"): a memory preset or rays; a layer the datapath cannot run
            (``sim.mapping.hadamard_layers``: input-only rotation, widths).
    """
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 0:
        raise ValueError(f"samples must be a non-negative integer, not {samples!r}")
    samples = int(samples)
    layout = model_layout(arch)
    _check_policy(preset, arch, policy)
    if _datapath(datapath, rotations) == "hadamard":
        if preset.memory is not None:
            raise ConfigError(f"hardware preset {preset.name!r} keeps the hash tables in DRAM, whose frame model "
                              "schedules the bit-serial MLP engines; the Hadamard datapath (DHQ) is modelled with the "
                              "tables on chip: use the on-chip preset 'onchip'")
        if rays is not None:
            raise ConfigError("the accelerator top (rays=) is built with the bit-serial MLP engines, not the Hadamard "
                              "datapath (DHQ)")
        if workload is not None:
            raise ConfigError(f"hardware preset {preset.name!r} keeps the hash tables on chip; a workload changes "
                              "nothing")
        return _hadamard_frame(preset, arch, policy, samples, rotations)
    if preset.memory is not None:
        if rays is not None:
            raise ConfigError(f"hardware preset {preset.name!r} keeps the hash tables in DRAM; the accelerator top "
                              "(rays=) has them on chip: use the on-chip preset 'onchip'")
        if workload is None:
            raise ConfigError(f"hardware preset {preset.name!r} keeps the hash tables in DRAM, so a frame's latency "
                              "depends on where its samples are: pass workload= (nerf.render.sample_positions), or "
                              "use the on-chip preset 'onchip'")
        from sim.memory.frame import memory_frame_perf

        enc = encoder_params(preset, arch, policy)
        codes = workload_codes(workload, enc.coord_bits)
        if len(codes) > samples:
            raise ValueError(f"the workload holds {len(codes)} points, more than the frame's samples = {samples}")
        m = memory_frame_perf(enc, codes, dram=preset.dram_timing(), mlp_T=mlp_cycles(preset, arch, policy),
                              every=every)
        return memory_result(preset, arch, policy, m, samples=samples, points=len(codes), every=every)
    if workload is not None:
        raise ConfigError(f"hardware preset {preset.name!r} keeps the hash tables on chip; a workload changes nothing")
    enc = encoder_params(preset, arch)
    layers = mlp_layers(policy, arch, preset.mlp)
    per_sample = {ENCODER: enc.groups, **{name: vector_cycles(preset.mlp, ls) for name, ls in layers.items()}}
    last = list(layers)[-1]
    slope, intercept = _linear_stages(enc.groups, {n: per_sample[n] for n in layers})[last]
    cycles = (samples - 1) * slope + intercept + 1 if samples else 0
    renderer = {}
    if rays is not None:
        counts = np.asarray(rays)
        if counts.ndim != 1 or not np.issubdtype(counts.dtype, np.integer) or int(counts.sum()) != samples:
            raise ValueError(f"rays must be the frame's samples per ray, summing to samples = {samples}, not "
                             f"{counts.dtype} {counts.shape} summing to {int(counts.sum()) if counts.size else 0}")
        top = top_transfer_cycles(preset, arch, policy, counts)
        cycles = top["cycles"]
        colour_done = int(top["color"][-1]) + 1 if samples else 0
        renderer = {"rays": len(counts), "empty_rays": int((counts == 0).sum()), "exact": top["exact"],
                    "added_cycles": cycles - colour_done}
    engines = {name: {"cycles_per_sample": ii, "busy_cycles": ii * samples,
                      "utilization": round(ii * samples / cycles, 6) if cycles else 0.0}
               for name, ii in per_sample.items()}
    for name in layers:
        engines[name]["layers"] = layers[name]
    weight_bits = {name: sum(ly["in_size"] * ly["out_size"] * ly["weight_bits"] for ly in ls)
                   for name, ls in layers.items()}
    streams = _stream_bytes(layout, policy, samples)
    memory = {
        "hash_table_reads": streams["hash_table_reads"],
        # bit-serial engines stream every weight bit-plane once per vector from their on-chip memory
        "weight_reads": {name: math.ceil(samples * bits / 8) for name, bits in weight_bits.items()},
        "activation_streams": streams["activation_streams"],
    }
    return FramePerf(samples=samples, cycles=cycles, latency_ms=cycles / (preset.clock_mhz * 1e3),
                     clock_mhz=preset.clock_mhz, engines=engines, memory=memory,
                     bottleneck=max(per_sample, key=per_sample.get), renderer=renderer)

