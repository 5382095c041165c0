"""``make memory``: what the tables in DRAM cost on a trained scene, exactly (``sim.memory.frame``).

For one validation view rendered at 800x800 (the frame; ``--size`` for another), the samples the
accelerator evaluates (after empty-space skipping and early ray termination, ray-major scanline order:
``nerf.render.sample_positions``) drive the exact memory-aware frame model under:

* several cache configurations (the hardware preset's memory section and variants of it), and
* two policies: uniform-8 and uniform-8 with every hash-table level at 4 bits (``--table-bits``).

Writes ``runs/memory-<scene>-<preset>/summary.json`` (per configuration and policy: cycles, ms, per-level
hits / misses / hit rate, DRAM bytes, row outcomes, stall share, bottleneck) and ``table.md``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from common.atomic import atomic_write_text

__all__ = ["CACHE_VARIANTS", "memory_report"]

#: Cache configurations compared, as changes to the preset's memory section ("preset": none).
CACHE_VARIANTS = {
    "preset": {},
    "direct-2KB-no-resident": {"cache_bytes": 2048, "ways": 1, "resident_bytes": 0},
    "4way-16KB": {"cache_bytes": 16384, "ways": 4},
    "preset-hbm2": {"dram": "hbm2"},
}


def memory_report(scene: str, preset: str = "tiny", *, hw: str = "default", size: int = 800, view: int = 0,
                  table_bits: int = 4, runs_root="runs") -> dict:
    """Run the comparison (module docstring) and write its summary; returns it.

    Raises:
        ConfigError: the hardware preset has no memory section; FileNotFoundError: no trained field.
    """
    import numpy as np

    from hw.config import ConfigError
    from flows.runs import open_field, scene_name
    from nerf.render import sample_positions
    from quant.policy import QuantPolicy
    from sim.perf import frame_perf, load_accelerator, workload_codes

    accel = load_accelerator(hw)
    if accel.memory is None:
        raise ConfigError(f"hardware preset {hw!r} keeps the tables on chip (no memory section): nothing to measure")
    trained = open_field(scene, preset, runs_root)
    arch = trained.model.arch
    out = Path(runs_root) / f"memory-{scene_name(scene)}-{preset}"
    val = trained.split("val")
    t0 = time.perf_counter()
    pts = sample_positions(trained.model, trained.occupancy, val, [view], n_samples=trained.n_samples,
                           height=size, width=size)
    codes = workload_codes(pts, accel.coord_bits)
    render_s = time.perf_counter() - t0
    levels = arch["levels"]
    base = QuantPolicy.uniform(8, levels)
    tables = dict(base)
    tables.update({f"hash.level{l:02d}": table_bits for l in range(levels)})
    policies = {"uniform-8": base, f"tables-{table_bits}": QuantPolicy(tables, levels)}
    rows = {}
    for name, change in CACHE_VARIANTS.items():
        hw_v = dataclasses.replace(accel, memory=dataclasses.replace(accel.memory, **change))
        rows[name] = {"memory": dataclasses.asdict(hw_v.memory), "policies": {}}
        for pname, policy in policies.items():
            t1 = time.perf_counter()
            perf = frame_perf(hw_v, arch, policy, samples=len(codes), workload=codes).to_dict()
            perf["model_seconds"] = round(time.perf_counter() - t1, 2)
            rows[name]["policies"][pname] = perf
    summary = {"scene": scene_name(scene), "preset": preset, "hw": hw, "view": view, "frame": [size, size],
               "samples": int(len(codes)), "samples_per_ray": round(len(codes) / size ** 2, 4),
               "render_seconds": round(render_s, 1), "order": "ray-major, rays in scanline order, samples near to far",
               "policies": {k: dict(v) for k, v in policies.items()}, "configs": rows}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    atomic_write_text(out / "table.md", _table(summary, table_bits))
    np.save(out / "workload.npy", codes)
    return summary


def _table(s: dict, table_bits: int) -> str:
    """Markdown: per configuration, uniform-8 against tables at ``table_bits``, and per-level hit rates."""
    t = f"tables-{table_bits}"
    lines = [f"{s['scene']} ({s['preset']}), view {s['view']} at {s['frame'][0]}x{s['frame'][1]}: {s['samples']:,} "
             f"samples ({s['samples_per_ray']} per ray), hardware {s['hw']}", "",
             f"| cache | policy | ms | cycles | DRAM MB | requests | row hits | stall share | bottleneck | "
             f"{t} / uniform-8 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for name, row in s["configs"].items():
        ref = row["policies"]["uniform-8"]["cycles"]
        for pname, p in row["policies"].items():
            d = p["dram"]
            rows = sum(d["row"].values())
            lines.append(f"| {name} | {pname} | {p['latency_ms']:.1f} | {p['cycles']:,} | {d['bytes'] / 1e6:.1f} | "
                         f"{d['requests']:,} | {d['row']['hit'] / max(rows, 1):.3f} | {d['stall_share']:.3f} | "
                         f"{p['bottleneck']} | {p['cycles'] / ref:.3f} |")
    lines += ["", "Hit rate per level (level 0 first):", "", "| cache | policy | " +
              " | ".join(str(i) for i in range(len(next(iter(s["configs"].values()))["policies"]["uniform-8"]["levels"])))
              + " |", "|---|---|" + "---|" * len(next(iter(s["configs"].values()))["policies"]["uniform-8"]["levels"])]
    for name, row in s["configs"].items():
        for pname, p in row["policies"].items():
            lines.append(f"| {name} | {pname} | " + " | ".join(f"{lv['hit_rate']:.3f}" for lv in p["levels"]) + " |")
    return "\n".join(lines) + "\n"
