"""Export of a calibrated ``DHQLinear`` to the integers of the Hadamard datapath, and why they agree.

The datapath (``hw.hadamard``, modelled bit-exactly by ``sim.tlm.hadamard.reference_forward``) takes
input codes ``x_q`` (``in_bits`` signed, step ``s_x``) and computes, with ``H_n`` the unnormalised
Sylvester matrix and ``rne`` round-half-to-even::

    t = x_q @ H_n;  u = clamp(rne(t * M_a, S_a));  acc = u @ W_q.T + b_q;  y = clamp(rne(acc * M_o, S_o))

The fake-quantized layer computes ``act_q(pad(x) H) @ weight_q(pad(W) H).T + b`` with ``H = H_n /
sqrt(n)``. ``export_dhq_layer`` maps one onto the other (integer-only inference, Jacob et al. CVPR 2018,
sec. 2.2, with DHQ's rotation in front):

* ``W_q``: the weight quantizer's codes of the rotated weight, unchanged.
* ``M_a / 2^S_a``: ``s_x / (sqrt(n) s_a)``, the 1/sqrt(n) of the orthonormal H folded into the scale
  (``quant.dyadic.dyadic_multiplier``). The activation step is then *snapped* to
  ``s_a' = s_x 2^S_a / (sqrt(n) M_a)``, the step the hardware really implements (a relative change of
  at most ``2^-mult_bits`` when the shift is not capped).
* ``b_q = rne(b / (s_a' s_w))``: the bias at the accumulator scale.
* ``M_o / 2^S_o``: ``s_a' s_w / s_y``; the output step is snapped to ``s_y' = s_a' s_w 2^S_o / M_o``.

``hardware_layer`` returns the fake-quantized layer with those snapped steps and the quantized bias,
in float64; ``fake_quant_integers`` reads its integers (u from its activation quantizer, acc and y
from its output).

**Agreement bound (derived here, checked by ``exactness``).** With ``x = fl(x_q s_x)``, the float64
layer computes ``v = (x H)_j / s_a'`` whose exact value is ``t_j M_a / 2^S_a``, a multiple of
``2^-S_a``. A dot product of n terms plus three scalings (``x_q s_x``, the entries ``1/sqrt(n)``, the
division) errs by at most ``gamma_{n+3} sum_j |x_q,j| M_a / 2^S_a`` (Higham, *Accuracy and Stability
of Numerical Algorithms*, 2nd ed., eq. 3.5; ``gamma_k = k u / (1 - k u)``, ``u = 2^-53``). A value
that is not a tie is at least ``2^-S_a`` from every half-integer, so ``round`` (half to even) gives
``rne`` exactly when

1. no tie can occur: M_a is odd (canonical) and ``2^(S_a - 1) > max |t| = n 2^(in_bits - 1)``
   (then ``t M_a`` is never an odd multiple of ``2^(S_a - 1)``), or S_a = 0 (v is an integer), and
2. ``gamma_{n+3} n 2^(in_bits - 1) M_a < 1``.

The clamps are identical, so the u codes are then equal. ``acc`` is read back as
``round(z / (s_a' s_w))`` from the output ``z``: exact while the error ``gamma_{n+5} (sum |u w| + |b_q|)``
stays below 1/2 (condition 3). The output codes, ``round(z / s_y')``, equal ``clamp(rne(acc M_o, S_o))``
under the same two conditions for the output (4: ``2^(S_o - 1) > max |acc|`` with M_o odd or S_o = 0;
5: ``gamma_{n+6} max|acc| M_o < 1``, where max|acc| = ``n (2^(a-1) - 1)(2^(wb-1) - 1) + max|b_q|``).
When all five hold, the integers are **exactly** equal; ``exactness`` evaluates them, for every input
(worst case) or for given inputs (ties counted exactly). Where a tie does occur, the u or y code can
differ by one there (and a u difference moves that row's acc by the weight code).

**Per-channel weight steps** (``DHQLinear(per_channel=True)``: one step ``s_w[r]`` per output row) need
the datapath's per-row output multipliers (``HadamardParams.per_row_scales``); ``export_dhq_layer``
refuses them otherwise. Row r then has the accumulator step ``s_a' s_w[r]``, its own quantized bias
``b_q[r] = rne(b_r / (s_a' s_w[r]))`` and multiplier ``M_o[r] / 2^S_o = s_a' s_w[r] / s_y`` with one
shift S_o for all rows (``quant.dyadic.dyadic_multipliers``: the largest ratio sets S_o). Each row's
output step is snapped separately, ``s_y'[r] = s_a' s_w[r] 2^S_o / M_o[r]``, so the output is
per-channel too (``hardware_layer``'s output quantizer has ``channels=m``). Precision: the row with the
largest ratio keeps the full ``mult_bits`` (relative error <= ``2^-mult_bits``); a row whose weight step
is ``2^k`` times smaller has ``M_o[r] ~ 2^(mult_bits - k)`` and a relative output-step error up to
``2^(k - mult_bits)``: k bits fewer. The analysis above holds row by row (conditions 4 and 5 with each
row's M_o[r], reduced to lowest terms, since the shared shift can leave them even; 5 with the
largest). ``DHQIntegerLayer.weight_step``, ``mult_o`` and ``out_step`` are then (m,) arrays.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import torch
from pydantic import Field

from common.validate import checker
from quant.dyadic import dyadic_multiplier, dyadic_multipliers
from quant.hadamard import DHQLinear
from quant.quantizers import FakeQuantizer, code_range, to_integer

__all__ = ["DHQIntegerLayer", "export_dhq_layer", "hardware_layer", "fake_quant_integers", "exactness"]

_check_step = checker(Annotated[float, Field(gt=0, allow_inf_nan=False)])

_U = 2.0**-53


def _gamma(k: int) -> float:
    return k * _U / (1 - k * _U)


@dataclass(frozen=True)
class DHQIntegerLayer:
    """One DHQ layer as the datapath's integers and the (snapped) steps they stand for.

    Attributes:
        weights: int64 (m, n), the rotated weight codes in the narrow ``weight_bits`` range.
        bias: int64 (m,), the bias at the accumulator scale ``act_step * weight_step`` (zeros if none).
        n, in_bits, act_bits, weight_bits, out_bits: sizes and widths (bits).
        mult_a, shift_a, mult_o, shift_o: M_a, S_a, M_o, S_o (``HadamardConfig``'s fields). For a
            per-channel layer ``mult_o`` is int64 (m,), M_o[r] per row (``per_row``; the engine's
            ``scales`` table), S_o shared.
        in_step, act_step, weight_step, out_step: s_x, s_a', s_w, s_y' (floats; act and out snapped);
            for a per-channel layer ``weight_step`` and ``out_step`` are float64 (m,), one per row.
    """

    weights: np.ndarray
    bias: np.ndarray
    n: int
    in_bits: int
    act_bits: int
    weight_bits: int
    out_bits: int
    mult_a: int
    shift_a: int
    mult_o: int
    shift_o: int
    in_step: float
    act_step: float
    weight_step: float
    out_step: float

    @property
    def per_row(self) -> bool:
        """True when the output multiplier is per row (a per-channel weight quantizer)."""
        return isinstance(self.mult_o, np.ndarray)

    def config(self) -> dict[str, int]:
        """The run-time settings, as ``hw.params.HadamardConfig.from_dict`` takes them. Per row, the
        configuration's ``mult_o`` is 0: the per-row engine ignores it (``row_multipliers`` go to its
        ``scales`` port), and an engine with one M_o would give zeros, not plausible wrong outputs."""
        return {"act_bits": self.act_bits, "mult_a": self.mult_a, "shift_a": self.shift_a,
                "mult_o": 0 if self.per_row else self.mult_o, "shift_o": self.shift_o}

    def row_multipliers(self) -> np.ndarray:
        """M_o per output row, int64 (m,): the table of an engine with ``per_row_scales`` (the one M_o
        repeated for a per-tensor layer)."""
        if self.per_row:
            return self.mult_o.copy()
        return np.full(len(self.bias), self.mult_o, dtype=np.int64)

    def input_codes(self, x: torch.Tensor) -> np.ndarray:
        """Float inputs (N, in) -> int64 codes (N, n): ``clamp(round(x / s_x))`` full signed range, zero-padded."""
        lo, hi = -(2 ** (self.in_bits - 1)), 2 ** (self.in_bits - 1) - 1
        codes = torch.clamp(torch.round(x.detach().double() / self.in_step), lo, hi).to(torch.int64).numpy()
        return np.pad(codes, ((0, 0), (0, self.n - codes.shape[1])))


def export_dhq_layer(layer: DHQLinear, *, in_step: float, in_bits: int, out_step: float, out_bits: int,
                     mult_bits: int, shift_a_max: int, shift_o_max: int, per_row_scales: bool = False,
                     target: str = "the target datapath") -> DHQIntegerLayer:
    """The datapath integers of a calibrated, rotating ``DHQLinear`` (module doc for the mapping).

    Args:
        layer: a ``DHQLinear`` with ``rotate=True`` and both quantizers active and frozen.
        in_step: s_x > 0, the step of the input codes (the previous stage's output step).
        in_bits: width of the signed input codes (bits).
        out_step: s_y > 0, the wanted output step (snapped; the result holds the real one).
        out_bits: width of the signed output codes (bits).
        mult_bits, shift_a_max, shift_o_max: the engine's multiplier width and largest shifts
            (``hw.params.HadamardParams``: ``mult_bits``, ``shift_a_max``, ``shift_o_max``).
        per_row_scales: whether the engine has per-row output multipliers
            (``HadamardParams.per_row_scales``); a per-channel weight quantizer needs them.
        target: how the engine is named in that error (e.g. the preset's name).

    Raises:
        ValueError: a layer that does not rotate, an inactive or unfrozen quantizer, a per-channel
            weight quantizer for an engine without per-row multipliers, a step that is not positive,
            or a scale ratio the multiplier cannot represent (naming the value).
    """
    if not layer.rotate:
        raise ValueError("export_dhq_layer needs a rotating DHQLinear (rotate=True): the datapath always transforms")
    for q in (layer.weight_quantizer, layer.act_quantizer):
        if not q.active or not q.frozen:
            raise ValueError(f"quantizer {q.name!r} must be active and calibrated before export "
                             f"(bits={q.bits}, frozen={q.frozen})")
    n, wq = layer.n, layer.weight_quantizer
    if wq.channels is not None and not per_row_scales:
        raise ValueError(f"per-channel weight steps need a Hadamard datapath with per-row multipliers "
                         f"(hadamard.per_row_scales: true); {target} has per_row_scales={per_row_scales!r}")
    _check_step(in_step, "in_step")
    _check_step(out_step, "out_step")
    weights, weight_step, _ = to_integer(layer.weight, wq)
    if wq.channels is not None:  # (m, 1) float32 -> float64 (m,), exact
        weight_step = weight_step.double().numpy().ravel()
    act_step = float(layer.act_quantizer.scale.detach())
    mult_a, shift_a = dyadic_multiplier(in_step / (math.sqrt(n) * act_step), mult_bits=mult_bits,
                                        shift_max=shift_a_max)
    act_step = in_step * 2.0**shift_a / (math.sqrt(n) * mult_a)
    acc_step = act_step * weight_step
    bias = np.zeros(layer.out_features, dtype=np.int64)
    if layer.bias is not None:
        bias = torch.round(layer.bias.detach().double() / torch.as_tensor(acc_step)).to(torch.int64).numpy()
    if wq.channels is None:
        mult_o, shift_o = dyadic_multiplier(acc_step / out_step, mult_bits=mult_bits, shift_max=shift_o_max)
    else:
        mults, shift_o = dyadic_multipliers(acc_step / out_step, mult_bits=mult_bits, shift_max=shift_o_max)
        mult_o = np.array(mults, dtype=np.int64)
    return DHQIntegerLayer(
        weights=weights.numpy(), bias=bias, n=n, in_bits=in_bits, act_bits=layer.act_quantizer.bits,
        weight_bits=wq.bits, out_bits=out_bits, mult_a=mult_a, shift_a=shift_a, mult_o=mult_o, shift_o=shift_o,
        in_step=float(in_step), act_step=act_step, weight_step=weight_step,
        out_step=acc_step * 2.0**shift_o / mult_o)


def hardware_layer(layer: DHQLinear, exported: DHQIntegerLayer) -> tuple[DHQLinear, FakeQuantizer]:
    """A float64 copy of ``layer`` with the snapped activation step and the quantized bias, plus an
    output quantizer (symmetric, ``out_bits``, step s_y'): the fake-quantized layer the datapath implements.
    For a per-row export the output quantizer is per channel (``channels=m``, scale (m, 1)); apply it
    to the transposed output (``fake_quant_integers`` does)."""
    hw = copy.deepcopy(layer).double()
    e = exported
    with torch.no_grad():
        hw.act_quantizer.scale.fill_(e.act_step)
        if e.per_row:
            hw.weight_quantizer.scale.copy_(torch.from_numpy(np.asarray(e.weight_step)).reshape(-1, 1))
        else:
            hw.weight_quantizer.scale.fill_(e.weight_step)
        if hw.bias is not None:
            hw.bias.copy_(torch.from_numpy(e.bias).double() * torch.as_tensor(e.act_step * np.asarray(e.weight_step)))
    out = FakeQuantizer("symmetric", e.out_bits, name="out", channels=len(e.bias) if e.per_row else None).double()
    with torch.no_grad():
        if e.per_row:
            out.scale.copy_(torch.from_numpy(np.asarray(e.out_step)).reshape(-1, 1))
        else:
            out.scale.fill_(e.out_step)
    out.frozen = True
    return hw, out


@torch.no_grad()
def fake_quant_integers(layer: DHQLinear, out: FakeQuantizer, exported: DHQIntegerLayer,
                        x_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The integers of the fake-quantized float64 layer on inputs ``x_q * s_x``.

    Args:
        layer, out: from ``hardware_layer``.
        x_codes: int (N, n) input codes (the padding columns must be zero).

    Returns:
        ``(u, acc, y)`` int64 arrays (N, n), (N, m), (N, m), comparable with
        ``sim.tlm.hadamard.reference_forward``.
    """
    x = torch.from_numpy(np.asarray(x_codes, dtype=np.int64)).double() * exported.in_step
    x = x[:, :layer.in_features]
    u, _, _ = to_integer(layer.rotate_input(x), layer.act_quantizer)
    z = layer(x)
    acc = torch.round(z / torch.as_tensor(exported.act_step * np.asarray(exported.weight_step))).to(torch.int64)
    y = to_integer(z.T, out)[0].T if out.channels is not None else to_integer(z, out)[0]
    return u.numpy(), acc.numpy(), y.numpy()


def _ties(values: np.ndarray, mult, shift: int) -> int:
    """How many ``values * mult / 2^shift`` are exactly halfway between two integers (Python ints).
    ``mult``: an int, or an int (m,) array of per-row multipliers for ``values`` (N, m)."""
    if shift == 0:
        return 0
    if isinstance(mult, np.ndarray):
        return sum(_ties(np.asarray(values)[:, r], int(m), shift) for r, m in enumerate(mult))
    half, mask = 1 << (shift - 1), (1 << shift) - 1
    return sum(((int(v) * mult) & mask) == half for v in np.asarray(values).ravel())


def _out_tie_free(mult, shift: int, acc_max: int) -> bool:
    """No ``acc * M_o / 2^S_o`` with ``|acc| <= acc_max`` is a tie, for every (per-row) M_o: S_o = 0, or
    M_o odd and ``2^(S_o - 1) > acc_max``. A per-row M_o is first reduced to lowest terms (the shared
    shift can leave it even; M_o = 0 gives 0, never a tie)."""
    if not isinstance(mult, np.ndarray):
        return shift == 0 or (mult % 2 == 1 and 2 ** (shift - 1) > acc_max)
    for m in (int(v) for v in mult):
        s = shift
        while m and m % 2 == 0 and s > 0:
            m, s = m // 2, s - 1
        if not (m == 0 or s == 0 or 2 ** (s - 1) > acc_max):
            return False
    return True


def exactness(exported: DHQIntegerLayer, x_codes: np.ndarray | None = None) -> dict[str, bool]:
    """The five conditions of the module doc under which hardware and fake-quant integers are equal.

    Without ``x_codes``, worst case over all inputs: ``max|t| = n 2^(in_bits - 1)``, ``max|acc| =
    n (2^(a-1) - 1)(2^(wb-1) - 1) + max|b_q|``. With ``x_codes`` (int (N, n)), the tie conditions are
    checked on those inputs' exact t and acc instead (no value is a tie), which holds far more often
    than the worst case when the shift is short. Returns ``{condition: holds}``; all True means exact
    agreement (for every input, or for those given).
    """
    e = exported
    t_max = e.n * 2 ** (e.in_bits - 1)
    acc_max = e.n * code_range("symmetric", e.act_bits)[1] * code_range("symmetric", e.weight_bits)[1]
    acc_max += int(np.abs(e.bias).max(initial=0))
    if x_codes is None:
        act_ties = e.shift_a == 0 or (e.mult_a % 2 == 1 and 2 ** (e.shift_a - 1) > t_max)
        out_ties = _out_tie_free(e.mult_o, e.shift_o, acc_max)
    else:
        from quant.hadamard import hadamard_matrix

        h = hadamard_matrix(e.n, normalized=False, dtype=torch.float64).numpy().astype(np.int64)
        t = np.asarray(x_codes, dtype=np.int64) @ h
        act_ties = _ties(t, e.mult_a, e.shift_a) == 0
        qa = code_range("symmetric", e.act_bits)[1]
        # u as the datapath computes it; rne's tie rule does not matter when there are no ties.
        u = np.clip(np.floor(t * (e.mult_a / 2**e.shift_a) + 0.5).astype(np.int64), -qa, qa)
        out_ties = _ties(u @ e.weights.T + e.bias, e.mult_o, e.shift_o) == 0
    return {
        "act_tie_free": bool(act_ties),
        "act_float_error": _gamma(e.n + 3) * t_max * e.mult_a < 1,
        "acc_float_error": _gamma(e.n + 5) * acc_max < 0.5,
        "out_tie_free": bool(out_ties),
        "out_float_error": _gamma(e.n + 6) * acc_max * int(np.max(e.mult_o)) < 1,
    }
