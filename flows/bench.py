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

from hw.params import load_config
from nerf.atomic import atomic_write_text

__all__ = ["bench_hash_encoder"]


def bench_hash_encoder(config, *, points: int = 10_000, seed: int = 1, build_root="build", runs_root="runs") -> dict:
    """Run the benchmark; writes and returns ``<runs_root>/bench/hash_encoder.json``."""
    from flows.cosim import config_name, run_cosim
    from sim.cosim.traffic import random_traffic
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
