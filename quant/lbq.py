"""Learned-bitwidth quantization (LBQ) of A-CAQ: trainable range, maximum and soft bitwidth.

Source: Liu et al., "Content-Aware Radiance Fields: Aligning Model Complexity with Scene Intricacy
Through Learned Bitwidth Quantization" (A-CAQ), ECCV 2024, Sec. 3-4 and the supplementary's
derivatives (eqs. 13-18); the choices the paper leaves open follow its reference code
(``quantization/QParam.py`` and ``quantization/utils.py`` of WeihangLiu2024/Content_Aware_NeRF).

Parameters of one quantizer (0-d float32): the range ``r`` (``r_v``), the soft bitwidth ``b`` and, for
the asymmetric scheme only, the maximum ``v_max``. Derived, with ``B = round(clamp(b, 2, 32))``,
``q = 2^B - 1`` and the step ``s = r / q``:

=========== ================ ============ ================= ============================== ===========
scheme      v_min            v_max        zero point z      codes k (round, then clamp)    used for
=========== ================ ============ ================= ============================== ===========
symmetric   -r / 2           r / 2        0                 [-2^(B-1), 2^(B-1) - 1]        weights
unsigned    0                r            0                 [0, 2^B - 1]                   ReLU, exp
asymmetric  v_max - r        trainable    round(-v_min / s) [0, 2^B - 1]                   table, rest
=========== ================ ============ ================= ============================== ===========

Value: ``x_q = s (clamp(round(x / s + z), k_min, k_max) - z)``. The symmetric codes are the full
two's-complement range, as in the reference code (``quant.quantizers``' PTQ quantizer uses the narrow
one). Min-max initialisation (A-CAQ starts from PTQ): symmetric ``r = 2 max|x|``; unsigned
``r = max(x)``; asymmetric ``v_max = max(x)``, ``r = max(x) - min(x)``; a zero range becomes 1.

Gradients (``LBQFunction``, closed form; ``t = dq/dB = 2^B ln 2``). With ``u = x / s``, the codes
``k``, ``R = k - z`` and the masks inside ``v_min <= x <= v_max``, below and above:

* x: the straight-through estimator, ``dL/dx = dL/dx_q`` inside and 0 outside (eq. 13);
* r (eqs. 14-15): inside ``R / q - x / r``; below / above: symmetric ``k_min / q`` / ``k_max / q``;
  unsigned ``0`` / ``1``; asymmetric ``-v_max / r - z / q`` / ``1 - v_max / r - z / q``;
* v_max (asymmetric, eq. 16): 0 inside, 1 outside;
* b (eqs. 17-18, B taken as continuous in ``q``): inside ``t (x / q - r R / q^2)``; below / above:
  symmetric ``t r / (2 q^2)`` both; unsigned 0; asymmetric ``t (r z / q^2 + (v_max - r) / q)`` both.

Each is the exact derivative of the straight-through surrogate, the output with every rounding's
residual (``round(u + z) - (u + z)`` and ``z - (-v_min / s)``) held constant; ``tests/test_lbq.py``
checks each against finite differences of that surrogate. The parameters' gradients are summed over
the tensor. One difference from the reference code: for the unsigned scheme it reuses the asymmetric
expressions with ``v_max`` frozen at its initial value, so its range gradient above the maximum is
``1 - v_max / r`` (0 at initialisation) where the scheme's value ``r`` has derivative 1; here it is 1.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from quant.policy import FULL_PRECISION_BITS, MIN_BITS, SCHEMES, scheme_of
from quant.quantizers import RangeObserver

__all__ = ["LBQFunction", "lbq_quantize", "LBQuantizer", "hard_bits", "lbq_code_range", "INIT_BITS",
           "EXP_INIT_BITS"]

#: The soft bitwidth every component starts at (A-CAQ), except the exp output.
INIT_BITS = 8.0
#: The density's exp output starts at full precision (the reference code: exp is hard to quantize).
EXP_INIT_BITS = 32.0
_LN2 = math.log(2.0)


def hard_bits(b: torch.Tensor) -> torch.Tensor:
    """``B = round(clamp(b, 2, 32))`` of a soft bitwidth tensor (float, same shape)."""
    return torch.round(b.detach().clamp(MIN_BITS, FULL_PRECISION_BITS))


def lbq_code_range(scheme: str, bits: int) -> tuple[int, int]:
    """The integer codes ``(k_min, k_max)`` of an LBQ scheme at ``bits`` B (module table)."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
    if scheme == "symmetric":
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _geometry(scheme: str, r: torch.Tensor, v_max: torch.Tensor, b: torch.Tensor):
    """(B, q, s, v_min, v_max, z, k_min, k_max) as float tensors (the module table)."""
    B = hard_bits(b)
    q = 2.0**B - 1.0
    s = r / q
    if scheme == "symmetric":
        v_min, v_hi, z = -r / 2, r / 2, torch.zeros_like(r)
        k_min, k_max = -(2.0 ** (B - 1)), 2.0 ** (B - 1) - 1.0
    elif scheme == "unsigned":
        v_min, v_hi, z = torch.zeros_like(r), r, torch.zeros_like(r)
        k_min, k_max = torch.zeros_like(q), q
    else:
        v_min, v_hi = v_max - r, v_max
        z = torch.round(-v_min / s)
        k_min, k_max = torch.zeros_like(q), q
    return B, q, s, v_min, v_hi, z, k_min, k_max


class LBQFunction(torch.autograd.Function):
    """``x_q = s (clamp(round(x / s + z), k_min, k_max) - z)`` with A-CAQ's closed-form gradients (module doc).

    ``apply(x, r, v_max, b, scheme)``: x float of any shape; r, v_max, b 0-d float tensors (v_max is
    used by the asymmetric scheme only; pass any 0-d tensor otherwise). Returns x's shape and dtype.
    """

    @staticmethod
    def forward(ctx, x, r, v_max, b, scheme):
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
        B, q, s, v_min, v_hi, z, k_min, k_max = _geometry(scheme, r.detach(), v_max.detach(), b)
        k = torch.clamp(torch.round(x / s + z), k_min, k_max)
        ctx.save_for_backward(x, r.detach(), v_max.detach(), b.detach())
        ctx.scheme = scheme
        return s * (k - z)

    @staticmethod
    def backward(ctx, g):
        x, r, v_max, b = ctx.saved_tensors
        scheme = ctx.scheme
        B, q, s, v_min, v_hi, z, k_min, k_max = _geometry(scheme, r, v_max, b)
        inside = (x >= v_min) & (x <= v_hi)
        below = x < v_min
        R = torch.clamp(torch.round(x / s + z), k_min, k_max) - z
        t = (q + 1.0) * _LN2
        # eq. 13: straight-through inside the range
        grad_x = torch.where(inside, g, torch.zeros_like(g)) if ctx.needs_input_grad[0] else None
        # eqs. 14-15: the range
        d_r_in = R / q - x / r
        if scheme == "symmetric":
            d_r_lo, d_r_hi = k_min / q, k_max / q
            d_b_lo = d_b_hi = t * r / (2.0 * q * q)
        elif scheme == "unsigned":
            d_r_lo, d_r_hi = torch.zeros_like(r), torch.ones_like(r)
            d_b_lo = d_b_hi = torch.zeros_like(r)
        else:
            d_r_lo, d_r_hi = -v_max / r - z / q, 1.0 - v_max / r - z / q
            d_b_lo = d_b_hi = t * (r * z / (q * q) + (v_max - r) / q)
        d_r = torch.where(inside, d_r_in, torch.where(below, d_r_lo, d_r_hi))
        grad_r = (g * d_r).sum().reshape(r.shape)
        # eq. 16: the maximum (asymmetric only)
        grad_vmax = None
        if scheme == "asymmetric" and ctx.needs_input_grad[2]:
            grad_vmax = torch.where(inside, torch.zeros_like(g), g).sum().reshape(v_max.shape)
        # eqs. 17-18: the bitwidth, q = 2^B - 1 taken as continuous in B
        d_b_in = t * (x / q - r * R / (q * q))
        d_b = torch.where(inside, d_b_in, torch.where(below, d_b_lo, d_b_hi))
        grad_b = (g * d_b).sum().reshape(b.shape)
        return grad_x, grad_r, grad_vmax, grad_b, None


def lbq_quantize(x: torch.Tensor, scheme: str, r: torch.Tensor, v_max: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LBQ fake quantization of ``x`` (``LBQFunction``); raises ValueError for an unknown scheme."""
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
    return LBQFunction.apply(x, r, v_max, b, scheme)


class LBQuantizer(RangeObserver):
    """A learned-bitwidth quantizer (module doc): parameters ``range`` (r), ``soft_bits`` (b), ``v_max``.

    Use like ``quant.quantizers.FakeQuantizer``: min-max calibrate (``quant.quantizers.calibrate``),
    which sets ``range`` and ``v_max`` (``freeze``); then ``forward`` quantizes at ``bits``.

    Args:
        scheme: "symmetric", "unsigned" or "asymmetric".
        init_bits: the soft bitwidth b to start from (A-CAQ: 8; 32 for the exp output).
        name: the component name, for messages and the policy.

    Attributes:
        range, soft_bits: ``nn.Parameter`` 0-d float32. v_max: an ``nn.Parameter`` for the asymmetric
        scheme, else a buffer (derived: r / 2 or r). ``is_weight``: the component is a weight or the
        hash table (the bit penalty counts it 1.3x).

    Raises:
        ValueError: unknown scheme, or init_bits outside [2, 32].
    """

    def __init__(self, scheme: str, init_bits: float = INIT_BITS, *, name: str | None = None) -> None:
        super().__init__()
        if scheme not in SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
        if not MIN_BITS <= float(init_bits) <= FULL_PRECISION_BITS:
            raise ValueError(f"init_bits of {name or scheme!r} must be in [{MIN_BITS}, {FULL_PRECISION_BITS}], "
                             f"not {init_bits!r}")
        self.scheme, self.name = scheme, name
        self.range = nn.Parameter(torch.tensor(1.0))
        self.soft_bits = nn.Parameter(torch.tensor(float(init_bits)))
        if scheme == "asymmetric":
            self.v_max = nn.Parameter(torch.tensor(0.5))
        else:
            self.register_buffer("v_max", torch.tensor(0.0))
        self.frozen = False

    @classmethod
    def for_component(cls, name: str) -> LBQuantizer:
        """The quantizer of a ``quant.policy`` component: its scheme; 32 bits to start for ``density.out``."""
        return cls(scheme_of(name), EXP_INIT_BITS if name == "density.out" else INIT_BITS, name=name)

    @property
    def is_weight(self) -> bool:
        return bool(self.name) and (self.name.endswith(".weight") or self.name.startswith("hash."))

    @property
    def bits(self) -> int:
        """B = round(clamp(b, 2, 32)), the bitwidth the forward pass uses."""
        return int(hard_bits(self.soft_bits))

    @torch.no_grad()
    def clamp_bits(self) -> None:
        """Project b onto [2, 32] (after an optimiser step; the reference code clamps in place too)."""
        self.soft_bits.clamp_(MIN_BITS, FULL_PRECISION_BITS)

    @torch.no_grad()
    def freeze(self) -> None:
        """Min-max initialisation of ``range`` and ``v_max`` from the observed range (module doc).

        Raises:
            RuntimeError: nothing observed, or a range that is not finite.
        """
        lo, hi = self._checked_range(f"quantizer {self.name or self.scheme!r}")
        if self.scheme == "symmetric":
            span = 2 * torch.maximum(lo.abs(), hi.abs())
        elif self.scheme == "unsigned":
            span = hi.clamp(min=0)
        else:
            span = hi - lo
        self.range.copy_(torch.where(span > 0, span, torch.ones_like(span)))
        if self.scheme == "asymmetric":
            self.v_max.copy_(hi)
        self.frozen = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantize ``x`` (any shape); pass it through while calibrating.

        Raises:
            RuntimeError: never initialised (calibrate first or load a state dict).
        """
        if self.calibrating:
            self.observe(x)
            return x
        if not self.frozen:
            raise RuntimeError(f"quantizer {self.name or self.scheme!r} has no range yet: calibrate it first")
        return LBQFunction.apply(x, self.range, self.v_max, self.soft_bits, self.scheme)

    def get_extra_state(self) -> dict:
        return {"frozen": self.frozen}

    def set_extra_state(self, state: dict) -> None:
        self.frozen = bool(state["frozen"])

    def extra_repr(self) -> str:
        return f"{self.scheme!r}, b={float(self.soft_bits):.3f}, name={self.name!r}"
