"""Dyadic multipliers: a positive real scale ratio as ``M / 2^S`` with integer M and S, for the hardware.

Integer-only inference (Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR 2018, sec. 2.2) replaces each real rescale factor ``r`` by a
fixed-point multiplier: ``y = round(acc * r)`` becomes ``rne(acc * M, S) = round(acc * M / 2^S)``. Both
of this project's requantizers take ``M`` unsigned, ``mult_bits`` wide, and a right shift ``S`` in
``[0, shift_max]``. Torch-free.

``dyadic_multipliers`` gives several ratios one shared shift (the Hadamard datapath's per-row output
multipliers, ``hw.hadamard.params.HadamardParams.per_row_scales``, for per-channel weight steps).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Annotated

from pydantic import Field

from common.validate import checker

__all__ = ["dyadic_multiplier", "dyadic_multipliers"]

_check_ratio = checker(Annotated[float, Field(gt=0, allow_inf_nan=False)])
_check_mult_bits = checker(Annotated[int, Field(ge=1)])
_check_shift_max = checker(Annotated[int, Field(ge=0)])


def _largest_shift(ratio: float, mult_bits: int, shift_max: int) -> int:
    """The largest S in [0, shift_max] with ``round(ratio * 2^S) < 2^mult_bits`` (ratio checked)."""
    exact, limit = Fraction(ratio), (1 << mult_bits) - 1
    if round(exact) > limit:
        raise ValueError(f"scale ratio {ratio!r} needs a multiplier above {limit} (mult_bits={mult_bits}) "
                         "even without a shift")
    # Largest S with round(ratio * 2^S) <= limit: start from the estimate and step down.
    shift = min(shift_max, max(0, mult_bits - 1 - math.floor(math.log2(ratio))))
    while shift > 0 and round(exact * (1 << shift)) > limit:
        shift -= 1
    return shift


def dyadic_multiplier(ratio: float, *, mult_bits: int, shift_max: int) -> tuple[int, int]:
    """The closest ``M / 2^S`` to ``ratio`` with ``0 < M < 2^mult_bits`` and ``0 <= S <= shift_max``.

    S is the largest shift that keeps ``M = round(ratio * 2^S)`` (half to even, exact rational
    arithmetic) inside ``mult_bits``, so the relative error is at most ``2^-mult_bits`` when S is not
    capped by ``shift_max``. The pair is then made canonical: while M is even and S > 0, halve both
    (the same value, and an odd M is what the tie analysis in ``quant.hadamard_export`` needs).

    Args:
        ratio: the real scale factor, a finite float > 0.
        mult_bits: width of the unsigned multiplier M (bits), >= 1.
        shift_max: the largest right shift S the hardware takes (bits), >= 0.

    Returns:
        ``(M, S)`` as Python ints.

    Raises:
        ValueError: ratio not finite and positive; ratio too large (``round(ratio) >= 2^mult_bits``
            even at S = 0) or too small (M would be 0 even at ``S = shift_max``), naming the value.
    """
    _check_ratio(ratio, "scale ratio")
    _check_mult_bits(mult_bits, "mult_bits")
    _check_shift_max(shift_max, "shift_max")
    shift = _largest_shift(ratio, mult_bits, shift_max)
    mult = round(Fraction(ratio) * (1 << shift))
    if mult == 0:
        raise ValueError(f"scale ratio {ratio!r} rounds to a zero multiplier even at the largest shift "
                         f"{shift_max} (mult_bits={mult_bits})")
    while mult % 2 == 0 and shift > 0:
        mult, shift = mult // 2, shift - 1
    return mult, shift



def dyadic_multipliers(ratios, *, mult_bits: int, shift_max: int) -> tuple[list[int], int]:
    """Multipliers ``M_r / 2^S`` for several ratios with one shared shift S (per-row output scales).

    S is the shift ``dyadic_multiplier`` picks for the largest ratio (before making it canonical): the
    largest that keeps its ``M = round(ratio_max * 2^S)`` inside ``mult_bits``; every row then gets
    ``M_r = round(ratio_r * 2^S)`` (half to even, exact rational arithmetic), which fits too (rounding
    is monotone). Finally, while every M_r is even and S > 0, all are halved (the same values; the
    largest stays odd only if it was the one that decided).

    Precision: the largest multiplier is at least ``2^(mult_bits - 1)`` when S is not capped, so its
    relative error is at most ``2^-mult_bits``, as with ``dyadic_multiplier``. A row whose ratio is
    ``2^k`` times smaller gets ``M_r ~ M_max / 2^k``: a relative error up to ``2^(k - mult_bits)``, i.e.
    k bits of the multiplier lost (its own ``dyadic_multiplier`` would have had the full
    ``mult_bits``). A ratio below ``2^-(S + 1)`` would round to 0 and is refused.

    Args:
        ratios: the real scale factors, finite floats > 0 (a sequence or 1-D array, at least one).
        mult_bits: width of each unsigned multiplier M_r (bits), >= 1.
        shift_max: the largest right shift S the hardware takes (bits), >= 0.

    Returns:
        ``([M_0, M_1, ...], S)`` as Python ints.

    Raises:
        ValueError: no ratios; a ratio not finite and positive (naming its index); the largest ratio too
            large for ``mult_bits`` even at S = 0; a ratio whose multiplier rounds to 0 at the shared
            shift (naming its index, the ratio and the shift).
    """
    values = [float(r) for r in (ratios.tolist() if hasattr(ratios, "tolist") else ratios)]
    if not values:
        raise ValueError("dyadic_multipliers needs at least one scale ratio")
    for i, r in enumerate(values):
        _check_ratio(r, f"scale ratio [{i}]")
    _check_mult_bits(mult_bits, "mult_bits")
    _check_shift_max(shift_max, "shift_max")
    shift = _largest_shift(max(values), mult_bits, shift_max)
    mults = [round(Fraction(r) * (1 << shift)) for r in values]
    for i, (r, m) in enumerate(zip(values, mults)):
        if m == 0:
            raise ValueError(f"scale ratio [{i}] = {r!r} rounds to a zero multiplier at the shared shift {shift} "
                             f"(mult_bits={mult_bits}, set by the largest ratio {max(values)!r})")
    while shift > 0 and all(m % 2 == 0 for m in mults):
        mults, shift = [m // 2 for m in mults], shift - 1
    return mults, shift
