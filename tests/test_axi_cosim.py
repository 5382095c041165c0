"""cocotb + Verilator co-simulation of the hash encoder with external tables against its TLM: random
points, input gaps, output backpressure and a DRAM-timed AXI responder with random delays."""

import pytest

from flows.cosim import run_cosim
from tests.conftest import CONFIGS, ROOT

BUILD = ROOT / "build" / "test-axi-cosim"
POINTS = 300  # `make cosim` runs 2000

pytestmark = pytest.mark.cosim


@pytest.mark.parametrize("name, seed", [("axi-miss", 3), ("axi-lanes", 4), ("axi-mixed", 5)])
def test_rtl_matches_tlm_with_misses_stalls_and_delays(name, seed, tmp_path):
    s = run_cosim(CONFIGS / f"{name}.yaml", points=POINTS, seed=seed, init_seed=seed, build_root=BUILD,
                  runs_root=tmp_path)
    assert s["mismatches"] == 0, s["mismatch_examples"]
    assert s["passed"] and not s["protocol_errors"]
    assert s["transactions"] == s["input_transactions"] == POINTS
    assert s["cycles_rtl"] == s["cycles_tlm"] > 0
    # the run exercised the memory system: misses, hits, AXI reads and stalls
    assert s["axi_requests"] == sum(s["misses"]) > 0 and sum(s["hits"]) > 0
    assert s["stall_cycles"] > 0
    if name == "axi-miss":
        assert s["hit_rate"] < 0.75


@pytest.mark.parametrize("fault, kind", [("cycle", "cycle"), ("bit", "payload")])
def test_scoreboard_catches_a_wrong_model(fault, kind, tmp_path):
    s = run_cosim(CONFIGS / "axi-miss.yaml", points=120, seed=2, fault=fault, build_root=BUILD, runs_root=tmp_path)
    assert not s["passed"]
    assert s["mismatches"] == 1
    (m,) = s["mismatch_examples"]
    assert m["stream"] == "o" and m["kind"] == kind and m["index"] == 60
