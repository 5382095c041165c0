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


AXI_PRESETS = sorted(p for p in CONFIGS.glob("*.yaml") if "hash_encoder_axi" in load_config(p))


@pytest.mark.parametrize("config", AXI_PRESETS, ids=lambda p: p.stem)
def test_every_memory_preset_lints_clean(config, tmp_path):
    from hw.export import write_verilog as write_engine_verilog

    path = write_engine_verilog(load_config(config)["hash_encoder_axi"], tmp_path)
    clean, output = lint_verilog(path)
    assert clean, output


def test_memory_system_verilog_holds_no_tables():
    """The tables live in DRAM: growing T 256-fold changes only address and tag widths."""
    import dataclasses

    from hw.export import engine_verilog

    small = load_config(CONFIGS / "axi-miss.yaml")["hash_encoder_axi"]
    big = dataclasses.replace(small, log2_table_size=small.log2_table_size + 8)
    assert len(engine_verilog(big)) < 1.2 * len(engine_verilog(small))
    assert "axi__araddr" in engine_verilog(small)


def test_lint_reports_real_warnings(tmp_path):
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(input clk, input [3:0] a, output [3:0] y);\n  wire unused_w;\n  assign y = a;\nendmodule\n")
    clean, output = lint_verilog(bad)
    assert not clean and "UNUSEDSIGNAL" in output


def test_group_roms_are_continuous_assignments():
    """The per-group constants of a lane (resolution, dense, strides) must not be `always @*` case blocks:
    an event-driven 4-state simulator evaluates those only when the group register changes, which left
    the first point's level-0 (lanes: level-0/1) outputs X (issue 10, item 7)."""
    for name in ("test-small", "lanes"):
        text = hash_encoder_verilog(load_config(CONFIGS / f"{name}.yaml")["hash_encoder"])
        assert re.search(r"assign lane0_res = ", text), name
        assert not re.search(r"^\s+lane\d+_(res|dense|stride1|stride2) = ", text, re.M), name


@pytest.mark.skipif(__import__("shutil").which("iverilog") is None, reason="Icarus Verilog (4-state) not installed")
@pytest.mark.parametrize("name", ["test-small", "lanes"])
def test_four_state_simulation_has_no_x(name, tmp_path):
    """Icarus Verilog (4-state: X where nothing was assigned) runs the cocotb testbench: every payload of
    the first points must be 0/1 and match the TLM."""
    import json
    import os

    from cocotb_tools.runner import get_runner

    from tests.conftest import ROOT

    params = load_config(CONFIGS / f"{name}.yaml")["hash_encoder"]
    verilog = write_verilog(params, tmp_path)
    runner = get_runner("icarus")
    runner.build(sources=[verilog], hdl_toplevel="hash_encoder", build_dir=tmp_path / "build", timescale=("1ns", "1ps"))
    job = {"params": params.to_dict(), "points": 20, "seed": 1, "fault": None, "result": str(tmp_path / "result.json")}
    (tmp_path / "job.json").write_text(json.dumps(job))
    runner.test(test_module="sim.cosim.tb_hash_encoder", hdl_toplevel="hash_encoder", build_dir=tmp_path / "build",
                test_dir=tmp_path, timescale=("1ns", "1ps"),
                extra_env={"NERFHW_COSIM_JOB": str(tmp_path / "job.json"),
                           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    result = json.loads((tmp_path / "result.json").read_text())  # an X payload fails before writing it
    assert result["mismatches"] == 0 and result["transactions"] == 20


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.stem)
def test_size_estimate_is_calibrated(config):
    from hw.export import engine_verilog, verilog_size

    for params in load_config(config).values():
        ratio = verilog_size(params) / len(engine_verilog(params))
        assert 0.6 < ratio < 2.0, (config.stem, ratio)


def test_too_large_verilog_is_refused_before_generation(tmp_path, monkeypatch):
    from hw.config import ConfigError
    from hw.export import MAX_VERILOG_BYTES, verilog_size

    big = HashEncoderParams(levels=32, log2_table_size=24, features=8, feature_bits=16, n_min=16, n_max=4096)
    assert verilog_size(big) > MAX_VERILOG_BYTES == 512 << 20

    def no_generation(*args, **kwargs):
        raise AssertionError("generated anyway")

    monkeypatch.setattr("amaranth.back.verilog.convert", no_generation)
    with pytest.raises(ConfigError, match=r"hash_encoder with \{'levels': 32, .*\} would be about [\d,]+ MB of Verilog "
                                          r"\(limit 537 MB\)"):
        write_verilog(big, tmp_path)
    assert not list(tmp_path.iterdir())
