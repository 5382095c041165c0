"""Seeded random traffic shared by the engines' workloads (pure NumPy, no simulator needed): input
offer cycles, output-ready patterns, and a value picker that favours the ends of a range.

Each engine's workload (data, configurations, co-simulation job, summary lines) is in
``sim.cosim.workload_<engine>``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["offer_cycles", "ready_pattern", "pick", "phased_workload", "phase_traffic"]


def offer_cycles(rng: np.random.Generator, n: int, max_gap: int) -> np.ndarray:
    """Input offer cycles, int64 (n,), from 0: after an item the next one is offered at once (60 %) or
    1..max_gap cycles later."""
    gaps = np.where(rng.random(n) < 0.6, 0, rng.integers(1, max_gap + 1, size=n))
    return (np.cumsum(gaps) - gaps[0]).astype(np.int64)


def ready_pattern(rng: np.random.Generator, horizon: int, min_len: int, max_len: int) -> np.ndarray:
    """Output ready, bool (horizon,): segments of min_len..max_len cycles that are always ready, ready
    with probability 0.5, or stalled, so output FIFOs both drain and fill up."""
    ready = np.empty(horizon, dtype=bool)
    t = 0
    while t < horizon:
        length = int(rng.integers(min_len, max_len + 1))
        mode = rng.integers(0, 3)
        seg = (np.ones(length, bool) if mode == 0 else rng.random(length) < 0.5 if mode == 1
               else np.zeros(length, bool))
        ready[t:t + length] = seg[: horizon - t]
        t += length
    return ready


def pick(rng, lo: int, hi: int) -> int:
    """A value in [lo, hi], either end with probability 0.2 each."""
    u = rng.random()
    return hi if u < 0.2 else lo if u < 0.4 else int(rng.integers(lo, hi + 1))


def phased_workload(vectors, phases, noun: str = "vector") -> dict:
    """``{"vectors", "phases"}`` of a co-simulation job whose inputs are split into phases (default 3), validated.

    Raises:
        ValueError: fewer inputs (``noun`` s) than phases, or a count below 1.
    """
    from hw.config import check_int

    phases = check_int("phases", 3 if phases is None else phases, 1)
    vectors = check_int("vectors", vectors, 1)
    if vectors < phases:
        raise ValueError(f"need at least one {noun} per phase, not {vectors} {noun}s for {phases} phases")
    return {"vectors": vectors, "phases": phases}


def phase_traffic(rng: np.random.Generator, count: int, *, idle: bool, backpressure: bool):
    """One phase's ``(offer cycles int64 (count,), output ready bool)``: gaps of 1..3 cycles (``offer_cycles``;
    none without ``idle``) and ready segments of 1..8 cycles over enough cycles to drain (``ready_pattern``;
    always ready without ``backpressure``)."""
    offers = offer_cycles(rng, count, 3) if idle else np.zeros(count, dtype=np.int64)
    horizon = int(offers[-1]) + 3 * (count + 8)
    return offers, ready_pattern(rng, horizon, 1, 8) if backpressure else np.ones(0, dtype=bool)
