"""The Hadamard datapath's co-simulation workload: random configurations, vectors, gaps and output
stalls; the workload part of a co-simulation job and the engine's summary lines (pure NumPy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.hadamard.params import HadamardConfig, HadamardParams
from sim.cosim.traffic import offer_cycles, phased_workload, pick as _pick, ready_pattern
from sim.tlm import hadamard as had
from sim.tlm.transfers import pack_vector

__all__ = ["HadamardPhase", "random_hadamard_workload", "count_ties", "job_workload", "summary_lines"]


@dataclass(frozen=True)
class HadamardPhase:
    """One configuration of the Hadamard datapath and the vectors streamed through it.

    Attributes:
        cfg: the run-time settings (valid for the params).
        weights: int64 (m, n), narrow signed weight codes.
        bias: int64 (m,), signed ``bias_bits`` codes (zeros in some phases).
        inputs: int64 (N, n), input vectors.
        in_payloads: N input payloads (``pack_vector`` of the inputs, ``in_bits`` per element).
        offer_cycles: int64 (N,), earliest cycle each vector is offered (non-decreasing).
        ready: bool (R,), output ready per cycle; cycles >= R are ready.
        weight_words: ``(row_tile, col_tile, data)`` for the ``weights`` port (``weight_writes``; after
            phase 0 with random codes in the rows past m).
        bias_words: ``(row_tile, data)`` for the ``bias`` port.
        mult_o: int64 (m,), the per-row output multipliers (``per_row_scales``; the configuration's
            ``mult_o`` is then a different random value, which the engine must ignore), else None.
        scale_words: ``(row_tile, data)`` for the ``scales`` port (``per_row_scales``; after phase 0
            with random multipliers in the rows past m), else empty.
    """

    cfg: HadamardConfig
    weights: np.ndarray
    bias: np.ndarray
    inputs: np.ndarray
    in_payloads: list[int]
    offer_cycles: np.ndarray
    ready: np.ndarray
    weight_words: list[tuple[int, int, int]]
    bias_words: list[tuple[int, int]]
    mult_o: np.ndarray | None = None
    scale_words: tuple[tuple[int, int], ...] = ()

    def model_args(self) -> tuple:
        """``(cfg, weights, bias, mult_o)``: the arguments of ``sim.tlm.hadamard.HadamardTLM`` after params."""
        return self.cfg, self.weights, self.bias, self.mult_o


def count_ties(v, mult, shift: int) -> int:
    """How many of ``v * mult`` lie exactly halfway between two multiples of 2^shift (0 for shift 0):
    the cases where round-half-to-even differs from round-half-up. ``mult``: an int, or an int array
    broadcast against ``v`` (per-row multipliers along the last axis)."""
    if shift == 0:
        return 0
    low = (np.asarray(v, dtype=np.int64) * mult) & ((1 << shift) - 1)
    return int((low == 1 << (shift - 1)).sum())


def _scale(rng, params: HadamardParams, values: np.ndarray, bits: int, shift_max: int, ties: bool) -> tuple[int, int]:
    """M and S such that ``rne(values * M, S)`` spans a ``bits``-bit range: a typical value (the 75th
    percentile) lands at 0.4..1.5 times the range's limit, so that most do not clamp and some do.
    ``ties``: M = 1 or 3 and S >= 1 small, so that many products are exact ties."""
    mult = int(rng.integers(0, min(2, 1 << (params.mult_bits - 1)))) * 2 + 1 if ties else \
        int(rng.integers(1 << (params.mult_bits - 1), 1 << params.mult_bits))
    peak = max(1.0, float(np.percentile(np.abs(values), 75)))
    target = max(1, (1 << (bits - 1)) - 1) * rng.uniform(0.4, 1.5)
    shift = int(np.clip(round(np.log2(peak * mult / target)), 1 if ties else 0, shift_max))
    return mult, shift


def _row_multipliers(rng, params: HadamardParams, ties: bool) -> np.ndarray:
    """Per-row M_o (``per_row_scales``; see ``random_hadamard_workload``), int64 (m,)."""
    m, mb = params.out_size, params.mult_bits
    if ties:
        return rng.integers(0, min(2, 1 << (mb - 1)), size=m, dtype=np.int64) * 2 + 1
    rows = rng.integers(1 << max(0, mb - 3), 1 << mb, size=m, dtype=np.int64)
    top, zero = rng.permutation(m)[:2] if m >= 2 else (0, None)
    rows[top] = (1 << mb) - 1
    if m >= 3:
        rows[zero] = 0
    return rows


def random_hadamard_workload(
    params: HadamardParams,
    vectors: int,
    seed: int,
    *,
    phases: int = 3,
    idle: bool = True,
    backpressure: bool = True,
) -> list[HadamardPhase]:
    """Random configurations of the Hadamard datapath, each with random vectors, gaps and output stalls.

    Per phase: act_bits (phase 0 max_act_bits, phase 1 two bits, then either end of [2, max] likely),
    weights in the narrow range with both extremes present, a bias (or zeros, 30 %), and the scales
    chosen from the transform outputs and accumulators of the random vectors so that outputs span
    their range. The first two vectors of every phase hold the smallest and the largest input
    everywhere (the transform's full growth, t_0 = -n 2^(in_bits-1); u_0 mostly clamps). Every third
    phase (phase 2, 5, ...) is a *ties* phase: inputs in [-2, 1] with odd sums (so every t is odd),
    act_bits max, M_a = 1 or 3 and S_a = 1 (every activation of the random vectors rounds from an
    exact tie), weights mostly in [-1, 1], M_o = 1 or 3 and a small S_o, so that round-half-to-even
    shows (``count_ties``). After phase 0 the rows past m of the last weight row tile carry random
    codes (the engine must drop them). Input gaps: the next vector at once (60 %) or 1..2T cycles
    later (T: cycles per vector). Output ready: segments of 1..3T cycles, always ready, ready with
    probability 0.5, or stalled, so that the output FIFO fills, loads wait for credits and the input
    sees backpressure.

    With ``per_row_scales`` each phase also draws per-row multipliers M_o[r]: in the ties phase 1 or
    3 per row, else uniform in [2^(mult_bits-3), 2^mult_bits) with one row at the largest value
    2^mult_bits - 1 and (m >= 3) one row at 0; the configuration's ``mult_o`` keeps its own random
    value, which the engine must ignore. Without it the random stream is the same as before.

    Args:
        params: engine parameters.
        vectors: N >= phases, split as evenly as possible over the phases.
        seed: NumPy seed; the same seed gives the same workload.
        phases: configurations, each written while the engine is idle.
        idle: False makes every vector available at cycle 0 of its phase (no input gaps).
        backpressure: False makes the output always ready.
    """
    phased_workload(vectors, phases, "vector")  # the checks of the job's counts
    p = params
    rng = np.random.default_rng(seed)
    half_in, lim_w = 1 << (p.in_bits - 1), (1 << (p.weight_bits - 1)) - 1
    out = []
    for k in range(phases):
        count = vectors // phases + (k < vectors % phases)
        ties = k % 3 == 2
        ab = p.max_act_bits if k == 0 or ties else 2 if k == 1 else _pick(rng, 2, p.max_act_bits)
        lo, hi = (-2, 1) if ties else (-half_in, half_in - 1)
        x = rng.integers(lo, hi + 1, size=(count, p.n), dtype=np.int64)
        if ties:  # odd sums: every t_j is odd (t_j = sum_i +-x_i), so S_a = 1 makes every product a tie
            x[:, 0] += np.where(x.sum(axis=1) % 2 == 0, np.where(x[:, 0] < hi, 1, -1), 0)
        x[0] = -half_in
        if count > 1:
            x[1] = half_in - 1
        typical = slice(2, None) if count > 2 else slice(None)  # the random vectors set the scales
        t = had.fwht(x)
        mult_a, shift_a = _scale(rng, p, t[typical], ab, p.shift_a_max, ties)
        shift_a = 1 if ties else shift_a
        u = had.requantize(t, mult_a, shift_a, ab)
        w_max = 1 if ties else lim_w
        w = rng.integers(-w_max, w_max + 1, size=(p.out_size, p.n), dtype=np.int64)
        w.flat[rng.integers(0, w.size)] = -lim_w
        w.flat[rng.integers(0, w.size)] = lim_w
        dot = u @ w.T
        bias = np.zeros(p.out_size, dtype=np.int64)
        if rng.random() < 0.7:
            bmax = (1 << (p.bias_bits - 1)) - 1
            scale = int(min(bmax, max(1, np.abs(dot[typical if ties else slice(None)]).max())))
            bias = rng.integers(-scale, scale + 1, size=p.out_size, dtype=np.int64)
        mult_o, shift_o = _scale(rng, p, (dot + bias)[typical], p.out_bits, p.shift_o_max, ties)
        cfg = HadamardConfig(act_bits=ab, mult_a=mult_a, shift_a=shift_a, mult_o=mult_o, shift_o=shift_o)
        T = had.vector_cycles(p, ab)
        offers = offer_cycles(rng, count, 2 * T) if idle else np.zeros(count, dtype=np.int64)
        horizon = int(offers[-1]) + (count + 4) * (T + p.front_cycles + 8) * 3
        ready = ready_pattern(rng, horizon, 1, 3 * T) if backpressure else np.ones(0, dtype=bool)
        words = had.weight_writes(p, w, padding=rng if k else None)
        rows, row_words = None, ()
        if p.per_row_scales:
            rows = _row_multipliers(rng, p, ties)
            row_words = tuple(had.scale_writes(p, rows, padding=rng if k else None))
        out.append(HadamardPhase(cfg, w, bias, x, [pack_vector(row, p.in_bits) for row in x], offers, ready, words,
                                 had.bias_writes(p, bias), rows, row_words))
    return out


def job_workload(params: HadamardParams, *, vectors: int = 30, phases: int | None = None, **_other) -> dict:
    """The workload part of a co-simulation job: vectors and phases (default 3), validated; other
    engines' options (points, shapes) are ignored.

    Raises:
        ValueError: fewer vectors than phases, or a count below 1.
    """
    return phased_workload(vectors, phases, "vector")


def summary_lines(s: dict) -> list[str]:
    """The engine's lines of a printed co-simulation summary: its sizes and widths, then per phase the
    settings, the rounding ties and clamps exercised, and the cycles."""
    p = s["params"]
    lines = [f"n={p['n']} m={p['out_size']} R={p['rows']} C={p['cols']} bits in{p['in_bits']} "
             f"w{p['weight_bits']} a<={p['max_act_bits']} out{p['out_bits']} mult_bits={p['mult_bits']}"]
    if p.get("per_row_scales"):
        lines[0] += " per-row M_o"
    for k, ph in enumerate(s.get("phases", [])):
        c = ph["cfg"]
        rows = ph.get("mult_o_rows")  # per-row multipliers: their range
        mult_o = c["mult_o"] if rows is None else f"[{rows[0]}..{rows[1]}]"
        lines.append(f"phase {k}: a={c['act_bits']} M_a/2^S_a={c['mult_a']}/2^{c['shift_a']} "
                     f"M_o/2^S_o={mult_o}/2^{c['shift_o']}, {ph['vectors']} vectors, T={ph['cycles_per_vector']} "
                     f"cycles/vector, ties {ph['ties_a']}/{ph['ties_o']}, clamped {ph['clamped_o']}; "
                     f"cycles RTL {ph['cycles_rtl']} / TLM {ph['cycles_tlm']}")
    return lines
