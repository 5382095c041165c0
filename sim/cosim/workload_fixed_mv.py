"""The fixed-point matrix-vector engine's co-simulation workload: random output shifts, weights, biases, vectors,
gaps and output stalls; the workload part of a co-simulation job and the engine's summary lines (pure NumPy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.fixed_mv.params import FixedMvConfig, FixedMvParams
from sim.cosim.traffic import offer_cycles, phased_workload, ready_pattern
from sim.cosim.workload_hadamard import job_workload  # noqa: F401  (the same vectors-and-phases job)
from sim.tlm import fixed_mv as fmv
from sim.tlm.transfers import pack_vector

__all__ = ["FixedMvPhase", "random_fixed_mv_workload", "count_ties", "job_workload", "summary_lines"]


@dataclass(frozen=True)
class FixedMvPhase:
    """One configuration of the engine and the vectors streamed through it.

    Attributes:
        cfg: the run-time setting (valid for the params).
        weights: int64 (m, n), signed data_bits codes.
        bias: (m,) signed ``bias_bits`` codes (int64, or object where they exceed it; zeros in some phases).
        inputs: int64 (N, n), input vectors.
        in_payloads: N input payloads (``pack_vector`` of the inputs, ``data_bits`` per element).
        offer_cycles: int64 (N,), earliest cycle each vector is offered (non-decreasing).
        ready: bool (R,), output ready per cycle; cycles >= R are ready.
        weight_words: ``(row_tile, col_tile, data)`` for the ``weights`` port (``weight_writes``; after phase 0
            with random codes in the rows past m and the columns past n).
        bias_words: ``(row_tile, data)`` for the ``bias`` port.
    """

    cfg: FixedMvConfig
    weights: np.ndarray
    bias: np.ndarray
    inputs: np.ndarray
    in_payloads: list[int]
    offer_cycles: np.ndarray
    ready: np.ndarray
    weight_words: list[tuple[int, int, int]]
    bias_words: list[tuple[int, int]]


def count_ties(v, shift: int) -> int:
    """How many of v (int64 or Python ints) lie exactly halfway between two multiples of 2^shift (0 for shift
    0): the cases where round-half-to-even differs from round-half-up."""
    if shift == 0:
        return 0
    return int(sum(int(a) & ((1 << shift) - 1) == 1 << (shift - 1) for a in np.asarray(v).ravel()))


def _randint(rng, lo: int, hi: int, size) -> np.ndarray:
    """Uniform integers in [lo, hi] of any size (Python ints in an object array beyond int64)."""
    if -(1 << 62) <= lo and hi < 1 << 62:
        return rng.integers(lo, hi + 1, size=size, dtype=np.int64)
    span = hi - lo + 1
    words = -(-span.bit_length() // 62) + 1
    flat = [lo + sum(int(rng.integers(0, 1 << 62)) << (62 * k) for k in range(words)) % span
            for _ in range(int(np.prod(size)))]
    return np.array(flat, dtype=object).reshape(size)


def random_fixed_mv_workload(
    params: FixedMvParams,
    vectors: int,
    seed: int,
    *,
    phases: int = 3,
    idle: bool = True,
    backpressure: bool = True,
) -> list[FixedMvPhase]:
    """Random configurations of the engine, each with random vectors, gaps and output stalls.

    Per phase: weights in the full signed range with both extremes present (phase 0: row 0 all at the minimum,
    so that the first vector, all minimum, reaches the accumulator's largest value n * 2^(2d-2)); a bias (or
    zeros, 30 %) at the dot products' scale, with the two extremes of ``bias_bits`` in rows 0 and m - 1 in
    phase 1; S_o chosen so that a typical accumulator (75th percentile) lands at 0.4..1.5 times the output
    limit, so that most results do not clamp and some do. The first two vectors of every phase hold the
    smallest and the largest input everywhere. Every third phase (phase 2, 5, ...) is a *ties* phase: inputs
    and weights in [-2, 1], no bias, S_o 1 or 2, so that many accumulators are exact ties and
    round-half-to-even shows (``count_ties``). After phase 0 the padding of the weight tiles (rows past m,
    columns past n) carries random codes. Input gaps: the next vector at once (60 %) or 1..2T cycles later;
    output ready: segments of 1..3T cycles always ready, ready with probability 0.5, or stalled.

    Args:
        params: engine parameters.
        vectors: N >= phases, split as evenly as possible over the phases.
        seed: NumPy seed; the same seed gives the same workload.
        phases: configurations, each written while the engine is idle.
        idle: False makes every vector available at cycle 0 of its phase (no input gaps).
        backpressure: False makes the output always ready.
    """
    phased_workload(vectors, phases, "vector")
    p = params
    rng = np.random.default_rng(seed)
    half = 1 << (p.data_bits - 1)
    bias_half = 1 << (p.bias_bits - 1)
    out_limit = (1 << (p.out_bits - 1)) - 1
    out = []
    for k in range(phases):
        count = vectors // phases + (k < vectors % phases)
        ties = k % 3 == 2
        lo, hi = (-2, 1) if ties else (-half, half - 1)
        x = rng.integers(lo, hi + 1, size=(count, p.n), dtype=np.int64)
        x[0] = -half
        if count > 1:
            x[1] = half - 1
        w = rng.integers(lo, hi + 1, size=(p.out_size, p.n), dtype=np.int64)
        w.flat[rng.integers(0, w.size)] = -half
        w.flat[rng.integers(0, w.size)] = half - 1
        if k == 0:
            w[0] = -half
        acc = fmv.reference_forward(p, FixedMvConfig(shift_o=0), w, None, x)[0]
        bias = np.zeros(p.out_size, dtype=np.int64)
        if not ties and (k == 1 or rng.random() < 0.7):
            scale = min(bias_half - 1, max(1, max(abs(int(a)) for a in acc.ravel())))
            bias = _randint(rng, -scale, scale, p.out_size)
            if k == 1:
                bias = np.array([int(b) for b in bias], dtype=object)
                bias[0], bias[-1] = -bias_half, bias_half - 1
        typical = acc[2:] if count > 2 else acc
        peak = max(1.0, float(np.percentile(np.abs((typical + bias[None, :]).astype(float)), 75)))
        if ties:
            shift = int(rng.integers(1, 3))
        else:
            target = out_limit * rng.uniform(0.4, 1.5)
            shift = int(np.clip(round(np.log2(peak / target)), 0, p.shift_o_max))
        cfg = FixedMvConfig(shift_o=shift)
        T = fmv.vector_cycles(p)
        offers = offer_cycles(rng, count, 2 * T) if idle else np.zeros(count, dtype=np.int64)
        horizon = int(offers[-1]) + (count + 4) * (T + 8) * 3
        ready = ready_pattern(rng, horizon, 1, 3 * T) if backpressure else np.ones(0, dtype=bool)
        words = fmv.weight_writes(p, w, padding=rng if k else None)
        out.append(FixedMvPhase(cfg, w, bias, x, [pack_vector(row, p.data_bits) for row in x], offers, ready, words,
                                fmv.bias_writes(p, bias)))
    return out


def summary_lines(s: dict) -> list[str]:
    """The engine's lines of a printed co-simulation summary: its sizes and widths, then per phase the output
    shift, the rounding ties and clamps exercised, and the cycles."""
    p = s["params"]
    lines = [f"n={p['n']} m={p['out_size']} R={p['rows']} C={p['cols']} bits data{p['data_bits']} "
             f"out{p['out_bits']}"]
    for k, ph in enumerate(s.get("phases", [])):
        lines.append(f"phase {k}: S_o={ph['cfg']['shift_o']}, {ph['vectors']} vectors, T={ph['cycles_per_vector']} "
                     f"cycles/vector, ties {ph['ties']}, clamped {ph['clamped']}; "
                     f"cycles RTL {ph['cycles_rtl']} / TLM {ph['cycles_tlm']}")
    return lines
