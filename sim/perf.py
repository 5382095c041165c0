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
  beside the density engine) keeps up and adds no cycles.

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
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from nerf.layout import model_layout
from sim.mapping import (ACCEL_DIR, ENCODER, ENCODER_EXTRA_LATENCY, MLP_EXTRA_LATENCY, AcceleratorPreset, check_bits,
                         encoder_params, load_accelerator, mlp_layers)
from sim.tlm.mlp_engine import vector_cycles

# AcceleratorPreset, load_accelerator, ACCEL_DIR, encoder_params, mlp_layers and ENCODER_EXTRA_LATENCY
# live in sim.mapping (the accelerator mapping); they stay importable from here.
__all__ = ["AcceleratorPreset", "load_accelerator", "mlp_layers", "encoder_params", "frame_perf", "FramePerf",
           "ACCEL_DIR", "ENCODER_EXTRA_LATENCY", "MLP_EXTRA_LATENCY", "INTER_ENGINE_FIFO", "transfer_cycles"]

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
    bottleneck: str = ""

    def to_dict(self) -> dict:
        return {"samples": self.samples, "cycles": self.cycles, "latency_ms": self.latency_ms,
                "clock_mhz": self.clock_mhz, "bottleneck": self.bottleneck, "engines": self.engines,
                "memory": self.memory, "fifo_depth": INTER_ENGINE_FIFO}


def transfer_cycles(preset: AcceleratorPreset, arch: Mapping, policy: Mapping[str, int], samples: int) -> dict:
    """Output cycle of every sample at each engine: {"encoder", "density", "color"}: int64 (samples,)."""
    enc = encoder_params(preset, arch)
    layers = mlp_layers(policy, arch, preset.mlp)
    stages = _linear_stages(enc.groups, {name: vector_cycles(preset.mlp, ls) for name, ls in layers.items()})
    k = np.arange(samples, dtype=np.int64)
    return {name: k * slope + intercept for name, (slope, intercept) in stages.items()}


def frame_perf(preset: AcceleratorPreset, arch: Mapping, policy: Mapping[str, int], *, samples: int) -> FramePerf:
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

    Raises:
        ConfigError: a policy bitwidth the engines cannot run, or a hash-table width above the
            preset's ``feature_bits``.
    """
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 0:
        raise ValueError(f"samples must be a non-negative integer, not {samples!r}")
    samples = int(samples)
    layout = model_layout(arch)
    for name in layout.hash_components:
        check_bits(policy, name, preset.feature_bits, "hash_encoder.feature_bits")
    enc = encoder_params(preset, arch)
    layers = mlp_layers(policy, arch, preset.mlp)
    per_sample = {ENCODER: enc.groups, **{name: vector_cycles(preset.mlp, ls) for name, ls in layers.items()}}
    last = list(layers)[-1]
    slope, intercept = _linear_stages(enc.groups, {n: per_sample[n] for n in layers})[last]
    cycles = (samples - 1) * slope + intercept + 1 if samples else 0
    engines = {name: {"cycles_per_sample": ii, "busy_cycles": ii * samples,
                      "utilization": round(ii * samples / cycles, 6) if cycles else 0.0}
               for name, ii in per_sample.items()}
    for name in layers:
        engines[name]["layers"] = layers[name]
    table_read_bits = sum(8 * layout.features * policy[name] for name in layout.hash_components)  # 8 corners
    weight_bits = {name: sum(ly["in_size"] * ly["out_size"] * ly["weight_bits"] for ly in ls)
                   for name, ls in layers.items()}
    geo = layout.layers["color.l0"].input_sizes[0]  # the geometry features of density.l1.out sent on
    act_bits = {"encoder_to_density": layout.encoder_out * policy["enc.out"],
                "density_to_color": geo * policy["density.l1.out"],
                "color_out": layout.activations["color.out"] * policy["color.out"]}
    memory = {
        "hash_table_reads": math.ceil(samples * table_read_bits / 8),
        # bit-serial engines stream every weight bit-plane once per vector from their on-chip memory
        "weight_reads": {name: math.ceil(samples * bits / 8) for name, bits in weight_bits.items()},
        "activation_streams": {name: math.ceil(samples * bits / 8) for name, bits in act_bits.items()},
    }
    return FramePerf(samples=samples, cycles=cycles, latency_ms=cycles / (preset.clock_mhz * 1e3),
                     clock_mhz=preset.clock_mhz, engines=engines, memory=memory,
                     bottleneck=max(per_sample, key=per_sample.get))

