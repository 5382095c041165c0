"""Model of ``hw.requant.Requantizer``: the bit-exact arithmetic (``requant_reference``), vectorized.

``y_e = clamp(round_shift(u_e * M_e + O_e, S), out_bits, unsigned)`` for each element e of a vector
(``hw.requant.params``).
"""

from __future__ import annotations

import numpy as np

from hw.requant.params import RequantParams
from sim.tlm.fixed import clamp_bits, round_shift

__all__ = ["requant_reference"]


def requant_reference(u, mult, offset, shift: int, out_bits: int, params: RequantParams) -> np.ndarray:
    """Outputs for input vectors ``u``, int (N, lanes): int64 (N, lanes), unsigned ``out_bits`` codes.

    Args:
        mult: int (lanes,), unsigned M_e; offset: int (lanes,), signed O_e; shift: S.
    """
    u = np.asarray(u, dtype=np.int64)
    y = round_shift(u * np.asarray(mult, np.int64)[None, :] + np.asarray(offset, np.int64)[None, :], shift)
    return clamp_bits(y, out_bits, signed=False)
