"""cocotb + Verilator co-simulation of the hash encoder against the TLM (builds C++; ~2 minutes)."""

import json

import pytest

from flows.cosim import run_cosim
from tests.conftest import CONFIGS, ROOT

BUILD = ROOT / "build" / "test-cosim"
POINTS = 2000
SETS = ["test-small", "lanes", "wide", "edge"]
PATTERNS = {  # (input idle gaps, output backpressure), crossed over the parameter sets
    "gaps+backpressure": (True, True),
    "gaps": (True, False),
    "backpressure": (False, True),
    "full-rate": (False, False),
}

pytestmark = pytest.mark.cosim


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("name", SETS)
def test_rtl_matches_tlm(name, pattern, tmp_path):
    idle, backpressure = PATTERNS[pattern]
    # each pattern its own random power-up state: four initial-state seeds per preset
    init_seed = 1 + list(PATTERNS).index(pattern)
    s = run_cosim(CONFIGS / f"{name}.yaml", points=POINTS, seed=11, init_seed=init_seed, idle=idle,
                  backpressure=backpressure, build_root=BUILD, runs_root=tmp_path)
    assert s["init_seed"] == init_seed
    assert s["mismatches"] == 0, s["mismatch_examples"]
    assert s["passed"]
    assert s["transactions"] == s["input_transactions"] == POINTS
    assert s["cycles_rtl"] == s["cycles_tlm"] > 0


@pytest.mark.parametrize("init_seed", [1, 2])
def test_default_preset_and_summary_file(init_seed, tmp_path):
    s = run_cosim(CONFIGS / "default.yaml", points=POINTS, seed=5, init_seed=init_seed, build_root=BUILD,
                  runs_root=tmp_path)
    summary = json.loads((tmp_path / "cosim-default" / "summary.json").read_text())
    assert summary == s
    assert {"engine", "config", "transactions", "mismatches", "cycles_rtl", "cycles_tlm"} <= summary.keys()
    assert summary["engine"] == "hash_encoder" and summary["config"] == "default"
    assert summary["mismatches"] == 0 and summary["transactions"] == POINTS
    assert (tmp_path / "cosim-default" / "config.yaml").read_text() == (CONFIGS / "default.yaml").read_text()


@pytest.mark.parametrize("fault, kind", [("cycle", "cycle"), ("bit", "payload")])
def test_scoreboard_catches_a_wrong_model(fault, kind, tmp_path):
    s = run_cosim(CONFIGS / "test-small.yaml", points=200, seed=2, fault=fault, build_root=BUILD,
                  runs_root=tmp_path)
    assert not s["passed"]
    assert s["mismatches"] == 1
    (m,) = s["mismatch_examples"]
    assert m["stream"] == "o" and m["kind"] == kind and m["index"] == 100


def test_waveform_on_request(tmp_path):
    s = run_cosim(CONFIGS / "edge.yaml", points=50, seed=1, waves=True, build_root=BUILD, runs_root=tmp_path)
    assert s["mismatches"] == 0
    vcd = tmp_path / "cosim-edge" / "dump.vcd"
    assert s["waves"] == str(vcd)
    head = vcd.read_text()[:20000]
    assert "$enddefinitions" in head and "o__valid" in head


def test_simulates_the_given_verilog_file(tmp_path):
    from hw.export import write_verilog
    from hw.params import load_config

    params = load_config(CONFIGS / "edge.yaml")["hash_encoder"]
    verilog = write_verilog(params, tmp_path / "given")
    s = run_cosim(CONFIGS / "edge.yaml", points=50, seed=1, init_seed=3, verilog=verilog, build_root=BUILD,
                  runs_root=tmp_path)
    assert s["verilog"] == str(verilog) and s["mismatches"] == 0 and s["passed"]
    assert not (BUILD / "verilog" / "edge" / "given").exists()


def test_refuses_verilog_of_other_parameters_before_building(tmp_path):
    from hw.config import ConfigError
    from hw.export import write_verilog
    from hw.params import load_config

    other = write_verilog(load_config(CONFIGS / "test-small.yaml")["hash_encoder"], tmp_path / "other")
    with pytest.raises(ConfigError, match=r"was generated with other hash_encoder parameters: levels=4 \(expected 1\), "
                                          r"log2_table_size=8 \(expected 4\)"):
        run_cosim(CONFIGS / "edge.yaml", points=50, verilog=other, build_root=tmp_path, runs_root=tmp_path)
    mlp = write_verilog(load_config(CONFIGS / "mlp-odd.yaml")["mlp_engine"], tmp_path / "mlp")
    with pytest.raises(ConfigError, match="is a mlp_engine engine, not hash_encoder"):
        run_cosim(CONFIGS / "edge.yaml", points=50, verilog=mlp, build_root=tmp_path, runs_root=tmp_path)
    plain = tmp_path / "plain.v"
    plain.write_text("module hash_encoder; endmodule\n")
    with pytest.raises(ConfigError, match="has no nerfhw parameter line"):
        run_cosim(CONFIGS / "edge.yaml", points=50, verilog=plain, build_root=tmp_path, runs_root=tmp_path)
    with pytest.raises(ConfigError, match="no such file"):
        run_cosim(CONFIGS / "edge.yaml", points=50, verilog=tmp_path / "absent.v", build_root=tmp_path,
                  runs_root=tmp_path)
    assert not (tmp_path / "cosim").exists()

