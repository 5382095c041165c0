"""The radiance field's layer shapes and quantized-component names, from its architecture dict alone.

Torch-free (stdlib only) so that ``quant/`` (costs), ``sim/`` (the accelerator mapping) and ``rl/``
read the model's shapes without importing torch or building a model; ``nerf.model.InstantNGP``
builds its layers from the same function, so the two cannot drift apart.

The architecture is the model's ``arch`` dict (``ARCH_KEYS``: levels L, log2_table_size, features F,
n_min, n_max, hidden H, geo_features G, bbox). For the Instant-NGP network of the A-CAQ reference code
(L = 16, F = 2, H = 64, G = 15), ``model_layout(arch)`` gives, in data-flow order::

    layer        in            out      weight component     input components
    density.l0   L*F = 32      H = 64   density.l0.weight    enc.out
    density.l1   H = 64        1+G = 16 density.l1.weight    density.l1.act_in
    color.l0     G+16 = 31     H = 64   color.l0.weight      density.l1.out (its G geometry features), sh.out
    color.l1     H = 64        H = 64   color.l1.weight      color.l1.act_in
    color.l2     H = 64        3        color.l2.weight      color.l2.act_in

and the activation components with their elements per sample: ``enc.out`` L*F, ``density.l1.act_in``
H, ``density.l1.out`` 1+G (output 0 the density logit, 1..G the geometry features), ``density.out``
1, ``sh.out`` 16 (SH degree 4), ``color.l1.act_in`` H, ``color.l2.act_in`` H, ``color.l2.out`` 3,
``color.out`` 3. The hash-table components ``hash.levelNN`` (one per level) complete the list of
``quant.policy.component_names(L)``; ``tests/test_mapping.py`` checks that the two lists agree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["ARCH_KEYS", "SH_FEATURES", "LayerShape", "ModelLayout", "model_layout", "kilonerf_layers", "encoded_size"]

#: Constructor arguments that define the architecture (checked when a checkpoint is loaded).
ARCH_KEYS = ("levels", "log2_table_size", "features", "n_min", "n_max", "hidden", "geo_features", "bbox")
#: Inputs the view direction adds to the colour MLP: the degree-4 spherical-harmonics encoding.
SH_FEATURES = 16
#: Colour channels (RGB).
RGB = 3


@dataclass(frozen=True)
class LayerShape:
    """One bias-free linear layer of the model.

    Fields:
        name: ``<mlp>.l<index>`` (``density.l0`` .. ``color.l2``).
        mlp: the MLP it belongs to, ``density`` or ``color``.
        index: its position in that MLP, from 0.
        in_size, out_size: elements of its input and output vectors; the weight is (out_size, in_size).
        weight: the quantized component of its weight (``<name>.weight``).
        inputs: the activation components whose codes form its input vector, in concatenation order
            (``color.l0``: the geometry features of ``density.l1.out``, then ``sh.out``).
        input_sizes: the elements each of ``inputs`` contributes (they sum to ``in_size``;
            ``color.l0``: (G, 16)).
    """

    name: str
    mlp: str
    index: int
    in_size: int
    out_size: int
    weight: str
    inputs: tuple[str, ...]
    input_sizes: tuple[int, ...]


@dataclass(frozen=True)
class ModelLayout:
    """Shapes of a model (``model_layout``): encoder, layers, activations.

    Fields:
        levels, features: hash-grid levels L and features per level F.
        encoder_out: L * F, elements of the interpolated feature vector (``enc.out``).
        layers: layer name -> ``LayerShape``, in data-flow order (density MLP, then colour MLP).
        activations: activation component -> elements per sample, in data-flow order.
    """

    levels: int
    features: int
    encoder_out: int
    layers: dict[str, LayerShape]
    activations: dict[str, int]

    def mlp(self, name: str) -> list[LayerShape]:
        """The layers of MLP ``name`` (``density`` or ``color``) in order.

        Raises:
            KeyError: no such MLP.
        """
        out = [ly for ly in self.layers.values() if ly.mlp == name]
        if not out:
            raise KeyError(f"the model has no {name!r} MLP (it has: density, color)")
        return out

    @property
    def mlps(self) -> tuple[str, ...]:
        """The MLP names in data-flow order: ``("density", "color")``."""
        return tuple(dict.fromkeys(ly.mlp for ly in self.layers.values()))

    def sizes(self, mlp: str) -> list[int]:
        """Vector sizes through MLP ``mlp``: ``[in_0, out_0, out_1, ...]`` (the co-simulation's shapes)."""
        layers = self.mlp(mlp)
        return [layers[0].in_size] + [ly.out_size for ly in layers]

    @property
    def hash_components(self) -> list[str]:
        """``hash.level00`` .. ``hash.level{L-1:02d}``: one table per level."""
        return [f"hash.level{lv:02d}" for lv in range(self.levels)]

    @property
    def weight_components(self) -> list[str]:
        return [ly.weight for ly in self.layers.values()]


def model_layout(arch: Mapping) -> ModelLayout:
    """The model's layer shapes and component names (module doc) from its architecture dict.

    Args:
        arch: ``InstantNGP.arch`` or any mapping with ``levels``, ``features``, ``hidden`` and
            ``geo_features`` (positive ints; the other ``ARCH_KEYS`` are not read).

    Raises:
        KeyError: a key is missing. ValueError: a size is not a positive int.
    """
    dims = {}
    for key in ("levels", "features", "hidden", "geo_features"):
        value = arch[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"arch[{key!r}] must be a positive integer, not {value!r}")
        dims[key] = value
    levels, features, hidden, geo = dims["levels"], dims["features"], dims["hidden"], dims["geo_features"]
    enc = levels * features

    def layer(mlp: str, index: int, inputs: dict[str, int], n_out: int) -> LayerShape:
        name = f"{mlp}.l{index}"
        return LayerShape(name, mlp, index, sum(inputs.values()), n_out, f"{name}.weight", tuple(inputs),
                          tuple(inputs.values()))

    layers = [
        layer("density", 0, {"enc.out": enc}, hidden),
        layer("density", 1, {"density.l1.act_in": hidden}, 1 + geo),
        layer("color", 0, {"density.l1.out": geo, "sh.out": SH_FEATURES}, hidden),  # outputs 1..G of density.l1
        layer("color", 1, {"color.l1.act_in": hidden}, hidden),
        layer("color", 2, {"color.l2.act_in": hidden}, RGB),
    ]
    activations = {"enc.out": enc, "density.l1.act_in": hidden, "density.l1.out": 1 + geo, "density.out": 1,
                   "sh.out": SH_FEATURES, "color.l1.act_in": hidden, "color.l2.act_in": hidden,
                   "color.l2.out": RGB, "color.out": RGB}
    return ModelLayout(levels=levels, features=features, encoder_out=enc,
                       layers={ly.name: ly for ly in layers}, activations=activations)


def encoded_size(freqs: int) -> int:
    """Elements of NeRF's positional encoding of a 3-vector with ``freqs`` frequencies: 3 + 6 * freqs."""
    return 3 + 6 * freqs


def kilonerf_layers(arch: Mapping) -> dict[str, LayerShape]:
    """One KiloNeRF tiny network's layers (``nerf.kilonerf``), in data-flow order, from its ``arch``
    (``hidden`` H, ``pos_freqs``, ``dir_freqs``; the reference code's H = 32, 10, 4)::

        layer        in                        out      input components
        density.l0   3 + 6 * pos_freqs = 63    H        pe.out
        density.l1   H                         H        density.l1.act_in
        density.l2   H                         1 + H    density.l2.act_in
        color.l0     H + 3 + 6 * dir_freqs     H        density.l2.out (its H features), dir.out
        color.l1     H                         3        color.l1.act_in

    Every layer has a bias (stored per network at full precision). Raises KeyError: a key is missing.
    """
    h, pe, de = arch["hidden"], encoded_size(arch["pos_freqs"]), encoded_size(arch["dir_freqs"])

    def layer(mlp: str, index: int, inputs: dict[str, int], n_out: int) -> LayerShape:
        name = f"{mlp}.l{index}"
        return LayerShape(name, mlp, index, sum(inputs.values()), n_out, f"{name}.weight", tuple(inputs),
                          tuple(inputs.values()))

    layers = [layer("density", 0, {"pe.out": pe}, h), layer("density", 1, {"density.l1.act_in": h}, h),
              layer("density", 2, {"density.l2.act_in": h}, 1 + h),
              layer("color", 0, {"density.l2.out": h, "dir.out": de}, h),
              layer("color", 1, {"color.l1.act_in": h}, RGB)]
    return {ly.name: ly for ly in layers}
