"""How a fake quantizer's range is calibrated from the data it observed: min-max, MSE-optimal clipping, percentile.

A quantizer's step follows from a range ``[lo, hi]`` by the min-max rules of ``quant.quantizers``
(symmetric ``s = 2 max(|lo|, |hi|) / (2^B - 1)``, unsigned ``s = hi / (2^B - 1)``, asymmetric
``s = (hi - lo) / (2^B - 1)``, offset ``lo``). The calibration picks that range:

============ ======================================================================================
name         range
============ ======================================================================================
min-max      the observed minimum and maximum (nothing clipped; A-CAQ's PTQ, the default)
percentile   the ``p``-th percentile of ``|x|`` (symmetric; unsigned: of ``x``) or the ``100 - p``-th and
             ``p``-th percentiles of ``x`` (asymmetric); ``p`` = ``DEFAULT_PERCENTILE`` = 99.9
             (Wu et al., "Integer Quantization for Deep Learning Inference", 2020, sec. 4.1: 99.9 to
             99.999 were their best activation percentiles)
mse          the min-max range shrunk by the factor ``alpha`` in ``MSE_GRID`` (0.05, 0.06, ..., 1.00) that
             minimises the mean squared error ``mean((Q(x) - x)^2)`` of the quantizer on the observed data
             (MSE-optimal clipping; Banner et al., "Post training 4-bit quantization", NeurIPS 2019, and
             Sung et al. 2015 solve the same problem analytically or by search); an asymmetric range
             shrinks about its midpoint
============ ======================================================================================

Per channel (``channels``): the same, row by row of a (C, ...) tensor (the output channels of a
weight), giving (C,) ranges. Percentile and MSE need the observed values, not only their extremes:
``SampleStore`` keeps up to ``MAX_SAMPLES`` of them per quantizer, a deterministic random subset
beyond that.
"""

from __future__ import annotations

import torch

from quant.choices import CALIBRATIONS, DEFAULT_PERCENTILE, check_calibration, check_percentile

__all__ = ["CALIBRATIONS", "DEFAULT_PERCENTILE", "MSE_GRID", "MAX_SAMPLES", "check_calibration",
           "check_percentile", "step_and_offset", "calibrated_range", "SampleStore"]

#: The shrink factors the MSE search tries, from 5 % of the min-max range to all of it.
MSE_GRID = tuple(round(0.05 + 0.01 * k, 2) for k in range(96))
#: Observed values kept per quantizer for percentile and MSE calibration (per channel: in all channels).
MAX_SAMPLES = 1 << 18


def step_and_offset(scheme: str, bits: int, lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The step ``s`` and offset of ``scheme`` at ``bits`` for the range ``[lo, hi]`` (module doc; any equal shapes).

    A zero span gives ``s = 1`` (a constant is represented exactly).
    """
    if scheme == "symmetric":
        span, offset = 2 * torch.maximum(lo.abs(), hi.abs()), torch.zeros_like(lo)
    elif scheme == "unsigned":
        span, offset = hi.clamp(min=0), torch.zeros_like(lo)
    else:
        span, offset = hi - lo, lo
    return torch.where(span > 0, span / (2**bits - 1), torch.ones_like(span)), offset


def _percentile_range(scheme: str, v: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    q = p / 100.0
    if scheme == "symmetric":
        a = torch.quantile(v.abs(), q, dim=1)
        return -a, a
    if scheme == "unsigned":
        return v.min(dim=1).values, torch.quantile(v, q, dim=1)
    return torch.quantile(v, 1 - q, dim=1), torch.quantile(v, q, dim=1)


def _mse_range(scheme: str, bits: int, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    from quant.quantizers import fake_quantize

    lo, hi = v.min(dim=1).values, v.max(dim=1).values
    mid = (lo + hi) / 2 if scheme == "asymmetric" else torch.zeros_like(lo)
    best_err = torch.full_like(lo, float("inf"))
    best_lo, best_hi = lo.clone(), hi.clone()
    for alpha in MSE_GRID:
        a_lo, a_hi = mid + alpha * (lo - mid), mid + alpha * (hi - mid)
        s, off = step_and_offset(scheme, bits, a_lo, a_hi)
        err = (fake_quantize(v, scheme, bits, s[:, None], off[:, None]) - v).pow(2).mean(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_lo, best_hi = torch.where(better, a_lo, best_lo), torch.where(better, a_hi, best_hi)
    return best_lo, best_hi


@torch.no_grad()
def calibrated_range(samples: torch.Tensor, calibration: str, scheme: str, bits: int, *,
                     percentile: float = DEFAULT_PERCENTILE) -> tuple[torch.Tensor, torch.Tensor]:
    """The range ``(lo, hi)``, each (C,) float32, that ``calibration`` picks for (C, k) observed values.

    Args:
        samples: (C, k) float tensor, the observed values of each of C channels (C = 1: per tensor).
        calibration: one of ``CALIBRATIONS``; scheme: a ``quant.quantizers`` scheme; bits: B.
        percentile: p of the percentile calibration (module doc).

    Raises:
        ValueError: an unknown calibration (naming it), a percentile outside (50, 100].
    """
    check_calibration(calibration)
    v = samples.detach().to(torch.float32)
    if calibration == "percentile":
        return _percentile_range(scheme, v, check_percentile(percentile))
    if calibration == "mse":
        return _mse_range(scheme, bits, v)
    return v.min(dim=1).values, v.max(dim=1).values


class SampleStore:
    """Observed values of one quantizer, (C, k) per observation, at most ``MAX_SAMPLES`` in all.

    Beyond the cap, a random subset of columns is kept (``torch.Generator`` seeded with 0, so the same
    data calibrate the same way); every observation is kept at the same rate, so a long calibration
    keeps a uniform sample of what it saw when the observations have equal sizes.
    """

    def __init__(self, channels: int | None) -> None:
        self.channels = channels
        self._parts: list[torch.Tensor] = []
        self._gen = torch.Generator().manual_seed(0)

    def __len__(self) -> int:
        return sum(p.shape[1] for p in self._parts)

    def clear(self) -> None:
        self._parts.clear()
        self._gen.manual_seed(0)

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        v = x.detach().to("cpu", torch.float32)
        if self.channels is None:
            return v.reshape(1, -1)
        if v.dim() == 0 or v.shape[0] != self.channels:
            raise ValueError(f"a per-channel quantizer of {self.channels} channels observed a tensor of shape "
                             f"{tuple(v.shape)}: its first dimension must be the channels")
        return v.reshape(self.channels, -1)

    def _subsample(self, v: torch.Tensor, k: int) -> torch.Tensor:
        if v.shape[1] <= k:
            return v
        idx = torch.randperm(v.shape[1], generator=self._gen)[:k]
        return v[:, idx.sort().values]

    def add(self, x: torch.Tensor) -> None:
        """Keep the values of ``x`` (per channel: rows of its first dimension)."""
        v = self._rows(x)
        per_row = max(1, MAX_SAMPLES // v.shape[0])
        self._parts.append(self._subsample(v, per_row))
        if len(self) > per_row:
            self._parts = [self._subsample(torch.cat(self._parts, dim=1), per_row)]

    def values(self) -> torch.Tensor:
        """(C, k) float32 (C = 1 per tensor). Raises RuntimeError if nothing was observed."""
        if not self._parts:
            raise RuntimeError("no observed values are kept: run calibration data through the quantizer")
        return torch.cat(self._parts, dim=1)
