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

from quant.quantizers import FakeQuantizer

__all__ = [
    "hadamard_matrix",
    "padded_size",
    "DHQLinear",
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
    H is the identity (the uniform baseline). At full precision (bits None or 32) the output equals
    ``linear(x)`` up to float rounding.

    The module owns a copy of the parameters: the rotated, padded weight ``weight`` (out, n) and the
    bias (out,) or None, both ``nn.Parameter`` (trainable, for QAT); the wrapped layer is not kept.

    Calibration: ``with quant.quantizers.calibrate(model): model(x)`` — every forward passes the
    weight through ``weight_quantizer``, so the weight quantizer observes the (rotated) weight and
    the activation quantizer the (rotated) input, then both freeze their min-max steps.

    Args:
        linear: the trained layer, weight (out, in), optional bias.
        rotate: True for DHQ, False for the plain uniform quantizer on the same tensors.
        weight_bits, act_bits: B of the weight and the input activation quantizer, ints in [2, 32]
            (``quant.policy.check_bits``); None or 32: full precision.
        name: a label for the quantizers' error messages (e.g. the layer's qualified name).

    Attributes:
        n: the padded (rotation) size, ``padded_size(in_features)``.
        rotate, in_features, out_features: as given / of ``linear``.
        weight_quantizer: FakeQuantizer "symmetric" of ``weight`` (rotated when ``rotate``).
        act_quantizer: FakeQuantizer "symmetric" of the padded (rotated) input, signed narrow range.

    Raises:
        TypeError: ``linear`` is not an ``nn.Linear``, or ``rotate`` is not a bool.
        ValueError: invalid bits (naming the quantizer and the value).
    """

    def __init__(self, linear: nn.Linear, *, rotate: bool = True, weight_bits: int | None = None,
                 act_bits: int | None = None, name: str | None = None) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"DHQLinear wraps an nn.Linear, not {type(linear).__name__}")
        _check_rotate(rotate, "rotate")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.n = padded_size(self.in_features)
        self.rotate = rotate
        label = name or "linear"
        w = linear.weight.detach()
        if rotate:
            self.register_buffer("hadamard", hadamard_matrix(self.n, dtype=w.dtype).to(w.device), persistent=False)
        else:
            self.hadamard = None
        with torch.no_grad():
            self.weight = nn.Parameter(self._rotate(F.pad(w, (0, self.n - self.in_features))).clone())
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone())
        self.weight_quantizer = FakeQuantizer("symmetric", weight_bits, name=f"{label}.weight")
        self.act_quantizer = FakeQuantizer("symmetric", act_bits, name=f"{label}.act_in")
        self.to(w.device)

    def _rotate(self, v: torch.Tensor) -> torch.Tensor:
        return v @ self.hadamard if self.rotate else v

    @property
    def rotated_weight(self) -> torch.Tensor:
        """``pad(W) H`` (out, n), detached: the float weight the weight quantizer sees (``pad(W)`` if not rotating)."""
        return self.weight.detach()

    def equivalent_weight(self) -> torch.Tensor:
        """The float weight (out, in) of the equivalent unrotated layer: ``(weight H^T)[:, :in]``, detached."""
        w = self.weight.detach()
        return (w @ self.hadamard.T if self.rotate else w)[:, :self.in_features]

    def quantized_weight(self) -> torch.Tensor:
        """``weight_quantizer(weight)`` (out, n), detached: the weight the product uses."""
        with torch.no_grad():
            return self.weight_quantizer(self.weight)

    def rotate_input(self, x: torch.Tensor) -> torch.Tensor:
        """``pad(x) H``: (..., in) -> (..., n), before the activation quantizer."""
        if x.shape[-1] != self.in_features:
            raise ValueError(f"DHQLinear expects {self.in_features} input features, got shape {tuple(x.shape)}")
        return self._rotate(F.pad(x, (0, self.n - self.in_features)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in) float -> (..., out): ``act_q(pad(x) H) @ weight_q(pad(W) H).T + b``.

        Raises:
            ValueError: the last dimension is not ``in_features``.
            RuntimeError: a quantizer is active but not calibrated.
        """
        w = self.weight_quantizer(self.weight)
        return F.linear(self.act_quantizer(self.rotate_input(x)), w, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, n={self.n}, "
                f"rotate={self.rotate}, bias={self.bias is not None}")


def _check_optional_bits(bits, what: str):
    # FakeQuantizer validates too; checking here first names the argument, not a quantizer.
    from quant.policy import check_bits

    return None if bits is None else check_bits(bits, what)


def dhq_wrap(model: nn.Module, *, rotate: bool, weight_bits: int | None, act_bits: int | None,
             names: Iterable[str] | None = None) -> dict[str, DHQLinear]:
    """Replace ``nn.Linear`` submodules of ``model`` by ``DHQLinear`` wrappers, in place.

    Args:
        model: a module tree; it is modified (deep-copy it first to keep the float model).
        rotate, weight_bits, act_bits: passed to every ``DHQLinear`` (see there).
        names: qualified names of the layers to wrap (``model.named_modules()`` names); None wraps every
            ``nn.Linear`` in the tree (not ``model`` itself).

    Returns:
        Qualified name -> the new ``DHQLinear``, in ``named_modules`` order.

    Raises:
        ValueError: bad bits (naming the argument and value); a name in ``names`` that is no submodule,
            or not an ``nn.Linear`` (naming it).
    """
    _check_optional_bits(weight_bits, "weight_bits")
    _check_optional_bits(act_bits, "act_bits")
    modules = dict(model.named_modules())
    if names is None:
        targets = [n for n, m in modules.items() if n and isinstance(m, nn.Linear)]
    else:
        targets = list(names)
        for n in targets:
            if n not in modules or not n:
                raise ValueError(f"no submodule named {n!r} to wrap")
            if not isinstance(modules[n], nn.Linear):
                raise ValueError(f"submodule {n!r} is a {type(modules[n]).__name__}, not an nn.Linear")
    wrapped = {}
    for n in targets:
        parent_name, _, attr = n.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        layer = DHQLinear(modules[n], rotate=rotate, weight_bits=weight_bits, act_bits=act_bits, name=n)
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
