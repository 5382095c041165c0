"""Model of ``hw.sh_unit.ShUnit``: the bit-exact arithmetic (``sh_reference``), vectorized.

Arithmetic, per direction (x, y, z), signed codes with Q = dir_bits - 1 fractional bits
(``to_direction_codes``), ``r(a, b) = round_shift(a * b, Q)`` (``sim.tlm.fixed``):

    xx, yy, zz, xy, yz, xz = r(x, x), r(y, y), r(z, z), r(x, y), r(y, z), r(x, z)
    m = [2^Q, y, z, x, xy, yz, zz, xz, xx - yy, r(y, yy - 3 xx), r(xy, z), r(y, 2^Q - 5 zz),
         r(z, 5 zz - 3 * 2^Q), r(x, 2^Q - 5 zz), r(z, xx - yy), r(x, 3 yy - xx)]
    out_k = clamp(round_shift(m_k * M_k + O_k, S), out_bits, signed)

The monomials are those of ``nerf.sh.sh_encode`` without their constants; ``sh_constants`` gives
M_k and O_k for an output grid (step and offset).
"""

from __future__ import annotations

import numpy as np

from hw.sh_unit.params import SH_COEFFICIENTS, ShUnitParams
from sim.tlm.fixed import clamp_bits, round_shift

__all__ = ["SH_SCALE", "SH_CONSTANT", "to_direction_codes", "sh_monomials", "sh_reference", "sh_constants"]

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
    for s in range(params.shift_max, -1, -1):
        mult = [round(c / step * 2.0 ** (s - q)) for c in SH_SCALE]
        off = [round(((c0 - low) / step - half) * 2.0 ** s) for c0 in SH_CONSTANT]
        if max(abs(v) for v in mult) < (1 << (params.mult_bits - 1)) and \
                max(abs(v) for v in off) < (1 << (params.offset_bits - 1)):
            if max(abs(v) for v in mult) > 0:
                return mult, off, s
            break
    raise ValueError(f"SH output step {step!r} needs multipliers wider than mult_bits = {params.mult_bits} "
                     f"or offsets wider than offset_bits = {params.offset_bits}")
