"""``make demo``: the main job on the built-in scene, end to end, with a printed summary.

1. train the radiance field (tiny preset) on the built-in scene (``runs/train-builtin-tiny``);
2. a short DDPG search (latency objective) on the default hardware preset (``runs/search-builtin-demo``);
3. Verilog of the engines sized for the best policy (``build/verilog/search-builtin-demo/``);
4. co-simulation of that MLP engine running the colour MLP's shape, and of the default hash encoder,
   against their TLMs.

Every step resumes: a second ``make demo`` reuses the trained checkpoint and the finished search.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["demo"]

DEMO_EPISODES = 8
DEMO_WARMUP = 3


def demo(*, runs_root="runs", build_root="build", seed: int = 1, progress: bool = True) -> int:
    """Run the demo; returns the process exit code (0 when every co-simulation passed)."""
    from flows.cosim import run_cosim
    from flows.search import search
    from hw.export import write_verilog
    from hw.params import load_config
    from nerf.train import PRESETS, train

    runs_root, build_root = Path(runs_root), Path(build_root)
    print("== 1/4 train the radiance field (tiny preset) on the built-in scene", flush=True)
    t = train("builtin", PRESETS["tiny"], runs_root / "train-builtin-tiny", compile=True, progress=progress)
    print(f"   PSNR {t['psnr_test']:.2f} dB, SSIM {t['ssim_test']:.4f} on {t['test_views']} test views "
          f"({t['resolution'][1]}x{t['resolution'][0]}), {t['iterations']} iterations in {t['train_seconds']:.0f} s")

    print(f"== 2/4 DDPG search, {DEMO_EPISODES} episodes, latency budget 0.5 x uniform-8", flush=True)
    s = search("builtin", "tiny", episodes=DEMO_EPISODES, warmup=DEMO_WARMUP, val_views=2, rays=4096,
               resume=True, runs_root=runs_root, name="builtin-demo", progress=progress)
    b, u8 = s["best"], s["baselines"]["uniform-8"]
    print(f"   best: PSNR {b['psnr']:.2f} dB ({s['psnr_change_vs_fp']:+.2f} vs full precision), "
          f"{b['latency_ms']:.1f} ms per 800x800 frame = {s['latency_ratio_to_uniform8']:.3f} x uniform-8 "
          f"({u8['latency_ms']:.1f} ms, {u8['psnr']:.2f} dB), FQR {b['fqr']:.2f}")

    run_dir = runs_root / "search-builtin-demo"
    engines = run_dir / "engines.yaml"
    print(f"== 3/4 Verilog of the engines sized for that policy ({engines})", flush=True)
    out = build_root / "verilog" / "search-builtin-demo"
    for params in load_config(engines).values():
        print(f"   {write_verilog(params, out)}")

    print("== 4/4 co-simulation against the TLMs (random traffic, backpressure)", flush=True)
    checks = [
        run_cosim(engines, engine="mlp_engine", shapes=[31, 64, 64, 3], seed=seed, build_root=build_root,
                  runs_root=runs_root, run_name="cosim-demo-mlp_engine"),
        run_cosim(Path(__file__).resolve().parent / "configs" / "default.yaml", engine="hash_encoder", seed=seed,
                  build_root=build_root, runs_root=runs_root, run_name="cosim-demo-hash_encoder"),
    ]
    ok = True
    for c in checks:
        passed = c["passed"] and c["mismatches"] == 0
        ok &= passed
        print(f"   [{'PASS' if passed else 'FAIL'}] {c['engine']}: {c['transactions']} transactions, "
              f"{c['mismatches']} mismatches; cycles RTL {c['cycles_rtl']} / TLM {c['cycles_tlm']}")
    print(f"== summary: {run_dir / 'summary.json'}, {run_dir / 'pareto.png'}, Verilog in {out}")
    return 0 if ok else 1
