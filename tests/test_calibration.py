"""Calibration options of the fake quantizers (``quant.calibration``) and DHQ's rotation placements."""

import pytest
import torch
from torch import nn

from quant.calibration import MSE_GRID, calibrated_range, check_calibration
from quant.hadamard import DHQLinear, dhq_layers, dhq_wrap, hadamard_matrix, placement_rotations
from quant.quantizers import FakeQuantizer, calibrate, to_integer


def _calibrated(x, **kw):
    q = FakeQuantizer("symmetric", kw.pop("bits", 4), **kw)
    with torch.no_grad():
        q.observe(x)
        q.freeze()
    return q


def _mse(q, x):
    return float((q(x) - x).pow(2).mean().detach())


def test_mse_and_percentile_clip_an_outlier_and_lower_the_error():
    torch.manual_seed(0)
    x = torch.randn(20000)
    x[0] = 40.0  # one outlier: min-max spends the whole grid on it
    mm, mse, pct = (_calibrated(x, calibration=c) for c in ("min-max", "mse", "percentile"))
    assert float(mm.scale.detach()) == pytest.approx(80.0 / 15)
    mm_s, mse_s, pct_s = (float(q.scale.detach()) for q in (mm, mse, pct))
    assert mse_s < mm_s / 4 and pct_s < mm_s / 4
    assert _mse(mse, x) < _mse(mm, x) / 10
    # MSE is the best of its grid: no other shrink factor of the min-max range does better.
    for alpha in (0.2, 0.5, 1.0):
        other = FakeQuantizer("symmetric", 4)
        other.observe(x * alpha)
        other.freeze()
        assert _mse(mse, x) <= _mse(other, x) + 1e-9


def test_percentile_is_the_quantile_of_the_magnitudes():
    x = torch.linspace(-1, 1, 2001)
    lo, hi = calibrated_range(x[None], "percentile", "symmetric", 8, percentile=90.0)
    assert float(hi[0]) == pytest.approx(0.9, abs=1e-3) and float(lo[0]) == pytest.approx(-0.9, abs=1e-3)


def test_mse_of_a_uniform_tensor_keeps_nearly_the_whole_range():
    x = torch.linspace(-1, 1, 4001)
    lo, hi = calibrated_range(x[None], "mse", "symmetric", 8)
    assert float(hi[0]) > 0.95 and float(hi[0]) in [pytest.approx(a) for a in MSE_GRID]


def test_per_channel_steps_follow_each_row_and_export_their_codes():
    torch.manual_seed(1)
    w = torch.randn(6, 32) * torch.tensor([0.01, 0.1, 1, 3, 0.5, 2.0])[:, None]
    pc = _calibrated(w, channels=6)
    pt = _calibrated(w)
    assert pc.scale.shape == (6, 1)
    torch.testing.assert_close(pc.scale.detach().flatten(), 2 * w.abs().amax(1) / 15)
    assert _mse(pc, w) < _mse(pt, w)
    codes, scale, offset = to_integer(w, pc)
    torch.testing.assert_close(codes.float() * scale + offset, pc(w))
    assert int(codes.abs().max()) == 7
    pc.bits = 3  # PTQ at new bits re-derives every row's step from the kept values
    torch.testing.assert_close(pc.scale.detach().flatten(), 2 * w.abs().amax(1) / 7)


def test_bad_calibration_settings_are_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown calibration of quantizer 'w' 'median'.*min-max, mse, percentile"):
        FakeQuantizer("symmetric", 4, name="w", calibration="median")
    with pytest.raises(ValueError, match=r"percentile of quantizer 'w' must be a number in \(50, 100\], not 40"):
        FakeQuantizer("symmetric", 4, name="w", calibration="percentile", percentile=40)
    with pytest.raises(ValueError, match=r"channels of quantizer 'w' must be None .* not 0"):
        FakeQuantizer("symmetric", 4, name="w", channels=0)
    with pytest.raises(ValueError, match=r"not the asymmetric scheme"):
        FakeQuantizer("asymmetric", 4, name="w", channels=3)
    with pytest.raises(ValueError, match=r"unknown calibration 'x'"):
        check_calibration("x")
    q = FakeQuantizer("symmetric", 4, channels=3)
    with pytest.raises(ValueError, match=r"3 channels observed a tensor of shape \(4, 2\)"):
        q.observe(torch.zeros(4, 2))


def test_a_loaded_mse_quantizer_quantizes_but_cannot_rederive_without_data():
    x = torch.randn(500)
    q = _calibrated(x, calibration="mse")
    q2 = FakeQuantizer("symmetric", 4, calibration="mse")
    q2.load_state_dict(q.state_dict())
    torch.testing.assert_close(q2(x), q(x))
    q2.observed_min.fill_(-1.0)
    q2.observed_max.fill_(1.0)
    with pytest.raises(RuntimeError, match=r"mse calibration needs the observed values"):
        q2.bits = 3


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 2))


@pytest.mark.parametrize("rot_w,rot_a", [(True, True), (True, False), (False, True), (False, False)])
def test_every_rotation_combination_is_exact_at_full_precision_and_quantizes_in_its_basis(rot_w, rot_a):
    torch.manual_seed(2)
    lin = nn.Linear(5, 4)
    x = torch.randn(64, 5)
    layer = DHQLinear(lin, rotate_weight=rot_w, rotate_act=rot_a)
    torch.testing.assert_close(layer(x), lin(x), atol=1e-5, rtol=1e-5)
    q = DHQLinear(lin, rotate_weight=rot_w, rotate_act=rot_a, weight_bits=3, act_bits=3)
    with calibrate(q):
        q(x)
    h = hadamard_matrix(8)
    w = torch.nn.functional.pad(lin.weight.detach(), (0, 3))
    xp = torch.nn.functional.pad(x, (0, 3))
    wq = q.weight_quantizer(w @ h if rot_w else w)
    xq = q.act_quantizer(xp @ h if rot_a else xp)
    if rot_w != rot_a:
        xq = xq @ h
    torch.testing.assert_close(q(x), xq @ wq.T + lin.bias.detach())
    assert q.rotate is (rot_w and rot_a)


def test_placements_all_paper_and_rule():
    model = _mlp()
    x = torch.randn(256, 3)
    names = ["0", "2", "4"]
    assert placement_rotations(model, "all") == {n: (True, True) for n in names}
    assert placement_rotations(model, "paper") == {"0": (True, False), "2": (False, False), "4": (True, True)}
    bits = {n: (3, 3) for n in names}
    rule = placement_rotations(model, "rule", bits=bits, inputs=x)
    assert set(rule) == set(names)
    # One outlier weight is spread over its row by the rotation, so min-max keeps a finer step: rotated.
    with torch.no_grad():
        model[2].weight.copy_(torch.randn(16, 16) * 0.1)
        model[2].weight[3, 5] = 2.0
    assert placement_rotations(model, "rule", bits=bits, inputs=x)["2"][0] is True
    # An already flat (uniform) weight gains nothing: not rotated.
    with torch.no_grad():
        model[2].weight.copy_(torch.rand(16, 16) * 2 - 1)
    assert placement_rotations(model, "rule", bits=bits, inputs=x)["2"][0] is False
    # Full precision is never rotated.
    assert placement_rotations(model, "rule", bits={n: (None, None) for n in names}, inputs=x)["2"] == (False, False)
    wrapped = dhq_wrap(model, rotate=placement_rotations(model, "paper"), weight_bits=4, act_bits=4)
    assert [(m.rotate_weight, m.rotate_act) for m in wrapped.values()] == [(True, False), (False, False), (True, True)]
    assert len(dhq_layers(model)) == 3


def test_bad_placements_are_refused_by_name():
    model = _mlp()
    with pytest.raises(ValueError, match=r"unknown placement 'hidden' \(choices: all, paper, rule\)"):
        placement_rotations(model, "hidden")
    with pytest.raises(ValueError, match=r"'rule' needs the layers' bits and a calibration batch"):
        placement_rotations(model, "rule")
    with pytest.raises(ValueError, match=r"no bits given for layer '4'"):
        placement_rotations(model, "rule", bits={"0": (4, 4), "2": (4, 4)}, inputs=torch.zeros(2, 3))
    with pytest.raises(TypeError, match=r"rotate_weight must be"):
        DHQLinear(nn.Linear(2, 2), rotate_weight=1)
