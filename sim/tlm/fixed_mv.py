"""Cycle-for-cycle transaction-level model of ``hw.fixed_mv.FixedMatVec``, plus its closed-form timing.

Imports the engine's params (``hw.fixed_mv.params``), NumPy and the shared array schedule
(``sim.tlm.hadamard.array_schedule``) only (no Amaranth). Three parts:

(a) ``reference_forward``: the bit-exact integer semantics of one full-precision fixed-point linear layer.
    Per input vector x (n signed ``data_bits`` integers, full range), with W (m, n) signed ``data_bits``
    codes (full range) and a bias at the accumulator scale (signed ``bias_bits``)::

        acc = x @ W.T + bias                                         # exact: acc_bits = 2d + ceil(log2 n) + 1
        y   = clamp(rne(acc, S_o), -2^(out_bits-1), 2^(out_bits-1) - 1)

    ``rne(v, S)`` is v / 2^S rounded to the nearest integer, ties to even, the identity for S = 0 (as
    ``sim.tlm.hadamard.rne``; the RTL computes q + (g & (s | q_0)) with q = v >> S). The clamp saturates to
    the full two's-complement range of out_bits (a fixed-point output, not a quantizer's narrow range). The
    accumulator exceeds int64 from d = 30 or so (``FixedMvParams.acc_bits`` up to 72 bits): there the
    reference computes on Python integers (NumPy object arrays), elsewhere in int64.

(b) ``FixedMvTLM.run``: payloads and the cycle of every input and output transfer. Cycle 0 is the first cycle
    with the engine idle after configuration (``cfg``, weights and biases written while idle). A transfer "at
    cycle t" means valid and ready were both high when cycle t's closing rising edge sampled them. Vector i is
    offered from ``max(offer_cycles[i], accept[i-1] + 1)`` until accepted; ``ready[t]`` is the output's ready in
    cycle t (ready past the end). ``schedule`` steps the RTL's control state cycle by cycle
    (``array_schedule`` with F = 1, Q = 1, T, 4 stages, D = ``out_fifo_depth``).

(c) The closed form, no simulation (``vector_cycles``, ``vector_latency``, ``stream_cycles``). With RT =
    ceil(m / R), CT = ceil(n / C) (see ``hw.fixed_mv`` for the derivation)::

        T = RT * CT                      cycles per vector = initiation interval at full rate (any data_bits)
        latency (input transfer -> output transfer, idle engine, ready output) = 1 + T + 5 = T + 6
        N vectors offered at cycle 0, output always ready: last output transfer at N * T + 6

    and in general, for vector k (terms with a negative index are left out)::

        a_k = max(offer_k, a_{k-1} + 1, l_{k-1})                     input transfer (the buffer is free)
        l_k = max(a_k + 1, l_{k-1} + T, o_{k-D} + 1)                 load; issues l_k + 1 .. l_k + T
        o_k = min{t >= max(l_k + T + 5, o_{k-1} + 1) : ready[t]}     output transfer
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.config import check_int
from hw.fixed_mv.params import FixedMvConfig, FixedMvParams
from sim.tlm.hadamard import array_schedule
from sim.tlm.transfers import check_offers, check_range, config_word, pack_vector, unpack_vector

__all__ = [
    "FixedMvConfig", "FixedMvTLM", "FixedMvResult", "rne", "reference_forward", "vector_cycles", "vector_latency",
    "stream_cycles", "weight_writes", "bias_writes", "pack_vector", "unpack_vector", "config_word", "int_array",
]


# --- integer arithmetic ----------------------------------------------------------------------------
def _dtype(params: FixedMvParams):
    """int64 when every intermediate fits (|acc| < 2^62 with room for the rounding), else Python ints."""
    return np.int64 if params.acc_bits <= 62 else object


def int_array(a, name: str) -> np.ndarray:
    """``a`` as an integer array: an integer dtype, or an object array of Python / NumPy integers (values
    beyond int64).

    Raises:
        ValueError: another dtype, or an object element that is not an integer (a bool is not), naming it.
    """
    arr = np.asarray(a)
    if np.issubdtype(arr.dtype, np.integer):
        return arr
    if arr.dtype == object:
        for pos, v in np.ndenumerate(arr):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"{name}{list(pos)} = {v!r} is not an integer")
        return arr
    raise ValueError(f"{name} must be an integer array, not {arr.dtype}")


def rne(v, shift: int) -> np.ndarray:
    """``v / 2^shift`` rounded to the nearest integer, ties to even; the identity for shift 0.

    Args:
        v: int64 or object (Python int) array; shift: S >= 0.

    Returns:
        Same dtype and shape (exact for Python ints of any size).
    """
    v = np.asarray(v)
    if shift == 0:
        return v.copy()
    q = v >> shift
    r = v - (q << shift)  # in [0, 2^S)
    half = 1 << (shift - 1)
    up = (r > half) | ((r == half) & ((q & 1) == 1))
    return q + up.astype(np.int64)


def reference_forward(params: FixedMvParams, cfg: FixedMvConfig, weights, bias, x):
    """The bit-exact integer semantics (module docstring, part a). No range checks here.

    Args:
        params: the engine parameters (widths). cfg: the run-time setting (S_o).
        weights: int (m, n), signed data_bits codes. bias: int (m,) at the accumulator scale, or None (zeros).
        x: int (N, n), input vectors.

    Returns:
        ``(acc, y)``: acc (N, m) int64, or object (Python ints) when ``acc_bits > 62``; y (N, m) int64.
    """
    dt = _dtype(params)
    acc = np.asarray(x).astype(dt) @ np.asarray(weights).astype(dt).T
    if bias is not None:
        acc = acc + np.asarray(bias).astype(dt)[None, :]
    half = 1 << (params.out_bits - 1)
    y = np.minimum(np.maximum(rne(acc, cfg.shift_o), -half), half - 1)
    return acc, y.astype(np.int64)


# --- write-port formats (the drivers' view) --------------------------------------------------------
def weight_writes(params: FixedMvParams, weights, *,
                  padding: np.random.Generator | None = None) -> list[tuple[int, int, int]]:
    """Words for the ``weights`` write port that load the weight matrix, one R x C tile per word.

    Args:
        weights: int array (m, n), signed ``data_bits`` codes.
        padding: what the rows past m and the columns past n hold: None 0, or random codes from this generator
            (the engine ignores them; testbenches use this to prove it).

    Returns:
        ``[(row_tile, col_tile, data), ...]`` for every tile: field ``r * C + c`` of ``data`` (``data_bits``
        wide, two's complement) is ``W[row_tile * R + r, col_tile * C + c]``.
    """
    p = params
    R, C, d = p.rows, p.cols, p.data_bits
    padded = np.zeros((p.row_tiles * R, p.padded_n), dtype=np.int64)
    if padding is not None:
        padded[:] = padding.integers(-(1 << (d - 1)), 1 << (d - 1), size=padded.shape)
    padded[:p.out_size, :p.n] = np.asarray(weights, dtype=np.int64)
    return [(rt, ct, pack_vector(padded[rt * R:(rt + 1) * R, ct * C:(ct + 1) * C].ravel(), d))
            for rt in range(p.row_tiles) for ct in range(p.col_tiles)]


def bias_writes(params: FixedMvParams, bias) -> list[tuple[int, int]]:
    """Words for the ``bias`` write port: ``[(row_tile, data), ...]``, field r of ``data`` (``bias_bits`` wide,
    two's complement) is the bias of row ``row_tile * R + r`` (0 past m)."""
    b = list(np.asarray(bias).ravel())
    R = params.rows
    return [(rt, pack_vector(b[rt * R:(rt + 1) * R], params.bias_bits)) for rt in range(params.row_tiles)]


# --- closed-form timing ----------------------------------------------------------------------------
def vector_cycles(params: FixedMvParams) -> int:
    """T = ceil(m / R) * ceil(n / C): issue cycles of one vector, the initiation interval at full rate. The
    same at every data_bits (the array is bit-parallel: the width changes its area, not its cycles)."""
    return params.vector_cycles


def vector_latency(params: FixedMvParams) -> int:
    """Cycles from an input transfer to the output transfer of the same vector, engine idle, output ready:
    ``FRONT_CYCLES + T + PIPELINE_STAGES + 1`` = T + 6."""
    return params.FRONT_CYCLES + params.vector_cycles + params.PIPELINE_STAGES + 1


def stream_cycles(params: FixedMvParams, vectors: int) -> int:
    """Total cycles (last output transfer + 1) of ``vectors`` vectors all offered at cycle 0 with the output
    always ready: ``vectors * T + 7`` (0 for no vectors)."""
    if check_int("vectors", vectors, 0) == 0:
        return 0
    return vectors * params.vector_cycles + params.FRONT_CYCLES + params.PIPELINE_STAGES + 2


# --- the model -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FixedMvResult:
    """What the model predicts for one run of N vectors.

    Attributes:
        accept_cycles: int64 (N,), cycle of each input transfer.
        out_cycles: int64 (N,), cycle of each output transfer (outputs leave in input order).
        accumulators: (N, m) ``x @ W.T + bias``, int64 or object (``reference_forward``).
        outputs: int64 (N, m), output values y.
        payloads: N output payloads (``pack_vector`` of y, ``out_bits`` per element).
        cycles: last output transfer cycle + 1 (0 for no vectors).
    """

    accept_cycles: np.ndarray
    out_cycles: np.ndarray
    accumulators: np.ndarray
    outputs: np.ndarray
    payloads: list[int]
    cycles: int


class FixedMvTLM:
    """Model of one ``FixedMatVec`` instance under one configuration.

    Args:
        params: the engine parameters.
        cfg: the run-time setting, validated by ``params.check_config``.
        weights: int array (m, n) of signed ``data_bits`` codes (full range).
        bias: int array (m,) of signed ``bias_bits`` codes (an object array of Python ints where they exceed
            int64), or None (zeros).

    Raises:
        hw.config.ConfigError: a bad configuration. ValueError: a weight or bias of the wrong shape or out of
            range, naming the position and the value.
    """

    def __init__(self, params: FixedMvParams, cfg: FixedMvConfig, weights, bias=None) -> None:
        self.params = p = params
        self.cfg = params.check_config(cfg)
        w = int_array(weights, "weights")
        if w.shape != (p.out_size, p.n):
            raise ValueError(f"weights must be an integer array of shape (out_size, n) = {(p.out_size, p.n)}, "
                             f"not {w.dtype} {w.shape}")
        half = 1 << (p.data_bits - 1)
        check_range(w, -half, half - 1, "weights", f"signed {p.data_bits}-bit")
        self.weights = w.astype(np.int64)
        b = int_array(np.zeros(p.out_size, dtype=np.int64) if bias is None else bias, "bias")
        if b.shape != (p.out_size,):
            raise ValueError(f"bias must be an integer array of shape ({p.out_size},), not {b.dtype} {b.shape}")
        half = 1 << (p.bias_bits - 1)
        check_range(b, -half, half - 1, "bias", f"signed {p.bias_bits}-bit")
        self.bias = b.astype(_dtype(p))
        self.T = vector_cycles(p)

    # --- data path --------------------------------------------------------------------------------
    def check_inputs(self, vectors) -> np.ndarray:
        """Validate input vectors: int (N, n) in the full signed ``data_bits`` range; returns int64."""
        p = self.params
        x = np.asarray(vectors)
        if x.ndim != 2 or x.shape[1] != p.n or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"vectors must be an integer array of shape (N, {p.n}), not {x.dtype} {x.shape}")
        half = 1 << (p.data_bits - 1)
        check_range(x, -half, half - 1, "vectors", f"signed {p.data_bits}-bit")
        return x.astype(np.int64)

    def forward(self, vectors):
        """``(acc, y)`` of the vectors; see ``reference_forward``."""
        return reference_forward(self.params, self.cfg, self.weights, self.bias, self.check_inputs(vectors))

    def in_payload(self, vector) -> int:
        """Input payload of one vector (n elements of ``data_bits``)."""
        return pack_vector(vector, self.params.data_bits)

    def payload(self, output) -> int:
        """Output payload of one output vector (m elements of ``out_bits``)."""
        return pack_vector(output, self.params.out_bits)

    # --- timing -----------------------------------------------------------------------------------
    def schedule(self, offer_cycles, ready=None) -> tuple[np.ndarray, np.ndarray]:
        """Transfer cycles of N vectors, stepping the RTL's control state one cycle at a time
        (``sim.tlm.hadamard.array_schedule``: the input buffer, F = 1 and Q = 1; the issue unit, T cycles; the
        4 pipeline stages; the output FIFO and its D = ``out_fifo_depth`` credits).

        Args:
            offer_cycles: int (N,), the first cycle vector i may be offered (see the module docstring).
            ready: bool (R,), output ready per cycle; cycles >= R are ready. None: always ready.

        Returns:
            ``(accept_cycles, out_cycles)``, int64 (N,).
        """
        p = self.params
        return array_schedule(offer_cycles, ready, front_cycles=p.FRONT_CYCLES, front_depth=p.IN_DEPTH,
                              issue_cycles=self.T, stages=p.PIPELINE_STAGES, out_depth=p.out_fifo_depth)

    def run(self, vectors, offer_cycles=None, ready=None) -> FixedMvResult:
        """Predict a whole run: outputs (``forward``) and transfer cycles (``schedule``).

        Args:
            vectors: int (N, n), input vectors.
            offer_cycles: int (N,); default all zeros (a source that is always valid).
            ready: bool (R,) output ready pattern; default always ready.
        """
        x = self.check_inputs(vectors)
        n = len(x)
        offer_cycles = check_offers(offer_cycles, n, "vectors")
        acc, y = reference_forward(self.params, self.cfg, self.weights, self.bias, x)
        accept, out = self.schedule(offer_cycles, ready)
        payloads = [self.payload(row) for row in y]
        return FixedMvResult(accept, out, acc, y, payloads, int(out.max()) + 1 if n else 0)
