"""Real spherical-harmonics view encoding, degree 4 (16 coefficients), as in Instant-NGP / tiny-cuda-nn."""

from __future__ import annotations

import torch

__all__ = ["sh_encode"]


def sh_encode(d: torch.Tensor) -> torch.Tensor:
    """SH basis up to degree 4 (bands l = 0..3) of unit directions.

    Args:
        d: float (B, 3), unit vectors.

    Returns:
        float (B, 16), in the order and normalisation of tiny-cuda-nn's ``SphericalHarmonics``
        (real SH, Sloan 2008, "Stupid Spherical Harmonics Tricks", appendix A2).
    """
    x, y, z = d.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, yz, xz = x * y, y * z, x * z
    return torch.stack([
        torch.full_like(x, 0.28209479177387814),
        -0.48860251190291987 * y,
        0.48860251190291987 * z,
        -0.48860251190291987 * x,
        1.0925484305920792 * xy,
        -1.0925484305920792 * yz,
        0.94617469575755997 * zz - 0.31539156525251999,
        -1.0925484305920792 * xz,
        0.54627421529603959 * (xx - yy),
        0.59004358992664352 * y * (-3.0 * xx + yy),
        2.8906114426405538 * xy * z,
        0.45704579946446572 * y * (1.0 - 5.0 * zz),
        0.3731763325901154 * z * (5.0 * zz - 3.0),
        0.45704579946446572 * x * (1.0 - 5.0 * zz),
        1.4453057213202769 * z * (xx - yy),
        0.59004358992664352 * x * (-xx + 3.0 * yy),
    ], dim=-1)
