"""The activation unit's co-simulation workload: random input widths, tables, codes, gaps and output stalls;
the workload part of a co-simulation job and the unit's summary lines (pure NumPy)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.activation.params import ActivationConfig, ActivationParams
from sim.cosim.traffic import phase_traffic, phased_workload, pick
from sim.tlm.activation import lut_index, table_writes
from sim.tlm.transfers import pack_vector

__all__ = ["ActivationPhase", "random_activation_workload", "phase_widths", "index_counts", "job_workload",
           "summary_lines"]


@dataclass(frozen=True)
class ActivationPhase:
    """One configuration and table of the activation unit and the vectors streamed through it.

    Attributes:
        cfg: the run-time setting (B, valid for the params).
        table: int64 (E,), unsigned ``out_bits`` entries written at addresses 0 .. E - 1
            (2^min(B, index_bits) <= E <= depth).
        inputs: int64 (N, lanes), signed B-bit codes.
        in_payloads: N input payloads (``pack_vector`` of the codes, ``in_bits`` per lane).
        offer_cycles: int64 (N,), earliest cycle each vector is offered (non-decreasing).
        ready: bool (R,), output ready per cycle; cycles >= R are ready.
        table_words: ``(addr, data)`` for the ``table`` port (``table_writes``).
    """

    cfg: ActivationConfig
    table: np.ndarray
    inputs: np.ndarray
    in_payloads: list[int]
    offer_cycles: np.ndarray
    ready: np.ndarray
    table_words: list[tuple[int, int]]


def phase_widths(params: ActivationParams, phases: int, rng: np.random.Generator) -> list[int]:
    """The run-time width B of each phase: first the corners that exist for these params, in this order:
    ``in_bits``, ``index_bits`` (the table exactly fits), ``index_bits + 1`` (buckets of two codes), 2;
    then random widths in [2, in_bits] (either end likely)."""
    a, top = params.index_bits, params.in_bits
    corners = []
    for b in (top, min(a, top), a + 1, 2):
        if 2 <= b <= top and b not in corners:
            corners.append(b)
    return [corners[k] if k < len(corners) else pick(rng, 2, top) for k in range(phases)]


def index_counts(params: ActivationParams, cfg: ActivationConfig, inputs) -> dict[str, int]:
    """How often the codes hit the table's first and last used entries, and (B > index_bits) how many
    codes sit at a bucket's edge (the first or last code of the 2^(B-A) codes of one entry)."""
    b = cfg.bits
    idx = lut_index(inputs, b, params.index_bits)
    shift = max(0, b - params.index_bits)
    u = np.asarray(inputs, dtype=np.int64) + (1 << (b - 1))
    low = u & ((1 << shift) - 1)
    edges = int(((low == 0) | (low == (1 << shift) - 1)).sum()) if shift else 0
    return {"first_entry": int((idx == 0).sum()), "last_entry": int((idx == params.used_entries(b) - 1).sum()),
            "bucket_edges": edges}


def random_activation_workload(
    params: ActivationParams,
    vectors: int,
    seed: int,
    *,
    phases: int = 3,
    idle: bool = True,
    backpressure: bool = True,
) -> list[ActivationPhase]:
    """Random configurations of the activation unit, each with a random table, codes, gaps and stalls.

    Per phase: B from ``phase_widths`` (so that the index is the whole code, exactly the table, or the
    code's top bits, where the params allow); a table of random entries (both extremes 0 and
    2^out_bits - 1 present), all ``depth`` entries in phase 0, afterwards only 2^min(B, A) up to depth
    (the rest keeps an earlier phase's entries, which B never indexes). Codes: the first vector holds
    the smallest code -2^(B-1) in every lane, the second the largest 2^(B-1) - 1, then codes uniform in
    the B-bit range, a quarter of them moved to a bucket's edge when B > A. Input gaps: the next vector
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
    top = (1 << p.out_bits) - 1
    out = []
    for k, b in enumerate(phase_widths(p, phases, rng)):
        count = vectors // phases + (k < vectors % phases)
        cfg = p.check_config(ActivationConfig(bits=b))
        used = p.used_entries(b)
        size = p.depth if k == 0 else int(rng.integers(used, p.depth + 1))
        table = rng.integers(0, top + 1, size=size, dtype=np.int64)
        table[rng.integers(0, used)] = 0
        table[rng.integers(0, used)] = top
        half = 1 << (b - 1)
        z = rng.integers(-half, half, size=(count, p.lanes), dtype=np.int64)
        shift = max(0, b - p.index_bits)
        if shift:  # bucket edges: u = z + 2^(B-1) with all low bits 0 or all 1
            edge = rng.random(z.shape) < 0.25
            u = z + half
            low_mask = (1 << shift) - 1
            u = np.where(edge, np.where(rng.random(z.shape) < 0.5, u & ~low_mask, u | low_mask), u)
            z = u - half
        z[0] = -half
        if count > 1:
            z[1] = half - 1
        offers, ready = phase_traffic(rng, count, idle=idle, backpressure=backpressure)
        out.append(ActivationPhase(cfg, table, z, [pack_vector(row, p.in_bits) for row in z], offers, ready,
                                   table_writes(p, table)))
    return out


def job_workload(params: ActivationParams, *, vectors: int = 30, phases: int | None = None, **_other) -> dict:
    """The workload part of a co-simulation job: vectors and phases (default 3), validated; other
    engines' options (points, shapes) are ignored.

    Raises:
        ValueError: fewer vectors than phases, or a count below 1.
    """
    return phased_workload(vectors, phases, "vector")


def summary_lines(s: dict) -> list[str]:
    """The unit's lines of a printed co-simulation summary: its sizes, then per phase the width B, the
    index shift, the table entries hit at either end, the bucket edges and the cycles."""
    p = s["params"]
    lines = [f"lanes={p['lanes']} in<={p['in_bits']} bits, table 2^{p['index_bits']} x {p['out_bits']} bits"]
    for k, ph in enumerate(s.get("phases", [])):
        lines.append(f"phase {k}: B={ph['cfg']['bits']} shift={ph['shift']}, {ph['table_entries']} entries written, "
                     f"{ph['vectors']} vectors, first/last entry {ph['first_entry']}/{ph['last_entry']}, "
                     f"bucket edges {ph['bucket_edges']}; cycles RTL {ph['cycles_rtl']} / TLM {ph['cycles_tlm']}")
    return lines
