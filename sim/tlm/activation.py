"""Model of ``hw.activation.ActivationUnit``: the table lookup (``activation_reference``) and the table
contents for a fake-quantized activation (``activation_table``), vectorized.

A B-bit signed input code z indexes the table at ``(z + 2^(B-1)) >> max(0, B - A)`` (A = index_bits):
every code when B <= A, else the top A bits (buckets of 2^(B-A) codes).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hw.activation.params import ActivationParams

__all__ = ["lut_index", "activation_reference", "activation_table"]


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
