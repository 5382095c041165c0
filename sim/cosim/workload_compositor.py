"""The compositing unit's co-simulation workload: random constants, rays (0 .. 40 samples; some terminate
early, some saturate D, some have no samples), gaps on both input streams and pixel stalls; the workload
part of a co-simulation job and the unit's summary lines (pure NumPy)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from hw.compositor.params import CompositorParams
from sim.cosim.traffic import offer_cycles, phased_workload, ready_pattern
from sim.tlm.compositor import PixelConstants, pixel_constants, ray_payload, sample_payload

__all__ = ["CompositorPhase", "random_compositor_workload", "ray_events", "job_workload", "summary_lines"]

#: The most samples of a random ray (fewer when ``count_bits`` holds fewer).
MAX_SAMPLES = 40


@dataclass(frozen=True)
class CompositorPhase:
    """One set of constants of the compositing unit and the rays streamed through it.

    Attributes:
        consts: the run-time constants (``sim.tlm.compositor.check_constants`` holds).
        sigma: int64 (N,), density codes; color: int64 (N, 3), colour codes; ray 0's samples first.
        counts: int64 (R,), samples per ray; q: int64 (R,), each ray's q.
        ray_payloads: R ``rays`` payloads; sample_payloads: N ``samples`` payloads.
        ray_offers: int64 (R,), sample_offers: int64 (N,): earliest cycle of each (non-decreasing).
        ready: bool (T,), pixel ready per cycle; cycles >= T are ready.
    """

    consts: PixelConstants
    sigma: np.ndarray
    color: np.ndarray
    counts: np.ndarray
    q: np.ndarray
    ray_payloads: list[int]
    sample_payloads: list[int]
    ray_offers: np.ndarray
    sample_offers: np.ndarray
    ready: np.ndarray


def ray_events(phase: CompositorPhase, params: CompositorParams) -> dict:
    """What a phase's rays exercise, from the exact D recursion (``sim.tlm.compositor`` module doc):
    rays without samples, rays that terminate early (a sample left after D reached the limit), and
    samples whose D saturated (D + sigma * q > 2^depth_bits - 1 while D < the limit)."""
    dmax, limit = params.depth_max, phase.consts.depth_limit
    early = saturated = 0
    pos = 0
    for count, q in zip(phase.counts.tolist(), phase.q.tolist()):
        d = 0
        for i in range(count):
            if d >= limit:
                early += 1
                break
            d += int(phase.sigma[pos + i]) * q
            if d > dmax:
                saturated += 1
                d = dmax
        pos += count
    return {"zero_rays": int((phase.counts == 0).sum()), "early_rays": early, "saturations": saturated}


def _ray(rng, params: CompositorParams, kind: str, count: int, limit: float) -> tuple[np.ndarray, int]:
    """Density codes and q of one ray of ``kind``: "sparse" (total optical depth below the limit: no early
    termination), "dense" (1.2 to 5 times the limit: it terminates early) or "saturate" (q the largest and
    one density code the largest: D saturates at that sample)."""
    p = params
    smax, qmax = (1 << p.sigma_bits) - 1, (1 << p.q_bits) - 1
    sigma = rng.integers(0, smax + 1, size=count, dtype=np.int64)
    sigma[rng.random(count) < 0.3] = 0  # empty space
    if count and not sigma.any():
        sigma[rng.integers(0, count)] = int(rng.integers(1, smax + 1))
    if kind == "saturate":
        sigma[rng.integers(0, count)] = smax
        return sigma, qmax
    if not count:
        return sigma, int(rng.integers(0, qmax + 1))
    tau = limit * (rng.uniform(0.02, 0.8) if kind == "sparse" else rng.uniform(1.2, 5.0))
    q = int(np.clip(round(tau * (1 << p.depth_frac) / max(1, int(sigma.sum()))), 0, qmax))
    return sigma, q


def random_compositor_workload(
    params: CompositorParams,
    rays: int,
    seed: int,
    *,
    phases: int = 3,
    idle: bool = True,
    backpressure: bool = True,
) -> list[CompositorPhase]:
    """Random constants and rays for the compositing unit, with random gaps and pixel stalls.

    Per phase: constants from ``pixel_constants`` for colour codes spanning about [-0.15, 1.3] (so that
    pixels clamp at both ends; a negative M_l), a background of 0, 1 or in between, and ``t_min`` in
    {1e-4, 1e-3, 1e-2, 0.05}; every third phase (phase 1, 4, ...) sets the depth limit to 2^depth_bits - 1
    (only saturation stops a ray). Rays: 0 .. 40 samples (``MAX_SAMPLES``, at most 2^count_bits - 1;
    15 % without samples), "sparse" (45 %: no early termination), "dense" (35 %: early termination)
    or "saturate" (20 %); the first three rays of every phase are one without samples, one that
    saturates and one dense (then all are shuffled). Every third phase (phase 2, 5, ...) is a *short*
    phase: rays of 0 .. 2 samples and pixel stalls up to 64 cycles (the first 3 ``OUT_FIFO_DEPTH``
    cycles stalled), so that all ``OUT_FIFO_DEPTH`` credits are held and the headers wait for them.
    Gaps: the next header at once (60 %) or 1 .. (most samples) cycles later, the next sample at once
    (60 %) or 1..3 cycles later. Pixel ready: segments of 1..24 cycles (short phases 1..64), always
    ready, ready with probability 0.5, or stalled.

    Args:
        params: the unit's parameters.
        rays: R >= phases, split as evenly as possible over the phases.
        seed: NumPy seed; the same seed gives the same workload.
        phases: constant sets, each written while the unit is idle.
        idle: False offers every header and sample at cycle 0 of its phase (no gaps).
        backpressure: False makes the pixel output always ready.
    """
    phased_workload(rays, phases, "ray")  # the checks of the job's counts
    p = params
    rng = np.random.default_rng(seed)
    cmax = (1 << p.color_bits) - 1
    out = []
    for k in range(phases):
        n_rays = rays // phases + (k < rays % phases)
        short = k % 3 == 2  # rays of 0 .. 2 samples, long stalls: the credits run out
        most = min(2 if short else MAX_SAMPLES, (1 << p.count_bits) - 1)
        step = rng.uniform(0.9, 1.25) / cmax
        low = rng.uniform(-0.15, 0.05)
        background = float(rng.choice([0.0, 1.0, rng.uniform(0.0, 1.0)]))
        t_min = float(rng.choice([1e-4, 1e-3, 1e-2, 0.05]))
        consts = pixel_constants(step, low, background, t_min, p)
        if k % 3 == 1:
            consts = dataclasses.replace(consts, depth_limit=p.depth_max)
        limit = consts.depth_limit / (1 << p.depth_frac)
        kinds = ["zero", "saturate", "dense"][:n_rays]
        kinds += [str(rng.choice(["sparse", "dense", "saturate"], p=[0.45, 0.35, 0.2]))
                  for _ in range(n_rays - len(kinds))]
        rng.shuffle(kinds)
        counts, qs, sigmas = [], [], []
        for kind in kinds:
            count = 0 if kind == "zero" or (kind != "saturate" and rng.random() < 0.15) else \
                int(rng.integers(1, most + 1))
            sigma, q = _ray(rng, p, kind, count, limit)
            counts.append(count)
            qs.append(q)
            sigmas.append(sigma)
        counts_a = np.array(counts, np.int64)
        q_a = np.array(qs, np.int64)
        sigma_a = np.concatenate(sigmas) if sigmas else np.zeros(0, np.int64)
        color = rng.integers(0, cmax + 1, size=(len(sigma_a), 3), dtype=np.int64)
        if len(color) > 1:
            color[0], color[-1] = 0, cmax
        n_samples = len(sigma_a)
        if idle:
            r_offers = offer_cycles(rng, n_rays, most)
            s_offers = offer_cycles(rng, n_samples, 3)
        else:
            r_offers, s_offers = np.zeros(n_rays, np.int64), np.zeros(n_samples, np.int64)
        horizon = 3 * (n_samples + 2 * n_rays) + int(r_offers[-1]) + 100
        ready = ready_pattern(rng, horizon, 1, 64 if short else 24) if backpressure else np.ones(0, dtype=bool)
        if short and backpressure:
            ready[:3 * p.OUT_FIFO_DEPTH] = False  # the first pixels wait: every credit is held
        out.append(CompositorPhase(
            consts, sigma_a, color, counts_a, q_a,
            [ray_payload(q, c, p) for q, c in zip(qs, counts)],
            [sample_payload(s, c, p) for s, c in zip(sigma_a.tolist(), color.tolist())],
            r_offers, s_offers, ready))
    return out


def job_workload(params: CompositorParams, *, vectors: int = 30, phases: int | None = None, **_other) -> dict:
    """The workload part of a co-simulation job: ``vectors`` rays (each with 0 .. 40 samples) over
    ``phases`` constant sets (default 3), validated; other engines' options (points, shapes) are ignored.

    Raises:
        ValueError: fewer rays than phases, or a count below 1.
    """
    return phased_workload(vectors, phases, "ray")


def summary_lines(s: dict) -> list[str]:
    """The unit's lines of a printed co-simulation summary: its widths, then per phase the constants, the
    rays and samples, what they exercised and the cycles."""
    p = s["params"]
    lines = [f"sigma{p['sigma_bits']} color{p['color_bits']} Ft={p['trans_bits']} G={p['exp_index_bits']} "
             f"D frac {p['depth_frac']} q{p['q_bits']} pixel{p['pixel_bits']} mult{p['pix_mult_bits']}"]
    for k, ph in enumerate(s.get("phases", [])):
        c = ph["consts"]
        lines.append(f"phase {k}: M_c/M_l/M_b={c['mult_color']}/{c['mult_low']}/{c['mult_background']} "
                     f"S={c['shift']} limit={c['depth_limit']}, {ph['rays']} rays, {ph['samples']} samples, "
                     f"{ph['zero_rays']} empty, {ph['early_rays']} terminated early, {ph['saturations']} saturated, "
                     f"{ph['clamped']} clamped, {ph['credit_stalls']} credit stalls; "
                     f"cycles RTL {ph['cycles_rtl']} / TLM {ph['cycles_tlm']}")
    return lines
