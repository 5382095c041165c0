"""The accelerator top's co-simulation workload: the traffic around whole rays (pure NumPy, no simulator
needed). The rays themselves are a ``sim.bitexact.RayBatch`` from the host (``flows.hwrender.host_rays``),
saved with ``save_rays`` for the testbench, which reads them with ``load_rays``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.cosim.traffic import offer_cycles, ready_pattern

__all__ = ["TopTraffic", "top_traffic", "save_rays", "load_rays"]


@dataclass(frozen=True)
class TopTraffic:
    """When the top's inputs are offered and when its output is ready.

    Attributes:
        ray_offers: int64 (R,), the first cycle each ray may be offered (non-decreasing).
        sample_offers: int64 (N,), the same for each sample.
        ready: bool (T,), the pixels' ready per cycle (ready past the end), or None: always ready.
    """

    ray_offers: np.ndarray
    sample_offers: np.ndarray
    ready: np.ndarray | None


def top_traffic(counts, seed: int, *, cycles_per_sample: int, idle: bool = True,
                backpressure: bool = True) -> TopTraffic:
    """Random traffic for rays with ``counts`` samples.

    Args:
        counts: int (R,), samples per ray.
        cycles_per_sample: the top's bottleneck (the slowest MLP engine's T): sizes the gaps and stalls.
        idle: random idle gaps on both inputs (``sim.cosim.traffic.offer_cycles``): after an item the next is
            offered at once (60 %) or after up to ``cycles_per_sample`` (samples) or 3 x that (rays) cycles,
            so that either stream may run ahead of the other or starve the pipeline.
        backpressure: a random pixel ready pattern (``ready_pattern``): segments of 1 to 4 x
            ``cycles_per_sample`` cycles that are ready, ready half the time, or stalled.

    Returns:
        ``TopTraffic``.
    """
    counts = np.asarray(counts, np.int64)
    rng = np.random.default_rng(seed)
    R, N = len(counts), int(counts.sum())
    T = max(1, int(cycles_per_sample))
    if idle:
        rays = offer_cycles(rng, R, 3 * T) if R else np.zeros(0, np.int64)
        samples = offer_cycles(rng, N, T) if N else np.zeros(0, np.int64)
    else:
        rays, samples = np.zeros(R, np.int64), np.zeros(N, np.int64)
    ready = None
    if backpressure:
        horizon = 2 * (N + R + 4) * T + (int(rays.max()) if R else 0) + (int(samples.max()) if N else 0)
        ready = ready_pattern(rng, horizon, 1, 4 * T)
    return TopTraffic(rays, samples, ready)


def save_rays(path, rays) -> Path:
    """Write a ``RayBatch`` as ``.npz`` (coords, counts, dirs, q); returns the path."""
    path = Path(path)
    np.savez(path, coords=rays.coords, counts=rays.counts, dirs=rays.dirs, q=rays.q)
    return path


def load_rays(path):
    """The ``RayBatch`` written by ``save_rays``."""
    from sim.bitexact import RayBatch

    with np.load(path) as z:
        return RayBatch(**{k: np.asarray(z[k], np.int64) for k in ("coords", "counts", "dirs", "q")})
