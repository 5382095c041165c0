import re
import subprocess
import sys

import pytest
import torch
import yaml

from quant.policy import (
    FULL_PRECISION_BITS,
    SCHEMES,
    PolicyError,
    QuantPolicy,
    component_names,
    fqr,
    scheme_of,
)
from quant.quantizers import (
    FakeQuantizer,
    calibrate,
    code_range,
    fake_quantize,
    quantize_asymmetric,
    quantize_symmetric,
    quantize_unsigned,
    to_integer,
)
from tests.conftest import ROOT


def t(values, dtype=torch.float32):
    return torch.tensor(values, dtype=dtype)


# --- values on hand-computed examples -----------------------------------------------------------
@pytest.mark.parametrize(
    "fn, args, x, want",
    [
        # B=2: codes {-1, 0, 1}; range 2 * 1.5 = 3, s = 3 / 3 = 1
        (quantize_symmetric, (2, 1.0), [-2.0, -1.4, -0.4, 0.4, 0.6, 1.5], [-1, -1, 0, 0, 1, 1]),
        # B=3: codes -3..3; range 2 * 1.75, s = 3.5 / 7 = 0.5
        (quantize_symmetric, (3, 0.5), [-2.0, -1.3, -0.2, 0.3, 0.8, 1.2, 1.7], [-1.5, -1.5, 0, 0.5, 1, 1, 1.5]),
        # B=2: codes 0..3, s = 3 / 3 = 1
        (quantize_unsigned, (2, 1.0), [-1.0, 0.4, 0.6, 1.4, 2.6, 3.0, 5.0], [0, 0, 1, 1, 3, 3, 3]),
        # B=3: codes 0..7, s = 3.5 / 7 = 0.5
        (quantize_unsigned, (3, 0.5), [0.2, 0.3, 1.1, 3.4, 4.0], [0, 0.5, 1, 3.5, 3.5]),
        # B=2: lo = -1, hi = 2, s = 3 / 3 = 1
        (quantize_asymmetric, (2, 1.0, -1.0), [-3.0, -1.0, -0.4, 0.2, 0.7, 2.0, 4.0], [-1, -1, 0, 0, 1, 2, 2]),
        # B=3: lo = 0.25, hi = 2, s = 1.75 / 7 = 0.25
        (quantize_asymmetric, (3, 0.25, 0.25), [0.0, 0.3, 0.9, 1.6, 2.5], [0.25, 0.25, 1.0, 1.5, 2.0]),
    ],
)
def test_hand_computed_values(fn, args, x, want):
    assert fn(t(x), *args).tolist() == want


def test_code_ranges():
    assert code_range("symmetric", 2) == (-1, 1)
    assert code_range("symmetric", 8) == (-127, 127)
    assert code_range("unsigned", 3) == (0, 7)
    assert code_range("asymmetric", 16) == (0, 65535)


@pytest.mark.parametrize("scheme, data, scale, offset", [
    ("symmetric", [-1.0, 1.75], 0.5, 0.0),      # 2 * 1.75 / 7
    ("unsigned", [0.5, 3.5], 0.5, 0.0),         # 3.5 / 7
    ("asymmetric", [0.25, 2.0], 0.25, 0.25),    # 1.75 / 7, lo = 0.25
])
def test_min_max_calibration_gives_scale_from_observed_range(scheme, data, scale, offset):
    q = FakeQuantizer(scheme, 3)
    for v in data:  # two observations: the range is their union
        q.observe(t([v]))
    q.freeze()
    assert (q.scale.item(), q.offset.item()) == (scale, offset)


def test_calibrate_context_observes_full_precision_then_freezes():
    model = torch.nn.Sequential(FakeQuantizer("asymmetric", 4), FakeQuantizer("unsigned", 4))
    x1, x2 = t([-1.0, 0.5]), t([2.0, 0.25])
    with calibrate(model) as found:
        assert len(found) == 2
        assert torch.equal(model(x1), x1) and torch.equal(model(x2), x2)  # pass-through while observing
    q0, q1 = model
    assert q0.frozen and q1.frozen and not q0.calibrating
    assert q0.offset.item() == -1.0 and q0.scale.item() == pytest.approx(3.0 / 15)
    assert q1.offset.item() == 0.0 and q1.scale.item() == pytest.approx(2.0 / 15)
    assert not torch.equal(model(t([0.3])), t([0.3]))  # quantizes now


def test_calibrate_context_does_not_freeze_on_error():
    q = FakeQuantizer("unsigned", 4)
    with pytest.raises(KeyError), calibrate(q):
        q(t([1.0]))
        raise KeyError
    assert not q.frozen and not q.calibrating


def test_changing_bits_rederives_scale_from_observed_range():
    q = FakeQuantizer("asymmetric", 8)
    q.observe(t([0.0, 3.0]))
    q.freeze()
    assert q.scale.item() == pytest.approx(3.0 / 255)
    q.bits = 2
    assert q.scale.item() == pytest.approx(1.0) and q(t([1.4])).item() == 1.0


def test_constant_tensor_calibrates_to_exact_representation():
    for scheme, c in (("symmetric", 0.0), ("unsigned", 0.0), ("asymmetric", 0.7)):
        q = FakeQuantizer(scheme, 4)
        q.observe(t([c, c]))
        q.freeze()
        assert q.scale.item() == 1.0 and q(t([c])).item() == pytest.approx(c)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("bits", [2, 3, 4, 5])
def test_distinct_levels_at_most_2_pow_b_and_extremes_used(scheme, bits):
    x = torch.randn(20000, generator=torch.Generator().manual_seed(bits))
    q = FakeQuantizer(scheme, bits)
    q.observe(x)
    q.freeze()
    codes, _, _ = to_integer(x, q)
    qmin, qmax = code_range(scheme, bits)
    assert q(x).unique().numel() <= 2**bits
    assert codes.unique().numel() <= qmax - qmin + 1
    # min-max calibration spans the grid: the extremes of x land on the extreme codes (for symmetric,
    # only the one of larger magnitude does)
    if scheme == "symmetric":
        assert codes.abs().max().item() == qmax
    else:
        assert (codes.min().item(), codes.max().item()) == (qmin, qmax)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_16_bit_error_is_tiny(scheme):
    x = torch.randn(10000, generator=torch.Generator().manual_seed(0)) * 3
    if scheme == "unsigned":
        x = x.relu()
    q = FakeQuantizer(scheme, 16)
    q.observe(x)
    q.freeze()
    err = (q(x) - x).abs().max().item()
    span = (x.max() - x.min()).item()
    # half a step (also at the symmetric extremes: max|x| / s = 2^(B-1) - 1/2), plus float32 rounding
    # of k * s + lo: a few ulps of max|x|
    bound = q.scale.item() / 2 + 4 * x.abs().max().item() * 2**-23
    assert err <= bound
    assert err < 1e-4 * span


# --- straight-through gradients -----------------------------------------------------------------
def _surrogate(x, scheme, bits, scale, offset, residual):
    """q with the rounding residual round(c) - c held fixed: smooth in x, scale and offset."""
    qmin, qmax = code_range(scheme, bits)
    return (torch.clamp((x - offset) / scale, qmin, qmax) + residual) * scale + offset


# x values clearly inside the range and clearly outside, per scheme (3 bits; s = 0.5, lo = -1 for asymmetric)
CASES = {
    "symmetric": (0.5, 0.0, [-1.3, -0.2, 0.3, 0.8, 1.2, -2.6, 2.2, 3.0]),    # inside |x| <= 1.5
    "unsigned": (0.5, 0.0, [0.1, 0.8, 1.7, 2.9, 3.4, -0.5, 3.8, 6.0]),       # inside [0, 3.5]
    "asymmetric": (0.5, -1.0, [-0.9, -0.3, 0.6, 1.1, 2.3, -1.7, 2.8, 4.0]),  # inside [-1, 2.5]
}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_ste_gradient_wrt_input_is_one_inside_zero_outside(scheme):
    scale, offset, values = CASES[scheme]
    x = t(values, torch.float64).requires_grad_()
    w = torch.linspace(0.5, 2.0, len(values), dtype=torch.float64)
    (w * fake_quantize(x, scheme, 3, scale, offset)).sum().backward()
    inside = [1.0] * 5 + [0.0] * 3
    assert x.grad.tolist() == pytest.approx((w * t(inside, torch.float64)).tolist(), abs=0)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_ste_gradients_match_finite_differences_with_rounding_fixed(scheme):
    """Autograd through the STE against central differences of the loss with the rounding held fixed."""
    bits, (scale0, offset0, values) = 3, CASES[scheme]
    x0 = t(values, torch.float64)
    w = torch.linspace(-1.0, 2.0, len(values), dtype=torch.float64)
    c = torch.clamp((x0 - offset0) / scale0, *code_range(scheme, bits))
    residual = c.round() - c

    x = x0.clone().requires_grad_()
    scale = torch.tensor(scale0, dtype=torch.float64, requires_grad=True)
    offset = torch.tensor(offset0, dtype=torch.float64, requires_grad=True)
    (w * fake_quantize(x, scheme, bits, scale, offset)).sum().backward()

    def loss(dx=0.0, ds=0.0, do=0.0):
        return (w * _surrogate(x0 + dx, scheme, bits, scale0 + ds, offset0 + do, residual)).sum().item()

    h = 1e-6
    num_s = (loss(ds=h) - loss(ds=-h)) / (2 * h)
    num_o = (loss(do=h) - loss(do=-h)) / (2 * h)
    num_x = [(loss(dx=h * e) - loss(dx=-h * e)) / (2 * h) for e in torch.eye(len(values), dtype=torch.float64)]
    assert scale.grad.item() == pytest.approx(num_s, abs=1e-6)
    assert offset.grad.item() == pytest.approx(num_o, abs=1e-6)
    assert x.grad.tolist() == pytest.approx(num_x, abs=1e-6)
    assert abs(num_s) > 0.1  # the check has teeth: the scale gradient is far from zero here


def test_ste_gradients_closed_form_lsq():
    """LSQ/LSQ+: dq/ds = round(v) - v inside, qmin/qmax outside; dq/dlo = 0 inside, 1 outside."""
    scale = torch.tensor(0.5, requires_grad=True)
    offset = torch.tensor(-1.0, requires_grad=True)
    x = t([0.6, -1.7, 2.8])  # v = 3.2 (inside), -1.4 (below), 7.6 (above); 3 bits: codes 0..7
    q = fake_quantize(x, "asymmetric", 3, scale, offset)
    for i, (ds, do) in enumerate([(3 - 3.2, 0.0), (0.0, 1.0), (7.0, 1.0)]):
        gs, go = torch.autograd.grad(q[i], (scale, offset), retain_graph=True)
        assert (gs.item(), go.item()) == (pytest.approx(ds), pytest.approx(do))
    s = torch.tensor(0.5, requires_grad=True)
    qs = quantize_symmetric(t([0.8, -2.6, 2.2]), 3, s)  # v = 1.6 (inside), -5.2, 4.4; codes -3..3
    assert [torch.autograd.grad(qs[i], s, retain_graph=True)[0].item() for i in range(3)] == pytest.approx(
        [2 - 1.6, -3, 3]
    )


def test_module_parameters_are_learnable():
    q = FakeQuantizer("asymmetric", 3)
    assert isinstance(q.offset, torch.nn.Parameter) and isinstance(q.scale, torch.nn.Parameter)
    assert {n for n, _ in q.named_parameters()} == {"scale", "offset"}
    assert {n for n, _ in FakeQuantizer("symmetric", 3).named_parameters()} == {"scale"}
    q.observe(t([-1.0, 2.5]))
    q.freeze()
    (q(t([2.8, -1.7])).sum()).backward()  # both outside: d/dlo = 1 each, d/ds = 7 + 0
    assert (q.offset.grad.item(), q.scale.grad.item()) == (2.0, 7.0)


# --- pass-through, validation, state ------------------------------------------------------------
@pytest.mark.parametrize("kwargs", [{"bits": None}, {"bits": FULL_PRECISION_BITS}, {"bits": 4, "enabled": False}])
def test_pass_through(kwargs):
    q = FakeQuantizer("asymmetric", **kwargs)
    x = torch.randn(100)
    assert q(x) is x and not q.active
    with pytest.raises(ValueError, match="pass-through"):
        to_integer(x, q)


@pytest.mark.parametrize("bits", [1, 33, 8.0, True, "8", -4])
def test_invalid_bits_name_the_value(bits):
    message = f"bits of quantizer 'w' must be an integer in [2, 32], not {bits!r}"
    with pytest.raises(ValueError, match=re.escape(message)):
        FakeQuantizer("symmetric", bits, name="w")
    with pytest.raises(ValueError, match=re.escape(f"not {bits!r}")):
        quantize_unsigned(t([1.0]), bits, 1.0)
    q = FakeQuantizer("symmetric", 8, name="w")
    with pytest.raises(ValueError, match=re.escape(message)):
        q.bits = bits


def test_invalid_scheme_and_scale():
    with pytest.raises(ValueError, match="scheme must be one of symmetric, unsigned, asymmetric, not 'signed'"):
        FakeQuantizer("signed", 8)
    with pytest.raises(ValueError, match="scale must be positive, not 0.0"):
        quantize_symmetric(t([1.0]), 8, 0.0)


def test_use_before_calibration_and_empty_calibration_raise():
    q = FakeQuantizer("unsigned", 8, name="density.out")
    with pytest.raises(RuntimeError, match="'density.out'.*has no scale yet"):
        q(t([1.0]))
    with pytest.raises(RuntimeError, match="'density.out'.*observed nothing"):
        q.freeze()
    q.observe(t([1.0, float("nan")]))
    with pytest.raises(RuntimeError, match="not finite"):
        q.freeze()


def test_state_dict_round_trip_keeps_calibration():
    q = FakeQuantizer("asymmetric", 5)
    x = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    q.observe(x)
    q.freeze()
    r = FakeQuantizer("asymmetric", 5)
    r.load_state_dict(q.state_dict())
    assert r.frozen and torch.equal(r(x), q(x))


# --- integer export -----------------------------------------------------------------------------
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("bits", [2, 4, 8, 16, 24, 31])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_to_integer_round_trip(scheme, bits, dtype):
    g = torch.Generator().manual_seed(bits)
    x = (torch.randn(5000, generator=g) * 2 + 0.3).to(dtype)
    q = FakeQuantizer(scheme, bits)
    q.observe(x[:4000])  # the rest partly falls outside the range and is clamped
    q.freeze()
    codes, scale, offset = to_integer(x, q)
    qmin, qmax = code_range(scheme, bits)
    assert codes.dtype == torch.int64 and codes.shape == x.shape
    assert qmin <= codes.min().item() and codes.max().item() <= qmax
    assert (scale, offset) == (q.scale.item(), q.offset.item())
    assert torch.equal(codes.to(dtype) * scale + offset, q(x))


# --- policy -------------------------------------------------------------------------------------
FIXED = [
    "enc.out", "density.l0.weight", "density.l1.act_in", "density.l1.weight", "density.l1.out", "density.out",
    "sh.out", "color.l0.weight", "color.l1.act_in", "color.l1.weight", "color.l2.act_in", "color.l2.weight",
    "color.l2.out", "color.out",
]


def test_component_names_order_and_count():
    names = component_names(16)
    assert names == [f"hash.level{i:02d}" for i in range(16)] + FIXED
    assert len(set(names)) == len(names) == 16 + 14
    assert component_names(1) == ["hash.level00"] + FIXED
    for bad in (0, 33, 2.0, True):
        with pytest.raises(PolicyError, match=re.escape(f"levels must be an integer in [1, 32], not {bad!r}")):
            component_names(bad)


def test_schemes_follow_a_caq_table_2():
    assert {scheme_of(n) for n in component_names(32)} == set(SCHEMES)
    for name in component_names(16):
        if name.endswith(".weight"):
            assert scheme_of(name) == "symmetric", name
        elif name.endswith(".act_in") or name == "density.out":  # ReLU and exp outputs
            assert scheme_of(name) == "unsigned", name
        else:  # hash entries and other activations
            assert scheme_of(name) == "asymmetric", name
    with pytest.raises(PolicyError, match="unknown component 'hash.level32'"):
        scheme_of("hash.level32")


def test_uniform_policy_and_fqr():
    p = QuantPolicy.uniform(8, 4)
    assert list(p) == component_names(4) and set(p.values()) == {8} and p.levels == 4
    assert fqr(p) == 8.0
    mixed = p.replace({"hash.level00": 4, "color.out": 16})
    assert mixed["hash.level00"] == 4 and p["hash.level00"] == 8  # replace returns a copy
    assert fqr(mixed) == pytest.approx((8 * 16 + 4 + 16) / 18)
    with pytest.raises(TypeError):
        p["enc.out"] = 4  # immutable


def test_policy_yaml_round_trip_is_atomic_and_ordered(tmp_path):
    p = QuantPolicy.from_dict({n: 2 + i for i, n in enumerate(reversed(component_names(3)))}, 3)
    path = tmp_path / "sub" / "policy.yaml"
    p.save(path)
    assert QuantPolicy.load(path, 3) == p
    assert list(yaml.safe_load(path.read_text())) == component_names(3)  # component order, not input order
    assert [f.name for f in path.parent.iterdir()] == ["policy.yaml"]  # no temporary file left
    p.replace({"enc.out": 32}).save(path)  # overwrite
    assert QuantPolicy.load(path, 3)["enc.out"] == 32


def _write(tmp_path, data):
    path = tmp_path / "policy.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_policy_unknown_component_names_it_and_the_file(tmp_path):
    path = _write(tmp_path, {**QuantPolicy.uniform(8, 2), "density.l2.weight": 8})
    with pytest.raises(PolicyError, match=re.escape(f"{path}: unknown component 'density.l2.weight'")):
        QuantPolicy.load(path, 2)
    path = _write(tmp_path, dict(QuantPolicy.uniform(8, 3)))  # a policy for more levels
    with pytest.raises(PolicyError, match=re.escape(f"{path}: unknown component 'hash.level02'")):
        QuantPolicy.load(path, 2)


def test_policy_missing_entries_are_listed(tmp_path):
    d = dict(QuantPolicy.uniform(8, 2))
    del d["hash.level01"], d["sh.out"]
    path = _write(tmp_path, d)
    with pytest.raises(PolicyError, match=re.escape(f"{path}: missing components: hash.level01, sh.out")):
        QuantPolicy.load(path, 2)


@pytest.mark.parametrize("value", [1, 33, 0, -8, 8.0, 8.5, "8", True, None])
def test_policy_bad_bits_name_component_and_value(tmp_path, value):
    path = _write(tmp_path, {**QuantPolicy.uniform(8, 2), "color.l1.weight": value})
    message = f"{path}: bits of 'color.l1.weight' must be an integer in [2, 32], not {value!r}"
    with pytest.raises(PolicyError, match=re.escape(message)):
        QuantPolicy.load(path, 2)
    with pytest.raises(ValueError, match=re.escape(message.split(": ", 1)[1])):  # PolicyError is a ValueError
        QuantPolicy.from_dict({**QuantPolicy.uniform(8, 2), "color.l1.weight": value}, 2)


def test_policy_bad_files_name_the_file(tmp_path):
    with pytest.raises(PolicyError, match=re.escape(f"cannot read policy {str(tmp_path / 'nope.yaml')!r}")):
        QuantPolicy.load(tmp_path / "nope.yaml", 2)
    path = _write(tmp_path, "enc.out: [8\n")
    with pytest.raises(PolicyError, match=re.escape(f"policy {str(path)!r} is not valid YAML")):
        QuantPolicy.load(path, 2)
    for text, kind in (("", "NoneType"), ("- 8\n", "list")):
        path = _write(tmp_path, text)
        with pytest.raises(PolicyError, match=re.escape(f"{path}: a policy must be a mapping of component -> bits, "
                                                        f"not {kind}")):
            QuantPolicy.load(path, 2)


def test_policy_module_is_torch_free():
    code = "import sys, quant, quant.policy; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
