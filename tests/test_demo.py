"""``make demo`` tells the truth: it co-simulates the Verilog files it prints, and they are the engines of the
search's engines.yaml (or the stated smaller table) running the model's density and colour MLPs."""

import json
import re

import pytest

from flows.demo import _levels, simulated_engines
from hw.params import HashEncoderParams, MlpEngineParams, load_config
from nerf.train import load_checkpoint
from sim.mapping import mlp_shapes
from tests.conftest import quick_preset, train_quick

# N 4, 8, 16, 32: levels 0-1 dense with T = 2^10, only level 0 with the 2^8 the demo is told to simulate
QUICK = quick_preset(iterations=30, n_samples=24, log2_table_size=10, n_min=4, n_max=32, levels=4, batch_samples=2048)


def test_simulated_engines_keep_everything_but_a_too_large_table():
    enc = HashEncoderParams(levels=4, log2_table_size=10, n_min=4, n_max=32, lanes=2, feature_bits=6)
    engines = {"hash_encoder": enc, "mlp_engine": MlpEngineParams()}
    assert simulated_engines(engines, 10) == (engines, None)
    small, note = simulated_engines(engines, 8)
    assert small["mlp_engine"] is engines["mlp_engine"]
    assert small["hash_encoder"].to_dict() == {**enc.to_dict(), "log2_table_size": 8}
    assert note == ("hash encoder simulated with T = 2^8 entries per level instead of engines.yaml's 2^10 (same 4 "
                    "levels, N 4..32, 2 x 6-bit features, 16-bit coordinates, 2 lanes): dense levels 0 instead of "
                    "0-1, hashed levels 1-3 instead of 2-3")
    assert _levels([True, False, True, True, False], True) == "0, 2-3" and _levels([True], False) == "none"


@pytest.mark.cosim
def test_demo_prints_and_simulates_the_searched_engines(tmp_path, capsys):
    from flows.demo import demo

    runs = train_quick(tmp_path / "runs", QUICK)
    code = demo(runs_root=runs, build_root=tmp_path / "build", progress=False, preset="quick", train_preset=QUICK,
                downscale=4, compile=False, episodes=2, warmup=1, val_views=1, rays=1024, points=60, vectors=6,
                max_log2_table_size=8, compare_budget=None)  # the comparison has its own test (test_compare)
    out = capsys.readouterr().out
    assert code == 0, out
    summaries = [json.loads(p.read_text()) for p in sorted(runs.glob("cosim-demo-*/summary.json"))]
    assert len(summaries) == 3 and all(s["passed"] and s["mismatches"] == 0 for s in summaries)
    # the printed Verilog paths are exactly the simulated files
    printed = re.findall(r"^   Verilog: (\S+)$", out, flags=re.M)
    assert sorted(printed) == sorted({s["verilog"] for s in summaries})
    for s in summaries:
        assert f"({s['verilog']})" in out
    # ... and they are engines.yaml's engines: the default preset keeps the tables in DRAM, so the
    # encoder with external tables at the searched per-level bits, simulated at the model's size
    engines = load_config(runs / "search-builtin-demo" / "engines.yaml")
    assert "hash_encoder" not in engines
    enc = next(s for s in summaries if s["engine"] == "hash_encoder_axi")
    assert enc["params"] == engines["hash_encoder_axi"].to_dict()
    assert len(enc["params"]["level_bits"]) == 4 and "entries per level instead of" not in out
    summary = json.loads((runs / "search-builtin-demo" / "summary.json").read_text())
    assert len(summary["memory"]["policies"]["best"]["hit_rates"]) == 4 and "tables in DRAM:" in out
    mlp = [s for s in summaries if s["engine"] == "mlp_engine"]
    assert all(s["params"] == engines["mlp_engine"].to_dict() for s in mlp)
    # the MLP engine ran the model's density and colour MLPs
    arch = load_checkpoint(runs / "train-builtin-quick" / "checkpoint.pt")["arch"]
    # one phase each: the summary lists one shape per phase
    assert sorted(s["shapes"] for s in mlp) == sorted([v] for v in mlp_shapes(arch).values()) == [[[8, 64, 16]],
                                                                                                 [[31, 64, 64, 3]]]
