"""hw.fixed_mv.params: validation, derived widths and cycles, YAML round trip, presets."""

import re

import pytest

from hw.config import ConfigError
from hw.fixed_mv.params import FixedMvConfig, FixedMvParams, verilog_header
from hw.registry import ENGINES, load_config, save_config
from tests.conftest import CONFIGS


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 0}, "FixedMvParams.n must be an integer in [1, 128], not 0"),
    ({"n": 129}, "FixedMvParams.n must be an integer in [1, 128], not 129"),
    ({"n": 64.0}, "FixedMvParams.n must be an integer in [1, 128], not 64.0"),
    ({"out_size": 257}, "FixedMvParams.out_size must be an integer in [1, 256], not 257"),
    ({"data_bits": 7}, "FixedMvParams.data_bits must be an integer in [8, 32], not 7"),
    ({"data_bits": 33}, "FixedMvParams.data_bits must be an integer in [8, 32], not 33"),
    ({"out_bits": 1}, "FixedMvParams.out_bits must be an integer in [2, 32], not 1"),
    ({"rows": 65}, "FixedMvParams.rows must be an integer in [1, 64], not 65"),
    ({"cols": 0}, "FixedMvParams.cols must be an integer in [1, 128], not 0"),
    ({"n": 7, "cols": 8}, "FixedMvParams.cols must be an integer in [1, 7], not 8 (n)"),
    ({"clock_mhz": 0}, "FixedMvParams.clock_mhz must be an integer in [1, 2000], not 0"),
])
def test_invalid_params_name_field_and_value(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        FixedMvParams(**kwargs)


def test_derived_widths_and_cycles_follow_their_formulas():
    p = FixedMvParams(n=7, out_size=5, data_bits=8, out_bits=6, rows=3, cols=3)
    assert (p.row_tiles, p.col_tiles, p.padded_n) == (2, 3, 9)  # ceil(5 / 3), ceil(7 / 3)
    assert p.prod_bits == 16 and p.sum_bits == 16 + 2 and p.dot_bits == 16 + 3
    assert p.bias_bits == p.dot_bits and p.acc_bits == 8 * 2 + 3 + 1 == 20 and p.shift_o_max == 19
    assert p.weight_word_bits == 3 * 3 * 8 and p.weight_depth == 6 and p.vector_cycles == 6
    assert p.out_fifo_depth == 1 + 1 and p.config_fields == (("shift_o", 5),)
    inr32 = FixedMvParams(n=64, out_size=64, data_bits=32, out_bits=32, rows=8, cols=16)
    assert inr32.acc_bits == 64 + 6 + 1 and inr32.vector_cycles == 32 and inr32.out_fifo_depth == 2
    assert FixedMvParams(n=2, out_size=2, rows=2, cols=2).out_fifo_depth == 7  # T = 1: (D - 1) T >= 6
    assert FixedMvParams(n=1, out_size=1, rows=1, cols=1).dot_bits == 32  # n = 1: no growth
    assert p.cycles_to_ms(200_000) == pytest.approx(1.0)
    assert "= 6; latency T + 6 = 12 cycles" in verilog_header(p)


def test_config_is_checked_against_the_params():
    p = FixedMvParams(n=7, out_size=5, data_bits=8, out_bits=6, rows=3, cols=3)
    assert p.check_config(FixedMvConfig(shift_o=19)).shift_o == 19
    with pytest.raises(ConfigError, match=re.escape("FixedMvConfig.shift_o must be an integer in [0, 19], not 20")):
        p.check_config(FixedMvConfig(shift_o=20))
    with pytest.raises(ConfigError, match="cfg must be a FixedMvConfig"):
        p.check_config({"shift_o": 1})
    with pytest.raises(ConfigError, match="shift_o"):
        FixedMvConfig(shift_o=-1)


def test_presets_round_trip_and_match_the_hadamard_layer(tmp_path):
    assert ENGINES["fixed_mv"].params is FixedMvParams
    had = load_config(CONFIGS / "had-inr.yaml")["hadamard"]
    for bits in (16, 32):
        p = load_config(CONFIGS / f"fmv-inr{bits}.yaml")["fixed_mv"]
        assert (p.n, p.out_size, p.rows, p.cols, p.clock_mhz) == (had.n, had.out_size, had.rows, had.cols,
                                                                   had.clock_mhz)
        assert p.data_bits == p.out_bits == bits
        save_config(tmp_path / "x.yaml", {"fixed_mv": p})
        assert load_config(tmp_path / "x.yaml")["fixed_mv"] == p
    with pytest.raises(ConfigError, match="unknown key 'in_bits' in fixed_mv"):
        FixedMvParams.from_dict({"in_bits": 8})
