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

__all__ = ["bench_hash_encoder", "bench_perf"]


def bench_hash_encoder(config, *, points: int = 10_000, seed: int = 1, build_root="build", runs_root="runs") -> dict:
    """Run the benchmark; writes and returns ``<runs_root>/bench/hash_encoder.json``."""
    from flows.cosim import config_name, run_cosim
    from sim.cosim.workload_hash_encoder import random_traffic
    from sim.tlm.hash_encoder import HashEncoderTLM

    params = load_config(config)["hash_encoder"]
    traffic = random_traffic(params, points, seed)
    model = HashEncoderTLM(params, traffic.tables)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        predicted = model.run(traffic.coords, traffic.offer_cycles, traffic.ready)
        best = min(best, time.perf_counter() - t0)
    cosim = run_cosim(config, points=points, seed=seed, build_root=build_root, runs_root=runs_root,
                      run_name="bench/cosim-hash_encoder")
    if cosim["mismatches"] or cosim["cycles_rtl"] != predicted.cycles:
        raise RuntimeError(f"benchmark co-simulation disagrees with the TLM: {cosim['mismatch_examples'][:3]}")
    vl_rate = cosim["cycles_rtl"] / cosim["sim_seconds"]
    tlm_rate = predicted.cycles / best
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
