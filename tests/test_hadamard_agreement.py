"""Hardware agreement: a DHQ-quantized SIREN layer, exported to integers and run through the Hadamard
datapath's TLM, gives exactly the integers of the fake-quantized PyTorch layer (the bound and its
conditions are derived in ``quant.hadamard_export``)."""

import dataclasses
import math
import re

import numpy as np
import pytest
import torch

from hw.params import HadamardConfig, HadamardParams, load_config
from nerf.siren import Siren, fit, image_coordinates, load_image
from quant.dyadic import dyadic_multiplier, dyadic_multipliers
from quant.hadamard import DHQLinear
from quant.hadamard_export import DHQIntegerLayer, exactness, export_dhq_layer, fake_quant_integers, hardware_layer
from quant.quantizers import calibrate
from sim.tlm.hadamard import HadamardTLM, reference_forward
from tests.conftest import CONFIGS

IN_BITS = 8  # the sine outputs in [-1, 1] as 8-bit codes


@pytest.fixture(scope="module")
def siren():
    """A 64-wide SIREN fitted briefly to a 32 x 32 camera, and every layer's input on its pixels."""
    img = load_image("camera", size=32)
    coords = image_coordinates(*img.shape[:2])
    torch.manual_seed(0)
    model = Siren(width=64, hidden_layers=1, channels=1)
    fit(model, coords, torch.from_numpy(img.reshape(-1, 1)), steps=150, progress=False)
    return model, model.hidden_inputs(coords)


def _export(siren, act_bits, weight_bits, *, out_bits=8):
    model, inputs = siren
    params = load_config(CONFIGS / "had-inr.yaml")["hadamard"]
    layer = DHQLinear(model.layers[1], rotate=True, weight_bits=weight_bits, act_bits=act_bits, name="l1")
    x = inputs[1]
    with calibrate(layer):
        z = layer(x)
    in_step = 1 / (2 ** (IN_BITS - 1) - 1)
    out_step = 2 * float(z.detach().abs().max()) / (2**out_bits - 1)
    exported = export_dhq_layer(layer, in_step=in_step, in_bits=IN_BITS, out_step=out_step, out_bits=out_bits,
                                mult_bits=params.mult_bits, shift_a_max=params.shift_a_max,
                                shift_o_max=params.shift_o_max)
    return params, layer, exported, exported.input_codes(x)


@pytest.mark.parametrize("act_bits, weight_bits", [(4, 4), (3, 6), (8, 8)])
def test_tlm_equals_fake_quantized_layer(siren, act_bits, weight_bits):
    params, layer, exported, x_codes = _export(siren, act_bits, weight_bits)
    conditions = exactness(exported, x_codes)
    assert all(conditions.values()), conditions  # the derived bound says: exactly equal

    cfg = params.check_config(HadamardConfig.from_dict(exported.config()))
    tlm = HadamardTLM(params, cfg, exported.weights, exported.bias)
    result = tlm.run(x_codes)
    hw_layer, out_quantizer = hardware_layer(layer, exported)
    u, acc, y = fake_quant_integers(hw_layer, out_quantizer, exported, x_codes)
    np.testing.assert_array_equal(result.activations, u)
    np.testing.assert_array_equal(result.accumulators, acc)
    np.testing.assert_array_equal(result.outputs, y)
    # Not a trivial agreement: the codes use their ranges.
    assert np.abs(u).max() == 2 ** (act_bits - 1) - 1
    assert len(np.unique(y)) > 20
    # Snapping moved the activation step by at most 2^-(mult_bits - 1) (relative).
    rel = abs(exported.act_step / float(layer.act_quantizer.scale.detach()) - 1)
    assert rel <= 2.0 ** -(params.mult_bits - 1)


def test_snapped_layer_stays_close_to_the_calibrated_one(siren):
    """Snapping the activation step (relative 2^-15 here) flips no code on this data, so the only change
    is the bias rounded to the accumulator step: at most half of it."""
    params, layer, exported, x_codes = _export(siren, 4, 4)
    hw_layer, _ = hardware_layer(layer, exported)
    layer = layer.double()
    x = torch.from_numpy(x_codes).double() * exported.in_step
    with torch.no_grad():
        flips = layer.act_quantizer(layer.rotate_input(x)) / float(layer.act_quantizer.scale)
        flips = flips.round() != (hw_layer.act_quantizer(hw_layer.rotate_input(x)) / exported.act_step).round()
        diff = float((layer(x) - hw_layer(x)).abs().max())
    assert int(flips.sum()) == 0
    assert diff <= 0.5 * exported.act_step * exported.weight_step * (1 + 1e-4)


def test_small_faults_break_agreement(siren):
    """The comparison can fail: M_a 1 % off changes u codes; one weight code off by one changes acc."""
    params, layer, exported, x_codes = _export(siren, 4, 4)
    hw_layer, out_quantizer = hardware_layer(layer, exported)
    u, acc, _ = fake_quant_integers(hw_layer, out_quantizer, exported, x_codes)
    wrong = dataclasses.replace(exported, mult_a=round(exported.mult_a * 1.01))
    u_tlm, _, _ = reference_forward(params, params.check_config(HadamardConfig.from_dict(wrong.config())),
                                    exported.weights, exported.bias, x_codes)
    assert (u_tlm != u).any()
    weights = exported.weights.copy()
    weights[0, 0] += 1 if weights[0, 0] < 7 else -1
    cfg = params.check_config(HadamardConfig.from_dict(exported.config()))
    _, acc_tlm, _ = reference_forward(params, cfg, weights, exported.bias, x_codes)
    assert (acc_tlm[:, 0] != acc[:, 0]).any() and (acc_tlm[:, 1:] == acc[:, 1:]).all()


def test_export_refuses_a_layer_that_does_not_rotate(siren):
    model, inputs = siren
    layer = DHQLinear(model.layers[1], rotate=False, weight_bits=4, act_bits=4)
    with calibrate(layer):
        layer(inputs[1])
    with pytest.raises(ValueError, match=r"rotate=True"):
        export_dhq_layer(layer, in_step=0.01, in_bits=8, out_step=0.01, out_bits=8, mult_bits=16,
                         shift_a_max=30, shift_o_max=40)


def test_exactness_flags_a_possible_tie():
    """A shift too small for the input range makes ties possible, and the condition says so."""
    e = DHQIntegerLayer(weights=np.zeros((2, 4), dtype=np.int64), bias=np.zeros(2, dtype=np.int64), n=4,
                        in_bits=8, act_bits=4, weight_bits=4, out_bits=8, mult_a=3, shift_a=5, mult_o=1,
                        shift_o=0, in_step=1.0, act_step=1.0, weight_step=1.0, out_step=1.0)
    assert exactness(e)["act_tie_free"] is False
    assert exactness(dataclasses.replace(e, shift_a=11))["act_tie_free"] is True


@pytest.mark.parametrize("ratio, mult_bits, shift_max, expected", [
    (0.1, 16, 40, (52429, 19)),      # 0.1 * 2^19 = 52428.8 -> 52429 (odd, kept)
    (3.0, 4, 10, (3, 0)),            # 3 * 2^2 = 12 fits 4 bits, then canonical: 3 / 2^0
    (1 / 3, 8, 31, (171, 9)),        # 2^9 / 3 = 170.67 -> 171
    (0.1, 16, 10, (51, 9)),          # shift capped at 10: round(102.4) = 102 -> 51 / 2^9
])
def test_dyadic_multiplier(ratio, mult_bits, shift_max, expected):
    m, s = dyadic_multiplier(ratio, mult_bits=mult_bits, shift_max=shift_max)
    assert (m, s) == expected
    assert m < 2**mult_bits and s <= shift_max
    if s < shift_max and m >= 2 ** (mult_bits - 1):
        assert abs(m / 2**s / ratio - 1) <= 2.0**-mult_bits


@pytest.mark.parametrize("ratio, message", [
    (0.0, r"finite number > 0, not 0\.0"),
    (math.inf, r"not inf"),
    (40.0, r"scale ratio 40\.0 needs a multiplier above 15"),
    (1e-9, r"scale ratio 1e-09 rounds to a zero multiplier"),
])
def test_dyadic_multiplier_errors(ratio, message):
    with pytest.raises(ValueError, match=message):
        dyadic_multiplier(ratio, mult_bits=4, shift_max=8)


# --- per-channel weight steps: per-row output multipliers (HadamardParams.per_row_scales) ----------------
def _rows_params():
    params = load_config(CONFIGS / "had-inr.yaml")["hadamard"]
    return HadamardParams(**{**params.to_dict(), "per_row_scales": True})


def _export_per_channel(siren, act_bits, weight_bits, *, out_bits=8):
    model, inputs = siren
    params = _rows_params()
    layer = DHQLinear(model.layers[1], rotate=True, weight_bits=weight_bits, act_bits=act_bits, name="l1",
                      per_channel=True)
    x = inputs[1]
    with calibrate(layer):
        z = layer(x)
    out_step = 2 * float(z.detach().abs().max()) / (2**out_bits - 1)
    exported = export_dhq_layer(layer, in_step=1 / (2 ** (IN_BITS - 1) - 1), in_bits=IN_BITS, out_step=out_step,
                                out_bits=out_bits, mult_bits=params.mult_bits, shift_a_max=params.shift_a_max,
                                shift_o_max=params.shift_o_max, per_row_scales=params.per_row_scales)
    return params, layer, exported, exported.input_codes(x), out_step


@pytest.mark.parametrize("act_bits, weight_bits", [(4, 4), (3, 6), (8, 8)])
def test_per_channel_export_equals_the_tlm_with_per_row_multipliers(siren, act_bits, weight_bits):
    params, layer, exported, x_codes, out_step = _export_per_channel(siren, act_bits, weight_bits)
    assert exported.per_row and exported.mult_o.shape == exported.weight_step.shape == (64,)
    conditions = exactness(exported, x_codes)
    assert all(conditions.values()), conditions

    cfg = params.check_config(HadamardConfig.from_dict(exported.config()))
    assert cfg.mult_o == 0  # the per-row engine ignores it
    result = HadamardTLM(params, cfg, exported.weights, exported.bias, exported.row_multipliers()).run(x_codes)
    hw_layer, out_quantizer = hardware_layer(layer, exported)
    assert out_quantizer.scale.shape == (64, 1)
    u, acc, y = fake_quant_integers(hw_layer, out_quantizer, exported, x_codes)
    np.testing.assert_array_equal(result.activations, u)
    np.testing.assert_array_equal(result.accumulators, acc)
    np.testing.assert_array_equal(result.outputs, y)
    # not trivial: the rows' steps and multipliers differ, and the codes use their range
    assert len(np.unique(exported.weight_step)) > 10 and len(np.unique(exported.mult_o)) > 10
    assert len(np.unique(y)) > 20 and np.abs(u).max() == 2 ** (act_bits - 1) - 1
    # one shared shift: the largest ratio keeps the full multiplier width, a row whose step is 2^k
    # times smaller loses k bits of it
    ratio = exported.weight_step / exported.weight_step.max()
    assert exported.mult_o.max() < 2**params.mult_bits
    rel = np.abs(exported.out_step / out_step - 1)
    assert np.all(rel <= 2.0**-params.mult_bits / ratio * (1 + 1e-9))
    # the per-tensor datapath with the same M_o for every row gives other outputs: the rows matter
    flat = HadamardConfig.from_dict({**exported.config(), "mult_o": int(np.median(exported.mult_o))})
    _, _, y_flat = reference_forward(params, flat, exported.weights, exported.bias, x_codes)
    assert (y_flat != y).any()


def test_per_channel_export_refuses_an_engine_without_per_row_multipliers(siren):
    model, inputs = siren
    layer = DHQLinear(model.layers[1], rotate=True, weight_bits=4, act_bits=4, per_channel=True)
    with calibrate(layer):
        layer(inputs[1])
    params = load_config(CONFIGS / "had-inr.yaml")["hadamard"]
    kw = dict(in_step=0.01, in_bits=8, out_step=0.01, out_bits=8, mult_bits=params.mult_bits,
              shift_a_max=params.shift_a_max, shift_o_max=params.shift_o_max)
    message = ("per-channel weight steps need a Hadamard datapath with per-row multipliers (hadamard.per_row_scales: "
               "true); had-inr has per_row_scales=False")
    with pytest.raises(ValueError, match=re.escape(message)):
        export_dhq_layer(layer, per_row_scales=params.per_row_scales, target="had-inr", **kw)
    with pytest.raises(ValueError, match=re.escape("the target datapath has per_row_scales=False")):
        export_dhq_layer(layer, **kw)


def test_per_tensor_layer_on_a_per_row_engine_repeats_its_multiplier(siren):
    params, layer, exported, x_codes = _export(siren, 4, 4)
    assert not exported.per_row
    rows = exported.row_multipliers()
    assert rows.dtype == np.int64 and rows.tolist() == [exported.mult_o] * 64
    cfg = HadamardConfig.from_dict(exported.config())
    plain = HadamardTLM(params, cfg, exported.weights, exported.bias).run(x_codes)
    per_row = HadamardTLM(_rows_params(), cfg, exported.weights, exported.bias, rows).run(x_codes)
    np.testing.assert_array_equal(plain.outputs, per_row.outputs)
    assert plain.out_cycles.tolist() == per_row.out_cycles.tolist()


def test_exactness_reduces_per_row_multipliers_to_lowest_terms():
    base = dict(weights=np.zeros((3, 4), dtype=np.int64), bias=np.zeros(3, dtype=np.int64), n=4, in_bits=8,
                act_bits=4, weight_bits=4, out_bits=8, mult_a=1, shift_a=0, in_step=1.0, act_step=1.0,
                weight_step=np.ones(3), out_step=np.ones(3))
    acc_max = 4 * 7 * 7  # 196 < 2^8
    e = DHQIntegerLayer(mult_o=np.array([4, 1, 0]), shift_o=10, **base)  # 4 / 2^10 = 1 / 2^8: 2^7 < 196
    assert exactness(e)["out_tie_free"] is False
    assert exactness(dataclasses.replace(e, mult_o=np.array([2, 1, 0])))["out_tie_free"] is True  # 1 / 2^9
    assert exactness(dataclasses.replace(e, mult_o=np.array([1024, 3, 0]), shift_o=8))["out_tie_free"] is False
    assert exactness(dataclasses.replace(e, mult_o=np.array([1024, 2048, 0])))["out_tie_free"] is True  # integers
    # given inputs, ties are counted row by row with each row's multiplier
    x = np.array([[1, 0, 0, 0]])  # t = (1, 1, 1, 1)
    w = np.zeros((3, 4), dtype=np.int64)
    w[0, 0] = 1  # acc = (1, 0, 0)
    e2 = dataclasses.replace(e, weights=w, mult_o=np.array([1, 3, 5]), shift_o=1)
    assert exactness(e2, x)["out_tie_free"] is False  # 1 * 1 / 2: a tie in row 0
    assert exactness(dataclasses.replace(e2, mult_o=np.array([2, 3, 5])), x)["out_tie_free"] is True


def test_dyadic_multipliers_share_the_shift_of_the_largest_ratio():
    for ratio in (0.1, 3.0, 1 / 3):  # one ratio: dyadic_multiplier's answer
        m, s = dyadic_multiplier(ratio, mult_bits=8, shift_max=31)
        assert dyadic_multipliers([ratio], mult_bits=8, shift_max=31) == ([m], s)
    mults, shift = dyadic_multipliers(np.array([0.1, 0.025, 0.1 / 3]), mult_bits=16, shift_max=40)
    assert shift == 19 and mults == [52429, round(0.025 * 2**19), round(0.1 / 3 * 2**19)]
    assert mults[1] < 2**14  # a ratio 4x smaller: two bits fewer
    mults, shift = dyadic_multipliers([0.5, 0.25], mult_bits=8, shift_max=20)
    assert (mults, shift) == ([2, 1], 2)  # halved together while all are even
    with pytest.raises(ValueError, match=re.escape("scale ratio [1] = 1e-09 rounds to a zero multiplier at the shared "
                                                   "shift 13 (mult_bits=4, set by the largest ratio 0.001)")):
        dyadic_multipliers([0.001, 1e-9], mult_bits=4, shift_max=20)
    with pytest.raises(ValueError, match=re.escape("scale ratio [2] must be a finite number > 0")):
        dyadic_multipliers([0.1, 0.2, -1.0], mult_bits=8, shift_max=20)
    with pytest.raises(ValueError, match="at least one scale ratio"):
        dyadic_multipliers([], mult_bits=8, shift_max=20)
