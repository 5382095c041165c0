"""The SH unit's co-simulation workload: random constants and settings, directions, gaps and output
stalls; the workload part of a co-simulation job and the unit's summary lines (pure NumPy)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from hw.sh_unit.params import SH_COEFFICIENTS, ShUnitParams
from sim.cosim.traffic import offer_cycles, phased_workload, pick, ready_pattern
from sim.tlm.fixed import round_shift
from sim.tlm.sh_unit import const_writes, sh_constants, sh_monomials, to_direction_codes
from sim.tlm.transfers import pack_vector

__all__ = ["ShPhase", "random_sh_workload", "extreme_directions", "count_ties", "phase_stats", "job_workload",
           "summary_lines"]


@dataclass(frozen=True)
class ShPhase:
    """One set of constants and settings of the SH unit and the directions streamed through it.

    Attributes:
        kind: how the constants were chosen: "grid" (``sh_constants``), "random" or "ties".
        mult, offset: int64 (16,), M_k and O_k (signed mult_bits / offset_bits).
        shift, out_bits: the settings S and B.
        inputs: int64 (N, 3), direction codes (signed dir_bits).
        in_payloads: N input payloads (``pack_vector`` of the codes, ``dir_bits`` each).
        offer_cycles: int64 (N,), earliest cycle each direction is offered (non-decreasing).
        ready: bool (R,), output ready per cycle; cycles >= R are ready.
        const_words: ``(k, M_k, O_k)`` for the ``consts`` port, in the order written (shuffled).
    """

    kind: str
    mult: np.ndarray
    offset: np.ndarray
    shift: int
    out_bits: int
    inputs: np.ndarray
    in_payloads: list[int]
    offer_cycles: np.ndarray
    ready: np.ndarray
    const_words: list[tuple[int, int, int]]


def extreme_directions(params: ShUnitParams) -> np.ndarray:
    """The corner codes, int64 (11, 3): the 8 sign combinations of +-(2^Q - 1), then all -2^Q,
    (-2^Q, 2^Q - 1, -2^Q) and (-2^Q, 0, -2^Q), where every monomial reaches its bound
    (``ShUnitParams.MONOMIAL_BOUNDS``; m_11 = m_13 = 4 * 2^Q)."""
    lim, low = (1 << params.frac_bits) - 1, -(1 << params.frac_bits)
    corners = [[sx * lim, sy * lim, sz * lim] for sx, sy, sz in itertools.product((1, -1), repeat=3)]
    return np.array(corners + [[low, low, low], [low, lim, low], [low, 0, low]], dtype=np.int64)


def count_ties(values, shift: int) -> int:
    """How many of ``values`` lie exactly halfway between two multiples of 2^shift (0 for shift 0): the
    cases where round half up differs from round half to even or away from zero."""
    if shift == 0:
        return 0
    low = np.asarray(values, dtype=np.int64) & ((1 << shift) - 1)
    return int((low == 1 << (shift - 1)).sum())


def _directions(rng, params: ShUnitParams, count: int) -> np.ndarray:
    """The corners (``extreme_directions``) first, then random unit directions (70 %) and codes drawn
    from the whole signed range (30 %)."""
    d = rng.normal(size=(count, 3))
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    codes = to_direction_codes(d, params.dir_bits)
    half = 1 << params.frac_bits
    anywhere = rng.random(count) < 0.3
    codes[anywhere] = rng.integers(-half, half, size=(int(anywhere.sum()), 3))
    corners = extreme_directions(params)[:count]
    codes[:len(corners)] = corners
    return codes


def _extremes(rng, values: np.ndarray, bits: int) -> None:
    """Put the smallest and the largest signed ``bits``-bit value at two random places of ``values``."""
    i, j = rng.choice(len(values), size=2, replace=False)
    values[i], values[j] = -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _constants(rng, p: ShUnitParams, kind: str, out_bits: int, mono: np.ndarray):
    """M, O and S for one phase (see ``random_sh_workload``)."""
    half_m, half_o = 1 << (p.mult_bits - 1), 1 << (p.offset_bits - 1)
    if kind == "grid":
        try:
            scale = rng.uniform(0.6, 1.2)  # below 1 the grid misses the ends of the basis functions: clamps
            mult, offset, shift = sh_constants(1.5 * scale / (1 << out_bits), -0.75 * scale, out_bits, p)
            return np.array(mult, np.int64), np.array(offset, np.int64), shift
        except ValueError:  # a step too fine for these multipliers: random constants instead
            pass
    if kind == "ties":
        mult = rng.integers(-min(3, half_m), min(3, half_m - 1) + 1, size=SH_COEFFICIENTS)
        offset = rng.integers(-min(8, half_o), min(8, half_o - 1) + 1, size=SH_COEFFICIENTS)
        return mult.astype(np.int64), offset.astype(np.int64), int(rng.integers(1, 4))
    mult = rng.integers(-half_m, half_m, size=SH_COEFFICIENTS, dtype=np.int64)
    _extremes(rng, mult, p.mult_bits)
    prod = mono * mult[None, :]
    typical = max(1.0, float(np.percentile(np.abs(prod), 75)))
    span = int(min(half_o - 1, typical))
    offset = rng.integers(-span, span + 1, size=SH_COEFFICIENTS, dtype=np.int64)
    if rng.random() < 0.5:
        _extremes(rng, offset, p.offset_bits)  # the full offset width (these coefficients clamp)
    target = ((1 << (out_bits - 1)) - 1) * rng.uniform(0.4, 1.5)
    shift = int(np.clip(round(np.log2(typical / target)), 0, p.shift_max))
    return mult, offset, shift


def random_sh_workload(
    params: ShUnitParams,
    vectors: int,
    seed: int,
    *,
    phases: int = 3,
    idle: bool = True,
    backpressure: bool = True,
) -> list[ShPhase]:
    """Random constants and settings of the SH unit, each with random directions, gaps and output stalls.

    Per phase: out_bits (phase 0 max_out_bits, phase 1 two bits, then either end of [2, max] likely),
    and by kind, phase k mod 3: 0 "grid", ``sh_constants`` for a grid of 2^out_bits steps over
    +-0.75 s, s in [0.6, 1.2] (s < 1 clamps the ends of the basis functions); 1 "random", M_k over the
    whole signed mult_bits range with both extremes present, O_k of the size of the typical product
    (in half the phases two of them at the extremes of offset_bits) and S chosen so that a typical
    output lands at 0.4..1.5 times the output range (most do not clamp, some do); 2 "ties", |M_k| <= 3,
    small O_k and S in [1, 3], so that many results round from an exact tie (``count_ties``). The
    directions start with the corners (``extreme_directions``: +-(2^Q - 1) and -2^Q), then random
    unit directions and random codes. Input gaps: the next direction at once (60 %) or 1..4 cycles
    later; output ready: segments of 1..12 cycles, always ready, ready with probability 0.5 or
    stalled, so that the output FIFO fills and the input sees backpressure. The constants are written
    in a random order.

    Args:
        params: the unit's parameters.
        vectors: N >= phases directions, split as evenly as possible over the phases.
        seed: NumPy seed; the same seed gives the same workload.
        phases: settings, each written while the unit is idle.
        idle: False makes every direction available at cycle 0 of its phase (no input gaps).
        backpressure: False makes the output always ready.
    """
    phased_workload(vectors, phases, "direction")  # the checks of the job's counts
    p = params
    rng = np.random.default_rng(seed)
    out = []
    for k in range(phases):
        count = vectors // phases + (k < vectors % phases)
        kind = ("grid", "random", "ties")[k % 3]
        out_bits = p.max_out_bits if k == 0 else 2 if k == 1 else pick(rng, 2, p.max_out_bits)
        codes = _directions(rng, p, count)
        mult, offset, shift = _constants(rng, p, kind, out_bits, sh_monomials(codes, p))
        offers = offer_cycles(rng, count, 4) if idle else np.zeros(count, dtype=np.int64)
        horizon = int(offers[-1]) + 4 * (count + p.latency + 8)
        ready = ready_pattern(rng, horizon, 1, 12) if backpressure else np.ones(0, dtype=bool)
        words = const_writes(mult, offset)
        order = rng.permutation(SH_COEFFICIENTS)
        out.append(ShPhase(kind, mult, offset, shift, out_bits, codes, [pack_vector(c, p.dir_bits) for c in codes],
                           offers, ready, [words[i] for i in order]))
    return out


def phase_stats(params: ShUnitParams, phase: ShPhase, outputs: np.ndarray) -> dict:
    """How much of the rounding and clamping a phase exercised: exact ties of ``m_k M_k + O_k`` at the
    shift, outputs at either clamp limit, and outputs that clamp (the rounded value lies outside)."""
    acc = sh_monomials(phase.inputs, params) * phase.mult[None, :] + phase.offset[None, :]
    rounded = round_shift(acc, phase.shift)
    lim = 1 << (phase.out_bits - 1)
    return {
        "kind": phase.kind,
        "out_bits": phase.out_bits,
        "shift": phase.shift,
        "ties": count_ties(acc, phase.shift),
        "clamped": int(((rounded < -lim) | (rounded > lim - 1)).sum()),
        "at_limit": int(((outputs == -lim) | (outputs == lim - 1)).sum()),
    }


def job_workload(params: ShUnitParams, *, vectors: int = 30, phases: int | None = None, **_other) -> dict:
    """The workload part of a co-simulation job: directions (``vectors``) and phases (default 3),
    validated; other engines' options (points, shapes) are ignored.

    Raises:
        ValueError: fewer directions than phases, or a count below 1.
    """
    return phased_workload(vectors, phases, "direction")


def summary_lines(s: dict) -> list[str]:
    """The unit's lines of a printed co-simulation summary: its widths, then per phase the settings, the
    rounding ties and clamps exercised, and the cycles."""
    p = s["params"]
    lines = [f"dir_bits={p['dir_bits']} out<={p['max_out_bits']} mult_bits={p['mult_bits']} "
             f"offset_bits={p['offset_bits']}"]
    for k, ph in enumerate(s.get("phases", [])):
        lines.append(f"phase {k} ({ph['kind']}): out_bits={ph['out_bits']} S={ph['shift']}, {ph['vectors']} "
                     f"directions, ties {ph['ties']}, clamped {ph['clamped']}; cycles RTL {ph['cycles_rtl']} / "
                     f"TLM {ph['cycles_tlm']}")
    return lines
