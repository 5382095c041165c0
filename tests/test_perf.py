"""sim/perf.py against the TLMs: the frame-level model predicts every colour-engine output cycle of the
three engines run back to back with 2-word FIFOs and backpressure, and, given the rays, every pixel of the
accelerator top (sim.tlm.top.TopTLM) at full rate."""

import dataclasses

import numpy as np
import pytest

from hw.params import ConfigError, MlpEngineParams, MlpLayer
from quant.policy import QuantPolicy
from sim.perf import (INTER_ENGINE_FIFO, AcceleratorPreset, encoder_params, frame_perf, load_accelerator, mlp_layers,
                      transfer_cycles)
from sim.tlm.hash_encoder import HashEncoderTLM
from sim.tlm.mlp_engine import MlpEngineTLM

SMALL_ARCH = {"levels": 4, "log2_table_size": 8, "features": 2, "n_min": 4, "n_max": 16, "hidden": 8,
              "geo_features": 3, "bbox": [[-1.0] * 3, [1.0] * 3]}


def _mlp_tlm(params, layers):
    """A TLM of one engine running ``layers`` (perf's dicts); timing depends on sizes and bits only."""
    objs = []
    for i, ly in enumerate(layers):
        last = i == len(layers) - 1
        objs.append(MlpLayer(in_size=ly["in_size"], out_size=ly["out_size"], weight_bits=ly["weight_bits"],
                             act_bits=ly["act_bits"], act_signed=i == 0, relu=not last,
                             out_bits=layers[i + 1]["act_bits"] if not last else 8, mult=1, shift=0))
    weights = [np.zeros((ly.out_size, ly.in_size), dtype=np.int64) for ly in objs]
    return MlpEngineTLM(params, objs, weights)


def _room(writes, reads, depth, horizon):
    """ready[t] of a FIFO of ``depth`` words: fewer than depth words held at the start of cycle t."""
    t = np.arange(horizon)
    held = np.searchsorted(np.sort(writes), t, side="left") - np.searchsorted(np.sort(reads), t, side="left")
    return held < depth


def chained_tlms(preset, arch, policy, n):
    """Encoder -> FIFO -> density -> FIFO -> colour, all TLMs, backpressure solved to a fixed point."""
    enc = HashEncoderTLM(encoder_params(preset, arch), np.zeros((arch["levels"], 1 << arch["log2_table_size"],
                                                                  arch["features"]), dtype=np.int64))
    layers = mlp_layers(policy, arch, preset.mlp)
    dens, col = _mlp_tlm(preset.mlp, layers["density"]), _mlp_tlm(preset.mlp, layers["color"])
    ready1 = ready2 = None
    for _ in range(10 * n + 10):
        _, e = enc.schedule(np.zeros(n, dtype=np.int64), ready1)
        a_d, o_d = dens.schedule(e + 1, ready2)
        a_c, o_c = col.schedule(o_d + 1)
        horizon = int(o_c.max()) + 2
        new1 = _room(e, a_d, INTER_ENGINE_FIFO, horizon)
        new2 = _room(o_d, a_c, INTER_ENGINE_FIFO, horizon)
        if ready1 is not None and np.array_equal(new1, ready1) and np.array_equal(new2, ready2):
            return {"encoder": e, "density": o_d, "color": o_c, "stalled": not (new1.all() and new2.all())}
        ready1, ready2 = new1, new2
    raise AssertionError("backpressure did not settle")


def _preset(lanes, rows, cols, bits=8):
    mlp = MlpEngineParams(rows=rows, cols=cols, max_in=32, max_out=32, max_layers=3, max_weight_bits=bits,
                          max_act_bits=bits, mult_bits=8, clock_mhz=100)
    return AcceleratorPreset(name="t", lanes=lanes, coord_bits=12, feature_bits=8, mlp=mlp)


POLICIES = {
    "uniform-4": QuantPolicy.uniform(4, 4),
    "uniform-2": QuantPolicy.uniform(2, 4),
    "color-heavy": QuantPolicy.uniform(2, 4).replace({"color.l1.weight": 8, "color.l1.act_in": 8}),
    "density-heavy": QuantPolicy.uniform(2, 4).replace({"density.l0.weight": 8, "enc.out": 8}),
}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("lanes,rows,cols", [(4, 4, 4), (1, 8, 8), (1, 32, 32), (2, 3, 5)])
def test_frame_model_equals_the_tlms_run_back_to_back(lanes, rows, cols, policy):
    preset, pol = _preset(lanes, rows, cols), POLICIES[policy]
    n = 24
    tlm = chained_tlms(preset, SMALL_ARCH, pol, n)
    model = transfer_cycles(preset, SMALL_ARCH, pol, n)
    np.testing.assert_array_equal(model["color"], tlm["color"])
    assert frame_perf(preset, SMALL_ARCH, pol, samples=n).cycles == int(tlm["color"][-1]) + 1


def test_backpressure_really_happens_in_the_chain():
    # density faster than colour: the density engine is stalled by the full FIFO, colour timing is unchanged
    preset, pol = _preset(4, 4, 4), POLICIES["color-heavy"]
    tlm = chained_tlms(preset, SMALL_ARCH, pol, 24)
    free = transfer_cycles(preset, SMALL_ARCH, pol, 24)
    assert tlm["stalled"] and not np.array_equal(tlm["density"], free["density"])
    np.testing.assert_array_equal(tlm["color"], free["color"])


def test_frame_perf_reports_utilization_latency_and_traffic():
    preset, pol = _preset(1, 8, 8), POLICIES["uniform-4"]
    r = frame_perf(preset, SMALL_ARCH, pol, samples=1000)
    t = {k: v["cycles_per_sample"] for k, v in r.engines.items()}
    assert r.bottleneck == max(t, key=t.get)
    assert r.engines[r.bottleneck]["utilization"] == pytest.approx(1000 * t[r.bottleneck] / r.cycles)
    assert r.latency_ms == pytest.approx(r.cycles / 100e3)
    assert r.memory["hash_table_reads"] == 1000 * 4 * 8 * 2 * 4 // 8
    wider = frame_perf(preset, SMALL_ARCH, pol.replace({"hash.level00": 8}), samples=1000)
    assert wider.memory["hash_table_reads"] > r.memory["hash_table_reads"] and wider.cycles == r.cycles
    assert frame_perf(preset, SMALL_ARCH, POLICIES["uniform-2"], samples=1000).cycles < r.cycles


def test_policies_the_engines_cannot_run_are_refused():
    preset = _preset(1, 8, 8, bits=8)
    with pytest.raises(ConfigError, match=r"policy color.l1.weight = 12 bits does not fit the engines' "
                                          r"max_weight_bits = 8 bits"):
        frame_perf(preset, SMALL_ARCH, QuantPolicy.uniform(4, 4).replace({"color.l1.weight": 12}), samples=10)
    with pytest.raises(ConfigError, match="full precision does not run on the integer engines"):
        frame_perf(preset, SMALL_ARCH, QuantPolicy.uniform(32, 4), samples=10)
    with pytest.raises(ConfigError, match=r"hash.level02 = 12 bits does not fit the engines' "
                                          r"hash_encoder.feature_bits = 8 bits"):
        frame_perf(preset, SMALL_ARCH, QuantPolicy.uniform(4, 4).replace({"hash.level02": 12}), samples=10)


def test_hardware_presets_load_and_bad_ones_are_named(tmp_path):
    preset = load_accelerator("default")
    assert preset.name == "default" and preset.clock_mhz == preset.mlp.clock_mhz
    with pytest.raises(ConfigError, match=r"unknown hardware preset 'nope' \(known: default, onchip, small\)"):
        load_accelerator("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("hash_encoder:\n  levels: 4\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: hash_encoder.levels is not a preset field"):
        load_accelerator(bad)
    bad.write_text("mlp_engine:\n  rows: 0\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: MlpEngineParams.rows must be an integer in \[1, 64\], not 0"):
        load_accelerator(bad)


# --- tables in DRAM (a preset with a memory section) ---------------------------------------------------
MEM_ARCH = {"levels": 4, "log2_table_size": 12, "features": 2, "n_min": 8, "n_max": 128, "hidden": 8,
            "geo_features": 3, "bbox": [[-1.0] * 3, [1.0] * 3]}


def _memory_preset(resident_bytes=0):
    from sim.mapping import MemoryPreset

    mlp = MlpEngineParams(rows=64, cols=32, max_in=32, max_out=32, max_layers=3, max_weight_bits=8, max_act_bits=8,
                          mult_bits=8, clock_mhz=200)
    return AcceleratorPreset(name="m", lanes=2, coord_bits=12, feature_bits=8, mlp=mlp,
                             memory=MemoryPreset(cache_bytes=512, ways=2, resident_bytes=resident_bytes))


def _workload(n=3000, seed=0):
    """Rays of a few samples each, marching through the unit cube (positions in [0, 1)^3, ray-major)."""
    rng = np.random.default_rng(seed)
    rays = n // 6
    start, step = rng.random((rays, 3)) * 0.8 + 0.1, (rng.random((rays, 3)) - 0.5) * 0.02
    pts = start[:, None, :] + np.arange(6)[None, :, None] * step[:, None, :]
    return np.clip(pts.reshape(-1, 3), 0, 0.999)


def test_memory_preset_without_a_workload_is_refused_not_answered_on_chip():
    with pytest.raises(ConfigError, match=r"preset 'm' keeps the hash tables in DRAM.*pass workload="):
        frame_perf(_memory_preset(), MEM_ARCH, QuantPolicy.uniform(8, 4), samples=100)
    with pytest.raises(ConfigError, match=r"keeps the hash tables on chip"):
        frame_perf(_preset(1, 8, 8), SMALL_ARCH, QuantPolicy.uniform(8, 4), samples=10, workload=_workload(12))


def test_table_bits_change_misses_and_cycles_with_tables_in_dram():
    preset, u = _memory_preset(), _workload()
    pol8 = QuantPolicy.uniform(2, 4).replace({f"hash.level{i:02d}": 8 for i in range(4)})  # fast MLPs
    pol4 = pol8.replace({f"hash.level{i:02d}": 4 for i in range(4)})
    p8 = frame_perf(preset, MEM_ARCH, pol8, samples=len(u), workload=u)
    p4 = frame_perf(preset, MEM_ARCH, pol4, samples=len(u), workload=u)
    m8, m4 = sum(lv["misses"] for lv in p8.levels), sum(lv["misses"] for lv in p4.levels)
    assert m4 < m8 and p4.dram["bytes"] < p8.dram["bytes"] and p4.cycles < p8.cycles
    assert p4.dram["stall_cycles"] < p8.dram["stall_cycles"] and p8.bottleneck == "memory"
    assert all(0 <= lv["hit_rate"] <= 1 for lv in p8.levels) and p8.workload["note"] == "exact on the workload"
    assert sum(p8.dram["row"].values()) == p8.dram["requests"] == m8 > 0
    # on chip the same policies cost the same cycles: table bits do not change latency there
    onchip = dataclasses.replace(preset, memory=None)
    assert frame_perf(onchip, MEM_ARCH, pol8, samples=len(u)).cycles == frame_perf(
        onchip, MEM_ARCH, pol4, samples=len(u)).cycles


def test_frame_perf_with_a_workload_is_the_exact_memory_frame_model():
    from sim.memory.frame import memory_frame_perf
    from sim.perf import mlp_cycles
    from sim.tlm.hash_encoder import to_fixed

    preset, u = _memory_preset(resident_bytes=4096), _workload(seed=1)
    pol = QuantPolicy.uniform(6, 4).replace({"hash.level00": 3, "hash.level02": 8, "density.l0.weight": 4})
    r = frame_perf(preset, MEM_ARCH, pol, samples=len(u), workload=u)
    enc = encoder_params(preset, MEM_ARCH, pol)
    assert enc.level_bits == (3, 6, 8, 6)
    m = memory_frame_perf(enc, to_fixed(u, 12), dram=preset.dram_timing(), mlp_T=mlp_cycles(preset, MEM_ARCH, pol))
    assert r.cycles == m.cycles and r.levels == m.levels and r.dram["bytes"] == m.dram_bytes
    assert r.dram["row"] == m.row and r.dram["stall_cycles"] == m.stall_cycles and r.bottleneck == m.bottleneck
    assert r.engines["encoder"]["stall_cycles"] == m.stall_cycles and r.levels[0]["resident"]
    # the workload standing for a frame twice its size: counts and cycles scaled, and the result says so
    r2 = frame_perf(preset, MEM_ARCH, pol, samples=2 * len(u), workload=u)
    assert r2.cycles == 2 * m.cycles and r2.dram["bytes"] == 2 * m.dram_bytes and r2.samples == 2 * len(u)
    assert "stand for the frame's" in r2.workload["note"] and r2.workload["scale"] == 2.0
    with pytest.raises(ValueError, match="more than the frame's samples"):
        frame_perf(preset, MEM_ARCH, pol, samples=len(u) - 1, workload=u)


# --- the accelerator top (hw.top): the frame model against TopTLM, full rate, pixels always ready ---------------
TOP_COUNTS = {  # samples per ray
    "plain": [3, 1, 4, 2], "leading-empty": [0, 0, 0, 2, 3], "middle-empty": [2, 0, 1, 0, 0, 3],
    "trailing-empty": [2, 3, 0, 0, 0, 0], "one-sample": [1], "all-empty": [0, 0, 0], "no-rays": [],
    "single-samples": [1] * 12, "mixed": [0, 1, 0, 2, 0, 0, 1, 3, 0],
}


def _top_tlm(preset, policy):
    from sim.mapping import top_params
    from sim.tlm.top import TopTLM

    top = top_params(preset, SMALL_ARCH, policy)
    return TopTLM.from_layers(top, mlp_layers(policy, SMALL_ARCH, preset.mlp), SMALL_ARCH["geo_features"])


@pytest.mark.parametrize("counts", TOP_COUNTS)
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("lanes,rows,cols", [(4, 4, 4), (1, 32, 32), (2, 3, 5)])
def test_top_frame_model_equals_the_top_tlm(lanes, rows, cols, policy, counts):
    """Every ray and sample offered at cycle 0, the pixels always ready: the frame model gives TopTLM's cycle
    of every colour-engine output, every compositor sample transfer and every pixel, and its total."""
    from sim.perf import top_transfer_cycles

    preset, pol, counts = _preset(lanes, rows, cols), POLICIES[policy], np.array(TOP_COUNTS[counts], np.int64)
    got = _top_tlm(preset, pol).schedule(counts)
    want = top_transfer_cycles(preset, SMALL_ARCH, pol, counts)
    assert want["exact"]
    for stage in ("color", "join"):
        np.testing.assert_array_equal(want[stage], got["stages"][stage])
    np.testing.assert_array_equal(want["pixels"], got["pixel_cycles"])
    assert want["cycles"] == got["cycles"]
    n = int(counts.sum())
    perf = frame_perf(preset, SMALL_ARCH, pol, samples=n, rays=counts)
    assert perf.cycles == got["cycles"] and perf.renderer["rays"] == len(counts)
    assert perf.renderer["empty_rays"] == int((counts == 0).sum()) and perf.to_dict()["renderer"] == perf.renderer
    if n:  # the renderer adds the colour activation, the compositor and the trailing rays without samples
        trailing = len(counts) - 1 - int(np.flatnonzero(counts)[-1])
        assert perf.renderer["added_cycles"] == 3 + trailing + 11


def test_top_frame_model_is_exact_or_a_lower_bound_on_random_frames():
    """Random frames: where the rays meet the frame model's conditions (``exact``) it is TopTLM's, every pixel;
    elsewhere (long runs of rays without samples) it is a lower bound, and some such frames are slower."""
    from sim.perf import top_transfer_cycles

    rng = np.random.default_rng(7)
    exact = slower = 0
    for trial in range(60):
        preset = _preset(*[(4, 4, 4), (1, 32, 32), (2, 3, 5)][trial % 3])
        pol = list(POLICIES.values())[(trial // 3) % 4]
        run = int(rng.choice([3, 12, 30]))
        counts = [0] * int(rng.integers(0, run + 1))
        for _ in range(int(rng.integers(1, 6))):
            counts += list(rng.integers(1, 4, size=int(rng.integers(1, 4)))) + [0] * int(rng.integers(0, run + 1))
        got = _top_tlm(preset, pol).schedule(np.array(counts))
        want = top_transfer_cycles(preset, SMALL_ARCH, pol, counts)
        if want["exact"]:
            exact += 1
            np.testing.assert_array_equal(want["pixels"], got["pixel_cycles"])
        else:
            assert got["cycles"] >= want["cycles"] and (got["pixel_cycles"] >= want["pixels"]).all()
            slower += got["cycles"] > want["cycles"]
    assert exact > 20 and slower > 5


def test_top_frame_model_refuses_rays_it_cannot_take(tmp_path):
    preset, pol = _preset(1, 8, 8), POLICIES["uniform-4"]
    with pytest.raises(ValueError, match="rays must be the frame's samples per ray, summing to samples = 5"):
        frame_perf(preset, SMALL_ARCH, pol, samples=5, rays=[1, 2])
    with pytest.raises(ConfigError, match="keeps the hash tables in DRAM; the accelerator top"):
        frame_perf(_memory_preset(), MEM_ARCH, QuantPolicy.uniform(8, 4), samples=3, rays=[3])
    assert "renderer" not in frame_perf(preset, SMALL_ARCH, pol, samples=3).to_dict()
