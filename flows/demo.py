"""``make demo``: the main job on the built-in scene, end to end, with a printed summary.

1. train the radiance field (tiny preset) on the built-in scene (``runs/train-builtin-tiny``);
2. a short DDPG search (latency objective) on the default hardware preset (``runs/search-builtin-demo``),
   which writes ``engines.yaml``: the engines sized for the model and the best policy's widths
   (``sim.mapping.engines_for_policy``);
3. Verilog of exactly those engines (``build/verilog/search-builtin-demo/``), with the one stated
   exception below; ``engines-simulated.yaml`` there holds what is simulated;
4. co-simulation of those Verilog files against their TLMs: the hash encoder (``hash_encoder_axi``
   with the default preset: tables in DRAM behind the table cache, the co-simulation's AXI4
   responder serving the packed tables with LPDDR4 timing at 200 MHz, the default preset's DRAM; ``hash_encoder`` with an on-chip preset), and the MLP engine
   running the model's density MLP and its colour MLP (``sim.mapping.mlp_shapes``: 32-64-16 and
   31-64-64-3 for the tiny model), one run per MLP on the same Verilog. The printed Verilog paths are
   the simulated files (``run_cosim(..., verilog=)``);
5. a SMOKE TEST of ``make compare`` (``flows.compare``, budget "smoke": a few fine-tuning iterations and
   search episodes): every method, Ray grid, table, Pareto plot, ratios and report page on the built-in
   scene (``runs/compare-builtin-<preset>-<hw>-smoke/``). Its numbers check the machinery, not the methods.

The search costs the tables in DRAM on a workload rendered at ``workload_size`` x ``workload_size``
pixels (``DEMO_WORKLOAD_SIZE``, standing for the 800x800 frame; ``flows.search``), to keep the demo short.

With the default preset the encoder's tables are off chip, so the model-sized encoder is simulated
as it is. With an on-chip preset (``hw="onchip"``) there is one exception, the hash table: the tiny model has 16 levels of T = 2^15 entries (N 16..256).
Measured on 2 shared cores, that encoder (8-bit entries, 16-bit coordinates, 4 lanes) is 18.6 MB of
Verilog that takes 37 s to generate, 152 s to build with Verilator and 73 s to load and run 200
points; at T = 2^13 it is 4.7 MB. For an on-chip preset the demo
simulates the model's levels, N_min, N_max, widths and lanes with at most ``DEMO_MAX_LOG2_TABLE``
(2^13 entries per level), which changes which levels are dense (direct index) and which hashed; the
output says so, with both lists. ``make verilog POLICY=`` writes the model-sized encoder.

Every step resumes: a second ``make demo`` reuses the trained checkpoint and the finished search.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

__all__ = ["demo", "simulated_engines", "DEMO_MAX_LOG2_TABLE"]

DEMO_EPISODES = 8
#: Pixels per side of the search's workload view (tables in DRAM), standing for the 800x800 frame.
DEMO_WORKLOAD_SIZE = 200
DEMO_WARMUP = 3
#: Largest hash table (log2 entries per level) the demo co-simulates (module doc: build and load time).
DEMO_MAX_LOG2_TABLE = 13


def _levels(flags, want: bool) -> str:
    """The levels whose flag is ``want``, consecutive ones as ranges: ``0-1, 4`` (``none`` if there are none)."""
    runs: list[list[int]] = []
    for i, f in enumerate(flags):
        if f == want:
            if runs and runs[-1][1] == i - 1:
                runs[-1][1] = i
            else:
                runs.append([i, i])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs) or "none"


def simulated_engines(engines: dict, max_log2_table_size: int = DEMO_MAX_LOG2_TABLE) -> tuple[dict, str | None]:
    """The engines the demo simulates for ``engines`` (``hw.params.load_config`` of ``engines.yaml``).

    Returns:
        ``(sections, note)``: the sections unchanged and ``None`` when the hash table has at most
        ``2**max_log2_table_size`` entries; otherwise the hash encoder with that table size (every
        other field unchanged) and a note that states the difference: both table sizes and both
        lists of dense and hashed levels.
    """
    enc = engines.get("hash_encoder")
    if enc is None or enc.log2_table_size <= max_log2_table_size:
        return dict(engines), None
    small = dataclasses.replace(enc, log2_table_size=max_log2_table_size)
    note = (f"hash encoder simulated with T = 2^{small.log2_table_size} entries per level instead of engines.yaml's "
            f"2^{enc.log2_table_size} (same {enc.levels} levels, N {enc.n_min}..{enc.n_max}, {enc.features} x "
            f"{enc.feature_bits}-bit features, {enc.coord_bits}-bit coordinates, {enc.lanes} lanes): dense levels "
            f"{_levels(small.dense, True)} instead of {_levels(enc.dense, True)}, hashed levels "
            f"{_levels(small.dense, False)} instead of {_levels(enc.dense, False)}")
    return {**engines, "hash_encoder": small}, note


def demo(*, runs_root="runs", build_root="build", seed: int = 1, progress: bool = True, preset: str = "tiny",
         train_preset=None, downscale: int | None = None, episodes: int = DEMO_EPISODES, warmup: int = DEMO_WARMUP,
         val_views: int = 2, rays: int = 4096, points: int = 2000, axi_points: int = 300, vectors: int = 30,
         max_log2_table_size: int = DEMO_MAX_LOG2_TABLE, compile: bool = True, hw: str = "default",
         workload_size: int = DEMO_WORKLOAD_SIZE, compare_budget="smoke") -> int:
    """Run the demo; returns the process exit code (0 when every co-simulation passed).

    Args:
        preset: training preset name (``nerf.train.PRESETS``; the run folders are named after it);
            train_preset: a ``TrainPreset`` to use instead of ``PRESETS[preset]`` (tests: a quick one),
            downscale: the training images' downscale (None: the scene's own); compile: train through
            ``torch.compile``.
        episodes, warmup, val_views, rays: the search's (``flows.search.search``).
        points: hash-encoder co-simulation points; axi_points: the same with the tables in DRAM, where most
            fine-level lookups of the model-sized encoder miss (hundreds of cycles per point at ~3,000
            simulated cycles/s, ``make bench``); vectors: MLP co-simulation vectors per MLP.
        hw: the hardware preset (``flows/accel``); workload_size: the search's workload view size.
        max_log2_table_size: the largest hash table simulated (``simulated_engines``).
        compare_budget: the comparison's budget (``flows.compare.BUDGETS`` name or a ``Budget``); None skips it.
    """
    from flows.cosim import run_cosim
    from flows.search import search
    from hw.export import write_verilog
    from hw.params import load_config, save_config
    from nerf.train import PRESETS, load_checkpoint, train
    from sim.mapping import mlp_shapes

    runs_root, build_root = Path(runs_root), Path(build_root)
    train_dir = runs_root / f"train-builtin-{preset}"
    print(f"== 1/5 train the radiance field ({preset} preset) on the built-in scene", flush=True)
    t = train("builtin", train_preset or PRESETS[preset], train_dir, downscale=downscale, compile=compile,
              progress=progress)
    print(f"   PSNR {t['psnr_test']:.2f} dB, SSIM {t['ssim_test']:.4f} on {t['test_views']} test views "
          f"({t['resolution'][1]}x{t['resolution'][0]}), {t['iterations']} iterations in {t['train_seconds']:.0f} s")

    print(f"== 2/5 DDPG search, {episodes} episodes, latency budget 0.5 x uniform-8", flush=True)
    s = search("builtin", preset, hw=hw, episodes=episodes, warmup=warmup, val_views=val_views, rays=rays,
               resume=True, runs_root=runs_root, name="builtin-demo", progress=progress, workload_size=workload_size)
    b, u8 = s["best"], s["baselines"]["uniform-8"]
    print(f"   best: PSNR {b['psnr']:.2f} dB ({s['psnr_change_vs_fp']:+.2f} vs full precision), "
          f"{b['latency_ms']:.1f} ms per 800x800 frame = {s['latency_ratio_to_uniform8']:.3f} x uniform-8 "
          f"({u8['latency_ms']:.1f} ms, {u8['psnr']:.2f} dB), FQR {b['fqr']:.2f}")
    if "memory" in s:
        m = s["memory"]["policies"]["best"]
        print(f"   tables in DRAM: {m['dram_bytes'] / 1e6:.1f} MB per frame, stall share {m['stall_share']:.3f}, "
              f"bottleneck {m['bottleneck']}, hit rates {min(m['hit_rates']):.3f}..{max(m['hit_rates']):.3f}")

    run_dir = runs_root / "search-builtin-demo"
    engines_path = run_dir / "engines.yaml"
    out = build_root / "verilog" / "search-builtin-demo"
    print(f"== 3/5 Verilog of the engines sized for that policy ({engines_path})", flush=True)
    engines, note = simulated_engines(load_config(engines_path), max_log2_table_size)
    if note:
        print(f"   {note}")
    config = out / "engines-simulated.yaml"  # what the co-simulation reads: engines.yaml, or as the note says
    save_config(config, engines)
    verilog = {}
    for section, params in engines.items():
        verilog[section] = write_verilog(params, out)
        print(f"   Verilog: {verilog[section]}")

    print("== 4/5 co-simulation of those files against the TLMs (random traffic, backpressure)", flush=True)
    common = dict(seed=seed, build_root=build_root, runs_root=runs_root)
    checks = []
    for section in ("hash_encoder", "hash_encoder_axi"):
        if section in engines:
            what = "hash encoder" + (", tables in DRAM" if section == "hash_encoder_axi" else "")
            n = min(points, axi_points) if section == "hash_encoder_axi" else points
            checks.append((what, run_cosim(config, engine=section, points=n, verilog=verilog[section],
                                           run_name=f"cosim-demo-{section}", **common)))
    arch = load_checkpoint(train_dir / "checkpoint.pt")["arch"]
    for mlp, shape in mlp_shapes(arch).items():  # the density MLP, then the colour MLP, on the one engine
        checks.append((f"{mlp} MLP {'-'.join(map(str, shape))}",
                       run_cosim(config, engine="mlp_engine", vectors=vectors, shapes=[shape],
                                 verilog=verilog["mlp_engine"], run_name=f"cosim-demo-mlp_engine-{mlp}", **common)))
    ok = True
    for what, c in checks:
        passed = c["passed"] and c["mismatches"] == 0
        ok &= passed
        print(f"   [{'PASS' if passed else 'FAIL'}] {c['engine']}, {what} ({c['verilog']}): {c['transactions']} "
              f"transactions, {c['mismatches']} mismatches; cycles RTL {c['cycles_rtl']} / TLM {c['cycles_tlm']}")
    if compare_budget is not None:
        from flows.compare import compare, summary_lines

        print("== 5/5 SMOKE TEST of `make compare` (budget smoke: a few iterations and episodes; checks the "
              "machinery, the numbers are not results)", flush=True)
        c = compare("builtin", preset, hw=hw, budget=compare_budget, runs_root=runs_root, build_root=build_root,
                    progress=progress)
        print("\n".join(summary_lines(c)))
        ok &= not c["failed_cells"]
    print(f"== summary: {run_dir / 'summary.json'}, {run_dir / 'pareto.png'}, Verilog in {out}"
          + ("" if compare_budget is None else
             f"; comparison page runs/compare-builtin-{preset}-{hw}-smoke/report.html"))
    return 0 if ok else 1
