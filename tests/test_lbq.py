"""Tests of quant/lbq.py: A-CAQ learned-bitwidth quantization (LBQ).

The gradients of ``LBQFunction`` are checked against central finite differences of an independent
"straight-through surrogate": the forward value written as a smooth function of (r, v_max, q, x) with
every rounding residual frozen at the base point (module docstring of quant/lbq.py). The surrogate is
built here from the docstring's formulas, not from the implementation.
"""

from __future__ import annotations

import math

import pytest
import torch

from quant.lbq import (
    EXP_INIT_BITS,
    INIT_BITS,
    LBQFunction,
    LBQuantizer,
    hard_bits,
    lbq_code_range,
)
from quant.quantizers import calibrate

SCHEMES = ("symmetric", "unsigned", "asymmetric")
DT = torch.float64
RTOL = 1e-6  # the surrogate is rational in (r, v_max, q): FD error is ~1e-9 at h = 1e-6
FD_H = 1e-6

# Base-point parameters per scheme: (r, v_max). v_max only matters for the asymmetric scheme,
# chosen so that v_min = v_max - r < 0 < v_max and the zero point z must be rounded (delta != 0).
BASE = {"symmetric": (1.7, 0.0), "unsigned": (1.3, 0.0), "asymmetric": (1.7, 0.93)}


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------
def bounds(scheme: str, r: float, v_max: float) -> tuple[float, float]:
    """(v_min, v_max) of the scheme's representable interval (docstring table)."""
    if scheme == "symmetric":
        return -r / 2, r / 2
    if scheme == "unsigned":
        return 0.0, r
    return v_max - r, v_max


def make_x(scheme: str, r: float, v_max: float, n: int = 60, seed: int = 0) -> torch.Tensor:
    """x with all three masks populated, every point >= 5% of r away from a mask boundary."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = bounds(scheme, r, v_max)
    m = 0.05 * r

    def uni(a: float, b: float) -> torch.Tensor:
        return a + (b - a) * torch.rand(n, generator=gen, dtype=DT)

    x = torch.cat([uni(lo + m, hi - m), uni(lo - r, lo - m), uni(hi + m, hi + r)])
    return x[torch.randperm(x.numel(), generator=gen)]


def make_surrogate(scheme: str, x0: torch.Tensor, r0: float, v0: float, B: int):
    """The straight-through surrogate f(r, v_max, q, x) with residuals and masks frozen at the base point.

    Built independently of the implementation from the docstring's definitions.
    """
    q0 = 2.0**B - 1.0
    s0 = r0 / q0
    lo0, hi0 = bounds(scheme, r0, v0)
    inside = (x0 >= lo0) & (x0 <= hi0)
    below, above = x0 < lo0, x0 > hi0
    if scheme == "asymmetric":
        z_exact0 = -(v0 - r0) / s0
        z0 = round(z_exact0)
        delta = z0 - z_exact0  # frozen zero-point residual
    else:
        z0, delta = 0.0, 0.0
    if scheme == "symmetric":
        kmin0, kmax0 = -(q0 + 1) / 2, (q0 - 1) / 2
    else:
        kmin0, kmax0 = 0.0, q0
    u0 = x0 / s0
    k0 = torch.clamp(torch.round(u0 + z0), kmin0, kmax0)
    eps_k = k0 - (u0 + z0)  # frozen residual of the clamped code

    def f(r, v, q, x):
        s = r / q
        z = (-(v - r) / s + delta) if scheme == "asymmetric" else 0.0
        if scheme == "symmetric":
            kmin, kmax = -(q + 1) / 2, (q - 1) / 2
        else:
            kmin, kmax = 0.0, q
        u = x / s
        val_in = s * (u + z + eps_k - z)
        val_lo = s * (kmin - z) * torch.ones_like(x)
        val_hi = s * (kmax - z) * torch.ones_like(x)
        return torch.where(inside, val_in, torch.where(below, val_lo, val_hi))

    return f, dict(inside=inside, below=below, above=above, q0=q0)


def fd_grads(scheme: str, x0, g, r0: float, v0: float, B: int):
    """Central finite differences of L = sum(g * surrogate) w.r.t. r, v_max, b and (elementwise) x."""
    f, masks = make_surrogate(scheme, x0, r0, v0, B)
    b0 = float(B)

    def q_of(b):
        return 2.0**b - 1.0

    def L(r=r0, v=v0, b=b0, x=x0):
        return float((g * f(r, v, q_of(b), x)).sum())

    h = FD_H
    grads = {
        "r": (L(r=r0 + h) - L(r=r0 - h)) / (2 * h),
        "v_max": (L(v=v0 + h) - L(v=v0 - h)) / (2 * h),
        "b": (L(b=b0 + h) - L(b=b0 - h)) / (2 * h),
        # the surrogate is elementwise in x, so one perturbation of all x gives every partial
        "x": g * (f(r0, v0, q_of(b0), x0 + h) - f(r0, v0, q_of(b0), x0 - h)) / (2 * h),
    }
    return grads, f, masks


def autograd_grads(scheme: str, x0, g, r0: float, v0: float, B: float):
    x = x0.clone().requires_grad_(True)
    r = torch.tensor(r0, dtype=DT, requires_grad=True)
    v = torch.tensor(v0, dtype=DT, requires_grad=scheme == "asymmetric")
    b = torch.tensor(float(B), dtype=DT, requires_grad=True)
    y = LBQFunction.apply(x, r, v, b, scheme)
    (g * y).sum().backward()
    out = {"r": float(r.grad), "b": float(b.grad), "x": x.grad, "y": y.detach()}
    out["v_max"] = float(v.grad) if scheme == "asymmetric" else None
    return out


def grad_mismatch(auto, fd, rtol: float = RTOL, scale: float = 1.0) -> float | None:
    """None if ``auto`` matches ``fd`` within rtol (relative to max(|fd|, scale)); else the relative error.

    ``scale`` guards sums that cancel to ~0 (then the tolerance is relative to the terms' size).
    """
    a = torch.as_tensor(auto, dtype=DT)
    e = torch.as_tensor(fd, dtype=DT)
    denom = torch.clamp(e.abs(), min=scale)
    err = float(((a - e).abs() / denom).max())
    return None if err <= rtol else err


# --------------------------------------------------------------------------------------------------
# 1. Derivatives against finite differences of the straight-through surrogate
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("B", [3, 6, 8])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_gradients_match_surrogate_fd(scheme, B):
    r0, v0 = BASE[scheme]
    x0 = make_x(scheme, r0, v0, seed=B)
    g = torch.randn(x0.shape, generator=torch.Generator().manual_seed(100 + B), dtype=DT)
    fd, f, masks = fd_grads(scheme, x0, g, r0, v0, B)
    # all three masks are populated (for unsigned, "below" is x < 0)
    assert masks["inside"].any() and masks["below"].any() and masks["above"].any()

    got = autograd_grads(scheme, x0, g, r0, v0, B)
    # sanity: the surrogate is the forward value at the base point
    torch.testing.assert_close(f(r0, v0, masks["q0"], x0), got["y"], rtol=1e-12, atol=1e-12)

    # per-element |g| sum: the size of the terms, so a cancelling sum does not shrink the tolerance
    scale = float(g.abs().sum()) * 1e-3
    for name in ("r", "b") + (("v_max",) if scheme == "asymmetric" else ()):
        err = grad_mismatch(got[name], fd[name], scale=scale)
        assert err is None, f"{scheme} B={B} d/d{name}: autograd {got[name]!r} vs FD {fd[name]!r} (rel {err})"
    # x: straight-through, g inside and exactly 0 outside
    assert grad_mismatch(got["x"], fd["x"], scale=1e-3) is None
    assert torch.equal(got["x"][~masks["inside"]], torch.zeros_like(got["x"][~masks["inside"]]))
    torch.testing.assert_close(got["x"][masks["inside"]], g[masks["inside"]], rtol=0, atol=0)


def test_unsigned_range_gradient_above_is_one():
    # documented deviation from the reference code: d x_q / d r = 1 above the range (x_q = r there)
    r = torch.tensor(1.0, dtype=DT, requires_grad=True)
    x = torch.tensor([2.0, 3.0], dtype=DT)
    LBQFunction.apply(x, r, torch.tensor(0.0, dtype=DT), torch.tensor(4.0, dtype=DT), "unsigned").sum().backward()
    assert float(r.grad) == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize("b, B", [(1.2, 2), (40.0, 32), (5.6, 6), (6.0, 6), (2.0, 2), (32.0, 32)])
def test_hard_bits_is_round_of_clamp(b, B):
    assert float(hard_bits(torch.tensor(b))) == B
    # the forward pass uses exactly that bitwidth
    x = torch.linspace(-2, 2, 401, dtype=DT)
    r, v = torch.tensor(1.5, dtype=DT), torch.tensor(0.0, dtype=DT)
    y_soft = LBQFunction.apply(x, r, v, torch.tensor(b, dtype=DT), "symmetric")
    y_hard = LBQFunction.apply(x, r, v, torch.tensor(float(B), dtype=DT), "symmetric")
    assert torch.equal(y_soft, y_hard)


# --------------------------------------------------------------------------------------------------
# 2. Code range: integer codes inside lbq_code_range, both extremes reached
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("B", [2, 4, 8])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_codes_are_integers_in_range(scheme, B):
    r0 = 2.0
    v0 = 1.3 if scheme == "asymmetric" else 0.0  # asymmetric: v_min = -0.7 < 0 < v_max
    q = 2.0**B - 1
    s = r0 / q
    z = round(-(v0 - r0) / s) if scheme == "asymmetric" else 0.0
    x = torch.linspace(-4 * r0, 4 * r0, 20001, dtype=DT)  # well beyond the range on both sides
    args = (torch.tensor(r0, dtype=DT), torch.tensor(v0, dtype=DT), torch.tensor(float(B), dtype=DT), scheme)
    y = LBQFunction.apply(x, *args)
    k = y / s + z
    assert torch.allclose(k, torch.round(k), rtol=0, atol=1e-9), "codes must be integers"
    kmin, kmax = lbq_code_range(scheme, B)
    k = torch.round(k)
    assert float(k.min()) == kmin and float(k.max()) == kmax
    if scheme == "symmetric":
        assert (kmin, kmax) == (-(2 ** (B - 1)), 2 ** (B - 1) - 1)
    else:
        assert (kmin, kmax) == (0, 2**B - 1)
    if scheme == "asymmetric":
        # the integer zero point makes 0 exactly representable
        zero = LBQFunction.apply(torch.zeros(3, dtype=DT), *args)
        assert torch.equal(zero, torch.zeros(3, dtype=DT))


def test_code_range_unknown_scheme():
    with pytest.raises(ValueError):
        lbq_code_range("signed", 8)


# --------------------------------------------------------------------------------------------------
# 3. LBQuantizer
# --------------------------------------------------------------------------------------------------
def _data(seed: int = 0) -> torch.Tensor:
    # asymmetric around zero so that max|x| comes from the negative side for at least some seeds
    return torch.randn(256, generator=torch.Generator().manual_seed(seed)) * 0.7 - 0.2


@pytest.mark.parametrize("scheme", SCHEMES)
def test_minmax_init(scheme):
    x = _data()
    q = LBQuantizer(scheme)
    with calibrate(q):
        assert torch.equal(q(x), x)  # pass-through while calibrating
    assert q.frozen
    lo, hi = x.min(), x.max()
    if scheme == "symmetric":
        expected = 2 * x.abs().max()
    elif scheme == "unsigned":
        expected = hi
    else:
        expected = hi - lo
        assert q.v_max.item() == pytest.approx(float(hi), rel=1e-6)
    assert q.range.item() == pytest.approx(float(expected), rel=1e-6)
    assert q(x).shape == x.shape


def test_minmax_init_zero_range_becomes_one():
    q = LBQuantizer("asymmetric")
    with calibrate(q):
        q(torch.full((4,), 0.25))
    assert q.range.item() == 1.0


def test_for_component_init_bits():
    exp = LBQuantizer.for_component("density.out")
    assert exp.bits == 32 and exp.soft_bits.item() == EXP_INIT_BITS and exp.scheme == "unsigned"
    for name in ("hash.level03", "enc.out", "color.l1.weight", "density.l1.act_in"):
        q = LBQuantizer.for_component(name)
        assert q.bits == 8 and q.soft_bits.item() == INIT_BITS


def test_bits_follow_soft_bits_and_clamp():
    q = LBQuantizer("symmetric")
    for b, B in [(1.2, 2), (40.0, 32), (5.6, 6), (5.4, 5)]:
        with torch.no_grad():
            q.soft_bits.fill_(b)
        assert q.bits == B
    # clamp_bits projects b itself (not only the hard bits) onto [2, 32]
    with torch.no_grad():
        q.soft_bits.fill_(40.0)
    q.clamp_bits()
    assert q.soft_bits.item() == 32.0
    with torch.no_grad():
        q.soft_bits.fill_(0.5)
    q.clamp_bits()
    assert q.soft_bits.item() == 2.0
    with torch.no_grad():
        q.soft_bits.fill_(7.3)
    q.clamp_bits()
    assert q.soft_bits.item() == pytest.approx(7.3)


def test_forward_before_calibration_raises():
    with pytest.raises(RuntimeError):
        LBQuantizer("unsigned")(torch.ones(3))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_state_dict_round_trip(scheme):
    x = _data(1)
    q1 = LBQuantizer(scheme, name="enc.out")
    with calibrate(q1):
        q1(x)
    with torch.no_grad():
        q1.soft_bits.fill_(4.7)
        q1.range.mul_(0.9)
    q2 = LBQuantizer(scheme)
    assert not q2.frozen
    q2.load_state_dict(q1.state_dict())
    assert q2.frozen
    for key, val in q1.state_dict().items():
        if isinstance(val, torch.Tensor):
            assert torch.equal(q2.state_dict()[key], val), key
    assert torch.equal(q2(x), q1(x))
    # an unfrozen quantizer's state stays unfrozen
    q3 = LBQuantizer(scheme)
    q3.load_state_dict(LBQuantizer(scheme).state_dict())
    assert not q3.frozen


@pytest.mark.parametrize("kwargs", [dict(scheme="signed"), dict(scheme="symmetric", init_bits=1),
                                    dict(scheme="unsigned", init_bits=33)])
def test_invalid_construction(kwargs):
    with pytest.raises(ValueError):
        LBQuantizer(**kwargs)


def test_is_weight():
    assert LBQuantizer.for_component("hash.level03").is_weight
    assert LBQuantizer.for_component("color.l1.weight").is_weight
    assert not LBQuantizer.for_component("enc.out").is_weight
    assert not LBQuantizer("asymmetric").is_weight  # no name


def test_gradients_flow_to_module_parameters():
    # the module wires its parameters into LBQFunction (asymmetric: r, v_max, b all get gradients)
    q = LBQuantizer("asymmetric")
    x = _data(2)
    with calibrate(q):
        q(x)
    (q(x * 1.5) ** 2).sum().backward()
    for p in (q.range, q.v_max, q.soft_bits):
        assert p.grad is not None and math.isfinite(p.grad.item())


# --------------------------------------------------------------------------------------------------
# 4. The comparison can fail: a wrong derivative is detected
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", SCHEMES)
def test_helper_detects_wrong_derivative(scheme):
    r0, v0 = BASE[scheme]
    B = 6
    x0 = make_x(scheme, r0, v0, seed=7)
    g = torch.randn(x0.shape, generator=torch.Generator().manual_seed(7), dtype=DT)
    fd, _, _ = fd_grads(scheme, x0, g, r0, v0, B)
    got = autograd_grads(scheme, x0, g, r0, v0, B)
    scale = float(g.abs().sum()) * 1e-3
    names = ("r", "b") + (("v_max",) if scheme == "asymmetric" else ())
    for name in names:
        assert grad_mismatch(got[name], fd[name], scale=scale) is None  # correct one passes
        # a 1e-3 perturbation (absolute or relative) is reported
        assert grad_mismatch(got[name] + 1e-3 * max(abs(fd[name]), 1.0), fd[name], scale=scale) is not None
        assert grad_mismatch(got[name] * (1 + 1e-3), fd[name], scale=scale) is not None or fd[name] == 0
    wrong_x = got["x"].clone()
    wrong_x[0] += 1e-3
    assert grad_mismatch(wrong_x, fd["x"], scale=1e-3) is not None
    # a naive reference (unclamped rounding, residual not frozen) disagrees with the closed form too
    f_bad = lambda r: float((g * (r / (2.0**B - 1)) * torch.round(x0 * (2.0**B - 1) / r)).sum())  # noqa: E731
    assert grad_mismatch(got["r"], (f_bad(r0 + FD_H) - f_bad(r0 - FD_H)) / (2 * FD_H), scale=scale) is not None
