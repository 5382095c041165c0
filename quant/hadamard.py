"""DHQ: Hadamard-rotated quantization of linear layers (weights and input activations).

DHQ (Zhou et al., "Distribution-Aware Hadamard Quantization for Hardware-Efficient Implicit Neural
Representations", arXiv 2508.13478, 2025) rotates both operands of every linear layer by the
orthonormal Hadamard matrix H (n x n, ``H H^T = I``) before quantizing them with a standard quantizer:

    y = x W^T + b = (x H)(W H)^T + b,                          exact, because H H^T = I,
    y_q = Q_a(x H) Q_w(W H)^T + b                              (DHQ, sec. 3).

The rotation mixes every input channel into every output channel, so the very different
distributions of an INR's first, hidden and last-layer weights and activations (uniform, bimodal,
U-shaped from the sines, bell-shaped) all become bell-shaped with a similar spread, so that, the
paper argues, one standard quantizer fits every layer at low bits. ``make inr`` (``flows/inr/``)
measures that claim against plain per-tensor quantization; the README has the results.

Conventions, shared with the hardware datapath (``hw/hadamard.py``, ``sim/tlm/hadamard.py``):

* H is the Sylvester-ordered Walsh-Hadamard matrix, ``H[i, j] = (-1)^popcount(i & j) / sqrt(n)``
  (``hadamard_matrix``); the hardware applies the unnormalised +-1 matrix with a fast Walsh-Hadamard
  transform and folds ``1 / sqrt(n)`` into its requantization multiplier.
* A layer with ``in`` inputs is padded with zeros to ``n = padded_size(in)`` (the next power of two,
  at least 2) before the rotation: ``pad(x) H`` and ``pad(W) H`` (``pad(W)``: zero columns).
* Both quantizers are ``quant.quantizers.FakeQuantizer("symmetric", ...)``: signed narrow-range codes
  ``clamp(round(v / s), -(2^(B-1) - 1), 2^(B-1) - 1)`` with ``torch.round`` (half to even), the step
  ``s`` min-max calibrated (``s = 2 max|v| / (2^B - 1)``) and learnable (LSQ / LSQ+ straight-through
  gradients, see ``quant.quantizers``).
* The bias stays float and is added after the product; an integer export quantizes it to the
  accumulator scale ``s_a s_w``.

``rotate=False`` gives the plain uniform baseline on the same module: ``Q_a(x) Q_w(W)^T + b``.

Rotation placement (``PLACEMENTS``, ``placement_rotations``): each layer may rotate its weight, its
input activation, both or neither. The product stays exact in every case, because an operand that
is quantized in one basis is carried into the other by the exact +-1 transform of its codes:

=================== ==================================== =============================================
rotate (W, x)       forward                              on the Hadamard datapath (``hw.hadamard``)
=================== ==================================== =============================================
both (DHQ)          ``Q_a(xH) Q_w(WH)^T``                as is: FWHT, requantize u to a bits, multiply
weight only         ``(Q_a(x) H) Q_w(WH)^T``             FWHT of the a-bit codes without rounding
                                                         (M_a / 2^S_a = 1): u takes a + log2 n bits, so
                                                         T grows by the factor (a + log2 n) / a
input only          ``(Q_a(xH) H) Q_w(W)^T``             a second (inverse) FWHT after the requantizer,
                                                         not built
neither (uniform)   ``Q_a(x) Q_w(W)^T``                  the transform bypassed (the MLP engine's case)
=================== ==================================== =============================================

* ``"all"``: both, in every layer (DHQ as written, and this module's default).
* ``"paper"``: only the tensors DHQ (sec. 3.1) finds off the hidden layers' bell shape: the first and
  the last layer's weights (uniform / bimodal) and the last layer's input activation (the only input
  that is not a sine's U shape); the hidden layers are not rotated.
* ``"rule"``: per tensor, rotate when that lowers the tensor's quantization error at its bits under
  the chosen calibration: ``||Q(tH) - tH||^2 < ||Q(t) - t||^2`` (H is orthonormal, so the rotated
  error is the error the product sees), measured on the weight and on the full-precision input
  activations of a calibration batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Annotated

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from common.validate import checker

from quant.choices import DEFAULT_PERCENTILE, PLACEMENTS, check_placement
from quant.quantizers import FakeQuantizer

__all__ = [
    "PLACEMENTS",
    "hadamard_matrix",
    "padded_size",
    "DHQLinear",
    "check_placement",
    "placement_rotations",
    "dhq_wrap",
    "dhq_layers",
    "set_bits",
    "quantizer_parameters",
    "layer_parameters",
]


_check_size = checker(Annotated[int, Field(ge=1)])
_check_rotate = checker(bool, error=TypeError)

def hadamard_matrix(n: int, *, normalized: bool = True, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The Sylvester-ordered Hadamard matrix of order ``n``: ``H[i, j] = (-1)^popcount(i & j)``.

    Sylvester's construction ``H_2k = [[H_k, H_k], [H_k, -H_k]]`` (Walsh-Hadamard, natural order), the
    order of the fast Walsh-Hadamard transform's butterflies. Symmetric; with ``normalized`` divided by
    ``sqrt(n)``, so that it is orthonormal (``H @ H.T = I``) and its own inverse.

    Args:
        n: the order, a power of two (1, 2, 4, ...).
        normalized: divide by ``sqrt(n)`` (default); False gives the +-1 matrix of the hardware.
        dtype: a floating or integer torch dtype (the +-1 matrix is exact in any signed one).

    Returns:
        Tensor (n, n) of ``dtype`` on the CPU.

    Raises:
        ValueError: ``n`` is not an int (bools excluded), is < 1, or is not a power of two (naming it).
    """
    _check_size(n, "Hadamard size n")
    if n & (n - 1):
        raise ValueError(f"Hadamard size n must be a power of two, not {n}")
    i = torch.arange(n)
    bits = i[:, None] & i[None, :]
    parity = torch.zeros_like(bits)
    while bool(bits.any()):  # popcount parity, bit by bit
        parity ^= bits & 1
        bits = bits >> 1
    h = 1 - 2 * parity
    if normalized:
        return (h.to(torch.float64) / math.sqrt(n)).to(dtype)
    return h.to(dtype)


def padded_size(in_features: int) -> int:
    """The rotation size of a layer with ``in_features`` inputs: the next power of two, at least 2.

    Raises:
        ValueError: ``in_features`` is not an int >= 1 (naming it).
    """
    _check_size(in_features, "in_features")
    return max(2, 1 << (in_features - 1).bit_length())


class DHQLinear(nn.Module):
    """A trained ``nn.Linear`` with Hadamard-rotated (DHQ) or plain fake-quantized weight and input.

    ``forward(x) = act_quantizer(pad(x) H) @ weight_quantizer(pad(W) H).T + b`` (module doc), where
    ``pad`` appends ``n - in`` zero features and H is ``hadamard_matrix(n)``; with ``rotate=False``
    H is the identity (the uniform baseline). ``rotate_weight`` / ``rotate_act`` rotate one operand
    only (module doc's placement table). At full precision (bits None or 32) the output equals
    ``linear(x)`` up to float rounding.

    The module owns a copy of the parameters: the padded weight ``weight`` (out, n), rotated when
    ``rotate_weight``, and the bias (out,) or None, both ``nn.Parameter`` (trainable, for QAT); the
    wrapped layer is not kept.

    Calibration: ``with quant.quantizers.calibrate(model): model(x)`` — every forward passes the
    weight through ``weight_quantizer``, so the weight quantizer observes the (rotated) weight and
    the activation quantizer the (rotated) input, then both freeze their steps by ``calibration``.

    Args:
        linear: the trained layer, weight (out, in), optional bias.
        rotate: True for DHQ, False for the plain uniform quantizer on the same tensors.
        rotate_weight, rotate_act: None (default) follows ``rotate``; a bool rotates that operand or not.
        weight_bits, act_bits: B of the weight and the input activation quantizer, ints in [2, 32]
            (``quant.policy.check_bits``); None or 32: full precision.
        name: a label for the quantizers' error messages (e.g. the layer's qualified name).
        calibration, percentile: of both quantizers (``quant.calibration``: "min-max", "mse", "percentile").
        per_channel: one weight step per output row (``FakeQuantizer(channels=out)``), else per tensor.

    Attributes:
        n: the padded (rotation) size, ``padded_size(in_features)``.
        rotate: True when both operands are rotated (the Hadamard datapath's case).
        rotate_weight, rotate_act, in_features, out_features, per_channel: as given / of ``linear``.
        weight_quantizer: FakeQuantizer "symmetric" of ``weight`` (rotated when ``rotate_weight``).
        act_quantizer: FakeQuantizer "symmetric" of the padded input (rotated when ``rotate_act``).

    Raises:
        TypeError: ``linear`` is not an ``nn.Linear``; ``rotate``, ``rotate_weight``, ``rotate_act`` or
            ``per_channel`` not a bool.
        ValueError: invalid bits, calibration or percentile (naming the quantizer and the value).
    """

    def __init__(self, linear: nn.Linear, *, rotate: bool = True, rotate_weight: bool | None = None,
                 rotate_act: bool | None = None, weight_bits: int | None = None, act_bits: int | None = None,
                 name: str | None = None, calibration: str = "min-max", percentile: float = DEFAULT_PERCENTILE,
                 per_channel: bool = False) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"DHQLinear wraps an nn.Linear, not {type(linear).__name__}")
        _check_rotate(rotate, "rotate")
        _check_rotate(per_channel, "per_channel")
        self.rotate_weight = rotate if rotate_weight is None else _check_rotate(rotate_weight, "rotate_weight")
        self.rotate_act = rotate if rotate_act is None else _check_rotate(rotate_act, "rotate_act")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.n = padded_size(self.in_features)
        self.per_channel = per_channel
        label = name or "linear"
        w = linear.weight.detach()
        if self.rotate_weight or self.rotate_act:
            self.register_buffer("hadamard", hadamard_matrix(self.n, dtype=w.dtype).to(w.device), persistent=False)
        else:
            self.hadamard = None
        with torch.no_grad():
            padded = F.pad(w, (0, self.n - self.in_features))
            self.weight = nn.Parameter((padded @ self.hadamard if self.rotate_weight else padded).clone())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        common = {"calibration": calibration, "percentile": percentile}
        self.weight_quantizer = FakeQuantizer("symmetric", weight_bits, name=f"{label}.weight",
                                              channels=self.out_features if per_channel else None, **common)
        self.act_quantizer = FakeQuantizer("symmetric", act_bits, name=f"{label}.act_in", **common)
        self.to(w.device)

    @property
    def rotate(self) -> bool:
        """True when both operands are rotated: DHQ as written, what the Hadamard datapath runs as is."""
        return self.rotate_weight and self.rotate_act

    @property
    def rotated_weight(self) -> torch.Tensor:
        """``pad(W) H`` (out, n), detached: the float weight the weight quantizer sees (``pad(W)`` if not rotating)."""
        return self.weight.detach()

    def equivalent_weight(self) -> torch.Tensor:
        """The float weight (out, in) of the equivalent unrotated layer: ``(weight H^T)[:, :in]``, detached."""
        w = self.weight.detach()
        return (w @ self.hadamard.T if self.rotate_weight else w)[:, :self.in_features]

    def quantized_weight(self) -> torch.Tensor:
        """``weight_quantizer(weight)`` (out, n), detached: the weight the product uses."""
        with torch.no_grad():
            return self.weight_quantizer(self.weight)

    def rotate_input(self, x: torch.Tensor) -> torch.Tensor:
        """``pad(x) H``: (..., in) -> (..., n), before the activation quantizer (``pad(x)`` if not rotating it)."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"DHQLinear expects {self.in_features} input features, got shape {tuple(x.shape)}")
        padded = F.pad(x, (0, self.n - self.in_features))
        return padded @ self.hadamard if self.rotate_act else padded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in) float -> (..., out): ``act_q(pad(x) H) @ weight_q(pad(W) H).T + b`` (module doc).

        With one operand rotated, the quantized activation is carried into the weight's basis by H
        (``H^T = H``), exactly as the datapath's integer transform would.

        Raises:
            ValueError: the last dimension is not ``in_features``.
            RuntimeError: a quantizer is active but not calibrated.
        """
        w = self.weight_quantizer(self.weight)
        u = self.act_quantizer(self.rotate_input(x))
        if self.rotate_act != self.rotate_weight:
            u = u @ self.hadamard
        return F.linear(u, w, self.bias)

    def extra_repr(self) -> str:
        rot = f"rotate={self.rotate}" if self.rotate_weight == self.rotate_act else \
            f"rotate_weight={self.rotate_weight}, rotate_act={self.rotate_act}"
        return (f"in_features={self.in_features}, out_features={self.out_features}, n={self.n}, "
                f"{rot}, bias={self.bias is not None}")


def _check_optional_bits(bits, what: str):
    # FakeQuantizer validates too; checking here first names the argument, not a quantizer.
    from quant.policy import check_bits

    return None if bits is None else check_bits(bits, what)


def _linear_targets(model: nn.Module, names: Iterable[str] | None) -> list[str]:
    """The qualified names of the ``nn.Linear`` layers to wrap (every one for None), checked."""
    modules = dict(model.named_modules())
    if names is None:
        return [n for n, m in modules.items() if n and isinstance(m, nn.Linear)]
    targets = list(names)
    for n in targets:
        if n not in modules or not n:
            raise ValueError(f"no submodule named {n!r} to wrap")
        if not isinstance(modules[n], nn.Linear):
            raise ValueError(f"submodule {n!r} is a {type(modules[n]).__name__}, not an nn.Linear")
    return targets


def _quant_error(t: torch.Tensor, bits: int | None, calibration: str, percentile: float, channels: int | None) -> float:
    """``||Q(t) - t||^2`` of a fresh symmetric quantizer calibrated on ``t`` itself (0 at full precision)."""
    q = FakeQuantizer("symmetric", bits, calibration=calibration, percentile=percentile, channels=channels)
    if not q.active:
        return 0.0
    with torch.no_grad():
        q.observe(t)
        q.freeze()
        return float((q(t) - t).double().pow(2).sum())


@torch.no_grad()
def placement_rotations(model: nn.Module, placement: str, *, names: Iterable[str] | None = None,
                        bits: dict[str, tuple[int | None, int | None]] | None = None, inputs=None,
                        calibration: str = "min-max", percentile: float = DEFAULT_PERCENTILE,
                        per_channel: bool = False,
                        layer_inputs: dict[str, torch.Tensor] | None = None) -> dict[str, tuple[bool, bool]]:
    """``(rotate_weight, rotate_act)`` of each layer under a rotation ``placement`` (module doc).

    Args:
        model: the full-precision model (not modified).
        placement: one of ``PLACEMENTS``.
        names: the layers, in forward order (default: every ``nn.Linear``, in module order); the first
            and the last of them are the "first" and "last" layers of ``"paper"``.
        bits: layer name -> (weight bits, act bits), for ``"rule"`` (None or 32: full precision, never rotated).
        inputs: the calibration batch ``model(inputs)``, for ``"rule"`` (its layers' FP inputs are measured).
        calibration, percentile, per_channel: the quantizers' settings, for ``"rule"``.
        layer_inputs: for ``"rule"``, instead of ``inputs``: layer name -> its full-precision input
            activations (..., in), measured by the caller (e.g. a model that ``model(inputs)`` cannot call);
            a layer that saw no input (0 rows) does not rotate its input.

    Returns:
        Layer name -> ``(rotate_weight, rotate_act)``, in the order of ``names``.

    Raises:
        ValueError: an unknown placement (naming it); ``"rule"`` without ``bits`` or ``inputs``, or
            ``bits`` lacking a layer (naming it); bad names (as ``dhq_wrap``).
    """
    check_placement(placement)
    targets = _linear_targets(model, names)
    if placement == "all":
        return {n: (True, True) for n in targets}
    if placement == "paper":
        last = len(targets) - 1
        return {n: (k in (0, last), k == last) for k, n in enumerate(targets)}
    if bits is None or (inputs is None and layer_inputs is None):
        raise ValueError("placement 'rule' needs the layers' bits and a calibration batch (inputs or layer_inputs)")
    missing = [n for n in targets if n not in bits]
    if missing:
        raise ValueError(f"placement 'rule': no bits given for layer {missing[0]!r}")
    modules = dict(model.named_modules())
    if layer_inputs is not None:
        missing = [n for n in targets if n not in layer_inputs]
        if missing:
            raise ValueError(f"placement 'rule': no input activations given for layer {missing[0]!r}")
        return _rule(modules, targets, bits, layer_inputs, calibration, percentile, per_channel)
    seen: dict[str, torch.Tensor] = {}

    def keeper(name):
        def hook(module, args, output):  # returns None: the output is not replaced
            seen.setdefault(name, args[0].detach())
        return hook

    hooks = [modules[n].register_forward_hook(keeper(n)) for n in targets]
    try:
        model(inputs)
    finally:
        for h in hooks:
            h.remove()
    return _rule(modules, targets, bits, seen, calibration, percentile, per_channel)


def _rule(modules, targets, bits, seen, calibration, percentile, per_channel) -> dict[str, tuple[bool, bool]]:
    """Placement "rule" from each layer's full-precision input activations ``seen[name]``."""
    rotations = {}
    for n in targets:
        layer, (wb, ab) = modules[n], bits[n]
        size = padded_size(layer.in_features)
        h = hadamard_matrix(size, dtype=layer.weight.dtype).to(layer.weight.device)
        w = F.pad(layer.weight.detach(), (0, size - layer.in_features))
        x = F.pad(seen[n].reshape(-1, layer.in_features), (0, size - layer.in_features))
        ch = layer.out_features if per_channel else None
        rotations[n] = (_quant_error(w @ h, wb, calibration, percentile, ch)
                        < _quant_error(w, wb, calibration, percentile, ch),
                        len(x) > 0 and _quant_error(x @ h, ab, calibration, percentile, None)
                        < _quant_error(x, ab, calibration, percentile, None))  # no inputs seen: not rotated
    return rotations


def dhq_wrap(model: nn.Module, *, rotate: bool | dict[str, tuple[bool, bool]], weight_bits: int | None,
             act_bits: int | None, names: Iterable[str] | None = None, calibration: str = "min-max",
             percentile: float = DEFAULT_PERCENTILE, per_channel: bool = False) -> dict[str, DHQLinear]:
    """Replace ``nn.Linear`` submodules of ``model`` by ``DHQLinear`` wrappers, in place.

    Args:
        model: a module tree; it is modified (deep-copy it first to keep the float model).
        rotate: a bool for every layer, or layer name -> ``(rotate_weight, rotate_act)``
            (``placement_rotations``); a layer missing from the dict is not rotated.
        weight_bits, act_bits, calibration, percentile, per_channel: passed to every ``DHQLinear``.
        names: qualified names of the layers to wrap (``model.named_modules()`` names); None wraps every
            ``nn.Linear`` in the tree (not ``model`` itself).

    Returns:
        Qualified name -> the new ``DHQLinear``, in ``named_modules`` order.

    Raises:
        ValueError: bad bits, calibration or percentile (naming the argument and value); a name in
            ``names`` that is no submodule, or not an ``nn.Linear`` (naming it).
        TypeError: ``rotate`` neither a bool nor a dict.
    """
    _check_optional_bits(weight_bits, "weight_bits")
    _check_optional_bits(act_bits, "act_bits")
    if not isinstance(rotate, (bool, dict)):
        raise TypeError(f"rotate must be a bool or a dict of (rotate_weight, rotate_act), not {rotate!r}")
    modules = dict(model.named_modules())
    wrapped = {}
    for n in _linear_targets(model, names):
        rot_w, rot_a = (rotate, rotate) if isinstance(rotate, bool) else rotate.get(n, (False, False))
        parent_name, _, attr = n.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        layer = DHQLinear(modules[n], rotate_weight=rot_w, rotate_act=rot_a, weight_bits=weight_bits,
                          act_bits=act_bits, name=n, calibration=calibration, percentile=percentile,
                          per_channel=per_channel)
        setattr(parent, attr, layer)  # ModuleList / Sequential children are named "0", "1", ...
        wrapped[n] = layer
    return wrapped


def dhq_layers(model: nn.Module) -> dict[str, DHQLinear]:
    """Qualified name -> every ``DHQLinear`` in ``model`` (itself included, as ""), in module order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, DHQLinear)}


def set_bits(model: nn.Module, *, weight_bits: int | None, act_bits: int | None) -> None:
    """Set the bits of every ``DHQLinear``'s quantizers (None or 32: full precision).

    A calibrated quantizer re-derives its min-max step from the range it observed (PTQ at the new
    bits, no new calibration pass; ``FakeQuantizer.bits``), which discards a learned step.

    Raises:
        ValueError: bits not None and not an int in [2, 32] (naming the argument and value).
    """
    _check_optional_bits(weight_bits, "weight_bits")
    _check_optional_bits(act_bits, "act_bits")
    for layer in dhq_layers(model).values():
        layer.weight_quantizer.bits = weight_bits
        layer.act_quantizer.bits = act_bits


def quantizer_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The learnable steps (``scale``) of every active quantizer of every ``DHQLinear``, for LSQ+ training.

    The quantizers are symmetric, so they have no learnable offset. Straight-through gradients
    (Esser et al., ICLR 2020, eq. 3) reach them through ``FakeQuantizer.forward``.
    """
    return [q.scale for layer in dhq_layers(model).values()
            for q in (layer.weight_quantizer, layer.act_quantizer) if q.active]


def layer_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The weights (rotated when ``rotate``) and biases of every ``DHQLinear``, for QAT fine-tuning."""
    params = []
    for layer in dhq_layers(model).values():
        params.append(layer.weight)
        if layer.bias is not None:
            params.append(layer.bias)
    return params
