"""The compositing unit's RTL: cocotb + Verilator co-simulation against the TLM, Verilog, lint, flows (about a
minute the first time, most of it compiling two Verilator models; build/test-cosim keeps them for later runs)."""

import json
import re

import numpy as np
import pytest

from flows.cli import _configs, main
from flows.cosim import run_cosim, summary_lines
from hw.export import compositor_verilog
from hw.params import load_config
from sim.cosim.workload_compositor import random_compositor_workload
from sim.tlm.compositor import exp2_table, stream_cycles
from tests.conftest import CONFIGS, ROOT

BUILD = ROOT / "build" / "test-cosim"
COMP_PRESETS = sorted(CONFIGS.glob("comp-*.yaml"))
RUNS = {  # (preset, init_seed) -> workload: rays with 0..40 samples over three constant sets
    ("comp-small", 1): {"vectors": 90, "phases": 3},
    ("comp-small", 2): {"vectors": 60, "phases": 3},
    ("comp-default", 1): {"vectors": 60, "phases": 3},
}

pytestmark = pytest.mark.cosim


def _params(name):
    return load_config(CONFIGS / f"{name}.yaml")["compositor"]


@pytest.mark.parametrize("name, init_seed", RUNS)  # init_seed: random power-up state; no result may depend on it
def test_rtl_matches_tlm(name, init_seed, tmp_path):
    work = RUNS[name, init_seed]
    s = run_cosim(CONFIGS / f"{name}.yaml", seed=7, init_seed=init_seed, build_root=BUILD, runs_root=tmp_path,
                  **work)
    assert s["mismatches"] == 0, s["mismatch_examples"]
    assert s["passed"]
    assert s["transactions"] == s["input_transactions"] == work["vectors"]  # pixels, ray headers
    phases = s["phases"]
    assert s["sample_transactions"] == sum(ph["samples"] for ph in phases) > 10 * work["vectors"]
    assert s["cycles_rtl"] == s["cycles_tlm"] > 0
    summary = json.loads((tmp_path / f"cosim-{name}" / "summary.json").read_text())
    assert summary == s and summary["engine"] == "compositor" and summary["config"] == name
    assert len(phases) == work["phases"]
    for ph in phases:
        assert ph["cycles_rtl"] == ph["cycles_tlm"] > 0
        assert ph["early_rays"] < ph["rays"] - ph["zero_rays"]  # some rays with samples do not terminate early
    for event in ("zero_rays", "early_rays", "saturations", "clamped", "credit_stalls"):
        assert sum(ph[event] for ph in phases) > 0, event  # rays without samples, early termination, ...
    assert phases[1]["consts"]["depth_limit"] == _params(name).depth_max  # only saturation stops a ray there
    assert len({ph["consts"]["shift"] for ph in phases} | {ph["consts"]["mult_low"] for ph in phases}) > 2
    lines = summary_lines(s)  # what `make cosim` prints
    assert lines[0].startswith(f"[PASS] compositor {name}: {work['vectors']} transactions, 0 mismatches")
    assert sum(line.startswith("       phase ") for line in lines) == work["phases"]
    assert "terminated early" in lines[2] and "credit stalls" in lines[2]


def test_full_rate_run_takes_the_closed_form_cycles(tmp_path):
    """Every header and sample offered at once, the output always ready: one sample per cycle, one cycle per
    ray without samples, ``stream_cycles``."""
    params = _params("comp-small")
    s = run_cosim(CONFIGS / "comp-small.yaml", vectors=45, phases=3, seed=3, idle=False, backpressure=False,
                  build_root=BUILD, runs_root=tmp_path)
    assert s["mismatches"] == 0, s["mismatch_examples"]
    phases = random_compositor_workload(params, 45, 3, phases=3, idle=False, backpressure=False)
    for ph, got in zip(phases, s["phases"]):
        assert got["samples"] == len(ph.sigma) and got["credit_stalls"] == 0
        assert got["cycles_rtl"] == stream_cycles(params, ph.counts) == \
            int(np.maximum(ph.counts, 1).sum()) + params.PIPELINE_STAGES + 2


@pytest.mark.parametrize("fault, kind", [("cycle", "cycle"), ("bit", "payload")])
def test_scoreboard_catches_a_wrong_model(fault, kind, tmp_path):
    s = run_cosim(CONFIGS / "comp-small.yaml", vectors=12, phases=3, seed=2, fault=fault, build_root=BUILD,
                  runs_root=tmp_path)
    assert not s["passed"]
    assert s["mismatches"] == 1
    (m,) = s["mismatch_examples"]
    assert m["stream"] == "pixels" and m["kind"] == kind and m["index"] == 6  # the middle pixel (phase 1)


@pytest.mark.parametrize("config", COMP_PRESETS, ids=lambda p: p.stem)
def test_every_preset_lints_clean_through_the_cli(config, tmp_path, capsys):
    assert main(["--build", str(tmp_path), "lint", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"clean: {tmp_path / 'verilog' / config.stem / 'compositor.v'}" in out


def test_make_flows_pick_up_the_presets():
    # `make verilog`, `make lint` and `make cosim` without CONFIG run every preset in flows/configs
    assert set(COMP_PRESETS) <= set(_configs(None)) and len(COMP_PRESETS) == 2


def test_component_rejects_non_params():
    from hw.compositor import Compositor

    with pytest.raises(TypeError, match=re.escape("params must be a CompositorParams, not {'trans_bits': 10}")):
        Compositor(params={"trans_bits": 10})


def test_verilog_is_deterministic_and_has_documented_ports():
    p = _params("comp-small")
    a, b = compositor_verilog(p), compositor_verilog(p)
    assert a == b
    assert a.startswith("// compositor generated by nerfhw: sigma_bits=8, color_bits=8,") and "module compositor(" in a
    assert "latency 11 cycles from a ray's last sample to its pixel, 12 from the header" in a
    assert re.search(rf"input \[{p.q_bits + p.count_bits - 1}:0\] rays__payload;", a)
    assert re.search(rf"input \[{p.sigma_bits + 3 * p.color_bits - 1}:0\] samples__payload;", a)
    assert re.search(rf"output \[{3 * p.pixel_bits - 1}:0\] pixels__payload;", a)
    assert re.search(rf"input \[{sum(bits for _, bits in p.config_fields) - 1}:0\] cfg__data;", a)
    # the exp2 table is a ROM initialised with the reference's words
    assert re.search(rf"reg \[{p.trans_bits}:0\] exp2_rom \[{(1 << p.exp_index_bits) - 1}:0\];", a)
    words = [int(w, 16) for w in re.findall(rf"exp2_rom\[\d+\] = {p.trans_bits + 1}'h([0-9a-f]+);", a)]
    assert words == exp2_table(p).tolist()
    modules = re.findall(r"^module \\?([\w.]+)", a, re.M)
    assert sorted(modules) == ["compositor", "compositor.header_fifo", "compositor.header_fifo.fifo",
                               "compositor.out_fifo", "compositor.out_fifo.fifo"]
    assert "src =" not in a  # emit_src=False: no host paths in the output
