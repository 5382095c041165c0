import re

import pytest

from flows.lint import lint_verilog
from hw.export import hash_encoder_verilog, write_verilog
from hw.hash_encoder import HashEncoder
from hw.params import HashEncoderParams, load_config
from tests.conftest import CONFIGS

PRESETS = sorted(p for p in CONFIGS.glob("*.yaml") if "hash_encoder" in load_config(p))  # MLP presets: test_mlp_cosim


def test_component_rejects_non_params():
    with pytest.raises(TypeError, match=re.escape("params must be a HashEncoderParams, not {'levels': 4}")):
        HashEncoder(params={"levels": 4})
    with pytest.raises(TypeError):
        HashEncoder(HashEncoderParams())  # keyword-only: raises before the object is usable


def _silence(elaboratable):
    elaboratable._MustUse__silence = True  # built to inspect, never elaborated
    return elaboratable


def test_signature_follows_params():
    p = HashEncoderParams(levels=3, log2_table_size=7, features=4, feature_bits=12, coord_bits=8,
                          n_min=3, n_max=20, lanes=3)
    enc = _silence(HashEncoder(params=p))
    assert len(enc.i.payload.as_value()) == 3 * 8
    assert len(enc.o.payload.as_value()) == 3 * 4 * (12 + 8)
    assert len(enc.table.data) == 4 * 12 and len(enc.table.index) == 7


def test_verilog_is_deterministic_and_has_documented_ports():
    p = load_config(CONFIGS / "test-small.yaml")["hash_encoder"]
    a, b = hash_encoder_verilog(p), hash_encoder_verilog(p)
    assert a == b
    assert "module hash_encoder(" in a
    width = p.levels * p.features * p.out_bits
    assert re.search(rf"output \[{width - 1}:0\] o__payload;", a)
    assert re.search(rf"input \[{3 * p.coord_bits - 1}:0\] i__payload;", a)
    assert "src =" not in a  # emit_src=False: no host paths in the output


@pytest.mark.parametrize("config", PRESETS, ids=lambda p: p.stem)
def test_every_preset_lints_clean(config, tmp_path):
    params = load_config(config)["hash_encoder"]
    path = write_verilog(params, tmp_path)
    clean, output = lint_verilog(path)
    assert clean, output


def test_lint_reports_real_warnings(tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input clk, input [3:0] a, output [3:0] y);\n  wire unused_w;\n  assign y = a;\nendmodule\n")
    clean, output = lint_verilog(bad)
    assert not clean and "UNUSEDSIGNAL" in output
