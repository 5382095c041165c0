"""The Hadamard datapath's cycles for an image INR, from the TLM (``make inr``'s ``datapath`` section).

Each linear layer (in -> out) of the SIREN runs on its own ``hadamard`` engine with n =
``padded_size(in)`` and m = out; the array (R x C, C capped at n), the multiplier and the clock come
from a hardware preset (default ``flows/configs/had-inr.yaml``). Cycles come from ``sim.tlm.hadamard``:
its closed forms, which its tests prove equal to the cycle-stepped schedule and the RTL, and a short
``HadamardTLM.run`` per layer that measures the initiation interval directly as a cross-check.

Per layer and activation width a (bits): ``T = ceil(m / R) * (n / C) * a`` cycles per vector, the
latency ``log2 n + T + 8`` and the cycles of a whole image (one vector per pixel) streamed at full
rate, ``pixels * T + log2 n + 9``. An image inferred layer by layer (each layer's engine streams every
pixel, then the next layer starts) takes the sum of those; with one engine per layer chained, the
slowest layer's T bounds the throughput (``pipeline_ii``). The scaling table gives T over n = 2 .. 128
at m = 64 for each a: linear in a and in n / C.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hw.params import HadamardConfig, HadamardParams, load_config
from sim.tlm.hadamard import HadamardTLM, stream_cycles, vector_cycles, vector_latency

__all__ = ["DEFAULT_PRESET", "layer_params", "datapath_section"]

DEFAULT_PRESET = Path(__file__).resolve().parents[1] / "configs" / "had-inr.yaml"


def layer_params(base: HadamardParams, in_features: int, out_features: int, max_bits: int) -> HadamardParams:
    """``base`` resized for one layer: n = ``quant.hadamard.padded_size(in)`` (DHQ's padding), m = out, C = min(C, n),
    R = min(R, m), weight and activation widths up to ``max_bits``.

    Raises:
        hw.params.ConfigError: a layer the engine cannot hold (in > 128, out > 256), naming the field.
    """
    from quant.hadamard import padded_size

    n = padded_size(in_features)
    return dataclasses.replace(base, n=n, out_size=out_features, cols=min(base.cols, n),
                               rows=min(base.rows, out_features), weight_bits=max(base.weight_bits, max_bits),
                               max_act_bits=max(base.max_act_bits, max_bits))


def _measured_ii(params: HadamardParams, act_bits: int, vectors: int = 6) -> int:
    """Output spacing of ``vectors`` back-to-back vectors in the cycle-stepped TLM (random codes)."""
    rng = np.random.default_rng(0)
    half = 1 << (params.in_bits - 1)
    x = rng.integers(-half, half, size=(vectors, params.n))
    w = np.zeros((params.out_size, params.n), dtype=np.int64)
    result = HadamardTLM(params, params.check_config(HadamardConfig(act_bits=act_bits)), w).run(x)
    gaps = np.diff(result.out_cycles)
    if len(set(gaps.tolist())) != 1:
        raise AssertionError(f"TLM output spacing is not constant at full rate: {gaps.tolist()}")
    return int(gaps[0])


def datapath_section(shape: Sequence[Sequence[int]], bits: Sequence[int], pixels: int, *,
                     preset: str | Path = DEFAULT_PRESET) -> dict:
    """The ``datapath`` section of the INR summary (module doc).

    Args:
        shape: ``[[in, out], ...]`` of the model's linear layers (``Siren.shape``).
        bits: the activation widths a to report (bits), each in [2, 16].
        pixels: vectors per image (H * W).
        preset: a hardware preset YAML with a ``hadamard`` section (array size, multiplier, clock).

    Returns:
        ``{"preset", "array": {rows, cols, clock_mhz}, "formula", "layers": [{in, out, n, m, rows, cols,
        "per_bits": {a: {cycles_per_vector, latency_cycles, measured_ii, image_cycles}}}],
        "per_bits": {a: {layer_by_layer_cycles, layer_by_layer_ms, pipeline_ii}}, "scaling": {"m", "n",
        "cycles_per_vector": {a: [T for each n]}}}`` (cycles, milliseconds at the preset's clock).
    """
    base = load_config(preset)["hadamard"]
    top = max(bits)
    layers, totals = [], {}
    per_layer = [layer_params(base, i, o, top) for i, o in shape]
    for (i, o), p in zip(shape, per_layer):
        entry = {"in": i, "out": o, "n": p.n, "m": p.out_size, "rows": p.rows, "cols": p.cols, "per_bits": {}}
        for a in bits:
            t = vector_cycles(p, a)
            entry["per_bits"][str(a)] = {"cycles_per_vector": t, "latency_cycles": vector_latency(p, a),
                                         "measured_ii": _measured_ii(p, a),
                                         "image_cycles": stream_cycles(p, a, pixels)}
        layers.append(entry)
    for a in bits:
        total = sum(layer["per_bits"][str(a)]["image_cycles"] for layer in layers)
        totals[str(a)] = {"layer_by_layer_cycles": total, "layer_by_layer_ms": round(base.cycles_to_ms(total), 3),
                          "pipeline_ii": max(layer["per_bits"][str(a)]["cycles_per_vector"] for layer in layers)}
    ns = [2**k for k in range(1, 8)]
    scaling = {str(a): [vector_cycles(layer_params(base, n, 64, top), a) for n in ns] for a in bits}
    return {
        "preset": Path(preset).stem,
        "array": {"rows": base.rows, "cols": base.cols, "clock_mhz": base.clock_mhz},
        "formula": "T = ceil(m / R) * (n / C) * a cycles per vector; latency log2 n + T + 8; "
                   "pixels * T + log2 n + 9 per image (sim.tlm.hadamard)",
        "pixels": pixels,
        "layers": layers,
        "per_bits": totals,
        "scaling": {"m": 64, "n": ns, "cycles_per_vector": scaling},
    }
