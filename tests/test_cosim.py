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
    s = run_cosim(CONFIGS / f"{name}.yaml", points=POINTS, seed=11, idle=idle, backpressure=backpressure,
                  build_root=BUILD, runs_root=tmp_path)
    assert s["mismatches"] == 0, s["mismatch_examples"]
    assert s["passed"]
    assert s["transactions"] == s["input_transactions"] == POINTS
    assert s["cycles_rtl"] == s["cycles_tlm"] > 0


def test_default_preset_and_summary_file(tmp_path):
    s = run_cosim(CONFIGS / "default.yaml", points=POINTS, seed=5, build_root=BUILD, runs_root=tmp_path)
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
