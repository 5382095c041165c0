import re

import pytest
import yaml

from hw.params import ENGINES, ConfigError, HashEncoderParams, MlpEngineParams, MlpLayer, load_config, save_config
from tests.conftest import CONFIGS

MLP_PRESETS = sorted(CONFIGS.glob("mlp-*.yaml"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rows": 0}, "MlpEngineParams.rows must be an integer in [1, 64], not 0"),
        ({"rows": 65}, "MlpEngineParams.rows must be an integer in [1, 64], not 65"),
        ({"rows": 8.0}, "MlpEngineParams.rows must be an integer in [1, 64], not 8.0"),
        ({"rows": True}, "MlpEngineParams.rows must be an integer in [1, 64], not True"),
        ({"cols": 0}, "MlpEngineParams.cols must be an integer in [1, 64], not 0"),
        ({"cols": "8"}, "MlpEngineParams.cols must be an integer in [1, 64], not '8'"),
        ({"max_in": 0}, "MlpEngineParams.max_in must be an integer in [1, 256], not 0"),
        ({"max_in": 257}, "MlpEngineParams.max_in must be an integer in [1, 256], not 257"),
        ({"max_out": 300}, "MlpEngineParams.max_out must be an integer in [1, 256], not 300"),
        ({"max_layers": 0}, "MlpEngineParams.max_layers must be an integer in [1, 8], not 0"),
        ({"max_layers": 9}, "MlpEngineParams.max_layers must be an integer in [1, 8], not 9"),
        ({"max_weight_bits": 1}, "MlpEngineParams.max_weight_bits must be an integer in [2, 16], not 1"),
        ({"max_weight_bits": 17}, "MlpEngineParams.max_weight_bits must be an integer in [2, 16], not 17"),
        ({"max_act_bits": 1}, "MlpEngineParams.max_act_bits must be an integer in [2, 16], not 1"),
        ({"mult_bits": 0}, "MlpEngineParams.mult_bits must be an integer in [1, 20], not 0"),
        ({"mult_bits": 21}, "MlpEngineParams.mult_bits must be an integer in [1, 20], not 21"),
        ({"clock_mhz": 0}, "MlpEngineParams.clock_mhz must be an integer in [1, 2000], not 0"),
        ({"clock_mhz": 187.5}, "MlpEngineParams.clock_mhz must be an integer in [1, 2000], not 187.5"),
    ],
)
def test_invalid_params_name_field_and_value(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        MlpEngineParams(**kwargs)


def test_fields_are_validated_in_order():
    # both wrong: the first field in declaration order is reported
    with pytest.raises(ConfigError, match=re.escape("MlpEngineParams.rows must be")):
        MlpEngineParams(rows=0, mult_bits=0)


def test_params_are_keyword_only_and_frozen():
    with pytest.raises(ConfigError, match="Unexpected positional argument"):  # keyword-only
        MlpEngineParams(8)  # noqa
    p = MlpEngineParams()
    with pytest.raises(AttributeError):
        p.rows = 3


def test_derived_widths_follow_their_formulas():
    p = MlpEngineParams(rows=3, cols=5, max_in=13, max_out=11, max_layers=3, max_weight_bits=4, max_act_bits=5,
                        mult_bits=10)
    assert (p.row_tiles, p.col_tiles) == (4, 3)  # ceil(11 / 3), ceil(13 / 5)
    assert p.dot_bits == 4 + 5 + 4  # ceil(log2 13) = 4
    assert p.bias_bits == p.dot_bits and p.acc_bits == p.dot_bits + 1
    assert p.prod_bits == p.acc_bits + 10 and p.shift_max == p.prod_bits - 1
    assert p.weight_depth == 3 * 4 * 3 * 4 and p.bias_depth == 3 * 4
    assert MlpEngineParams(max_in=1).dot_bits == 8 + 8  # one element: no carry bits
    assert MlpEngineParams(max_in=64).dot_bits == 8 + 8 + 6
    assert MlpEngineParams(max_in=65).dot_bits == 8 + 8 + 7
    assert MlpEngineParams(clock_mhz=250).cycles_to_ms(250_000) == pytest.approx(1.0)  # 250 MHz: 4 ns per cycle
    assert MlpEngineParams(clock_mhz=200).cycles_to_ms(200_000) == pytest.approx(1.0)


@pytest.mark.parametrize("wb, ab, n", [(2, 2, 1), (8, 8, 64), (16, 16, 256), (3, 7, 13)])
def test_accumulator_holds_the_extreme_sums(wb, ab, n):
    p = MlpEngineParams(max_in=n, max_weight_bits=wb, max_act_bits=ab, mult_bits=20)
    lo_w, hi_w = -(1 << (wb - 1)), (1 << (wb - 1)) - 1
    extremes = [n * w * a for w in (lo_w, hi_w) for a in (-(1 << (ab - 1)), (1 << ab) - 1)]
    dot_lo, dot_hi = -(1 << (p.dot_bits - 1)), (1 << (p.dot_bits - 1)) - 1
    assert all(dot_lo <= d <= dot_hi for d in extremes)
    assert min(extremes) < dot_lo // 2 or max(extremes) > dot_hi // 2  # one bit fewer would not do
    bias_lo, bias_hi = -(1 << (p.bias_bits - 1)), (1 << (p.bias_bits - 1)) - 1
    acc_lo, acc_hi = -(1 << (p.acc_bits - 1)), (1 << (p.acc_bits - 1)) - 1
    assert acc_lo <= min(extremes) + bias_lo and max(extremes) + bias_hi <= acc_hi
    # acc * M plus the rounding term stays inside int64 (the TLM's reference arithmetic)
    worst = (1 << (p.acc_bits - 1)) * ((1 << p.mult_bits) - 1) + (1 << (p.shift_max - 1))
    assert worst < 1 << 62


def test_config_fields_hold_every_legal_value():
    p = MlpEngineParams(max_in=64, max_out=200, max_act_bits=16, max_weight_bits=9, mult_bits=12)
    widths = dict(p.config_fields)
    assert list(widths) == ["in_size", "out_size", "weight_bits", "act_bits", "act_signed", "relu", "out_bits",
                            "bias", "mult", "shift"]
    assert 64 < 1 << widths["in_size"] and 200 < 1 << widths["out_size"] and 9 < 1 << widths["weight_bits"]
    assert 16 < 1 << widths["act_bits"] and 16 < 1 << widths["out_bits"]
    assert widths["mult"] == 12 and p.shift_max < 1 << widths["shift"]
    assert widths["act_signed"] == widths["relu"] == widths["bias"] == 1


def _layer(**kw):
    base = dict(in_size=8, out_size=4, weight_bits=4, act_bits=4, act_signed=False, relu=True, out_bits=4,
                bias=False, mult=100, shift=6)
    base.update(kw)
    return MlpLayer(**base)


@pytest.mark.parametrize(
    "layers, message",
    [
        ([], "layers must hold between 1 and 2 layers, not 0"),
        ([_layer(), _layer(in_size=4), _layer(in_size=4)], "layers must hold between 1 and 2 layers, not 3"),
        ("layer", "layers must be a list of MlpLayer, not 'layer'"),
        ([_layer(in_size=0)], "layers[0].in_size must be an integer in [1, 16], not 0"),
        ([_layer(in_size=17)], "layers[0].in_size must be an integer in [1, 16], not 17"),
        ([_layer(out_size=13)], "layers[0].out_size must be an integer in [1, 12], not 13"),
        ([_layer(weight_bits=7)], "layers[0].weight_bits must be an integer in [2, 6], not 7"),
        ([_layer(weight_bits=1)], "layers[0].weight_bits must be an integer in [2, 6], not 1"),
        ([_layer(act_bits=6)], "layers[0].act_bits must be an integer in [2, 5], not 6"),
        ([_layer(out_bits=6)], "layers[0].out_bits must be an integer in [2, 5], not 6"),
        ([_layer(mult=256)], "layers[0].mult must be an integer in [0, 255], not 256"),
        ([_layer(shift=24)], "layers[0].shift must be an integer in [0, 23], not 24"),
        ([_layer(), _layer(in_size=5)], "layers[1].in_size must equal layers[0].out_size (4), not 5"),
        ([_layer(), _layer(in_size=4, act_bits=3)], "layers[1].act_bits must equal layers[0].out_bits (4), not 3"),
        ([_layer(), _layer(in_size=4, act_signed=True)],
         "layers[1].act_signed must be False because layers[0].relu is True, not True"),
        ([_layer(relu=False), _layer(in_size=4)],
         "layers[1].act_signed must be True because layers[0].relu is False, not False"),
    ],
)
def test_layer_settings_are_checked_against_the_maxima(layers, message):
    p = MlpEngineParams(rows=2, cols=3, max_in=16, max_out=12, max_layers=2, max_weight_bits=6, max_act_bits=5,
                        mult_bits=8)
    assert p.shift_max == 23  # acc 6 + 5 + 4 + 1 = 16 bits, times an 8-bit M: 24 bits
    with pytest.raises(ConfigError, match=re.escape(message)):
        p.check_layers(layers)


def test_valid_layers_pass_and_come_back_as_a_tuple():
    p = MlpEngineParams(max_layers=3)
    layers = [_layer(), _layer(in_size=4, out_size=6), _layer(in_size=6, out_size=2, relu=False)]
    assert p.check_layers(layers) == tuple(layers)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"in_size": -1}, "MlpLayer.in_size must be an integer >= 0, not -1"),
        ({"mult": 2.5}, "MlpLayer.mult must be an integer >= 0, not 2.5"),
        ({"shift": True}, "MlpLayer.shift must be an integer >= 0, not True"),
        ({"relu": 1}, "MlpLayer.relu must be a bool (true or false), not 1"),
        ({"act_signed": "yes"}, "MlpLayer.act_signed must be a bool (true or false), not 'yes'"),
        ({"bias": None}, "MlpLayer.bias must be a bool (true or false), not None"),
    ],
)
def test_layer_types_are_checked(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _layer(**kwargs)


def test_layer_dict_round_trip_and_unknown_key():
    layer = _layer(bias=True, relu=False)
    assert MlpLayer.from_dict(layer.to_dict()) == layer
    assert layer.out_signed and not _layer().out_signed
    with pytest.raises(ConfigError, match=re.escape("unknown key 'stride' in layer (allowed: in_size, out_size, ")):
        MlpLayer.from_dict({**layer.to_dict(), "stride": 2})


def test_registered_and_yaml_round_trip(tmp_path):
    assert ENGINES["mlp_engine"] is MlpEngineParams
    p = MlpEngineParams(rows=3, cols=5, max_in=13, max_out=11, max_layers=3, max_weight_bits=4, max_act_bits=5,
                        mult_bits=10, clock_mhz=250)
    h = HashEncoderParams(levels=4, lanes=2)
    path = tmp_path / "both.yaml"
    save_config(path, {"hash_encoder": h, "mlp_engine": p})
    assert load_config(path) == {"hash_encoder": h, "mlp_engine": p}
    assert yaml.safe_load(path.read_text())["mlp_engine"]["cols"] == 5


def test_unknown_key_and_bad_value_in_file_are_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("mlp_engine:\n  rows: 4\n  colums: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'colums' in mlp_engine \(allowed: rows, cols, max_in, "):
        load_config(path)
    path.write_text("mlp_engine:\n  max_layers: 9\n")
    with pytest.raises(ConfigError,
                       match=r"bad.yaml: MlpEngineParams.max_layers must be an integer in \[1, 8\], not 9"):
        load_config(path)
    path.write_text("mlp_engine: 3\n")
    with pytest.raises(ConfigError, match=r"mlp_engine must be a mapping of parameters, not 3"):
        load_config(path)


def test_presets_load_and_cover_required_cases():
    presets = {p.stem: load_config(p) for p in MLP_PRESETS}
    assert len(presets) >= 3 and all(list(s) == ["mlp_engine"] for s in presets.values())
    params = {name: s["mlp_engine"] for name, s in presets.items()}
    nerf = params["mlp-nerf"]  # the density MLP 32 -> 64 -> 16 fits
    assert nerf.max_in >= 64 and nerf.max_out >= 64 and nerf.max_layers >= 2
    # R and C dividing neither size: partial row and column tiles
    assert any(p.max_out % p.rows and p.max_in % p.cols for p in params.values())
    assert any(p.max_weight_bits == 16 and p.max_act_bits == 16 for p in params.values())
