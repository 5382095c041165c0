"""The accelerator top's RTL: a tiny Instant-NGP trained here on the built-in scene, exported at a uniform 8-bit
policy, loaded through the top's write ports, and whole rays of a test view (host_rays) co-simulated with cocotb +
Verilator against TopTLM; the frame model against the RTL at full rate; lint and ports (about two minutes the
first time, most of it compiling the Verilator model; build/test-cosim/top keeps it for later runs)."""

import json
import re

import numpy as np
import pytest

from tests.conftest import ROOT

BUILD = ROOT / "build" / "test-cosim" / "top"

pytestmark = pytest.mark.cosim


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    """Train, quantize (PTQ at the top's widths, uniform 8 bits), export, read back; the rays of two image rows
    (``flows.cosim.top_workload``)."""
    from flows.cosim import top_workload

    return top_workload(tmp_path_factory.mktemp("top"))


def _cosim(workload, tmp_path, **kw):
    from flows.cosim import run_top_cosim

    return run_top_cosim(workload["model"], kw.pop("rays", workload["rays"]), build_root=BUILD, runs_root=tmp_path,
                         **kw)


def test_whole_rays_of_a_trained_model_match_the_model(workload, tmp_path):
    """Random idle gaps on both inputs, random pixel backpressure, a random power-up state: every ray, sample
    and pixel transfer (cycle and payload) as TopTLM predicts."""
    from sim.cosim.workload_top import top_traffic
    from sim.tlm.top import TopTLM

    rays = workload["batch"]
    s = _cosim(workload, tmp_path, seed=5, init_seed=3)
    assert s["mismatches"] == 0, s["mismatch_examples"]
    assert s["passed"]
    R, N = len(rays.counts), int(rays.counts.sum())
    assert s["rays"] == s["transactions"] == R == 50 and s["samples"] == N > 60
    assert s["input_transactions"] == R + N
    assert s["cycles_rtl"] == s["cycles_tlm"] > 0
    assert json.loads((tmp_path / "cosim-top" / "summary.json").read_text()) == s
    # the workload: rays without samples and with 1, 3 and 6; a trained field, so not every pixel is background
    assert set(rays.counts.tolist()) == {0, 1, 3, 6}
    tlm = TopTLM(workload["m"])
    T = max(sum(c) for c in tlm.issue.values())
    traffic = top_traffic(rays.counts, 5, cycles_per_sample=T)
    pred = tlm.run(rays, traffic.ray_offers, traffic.sample_offers, traffic.ready)
    background = pred.pixels[rays.counts == 0]
    assert (background == background[0]).all() and len(np.unique(pred.pixels, axis=0)) > 10
    # the gaps and the stalls both changed the timing
    assert pred.cycles > tlm.schedule(rays.counts)["cycles"]
    unstalled = tlm.schedule(rays.counts, traffic.ray_offers, traffic.sample_offers)
    assert (pred.pixel_cycles > unstalled["pixel_cycles"]).sum() > R // 4


def test_full_rate_run_takes_the_frame_models_cycles(workload, tmp_path):
    """Every ray and sample offered at cycle 0 and the pixels always ready: the RTL, TopTLM and the frame model
    (``sim.perf.frame_perf`` with the rays) agree on the cycle count."""
    from sim.perf import frame_perf, top_transfer_cycles

    rays, m = workload["batch"], workload["m"]
    s = _cosim(workload, tmp_path, idle=False, backpressure=False)
    assert s["mismatches"] == 0, s["mismatch_examples"]
    accel, policy = workload["accel"], workload["policy"]
    perf = frame_perf(accel, m.arch, policy, samples=int(rays.counts.sum()), rays=rays.counts)
    top = top_transfer_cycles(accel, m.arch, policy, rays.counts)
    assert top["exact"] and perf.renderer["exact"]
    assert s["cycles_rtl"] == s["cycles_tlm"] == perf.cycles == top["cycles"]
    # the engines' pipeline alone (frame_perf without rays) misses the renderer's cycles
    assert perf.renderer["added_cycles"] > 0
    assert frame_perf(accel, m.arch, policy, samples=int(rays.counts.sum())).cycles != perf.cycles


@pytest.mark.parametrize("fault, kind", [("cycle", "cycle"), ("bit", "payload")])
def test_scoreboard_catches_a_wrong_model(workload, fault, kind, tmp_path):
    from sim.bitexact import RayBatch
    from sim.cosim.workload_top import save_rays

    rays = workload["batch"]
    k = 5
    n = int(rays.counts[:k].sum())
    few = save_rays(tmp_path / "few.npz", RayBatch(rays.coords[:n], rays.counts[:k], rays.dirs[:k], rays.q[:k]))
    s = _cosim(workload, tmp_path, rays=few, seed=2, fault=fault)
    assert not s["passed"]
    assert s["mismatches"] == 1
    (mm,) = s["mismatch_examples"]
    assert mm["stream"] == "pixels" and mm["kind"] == kind and mm["index"] == k // 2


def test_verilog_lints_clean_and_has_the_documented_ports(workload):
    from flows.lint import lint_verilog

    path = BUILD / "verilog" / "top" / "accelerator_top.v"  # written by the co-simulations above
    if not path.exists():
        from hw.top.rtl import write_top_verilog

        path = write_top_verilog(workload["m"].top, path.parent, geo_features=15)
    clean, out = lint_verilog(path)
    assert clean, out
    text = path.read_text()
    p = workload["m"].top
    assert text.startswith("// accelerator_top generated by nerfhw (hw.top.rtl): {") and "src =" not in text
    assert re.search(rf"input \[{3 * p.sh.dir_bits + p.compositor.q_bits + p.compositor.count_bits - 1}:0\] "
                     r"rays__payload;", text)
    assert re.search(rf"input \[{3 * p.encoder.coord_bits - 1}:0\] samples__payload;", text)
    assert re.search(rf"output \[{3 * p.compositor.pixel_bits - 1}:0\] pixels__payload;", text)
    top_module = text[:text.index("endmodule")]
    ports = set(re.findall(r"^\s*input (?:\[\d+:0\] )?(\w+)__en;", top_module, re.M))
    assert ports == {"encoder_table", "requant_cfg", "requant_consts", "density_cfg", "density_weights",
                     "density_bias", "color_cfg", "color_weights", "color_bias", "sh_cfg", "sh_consts",
                     "density_act_cfg", "density_act_table", "color_act_cfg", "color_act_table", "compositor_cfg"}
