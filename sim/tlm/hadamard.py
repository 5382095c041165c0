"""Cycle-for-cycle transaction-level model of ``hw.hadamard.HadamardEngine`` (DHQ), plus its closed-form timing.

Imports the engine's params (``hw.hadamard.params``) and NumPy only (no Amaranth). Three parts:

(a) ``reference_forward``: the bit-exact integer semantics of one DHQ-quantized linear layer, in NumPy
    int64. ``quant/hadamard.py`` relies on exactly this definition. Per input vector x (n signed
    ``in_bits`` integers, full range), with ``H_n[i, j] = (-1)^popcount(i & j)`` the unnormalised
    Sylvester Hadamard matrix (``hadamard_matrix``; symmetric, entries +-1)::

        t   = x @ H_n                                    # FWHT, exact: |t| <= 2^(in_bits-1) * n
        u   = clamp(rne(t * M_a, S_a), -(2^(a-1) - 1), 2^(a-1) - 1)          # a = act_bits
        acc = u @ W.T + bias                             # W (m, n) narrow weight_bits codes
        y   = clamp(rne(acc * M_o, S_o), -(2^(ob-1) - 1), 2^(ob-1) - 1)      # ob = out_bits

    ``rne(v, S)`` is v / 2^S rounded to the nearest integer, ties to even (``torch.round``), and the
    identity for S = 0. With ``HadamardParams.per_row_scales`` M_o is a vector: row r of y uses
    ``M_o[r]`` (the shift S_o is shared); otherwise one M_o (``cfg.mult_o``) serves every row. The
    clamps are the narrow symmetric ranges of ``quant/quantizers.py``'s "symmetric" scheme. The
    1/sqrt(n) of the orthonormal transform is folded into M_a / 2^S_a. Every intermediate fits in
    int64: ``|acc * M_o| < 2^(prod_o_bits - 1) <= 2^58`` (``hw.hadamard.params.HadamardParams``), so
    no object arrays are needed.

(b) ``HadamardTLM.run``: payloads and the cycle of every input and output transfer. Cycle 0 is the
    first cycle with the engine idle after configuration (``cfg``, weights, biases and, with
    ``per_row_scales``, the per-row multipliers written while idle). A transfer "at cycle t" means
    valid and ready were both high when cycle t's closing rising edge sampled them. Vector i is
    offered from ``max(offer_cycles[i], accept[i-1] + 1)`` until accepted; ``ready[t]`` is the
    output's ready in cycle t (ready past the end). ``schedule`` steps the RTL's control state cycle
    by cycle. ``per_row_scales`` changes no cycle (the multiplier table is read alongside stage 2).

(c) The closed form, no simulation (``vector_cycles``, ``vector_latency``, ``stream_cycles``). With
    RT = ceil(m / R), CT = n / C, k = log2 n, F = k + 3 (``front_cycles``), Q = ``front_depth``
    and a the run-time act_bits (see ``hw.hadamard`` for the derivation)::

        T = RT * CT * a                    cycles per vector = initiation interval at full rate
        latency (input transfer -> output transfer, idle engine, ready output) = F + T + 5 = k + T + 8
        n vectors offered at cycle 0, output always ready: last output transfer at n * T + F + 5

    and in general, for vector k (terms with a negative index are left out)::

        a_k = max(offer_k, a_{k-1} + 1, l_{k-Q})                   input transfer (an input credit)
        l_k = max(a_k + F, l_{k-1} + T, o_{k-4} + 1)                load; issues l_k + 1 .. l_k + T
        o_k = min{t >= max(l_k + T + 5, o_{k-1} + 1) : ready[t]}    output transfer
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from hw.config import check_int
from hw.hadamard.params import HadamardConfig, HadamardParams
from sim.tlm.transfers import ReadyPattern, check_offers, check_range, config_word, pack_vector, unpack_vector

__all__ = [
    "HadamardConfig", "HadamardTLM", "HadamardResult", "hadamard_matrix", "fwht", "rne", "requantize",
    "reference_forward", "vector_cycles", "vector_latency", "stream_cycles", "pack_vector", "unpack_vector",
    "config_word", "weight_writes", "bias_writes", "scale_writes", "array_schedule",
]


# --- integer arithmetic ----------------------------------------------------------------------------
def _check_length(n) -> None:
    if check_int("n", n, 1) & (n - 1):
        raise ValueError(f"n must be a power of two >= 1, not {n!r}")


def hadamard_matrix(n: int) -> np.ndarray:
    """The unnormalised Sylvester Hadamard matrix, int64 (n, n): ``H[i, j] = (-1)^popcount(i & j)``.

    Built by the Sylvester recursion ``H_2m = [[H_m, H_m], [H_m, -H_m]]``, which gives exactly that sign.

    Raises:
        ValueError: n is not a power of two >= 1.
    """
    _check_length(n)
    h = np.ones((1, 1), dtype=np.int64)
    while len(h) < n:
        h = np.block([[h, h], [h, -h]])
    return h


def fwht(x, *, stages: bool = False):
    """``x @ H_n`` along the last axis by log2(n) butterfly stages, as the RTL computes it.

    Stage s (s = 0 .. log2(n) - 1) pairs elements i and i + 2^s (bit s of i clear) into
    ``(v[i] + v[i + 2^s], v[i] - v[i + 2^s])``; the values grow by one bit per stage.

    Args:
        x: int array (..., n), n a power of two.
        stages: also return the value after every stage.

    Returns:
        int64 (..., n); with ``stages``, ``(t, [after stage 0, after stage 1, ...])``.
    """
    v = np.array(x, dtype=np.int64)
    n = v.shape[-1]
    _check_length(n)
    trace = []
    h = 1
    while h < n:
        pairs = v.reshape(v.shape[:-1] + (n // (2 * h), 2, h))
        lo, hi = pairs[..., 0, :], pairs[..., 1, :]
        v = np.stack([lo + hi, lo - hi], axis=-2).reshape(v.shape)
        trace.append(v)
        h *= 2
    return (v, trace) if stages else v


def rne(v, shift: int) -> np.ndarray:
    """``v / 2^shift`` rounded to the nearest integer, ties to even; the identity for shift 0.

    Args:
        v: int array; shift: S >= 0 (|v| < 2^62 so that nothing overflows).

    Returns:
        int64, same shape. The RTL computes it as ``q + (g & (s | q_0))`` with ``q = v >> S``
        (arithmetic), g bit S - 1 of v, s the OR of the bits below it and q_0 the low bit of q.
    """
    v = np.asarray(v, dtype=np.int64)
    if shift == 0:
        return v.copy()
    q = v >> shift
    r = v - (q << shift)  # in [0, 2^S)
    half = np.int64(1) << (shift - 1)
    return q + ((r > half) | ((r == half) & (q & 1 == 1)))


def requantize(v, mult, shift: int, bits: int) -> np.ndarray:
    """``clamp(rne(v * mult, shift), -(2^(bits-1) - 1), 2^(bits-1) - 1)``, int64.

    ``mult``: an int, or an int array broadcast against ``v`` (e.g. (m,) along the last axis of an
    (N, m) ``v``: one multiplier per output row)."""
    lim = (1 << (bits - 1)) - 1
    return np.clip(rne(np.asarray(v, dtype=np.int64) * mult, shift), -lim, lim)


def reference_forward(params: HadamardParams, cfg: HadamardConfig, weights, bias, x, mult_o=None):
    """The bit-exact integer semantics (module docstring, part a). No range checks here.

    Args:
        params: the engine parameters (out_bits).
        cfg: the run-time settings (act_bits, M_a, S_a, M_o, S_o).
        weights: int (m, n), the rotated, quantized weights W H.
        bias: int (m,) at the accumulator scale, or None (zeros).
        x: int (N, n), input vectors.
        mult_o: the output multiplier M_o: None (default) ``cfg.mult_o``; an int; or an int (m,) array,
            one per output row (the engine's table with ``per_row_scales``; ``cfg.mult_o`` unused).

    Returns:
        ``(u, acc, y)``, int64 (N, n), (N, m), (N, m).
    """
    t = fwht(x)
    u = requantize(t, cfg.mult_a, cfg.shift_a, cfg.act_bits)
    acc = u @ np.asarray(weights, dtype=np.int64).T
    if bias is not None:
        acc = acc + np.asarray(bias, dtype=np.int64)[None, :]
    mult = cfg.mult_o if mult_o is None else np.asarray(mult_o, dtype=np.int64)
    y = requantize(acc, mult, cfg.shift_o, params.out_bits)
    return u, acc, y


# --- write-port formats (the drivers' view) --------------------------------------------------------
def weight_writes(params: HadamardParams, weights, *,
                  padding: np.random.Generator | None = None) -> list[tuple[int, int, int]]:
    """Words for the ``weights`` write port that load the weight matrix, one R x C tile per word.

    Args:
        weights: int array (m, n), signed ``weight_bits`` codes.
        padding: what the rows past m of the last row tile hold: None 0, or random codes from this
            generator (the engine drops those rows; testbenches use this to prove it).

    Returns:
        ``[(row_tile, col_tile, data), ...]`` for every tile: field ``r * C + c`` of ``data``
        (``weight_bits`` wide, two's complement) is ``W[row_tile * R + r, col_tile * C + c]``.
    """
    p = params
    w = np.asarray(weights, dtype=np.int64)
    R, C, wb = p.rows, p.cols, p.weight_bits
    padded = np.zeros((p.row_tiles * R, p.n), dtype=np.int64)
    if padding is not None:
        padded[:] = padding.integers(-(1 << (wb - 1)), 1 << (wb - 1), size=padded.shape)
    padded[:p.out_size] = w
    return [(rt, ct, pack_vector(padded[rt * R:(rt + 1) * R, ct * C:(ct + 1) * C].ravel(), wb))
            for rt in range(p.row_tiles) for ct in range(p.col_tiles)]


def bias_writes(params: HadamardParams, bias) -> list[tuple[int, int]]:
    """Words for the ``bias`` write port: ``[(row_tile, data), ...]``, field r of ``data``
    (``bias_bits`` wide, two's complement) is the bias of row ``row_tile * R + r`` (0 past m)."""
    b = np.asarray(bias, dtype=np.int64)
    R = params.rows
    return [(rt, pack_vector(b[rt * R:(rt + 1) * R], params.bias_bits)) for rt in range(params.row_tiles)]


def scale_writes(params: HadamardParams, mult_o, *,
                 padding: np.random.Generator | None = None) -> list[tuple[int, int]]:
    """Words for the ``scales`` write port (``per_row_scales``): ``[(row_tile, data), ...]``, field r of
    ``data`` (``mult_bits`` wide, unsigned) is M_o of row ``row_tile * R + r``.

    Args:
        mult_o: int (m,), the per-row multipliers in [0, 2^mult_bits - 1].
        padding: what the rows past m of the last row tile hold: None 0, or random multipliers from
            this generator (the engine drops those rows).
    """
    p = params
    padded = np.zeros(p.row_tiles * p.rows, dtype=np.int64)
    if padding is not None:
        padded[:] = padding.integers(0, 1 << p.mult_bits, size=padded.shape)
    padded[:p.out_size] = np.asarray(mult_o, dtype=np.int64)
    R = p.rows
    return [(rt, pack_vector(padded[rt * R:(rt + 1) * R], p.mult_bits)) for rt in range(p.row_tiles)]


# --- closed-form timing ----------------------------------------------------------------------------
def vector_cycles(params: HadamardParams, act_bits: int) -> int:
    """T = ceil(m / R) * (n / C) * act_bits: the matrix-vector issue cycles of one vector, which is
    also the initiation interval at full rate. Linear in act_bits and in n; weight_bits changes the
    array's area, not its cycles.

    Raises:
        ValueError: act_bits outside [2, max_act_bits].
    """
    return params.row_tiles * params.col_tiles * check_int("act_bits", act_bits, 2, params.max_act_bits)


def vector_latency(params: HadamardParams, act_bits: int) -> int:
    """Cycles from an input transfer to the output transfer of the same vector, engine idle, output
    ready: ``F + T + PIPELINE_STAGES + 1`` = log2 n + T + 8 (front end F = log2 n + 3, issue T,
    pipeline 4, output FIFO 1)."""
    return params.front_cycles + vector_cycles(params, act_bits) + params.PIPELINE_STAGES + 1


def stream_cycles(params: HadamardParams, act_bits: int, vectors: int) -> int:
    """Total cycles (last output transfer + 1) of ``vectors`` vectors all offered at cycle 0 with the
    output always ready: ``vectors * T + F + 6`` (0 for no vectors)."""
    if check_int("vectors", vectors, 0) == 0:
        return 0
    return vectors * vector_cycles(params, act_bits) + params.front_cycles + params.PIPELINE_STAGES + 2


# --- the cycle-stepped control state -----------------------------------------------------------------------
def array_schedule(offer_cycles, ready, *, front_cycles: int, front_depth: int, issue_cycles: int, stages: int,
                   out_depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Transfer cycles of N vectors through a matrix-vector array with a front end, input credits, an issue
    unit, a fixed pipeline and an output FIFO with credits (``hw.hadamard``, ``hw.fixed_mv``), stepping the
    RTL's control state one cycle at a time.

    Args:
        offer_cycles: int (N,), the first cycle vector i may be offered (from ``max(offer_cycles[i],
            accept[i-1] + 1)`` until accepted).
        ready: bool (R,), output ready per cycle; cycles >= R are ready. None: always ready.
        front_cycles: F, cycles from an input transfer to the first cycle the vector can be loaded.
        front_depth: Q, input credits (vectors accepted but not loaded).
        issue_cycles: T, issue cycles per vector (a vector loaded at l issues l + 1 .. l + T).
        stages: pipeline registers after the issue stage (the output of a vector whose last issue is at
            cycle c is pushed at c + stages and visible from c + stages + 1).
        out_depth: D, output FIFO entries (output credits, held from load to output transfer).

    Returns:
        ``(accept_cycles, out_cycles)``, int64 (N,).

    State mirrored from the RTL: the input credits (vectors in the front end, each with the cycle it can
    be loaded), the issue unit (idle, or issuing with its remaining cycles), the vector ends travelling
    down the pipeline, the output FIFO and its credits. ``i.ready`` is (credits < Q) or a load in this
    cycle; a load needs a vector that has reached the head, the issue unit idle or on its last cycle, and
    an output credit.
    """
    offers = check_offers(offer_cycles)
    ready_at = ReadyPattern(ready)
    n = len(offers)
    F, Q, T = front_cycles, front_depth, issue_cycles
    accept = np.full(n, -1, dtype=np.int64)
    out = np.full(n, -1, dtype=np.int64)
    front: deque[tuple[int, int]] = deque()  # (first cycle it can be loaded, vector), credits
    issuing, vec, left = False, -1, 0
    ends: deque[tuple[int, int]] = deque()  # (cycle in the last stage, vector)
    fifo: deque[tuple[int, int]] = deque()  # (first cycle visible at the output, vector)
    credits = 0
    nxt = done = 0
    t = 0
    while done < n:
        o_fire = bool(fifo) and fifo[0][0] <= t and ready_at(t)
        load = bool(front) and front[0][0] <= t and (not issuing or left == 1) and credits < out_depth
        in_fire = nxt < n and offers[nxt] <= t and (len(front) < Q or load)
        end = ends[0] if ends and ends[0][0] == t else None
        # --- closing edge of cycle t ---
        if issuing:
            if left == 1:
                ends.append((t + stages, vec))
                issuing = False
            else:
                left -= 1
        if end is not None:
            fifo.append((t + 1, ends.popleft()[1]))
        if load:
            issuing, vec, left = True, front.popleft()[1], T
        if in_fire:
            accept[nxt] = t
            front.append((t + F, nxt))
            nxt += 1
        if o_fire:
            out[fifo.popleft()[1]] = t
            done += 1
        credits += int(load) - int(o_fire)
        t += 1
    return accept, out


# --- the model -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HadamardResult:
    """What the model predicts for one run of N vectors.

    Attributes:
        accept_cycles: int64 (N,), cycle of each input transfer.
        out_cycles: int64 (N,), cycle of each output transfer (outputs leave in input order).
        activations: int64 (N, n), the requantized transform u.
        accumulators: int64 (N, m), ``u @ W.T + bias``.
        outputs: int64 (N, m), output values y.
        payloads: N output payloads (``pack_vector`` of y, ``out_bits`` per element).
        cycles: last output transfer cycle + 1 (0 for no vectors).
    """

    accept_cycles: np.ndarray
    out_cycles: np.ndarray
    activations: np.ndarray
    accumulators: np.ndarray
    outputs: np.ndarray
    payloads: list[int]
    cycles: int


class HadamardTLM:
    """Model of one ``HadamardEngine`` instance under one configuration.

    Args:
        params: the engine parameters.
        cfg: the run-time settings, validated by ``params.check_config``.
        weights: int array (m, n) of signed ``weight_bits`` codes in the narrow range
            [-(2^(wb-1) - 1), 2^(wb-1) - 1].
        bias: int array (m,) of signed ``bias_bits`` codes, or None (zeros).
        mult_o: with ``params.per_row_scales`` (and only then; None otherwise): int array (m,), the
            per-row output multipliers M_o[r] in [0, 2^mult_bits - 1] (the ``scales`` table; the
            configuration's ``mult_o`` is then unused).

    Raises:
        hw.config.ConfigError: a bad configuration. ValueError: a weight, bias or per-row multiplier
            of the wrong shape or out of range, naming the position and the value; per-row
            multipliers missing with ``per_row_scales``, or given without it.
    """

    def __init__(self, params: HadamardParams, cfg: HadamardConfig, weights, bias=None, mult_o=None) -> None:
        self.params = p = params
        self.cfg = params.check_config(cfg)
        w = np.asarray(weights)
        if w.shape != (p.out_size, p.n) or not np.issubdtype(w.dtype, np.integer):
            raise ValueError(f"weights must be an integer array of shape (out_size, n) = {(p.out_size, p.n)}, "
                             f"not {w.dtype} {w.shape}")
        lim = (1 << (p.weight_bits - 1)) - 1
        check_range(w, -lim, lim, "weights", f"narrow signed {p.weight_bits}-bit")
        self.weights = w.astype(np.int64)
        if bias is None:
            bias = np.zeros(p.out_size, dtype=np.int64)
        b = np.asarray(bias)
        if b.shape != (p.out_size,) or not np.issubdtype(b.dtype, np.integer):
            raise ValueError(f"bias must be an integer array of shape ({p.out_size},), not {b.dtype} {b.shape}")
        half = 1 << (p.bias_bits - 1)
        check_range(b, -half, half - 1, "bias", f"signed {p.bias_bits}-bit")
        self.bias = b.astype(np.int64)
        self.mult_o = None
        if p.per_row_scales:
            if mult_o is None:
                raise ValueError(f"per_row_scales=True: the per-row multipliers mult_o (an integer array of shape "
                                 f"({p.out_size},)) are required")
            mo = np.asarray(mult_o)
            if mo.shape != (p.out_size,) or not np.issubdtype(mo.dtype, np.integer):
                raise ValueError(f"mult_o must be an integer array of shape ({p.out_size},), not {mo.dtype} {mo.shape}")
            check_range(mo, 0, (1 << p.mult_bits) - 1, "mult_o", f"unsigned {p.mult_bits}-bit")
            self.mult_o = mo.astype(np.int64)
        elif mult_o is not None:
            raise ValueError("per-row multipliers mult_o need HadamardParams.per_row_scales=True (this engine has one "
                             "M_o, cfg.mult_o)")
        self.T = vector_cycles(p, cfg.act_bits)

    # --- data path --------------------------------------------------------------------------------
    def check_inputs(self, vectors) -> np.ndarray:
        """Validate input vectors: int (N, n) in the full signed ``in_bits`` range."""
        p = self.params
        x = np.asarray(vectors)
        if x.ndim != 2 or x.shape[1] != p.n or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"vectors must be an integer array of shape (N, {p.n}), not {x.dtype} {x.shape}")
        half = 1 << (p.in_bits - 1)
        check_range(x, -half, half - 1, "vectors", f"signed {p.in_bits}-bit")
        return x.astype(np.int64)

    def forward(self, vectors):
        """``(u, acc, y)`` of the vectors, int64; see ``reference_forward``."""
        return reference_forward(self.params, self.cfg, self.weights, self.bias, self.check_inputs(vectors),
                                 self.mult_o)

    def in_payload(self, vector) -> int:
        """Input payload of one vector (n elements of ``in_bits``)."""
        return pack_vector(vector, self.params.in_bits)

    def payload(self, output) -> int:
        """Output payload of one output vector (m elements of ``out_bits``)."""
        return pack_vector(output, self.params.out_bits)

    # --- timing -----------------------------------------------------------------------------------
    def schedule(self, offer_cycles, ready=None) -> tuple[np.ndarray, np.ndarray]:
        """Transfer cycles of N vectors, stepping the RTL's control state one cycle at a time.

        Args:
            offer_cycles: int (N,), the first cycle vector i may be offered (see the module docstring).
            ready: bool (R,), output ready per cycle; cycles >= R are ready. None: always ready.

        Returns:
            ``(accept_cycles, out_cycles)``, int64 (N,).

        State mirrored from ``hw.hadamard``: the input credits (vectors in the front end, i.e. the
        transform pipeline or the activation FIFO, each with the cycle it reaches the FIFO's head
        region), the issue unit (idle, or issuing with its remaining cycles), the vector ends
        travelling down the PIPELINE_STAGES registers, the output FIFO and its credits.
        """
        p = self.params
        return array_schedule(offer_cycles, ready, front_cycles=p.front_cycles, front_depth=p.front_depth,
                              issue_cycles=self.T, stages=p.PIPELINE_STAGES, out_depth=p.OUT_FIFO_DEPTH)

    def run(self, vectors, offer_cycles=None, ready=None) -> HadamardResult:
        """Predict a whole run: outputs (``forward``) and transfer cycles (``schedule``).

        Args:
            vectors: int (N, n), input vectors.
            offer_cycles: int (N,); default all zeros (a source that is always valid).
            ready: bool (R,) output ready pattern; default always ready.
        """
        x = self.check_inputs(vectors)
        n = len(x)
        offer_cycles = check_offers(offer_cycles, n, "vectors")
        u, acc, y = reference_forward(self.params, self.cfg, self.weights, self.bias, x, self.mult_o)
        accept, out = self.schedule(offer_cycles, ready)
        payloads = [self.payload(row) for row in y]
        return HadamardResult(accept, out, u, acc, y, payloads, int(out.max()) + 1 if n else 0)
