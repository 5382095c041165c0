"""The MLP engine's co-simulation workload: random configurations, vectors, gaps and output stalls; with two
weight banks random cell visits and the loader's timing; the workload part of a co-simulation job and the
engine's summary lines (pure NumPy, no simulator needed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.config import check_int
from hw.mlp_engine.params import MlpEngineParams, MlpLayer
from sim.cosim.traffic import offer_cycles, pick as _pick, ready_pattern
from sim.tlm.mlp_engine import (bias_writes, cell_words, cell_writes, pack_vector, reference_forward, vector_cycles,
                                 weight_writes)

__all__ = ["MlpPhase", "random_mlp_workload", "MlpCell", "MlpCellRun", "random_cell_workload", "check_shapes",
           "phase_shapes", "job_workload", "summary_lines"]


@dataclass(frozen=True)
class MlpPhase:
    """One configuration of the MLP engine and the vectors streamed through it.

    Attributes:
        layers: the run-time layer settings (valid for the params).
        weights: per layer int64 (out_size, in_size), signed weight codes.
        biases: per layer int64 (out_size,) or None (layers without a bias).
        inputs: int64 (N, in_size of layer 0), input codes.
        in_payloads: N input payloads: ``pack_vector`` of the codes, with random bits in every
            position the engine must ignore (elements past in_size; bits above act_bits).
        offer_cycles: int64 (N,), earliest cycle each vector is offered (non-decreasing).
        ready: bool (R,), output ready per cycle; cycles >= R are ready.
        weight_words: ``(layer, row_tile, col_tile, plane, data)`` for the ``weights`` port
            (``weight_writes``; in some phases with random bits outside the matrices).
        bias_words: ``(layer, row_tile, data)`` for the ``bias`` port (layers with a bias).
    """

    layers: tuple[MlpLayer, ...]
    weights: list[np.ndarray]
    biases: list[np.ndarray | None]
    inputs: np.ndarray
    in_payloads: list[int]
    offer_cycles: np.ndarray
    ready: np.ndarray
    weight_words: list[tuple[int, int, int, int, int]]
    bias_words: list[tuple[int, int, int]]


def check_shapes(params: MlpEngineParams, shapes) -> list[int]:
    """Validate layer sizes ``[in_0, out_0, out_1, ...]`` (L + 1 sizes for L layers) against ``params``.

    Raises:
        ValueError: naming the position, the allowed range and the value.
    """
    sizes = list(shapes)
    if not 2 <= len(sizes) <= params.max_layers + 1:
        raise ValueError(f"shapes must list 2 to {params.max_layers + 1} sizes (input, then each layer's output), "
                         f"not {len(sizes)}: {sizes}")
    out = []
    for k, size in enumerate(sizes):
        hi = params.max_in if k == 0 else params.max_out if k == len(sizes) - 1 else min(params.max_in, params.max_out)
        out.append(check_int(f"shapes[{k}]", size, 1, hi))
    return out


def phase_shapes(params: MlpEngineParams, shapes, phases: int | None) -> tuple[list[list[int]] | None, int]:
    """Layer sizes per phase and the phase count, from ``shapes`` as ``run_cosim`` takes it.

    Args:
        shapes: None (random sizes), one size list ``[in_0, out_0, ...]`` for every phase, or a list
            of size lists, one per phase (so that one run can stream, say, a density MLP's and a
            colour MLP's shapes).
        phases: the phase count; None: one per size list, or 3.

    Returns:
        ``(sizes per phase or None, phases)``.

    Raises:
        ValueError: a bad size (``check_shapes``, naming the phase), or a phase count that differs
            from the number of size lists.
    """
    if shapes is None:
        return None, check_int("phases", 3 if phases is None else phases, 1)
    shapes = list(shapes)
    if shapes and all(isinstance(x, (list, tuple)) for x in shapes):
        per_phase = []
        for k, sizes in enumerate(shapes):
            try:
                per_phase.append(check_shapes(params, sizes))
            except ValueError as exc:
                raise ValueError(f"phase {k}: {exc}") from None
        if phases is not None and phases != len(per_phase):
            raise ValueError(f"phases is {phases} but shapes lists {len(per_phase)} phases")
        return per_phase, len(per_phase)
    phases = check_int("phases", 3 if phases is None else phases, 1)
    return [check_shapes(params, shapes)] * phases, phases


def _random_layers(params: MlpEngineParams, rng, sizes: list[int], x: np.ndarray, act_bits: int, act_signed: bool):
    """Layer settings, weights and biases for the sizes, with M and S chosen from the actual
    accumulators of the vectors ``x`` so that outputs span their range (some clamp, most do not)."""
    layers, weights, biases = [], [], []
    for l in range(len(sizes) - 1):
        n_in, n_out = sizes[l], sizes[l + 1]
        wb = _pick(rng, 2, params.max_weight_bits)
        ob = _pick(rng, 2, params.max_act_bits)
        relu = bool(rng.random() < 0.5)
        half = 1 << (wb - 1)
        w = rng.integers(-half, half, size=(n_out, n_in), dtype=np.int64)
        w.flat[rng.integers(0, w.size)] = -half  # the negative extreme of the MSB plane
        w.flat[rng.integers(0, w.size)] = half - 1
        use_bias = bool(rng.random() < 0.6)
        dot = x @ w.T
        b = None
        if use_bias:
            bmax = (1 << (params.bias_bits - 1)) - 1
            scale = int(min(bmax, max(1, np.abs(dot).max())))
            b = rng.integers(-scale, scale + 1, size=n_out, dtype=np.int64)
            if rng.random() < 0.3:
                b[rng.integers(0, n_out)] = -bmax - 1  # the accumulator's extreme
        acc = dot + (b[None, :] if use_bias else 0)
        mult = int(rng.integers(1 << (params.mult_bits - 1), 1 << params.mult_bits))
        # Scale by a typical accumulator (the extreme vectors and the extreme bias saturate).
        peak = max(1.0, float(np.percentile(np.abs(acc), 75)))
        target = (1 << (ob - 1)) * rng.uniform(0.25, 1.0)
        shift = int(np.clip(round(np.log2(peak * mult / target)), 0, params.shift_max))
        layer = MlpLayer(in_size=n_in, out_size=n_out, weight_bits=wb, act_bits=act_bits, act_signed=act_signed,
                         relu=relu, out_bits=ob, bias=use_bias, mult=mult, shift=shift)
        x = reference_forward([layer], [w], [b], x)
        layers.append(layer)
        weights.append(w)
        biases.append(b)
        act_bits, act_signed = ob, not relu
    return tuple(layers), weights, biases


def _in_payloads(params: MlpEngineParams, rng, x: np.ndarray, ab: int) -> list[int]:
    """Input payloads of codes ``x`` (ab-bit): the codes in the low bits of each element and, in half of
    them, random bits everywhere the engine must ignore (elements past in_size, bits above ab)."""
    ab_max = params.max_act_bits
    payloads = []
    full = (1 << (params.max_in * ab_max)) - 1
    for row in x:
        code = pack_vector(row & ((1 << ab) - 1), ab_max)  # the layer-0 codes in the low bits ...
        if rng.random() < 0.5:  # ... and random bits everywhere the engine must ignore
            noise = int.from_bytes(rng.bytes((params.max_in * ab_max + 7) // 8), "little") & full
            keep = pack_vector([(1 << ab) - 1] * x.shape[1], ab_max)
            code |= noise & ~keep
        payloads.append(code)
    return payloads


def random_mlp_workload(
    params: MlpEngineParams,
    vectors: int,
    seed: int,
    *,
    phases: int = 3,
    shapes=None,
    idle: bool = True,
    backpressure: bool = True,
) -> list[MlpPhase]:
    """Random configurations of the MLP engine, each with random vectors, gaps and output stalls.

    Per phase: the layer count (phase 0: ``max_layers``) and sizes (each at 1, at its maximum or in
    between; or ``shapes`` for every phase), per-layer weight and output bitwidths (either end of
    [2, max] likely), signedness, ReLU and bias at random, M and S from the actual accumulators;
    the first two vectors hold the largest and the smallest input code everywhere. Half of the
    input payloads and, after phase 0, the weight tiles carry random bits wherever the engine must
    ignore them (elements past in_size, bits above act_bits, weights outside the matrix).
    Input gaps: the next vector at once (60 %) or 1..2T cycles later (T: cycles per vector).
    Output ready: phases of 1..3T cycles, always ready, ready with probability 0.5, or stalled,
    so that the output FIFO fills, loads wait for credits and the input sees backpressure.

    Args:
        params: engine parameters.
        vectors: N >= phases, split as evenly as possible over the phases.
        seed: NumPy seed; the same seed gives the same workload.
        phases: configurations, each written while the engine is idle.
        shapes: layer sizes ``[in_0, out_0, ..., out_last]`` for every phase, a list of them (one per
            phase), or None (random); see ``phase_shapes``.
        idle: False makes every vector available at cycle 0 of its phase (no input gaps).
        backpressure: False makes the output always ready.
    """
    fixed, phases = phase_shapes(params, shapes, phases)
    if vectors < phases:
        raise ValueError(f"need at least one vector per phase, not {vectors} vectors for {phases} phases")
    rng = np.random.default_rng(seed)
    ab_max = params.max_act_bits
    out = []
    for k in range(phases):
        n = vectors // phases + (k < vectors % phases)
        if fixed is not None:
            sizes = fixed[k]
        else:
            count = params.max_layers if k == 0 else int(rng.integers(1, params.max_layers + 1))
            inner = min(params.max_in, params.max_out)
            sizes = ([_pick(rng, 1, params.max_in)] + [_pick(rng, 1, inner) for _ in range(count - 1)]
                     + [_pick(rng, 1, params.max_out)])
        ab = _pick(rng, 2, ab_max)
        signed = bool(rng.random() < 0.5)
        lo, hi = (-(1 << (ab - 1)), (1 << (ab - 1)) - 1) if signed else (0, (1 << ab) - 1)
        x = rng.integers(lo, hi + 1, size=(n, sizes[0]), dtype=np.int64)
        x[0] = hi
        if n > 1:
            x[1] = lo
        layers, weights, biases = _random_layers(params, rng, sizes, x, ab, signed)
        payloads = _in_payloads(params, rng, x, ab)
        T = vector_cycles(params, layers)
        offers = offer_cycles(rng, n, 2 * T) if idle else np.zeros(n, dtype=np.int64)
        horizon = int(offers[-1]) + (n + 4) * (T + 8) * 3
        ready = ready_pattern(rng, horizon, 1, 3 * T) if backpressure else np.ones(0, dtype=bool)
        junk = rng if k else None  # after phase 0, random padding: the engine must mask it out
        weight_words = [word for l, layer in enumerate(layers)
                        for word in weight_writes(params, l, weights[l], layer.weight_bits, padding=junk)]
        bias_words = [word for l, layer in enumerate(layers) if layer.bias
                      for word in bias_writes(params, l, biases[l])]
        out.append(MlpPhase(layers, weights, biases, x, payloads, offers, ready, weight_words, bias_words))
    return out


@dataclass(frozen=True)
class MlpCell:
    """One cell's MLP for an engine with two weight banks: settings, weights, biases and the loader's writes.

    Attributes:
        layers, weights, biases: as in ``MlpPhase``.
        writes: ``sim.tlm.mlp_engine.cell_writes`` (``cell_words`` of them; in some cells with random
            bits outside the weight matrices).
    """

    layers: tuple[MlpLayer, ...]
    weights: list[np.ndarray]
    biases: list[np.ndarray | None]
    writes: list[tuple]


@dataclass(frozen=True)
class MlpCellRun:
    """A run of cell visits through an engine with two weight banks, from reset (both banks empty).

    Attributes:
        cells: the distinct cells.
        visits: int64 (K,), the cell of each visit (visit k is loaded into bank k % 2).
        inputs: per visit int64 (n_k, in_size of its cell's layer 0), input codes.
        in_payloads: N = sum n_k input payloads in visit order: the codes (with random bits where the
            engine must ignore them, as ``MlpPhase``) and, above them, ``last`` (the visit's last vector).
        offer_cycles: int64 (N,), earliest offer cycle of each vector (non-decreasing).
        ready: bool (R,), output ready per cycle; ready past the end.
        load_cycles: int64 (K,), each visit's loader window (>= its cell's words; module docstring of
            ``sim.tlm.mlp_engine``, part d).
        slots: per visit the sorted offsets in [0, load_cycles[k]) of the cycles that carry its words
            (offset 0 is the cycle after the loader saw the bank free).
    """

    cells: list[MlpCell]
    visits: np.ndarray
    inputs: list[np.ndarray]
    in_payloads: list[int]
    offer_cycles: np.ndarray
    ready: np.ndarray
    load_cycles: np.ndarray
    slots: list[np.ndarray]

    @property
    def counts(self) -> list[int]:
        """n_k, the vectors of each visit."""
        return [len(x) for x in self.inputs]


def random_cell_workload(
    params: MlpEngineParams,
    vectors: int,
    seed: int,
    *,
    cells: int = 3,
    shapes=None,
    idle: bool = True,
    backpressure: bool = True,
) -> MlpCellRun:
    """Random cell visits for an engine with two weight banks (KiloNeRF: samples grouped by grid cell).

    ``cells`` distinct cells, each with its own random layers as ``random_mlp_workload`` makes them (sizes
    from ``shapes``, one list for all or one per cell, or random; cell 0 has ``max_layers`` layers when
    random), bitwidths, ReLU, bias, M and S, weights with random padding in every other cell. Visits pick
    cells at random (the same cell may come twice in a row; it is loaded again); group sizes are 1
    (35 %) or 2..6, the last group takes what is left. Each visit's loader window is its cell's words
    plus nothing (20 %), up to as many again (40 %), or up to twice the visit's compute (40 %), so both
    loads and compute bind; the words sit in random cycles of the window. Input gaps and output
    stalls as in ``random_mlp_workload`` (T: the slowest cell's cycles per vector).

    Args:
        params: engine parameters with ``weight_banks`` 2.
        vectors: N >= 1 vectors over all visits.
        seed: NumPy seed; the same seed gives the same workload.
        cells: distinct cells, >= 1.
        shapes, idle, backpressure: as in ``random_mlp_workload`` (shapes per cell instead of per phase).

    Raises:
        ValueError: one weight bank, bad counts or shapes.
    """
    if not params.banked:
        raise ValueError(f"cell visits need weight_banks 2, not {params.weight_banks}")
    vectors = check_int("vectors", vectors, 1)
    fixed, cells = phase_shapes(params, shapes, cells)
    rng = np.random.default_rng(seed)
    made, codes = [], []
    for j in range(cells):
        if fixed is not None:
            sizes = fixed[j]
        else:
            count = params.max_layers if j == 0 else int(rng.integers(1, params.max_layers + 1))
            inner = min(params.max_in, params.max_out)
            sizes = ([_pick(rng, 1, params.max_in)] + [_pick(rng, 1, inner) for _ in range(count - 1)]
                     + [_pick(rng, 1, params.max_out)])
        ab = _pick(rng, 2, params.max_act_bits)
        signed = bool(rng.random() < 0.5)
        lo, hi = (-(1 << (ab - 1)), (1 << (ab - 1)) - 1) if signed else (0, (1 << ab) - 1)
        x = rng.integers(lo, hi + 1, size=(16, sizes[0]), dtype=np.int64)  # M and S are chosen on these
        x[0], x[1] = hi, lo
        layers, weights, biases = _random_layers(params, rng, sizes, x, ab, signed)
        writes = cell_writes(params, layers, weights, biases, padding=rng if j % 2 else None)
        made.append(MlpCell(layers, weights, biases, writes))
        codes.append((ab, lo, hi))
    counts = []
    while sum(counts) < vectors:
        counts.append(min(1 if rng.random() < 0.35 else int(rng.integers(2, 7)), vectors - sum(counts)))
    visits = rng.integers(0, cells, size=len(counts)).astype(np.int64)
    inputs, payloads, loads, slots = [], [], [], []
    T = {j: vector_cycles(params, cell.layers) for j, cell in enumerate(made)}
    for k, (v, n) in enumerate(zip(visits.tolist(), counts)):
        ab, lo, hi = codes[v]
        x = rng.integers(lo, hi + 1, size=(n, made[v].layers[0].in_size), dtype=np.int64)
        if k == 0:
            x[0] = hi
        inputs.append(x)
        group = _in_payloads(params, rng, x, ab)
        group[-1] |= 1 << (params.max_in * params.max_act_bits)  # last
        payloads += group
        words = cell_words(params, made[v].layers)
        u = rng.random()
        extra = 0 if u < 0.2 else int(rng.integers(1, words + 1)) if u < 0.6 else int(rng.integers(1, 2 * n * T[v] + 2))
        loads.append(words + extra)
        slots.append(np.sort(rng.choice(words + extra, size=words, replace=False)).astype(np.int64))
    t_max = max(T.values())
    offers = offer_cycles(rng, vectors, 2 * t_max) if idle else np.zeros(vectors, dtype=np.int64)
    horizon = int(offers[-1]) + sum(loads) + 2 * len(loads) + (vectors + 4) * (t_max + 8) * 3
    ready = ready_pattern(rng, horizon, 1, 3 * t_max) if backpressure else np.ones(0, dtype=bool)
    return MlpCellRun(made, visits, inputs, payloads, offers, ready, np.array(loads, dtype=np.int64), slots)


def job_workload(params: MlpEngineParams, *, vectors: int = 30, phases: int | None = None, shapes=None,
                 **_other) -> dict:
    """The workload part of a co-simulation job: vectors, phases and the layer sizes per phase (None:
    random), validated (``phase_shapes``); other engines' options are ignored. With two weight banks the
    phases are the distinct cells that random visits pick from (``random_cell_workload``), and the
    shapes are per cell.

    Raises:
        ValueError: fewer vectors than phases (one bank), a bad phase count or size.
    """
    per_phase, phases = phase_shapes(params, shapes, phases)
    vectors = check_int("vectors", vectors, 1)
    if vectors < phases and not params.banked:
        raise ValueError(f"need at least one vector per phase, not {vectors} vectors for {phases} phases")
    return {"vectors": vectors, "phases": phases, "shapes": per_phase}


def summary_lines(s: dict) -> list[str]:
    """The engine's lines of a printed co-simulation summary: its maxima, then per phase the layer
    sizes and bitwidths, the cycles per vector and the cycles; with two weight banks per cell the same,
    then the visits: group sizes and the loader's cycles."""
    p = s["params"]
    lines = [f"R={p['rows']} C={p['cols']} max_in={p['max_in']} max_out={p['max_out']} "
             f"max_layers={p['max_layers']} max bits w{p['max_weight_bits']}/a{p['max_act_bits']} "
             f"mult_bits={p['mult_bits']}" + (f" weight_banks={p['weight_banks']}" if "weight_banks" in p else "")]
    if "visits" in s:
        for j, cell in enumerate(s["cells"]):
            lines.append(f"cell {j}: {_describe_layers(cell['layers'])}, T={cell['cycles_per_vector']} "
                         f"cycles/vector, {cell['words']} words to load")
        visits = s["visits"]
        commits = sum(v["commit_rtl"] == v["commit_tlm"] for v in visits)
        lines.append(f"{len(visits)} visits, groups {s['groups']}; load cycles {sum(s['load_cycles'])} "
                     f"({sum(s['load_words'])} words); commit cycles RTL = TLM for {commits} of {len(visits)}")
        return lines
    for k, ph in enumerate(s.get("phases", [])):
        lines.append(f"phase {k}: {_describe_layers(ph['layers'])}, {ph['vectors']} vectors, "
                     f"T={ph['cycles_per_vector']} cycles/vector; "
                     f"cycles RTL {ph['cycles_rtl']} / TLM {ph['cycles_tlm']}")
    return lines


def _describe_layers(layers: list[dict]) -> str:
    """``in->out->...`` and the weight/activation bits of each layer, e.g. ``13->5->11 (w4a5 w2a3)``."""
    sizes = "->".join(str(x) for x in [layers[0]["in_size"]] + [x["out_size"] for x in layers])
    bits = " ".join(f"w{x['weight_bits']}a{x['act_bits']}" for x in layers)
    return f"{sizes} ({bits})"
