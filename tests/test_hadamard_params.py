import re

import pytest
import yaml

from hw.params import (
    ENGINES,
    ConfigError,
    HadamardConfig,
    HadamardParams,
    MlpEngineParams,
    load_config,
    save_config,
)
from tests.conftest import CONFIGS

HAD_PRESETS = sorted(CONFIGS.glob("had-*.yaml"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 96}, "HadamardParams.n must be a power of two in [2, 128], not 96"),
        ({"n": 256}, "HadamardParams.n must be an integer in [2, 128], not 256"),
        ({"n": 1}, "HadamardParams.n must be an integer in [2, 128], not 1"),
        ({"n": 0}, "HadamardParams.n must be an integer in [2, 128], not 0"),
        ({"n": -8}, "HadamardParams.n must be an integer in [2, 128], not -8"),
        ({"n": 64.0}, "HadamardParams.n must be an integer in [2, 128], not 64.0"),
        ({"n": True}, "HadamardParams.n must be an integer in [2, 128], not True"),
        ({"n": "64"}, "HadamardParams.n must be an integer in [2, 128], not '64'"),
        ({"out_size": 0}, "HadamardParams.out_size must be an integer in [1, 256], not 0"),
        ({"out_size": 257}, "HadamardParams.out_size must be an integer in [1, 256], not 257"),
        ({"in_bits": 1}, "HadamardParams.in_bits must be an integer in [2, 16], not 1"),
        ({"in_bits": 17}, "HadamardParams.in_bits must be an integer in [2, 16], not 17"),
        ({"weight_bits": 1}, "HadamardParams.weight_bits must be an integer in [2, 16], not 1"),
        ({"weight_bits": 32}, "HadamardParams.weight_bits must be an integer in [2, 16], not 32"),
        ({"max_act_bits": 1}, "HadamardParams.max_act_bits must be an integer in [2, 16], not 1"),
        ({"max_act_bits": 17}, "HadamardParams.max_act_bits must be an integer in [2, 16], not 17"),
        ({"out_bits": 0}, "HadamardParams.out_bits must be an integer in [2, 16], not 0"),
        ({"out_bits": 24}, "HadamardParams.out_bits must be an integer in [2, 16], not 24"),
        ({"out_bits": 8.5}, "HadamardParams.out_bits must be an integer in [2, 16], not 8.5"),
        ({"rows": 0}, "HadamardParams.rows must be an integer in [1, 64], not 0"),
        ({"rows": 65}, "HadamardParams.rows must be an integer in [1, 64], not 65"),
        ({"cols": 12}, "HadamardParams.cols must be a power of two in [1, 64] (n), not 12"),
        ({"cols": 128}, "HadamardParams.cols must be a power of two in [1, 64] (n), not 128"),
        ({"n": 8, "cols": 16}, "HadamardParams.cols must be a power of two in [1, 8] (n), not 16"),
        ({"cols": 0}, "HadamardParams.cols must be an integer in [1, 128], not 0"),
        ({"cols": False}, "HadamardParams.cols must be an integer in [1, 128], not False"),
        ({"mult_bits": 0}, "HadamardParams.mult_bits must be an integer in [1, 20], not 0"),
        ({"mult_bits": 21}, "HadamardParams.mult_bits must be an integer in [1, 20], not 21"),
        ({"clock_mhz": 0}, "HadamardParams.clock_mhz must be an integer in [1, 2000], not 0"),
    ],
)
def test_invalid_params_name_field_and_value(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        HadamardParams(**kwargs)


def test_fields_are_validated_in_order_keyword_only_and_frozen():
    with pytest.raises(ConfigError, match=re.escape("HadamardParams.n must be")):
        HadamardParams(n=0, in_bits=0)  # both wrong: the first in declaration order is reported
    with pytest.raises(ConfigError, match="Unexpected positional argument"):  # keyword-only
        HadamardParams(64)  # noqa
    p = HadamardParams()
    with pytest.raises(AttributeError):
        p.n = 32
    for n in (2, 4, 8, 16, 32, 64, 128):
        assert HadamardParams(n=n, cols=1).log2_n == n.bit_length() - 1
    assert HadamardParams(n=2, cols=2).col_tiles == 1 and HadamardParams(n=128, cols=1).col_tiles == 128


def test_derived_widths_follow_their_formulas():
    p = HadamardParams(n=8, out_size=5, in_bits=6, weight_bits=4, max_act_bits=5, out_bits=6, rows=3, cols=4,
                       mult_bits=10)
    assert p.log2_n == 3 and p.t_bits == 6 + 3
    assert p.prod_a_bits == 9 + 10 and p.shift_a_max == 18
    assert (p.row_tiles, p.col_tiles) == (2, 2)  # ceil(5 / 3), 8 / 4
    assert p.sum_bits == 4 + 2
    assert p.dot_bits == 5 + 4 - 1 + 3 and p.bias_bits == p.dot_bits and p.acc_bits == p.dot_bits + 1
    assert p.prod_o_bits == p.acc_bits + 10 and p.shift_o_max == p.prod_o_bits - 1
    assert p.weight_word_bits == 3 * 4 * 4 and p.weight_depth == 2 * 2
    assert p.front_cycles == 3 + 3
    assert p.front_depth == 1  # T_min = 2 * 2 * 2 = 8 >= F = 6
    # one column tile, one row tile: T_min = 2 < F = 6, so three vectors wait in the front end
    assert HadamardParams(n=8, out_size=5, rows=5, cols=8).front_depth == 3
    assert HadamardParams(n=128, out_size=4, rows=4, cols=128).front_depth == 5  # F = 10
    assert HadamardParams(clock_mhz=250).cycles_to_ms(250_000) == pytest.approx(1.0)


@pytest.mark.parametrize("n, in_bits, wb, ab", [(2, 2, 2, 2), (8, 6, 4, 5), (64, 8, 8, 8), (128, 16, 16, 16)])
def test_widths_hold_the_extremes_and_no_fewer_bits_would(n, in_bits, wb, ab):
    p = HadamardParams(n=n, in_bits=in_bits, weight_bits=wb, max_act_bits=ab, cols=1, mult_bits=20)
    k = p.log2_n
    # t_0 of the all-minimum vector is -n 2^(in_bits-1): exactly the most negative t_bits value
    assert -n * (1 << (in_bits - 1)) == -(1 << (p.t_bits - 1))
    assert n * ((1 << (in_bits - 1)) - 1) < 1 << (p.t_bits - 1)
    # the largest dot product magnitude (narrow ranges) fits dot_bits, and needs all but at most one
    dot = n * ((1 << (ab - 1)) - 1) * ((1 << (wb - 1)) - 1)
    assert dot < 1 << (p.dot_bits - 1) and (dot >= 1 << (p.dot_bits - 3) or k + ab + wb <= 6)
    # dot + bias within the accumulator; acc * M_o and its rounding inside int64
    assert dot + (1 << (p.bias_bits - 1)) <= (1 << (p.acc_bits - 1))
    assert (1 << (p.acc_bits - 1)) * ((1 << p.mult_bits) - 1) + (1 << p.shift_o_max) < 1 << 62


def test_config_fields_hold_every_legal_value():
    p = HadamardParams(n=128, max_act_bits=16, mult_bits=13)
    widths = dict(p.config_fields)
    assert list(widths) == ["act_bits", "mult_a", "shift_a", "mult_o", "shift_o"]
    assert 16 < 1 << widths["act_bits"] and widths["mult_a"] == widths["mult_o"] == 13
    assert p.shift_a_max < 1 << widths["shift_a"] and p.shift_o_max < 1 << widths["shift_o"]


@pytest.mark.parametrize(
    "cfg, message",
    [
        (HadamardConfig(act_bits=1), "HadamardConfig.act_bits must be an integer in [2, 5], not 1"),
        (HadamardConfig(act_bits=6), "HadamardConfig.act_bits must be an integer in [2, 5], not 6"),
        (HadamardConfig(act_bits=4, mult_a=1024), "HadamardConfig.mult_a must be an integer in [0, 1023], not 1024"),
        (HadamardConfig(act_bits=4, shift_a=19), "HadamardConfig.shift_a must be an integer in [0, 18], not 19"),
        (HadamardConfig(act_bits=4, mult_o=5000), "HadamardConfig.mult_o must be an integer in [0, 1023], not 5000"),
        (HadamardConfig(act_bits=4, shift_o=22), "HadamardConfig.shift_o must be an integer in [0, 21], not 22"),
        ({"act_bits": 4}, "cfg must be a HadamardConfig, not {'act_bits': 4}"),
    ],
)
def test_run_time_config_is_checked_against_the_params(cfg, message):
    p = HadamardParams(n=8, out_size=5, in_bits=6, weight_bits=4, max_act_bits=5, out_bits=6, rows=3, cols=4,
                       mult_bits=10)
    assert (p.shift_a_max, p.shift_o_max) == (18, 21)  # t 9 + 10 bits, acc 12 + 10 bits
    with pytest.raises(ConfigError, match=re.escape(message)):
        p.check_config(cfg)


def test_config_types_dict_round_trip_and_unknown_key():
    cfg = HadamardConfig(act_bits=4, mult_a=3, shift_a=2, mult_o=100, shift_o=7)
    assert HadamardParams().check_config(cfg) is cfg
    assert HadamardConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=re.escape("HadamardConfig.shift_a must be an integer >= 0, not -1")):
        HadamardConfig(act_bits=4, shift_a=-1)
    with pytest.raises(ConfigError, match=re.escape("HadamardConfig.mult_o must be an integer >= 0, not 1.5")):
        HadamardConfig(act_bits=4, mult_o=1.5)
    with pytest.raises(ConfigError,
                       match=re.escape("HadamardConfig.act_bits must be an integer >= 0, not True")):
        HadamardConfig(act_bits=True)
    with pytest.raises(ConfigError, match=re.escape("unknown key 'bits' in cfg (allowed: act_bits, mult_a, shift_a, ")):
        HadamardConfig.from_dict({"bits": 4})


def test_registered_and_yaml_round_trip(tmp_path):
    assert ENGINES["hadamard"] is HadamardParams
    p = HadamardParams(n=16, out_size=7, in_bits=9, weight_bits=5, max_act_bits=6, out_bits=10, rows=3, cols=4,
                       mult_bits=12, clock_mhz=150)
    path = tmp_path / "both.yaml"
    save_config(path, {"mlp_engine": MlpEngineParams(), "hadamard": p})
    assert load_config(path) == {"mlp_engine": MlpEngineParams(), "hadamard": p}
    assert yaml.safe_load(path.read_text())["hadamard"]["cols"] == 4
    assert HadamardParams.from_dict(p.to_dict()) == p


def test_bad_values_and_keys_in_file_are_named(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("hadamard:\n  n: 96\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: HadamardParams.n must be a power of two in \[2, 128\], not 96"):
        load_config(path)
    path.write_text("hadamard:\n  n: 64\n  in_bits: 40\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: HadamardParams.in_bits must be an integer in \[2, 16\], not 40"):
        load_config(path)
    path.write_text("hadamard:\n  n: 64\n  colums: 8\n")
    with pytest.raises(ConfigError, match=r"unknown key 'colums' in hadamard \(allowed: n, out_size, in_bits, "):
        load_config(path)


def test_presets_load_and_cover_required_cases():
    presets = {p.stem: load_config(p) for p in HAD_PRESETS}
    assert {"had-small", "had-inr", "had-wide"} <= presets.keys()
    assert all(list(s) == ["hadamard"] for s in presets.values())
    params = {name: s["hadamard"] for name, s in presets.items()}
    small, inr, wide = params["had-small"], params["had-inr"], params["had-wide"]
    assert small.n == 8 and small.out_size % 2 == 1 and small.out_size % small.rows  # partial row tile
    assert small.front_depth > 1  # short vectors: the activation FIFO holds several
    assert (inr.n, inr.out_size, inr.cols, inr.rows) == (64, 64, 16, 8)  # the hidden layer of a 64-wide SIREN
    assert wide.n == 128 and wide.in_bits >= 12 and wide.out_bits == 16 and wide.col_tiles > 1


# --- per-row output multipliers (per_row_scales) ------------------------------------------------------
def test_per_row_scales_is_a_bool_off_by_default_and_sizes_the_table():
    p = HadamardParams(n=16, out_size=7, rows=3, cols=8, mult_bits=10)
    assert p.per_row_scales is False and p.scale_bits == 0  # no table
    q = HadamardParams(n=16, out_size=7, rows=3, cols=8, mult_bits=10, per_row_scales=True)
    assert q.scale_word_bits == 3 * 10 and q.scale_bits == 3 * 3 * 10  # ceil(7 / 3) words of R multipliers
    assert HadamardParams(out_size=64, rows=8, mult_bits=16, per_row_scales=True).scale_bits == 64 * 16  # m * mult_bits
    # nothing else changes: widths, cycles' parameters and the configuration word
    skip = {"scale_bits"}
    for name in dir(HadamardParams):
        if isinstance(getattr(HadamardParams, name), property) and name not in skip:
            assert getattr(p, name) == getattr(q, name), name
    for bad in (1, "true", None):
        message = f"HadamardParams.per_row_scales must be a bool (true or false), not {bad!r}"
        with pytest.raises(ConfigError, match=re.escape(message)):
            HadamardParams(per_row_scales=bad)


def test_per_row_scales_round_trips_through_yaml_and_the_verilog_header(tmp_path):
    from hw.hadamard.params import verilog_header

    p = HadamardParams(n=16, out_size=7, rows=3, cols=8, mult_bits=10, per_row_scales=True)
    path = tmp_path / "rows.yaml"
    save_config(path, {"hadamard": p})
    assert load_config(path) == {"hadamard": p}
    assert yaml.safe_load(path.read_text())["hadamard"]["per_row_scales"] is True
    assert "per-row output multipliers M_o[r] (cfg mult_o unused): table 3 x 30 bits" in verilog_header(p)
    assert "per-row" not in verilog_header(HadamardParams())


def test_rows_preset_has_per_row_multipliers_over_several_row_tiles():
    rows = load_config(CONFIGS / "had-rows.yaml")["hadamard"]
    assert rows.per_row_scales
    assert rows.row_tiles > 1 and rows.out_size % rows.rows and rows.col_tiles > 1  # partial last row tile
    others = [load_config(p)["hadamard"] for p in HAD_PRESETS if p.stem != "had-rows"]
    assert others and not any(p.per_row_scales for p in others)
