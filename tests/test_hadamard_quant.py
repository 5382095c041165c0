"""DHQ (quant.hadamard): the Hadamard matrix, DHQLinear at full and reduced precision, wrapping models."""

import copy

import pytest
import torch
from torch import nn

from quant.hadamard import (DHQLinear, dhq_layers, dhq_wrap, hadamard_matrix, layer_parameters, padded_size,
                            quantizer_parameters, set_bits)
from quant.quantizers import calibrate


@pytest.mark.parametrize("n", [1, 2, 4, 8, 64, 128])
def test_hadamard_is_orthonormal_and_symmetric(n):
    h = hadamard_matrix(n, dtype=torch.float64)
    torch.testing.assert_close(h @ h.T, torch.eye(n, dtype=torch.float64))
    torch.testing.assert_close(h, h.T)


def test_hadamard_sylvester_ordering():
    h = hadamard_matrix(8, normalized=False, dtype=torch.int64)
    for i in range(8):
        for j in range(8):
            assert h[i, j] == (-1) ** bin(i & j).count("1")
    h2 = hadamard_matrix(2, normalized=False)
    h4 = hadamard_matrix(4, normalized=False)
    torch.testing.assert_close(h4, torch.cat([torch.cat([h2, h2], 1), torch.cat([h2, -h2], 1)]))
    torch.testing.assert_close(hadamard_matrix(16), hadamard_matrix(16, normalized=False) / 4)


@pytest.mark.parametrize("n,message", [(96, "^Hadamard size n must be a power of two, not 96$"),
                                       (0, "^Hadamard size n must be an integer >= 1, not 0$"),
                                       (-4, "^Hadamard size n must be an integer >= 1, not -4$"),
                                       (4.0, "^Hadamard size n must be an integer >= 1, not 4.0$"),
                                       (True, "^Hadamard size n must be an integer >= 1, not True$"),
                                       ("8", "^Hadamard size n must be an integer >= 1, not '8'$")])
def test_hadamard_bad_size_is_named(n, message):
    with pytest.raises(ValueError, match=message):
        hadamard_matrix(n)


def test_padded_size():
    assert [padded_size(i) for i in (1, 2, 3, 4, 5, 31, 32, 33, 64, 65)] == [2, 2, 4, 4, 8, 32, 32, 64, 64, 128]
    with pytest.raises(ValueError, match="^in_features must be an integer >= 1, not 0$"):
        padded_size(0)


@pytest.mark.parametrize("in_features,bias", [(64, True), (31, False), (2, True), (3, True), (1, False)])
@pytest.mark.parametrize("rotate", [True, False])
def test_full_precision_equals_linear(in_features, bias, rotate):
    torch.manual_seed(0)
    lin = nn.Linear(in_features, 16, bias=bias)
    x = torch.randn(50, in_features)
    layer = DHQLinear(lin, rotate=rotate)
    assert layer.n == padded_size(in_features) and layer.rotate is rotate
    assert layer.weight.shape == (16, layer.n)
    torch.testing.assert_close(layer(x), lin(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.equivalent_weight(), lin.weight.detach(), rtol=1e-5, atol=1e-6)
    # 32 bits is full precision too (quant.policy)
    torch.testing.assert_close(DHQLinear(lin, rotate=rotate, weight_bits=32, act_bits=32)(x), lin(x),
                               rtol=1e-5, atol=1e-5)


def test_rotated_weight_is_padded_weight_times_h():
    torch.manual_seed(0)
    lin = nn.Linear(5, 3)
    layer = DHQLinear(lin, rotate=True)
    padded = torch.cat([lin.weight.detach(), torch.zeros(3, 3)], 1)
    torch.testing.assert_close(layer.rotated_weight, padded @ hadamard_matrix(8))
    x = torch.randn(4, 5)
    torch.testing.assert_close(layer.rotate_input(x), torch.cat([x, torch.zeros(4, 3)], 1) @ hadamard_matrix(8))
    with pytest.raises(ValueError, match="expects 5 input features, got shape \\(4, 6\\)"):
        layer(torch.randn(4, 6))


def _outlier_linear(seed=0):
    """A 64 -> 32 layer whose weight is small Gaussian except for a few large outliers (an INR's first/last
    layer, or a trained layer with a few big weights): min-max PTQ wastes almost all levels on them."""
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(64, 32, bias=False)
    with torch.no_grad():
        w = torch.randn(32, 64, generator=g) * 0.02
        w[torch.arange(4), torch.arange(4) * 7] = torch.tensor([1.5, -1.2, 1.0, -1.4])
        lin.weight.copy_(w)
    return lin


def test_rotation_reduces_quantization_error_on_outliers():
    lin = _outlier_linear()
    x = torch.randn(256, 64, generator=torch.Generator().manual_seed(1))
    ref = lin(x)
    errors = {}
    for rotate in (False, True):
        layer = DHQLinear(lin, rotate=rotate, weight_bits=4, act_bits=None)
        with calibrate(layer):
            layer(x)
        errors[rotate] = float(((layer(x) - ref) ** 2).mean().detach())
        w_err = float(((layer.quantized_weight() - layer.rotated_weight) ** 2).mean())
        errors[f"w{rotate}"] = w_err
    assert errors[True] < 0.5 * errors[False], errors
    assert errors["wTrue"] < 0.5 * errors["wFalse"], errors


def test_bits_validation_names_the_value():
    lin = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="bits of quantizer 'l.weight' must be an integer in \\[2, 32\\], not 1"):
        DHQLinear(lin, weight_bits=1, name="l")
    with pytest.raises(ValueError, match="not 4.5"):
        DHQLinear(lin, act_bits=4.5)
    with pytest.raises(TypeError, match="rotate must be a bool"):
        DHQLinear(lin, rotate=1)
    with pytest.raises(TypeError, match="wraps an nn.Linear, not Conv1d"):
        DHQLinear(nn.Conv1d(1, 1, 1))
    model = nn.Sequential(nn.Linear(4, 4))
    with pytest.raises(ValueError, match="act_bits must be an integer in \\[2, 32\\], not 33"):
        dhq_wrap(model, rotate=True, weight_bits=8, act_bits=33)
    with pytest.raises(ValueError, match="weight_bits must be an integer in \\[2, 32\\], not True"):
        set_bits(model, weight_bits=True, act_bits=8)


def test_calibration_observes_rotated_tensors():
    torch.manual_seed(0)
    lin = nn.Linear(6, 5)
    layer = DHQLinear(lin, rotate=True, weight_bits=6, act_bits=5)
    x = torch.randn(100, 6) * 3
    with calibrate(layer):
        layer(x)
    xr = layer.rotate_input(x)
    wq, aq = layer.weight_quantizer, layer.act_quantizer
    assert aq.frozen and wq.frozen
    assert float(aq.observed_min) == pytest.approx(float(xr.min()))
    assert float(aq.observed_max) == pytest.approx(float(xr.max()))
    assert float(wq.observed_max) == pytest.approx(float(layer.rotated_weight.max()))
    assert float(wq.observed_min) == pytest.approx(float(layer.rotated_weight.min()))
    # symmetric min-max step of the rotated tensors (quant.quantizers module table)
    assert float(aq.scale.detach()) == pytest.approx(2 * float(xr.abs().max()) / (2**5 - 1))
    assert float(wq.scale.detach()) == pytest.approx(2 * float(layer.rotated_weight.abs().max()) / (2**6 - 1))
    # the rotated weight differs from the plain one: calibration really saw W H, not W
    assert float(layer.rotated_weight.abs().max()) != pytest.approx(float(lin.weight.detach().abs().max()))
    # quantized values are on the narrow symmetric grid
    codes = (aq(xr) / aq.scale).detach()
    torch.testing.assert_close(codes, codes.round())
    assert float(codes.abs().max()) <= 2**4 - 1


def test_lsq_scales_and_weights_receive_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    x = torch.randn(64, 3)
    wrapped = dhq_wrap(model, rotate=True, weight_bits=4, act_bits=4)
    assert list(wrapped) == ["0", "2"] and isinstance(model[0], DHQLinear)
    with calibrate(model):
        model(x)
    scales = quantizer_parameters(model)
    assert len(scales) == 4 and all(isinstance(s, nn.Parameter) for s in scales)
    loss = (model(x) ** 2).mean()
    loss.backward()
    assert all(s.grad is not None and float(s.grad.abs()) > 0 for s in scales)
    assert all(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in layer_parameters(model))
    # set_bits re-derives the min-max steps; None switches the quantizers off
    s4 = float(model[0].weight_quantizer.scale.detach())
    set_bits(model, weight_bits=8, act_bits=8)
    assert float(model[0].weight_quantizer.scale.detach()) == pytest.approx(s4 * 15 / 255)
    set_bits(model, weight_bits=None, act_bits=None)
    assert quantizer_parameters(model) == []


def test_wrap_given_names_only():
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    wrapped = dhq_wrap(model, rotate=False, weight_bits=None, act_bits=None, names=["2"])
    assert list(wrapped) == ["2"] and isinstance(model[0], nn.Linear) and isinstance(model[2], DHQLinear)
    assert list(dhq_layers(model)) == ["2"]
    with pytest.raises(ValueError, match="no submodule named 'x' to wrap"):
        dhq_wrap(model, rotate=True, weight_bits=8, act_bits=8, names=["x"])
    with pytest.raises(ValueError, match="submodule '1' is a ReLU, not an nn.Linear"):
        dhq_wrap(model, rotate=True, weight_bits=8, act_bits=8, names=["1"])


NERF_MLPS = ["density_l0", "density_l1", "color_l0", "color_l1", "color_l2"]


@pytest.fixture(scope="module")
def nerf_field():
    from nerf.model import InstantNGP

    torch.manual_seed(0)
    model = InstantNGP(levels=4, log2_table_size=10, n_min=4, n_max=32)
    with torch.no_grad():  # a non-trivial table, so the MLP inputs are not all zero
        for p in model.encoding.parameters():
            p.uniform_(-0.5, 0.5)
    g = torch.Generator().manual_seed(1)
    pts = torch.rand(300, 3, generator=g) * 2 - 1
    dirs = torch.nn.functional.normalize(torch.randn(300, 3, generator=g), dim=-1)
    return model, pts, dirs


@pytest.mark.parametrize("rotate", [True, False])
def test_nerf_mlps_wrapped(nerf_field, rotate):
    """The Instant-NGP field's bias-free MLP layers wrap unchanged: exact when rotating at full precision,
    close at 16 bits (weights and activations)."""
    model, pts, dirs = nerf_field
    with torch.no_grad():
        sigma, rgb = model(pts, dirs)
    fp = copy.deepcopy(model)
    wrapped = dhq_wrap(fp, rotate=rotate, weight_bits=None, act_bits=None, names=NERF_MLPS)
    assert [w.n for w in wrapped.values()] == [8, 64, 32, 64, 64] and all(w.bias is None for w in wrapped.values())
    with torch.no_grad():
        s, c = fp(pts, dirs)
    torch.testing.assert_close(s, sigma, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(c, rgb, rtol=1e-4, atol=1e-6)

    q16 = copy.deepcopy(model)
    dhq_wrap(q16, rotate=rotate, weight_bits=16, act_bits=16, names=NERF_MLPS)
    with torch.no_grad(), calibrate(q16):
        q16(pts, dirs)
    with torch.no_grad():
        s, c = q16(pts, dirs)
    assert float(((s - sigma).abs() / sigma.abs().clamp(min=1e-3)).max()) < 2e-3
    assert float((c - rgb).abs().max()) < 1e-3
    assert len(dhq_layers(q16)) == 5
