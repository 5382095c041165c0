"""The hash encoder's co-simulation workload: random points, tables, input gaps and output stalls; the
workload part of a co-simulation job and the engine's summary lines (pure NumPy, no simulator needed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.config import check_int
from hw.hash_encoder.params import HashEncoderParams
from sim.cosim.traffic import offer_cycles, ready_pattern

__all__ = ["Traffic", "random_traffic", "job_workload", "summary_lines"]


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
    check_int("points", points, 2)  # 0 and the largest coordinate
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
    offers = offer_cycles(rng, points, 3 * params.groups) if idle else np.zeros(points, dtype=np.int64)
    horizon = int(offers[-1]) + 4 * points * params.groups + 64
    ready = ready_pattern(rng, horizon, 8, 64) if backpressure else np.ones(0, dtype=bool)
    return Traffic(coords, tables, offers, ready)


def job_workload(params: HashEncoderParams, *, points: int = 2000, **_other) -> dict:
    """The workload part of a co-simulation job: ``{"points": points}`` (other engines' options ignored).

    Raises:
        ValueError: points < 2.
    """
    return {"points": check_int("points", points, 2)}


def summary_lines(s: dict) -> list[str]:
    """The engine's lines of a printed co-simulation summary: its parameters."""
    p = s["params"]
    return [f"L={p['levels']} T=2^{p['log2_table_size']} F={p['features']} feature_bits={p['feature_bits']} "
            f"coord_bits={p['coord_bits']} N={p['n_min']}..{p['n_max']} lanes={p['lanes']}"]
