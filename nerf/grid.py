"""The one torch-free definition of the multiresolution hash-grid geometry.

Source: Müller et al., "Instant Neural Graphics Primitives with a Multiresolution Hash
Encoding", SIGGRAPH 2022, Sec. 3 (eqs. 2-4). Used by ``hw/`` (RTL constants), ``sim/tlm``
(the cycle-exact model) and, later, by the PyTorch encoding in ``nerf/``.

Conventions shared by every user of this module:

* Level ``l`` has integer resolution ``N_l`` (cells per axis) and ``N_l + 1`` vertices per axis;
  a point ``x`` in [0, 1) sits at grid position ``x * N_l``.
* Corner ``c`` (0..7) of the enclosing cell adds ``(c >> d) & 1`` to the floor along axis ``d``
  (x = bit 0, y = bit 1, z = bit 2), as in tiny-cuda-nn.
* A level is *dense* when its ``(N_l + 1)^3`` vertices fit in the table of ``T`` entries; its index
  is ``x + (N_l+1) * (y + (N_l+1) * z)``. Otherwise it is *hashed* with the spatial hash of eq. 4,
  ``(x * 1) xor (y * 2654435761) xor (z * 805459861) mod T``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "HASH_PRIMES",
    "CORNER_OFFSETS",
    "growth_factor",
    "level_resolutions",
    "is_dense",
    "dense_index",
    "spatial_hash",
    "corner_indices",
]

#: Per-axis primes of the spatial hash (Instant-NGP eq. 4; pi_1 = 1 keeps x cache-coherent).
HASH_PRIMES: tuple[int, int, int] = (1, 2654435761, 805459861)

#: ``CORNER_OFFSETS[c, d]`` is the offset (0 or 1) of corner ``c`` along axis ``d``; shape (8, 3).
CORNER_OFFSETS: np.ndarray = np.array([[(c >> d) & 1 for d in range(3)] for c in range(8)], dtype=np.int64)
CORNER_OFFSETS.setflags(write=False)


def growth_factor(n_min: int, n_max: int, levels: int) -> float:
    """Per-level growth factor ``b = exp((ln N_max - ln N_min) / (L - 1))`` (Instant-NGP eq. 3).

    Returns 1.0 for a single level.
    """
    if levels == 1:
        return 1.0
    return math.exp((math.log(n_max) - math.log(n_min)) / (levels - 1))


def level_resolutions(n_min: int, n_max: int, levels: int) -> tuple[int, ...]:
    """Integer resolution ``N_l = floor(N_min * b^l)`` of each level (Instant-NGP eq. 2).

    Rounding: floor, as in the paper, after snapping values within 1e-6 of an integer to it, so that
    float error cannot turn ``N_min * b^(L-1) = N_max`` into ``N_max - 1``. Integer resolutions make
    the scaled position ``x * N_l`` an exact integer product in hardware, so floor and fraction are
    bit slices. Returns a tuple of ``levels`` ints, first ``n_min``, last ``n_max``.
    """
    b = growth_factor(n_min, n_max, levels)
    out = []
    for level in range(levels):
        r = n_min * b**level
        if abs(r - round(r)) < 1e-6:
            r = round(r)
        out.append(int(math.floor(r)))
    return tuple(out)


def is_dense(resolution: int, table_size: int) -> bool:
    """True when all ``(resolution + 1)^3`` vertices of a level fit in ``table_size`` entries."""
    return (resolution + 1) ** 3 <= table_size


def dense_index(ix, iy, iz, resolution: int):
    """Row-major vertex index ``x + (N+1) * (y + (N+1) * z)``; works on ints and int64 arrays."""
    stride = resolution + 1
    return ix + stride * (iy + stride * iz)


def spatial_hash(ix, iy, iz, log2_table_size: int):
    """Instant-NGP spatial hash (eq. 4) modulo ``T = 2**log2_table_size``.

    Only the low ``log2_table_size`` bits of each product matter, so uint64 wrap-around is exact
    for ``log2_table_size <= 64``. Accepts ints or integer arrays; returns the same kind.
    """
    mask = (1 << log2_table_size) - 1
    p0, p1, p2 = HASH_PRIMES
    if isinstance(ix, (int, np.integer)) and isinstance(iy, (int, np.integer)) and isinstance(iz, (int, np.integer)):
        return ((int(ix) * p0) ^ (int(iy) * p1) ^ (int(iz) * p2)) & mask
    ix, iy, iz = (np.asarray(a).astype(np.uint64) for a in (ix, iy, iz))
    with np.errstate(over="ignore"):
        h = (ix * np.uint64(p0)) ^ (iy * np.uint64(p1)) ^ (iz * np.uint64(p2))
    return (h & np.uint64(mask)).astype(np.int64)


def corner_indices(cell: np.ndarray, resolution: int, log2_table_size: int) -> np.ndarray:
    """Table indices of the 8 corners of each cell.

    Args:
        cell: int array, shape (..., 3): the floor of the scaled position (cell origin), each in
            [0, resolution - 1].
        resolution: the level's ``N_l``.
        log2_table_size: ``k`` with table size ``T = 2**k``.

    Returns:
        int64 array, shape (..., 8), in corner order (see module docstring), each in [0, T).
    """
    corners = np.asarray(cell, dtype=np.int64)[..., None, :] + CORNER_OFFSETS
    ix, iy, iz = corners[..., 0], corners[..., 1], corners[..., 2]
    if is_dense(resolution, 1 << log2_table_size):
        return dense_index(ix, iy, iz, resolution)
    return spatial_hash(ix, iy, iz, log2_table_size)
