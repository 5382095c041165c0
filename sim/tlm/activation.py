"""Model of ``hw.activation.ActivationUnit``: the table lookup (``activation_reference``), the table
contents for a fake-quantized activation (``activation_table``), vectorized, and the cycle-for-cycle
model (``ActivationTLM``).

A B-bit signed input code z indexes the table at ``(z + 2^(B-1)) >> max(0, B - A)`` (A = index_bits):
every code when B <= A, else the top A bits (buckets of 2^(B-A) codes).

Timing (``ActivationTLM.run``, ``sim.tlm.credit_pipe``): one vector of ``lanes`` codes per cycle;
L = ``ActivationParams.LATENCY`` = 3 cycles from an input transfer to the earliest output transfer
(index register, table read, output FIFO), D = ``OUT_FIFO_DEPTH`` = 4 credits::

    a_k = max(offer_k, a_{k-1} + 1, o_{k-4} + 1)                    input transfer
    o_k = min{t >= max(a_k + 3, o_{k-1} + 1) : ready[t]}            output transfer

N vectors offered at cycle 0 with the output always ready: last output transfer + 1 = N + 3. Cycle 0
is the first cycle with the unit idle after the configuration and the table were written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hw.activation.params import ActivationConfig, ActivationParams
from sim.tlm import credit_pipe
from sim.tlm.transfers import check_offers, check_range, config_word, pack_vector, unpack_vector

__all__ = ["lut_index", "activation_reference", "activation_table", "ActivationConfig", "ActivationTLM",
           "ActivationResult", "table_writes", "vector_latency", "timing", "stream_cycles", "config_word",
           "pack_vector", "unpack_vector"]


def lut_index(z, bits: int, index_bits: int) -> np.ndarray:
    """Table index of signed ``bits``-bit codes ``z`` (int array): ``(z + 2^(bits-1)) >> max(0, bits - index_bits)``."""
    u = np.asarray(z, dtype=np.int64) + (1 << (bits - 1))
    return u >> max(0, bits - index_bits)


def activation_reference(z, table, bits: int, params: ActivationParams) -> np.ndarray:
    """Outputs for input codes ``z`` (int array, any shape, signed ``bits`` wide): ``table[lut_index(z)]``, int64."""
    return np.asarray(table, dtype=np.int64)[lut_index(z, bits, params.index_bits)]


def activation_table(fn: Callable[[np.ndarray], np.ndarray], in_step: float, in_low: float, bits: int,
                     quantize: Callable[[np.ndarray], np.ndarray], params: ActivationParams) -> np.ndarray:
    """Table contents: entry i is ``quantize(fn(in_step * c + in_low))`` for the unsigned input code c of the
    entry (c = i when B <= A; the bucket's middle code ``(i + 1/2) 2^(B-A) - 1/2`` otherwise).

    Args:
        fn: the activation on float64 arrays (exp, sigmoid).
        in_step, in_low: the input quantizer's step and offset (value = step * code + low).
        bits: B, the input code width.
        quantize: float64 array -> unsigned output codes (the output quantizer).

    Returns:
        int64 (2^min(B, A),) table entries (shorter than the unit's depth when B < A: the rest is unused).
    """
    a = params.index_bits
    n = 1 << min(bits, a)
    width = 1 << max(0, bits - a)
    codes = (np.arange(n, dtype=np.float64) + 0.5) * width - 0.5
    out = np.asarray(quantize(fn(in_step * codes + in_low)), dtype=np.int64)
    if (out < 0).any() or (out >= 1 << params.out_bits).any():
        raise ValueError(f"activation table entries must be unsigned {params.out_bits}-bit codes")
    return out


# --- write-port format and closed-form timing ------------------------------------------------------
def table_writes(params: ActivationParams, table) -> list[tuple[int, int]]:
    """Writes for the ``table`` port: ``[(addr, data), ...]``, entry i of ``table`` at address i (unsigned
    ``out_bits`` data). A table shorter than the unit's depth leaves the other entries as they were.

    Raises:
        ValueError: more than ``depth`` entries, or an entry that is not an unsigned ``out_bits`` code.
    """
    t = np.asarray(table)
    if t.ndim != 1 or not np.issubdtype(t.dtype, np.integer) or not 1 <= len(t) <= params.depth:
        raise ValueError(f"table must be a 1-D integer array of 1..{params.depth} (depth) entries, "
                         f"not {t.dtype} {t.shape}")
    check_range(t, 0, (1 << params.out_bits) - 1, "table", f"unsigned {params.out_bits}-bit")
    return [(i, int(v)) for i, v in enumerate(t.tolist())]


def vector_latency(params: ActivationParams) -> int:
    """Cycles from an input transfer to the output transfer of the same vector, unit idle, output ready:
    ``LATENCY`` = 3 (index register, table read, output FIFO); independent of B and of the lanes."""
    return params.LATENCY


def stream_cycles(params: ActivationParams, vectors: int) -> int:
    """Total cycles (last output transfer + 1) of ``vectors`` vectors all offered at cycle 0 with the
    output always ready: ``vectors + 3`` (0 for no vectors): II = 1."""
    return credit_pipe.stream_cycles(vectors, params.LATENCY)


def timing(params: ActivationParams) -> credit_pipe.CreditPipeTiming:
    """The unit's control state, stepped one cycle at a time (``sim.tlm.credit_pipe.CreditPipeTiming`` with
    L = ``LATENCY``, D = ``OUT_FIFO_DEPTH``): what ``sim.tlm.top`` composes with the other units of the top."""
    return credit_pipe.CreditPipeTiming(params.LATENCY, params.OUT_FIFO_DEPTH)


# --- the model -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ActivationResult:
    """What the model predicts for one run of N vectors.

    Attributes:
        accept_cycles: int64 (N,), cycle of each input transfer.
        out_cycles: int64 (N,), cycle of each output transfer (outputs leave in input order).
        indices: int64 (N, lanes), the table index of each code (``lut_index``).
        outputs: int64 (N, lanes), unsigned ``out_bits`` codes.
        payloads: N output payloads (``pack_vector`` of the outputs, ``out_bits`` per lane).
        cycles: last output transfer cycle + 1 (0 for no vectors).
    """

    accept_cycles: np.ndarray
    out_cycles: np.ndarray
    indices: np.ndarray
    outputs: np.ndarray
    payloads: list[int]
    cycles: int


class ActivationTLM:
    """Model of one ``ActivationUnit`` under one configuration and one table.

    Args:
        params: the unit's parameters.
        cfg: the run-time setting (B), validated by ``params.check_config``.
        table: int (E,), unsigned ``out_bits`` entries written at addresses 0 .. E - 1, with
            ``2^min(B, index_bits) <= E <= 2^index_bits`` (every entry B can index).

    Raises:
        hw.config.ConfigError: a bad configuration. ValueError: a table of the wrong shape or with an
            entry out of range, naming the position and the value.
    """

    #: Cycles per vector at full rate (the harness's ``T``).
    T = 1

    def __init__(self, params: ActivationParams, cfg: ActivationConfig, table) -> None:
        self.params = p = params
        self.cfg = p.check_config(cfg)
        self.writes = table_writes(p, table)
        need = p.used_entries(cfg.bits)
        if len(self.writes) < need:
            raise ValueError(f"table has {len(self.writes)} entries, fewer than the {need} that bits = {cfg.bits} "
                             f"indexes (2^min(bits, index_bits))")
        self.table = np.asarray(table, dtype=np.int64)

    # --- data path --------------------------------------------------------------------------------
    def check_inputs(self, codes) -> np.ndarray:
        """Validate input codes: int (N, lanes) in the signed B-bit range."""
        p, b = self.params, self.cfg.bits
        z = np.asarray(codes)
        if z.ndim != 2 or z.shape[1] != p.lanes or not np.issubdtype(z.dtype, np.integer):
            raise ValueError(f"codes must be an integer array of shape (N, {p.lanes}), not {z.dtype} {z.shape}")
        check_range(z, -(1 << (b - 1)), (1 << (b - 1)) - 1, "codes", f"signed {b}-bit")
        return z.astype(np.int64)

    def indices(self, codes) -> np.ndarray:
        """Table index of each code, int64 (N, lanes) (``lut_index``)."""
        return lut_index(self.check_inputs(codes), self.cfg.bits, self.params.index_bits)

    def forward(self, codes) -> np.ndarray:
        """Outputs of the codes, int64 (N, lanes): ``activation_reference``."""
        return activation_reference(self.check_inputs(codes), self.table, self.cfg.bits, self.params)

    def in_payload(self, codes) -> int:
        """Input payload of one vector: ``lanes`` codes sign-extended to ``in_bits`` each."""
        return pack_vector(codes, self.params.in_bits)

    def payload(self, outputs) -> int:
        """Output payload of one vector: ``lanes`` unsigned ``out_bits`` codes."""
        return pack_vector(outputs, self.params.out_bits)

    # --- timing -----------------------------------------------------------------------------------
    def schedule(self, offer_cycles, ready=None) -> tuple[np.ndarray, np.ndarray]:
        """``(accept_cycles, out_cycles)``, int64 (N,), of N vectors (``sim.tlm.credit_pipe``)."""
        p = self.params
        return credit_pipe.credit_schedule(offer_cycles, ready, latency=p.LATENCY, depth=p.OUT_FIFO_DEPTH)

    def run(self, codes, offer_cycles=None, ready=None) -> ActivationResult:
        """Predict a whole run: outputs (``forward``) and transfer cycles (``schedule``).

        Args:
            codes: int (N, lanes), signed B-bit input codes.
            offer_cycles: int (N,); default all zeros (a source that is always valid).
            ready: bool (R,) output ready pattern; default always ready.
        """
        z = self.check_inputs(codes)
        n = len(z)
        offers = check_offers(offer_cycles, n, "vectors")
        idx = lut_index(z, self.cfg.bits, self.params.index_bits)
        y = activation_reference(z, self.table, self.cfg.bits, self.params)
        accept, out = self.schedule(offers, ready)
        return ActivationResult(accept, out, idx, y, [self.payload(row) for row in y], int(out.max()) + 1 if n else 0)
