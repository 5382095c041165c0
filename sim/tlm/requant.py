"""Model of ``hw.requant.Requantizer``: the bit-exact arithmetic (``requant_reference``), vectorized, and the
cycle-for-cycle model (``RequantTLM``).

``y_e = clamp(round_shift(u_e * M_e + O_e, S), out_bits, unsigned)`` for each element e of a vector
(``hw.requant.params``).

Timing (``RequantTLM.run``, ``sim.tlm.credit_pipe``): one vector of ``lanes`` values per cycle;
L = ``RequantParams.LATENCY`` = 4 cycles from an input transfer to the earliest output transfer (input
register, product, sum, shift and clamp into the output FIFO), D = ``OUT_FIFO_DEPTH`` = 5 credits::

    a_k = max(offer_k, a_{k-1} + 1, o_{k-5} + 1)                    input transfer
    o_k = min{t >= max(a_k + 4, o_{k-1} + 1) : ready[t]}            output transfer

N vectors offered at cycle 0 with the output always ready: last output transfer + 1 = N + 4. Cycle 0
is the first cycle with the unit idle after the configuration and the constants were written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hw.requant.params import RequantConfig, RequantParams
from sim.tlm import credit_pipe
from sim.tlm.fixed import clamp_bits, round_shift
from sim.tlm.transfers import check_offers, check_range, config_word, pack_vector, unpack_vector

__all__ = ["requant_reference", "RequantConfig", "RequantTLM", "RequantResult", "const_writes", "vector_latency",
           "timing", "stream_cycles", "config_word", "pack_vector", "unpack_vector"]


def requant_reference(u, mult, offset, shift: int, out_bits: int, params: RequantParams) -> np.ndarray:
    """Outputs for input vectors ``u``, int (N, lanes): int64 (N, lanes), unsigned ``out_bits`` codes.

    Args:
        mult: int (lanes,), unsigned M_e; offset: int (lanes,), signed O_e; shift: S.
    """
    u = np.asarray(u, dtype=np.int64)
    y = round_shift(u * np.asarray(mult, np.int64)[None, :] + np.asarray(offset, np.int64)[None, :], shift)
    return clamp_bits(y, out_bits, signed=False)


# --- write-port format and closed-form timing ------------------------------------------------------
def _check_consts(params: RequantParams, mult, offset) -> tuple[np.ndarray, np.ndarray]:
    p = params
    out = []
    for name, value, lo, hi, what in (("mult", mult, 0, (1 << p.mult_bits) - 1, f"unsigned {p.mult_bits}-bit"),
                                      ("offset", offset, -(1 << (p.offset_bits - 1)), (1 << (p.offset_bits - 1)) - 1,
                                       f"signed {p.offset_bits}-bit")):
        a = np.asarray(value)
        if a.shape != (p.lanes,) or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must be an integer array of shape ({p.lanes},), not {a.dtype} {a.shape}")
        check_range(a, lo, hi, name, what)
        out.append(a.astype(np.int64))
    return out[0], out[1]


def const_writes(params: RequantParams, mult, offset) -> list[tuple[int, int, int]]:
    """Writes for the ``consts`` port: ``[(lane, mult, offset), ...]``, one per lane, offset as a signed int
    (a driver writes it as ``offset_bits`` two's complement).

    Raises:
        ValueError: a wrong shape, or a constant out of its range (naming the lane and the value).
    """
    m, o = _check_consts(params, mult, offset)
    return [(e, int(m[e]), int(o[e])) for e in range(params.lanes)]


def vector_latency(params: RequantParams) -> int:
    """Cycles from an input transfer to the output transfer of the same vector, unit idle, output ready:
    ``LATENCY`` = 4 (input register, product, sum, shift and clamp into the output FIFO)."""
    return params.LATENCY


def stream_cycles(params: RequantParams, vectors: int) -> int:
    """Total cycles (last output transfer + 1) of ``vectors`` vectors all offered at cycle 0 with the
    output always ready: ``vectors + 4`` (0 for no vectors): II = 1."""
    return credit_pipe.stream_cycles(vectors, params.LATENCY)


def timing(params: RequantParams) -> credit_pipe.CreditPipeTiming:
    """The unit's control state, stepped one cycle at a time (``sim.tlm.credit_pipe.CreditPipeTiming`` with
    L = ``LATENCY``, D = ``OUT_FIFO_DEPTH``): what ``sim.tlm.top`` composes with the other units of the top."""
    return credit_pipe.CreditPipeTiming(params.LATENCY, params.OUT_FIFO_DEPTH)


# --- the model -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RequantResult:
    """What the model predicts for one run of N vectors.

    Attributes:
        accept_cycles: int64 (N,), cycle of each input transfer.
        out_cycles: int64 (N,), cycle of each output transfer (outputs leave in input order).
        outputs: int64 (N, lanes), unsigned ``out_bits`` codes.
        payloads: N output payloads (``pack_vector`` of the outputs, ``max_out_bits`` per lane).
        cycles: last output transfer cycle + 1 (0 for no vectors).
    """

    accept_cycles: np.ndarray
    out_cycles: np.ndarray
    outputs: np.ndarray
    payloads: list[int]
    cycles: int


class RequantTLM:
    """Model of one ``Requantizer`` under one configuration and one set of per-lane constants.

    Args:
        params: the unit's parameters.
        cfg: the run-time settings (S, out_bits), validated by ``params.check_config``.
        mult: int (lanes,), unsigned ``mult_bits`` multipliers M_e.
        offset: int (lanes,), signed ``offset_bits`` offsets O_e.

    Raises:
        hw.config.ConfigError: a bad configuration. ValueError: constants of the wrong shape or out of
            range, naming the lane and the value.
    """

    #: Cycles per vector at full rate (the harness's ``T``).
    T = 1

    def __init__(self, params: RequantParams, cfg: RequantConfig, mult, offset) -> None:
        self.params = params
        self.cfg = params.check_config(cfg)
        self.mult, self.offset = _check_consts(params, mult, offset)

    # --- data path --------------------------------------------------------------------------------
    def check_inputs(self, vectors) -> np.ndarray:
        """Validate input vectors: int (N, lanes) in the signed ``in_bits`` range."""
        p = self.params
        u = np.asarray(vectors)
        if u.ndim != 2 or u.shape[1] != p.lanes or not np.issubdtype(u.dtype, np.integer):
            raise ValueError(f"vectors must be an integer array of shape (N, {p.lanes}), not {u.dtype} {u.shape}")
        half = 1 << (p.in_bits - 1)
        check_range(u, -half, half - 1, "vectors", f"signed {p.in_bits}-bit")
        return u.astype(np.int64)

    def forward(self, vectors) -> np.ndarray:
        """Outputs of the vectors, int64 (N, lanes): ``requant_reference``."""
        c = self.cfg
        return requant_reference(self.check_inputs(vectors), self.mult, self.offset, c.shift, c.out_bits, self.params)

    def in_payload(self, vector) -> int:
        """Input payload of one vector: ``lanes`` values of ``in_bits`` (two's complement)."""
        return pack_vector(vector, self.params.in_bits)

    def payload(self, outputs) -> int:
        """Output payload of one vector: ``lanes`` unsigned codes in ``max_out_bits`` fields."""
        return pack_vector(outputs, self.params.max_out_bits)

    # --- timing -----------------------------------------------------------------------------------
    def schedule(self, offer_cycles, ready=None) -> tuple[np.ndarray, np.ndarray]:
        """``(accept_cycles, out_cycles)``, int64 (N,), of N vectors (``sim.tlm.credit_pipe``)."""
        p = self.params
        return credit_pipe.credit_schedule(offer_cycles, ready, latency=p.LATENCY, depth=p.OUT_FIFO_DEPTH)

    def run(self, vectors, offer_cycles=None, ready=None) -> RequantResult:
        """Predict a whole run: outputs (``forward``) and transfer cycles (``schedule``).

        Args:
            vectors: int (N, lanes), signed ``in_bits`` inputs.
            offer_cycles: int (N,); default all zeros (a source that is always valid).
            ready: bool (R,) output ready pattern; default always ready.
        """
        u = self.check_inputs(vectors)
        n = len(u)
        offers = check_offers(offer_cycles, n, "vectors")
        c = self.cfg
        y = requant_reference(u, self.mult, self.offset, c.shift, c.out_bits, self.params)
        accept, out = self.schedule(offers, ready)
        return RequantResult(accept, out, y, [self.payload(row) for row in y], int(out.max()) + 1 if n else 0)
