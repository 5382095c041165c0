"""Seeded random workloads for co-simulation and benchmarks (pure NumPy, no simulator needed)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.params import HadamardConfig, HadamardParams, HashEncoderParams, MlpEngineParams, MlpLayer
from sim.tlm import hadamard as had
from sim.tlm.mlp_engine import bias_writes, pack_vector, reference_forward, vector_cycles, weight_writes

__all__ = ["Traffic", "random_traffic", "MlpPhase", "random_mlp_workload", "check_shapes", "HadamardPhase",
           "random_hadamard_workload", "offer_cycles", "ready_pattern", "count_ties"]


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
    offers = offer_cycles(rng, points, 3 * params.groups) if idle else np.zeros(points, dtype=np.int64)
    horizon = int(offers[-1]) + 4 * points * params.groups + 64
    ready = ready_pattern(rng, horizon, 8, 64) if backpressure else np.ones(0, dtype=bool)
    return Traffic(coords, tables, offers, ready)


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


# --- MLP engine ------------------------------------------------------------------------------------
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
    for k, size in enumerate(sizes):
        hi = params.max_in if k == 0 else params.max_out if k == len(sizes) - 1 else min(params.max_in, params.max_out)
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 1 <= size <= hi:
            raise ValueError(f"shapes[{k}] must be an integer in [1, {hi}], not {size!r}")
    return [int(s) for s in sizes]


def _pick(rng, lo: int, hi: int) -> int:
    """A value in [lo, hi], either end with probability 0.2 each."""
    u = rng.random()
    return hi if u < 0.2 else lo if u < 0.4 else int(rng.integers(lo, hi + 1))


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
        shapes: layer sizes ``[in_0, out_0, ..., out_last]`` for every phase, or None (random).
        idle: False makes every vector available at cycle 0 of its phase (no input gaps).
        backpressure: False makes the output always ready.
    """
    if phases < 1 or vectors < phases:
        raise ValueError(f"need at least one vector per phase, not {vectors} vectors for {phases} phases")
    fixed = None if shapes is None else check_shapes(params, shapes)
    rng = np.random.default_rng(seed)
    ab_max = params.max_act_bits
    out = []
    for k in range(phases):
        n = vectors // phases + (k < vectors % phases)
        if fixed is not None:
            sizes = fixed
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
        payloads = []
        full = (1 << (params.max_in * ab_max)) - 1
        for row in x:
            code = pack_vector(row & ((1 << ab) - 1), ab_max)  # the layer-0 codes in the low bits ...
            if rng.random() < 0.5:  # ... and random bits everywhere the engine must ignore
                noise = int.from_bytes(rng.bytes((params.max_in * ab_max + 7) // 8), "little") & full
                keep = pack_vector([(1 << ab) - 1] * sizes[0], ab_max)
                code |= noise & ~keep
            payloads.append(code)
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


# --- Hadamard datapath -----------------------------------------------------------------------------
@dataclass(frozen=True)
class HadamardPhase:
    """One configuration of the Hadamard datapath and the vectors streamed through it.

    Attributes:
        cfg: the run-time settings (valid for the params).
        weights: int64 (m, n), narrow signed weight codes.
        bias: int64 (m,), signed ``bias_bits`` codes (zeros in some phases).
        inputs: int64 (N, n), input vectors.
        in_payloads: N input payloads (``pack_vector`` of the inputs, ``in_bits`` per element).
        offer_cycles: int64 (N,), earliest cycle each vector is offered (non-decreasing).
        ready: bool (R,), output ready per cycle; cycles >= R are ready.
        weight_words: ``(row_tile, col_tile, data)`` for the ``weights`` port (``weight_writes``; after
            phase 0 with random codes in the rows past m).
        bias_words: ``(row_tile, data)`` for the ``bias`` port.
    """

    cfg: HadamardConfig
    weights: np.ndarray
    bias: np.ndarray
    inputs: np.ndarray
    in_payloads: list[int]
    offer_cycles: np.ndarray
    ready: np.ndarray
    weight_words: list[tuple[int, int, int]]
    bias_words: list[tuple[int, int]]


def count_ties(v, mult: int, shift: int) -> int:
    """How many of ``v * mult`` lie exactly halfway between two multiples of 2^shift (0 for shift 0):
    the cases where round-half-to-even differs from round-half-up."""
    if shift == 0:
        return 0
    low = (np.asarray(v, dtype=np.int64) * mult) & ((1 << shift) - 1)
    return int((low == 1 << (shift - 1)).sum())


def _scale(rng, params: HadamardParams, values: np.ndarray, bits: int, shift_max: int, ties: bool) -> tuple[int, int]:
    """M and S such that ``rne(values * M, S)`` spans a ``bits``-bit range: a typical value (the 75th
    percentile) lands at 0.4..1.5 times the range's limit, so that most do not clamp and some do.
    ``ties``: M = 1 or 3 and S >= 1 small, so that many products are exact ties."""
    mult = int(rng.integers(0, min(2, 1 << (params.mult_bits - 1)))) * 2 + 1 if ties else \
        int(rng.integers(1 << (params.mult_bits - 1), 1 << params.mult_bits))
    peak = max(1.0, float(np.percentile(np.abs(values), 75)))
    target = max(1, (1 << (bits - 1)) - 1) * rng.uniform(0.4, 1.5)
    shift = int(np.clip(round(np.log2(peak * mult / target)), 1 if ties else 0, shift_max))
    return mult, shift


def random_hadamard_workload(
    params: HadamardParams,
    vectors: int,
    seed: int,
    *,
    phases: int = 3,
    idle: bool = True,
    backpressure: bool = True,
) -> list[HadamardPhase]:
    """Random configurations of the Hadamard datapath, each with random vectors, gaps and output stalls.

    Per phase: act_bits (phase 0 max_act_bits, phase 1 two bits, then either end of [2, max] likely),
    weights in the narrow range with both extremes present, a bias (or zeros, 30 %), and the scales
    chosen from the transform outputs and accumulators of the random vectors so that outputs span
    their range. The first two vectors of every phase hold the smallest and the largest input
    everywhere (the transform's full growth, t_0 = -n 2^(in_bits-1); u_0 mostly clamps). Every third
    phase (phase 2, 5, ...) is a *ties* phase: inputs in [-2, 1] with odd sums (so every t is odd),
    act_bits max, M_a = 1 or 3 and S_a = 1 (every activation of the random vectors rounds from an
    exact tie), weights mostly in [-1, 1], M_o = 1 or 3 and a small S_o, so that round-half-to-even
    shows (``count_ties``). After phase 0 the rows past m of the last weight row tile carry random
    codes (the engine must drop them). Input gaps: the next vector at once (60 %) or 1..2T cycles
    later (T: cycles per vector). Output ready: segments of 1..3T cycles, always ready, ready with
    probability 0.5, or stalled, so that the output FIFO fills, loads wait for credits and the input
    sees backpressure.

    Args:
        params: engine parameters.
        vectors: N >= phases, split as evenly as possible over the phases.
        seed: NumPy seed; the same seed gives the same workload.
        phases: configurations, each written while the engine is idle.
        idle: False makes every vector available at cycle 0 of its phase (no input gaps).
        backpressure: False makes the output always ready.
    """
    if phases < 1 or vectors < phases:
        raise ValueError(f"need at least one vector per phase, not {vectors} vectors for {phases} phases")
    p = params
    rng = np.random.default_rng(seed)
    half_in, lim_w = 1 << (p.in_bits - 1), (1 << (p.weight_bits - 1)) - 1
    out = []
    for k in range(phases):
        count = vectors // phases + (k < vectors % phases)
        ties = k % 3 == 2
        ab = p.max_act_bits if k == 0 or ties else 2 if k == 1 else _pick(rng, 2, p.max_act_bits)
        lo, hi = (-2, 1) if ties else (-half_in, half_in - 1)
        x = rng.integers(lo, hi + 1, size=(count, p.n), dtype=np.int64)
        if ties:  # odd sums: every t_j is odd (t_j = sum_i +-x_i), so S_a = 1 makes every product a tie
            x[:, 0] += np.where(x.sum(axis=1) % 2 == 0, np.where(x[:, 0] < hi, 1, -1), 0)
        x[0] = -half_in
        if count > 1:
            x[1] = half_in - 1
        typical = slice(2, None) if count > 2 else slice(None)  # the random vectors set the scales
        t = had.fwht(x)
        mult_a, shift_a = _scale(rng, p, t[typical], ab, p.shift_a_max, ties)
        shift_a = 1 if ties else shift_a
        u = had.requantize(t, mult_a, shift_a, ab)
        w_max = 1 if ties else lim_w
        w = rng.integers(-w_max, w_max + 1, size=(p.out_size, p.n), dtype=np.int64)
        w.flat[rng.integers(0, w.size)] = -lim_w
        w.flat[rng.integers(0, w.size)] = lim_w
        dot = u @ w.T
        bias = np.zeros(p.out_size, dtype=np.int64)
        if rng.random() < 0.7:
            bmax = (1 << (p.bias_bits - 1)) - 1
            scale = int(min(bmax, max(1, np.abs(dot[typical if ties else slice(None)]).max())))
            bias = rng.integers(-scale, scale + 1, size=p.out_size, dtype=np.int64)
        mult_o, shift_o = _scale(rng, p, (dot + bias)[typical], p.out_bits, p.shift_o_max, ties)
        cfg = HadamardConfig(act_bits=ab, mult_a=mult_a, shift_a=shift_a, mult_o=mult_o, shift_o=shift_o)
        T = had.vector_cycles(p, ab)
        offers = offer_cycles(rng, count, 2 * T) if idle else np.zeros(count, dtype=np.int64)
        horizon = int(offers[-1]) + (count + 4) * (T + p.front_cycles + 8) * 3
        ready = ready_pattern(rng, horizon, 1, 3 * T) if backpressure else np.ones(0, dtype=bool)
        words = had.weight_writes(p, w, padding=rng if k else None)
        out.append(HadamardPhase(cfg, w, bias, x, [pack_vector(row, p.in_bits) for row in x], offers, ready, words,
                                 had.bias_writes(p, bias)))
    return out
