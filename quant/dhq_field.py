"""DHQ in the radiance field: the Instant-NGP field's MLP layers quantized by Hadamard rotation (``quant.hadamard``).

The quantizer choice of ``make quantize`` and ``make search`` (``QUANTIZERS``): ``uniform`` is the PTQ of
``quant.ptq`` (one ``FakeQuantizer`` per policy component at the field's hook points); ``dhq`` puts a
``quant.hadamard.DHQLinear`` in place of each MLP layer that its placement rotates and leaves the rest
of the policy's quantizers where they are. Both calibrate on the same rays (``quant.ptq.calibrate_field``,
which runs ``quant.quantizers.calibrate`` over every ``RangeObserver``, the DHQ layers' included).

Mapping of the policy onto a DHQ layer (``nerf.layout``: each layer has a ``.weight`` component and
input components ``inputs``), for a layer with rotation ``(rotate_weight, rotate_act)``
(``field_rotations``):

=========================== ============================================================================
policy component            with DHQ
=========================== ============================================================================
``<layer>.weight``          the DHQLinear's weight quantizer, at these bits: symmetric narrow range
                            (as in the uniform path), of ``pad(W) H`` when the weight is rotated, of
                            ``pad(W)`` when only the input is. The uniform weight quantizer is not installed.
``<layer>.act_in``          (``density.l1``, ``color.l1``, ``color.l2``: a ReLU output, **unsigned** in
                            the uniform path) when the input is rotated: replaced by the DHQLinear's
                            activation quantizer at the same bits, **symmetric narrow range** on
                            ``pad(x) H``: the rotated ReLU output is signed and bell-shaped around 0, so
                            the code spends one of its B bits on the sign (2^B - 1 levels over
                            [-max, max] instead of 2^B over [0, max]); the uniform quantizer is not
                            installed. When only the weight is rotated it stays the uniform unsigned
                            quantizer (the datapath transforms those codes exactly, a + log2 n bits).
``enc.out``; ``density.l1.out`` the outputs of the encoder, the density MLP and the SH unit that form
and ``sh.out``              the first layers' inputs (``density.l0``; ``color.l0``) keep their uniform
                            (asymmetric) quantizers: they are the streams between the units. When the
                            input is rotated, the DHQLinear's activation quantizer requantizes the
                            rotated vector at ``a`` = the widest of the layer's input components (the
                            Hadamard datapath's FWHT of the stream codes, then its requantizer to a bits).
hash levels, ``density.out``, uniform, as in the uniform path (no MLP layer quantizes them).
``color.l2.out``, ``color.out``
=========================== ============================================================================

A layer rotated in neither operand stays an ``nn.Linear`` with the uniform path's quantizers (and runs on
the bit-serial MLP engine in the frame model, ``sim.mapping.hadamard_layers``). The output of a DHQ layer
that feeds the next layer's rotated input (a ReLU between) is no policy component: it is carried at full
precision (the datapath's ``out_bits``, sized wide). The bias-free layers stay bias-free; the zero point of
an asymmetric input stream is folded into the dequantized value (fake quantization, float).

Placements (``quant.hadamard.PLACEMENTS``) on the field's two MLPs, each taken as its own network:
``all`` rotates both operands of every layer; ``paper`` rotates the first layer's weight and the last
layer's weight and input of each MLP (``density.l0`` weight, ``density.l1`` both, ``color.l0`` weight,
``color.l2`` both, ``color.l1`` neither); ``rule`` decides per tensor by the quantization error at the
policy's bits on the calibration rays' full-precision layer inputs (``quant.hadamard.placement_rotations``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import torch
from torch import nn

from quant.calibration import DEFAULT_PERCENTILE, check_calibration
from quant.choices import QUANTIZERS, check_quantizer
from quant.hadamard import DHQLinear, check_placement, dhq_wrap, placement_rotations

__all__ = ["QUANTIZERS", "check_quantizer", "check_options", "layer_names", "dhq_bits", "taken_over",
           "field_rotations", "capture_layer_inputs", "install_dhq", "set_dhq_bits", "dhq_installed",
           "RULE_ROWS"]

#: Placement "rule": at most this many calibration samples' inputs are kept per layer.
RULE_ROWS = 1 << 16


def check_options(quantizer: str, placement: str | None = None, calibration: str | None = None) -> dict:
    """Check the quantizer options before any work: ``{"quantizer", "placement", "calibration"}`` with DHQ's
    defaults ("all", "min-max") filled in; uniform takes neither option (None given: fine).

    Raises:
        ValueError: an unknown quantizer, placement or calibration (naming it and the choices); a placement
            or calibration given with the uniform quantizer.
    """
    check_quantizer(quantizer)
    if quantizer == "uniform":
        for what, value in (("placement", placement), ("calibration", calibration)):
            if value is not None:
                raise ValueError(f"{what} {value!r} is an option of quantizer 'dhq', not 'uniform' (its PTQ is "
                                 "min-max with no rotation)")
        return {"quantizer": "uniform"}
    return {"quantizer": "dhq", "placement": check_placement("all" if placement is None else placement),
            "calibration": check_calibration("min-max" if calibration is None else calibration, "calibration")}


def layer_names(arch: Mapping) -> list[str]:
    """The field's MLP layers in data-flow order (``nerf.layout`` names: ``density.l0`` .. ``color.l2``)."""
    from nerf.layout import model_layout

    return list(model_layout(arch).layers)


def _module(name: str) -> str:
    return name.replace(".", "_")  # nerf.model.InstantNGP's attribute of layer density.l0: density_l0


def dhq_bits(policy: Mapping[str, int], arch: Mapping, rotations: Mapping[str, tuple[bool, bool]]) -> dict:
    """Layer -> ``(weight_bits, act_bits)`` of its DHQLinear (module doc): the ``.weight`` component's bits;
    with a rotated input the widest of its input components, else None (the input is the uniform path's)."""
    from nerf.layout import model_layout

    out = {}
    for ly in model_layout(arch).layers.values():
        rot_w, rot_a = rotations[ly.name]
        if rot_w or rot_a:
            out[ly.name] = (int(policy[ly.weight]), max(int(policy[n]) for n in ly.inputs) if rot_a else None)
    return out


def taken_over(arch: Mapping, rotations: Mapping[str, tuple[bool, bool]]) -> list[str]:
    """The policy components whose uniform quantizers DHQ does not install (module doc): each wrapped layer's
    ``.weight``, and each input-rotated layer's own ``<layer>.act_in``."""
    from nerf.layout import model_layout

    out = []
    for ly in model_layout(arch).layers.values():
        rot_w, rot_a = rotations[ly.name]
        if rot_w or rot_a:
            out.append(ly.weight)
        if rot_a:
            out += [n for n in ly.inputs if n == f"{ly.name}.act_in"]
    return out


@torch.no_grad()
def capture_layer_inputs(model, occupancy, data, *, rays: int, n_samples: int, seed: int = 0,
                         max_rows: int = RULE_ROWS) -> dict[str, torch.Tensor]:
    """Each MLP layer's full-precision inputs on the calibration rays of ``quant.ptq.calibrate_field`` (the
    same rays, seed and sampling): layer -> float (<= max_rows, in), the first ``max_rows`` samples."""
    from quant.ptq import calibrate_field

    kept: dict[str, list[torch.Tensor]] = {n: [] for n in layer_names(model.arch)}
    counts = dict.fromkeys(kept, 0)

    def keeper(name):
        def hook(module, args, output):
            if counts[name] < max_rows:
                x = args[0].detach().reshape(-1, args[0].shape[-1])[:max_rows - counts[name]]
                kept[name].append(x.clone())
                counts[name] += len(x)
        return hook

    hooks = [getattr(model, _module(n)).register_forward_hook(keeper(n)) for n in kept]
    try:
        calibrate_field(model, occupancy, data, rays=rays, n_samples=n_samples, seed=seed, observers=nn.Module())
    finally:
        for h in hooks:
            h.remove()
    sizes = {n: getattr(model, _module(n)).in_features for n in kept}  # a layer no sample reached: 0 rows
    return {n: torch.cat(v) if v else torch.zeros(0, sizes[n]) for n, v in kept.items()}


def field_rotations(model, placement: str, *, policy: Mapping[str, int] | None = None,
                    layer_inputs: Mapping[str, torch.Tensor] | None = None, calibration: str = "min-max",
                    percentile: float = DEFAULT_PERCENTILE) -> dict[str, tuple[bool, bool]]:
    """Layer (``density.l0`` ..) -> ``(rotate_weight, rotate_act)`` under ``placement`` (module doc).

    ``rule`` needs ``policy`` (the layers' bits, ``dhq_bits`` of a both-rotated layer) and ``layer_inputs``
    (``capture_layer_inputs``). The model must hold its ``nn.Linear`` layers (not yet wrapped).

    Raises:
        ValueError: an unknown placement (naming it); ``rule`` without ``policy`` or ``layer_inputs``.
    """
    from nerf.layout import model_layout

    check_placement(placement)
    layout = model_layout(model.arch)
    out: dict[str, tuple[bool, bool]] = {}
    if placement == "rule":
        if policy is None or layer_inputs is None:
            raise ValueError("placement 'rule' needs the policy's bits and the calibration rays' layer inputs")
        bits = {_module(n): b for n, b in dhq_bits(policy, model.arch, dict.fromkeys(layout.layers,
                                                                                     (True, True))).items()}
        rot = placement_rotations(model, "rule", names=[_module(n) for n in layout.layers], bits=bits,
                                  layer_inputs={_module(n): x for n, x in layer_inputs.items()},
                                  calibration=calibration, percentile=percentile)
        return {n: rot[_module(n)] for n in layout.layers}
    for mlp in layout.mlps:  # each MLP its own network: its first and last layer for "paper"
        names = [ly.name for ly in layout.mlp(mlp)]
        rot = placement_rotations(model, placement, names=[_module(n) for n in names])
        out.update({n: rot[_module(n)] for n in names})
    return out


def install_dhq(model, policy: Mapping[str, int], rotations: Mapping[str, tuple[bool, bool]], *,
                calibration: str = "min-max", percentile: float = DEFAULT_PERCENTILE) -> dict:
    """DHQ PTQ set-up (not calibrated): the uniform quantizers of ``policy`` (``quant.ptq.apply_policy``) but
    those DHQ takes over (``taken_over``), and a ``DHQLinear`` in place of every rotated layer (in place).

    Returns:
        ``{"quantizers": component -> FakeQuantizer installed at the hook points, "layers": layer ->
        DHQLinear, "originals": layer -> the replaced nn.Linear}`` (``dhq_installed`` puts them back).
    """
    from quant.ptq import apply_policy

    quantizers = apply_policy(model, policy)
    for name in taken_over(model.arch, rotations):
        if quantizers.pop(name, None) is not None:
            del model.quant[model._key(name)]
    layers, originals = {}, {}
    for name, (wb, ab) in dhq_bits(policy, model.arch, rotations).items():
        originals[name] = getattr(model, _module(name))
        wrapped = dhq_wrap(model, rotate={_module(name): rotations[name]}, weight_bits=wb, act_bits=ab,
                           names=[_module(name)], calibration=calibration, percentile=percentile)
        layers[name] = wrapped[_module(name)]
    return {"quantizers": quantizers, "layers": layers, "originals": originals}


def set_dhq_bits(layers: Mapping[str, DHQLinear], policy: Mapping[str, int], arch: Mapping,
                 rotations: Mapping[str, tuple[bool, bool]]) -> None:
    """Set the DHQ layers' bits from ``policy`` (``dhq_bits``); calibrated quantizers re-derive their steps."""
    for name, (wb, ab) in dhq_bits(policy, arch, rotations).items():
        layers[name].weight_quantizer.bits = wb
        layers[name].act_quantizer.bits = ab


@contextlib.contextmanager
def dhq_installed(model, policy: Mapping[str, int], rotations: Mapping[str, tuple[bool, bool]], *,
                  calibration: str = "min-max", percentile: float = DEFAULT_PERCENTILE):
    """``install_dhq`` for the ``with`` block; on exit the ``nn.Linear`` layers are back and no quantizer is left."""
    installed = install_dhq(model, policy, rotations, calibration=calibration, percentile=percentile)
    try:
        yield installed
    finally:
        for name, layer in installed["originals"].items():
            setattr(model, _module(name), layer)
        model.clear_quantizers()
