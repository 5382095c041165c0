"""The co-simulation workload of the hash encoder with external tables: random points, per-level tables,
input gaps, output stalls and random DRAM responder delays; the workload part of a job and the summary
lines (pure NumPy, no simulator needed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.config import check_int
from hw.hash_encoder_axi.params import HashEncoderAxiParams
from sim.cosim.workload_hash_encoder import random_traffic as on_chip_traffic
from sim.memory.dram import DelayPattern, DramTiming, load_dram

__all__ = ["Traffic", "random_traffic", "job_workload", "summary_lines", "dram_of"]

#: The responder's DRAM and the accelerator clock it is timed at, unless a job says otherwise.
DEFAULT_DRAM, DEFAULT_CLOCK_MHZ = "lpddr4", 200


@dataclass(frozen=True)
class Traffic:
    """One workload: coords int64 (N, 3), tables int64 (L, T, F) (level l's codes in signed b_l bits),
    offer_cycles int64 (N,), ready bool (R,), delays (the responder's random extra delays)."""

    coords: np.ndarray
    tables: np.ndarray
    offer_cycles: np.ndarray
    ready: np.ndarray
    delays: DelayPattern


def random_traffic(params: HashEncoderAxiParams, points: int, seed: int, *, idle: bool = True,
                   backpressure: bool = True, delays: bool = True) -> Traffic:
    """The on-chip encoder's random points, gaps and stalls (``sim.cosim.workload_hash_encoder``) with
    each level's table codes drawn in its own b_l bits, half of the points repeated near earlier ones
    (so lines are reused and hit), and random ARREADY / R delays (``DelayPattern(seed)``) if ``delays``."""
    base = on_chip_traffic(params, points, seed, idle=idle, backpressure=backpressure)
    rng = np.random.default_rng([seed, 1])
    coords = base.coords.copy()
    # Half of the points near an earlier one (within a few fine cells): spatial reuse, as along a ray.
    near = rng.random(points) < 0.5
    near[:2] = False
    src = np.maximum(0, np.arange(points) - rng.integers(1, 16, size=points))
    step = max(1, (1 << params.coord_bits) // (4 * params.n_max))
    jitter = rng.integers(-2 * step, 2 * step + 1, size=(points, 3))
    moved = np.clip(coords[src] + jitter, 0, (1 << params.coord_bits) - 1)
    coords[near] = moved[near]
    tables = np.zeros_like(base.tables)
    for level, b in enumerate(params.bits):
        half = 1 << (b - 1)
        tables[level] = rng.integers(-half, half, size=tables[level].shape)
    return Traffic(coords, tables, base.offer_cycles, base.ready, DelayPattern(seed=seed) if delays else DelayPattern())


def dram_of(job: dict, params: HashEncoderAxiParams) -> DramTiming:
    """The responder's DRAM timing named by a job (``dram``, ``clock_mhz``)."""
    return DramTiming.of(load_dram(job.get("dram", DEFAULT_DRAM)), job.get("clock_mhz", DEFAULT_CLOCK_MHZ),
                         params.bus_bytes)


def job_workload(params: HashEncoderAxiParams, *, points: int = 2000, **_other) -> dict:
    """The workload part of a co-simulation job: points, the DRAM preset and the clock it is timed at.

    Raises:
        ValueError: points < 2.
    """
    return {"points": check_int("points", points, 2), "dram": DEFAULT_DRAM, "clock_mhz": DEFAULT_CLOCK_MHZ}


def summary_lines(s: dict) -> list[str]:
    """The engine's lines of a printed co-simulation summary: parameters, cache and memory statistics."""
    p = s["params"]
    bits = p["level_bits"] or [p["feature_bits"]] * p["levels"]
    lines = [f"L={p['levels']} T=2^{p['log2_table_size']} F={p['features']} bits={bits} lanes={p['lanes']}",
             f"cache: {p['cache_bytes']} B per level, {p['ways']} ways, {p['line_bytes']} B lines, "
             f"{p['bus_bytes'] * 8}-bit AXI, resident budget {p['resident_bytes']} B; DRAM {s.get('dram', '?')}"]
    if "axi_requests" in s:
        lines.append(f"AXI reads {s['axi_requests']}, hit rate {s.get('hit_rate', 0):.3f}, "
                     f"stall cycles {s.get('stall_cycles', 0)}")
    return lines
