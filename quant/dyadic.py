"""Dyadic multipliers: a positive real scale ratio as ``M / 2^S`` with integer M and S, for the hardware.

Integer-only inference (Jacob et al., "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", CVPR 2018, sec. 2.2) replaces each real rescale factor ``r`` by a
fixed-point multiplier: ``y = round(acc * r)`` becomes ``rne(acc * M, S) = round(acc * M / 2^S)``. Both
of this project's requantizers take ``M`` unsigned, ``mult_bits`` wide, and a right shift ``S`` in
``[0, shift_max]``. Torch-free.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Annotated

from pydantic import Field

from common.validate import checker

__all__ = ["dyadic_multiplier"]

_check_ratio = checker(Annotated[float, Field(gt=0, allow_inf_nan=False)])
_check_mult_bits = checker(Annotated[int, Field(ge=1)])
_check_shift_max = checker(Annotated[int, Field(ge=0)])


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
    exact, limit = Fraction(ratio), (1 << mult_bits) - 1
    if round(exact) > limit:
        raise ValueError(f"scale ratio {ratio!r} needs a multiplier above {limit} (mult_bits={mult_bits}) "
                         "even without a shift")
    # Largest S with round(ratio * 2^S) <= limit: start from the estimate and step down.
    shift = min(shift_max, max(0, mult_bits - 1 - math.floor(math.log2(ratio))))
    while shift > 0 and round(exact * (1 << shift)) > limit:
        shift -= 1
    mult = round(exact * (1 << shift))
    if mult == 0:
        raise ValueError(f"scale ratio {ratio!r} rounds to a zero multiplier even at the largest shift "
                         f"{shift_max} (mult_bits={mult_bits})")
    while mult % 2 == 0 and shift > 0:
        mult, shift = mult // 2, shift - 1
    return mult, shift

