"""Fake quantizers with straight-through gradients, min-max calibration (PTQ) and integer export.

The three schemes of A-CAQ (Liu et al., "Content-Aware Radiance Fields: Aligning Model Complexity with
Scene Intricacy Through Learned Bitwidth Quantization", ECCV 2024, Table 2), each with step size
``s = range / (2^B - 1)`` for B bits. ``x`` is any float tensor; the result has its shape, and the
dtype of ``x`` promoted with the scale's.

=========== ================================ ========== ==========================================
scheme      integer code k                   value      min-max calibration (PTQ)
=========== ================================ ========== ==========================================
symmetric   clamp(round(x / s),              k * s      s = 2 max|x| / (2^B - 1)
            -(2^(B-1) - 1), 2^(B-1) - 1)
unsigned    clamp(round(x / s), 0, 2^B - 1)  k * s      s = max(x) / (2^B - 1)
asymmetric  clamp(round((x - lo) / s),       k * s + lo s = (max(x) - min(x)) / (2^B - 1), lo = min(x)
            0, 2^B - 1)
=========== ================================ ========== ==========================================

Symmetric is for weights, unsigned for ReLU and exp outputs, asymmetric for hash-table entries and
the other activations. Symmetric: the range is ``2 max|x|`` and the step follows
``s = range / (2^B - 1)``, as in A-CAQ and its reference code; the codes are the narrow signed range
(2^B - 1 codes, symmetric about zero; the reference code also allows -2^(B-1)). Since
``max|x| / s = 2^(B-1) - 1/2``, the extremes land on code +-(2^(B-1) - 1) after the clamp, half a
step inside, at ``max|x| (2^B - 2) / (2^B - 1)``. The asymmetric offset ``lo`` is a real number
(LSQ+'s beta), not an integer zero point. ``round`` is ``torch.round`` (half to even), here and in
``to_integer``. A zero range (a constant tensor) calibrates to ``s = 1``, which represents it exactly.

Gradients: round is the straight-through estimator ``u + (round(u) - u).detach()`` applied after the
clamp, ``k = round_ste(clamp(v, qmin, qmax))`` with ``v = (x - lo) / s`` (the same value as
``clamp(round(v))``, the bounds being integers). Autograd through that gives
the LSQ gradients (Esser et al., ICLR 2020, eq. 3) and, for the offset, LSQ+'s (Bhalgat et al., CVPR
Workshops 2020):

* d q / d x  = 1 where qmin <= v <= qmax, else 0;
* d q / d s  = round(v) - v inside, qmin or qmax outside;
* d q / d lo = 0 inside, 1 outside.

Bitwidths are ints in [2, 32] (``quant.policy.check_bits``). A ``FakeQuantizer`` with ``bits=None``,
``bits=32`` (the policy's full precision) or ``enabled=False`` passes its input through unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from quant.calibration import (DEFAULT_PERCENTILE, SampleStore, calibrated_range, check_calibration,
                               check_percentile, step_and_offset)
from quant.policy import FULL_PRECISION_BITS, SCHEMES, check_bits

__all__ = [
    "code_range",
    "quantize_symmetric",
    "quantize_unsigned",
    "quantize_asymmetric",
    "fake_quantize",
    "RangeObserver",
    "FakeQuantizer",
    "calibrate",
    "to_integer",
]

Scalar = float | torch.Tensor


def _check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, not {scheme!r}")
    return scheme


def code_range(scheme: str, bits: int) -> tuple[int, int]:
    """The integer codes ``(qmin, qmax)`` of ``scheme`` at ``bits`` (module table).

    Raises ValueError for an unknown scheme or bits that are not an int in [2, 32].
    """
    _check_scheme(scheme)
    check_bits(bits)
    if scheme == "symmetric":
        return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _round_ste(u: torch.Tensor) -> torch.Tensor:
    # Forward value is exactly round(u); backward is the identity.
    return u + (u.round() - u).detach()


def _clamped(x: torch.Tensor, scheme: str, bits: int, scale: Scalar, offset: Scalar) -> torch.Tensor:
    if not isinstance(scale, torch.Tensor) and not scale > 0:
        raise ValueError(f"scale must be positive, not {scale!r}")
    qmin, qmax = code_range(scheme, bits)
    return torch.clamp((x - offset) / scale, qmin, qmax)


def fake_quantize(x: torch.Tensor, scheme: str, bits: int, scale: Scalar, offset: Scalar = 0.0) -> torch.Tensor:
    """Quantize and dequantize ``x``: ``k * scale + offset`` with the codes ``k`` of ``scheme`` (module doc).

    Args:
        x: float tensor, any shape.
        scheme: "symmetric", "unsigned" or "asymmetric".
        bits: B, an int in [2, 32].
        scale: step s > 0, a number or a tensor broadcastable to ``x`` (a tensor is not checked, so that
            a learned scale costs no device sync).
        offset: lo, added after dequantization; only the asymmetric scheme uses a nonzero one.

    Returns:
        Tensor of ``x``'s shape, with straight-through gradients for ``x``, ``scale`` and ``offset``.

    Raises:
        ValueError: unknown scheme, invalid bits, or a non-positive number as scale.
    """
    return _round_ste(_clamped(x, scheme, bits, scale, offset)) * scale + offset


def quantize_symmetric(x: torch.Tensor, bits: int, scale: Scalar) -> torch.Tensor:
    """Signed symmetric (weights): ``clamp(round(x / s), -(2^(B-1) - 1), 2^(B-1) - 1) * s`` (A-CAQ Table 2)."""
    return fake_quantize(x, "symmetric", bits, scale)


def quantize_unsigned(x: torch.Tensor, bits: int, scale: Scalar) -> torch.Tensor:
    """Unsigned (ReLU and exp outputs): ``clamp(round(x / s), 0, 2^B - 1) * s`` (A-CAQ Table 2)."""
    return fake_quantize(x, "unsigned", bits, scale)


def quantize_asymmetric(x: torch.Tensor, bits: int, scale: Scalar, offset: Scalar) -> torch.Tensor:
    """Asymmetric (hash entries, other activations): ``clamp(round((x - lo) / s), 0, 2^B - 1) * s + lo``."""
    return fake_quantize(x, "asymmetric", bits, scale, offset)


class RangeObserver(nn.Module):
    """A module that can record the min and max of what it sees (min-max calibration).

    Subclasses (``FakeQuantizer``, ``quant.lbq.LBQuantizer``) define ``freeze()``, which turns the range
    into their parameters; ``calibrate`` drives every ``RangeObserver`` of a model.

    Attributes:
        observed_min, observed_max: 0-d float32 buffers, the running range (+inf / -inf if none).
        calibrating: while true, ``forward`` should observe and pass its input through.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("observed_min", torch.tensor(float("inf")))
        self.register_buffer("observed_max", torch.tensor(float("-inf")))
        self.calibrating = False

    def _observed(self) -> bool:
        return bool(self.observed_min <= self.observed_max)

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        """Widen the running range with ``x``'s min and max (all elements; empty tensors are ignored)."""
        if x.numel():
            self.observed_min.copy_(torch.minimum(self.observed_min, x.detach().min().to(self.observed_min)))
            self.observed_max.copy_(torch.maximum(self.observed_max, x.detach().max().to(self.observed_max)))

    def reset_observed(self) -> None:
        """Forget the observed range."""
        self.observed_min.fill_(float("inf"))
        self.observed_max.fill_(float("-inf"))

    def _checked_range(self, label: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The observed (min, max); RuntimeError if nothing or something not finite was observed."""
        lo, hi = self.observed_min, self.observed_max
        if not self._observed() and bool(torch.isinf(lo)):
            raise RuntimeError(f"{label} observed nothing: run calibration data through it before freeze()")
        if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
            raise RuntimeError(f"{label} observed a range that is not finite: [{lo.item()}, {hi.item()}]")
        return lo, hi


class FakeQuantizer(RangeObserver):
    """A fake quantizer with a learnable step (and offset), calibrated by min-max observation.

    Use: calibrate (``with calibrate(model): model(data)``, or ``observe(x)`` then ``freeze()``), then
    ``forward`` quantizes. While ``calibrating`` is true, ``forward`` records the range of its input
    and returns the input unchanged, so every quantizer of a model observes full-precision tensors.

    Args:
        scheme: "symmetric", "unsigned" or "asymmetric" (``quant.policy.scheme_of`` gives a component's).
        bits: B, an int in [2, 32]; None or 32 (full precision) means pass-through.
        enabled: False means pass-through whatever ``bits`` is.
        name: the component name, for error messages.
        calibration: how ``freeze`` picks the range from what was observed, one of
            ``quant.calibration.CALIBRATIONS``: "min-max" (default), "mse" (MSE-optimal clipping) or
            "percentile" (``percentile``, default 99.9); see ``quant.calibration``.
        channels: None (one step per tensor, default) or C: one step per output channel, for a weight
            (C, ...) of the symmetric or unsigned scheme; ``scale`` is then (C, 1).

    Attributes:
        scale: ``nn.Parameter``, float32, the step s: 0-d, or (C, 1) per channel.
        offset: 0-d float32, lo: an ``nn.Parameter`` for the asymmetric scheme, else a zero buffer.
        observed_min, observed_max: buffers, the running range seen by ``observe`` (+inf / -inf if none).

    Raises:
        ValueError: unknown scheme, or bits not None and not an int in [2, 32], an unknown calibration, a
            percentile outside (50, 100], channels not None or an int >= 1, channels with the asymmetric
            scheme (naming the value).
    """

    def __init__(self, scheme: str, bits: int | None = 8, *, enabled: bool = True, name: str | None = None,
                 calibration: str = "min-max", percentile: float = DEFAULT_PERCENTILE,
                 channels: int | None = None) -> None:
        super().__init__()
        self.scheme = _check_scheme(scheme)
        self.name = name
        self.enabled = enabled
        self._bits = self._valid_bits(bits)
        label = f"quantizer {name or scheme!r}"
        self.calibration = check_calibration(calibration, f"calibration of {label}")
        self.percentile = check_percentile(percentile, f"percentile of {label}")
        if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int) or channels < 1):
            raise ValueError(f"channels of {label} must be None (per tensor) or an int >= 1, not {channels!r}")
        if channels is not None and scheme == "asymmetric":
            raise ValueError(f"{label}: per-channel scales are for weights (symmetric), not the asymmetric scheme")
        self.channels = channels
        # Percentile, MSE and per-channel ranges need the observed values, min-max only their extremes.
        self._samples = SampleStore(channels) if calibration != "min-max" or channels is not None else None
        self.scale = nn.Parameter(torch.tensor(1.0) if channels is None else torch.ones(channels, 1))
        if scheme == "asymmetric":
            self.offset = nn.Parameter(torch.tensor(0.0))
        else:
            self.register_buffer("offset", torch.tensor(0.0))
        self.frozen = False

    def _label(self) -> str:
        return f"quantizer {self.name or self.scheme!r} ({self.scheme}, bits={self._bits})"

    @torch.no_grad()
    def observe(self, x: torch.Tensor) -> None:
        """Widen the running range with ``x``; keep its values too when the calibration or channels need them."""
        super().observe(x)
        if self._samples is not None and x.numel():
            self._samples.add(x)

    def reset_observed(self) -> None:
        """Forget the observed range and values."""
        super().reset_observed()
        if self._samples is not None:
            self._samples.clear()

    def _valid_bits(self, bits: int | None) -> int | None:
        return None if bits is None else check_bits(bits, f"bits of quantizer {self.name or self.scheme!r}")

    @property
    def bits(self) -> int | None:
        """B; setting it re-derives scale and offset from the observed range, if one was observed (PTQ)."""
        return self._bits

    @bits.setter
    def bits(self, bits: int | None) -> None:
        self._bits = self._valid_bits(bits)
        if self._observed() and not self.calibrating:
            self.freeze()

    @property
    def active(self) -> bool:
        """True when ``forward`` quantizes (enabled, bits neither None nor 32)."""
        return self.enabled and self._bits not in (None, FULL_PRECISION_BITS)

    @torch.no_grad()
    def freeze(self) -> None:
        """Set scale (and offset) from the observed range by the min-max rules of the module table.

        Does nothing for bits None or 32 (no grid), nor for a disabled quantizer that observed nothing.

        Raises:
            RuntimeError: nothing was observed, or the observed range is not finite (NaN or inf seen).
        """
        if self._bits in (None, FULL_PRECISION_BITS) or (not self.enabled and not self._observed()):
            return
        lo, hi = self._checked_range(self._label())
        if self._samples is not None:
            try:
                values = self._samples.values()
            except RuntimeError:
                raise RuntimeError(f"{self._label()}: {self.calibration} calibration needs the observed values, "
                                   "which are not kept across a state dict: calibrate it again") from None
            lo, hi = calibrated_range(values, self.calibration, self.scheme, self._bits, percentile=self.percentile)
            if self.channels is None:
                lo, hi = lo[0], hi[0]
            else:
                lo, hi = lo[:, None], hi[:, None]
        scale, offset = step_and_offset(self.scheme, self._bits, lo, hi)
        self.scale.copy_(scale.to(self.scale))
        self.offset.copy_(offset if self.channels is None else offset.flatten()[0])
        self.frozen = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantize ``x`` (any shape); pass it through when calibrating or inactive.

        Raises:
            RuntimeError: active but never frozen (no scale yet).
        """
        if self.calibrating:
            self.observe(x)
            return x
        if not self.active:
            return x
        if not self.frozen:
            raise RuntimeError(
                f"{self._label()} has no scale yet: calibrate it (calibrate(), or observe() then freeze()) "
                "or load a state dict"
            )
        return fake_quantize(x, self.scheme, self._bits, self.scale, self.offset)

    # ``frozen`` travels in the state dict, so a loaded quantizer quantizes without recalibration.
    def get_extra_state(self) -> dict:
        return {"frozen": self.frozen}

    def set_extra_state(self, state: dict) -> None:
        self.frozen = bool(state["frozen"])

    def extra_repr(self) -> str:
        name = f", name={self.name!r}" if self.name else ""
        extra = "" if self.calibration == "min-max" else f", calibration={self.calibration!r}"
        extra += "" if self.channels is None else f", channels={self.channels}"
        return f"{self.scheme!r}, bits={self._bits}, enabled={self.enabled}{name}{extra}"


@contextlib.contextmanager
def calibrate(module: nn.Module) -> Iterator[list[RangeObserver]]:
    """Min-max calibration (PTQ) of every ``RangeObserver`` (``FakeQuantizer``, ``LBQuantizer``) in ``module``.

    On entry each quantizer forgets its observed range and starts observing (its ``forward`` passes
    through); on normal exit all stop and ``freeze()``. On an exception they stop without freezing.
    Yields the quantizers found.
    """
    quantizers = [m for m in module.modules() if isinstance(m, RangeObserver)]
    for q in quantizers:
        q.reset_observed()
        q.calibrating = True
    try:
        yield quantizers
    finally:
        for q in quantizers:
            q.calibrating = False
    for q in quantizers:
        q.freeze()


@torch.no_grad()
def to_integer(x: torch.Tensor, quantizer: FakeQuantizer) -> tuple[torch.Tensor, float | torch.Tensor, float]:
    """The integer codes of ``x`` under an active, frozen ``quantizer``, for the hardware.

    Returns:
        ``(codes, scale, offset)``: ``codes`` int64 of ``x``'s shape, within ``code_range(scheme, bits)``;
        ``scale`` and ``offset`` as Python floats (exact copies of the quantizer's float32 values), so
        that ``codes.to(x.dtype) * scale + offset`` equals ``quantizer(x)`` (the same float operations).
        A per-channel quantizer gives ``scale`` as a detached (C, 1) float32 tensor (the same equality).

    Raises:
        ValueError: the quantizer is pass-through (full precision has no codes).
        RuntimeError: it was never frozen.
    """
    if not quantizer.active:
        raise ValueError(f"{quantizer._label()} is pass-through (enabled={quantizer.enabled}): no integer codes")
    if not quantizer.frozen:
        raise RuntimeError(f"{quantizer._label()} has no scale yet: calibrate it before to_integer()")
    scheme, bits = quantizer.scheme, quantizer.bits
    codes = _clamped(x, scheme, bits, quantizer.scale, quantizer.offset).round().to(torch.int64)
    # Above 2^24, float32 rounds qmax up (2^31 - 1 -> 2^31); clamping the integers keeps codes in range,
    # and converting them back to float32 rounds the same way, so the round trip still holds.
    codes.clamp_(*code_range(scheme, bits))
    scale = quantizer.scale.detach().clone() if quantizer.channels is not None else float(quantizer.scale)
    return codes, scale, float(quantizer.offset)
