"""Command-line interface behind the Makefile: ``python -m flows.cli <command> --help``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


def _configs(arg: str | None) -> list[Path]:
    if arg:
        return [Path(arg)]
    return sorted(CONFIG_DIR.glob("*.yaml"))


def cmd_verilog(args) -> int:
    from flows.cosim import config_name
    from hw.export import write_verilog
    from hw.params import load_config

    for config in tqdm(_configs(args.config), desc="verilog", unit="config", disable=None):
        params = load_config(config)["hash_encoder"]
        path = write_verilog(params, Path(args.build) / "verilog" / config_name(config))
        tqdm.write(f"{config_name(config)}: {path}")
    return 0


def cmd_lint(args) -> int:
    from flows.cosim import config_name
    from flows.lint import lint_verilog
    from hw.export import write_verilog
    from hw.params import load_config

    failed = 0
    for config in tqdm(_configs(args.config), desc="lint", unit="config", disable=None):
        params = load_config(config)["hash_encoder"]
        path = write_verilog(params, Path(args.build) / "verilog" / config_name(config))
        clean, output = lint_verilog(path)
        tqdm.write(f"{'clean' if clean else 'WARNINGS'}: {path}")
        if not clean:
            failed += 1
            tqdm.write(output)
    return 1 if failed else 0


def _print_cosim(s: dict) -> None:
    p = s["params"]
    ok = "PASS" if s["passed"] and s["mismatches"] == 0 else "FAIL"
    print(f"[{ok}] {s['engine']} {s['config']}: {s['transactions']} transactions, {s['mismatches']} mismatches; "
          f"cycles RTL {s['cycles_rtl']} / TLM {s['cycles_tlm']}")
    print(f"       L={p['levels']} T=2^{p['log2_table_size']} F={p['features']} feature_bits={p['feature_bits']} "
          f"coord_bits={p['coord_bits']} N={p['n_min']}..{p['n_max']} lanes={p['lanes']}")
    print(f"       build {s['build_seconds']:.1f} s, co-simulation {s['test_seconds']:.1f} s "
          f"(streaming {s['sim_seconds']:.2f} s); summary: {Path(s['log']).parent / 'summary.json'}")
    if s.get("waves"):
        print(f"       waveform: {s['waves']}")
    for m in s["mismatch_examples"]:
        print(f"       mismatch: {m}")


def cmd_cosim(args) -> int:
    from flows.cosim import run_cosim

    status = 0
    for config in _configs(args.config):
        s = run_cosim(config, points=args.points, seed=args.seed, waves=args.waves,
                      build_root=args.build, runs_root=args.runs)
        _print_cosim(s)
        status |= not (s["passed"] and s["mismatches"] == 0)
    return status


def cmd_bench(args) -> int:
    from flows.bench import bench_hash_encoder

    result = bench_hash_encoder(args.config or DEFAULT_CONFIG, points=args.points, seed=args.seed,
                                build_root=args.build, runs_root=args.runs)
    print(json.dumps(result, indent=2))
    return 0


def cmd_demo(args) -> int:
    from flows.cosim import config_name, run_cosim
    from hw.params import load_config

    config = Path(args.config or DEFAULT_CONFIG)
    params = load_config(config)["hash_encoder"]
    print(f"== hash encoder, preset {config_name(config)}: levels {params.resolutions}, "
          f"dense {sum(params.dense)} / hashed {params.levels - sum(params.dense)}, II {params.groups} cycles/point")
    print("== Verilog + Verilator build + cocotb co-simulation against the TLM ...", flush=True)
    s = run_cosim(config, points=args.points, seed=args.seed, build_root=args.build, runs_root=args.runs)
    print(f"== Verilog: {s['verilog']}")
    _print_cosim(s)
    return 0 if s["passed"] and s["mismatches"] == 0 else 1


def cmd_train(args) -> int:
    from nerf.train import PRESETS, train

    if args.preset not in PRESETS:
        raise ValueError(f"unknown preset {args.preset!r} (allowed: {', '.join(PRESETS)})")
    scene_name = "builtin" if args.scene == "builtin" else Path(args.scene).resolve().name
    name = args.name or f"{scene_name}-{args.preset}"
    out = Path(args.runs) / f"train-{name}"
    s = train(args.scene, PRESETS[args.preset], out, seed=args.seed, downscale=args.downscale,
              iterations=args.iterations, until=args.until, device=args.device, compile=args.compile)
    if not s.get("finished"):
        print(f"stopped at iteration {s['iterations']}; run the same command again to continue ({out})")
        return 0
    print(f"{name}: PSNR {s['psnr_test']:.2f} dB, SSIM {s['ssim_test']:.4f} on {s['test_views']} test views "
          f"at {s['resolution'][1]}x{s['resolution'][0]}, {s['iterations']} iterations in {s['train_seconds']:.0f} s "
          f"-> {out / 'summary.json'}")
    return 0


def cmd_quantize(args) -> int:
    from flows.quantize import quantize

    s = quantize(args.scene, args.preset, args.policy, runs_root=args.runs, rays=args.rays, seed=args.seed)
    print(f"{s['policy']} on {s['scene']} ({s['preset']}): PSNR {s['psnr_q']:.2f} dB (full precision "
          f"{s['psnr_fp']:.2f} dB, {s['psnr_q'] - s['psnr_fp']:+.3f}), FQR {s['fqr']:.2f} bits, "
          f"{s['bitops'] / 1e12:.3f} TBitOps per 800x800 frame, {s['model_bytes']:,} bytes")
    return 0


def cmd_sweep(args) -> int:
    from flows.quantize import _table, scene_name, sweep

    bits = tuple(int(b) for b in args.bits.split(","))
    s = sweep(args.scene, args.preset, bits=bits, runs_root=args.runs, rays=args.rays, seed=args.seed)
    print(_table(s["rows"])[0], end="")
    print(f"-> {Path(args.runs) / f'sweep-{scene_name(args.scene)}-{args.preset}'}/"
          "{sweep.json,table.md,table.csv,psnr_vs_fqr.png}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flows.cli", description=__doc__)
    parser.add_argument("--build", default="build", help="build folder (Verilog, Verilator objects); default: build")
    parser.add_argument("--runs", default="runs", help="results folder; default: runs")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, func, help, config_help="preset YAML (default: every file in flows/configs)"):
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--config", help=config_help)
        p.set_defaults(func=func)
        return p

    add("verilog", cmd_verilog, "write build/verilog/<name>/hash_encoder.v for a preset")
    add("lint", cmd_lint, "verilator --lint-only -Wall on the generated Verilog")
    p = add("cosim", cmd_cosim, "co-simulate RTL against the TLM; writes runs/cosim-<name>/summary.json")
    p.add_argument("--points", type=int, default=2000, help="input transactions (default 2000)")
    p.add_argument("--seed", type=int, default=1, help="workload seed (default 1)")
    p.add_argument("--waves", action="store_true", help="keep a VCD waveform in the run folder")
    p = add("bench", cmd_bench, "Verilator vs TLM simulated cycles per second; writes runs/bench/",
            config_help="preset YAML (default: flows/configs/default.yaml)")
    p.add_argument("--points", type=int, default=10_000, help="workload size (default 10000)")
    p.add_argument("--seed", type=int, default=1)
    p = sub.add_parser("train", help="train the radiance field; writes runs/train-<scene>-<preset>/ (resumable)",
                       description="Train the Instant-NGP-style field on a scene and evaluate it on the test views. "
                                   "Re-running the same command resumes from the last checkpoint.")
    p.add_argument("--scene", default="builtin", help="'builtin' or a Blender/LLFF scene folder (default builtin)")
    p.add_argument("--preset", default="tiny", help="tiny | small | full (default tiny)")
    p.add_argument("--downscale", type=int, help="image downscale factor (default: the preset's)")
    p.add_argument("--iterations", type=int, help="override the preset's iteration count")
    p.add_argument("--until", type=int, help="stop after this iteration (checkpointed); run again to continue")
    p.add_argument("--name", help="run name (default <scene>-<preset>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                   help="run the field through torch.compile (default on; --no-compile for plain eager PyTorch)")
    p.set_defaults(func=cmd_train)
    for name, func, help in (
            ("quantize", cmd_quantize, "PTQ-evaluate one policy on a trained field; writes "
                                       "runs/quantize-<scene>-<preset>-<policy>/summary.json"),
            ("sweep", cmd_sweep, "uniform PTQ sweep; writes runs/sweep-<scene>-<preset>/ (table, PSNR-vs-FQR plot)")):
        p = sub.add_parser(name, help=help, description=help + ". Needs the checkpoint of `make train` with the same "
                                                               "SCENE and PRESET.")
        p.add_argument("--scene", default="builtin", help="'builtin' or the scene folder trained on (default builtin)")
        p.add_argument("--preset", default="tiny", help="the training preset (default tiny)")
        if name == "quantize":
            p.add_argument("--policy", default="uniform-8",
                           help="uniform-<bits>, fp, or a policy YAML file (default uniform-8)")
        else:
            p.add_argument("--bits", default="16,12,10,8,6,4", help="comma-separated bitwidths (default 16,12,10,8,6,4)")
        p.add_argument("--rays", type=int, default=16384, help="calibration rays from the training views (default 16384)")
        p.add_argument("--seed", type=int, default=0, help="calibration ray seed (default 0)")
        p.set_defaults(func=func)
    p = add("demo", cmd_demo, "the main job on the built-in default preset",
            config_help="preset YAML (default: flows/configs/default.yaml)")
    p.add_argument("--points", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from hw.params import ConfigError

    try:
        return args.func(args)
    except (ConfigError, ValueError, RuntimeError) as exc:  # DataError, CheckpointError are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
