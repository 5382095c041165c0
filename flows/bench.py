"""``make bench``: simulated cycles per second of Verilator (under cocotb) and of the TLM.

Both simulate the same workload (points, tables, input gaps, backpressure). Verilator's figure is the
streaming phase of the cocotb testbench (drivers, monitors and scoreboard included, build and table
loading excluded); the TLM's is ``HashEncoderTLM.run`` (payloads and transfer cycles), best of 3.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from hw.registry import load_config
from common.atomic import atomic_write_text

__all__ = ["bench_hash_encoder", "bench_perf", "bench_memory", "bench_memory_frame", "ray_workload", "bench_bitexact", "bench_top"]


def _tlm_against_verilator(config, model, traffic, *, engine: str, points: int, seed: int, build_root, runs_root):
    """The TLM's best-of-3 time for ``traffic`` and the co-simulation of the same workload, checked equal.

    Returns ``(prediction, tlm_seconds, cosim summary, verilator cycles/s, TLM cycles/s)``.

    Raises:
        RuntimeError: the co-simulation disagrees with the TLM.
    """
    from flows.cosim import run_cosim

    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        predicted = model.run(traffic.coords, traffic.offer_cycles, traffic.ready)
        best = min(best, time.perf_counter() - t0)
    cosim = run_cosim(config, points=points, seed=seed, build_root=build_root, runs_root=runs_root,
                      run_name=f"bench/cosim-{engine}")
    if cosim["mismatches"] or cosim["cycles_rtl"] != predicted.cycles:
        raise RuntimeError(f"benchmark co-simulation disagrees with the TLM: {cosim['mismatch_examples'][:3]}")
    return predicted, best, cosim, cosim["cycles_rtl"] / cosim["sim_seconds"], predicted.cycles / best


def bench_hash_encoder(config, *, points: int = 10_000, seed: int = 1, build_root="build", runs_root="runs") -> dict:
    """Run the benchmark; writes and returns ``<runs_root>/bench/hash_encoder.json``."""
    from flows.cosim import config_name
    from sim.cosim.workload_hash_encoder import random_traffic
    from sim.tlm.hash_encoder import HashEncoderTLM

    params = load_config(config)["hash_encoder"]
    traffic = random_traffic(params, points, seed)
    predicted, best, cosim, vl_rate, tlm_rate = _tlm_against_verilator(
        config, HashEncoderTLM(params, traffic.tables), traffic, engine="hash_encoder", points=points, seed=seed,
        build_root=build_root, runs_root=runs_root)
    result = {
        "engine": "hash_encoder",
        "config": config_name(config),
        "points": points,
        "seed": seed,
        "cycles": predicted.cycles,
        "verilator": {"seconds": round(cosim["sim_seconds"], 4), "cycles_per_second": round(vl_rate, 1),
                      "build_seconds": cosim["build_seconds"]},
        "tlm": {"seconds": round(best, 4), "cycles_per_second": round(tlm_rate, 1)},
        "ratio_tlm_over_verilator": round(tlm_rate / vl_rate, 3),
        "machine": {"python": platform.python_version(), "processor": platform.machine()},
    }
    atomic_write_text(Path(runs_root) / "bench" / "hash_encoder.json", json.dumps(result, indent=2) + "\n")
    return result


def bench_perf(*, samples_per_ray: float = 16.0, runs_root="runs", repeats: int = 20) -> dict:
    """Seconds to evaluate ``sim.perf.frame_perf`` for one 800x800 frame (target: under one second).

    The model is lego's tiny architecture (16 levels, T = 2^15, N 16..256) on the on-chip hardware
    preset (``onchip``: tables on chip) under uniform-8; ``samples_per_ray`` x 640,000 rays (lego
    measures ~15.5). Writes ``<runs_root>/bench/perf.json`` with the best and mean of ``repeats`` evaluations.
    """
    from quant.policy import QuantPolicy
    from sim.perf import frame_perf, load_accelerator

    arch = {"levels": 16, "log2_table_size": 15, "features": 2, "n_min": 16, "n_max": 256, "hidden": 64,
            "geo_features": 15}
    # the on-chip preset: the closed-form model (tables in DRAM need a workload, sim.memory.frame)
    preset, policy = load_accelerator("onchip"), QuantPolicy.uniform(8, 16)
    samples = int(samples_per_ray * 800 * 800)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        perf = frame_perf(preset, arch, policy, samples=samples)
        times.append(time.perf_counter() - t0)
    result = {"model": "frame_perf", "frame": [800, 800], "samples": samples, "cycles": perf.cycles,
              "seconds_best": round(min(times), 6), "seconds_mean": round(sum(times) / len(times), 6),
              "target_seconds": 1.0, "meets_target": max(times) < 1.0,
              "machine": {"python": platform.python_version(), "processor": platform.machine()}}
    atomic_write_text(Path(runs_root) / "bench" / "perf.json", json.dumps(result, indent=2) + "\n")
    return result


def bench_memory(config="flows/configs/axi-lanes.yaml", *, points: int = 2000, seed: int = 1, build_root="build",
                 runs_root="runs") -> dict:
    """Verilator vs TLM simulated cycles per second of the hash encoder with its memory system (misses,
    AXI reads, random DRAM delays, backpressure); writes ``<runs_root>/bench/hash_encoder_axi.json``."""
    from flows.cosim import config_name
    from sim.cosim.workload_hash_encoder_axi import DEFAULT_CLOCK_MHZ, DEFAULT_DRAM, random_traffic
    from sim.memory.dram import DramTiming, load_dram
    from sim.tlm.hash_encoder_axi import HashEncoderAxiTLM

    params = load_config(config)["hash_encoder_axi"]
    traffic = random_traffic(params, points, seed)
    model = HashEncoderAxiTLM(params, traffic.tables, dram=DramTiming.of(load_dram(DEFAULT_DRAM), DEFAULT_CLOCK_MHZ,
                                                                         params.bus_bytes), delays=traffic.delays)
    predicted, best, cosim, vl_rate, tlm_rate = _tlm_against_verilator(
        config, model, traffic, engine="hash_encoder_axi", points=points, seed=seed, build_root=build_root,
        runs_root=runs_root)
    result = {"engine": "hash_encoder_axi", "config": config_name(config), "points": points, "seed": seed,
              "cycles": predicted.cycles, "axi_requests": len(predicted.requests),
              "stall_cycles": int(predicted.stall_cycles),
              "verilator": {"seconds": round(cosim["sim_seconds"], 4), "cycles_per_second": round(vl_rate, 1),
                            "build_seconds": cosim["build_seconds"]},
              "tlm": {"seconds": round(best, 4), "cycles_per_second": round(tlm_rate, 1)},
              "ratio_tlm_over_verilator": round(tlm_rate / vl_rate, 3),
              "machine": {"python": platform.python_version(), "processor": platform.machine()}}
    atomic_write_text(Path(runs_root) / "bench" / "hash_encoder_axi.json", json.dumps(result, indent=2) + "\n")
    return result


def ray_workload(width: int, height: int, samples_per_ray: int, coord_bits: int, seed: int = 0):
    """Synthetic frame samples, int64 (width x height x samples_per_ray, 3) fixed-point codes: a pinhole
    camera looking into the unit cube, sorted random depths along each ray, rays in scanline order,
    samples of a ray consecutive (the accelerator's ray-major order)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    u, v = np.meshgrid((np.arange(width) + 0.5) / width - 0.5, (np.arange(height) + 0.5) / height - 0.5)
    d = np.stack([u.ravel() * 0.8, v.ravel() * 0.8, np.ones(width * height)], 1)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    t = 0.35 + np.sort(rng.random((width * height, samples_per_ray)), axis=1) * 0.9
    pts = np.clip((np.array([0.5, 0.5, -0.3]) + t[..., None] * d[:, None, :]).reshape(-1, 3), 0, 1 - 1e-9)
    return np.floor(pts * (1 << coord_bits)).astype(np.int64)


def bench_memory_frame(*, samples_per_ray: int = 4, every: int = 4, runs_root="runs") -> dict:
    """Seconds per 800x800 frame of the memory-aware frame model (``sim.memory.frame``), exact and with
    the chunk-subset estimate (``every``), and the estimate's error against exact on the 800x800 frame
    and on a 400x400 view. Lego's tiny encoder (16 levels, T = 2^15, N 16..256, 4 lanes), the default
    cache (64-byte lines, 2 ways, 2 KB per level), LPDDR4 at 200 MHz, MLP engines of T = 64 and 96 cycles
    per sample. Target: under 5 s per frame. Writes ``<runs_root>/bench/memory_frame.json``."""
    from hw.hash_encoder_axi.params import HashEncoderAxiParams
    from sim.memory.dram import DramTiming, load_dram
    from sim.memory.frame import memory_frame_perf

    params = HashEncoderAxiParams(levels=16, log2_table_size=15, features=2, feature_bits=8, coord_bits=16,
                                  n_min=16, n_max=256, lanes=4)
    dram = DramTiming.of(load_dram("lpddr4"), 200, params.bus_bytes)
    mlp_t = {"density": 64, "color": 96}
    memory_frame_perf(params, ray_workload(8, 8, 2, 16), dram=dram, mlp_T=mlp_t)  # JIT compile outside timing
    views = {}
    for w in (800, 400):
        coords = ray_workload(w, w, samples_per_ray, params.coord_bits)
        t0 = time.perf_counter()
        exact = memory_frame_perf(params, coords, dram=dram, mlp_T=mlp_t)
        t1 = time.perf_counter()
        est = memory_frame_perf(params, coords, dram=dram, mlp_T=mlp_t, every=every)
        t2 = time.perf_counter()
        views[f"{w}x{w}"] = {
            "samples": len(coords), "exact_seconds": round(t1 - t0, 3), "estimate_seconds": round(t2 - t1, 3),
            "cycles_exact": exact.cycles, "cycles_estimate": est.cycles,
            "cycles_error_percent": round(100 * (est.cycles - exact.cycles) / exact.cycles, 4),
            "max_level_hit_rate_error": round(max(abs(a["hit_rate"] - b["hit_rate"])
                                                  for a, b in zip(est.to_dict()["levels"], exact.to_dict()["levels"])), 5),
            "bottleneck": exact.bottleneck}
    frame = views["800x800"]
    result = {"model": "memory_frame_perf", "frame": [800, 800], "samples_per_ray": samples_per_ray, "every": every,
              "views": views, "target_seconds": 5.0,
              "exact_meets_target": frame["exact_seconds"] < 5.0,
              "estimate_meets_target": frame["estimate_seconds"] < 5.0 and abs(frame["cycles_error_percent"]) < 2.0,
              "machine": {"python": platform.python_version(), "processor": platform.machine()}}
    atomic_write_text(Path(runs_root) / "bench" / "memory_frame.json", json.dumps(result, indent=2) + "\n")
    return result


def _random_int_model(policy_bits: int = 8, seed: int = 0):
    """An ``IntModel`` of the tiny architecture (16 levels, T = 2^15, N 16..256) with random tables and weights,
    calibrated on random points: what the bit-exact reference's speed depends on, without a trained scene."""
    import torch

    from nerf.model import InstantNGP
    from quant.int_export import export_int
    from quant.policy import QuantPolicy
    from quant.ptq import apply_policy
    from quant.quantizers import calibrate
    from sim.mapping import hardware_bits, load_accelerator, top_params

    torch.manual_seed(seed)
    model = InstantNGP(levels=16, log2_table_size=15, n_min=16, n_max=256)
    with torch.no_grad():
        model.encoding.table.uniform_(-1.0, 1.0)
    policy = QuantPolicy.uniform(policy_bits, 16)
    bits = hardware_bits(policy, model.arch)
    apply_policy(model, QuantPolicy(bits, 16))
    with torch.no_grad(), calibrate(model):
        d = torch.randn(4096, 3)
        model(torch.rand(4096, 3) * 3 - 1.5, d / d.norm(dim=-1, keepdim=True))
    return export_int(model, top_params(load_accelerator("default"), model.arch, policy), policy, bits)


def bench_bitexact(*, width: int = 100, samples_per_ray: int = 5, repeats: int = 3, runs_root="runs") -> dict:
    """Samples per second of the top's bit-exact reference (``sim.bitexact.render_int``) on a width x width view
    with ``samples_per_ray`` samples per ray (lego's 100x100 test views average 5.2 after empty-space skipping,
    ``make hwrender``), best of ``repeats``. Target: a 100x100 view under 10 s. Writes
    ``<runs_root>/bench/bitexact.json``."""
    import numpy as np

    from sim.bitexact import RayBatch, render_int
    from sim.tlm.hash_encoder import HashEncoderTLM

    m = _random_int_model()
    rays = width * width
    coords = ray_workload(width, width, samples_per_ray, m.top.encoder.coord_bits)
    rng = np.random.default_rng(0)
    d = rng.normal(size=(rays, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    from sim.tlm.sh_unit import to_direction_codes

    batch = RayBatch(coords=coords, counts=np.full(rays, samples_per_ray, np.int64),
                     dirs=to_direction_codes(d, m.top.sh.dir_bits), q=np.full(rays, 1 << 20, np.int64))
    encoder = HashEncoderTLM(m.top.encoder, m.tables)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        render_int(m, batch, encoder)
        best = min(best, time.perf_counter() - t0)
    result = {"model": "sim.bitexact.render_int", "view": [width, width], "samples": len(coords),
              "samples_per_ray": samples_per_ray, "seconds": round(best, 3),
              "samples_per_second": round(len(coords) / best, 1), "target_seconds": 10.0,
              "meets_target": best < 10.0,
              "machine": {"python": platform.python_version(), "processor": platform.machine()}}
    atomic_write_text(Path(runs_root) / "bench" / "bitexact.json", json.dumps(result, indent=2) + "\n")
    return result


def bench_top(*, seed: int = 1, build_root="build", runs_root="runs") -> dict:
    """Simulated cycles per second of the accelerator top: Verilator under cocotb (the streaming phase, drivers,
    monitors and scoreboard included) against ``sim.tlm.top.TopTLM`` (its prediction of every transfer, inside
    the same testbench), on ``flows.cosim.top_workload``'s whole rays with gaps and backpressure; checked equal.
    Writes ``<runs_root>/bench/top.json``.

    Raises:
        RuntimeError: the co-simulation disagrees with the TLM.
    """
    from flows.cosim import run_top_cosim, top_workload

    w = top_workload(Path(runs_root) / "bench" / "top-workload")
    s = run_top_cosim(w["model"], w["rays"], seed=seed, build_root=build_root, runs_root=runs_root,
                      run_name="bench/cosim-top")
    if s["mismatches"] or s["cycles_rtl"] != s["cycles_tlm"]:
        raise RuntimeError(f"benchmark co-simulation of the top disagrees with TopTLM: {s['mismatch_examples'][:3]}")
    vl, tlm = s["cycles_rtl"] / s["sim_seconds"], s["cycles_tlm"] / s["tlm_seconds"]
    result = {"engine": "accelerator_top", "rays": s["rays"], "samples": s["samples"], "cycles": s["cycles_rtl"],
              "verilator": {"seconds": s["sim_seconds"], "cycles_per_second": round(vl, 1)},
              "tlm": {"seconds": s["tlm_seconds"], "cycles_per_second": round(tlm, 1)},
              "tlm_over_verilator": round(tlm / vl, 2), "build_seconds": s["build_seconds"],
              "machine": {"python": platform.python_version(), "processor": platform.machine()}}
    atomic_write_text(Path(runs_root) / "bench" / "top.json", json.dumps(result, indent=2) + "\n")
    return result
