"""Model of ``hw.sh_unit.ShUnit``: the bit-exact arithmetic (``sh_reference``), vectorized, and the
cycle-for-cycle model of the unit (``ShUnitTLM``).

Arithmetic, per direction (x, y, z), signed codes with Q = dir_bits - 1 fractional bits
(``to_direction_codes``), ``r(a, b) = round_shift(a * b, Q)`` (``sim.tlm.fixed``):

    xx, yy, zz, xy, yz, xz = r(x, x), r(y, y), r(z, z), r(x, y), r(y, z), r(x, z)
    m = [2^Q, y, z, x, xy, yz, zz, xz, xx - yy, r(y, yy - 3 xx), r(xy, z), r(y, 2^Q - 5 zz),
         r(z, 5 zz - 3 * 2^Q), r(x, 2^Q - 5 zz), r(z, xx - yy), r(x, 3 yy - xx)]
    out_k = clamp(round_shift(m_k * M_k + O_k, S), out_bits, signed)

The monomials are those of ``nerf.sh.sh_encode`` without their constants; ``sh_constants`` gives
M_k and O_k for an output grid (step and offset).

Accuracy (``tests/test_tlm_sh_unit.py``): with ``sh_constants`` for the 16-bit grid of step 1.5 / 2^16
from -0.75 (mult_bits 18, offset_bits 40), the decoded outputs ``step * (code + 2^15) + low`` of
200 000 random unit directions, the axes and the diagonals differ from ``nerf.sh.sh_encode`` in float64
by at most 1.52e-4 at dir_bits 16 and 2.21e-3 at dir_bits 12 (measured; the tests bound them by 2e-4
and 3e-3). Both maxima are coefficient 12 on the z axis, where z = +-1 becomes the code +-(2^Q - 1)
and the basis function 0.373 z (5 z^2 - 3) has its steepest slope, 4.48; elsewhere the errors are the
direction codes' rounding (2^-Q / 2 per component) through the basis's slopes, the products'
rounding to Q bits and the grid's own step / 2 = 1.1e-5.

Timing (``ShUnitTLM``; ``hw.sh_unit.rtl`` has the derivation): II = 1; a direction accepted at cycle a
can leave at a + L, L = ``ShUnitParams.latency`` = 5; F = ``fifo_depth`` = 6 credits. Cycle 0 is the
first cycle with the unit idle after its settings and constants are written; a transfer "at cycle t"
means valid and ready were both high at cycle t's closing rising edge. With terms of a negative index
left out::

    a_k = max(offer_k, a_{k-1} + 1, o_{k-F} + 1)              input transfer
    o_k = min{t >= max(a_k + L, o_{k-1} + 1) : ready[t]}      output transfer

N directions offered at cycle 0 with the output always ready finish (last output transfer + 1) at N + 5.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from hw.config import check_int
from hw.sh_unit.params import SH_COEFFICIENTS, ShUnitParams
from sim.tlm import credit_pipe
from sim.tlm.fixed import clamp_bits, fit_shift, round_shift
from sim.tlm.transfers import check_offers, check_range, config_word, pack_vector

__all__ = ["SH_SCALE", "SH_CONSTANT", "to_direction_codes", "sh_monomials", "sh_reference", "sh_constants",
           "ShUnitTLM", "ShUnitResult", "sh_config_word", "const_writes", "stream_cycles", "timing"]

#: The basis constant of each coefficient (``nerf.sh``), multiplying its monomial.
SH_SCALE = (0.28209479177387814, -0.48860251190291987, 0.48860251190291987, -0.48860251190291987,
            1.0925484305920792, -1.0925484305920792, 0.94617469575755997, -1.0925484305920792,
            0.54627421529603959, 0.59004358992664352, 2.8906114426405538, 0.45704579946446572,
            0.3731763325901154, 0.45704579946446572, 1.4453057213202769, 0.59004358992664352)
#: The constant term of each coefficient (only coefficient 6, 0.946 z^2 - 0.315, has one).
SH_CONSTANT = tuple(-0.31539156525251999 if k == 6 else 0.0 for k in range(SH_COEFFICIENTS))


def to_direction_codes(dirs, dir_bits: int) -> np.ndarray:
    """Unit directions, float (N, 3), to the unit's input codes: ``round(d * 2^Q)`` clamped to
    ``+-(2^Q - 1)`` (Q = dir_bits - 1), int64 (N, 3)."""
    q = dir_bits - 1
    lim = (1 << q) - 1
    return np.clip(np.rint(np.asarray(dirs, np.float64) * (1 << q)), -lim, lim).astype(np.int64)


def sh_monomials(codes, params: ShUnitParams) -> np.ndarray:
    """The 16 monomials (module doc), int64 (N, 16), Q fractional bits, from direction codes (N, 3)."""
    c = np.asarray(codes, dtype=np.int64)
    q = params.frac_bits
    one = np.int64(1 << q)
    x, y, z = c[:, 0], c[:, 1], c[:, 2]

    def r(a, b):
        return round_shift(a * b, q)

    xx, yy, zz, xy, yz, xz = r(x, x), r(y, y), r(z, z), r(x, y), r(y, z), r(x, z)
    m = [np.full_like(x, one), y, z, x, xy, yz, zz, xz, xx - yy, r(y, yy - 3 * xx), r(xy, z), r(y, one - 5 * zz),
         r(z, 5 * zz - 3 * one), r(x, one - 5 * zz), r(z, xx - yy), r(x, 3 * yy - xx)]
    return np.stack(m, axis=1)


def sh_reference(codes, mult, offset, shift: int, out_bits: int, params: ShUnitParams) -> np.ndarray:
    """The unit's outputs for direction codes (N, 3): int64 (N, 16), signed ``out_bits`` codes.

    Args:
        mult, offset: int (16,), the signed M_k and O_k; shift: S.
    """
    m = sh_monomials(codes, params)
    y = round_shift(m * np.asarray(mult, np.int64)[None, :] + np.asarray(offset, np.int64)[None, :], shift)
    return clamp_bits(y, out_bits, signed=True)


def sh_constants(step: float, low: float, out_bits: int, params: ShUnitParams) -> tuple[list[int], list[int], int]:
    """M_k, O_k and S that put coefficient k on the grid ``value = step * (code + 2^(B-1)) + low``
    (an asymmetric quantizer of B = out_bits bits, codes shifted to signed).

    ``M_k = round(c_k / step * 2^(S - Q))``, ``O_k = round(((c0_k - low) / step - 2^(B-1)) * 2^S)`` with
    c_k, c0_k the basis constant and constant term; S is the largest shift that keeps every M_k and
    O_k inside ``mult_bits`` / ``offset_bits`` (signed).

    Raises:
        ValueError: no shift fits (a step too small for the multiplier width), naming the step.
    """
    q = params.frac_bits
    half = 1 << (out_bits - 1)
    fit = fit_shift(lambda s: [[round(c / step * 2.0 ** (s - q)) for c in SH_SCALE],
                               [round(((c0 - low) / step - half) * 2.0 ** s) for c0 in SH_CONSTANT]],
                    (1 << (params.mult_bits - 1), 1 << (params.offset_bits - 1)), params.shift_max)
    if fit is None or not any(fit[1][0]):
        raise ValueError(f"SH output step {step!r} needs multipliers wider than mult_bits = {params.mult_bits} "
                         f"or offsets wider than offset_bits = {params.offset_bits}")
    shift, (mult, off) = fit
    return mult, off, shift


# --- the unit's ports (the drivers' view) ------------------------------------------------------------
def sh_config_word(params: ShUnitParams, out_bits: int, shift: int) -> int:
    """The ``cfg.data`` word: ``out_bits`` from bit 0, then ``shift`` (``ShUnitParams.config_fields``).

    Raises:
        ValueError: out_bits outside [2, max_out_bits] or shift outside [0, shift_max], naming it.
    """
    check_int("out_bits", out_bits, 2, params.max_out_bits)
    check_int("shift", shift, 0, params.shift_max)
    return config_word(params, SimpleNamespace(out_bits=out_bits, shift=shift))


def const_writes(mult, offset) -> list[tuple[int, int, int]]:
    """The ``consts`` port writes that load M_k and O_k: ``[(k, M_k, O_k), ...]`` for k = 0..15, as signed
    Python ints (a driver writes them as two's complement of mult_bits / offset_bits)."""
    return [(k, int(mv), int(ov)) for k, (mv, ov) in enumerate(zip(mult, offset))]


def stream_cycles(params: ShUnitParams, directions: int) -> int:
    """Cycles (last output transfer + 1) of ``directions`` directions offered at cycle 0 with the output
    always ready: ``N + latency`` = N + 5 (0 for none)."""
    n = check_int("directions", directions, 0)
    return n + params.latency if n else 0


def timing(params: ShUnitParams) -> credit_pipe.CreditPipeTiming:
    """The unit's control state, stepped one cycle at a time (``sim.tlm.credit_pipe.CreditPipeTiming`` with
    L = ``latency``, D = ``fifo_depth``): what ``ShUnitTLM.schedule`` runs and ``sim.tlm.top`` composes with the
    other units of the top."""
    return credit_pipe.CreditPipeTiming(params.latency, params.fifo_depth)


# --- the model -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ShUnitResult:
    """What the model predicts for one run of N directions.

    Attributes:
        accept_cycles: int64 (N,), cycle of each input transfer.
        out_cycles: int64 (N,), cycle of each output transfer (outputs leave in input order).
        monomials: int64 (N, 16), ``sh_monomials`` (Q fractional bits).
        outputs: int64 (N, 16), the signed out_bits codes (``sh_reference``).
        payloads: N output payloads (``pack_vector`` of the outputs, ``max_out_bits`` per coefficient).
        cycles: last output transfer cycle + 1 (0 for no directions).
    """

    accept_cycles: np.ndarray
    out_cycles: np.ndarray
    monomials: np.ndarray
    outputs: np.ndarray
    payloads: list[int]
    cycles: int


class ShUnitTLM:
    """Model of one ``ShUnit`` under one set of constants and settings.

    Args:
        params: the unit's parameters.
        mult: int (16,), M_k, signed ``mult_bits``.
        offset: int (16,), O_k, signed ``offset_bits``.
        shift: S, in [0, shift_max]; out_bits: B, in [2, max_out_bits] (both keyword-only).

    Raises:
        ValueError: a constant of the wrong shape or out of range (naming its index and value), or a
            setting out of range (naming it).
    """

    #: Cycles per direction (initiation interval), for harnesses that size their time limits by it.
    T = 1

    def __init__(self, params: ShUnitParams, mult, offset, *, shift: int, out_bits: int) -> None:
        self.params = p = params
        self.shift = check_int("shift", shift, 0, p.shift_max)
        self.out_bits = check_int("out_bits", out_bits, 2, p.max_out_bits)
        self.mult = self._constants(mult, "mult", p.mult_bits)
        self.offset = self._constants(offset, "offset", p.offset_bits)

    @staticmethod
    def _constants(values, name: str, bits: int) -> np.ndarray:
        a = np.asarray(values)
        if a.shape != (SH_COEFFICIENTS,) or not np.issubdtype(a.dtype, np.integer):
            raise ValueError(f"{name} must be an integer array of shape ({SH_COEFFICIENTS},), not {a.dtype} {a.shape}")
        half = 1 << (bits - 1)
        check_range(a, -half, half - 1, name, f"signed {bits}-bit")
        return a.astype(np.int64)

    # --- data path --------------------------------------------------------------------------------
    def check_inputs(self, codes) -> np.ndarray:
        """Validate direction codes: int (N, 3) in the signed ``dir_bits`` range; int64 (N, 3)."""
        p = self.params
        c = np.asarray(codes)
        if c.ndim != 2 or c.shape[1] != 3 or not np.issubdtype(c.dtype, np.integer):
            raise ValueError(f"codes must be an integer array of shape (N, 3), not {c.dtype} {c.shape}")
        half = 1 << (p.dir_bits - 1)
        check_range(c, -half, half - 1, "codes", f"signed {p.dir_bits}-bit")
        return c.astype(np.int64)

    def forward(self, codes) -> np.ndarray:
        """The outputs, int64 (N, 16): ``sh_reference`` with this model's constants and settings."""
        return sh_reference(self.check_inputs(codes), self.mult, self.offset, self.shift, self.out_bits, self.params)

    def in_payload(self, code) -> int:
        """Input payload of one direction ``(x, y, z)``: ``dir_bits`` each, x in the low bits."""
        return pack_vector(code, self.params.dir_bits)

    def payload(self, output) -> int:
        """Output payload of one output row (16 codes, ``max_out_bits`` each)."""
        return pack_vector(output, self.params.max_out_bits)

    def config_word(self) -> int:
        """This model's ``cfg.data`` word (``sh_config_word``)."""
        return sh_config_word(self.params, self.out_bits, self.shift)

    def const_writes(self) -> list[tuple[int, int, int]]:
        """This model's ``consts`` writes (``const_writes``)."""
        return const_writes(self.mult, self.offset)

    # --- timing -----------------------------------------------------------------------------------
    def schedule(self, offer_cycles, ready=None) -> tuple[np.ndarray, np.ndarray]:
        """Transfer cycles of N directions, stepping the RTL's control state one cycle at a time.

        Args:
            offer_cycles: int (N,); direction i is offered from ``max(offer_cycles[i], accept[i-1] + 1)``
                until accepted.
            ready: bool (R,), output ready per cycle; cycles >= R are ready. None: always ready.

        Returns:
            ``(accept_cycles, out_cycles)``, int64 (N,).

        State mirrored from ``hw.sh_unit.rtl``: the credits (input ready = credits in use <
        fifo_depth), the directions in the pipeline (each with the cycle it is on the FIFO's output)
        and the output FIFO: the pipeline of ``sim.tlm.credit_pipe`` with L = ``latency`` and D =
        ``fifo_depth`` (``timing``).
        """
        p = self.params
        return credit_pipe.credit_schedule(offer_cycles, ready, latency=p.latency, depth=p.fifo_depth)

    def run(self, codes, offer_cycles=None, ready=None) -> ShUnitResult:
        """Predict a whole run: outputs (``sh_reference``) and transfer cycles (``schedule``).

        Args:
            codes: int (N, 3), direction codes (``to_direction_codes``), signed ``dir_bits``.
            offer_cycles: int (N,); default all zeros (a source that is always valid).
            ready: bool (R,) output ready pattern; default always ready.
        """
        c = self.check_inputs(codes)
        n = len(c)
        offer_cycles = check_offers(offer_cycles, n, "directions")
        mono = sh_monomials(c, self.params)
        y = sh_reference(c, self.mult, self.offset, self.shift, self.out_bits, self.params)
        accept, out = self.schedule(offer_cycles, ready)
        return ShUnitResult(accept, out, mono, y, [self.payload(row) for row in y], int(out.max()) + 1 if n else 0)
