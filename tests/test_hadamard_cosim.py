"""The Hadamard datapath's RTL: cocotb + Verilator co-simulation against the TLM, Verilog, lint, flows (~4 minutes
the first time, most of it compiling six Verilator models, two of them with per-row output multipliers, ~75 s of
CPU; build/test-cosim keeps them for later runs)."""

import json
import re

import pytest

from flows.cli import _configs, main
from flows.cosim import run_cosim
from hw.export import hadamard_verilog
from hw.params import HadamardConfig, load_config
from sim.tlm.hadamard import stream_cycles, vector_cycles
from tests.conftest import CONFIGS, ROOT

BUILD = ROOT / "build" / "test-cosim"
HAD_PRESETS = sorted(CONFIGS.glob("had-*.yaml"))
RUNS = {  # preset -> workload (random configurations, traffic and backpressure)
    "had-small": {"vectors": 40, "phases": 4},
    "had-inr": {"vectors": 12, "phases": 3},
    "had-wide": {"vectors": 12, "phases": 3},
    "had-rows": {"vectors": 40, "phases": 4},  # per-row output multipliers (per_row_scales)
}

pytestmark = pytest.mark.cosim


def _params(name):
    return load_config(CONFIGS / f"{name}.yaml")["hadamard"]


@pytest.mark.parametrize("init_seed", [1, 2])  # random power-up state: no result may depend on it
@pytest.mark.parametrize("name", RUNS)
def test_rtl_matches_tlm(name, init_seed, tmp_path):
    work = RUNS[name]
    s = run_cosim(CONFIGS / f"{name}.yaml", seed=7, init_seed=init_seed, build_root=BUILD, runs_root=tmp_path,
                  **work)
    assert s["mismatches"] == 0, s["mismatch_examples"]
    assert s["passed"]
    assert s["transactions"] == s["input_transactions"] == work["vectors"]
    assert s["cycles_rtl"] == s["cycles_tlm"] > 0
    summary = json.loads((tmp_path / f"cosim-{name}" / "summary.json").read_text())
    assert summary == s and summary["engine"] == "hadamard" and summary["config"] == name
    params = _params(name)
    assert len(s["phases"]) == work["phases"]
    for phase in s["phases"]:
        assert phase["cycles_rtl"] == phase["cycles_tlm"] > 0
        cfg = params.check_config(HadamardConfig.from_dict(phase["cfg"]))
        assert phase["cycles_per_vector"] == vector_cycles(params, cfg.act_bits)
    assert len({phase["cfg"]["act_bits"] for phase in s["phases"]}) >= 2  # the run-time width changes
    assert sum(phase["ties_a"] for phase in s["phases"]) > 0  # round half to even met exact ties
    assert sum(phase["clamped_o"] for phase in s["phases"]) > 0  # and the output clamp
    if params.per_row_scales:  # random per-row M_o, the extremes 0 and 2^mult_bits - 1 among them
        top = (1 << params.mult_bits) - 1
        assert all("mult_o_rows" in phase for phase in s["phases"])
        assert any(phase["mult_o_rows"] == [0, top] for phase in s["phases"])
        assert sum(phase["ties_o"] for phase in s["phases"]) > 0


def test_full_rate_run_takes_the_closed_form_cycles(tmp_path):
    s = run_cosim(CONFIGS / "had-small.yaml", vectors=15, phases=3, seed=3, idle=False, backpressure=False,
                  build_root=BUILD, runs_root=tmp_path)
    assert s["mismatches"] == 0, s["mismatch_examples"]
    params = _params("had-small")
    for phase in s["phases"]:
        assert phase["cycles_rtl"] == stream_cycles(params, phase["cfg"]["act_bits"], phase["vectors"])


@pytest.mark.parametrize("idle, backpressure", [(True, True), (False, True), (False, False)])
def test_smallest_engine_at_full_rate_and_under_backpressure(idle, backpressure, tmp_path):
    """The corner the presets miss: one row tile and one column tile (T = a cycles, shorter than the
    5-cycle front end, so three vectors wait in it), 2-bit everything, a 2-bit multiplier."""
    config = tmp_path / "had-tiny.yaml"  # the build folder is named after the stem: cached across runs
    config.write_text("hadamard: {n: 4, out_size: 2, in_bits: 2, weight_bits: 2, max_act_bits: 3, out_bits: 2, "
                      "rows: 2, cols: 4, mult_bits: 2}\n")
    params = load_config(config)["hadamard"]
    assert (params.row_tiles, params.col_tiles, params.front_depth) == (1, 1, 3)
    s = run_cosim(config, vectors=48, phases=4, seed=5, idle=idle, backpressure=backpressure, build_root=BUILD,
                  runs_root=tmp_path)
    assert s["mismatches"] == 0, s["mismatch_examples"]
    assert s["passed"] and s["cycles_rtl"] == s["cycles_tlm"]
    if not idle and not backpressure:
        for phase in s["phases"]:  # II = T = a although the front end takes 5 cycles
            assert phase["cycles_rtl"] == stream_cycles(params, phase["cfg"]["act_bits"], 12) == \
                12 * phase["cfg"]["act_bits"] + 5 + 6


@pytest.mark.parametrize("idle, backpressure", [(True, True), (False, False)])
def test_per_row_multipliers_with_one_row_tile(idle, backpressure, tmp_path):
    """Per-row multipliers where the table has one word (one row tile: its address is constant) and the
    vector is shorter than the front end, at full rate and under random gaps and backpressure."""
    config = tmp_path / "had-tiny-rows.yaml"  # the build folder is named after the stem: cached across runs
    config.write_text("hadamard: {n: 4, out_size: 3, in_bits: 3, weight_bits: 3, max_act_bits: 3, out_bits: 4, "
                      "rows: 3, cols: 4, mult_bits: 4, per_row_scales: true}\n")
    params = load_config(config)["hadamard"]
    assert (params.row_tiles, params.col_tiles, params.scale_bits) == (1, 1, 12)
    s = run_cosim(config, vectors=36, phases=3, seed=9, idle=idle, backpressure=backpressure, build_root=BUILD,
                  runs_root=tmp_path)
    assert s["mismatches"] == 0, s["mismatch_examples"]
    assert s["passed"] and s["cycles_rtl"] == s["cycles_tlm"]
    if not idle and not backpressure:
        for phase in s["phases"]:
            assert phase["cycles_rtl"] == stream_cycles(params, phase["cfg"]["act_bits"], 12)


def test_per_row_verilog_has_the_scales_port_and_table():
    rows, plain = _params("had-rows"), _params("had-small")
    a = hadamard_verilog(rows)
    assert "per_row_scales=True" in a.splitlines()[0]
    assert re.search(rf"input \[{rows.rows * rows.mult_bits - 1}:0\] scales__data;", a)
    assert re.search(r"input \[1:0\] scales__row_tile;", a) and "input scales__en;" in a
    assert re.search(rf"reg \[{rows.scale_word_bits - 1}:0\] scale_mem \[{rows.row_tiles - 1}:0\];", a)
    assert "scales__" not in hadamard_verilog(plain) and "scale_mem" not in hadamard_verilog(plain)


@pytest.mark.parametrize("fault, kind", [("cycle", "cycle"), ("bit", "payload")])
def test_scoreboard_catches_a_wrong_model(fault, kind, tmp_path):
    s = run_cosim(CONFIGS / "had-small.yaml", vectors=12, phases=3, seed=2, fault=fault, build_root=BUILD,
                  runs_root=tmp_path)
    assert not s["passed"]
    assert s["mismatches"] == 1
    (m,) = s["mismatch_examples"]
    assert m["stream"] == "o" and m["kind"] == kind and m["index"] == 6  # the middle output (phase 1)


@pytest.mark.parametrize("config", HAD_PRESETS, ids=lambda p: p.stem)
def test_every_preset_lints_clean_through_the_cli(config, tmp_path, capsys):
    assert main(["--build", str(tmp_path), "lint", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"clean: {tmp_path / 'verilog' / config.stem / 'hadamard.v'}" in out


def test_make_flows_pick_up_the_presets():
    # `make verilog`, `make lint` and `make cosim` without CONFIG run every preset in flows/configs
    assert set(HAD_PRESETS) <= set(_configs(None)) and len(HAD_PRESETS) >= 3


def test_verilog_is_deterministic_and_has_documented_ports():
    p = _params("had-small")
    a, b = hadamard_verilog(p), hadamard_verilog(p)
    assert a == b
    assert a.startswith("// hadamard generated by nerfhw: n=8, out_size=5,") and "module hadamard(" in a
    assert "latency T + log2(n) + 8 = T + 11 cycles" in a
    assert re.search(rf"input \[{p.n * p.in_bits - 1}:0\] i__payload;", a)
    assert re.search(rf"output \[{p.out_size * p.out_bits - 1}:0\] o__payload;", a)
    assert re.search(rf"input \[{p.weight_word_bits - 1}:0\] weights__data;", a)
    assert re.search(rf"input \[{p.rows * p.bias_bits - 1}:0\] bias__data;", a)
    assert re.search(rf"input \[{sum(bits for _, bits in p.config_fields) - 1}:0\] cfg__data;", a)
    # the transform is built inline; the only submodules are the two queues (hw.common.StreamQueue)
    modules = re.findall(r"^module \\?([\w.]+)", a, re.M)
    assert sorted(modules) == ["hadamard", "hadamard.act_fifo", "hadamard.act_fifo.fifo", "hadamard.out_fifo",
                               "hadamard.out_fifo.fifo"]
    assert "src =" not in a  # emit_src=False: no host paths in the output


def test_cli_cosim_of_a_hadamard_preset(tmp_path, capsys):
    config = CONFIGS / "had-small.yaml"
    assert main(["--build", str(BUILD), "--runs", str(tmp_path), "cosim", "--config", str(config),
                 "--vectors", "9", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert "[PASS] hadamard had-small: 9 transactions, 0 mismatches" in out
    assert "n=8 m=5 R=3 C=8" in out and out.count("       phase ") == 3
    s = json.loads((tmp_path / "cosim-had-small" / "summary.json").read_text())
    assert s["vectors"] == 9 and s["phases"][0]["cfg"]["act_bits"] == 5 and "shapes" not in s
    assert main(["--build", str(BUILD), "--runs", str(tmp_path), "cosim", "--config", str(config),
                 "--vectors", "2"]) == 2
    assert "need at least one vector per phase, not 2 vectors for 3 phases" in capsys.readouterr().err
