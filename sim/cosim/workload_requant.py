"""The requantizer's co-simulation workload: random settings, per-lane constants, vectors, gaps and output
stalls; the workload part of a co-simulation job and the unit's summary lines (pure NumPy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.requant.params import RequantConfig, RequantParams
from sim.cosim.traffic import phase_traffic, phased_workload, pick
from sim.tlm.fixed import round_shift
from sim.tlm.requant import const_writes
from sim.tlm.transfers import pack_vector

__all__ = ["RequantPhase", "random_requant_workload", "rounding_counts", "job_workload", "summary_lines"]


@dataclass(frozen=True)
class RequantPhase:
    """One configuration and set of constants of the requantizer and the vectors streamed through it.

    Attributes:
        kind: "scaled" (outputs spread over the range), "direct" (S = 0) or "ties" (small S, many exact
            halves).
        cfg: the run-time settings (valid for the params).
        mult: int64 (lanes,), unsigned M_e; offset: int64 (lanes,), signed O_e.
        inputs: int64 (N, lanes), signed ``in_bits`` values.
        in_payloads: N input payloads (``pack_vector`` of the inputs, ``in_bits`` per lane).
        offer_cycles: int64 (N,), earliest cycle each vector is offered (non-decreasing).
        ready: bool (R,), output ready per cycle; cycles >= R are ready.
        const_words: ``(lane, mult, offset)`` for the ``consts`` port (``const_writes``).
    """

    kind: str
    cfg: RequantConfig
    mult: np.ndarray
    offset: np.ndarray
    inputs: np.ndarray
    in_payloads: list[int]
    offer_cycles: np.ndarray
    ready: np.ndarray
    const_words: list[tuple[int, int, int]]


def rounding_counts(cfg: RequantConfig, mult, offset, inputs) -> dict[str, int]:
    """How many elements were exact ties of the rounding (``v mod 2^S == 2^(S-1)``, S >= 1) whose rounded
    value the clamp kept (so the output shows the rounding), and how many the clamp moved up to 0
    (``round_shift(v, S) < 0``) or down to ``2^out_bits - 1`` (above it)."""
    v = np.asarray(inputs, dtype=np.int64) * np.asarray(mult, np.int64)[None, :] + np.asarray(offset, np.int64)
    s, top = cfg.shift, (1 << cfg.out_bits) - 1
    r = round_shift(v, s)
    low, high = r < 0, r > top
    ties = int((((v & ((1 << s) - 1)) == 1 << (s - 1)) & ~low & ~high).sum()) if s else 0
    return {"ties": ties, "clamped_low": int(low.sum()), "clamped_high": int(high.sum())}


def _ints(rng, lo: int, hi: int, size) -> np.ndarray:
    """Uniform int64 in [lo, hi] (inclusive), any size."""
    return rng.integers(lo, hi + 1, size=size, dtype=np.int64)


def random_requant_workload(
    params: RequantParams,
    vectors: int,
    seed: int,
    *,
    phases: int = 3,
    idle: bool = True,
    backpressure: bool = True,
) -> list[RequantPhase]:
    """Random settings of the requantizer, each with random per-lane constants, vectors, gaps and stalls.

    Phases cycle through three kinds (phase k: k mod 3):

    * "scaled": inputs of a random magnitude (the full ``in_bits`` range in phase 0), large multipliers
      (lane 0 the largest, 2^mult_bits - 1), S chosen so that a typical ``|u * M| / 2^S`` (the 75th
      percentile) is 0.5..1.5 times 2^(out_bits-1), offsets of 0.7..1.3 times 2^(S+out_bits-1) that
      centre the outputs (as far as offset_bits allow; lane 0 in phase 0 the most negative or the
      largest offset), so most outputs lie inside the range and some clamp at either end;
    * "direct": S = 0, small multipliers (0 included) and offsets, inputs of about 2^(out_bits+1): no
      rounding, both clamps;
    * "ties": S in [1, 3], multipliers 1 or 3 (1 when mult_bits is 1), offsets in [-2^out_bits,
      2^out_bits], inputs in [-2^(S+out_bits-2), 2^(S+out_bits-1)], so that many ``u * M + O`` are exact
      halves inside the output range (``rounding_counts``), and some clamp at either end.

    out_bits is max_out_bits in phase 0, 2 in phase 1, random (either end likely) after. Every phase's
    first two vectors hold the smallest and the largest input in every lane. Input gaps: the next vector
    at once (60 %) or 1..3 cycles later. Output ready: segments of 1..8 cycles, always ready, ready with
    probability 0.5, or stalled, so that the output FIFO fills and the input sees backpressure.

    Args:
        params: the unit's parameters.
        vectors: N >= phases, split as evenly as possible over the phases.
        seed: NumPy seed; the same seed gives the same workload.
        phases: configurations, each written while the unit is idle.
        idle: False makes every vector available at cycle 0 of its phase (no input gaps).
        backpressure: False makes the output always ready.
    """
    phased_workload(vectors, phases, "vector")  # the checks of the job's counts
    p = params
    rng = np.random.default_rng(seed)
    n = p.lanes
    in_lo, in_hi = -(1 << (p.in_bits - 1)), (1 << (p.in_bits - 1)) - 1
    off_lo, off_hi = -(1 << (p.offset_bits - 1)), (1 << (p.offset_bits - 1)) - 1
    m_max = (1 << p.mult_bits) - 1
    out = []
    for k in range(phases):
        count = vectors // phases + (k < vectors % phases)
        kind = ("scaled", "direct", "ties")[k % 3]
        ob = p.max_out_bits if k == 0 else 2 if k == 1 else pick(rng, 2, p.max_out_bits)
        top = 1 << ob
        if kind == "scaled":
            mag = p.in_bits if k == 0 else int(rng.integers(2, p.in_bits + 1))
            u = _ints(rng, -(1 << (mag - 1)), (1 << (mag - 1)) - 1, (count, n))
            mult = _ints(rng, max(1, m_max // 2), m_max, n)
            mult[0] = m_max
            peak = max(1.0, float(np.percentile(np.abs(u * mult[None, :]), 75)))
            shift = int(np.clip(round(np.log2(peak / (top / 2 * rng.uniform(0.5, 1.5)))), 0, p.shift_max))
            centre = (top // 2) << shift
            offset = np.clip(centre * rng.uniform(0.7, 1.3, n), off_lo, off_hi).astype(np.int64)  # exact: < 2^53
            if k == 0:
                offset[0] = off_lo if rng.random() < 0.5 else off_hi
        elif kind == "direct":
            shift = 0
            mult = _ints(rng, 0, min(m_max, 3), n)
            mult[0] = 0
            u = np.clip(_ints(rng, -2 * top, 2 * top, (count, n)), in_lo, in_hi)
            offset = np.clip(_ints(rng, -top, top, n), off_lo, off_hi)
        else:
            shift = int(rng.integers(1, min(3, p.shift_max) + 1))
            mult = np.where(rng.random(n) < 0.5, 1, min(3, m_max)).astype(np.int64)
            u = np.clip(_ints(rng, -(top << shift) // 4, (top << shift) // 2, (count, n)), in_lo, in_hi)
            offset = np.clip(_ints(rng, -top, top, n), off_lo, off_hi)
        u[0] = in_lo
        if count > 1:
            u[1] = in_hi
        cfg = p.check_config(RequantConfig(shift=shift, out_bits=ob))
        offers, ready = phase_traffic(rng, count, idle=idle, backpressure=backpressure)
        out.append(RequantPhase(kind, cfg, mult, offset, u, [pack_vector(row, p.in_bits) for row in u], offers, ready,
                                const_writes(p, mult, offset)))
    return out


def job_workload(params: RequantParams, *, vectors: int = 30, phases: int | None = None, **_other) -> dict:
    """The workload part of a co-simulation job: vectors and phases (default 3), validated; other
    engines' options (points, shapes) are ignored.

    Raises:
        ValueError: fewer vectors than phases, or a count below 1.
    """
    return phased_workload(vectors, phases, "vector")


def summary_lines(s: dict) -> list[str]:
    """The unit's lines of a printed co-simulation summary: its sizes and widths, then per phase the
    settings, the rounding ties and clamps exercised, and the cycles."""
    p = s["params"]
    lines = [f"lanes={p['lanes']} in{p['in_bits']} out<={p['max_out_bits']} mult_bits={p['mult_bits']} "
             f"offset_bits={p['offset_bits']}"]
    for k, ph in enumerate(s.get("phases", [])):
        c = ph["cfg"]
        lines.append(f"phase {k} ({ph['kind']}): S={c['shift']} out_bits={c['out_bits']}, {ph['vectors']} vectors, "
                     f"ties {ph['ties']}, clamped {ph['clamped_low']} low / {ph['clamped_high']} high; "
                     f"cycles RTL {ph['cycles_rtl']} / TLM {ph['cycles_tlm']}")
    return lines
