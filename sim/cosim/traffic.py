"""Seeded random workloads for co-simulation and benchmarks (pure NumPy, no simulator needed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.params import HashEncoderParams

__all__ = ["Traffic", "random_traffic"]


@dataclass(frozen=True)
class Traffic:
    """One workload for the hash encoder.

    Attributes:
        coords: int64 (N, 3), fixed-point input codes in [0, 2**C).
        tables: int64 (L, T, F), signed table entries.
        offer_cycles: int64 (N,), earliest cycle each point is offered (non-decreasing).
        ready: bool (R,), output ready per cycle; cycles >= R are ready.
    """

    coords: np.ndarray
    tables: np.ndarray
    offer_cycles: np.ndarray
    ready: np.ndarray


def random_traffic(
    params: HashEncoderParams,
    points: int,
    seed: int,
    *,
    idle: bool = True,
    backpressure: bool = True,
) -> Traffic:
    """Random points (0 and the largest coordinate included), tables, input gaps and output stalls.

    Input gaps: after a point, the next one is offered at once (60 %), or 1..3G cycles later.
    Output ready: phases of 8-64 cycles that are always ready, ready with probability 0.5, or
    stalled, so the FIFO both drains and fills up and the input sees backpressure.

    Args:
        params: engine parameters.
        points: N >= 2.
        seed: NumPy seed; the same seed gives the same workload.
        idle: False makes every point available at cycle 0 (no input gaps).
        backpressure: False makes the output always ready.
    """
    if points < 2:
        raise ValueError(f"points must be at least 2 (0 and the largest coordinate), not {points}")
    rng = np.random.default_rng(seed)
    full = 1 << params.coord_bits
    coords = rng.integers(0, full, size=(points, 3), dtype=np.int64)
    coords[0] = 0
    coords[1] = full - 1
    # Some points on cell boundaries and axis extremes.
    k = min(points - 2, points // 8)
    edge_rows = 2 + rng.choice(points - 2, size=k, replace=False)
    edge_vals = np.array([0, 1, full // 2, full - 2, full - 1])
    coords[edge_rows, rng.integers(0, 3, size=k)] = rng.choice(edge_vals, size=k)
    half = 1 << (params.feature_bits - 1)
    tables = rng.integers(-half, half, size=(params.levels, params.table_size, params.features), dtype=np.int64)
    if idle:
        gaps = np.where(rng.random(points) < 0.6, 0, rng.integers(1, 3 * params.groups + 1, size=points))
        offers = np.cumsum(gaps) - gaps[0]
    else:
        offers = np.zeros(points, dtype=np.int64)
    horizon = int(offers[-1]) + 4 * points * params.groups + 64
    if backpressure:
        ready = np.empty(horizon, dtype=bool)
        t = 0
        while t < horizon:
            length = int(rng.integers(8, 65))
            mode = rng.integers(0, 3)
            seg = np.ones(length, bool) if mode == 0 else (rng.random(length) < 0.5 if mode == 1 else np.zeros(length, bool))
            ready[t:t + length] = seg[: horizon - t]
            t += length
    else:
        ready = np.ones(0, dtype=bool)
    return Traffic(coords, tables, offers.astype(np.int64), ready)
