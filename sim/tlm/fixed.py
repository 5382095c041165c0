"""Fixed-point helpers shared by the renderer units' models: rounding right shift and saturation.

Vectorized over NumPy int64 arrays (or Python ints); the units' RTL implements the same operations.
"""

from __future__ import annotations

import numpy as np

__all__ = ["round_shift", "clamp_bits", "fit_shift"]


def round_shift(v, shift):
    """``(v + 2^(shift-1)) >> shift`` (arithmetic shift, round half up); ``v`` itself when ``shift`` is 0.

    ``v`` and ``shift``: int64 arrays or ints (broadcast); shifts are >= 0.
    """
    v = np.asarray(v, dtype=np.int64)
    s = np.asarray(shift, dtype=np.int64)
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    return (v + half) >> s


def clamp_bits(v, bits: int, signed: bool):
    """Saturate to ``bits``: [-2^(bits-1), 2^(bits-1) - 1] if ``signed``, else [0, 2^bits - 1]."""
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return np.clip(np.asarray(v, dtype=np.int64), lo, hi)


def fit_shift(make, limits, shift_max: int):
    """The largest shift S in [0, shift_max] whose constants fit their widths, and the constants.

    Args:
        make: S -> a list of integer lists, one per entry of ``limits`` (e.g. ``[multipliers, offsets]``).
        limits: each list's bound: every value must satisfy ``abs(v) < limit``.

    Returns:
        ``(S, make(S))``, or None when no shift fits.
    """
    for s in range(shift_max, -1, -1):
        values = make(s)
        if all(max((abs(v) for v in vs), default=0) < lim for vs, lim in zip(values, limits)):
            return s, values
    return None
