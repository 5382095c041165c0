"""Frame-level performance model of the NeRF accelerator: cycles, latency, utilization, memory traffic.

The accelerator is a pipeline of three engines, each exactly the generated RTL that its TLM models:

    sample points -> hash encoder -> FIFO -> density MLP engine -> FIFO -> colour MLP engine -> renderer

* the hash encoder (``hw.hash_encoder``, L levels, ``lanes`` pipelines): one point every
  ``G = ceil(L / lanes)`` cycles; point k (all points waiting at cycle 0) leaves at
  ``e_k = k G + G + 7`` (``sim.tlm.hash_encoder``, issue register + 6 stages + output FIFO);
* two bit-serial MLP engines (``hw.mlp_engine``) of the same array (R x C): density 32 -> 64 -> 16
  and colour (15 + 16) -> 64 -> 64 -> 3; each costs ``T = sum_l ceil(out/R) ceil(in/C) w_l a_l + 4 (L - 1)``
  cycles per vector (``sim.tlm.mlp_engine``), its bits taken from the policy;
* between engines, synchronous FIFOs of ``INTER_ENGINE_FIFO`` = 2 words with backpressure (a word
  written at cycle t is offered from t + 1); the renderer (alpha compositing, and the SH encoding
  beside the density engine) keeps up and adds no cycles.

Each MLP engine follows the TLM's recurrence with its output always ready: vector k is loaded at
``l_k = max(offer_k + 1, l_{k-1} + T)`` and leaves at ``o_k = l_k + T + 5`` (the TLM's
``o_{k-3} + 1`` credit term never binds since T >= 4). Offers that are linear in k give linear
outputs, ``o_k = k max(s, T) + b + T + 6`` for offers ``k s + b`` (``_linear_stages``), so a frame of
any size costs O(1). The recurrence
ignores backpressure: an engine faster than its downstream is stalled by the full FIFO, but the
downstream still finds its next vector waiting whenever it can take one, so the colour engine's
transfer cycles are those of the stall-free pipeline. ``tests/test_perf.py`` checks this, every
colour-engine output cycle, against the three TLMs run back to back with 2-word FIFOs and
backpressure. Frame cycles are the colour engine's last output cycle + 1, about
``(N - 1) max(G, T_density, T_colour) + G + T_density + T_colour + 22``.

Bits: the MLP layers' weight and activation bits are the policy's (``density.l0``: ``enc.out`` x
``density.l0.weight``; ``density.l1``: ``density.l1.act_in``; ``color.l0``: the wider of
``density.l1.out`` and ``sh.out``; ``color.l1``/``color.l2``: their ``act_in``); hash-table bits
change the table memory and its read traffic, not the encoder's cycles. A component at 32 bits (full
precision) cannot run on the integer engines: ``frame_perf`` raises for it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from hw.params import ConfigError, HashEncoderParams, MlpEngineParams
from sim.tlm.mlp_engine import vector_cycles

__all__ = ["AcceleratorPreset", "load_accelerator", "mlp_layers", "encoder_params", "frame_perf", "FramePerf",
           "ACCEL_DIR", "ENCODER_EXTRA_LATENCY"]

#: Hardware presets of the accelerator (``make search HW=<name>``).
ACCEL_DIR = Path(__file__).resolve().parents[1] / "flows" / "accel"
#: Encoder: point k leaves at k G + G + ENCODER_EXTRA_LATENCY (sim.tlm.hash_encoder, all points waiting).
ENCODER_EXTRA_LATENCY = 7
#: MLP engine: a vector loaded at l leaves at l + T + MLP_OUT_DELAY (sim.tlm.mlp_engine).
MLP_OUT_DELAY = 5
#: Words of each FIFO between two engines.
INTER_ENGINE_FIFO = 2


@dataclass(frozen=True, kw_only=True)
class AcceleratorPreset:
    """A hardware preset: the engines' generate-time parameters (the model fixes the rest).

    Fields:
        name: preset name.
        lanes: hash-encoder lanes (pipelines), in [1, levels].
        coord_bits: hash-encoder coordinate bits C.
        feature_bits: widest hash-table entry the encoder stores (bits); a policy's table bits must fit.
        mlp: the MLP engines' parameters (both engines are generated alike).
        clock_mhz: clock of the whole accelerator (MHz), taken from ``mlp.clock_mhz``.
    """

    name: str
    lanes: int
    coord_bits: int
    feature_bits: int
    mlp: MlpEngineParams

    @property
    def clock_mhz(self) -> int:
        return self.mlp.clock_mhz


def load_accelerator(name_or_path: str | Path) -> AcceleratorPreset:
    """A preset by name (``flows/accel/<name>.yaml``) or path.

    Raises:
        ConfigError: unknown preset (listing the known ones), or a bad field (naming file, field, value).
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = ACCEL_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in ACCEL_DIR.glob("*.yaml")))
        raise ConfigError(f"unknown hardware preset {str(name_or_path)!r} (known: {known})")
    data = yaml.safe_load(path.read_text()) or {}
    allowed = {"hash_encoder": {"lanes", "coord_bits", "feature_bits"}, "mlp_engine": None}
    for key in data:
        if key not in allowed:
            raise ConfigError(f"{path}: unknown section {key!r} (allowed: hash_encoder, mlp_engine)")
    enc = data.get("hash_encoder") or {}
    for key in enc:
        if key not in allowed["hash_encoder"]:
            raise ConfigError(f"{path}: hash_encoder.{key} is not a preset field (allowed: lanes, coord_bits, "
                              "feature_bits; the model sets the rest)")
    try:
        mlp = MlpEngineParams.from_dict(data.get("mlp_engine") or {})
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    preset = AcceleratorPreset(name=path.stem, lanes=enc.get("lanes", 1), coord_bits=enc.get("coord_bits", 16),
                               feature_bits=enc.get("feature_bits", 8), mlp=mlp)
    for key in ("lanes", "coord_bits", "feature_bits"):
        value = getattr(preset, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{path}: hash_encoder.{key} must be a positive integer, not {value!r}")
    return preset


def encoder_params(preset: AcceleratorPreset, arch: Mapping) -> HashEncoderParams:
    """The hash encoder this preset generates for a model architecture (``nerf.model.ARCH_KEYS``)."""
    return HashEncoderParams(levels=arch["levels"], log2_table_size=arch["log2_table_size"],
                             features=arch["features"], feature_bits=preset.feature_bits,
                             coord_bits=preset.coord_bits, n_min=arch["n_min"], n_max=arch["n_max"],
                             lanes=min(preset.lanes, arch["levels"]))


def _check_bits(policy: Mapping[str, int], name: str, limit: int, what: str) -> int:
    bits = policy[name]
    if bits > limit:
        raise ConfigError(f"policy {name} = {bits} bits does not fit the engines' {what} = {limit} bits"
                          + (" (full precision does not run on the integer engines)" if bits == 32 else ""))
    return bits


def mlp_layers(policy: Mapping[str, int], arch: Mapping, mlp: MlpEngineParams) -> dict[str, list[dict]]:
    """The two engines' layer settings (sizes and bits) under ``policy``: {"density": [...], "color": [...]}.

    Raises:
        ConfigError: a weight or activation wider than the engine's maxima (names the component).
    """
    enc, hidden, geo = arch["levels"] * arch["features"], arch["hidden"], arch["geo_features"]
    w = lambda n: _check_bits(policy, n, mlp.max_weight_bits, "max_weight_bits")  # noqa: E731
    a = lambda n: _check_bits(policy, n, mlp.max_act_bits, "max_act_bits")  # noqa: E731
    layer = lambda i, o, wb, ab: {"in_size": i, "out_size": o, "weight_bits": wb, "act_bits": ab}  # noqa: E731
    return {
        "density": [layer(enc, hidden, w("density.l0.weight"), a("enc.out")),
                    layer(hidden, 1 + geo, w("density.l1.weight"), a("density.l1.act_in"))],
        "color": [layer(geo + 16, hidden, w("color.l0.weight"), max(a("density.l1.out"), a("sh.out"))),
                  layer(hidden, hidden, w("color.l1.weight"), a("color.l1.act_in")),
                  layer(hidden, 3, w("color.l2.weight"), a("color.l2.act_in"))],
    }


def _linear_stages(g: int, t_density: int, t_color: int) -> dict[str, tuple[int, int]]:
    """Each engine's output cycles as ``k * slope + intercept`` for sample k: {name: (slope, intercept)}.

    With offers ``k s + b`` (non-decreasing) an MLP engine loads at ``l_k = max_j (b + 1 + j s + (k - j) T)
    = k max(s, T) + b + 1`` and outputs at ``l_k + T + MLP_OUT_DELAY``.
    """
    stages = {"encoder": (g, g + ENCODER_EXTRA_LATENCY)}
    slope, intercept = stages["encoder"]
    for name, t in (("density", t_density), ("color", t_color)):
        offer = intercept + 1  # FIFO: written at cycle e, offered from e + 1
        slope, intercept = max(slope, t), offer + 1 + t + MLP_OUT_DELAY
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
    stages = _linear_stages(enc.groups, vector_cycles(preset.mlp, layers["density"]),
                            vector_cycles(preset.mlp, layers["color"]))
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
    levels = arch["levels"]
    for lv in range(levels):
        _check_bits(policy, f"hash.level{lv:02d}", preset.feature_bits, "hash_encoder.feature_bits")
    enc = encoder_params(preset, arch)
    layers = mlp_layers(policy, arch, preset.mlp)
    t_d, t_c = vector_cycles(preset.mlp, layers["density"]), vector_cycles(preset.mlp, layers["color"])
    slope, intercept = _linear_stages(enc.groups, t_d, t_c)["color"]
    cycles = (samples - 1) * slope + intercept + 1 if samples else 0
    per_sample = {"encoder": enc.groups, "density": t_d, "color": t_c}
    engines = {name: {"cycles_per_sample": ii, "busy_cycles": ii * samples,
                      "utilization": round(ii * samples / cycles, 6) if cycles else 0.0}
               for name, ii in per_sample.items()}
    for name in ("density", "color"):
        engines[name]["layers"] = layers[name]
    f = arch["features"]
    table_read_bits = sum(8 * f * policy[f"hash.level{lv:02d}"] for lv in range(levels))
    weight_bits = {name: sum(ly["in_size"] * ly["out_size"] * ly["weight_bits"] for ly in ls)
                   for name, ls in layers.items()}
    act_bits = {"encoder_to_density": levels * f * policy["enc.out"],
                "density_to_color": arch["geo_features"] * policy["density.l1.out"],
                "color_out": 3 * policy["color.out"] if policy["color.out"] != 32 else 3 * 32}
    memory = {
        "hash_table_reads": math.ceil(samples * table_read_bits / 8),
        # bit-serial engines stream every weight bit-plane once per vector from their on-chip memory
        "weight_reads": {name: math.ceil(samples * bits / 8) for name, bits in weight_bits.items()},
        "activation_streams": {name: math.ceil(samples * bits / 8) for name, bits in act_bits.items()},
    }
    return FramePerf(samples=samples, cycles=cycles, latency_ms=cycles / (preset.clock_mhz * 1e3),
                     clock_mhz=preset.clock_mhz, engines=engines, memory=memory,
                     bottleneck=max(per_sample, key=per_sample.get))

