"""Costs of a quantization policy: FQR, BitOps of one frame, and model size in bytes.

Torch-free, like ``quant.policy``: the architecture comes as the model's ``arch`` dict
(``nerf.model.ARCH_KEYS``), so ``rl/`` and the flows can cost a policy without building the model.

BitOps (A-CAQ, Liu et al. ECCV 2024, Sec. 5 and ``calBitOps`` in ``quantization/quan_analysis.py``
of its reference code) counts multiplications only, each weighted by the product of its operands'
bitwidths, for one frame of ``H x W`` rays with ``S`` field evaluations per ray:

* interpolation, per sample: ``3 c^2 + sum_l F (12 c^2 + 8 c h_l)`` with ``c = 32`` coordinate bits
  (the 3 coordinate scalings; per level and feature, 4 + 8 weight products and 8 weight x entry
  products) and ``h_l`` the bits of level l's table (A-CAQ has one ``h`` for all levels);
* density MLP, per sample: ``32 x 64 x b(enc.out) b(density.l0.weight)
  + 64 x 16 x b(density.l1.act_in) b(density.l1.weight)``;
* colour MLP, per sample: ``15 x 64 x b(density.l1.out) b(color.l0.weight)
  + 64 x 64 x b(color.l1.act_in) b(color.l1.weight) + 64 x 3 x b(color.l2.act_in) b(color.l2.weight)``
  (as in A-CAQ, the 16 SH inputs of the first colour layer are not counted);
* volume rendering, per ray: ``b(density.out) S (S - 1) / 2 + S b(density.out) b(color.out)``.

Total = ``H W (S x per-sample + per-ray)``. ``sh.out`` and ``color.l2.out`` are no multiplication
operands in this count, so their bits do not change it. A full-precision component counts 32 bits, as in A-CAQ.
The layer sizes are the model's (``nerf.layout.model_layout``: each layer's in x out, weighted by its
first input component's and its weight's bits), so they match the numbers above for the A-CAQ
architecture.

Model size: every stored parameter at its component's bits (hash level l: its ``T_l x F`` entries,
``T_l = min(T, (N_l + 1)^3)``; each weight matrix), plus a float32 scale and offset (8 bytes) per
quantized component; a full-precision component is stored as float32.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated

from pydantic import Field

from common.validate import checker
from nerf import grid
from nerf.layout import model_layout
from quant.policy import FULL_PRECISION_BITS, PolicyError, component_names

__all__ = ["bitops", "model_bytes", "acaq_weights", "fqr_acaq", "COORD_BITS", "FRAME"]

_check_samples = checker(Annotated[float, Field(ge=0, allow_inf_nan=False)])

#: Coordinate bits of the interpolation in A-CAQ's BitOps (float32 coordinates).
COORD_BITS = 32
#: The frame BitOps are reported for: 800 x 800 (NeRF-synthetic's full resolution), (H, W).
FRAME = (800, 800)
#: float32 scale + offset kept per quantized component, bytes.
QPARAM_BYTES = 8


def _bits(policy: Mapping[str, int], levels: int) -> dict[str, int]:
    names = component_names(levels)
    if set(policy) != set(names):
        missing, extra = sorted(set(names) - set(policy)), sorted(set(policy) - set(names))
        raise PolicyError(f"policy does not match a {levels}-level model: missing {missing}, unknown {extra}")
    return dict(policy)


def bitops(policy: Mapping[str, int], arch: Mapping, *, samples_per_ray: float, frame: tuple[int, int] = FRAME) -> float:
    """BitOps of one frame (see the module doc for the formula and its source).

    Args:
        policy: component -> bits (``quant.policy.QuantPolicy`` or a dict), for ``arch["levels"]`` levels.
        arch: the model's architecture dict (``levels``, ``features``, ``hidden``, ``geo_features``).
        samples_per_ray: S, the mean number of field evaluations per ray (after empty-space skipping
            and early termination), measured on the scene's test views.
        frame: (H, W) in rays.

    Returns:
        BitOps (a float; divide by 1e12 for A-CAQ's "T" unit).

    Raises:
        quant.policy.PolicyError: the policy's components are not those of ``arch``.
        ValueError: samples_per_ray negative or not finite.
    """
    _check_samples(samples_per_ray, "samples_per_ray")
    b = _bits(policy, arch["levels"])
    layout = model_layout(arch)
    c, f = COORD_BITS, layout.features
    interp = 3 * c * c + sum(f * (12 * c * c + 8 * c * b[name]) for name in layout.hash_components)
    mlp = {}
    for ly in layout.layers.values():
        # a layer's multiplications: its first input's elements x out, weighted by that input's and the
        # weight's bits (A-CAQ counts color.l0's density.l1.out inputs only: the SH inputs are left out)
        mlp[ly.mlp] = mlp.get(ly.mlp, 0) + ly.input_sizes[0] * ly.out_size * b[ly.inputs[0]] * b[ly.weight]
    density, color = mlp["density"], mlp["color"]
    s = float(samples_per_ray)
    render = b["density.out"] * s * (s - 1) / 2 + s * b["density.out"] * b["color.out"]
    return float(frame[0] * frame[1] * (s * (interp + density + color) + render))


def parameter_counts(arch: Mapping) -> dict[str, int]:
    """Stored parameters per component with parameters (hash levels and weights), in elements."""
    layout = model_layout(arch)
    size = 1 << arch["log2_table_size"]
    res = grid.level_resolutions(arch["n_min"], arch["n_max"], layout.levels)
    counts = {name: min(size, (n + 1) ** 3) * layout.features for name, n in zip(layout.hash_components, res)}
    counts.update({ly.weight: ly.in_size * ly.out_size for ly in layout.layers.values()})
    return counts


def model_bytes(policy: Mapping[str, int], arch: Mapping) -> int:
    """Model size in bytes at the policy's bitwidths (module doc); full precision = float32.

    Raises:
        quant.policy.PolicyError: the policy's components are not those of ``arch``.
    """
    b = _bits(policy, arch["levels"])
    total_bits = sum(n * b[name] for name, n in parameter_counts(arch).items())
    qparams = sum(QPARAM_BYTES for bits in b.values() if bits != FULL_PRECISION_BITS)
    return math.ceil(total_bits / 8) + qparams


def acaq_weights(arch: Mapping) -> dict[str, float]:
    """Each component's weight when the model is counted as A-CAQ's 15 components.

    A-CAQ quantizes the hash table as one component; here each level is one. Level l weighs
    ``n_l / sum(n)`` of one component (``n_l`` its stored entries, ``parameter_counts``), every other
    component 1, so the weights sum to 15 and a uniform table counts as one component at its bits.
    """
    counts = parameter_counts(arch)
    levels = model_layout(arch).hash_components
    total = sum(counts[name] for name in levels)
    return {name: (counts[name] / total if name in levels else 1.0) for name in component_names(arch["levels"])}


def fqr_acaq(policy: Mapping[str, int], arch: Mapping) -> float:
    """FQR over A-CAQ's 15 components: the table's bits averaged over levels weighted by entries
    (``acaq_weights``), then the plain mean with the 14 others (A-CAQ's Fig. 7 and Table 4 FQR).

    Raises:
        quant.policy.PolicyError: the policy's components are not those of ``arch``.
    """
    b = _bits(policy, arch["levels"])
    w = acaq_weights(arch)
    return sum(w[n] * b[n] for n in b) / sum(w.values())
