"""Command-line interface behind the Makefile: ``python -m flows.cli <command> --help``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from common.validate import option
from flows.options import (bits_list, check_acaq, check_quantizer_options, check_search, choice_list, policy_spec,
                           width)

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


def _configs(arg: str | None) -> list[Path]:
    if arg:
        return [Path(arg)]
    return sorted(CONFIG_DIR.glob("*.yaml"))


def _policy_engines(policy_path: Path) -> tuple[Path, dict]:
    """The engines a searched policy needs (``engines.yaml`` beside it), after checking the policy.

    A KiloNeRF policy (``KiloPolicy``) needs only the banked MLP engine of its ``engines.yaml``. An
    Instant-NGP policy is read with the levels of the engines' hash encoder (``QuantPolicy.load``) and must fit
    the engines' widths: every hash level within ``feature_bits``, every MLP weight and input
    activation within ``max_weight_bits`` / ``max_act_bits`` (``sim.mapping.check_policy_fits``, the
    mapping the search used).

    Raises:
        FileNotFoundError: no policy, or no engines.yaml beside it. ConfigError / PolicyError: an
            invalid engines.yaml or policy, or a policy the engines cannot hold (naming the component).
    """
    from hw.config import ConfigError
    from hw.registry import load_config
    from quant.policy import QuantPolicy
    from sim.mapping import check_policy_fits

    if not policy_path.is_file():
        raise FileNotFoundError(f"policy {str(policy_path)!r}: no such file")
    engines = policy_path.parent / "engines.yaml"
    if not engines.is_file():
        raise FileNotFoundError(f"{engines}: missing; `make verilog POLICY=` takes the policy.yaml of a `make search` "
                                "run folder, which holds the engines.yaml it needs")
    sections = load_config(engines)
    encoder = sections.get("hash_encoder") or sections.get("hash_encoder_axi")  # tables on chip or in DRAM
    if encoder is None and "mlp_engine" in sections:  # a KiloNeRF search: its banked MLP engine only
        from quant.policy import KiloPolicy, PolicyError
        from sim.kilo_perf import kilo_layers

        try:
            policy = KiloPolicy.load(policy_path)
        except PolicyError:
            policy = None
        if policy is not None:
            try:  # widths only: any tiny-network shape names the same components
                kilo_layers(policy, {"hidden": 32, "pos_freqs": 10, "dir_freqs": 4}, sections["mlp_engine"])
            except ConfigError as exc:
                raise ConfigError(f"policy {str(policy_path)!r}: {exc} in {engines}") from None
            return engines, sections
    if encoder is None:
        raise ConfigError(f"{engines} has no hash_encoder or hash_encoder_axi section, so the policy's levels are "
                          "unknown")
    policy = QuantPolicy.load(policy_path, encoder.levels)
    try:
        check_policy_fits(policy, sections, where=str(engines))
    except ConfigError as exc:
        raise ConfigError(f"policy {str(policy_path)!r}: {exc}") from None
    return engines, sections


def cmd_verilog(args) -> int:
    from flows.cosim import config_name
    from hw.export import write_verilog
    from hw.registry import load_config

    if args.policy:
        # a search writes engines.yaml (the engines sized for the model and the policy) beside policy.yaml
        policy = Path(args.policy)
        engines, sections = _policy_engines(policy)
        out = Path(args.build) / "verilog" / policy.parent.name
        for name, params in sections.items():
            print(f"{policy.parent.name}: {write_verilog(params, out)}  ({name}: {params.to_dict()})")
        return 0
    for config in tqdm(_configs(args.config), desc="verilog", unit="config", disable=None):
        for params in load_config(config).values():  # every engine section of the preset
            path = write_verilog(params, Path(args.build) / "verilog" / config_name(config))
            tqdm.write(f"{config_name(config)}: {path}")
    return 0


def cmd_lint(args) -> int:
    from flows.cosim import config_name
    from flows.lint import lint_preset

    failed = 0
    for config in tqdm(_configs(args.config), desc="lint", unit="config", disable=None):
        for path, clean, output in lint_preset(config, Path(args.build) / "verilog" / config_name(config)):
            tqdm.write(f"{'clean' if clean else 'WARNINGS'}: {path}")
            if not clean:
                failed += 1
                tqdm.write(output)
    return 1 if failed else 0


def _print_cosim(s: dict) -> None:
    from flows.cosim import summary_lines

    print("\n".join(summary_lines(s)))


def _shapes(text: str) -> list[list[int]] | list[int]:
    """``--shapes``: ``in_0,out_0,...`` for every phase, or several such lists separated by ``;``
    (one per phase). An argparse ``type=``: a bad list is refused naming the option."""
    try:
        lists = [[int(x) for x in part.split(",")] for part in text.split(";")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers (lists separated by ';'), "
                                         f"not {text!r}") from None
    if any(x < 1 for sizes in lists for x in sizes) or any(len(sizes) < 2 for sizes in lists):
        raise argparse.ArgumentTypeError(f"must list at least two sizes >= 1 per phase, not {text!r}")
    return lists[0] if len(lists) == 1 else lists


def cmd_cosim(args) -> int:
    from flows.cosim import config_engines, run_cosim

    status = 0
    for config in _configs(args.config):
        for engine in config_engines(config):  # every engine section of the preset
            s = run_cosim(config, engine=engine, points=args.points, vectors=args.vectors, phases=args.phases,
                          shapes=args.shapes, seed=args.seed, init_seed=args.init_seed, waves=args.waves,
                          build_root=args.build, runs_root=args.runs)
            _print_cosim(s)
            status |= not (s["passed"] and s["mismatches"] == 0)
    return status


def cmd_bench(args) -> int:
    from flows.bench import bench_bitexact, bench_hash_encoder, bench_memory, bench_memory_frame, bench_perf, bench_top

    print(json.dumps(bench_perf(runs_root=args.runs), indent=2))
    print(json.dumps(bench_bitexact(runs_root=args.runs), indent=2))
    print(json.dumps(bench_memory_frame(runs_root=args.runs), indent=2))
    result = bench_hash_encoder(args.config or DEFAULT_CONFIG, points=args.points, seed=args.seed,
                                build_root=args.build, runs_root=args.runs)
    print(json.dumps(result, indent=2))
    print(json.dumps(bench_memory(points=min(args.points, 2000), seed=args.seed, build_root=args.build,
                                  runs_root=args.runs), indent=2))
    print(json.dumps(bench_top(seed=args.seed, build_root=args.build, runs_root=args.runs), indent=2))
    return 0


def cmd_dhq_area(args) -> int:
    from flows.dhq_area import dhq_area

    s = dhq_area(args.presets, bits=args.bits, family=args.family, cache_dir=Path(args.build) / "area",
                 runs_root=args.runs)
    print(Path(s["table"]).read_text())
    print(f"summary: {s['summary']}")
    return 0


def cmd_demo(args) -> int:
    from flows.demo import demo

    return demo(runs_root=args.runs, build_root=args.build, seed=args.seed)


def _check_device(device: str) -> str:
    """``--device``: cpu, or cuda[:N] when PyTorch sees that GPU; ValueError naming the option otherwise."""
    import re

    if device == "cpu":
        return device
    m = re.fullmatch(r"cuda(?::(\d+))?", device)
    if m is None:
        raise ValueError(f"--device must be cpu or cuda[:N], not {device!r}")
    import torch

    index = int(m.group(1) or 0)
    if not torch.cuda.is_available():
        raise ValueError(f"--device {device}: PyTorch sees no CUDA device here (use --device cpu)")
    if index >= torch.cuda.device_count():
        raise ValueError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def cmd_train(args) -> int:
    from flows.runs import model_suffix
    from nerf.train import presets_for, train

    presets = presets_for(args.model)
    if args.preset not in presets:
        raise ValueError(f"unknown preset {args.preset!r} of --model {args.model} (allowed: {', '.join(presets)})")
    _check_device(args.device)
    scene_name = "builtin" if args.scene == "builtin" else Path(args.scene).resolve().name
    if scene_name == "transforms.json":  # a transforms file given directly: name the run after its folder
        scene_name = Path(args.scene).resolve().parent.name
    name = args.name or f"{scene_name}-{args.preset}{model_suffix(args.model)}"
    out = Path(args.runs) / f"train-{name}"
    s = train(args.scene, presets[args.preset], out, seed=args.seed, downscale=args.downscale,
              iterations=args.iterations, until=args.until, device=args.device,
              compile=args.model == "ngp" if args.compile is None else args.compile,
              checkpoint_seconds=args.checkpoint_seconds, skip_missing=args.skip_missing, background=args.background)
    code = _stopped_early(s, out)
    if code is not None:
        return code
    print(f"{name}: PSNR {s['psnr_test']:.2f} dB, SSIM {s['ssim_test']:.4f} on {s['test_views']} test views "
          f"at {s['resolution'][1]}x{s['resolution'][0]}, {s['iterations']} iterations in {s['train_seconds']:.0f} s "
          f"-> {out / 'summary.json'}")
    return 0


def cmd_kilonerf(args) -> int:
    from flows.kilonerf import kilo_dir, kilonerf

    out = kilo_dir(args.scene, args.preset, args.runs)
    s = kilonerf(args.scene, args.preset, kilo=args.kilo, cells=args.cells, distill_iterations=args.distill_iterations,
                 finetune_iterations=args.finetune_iterations, until=args.until, seed=args.seed, runs_root=args.runs)
    code = _stopped_early(s, out)
    if code is not None:
        return code
    print(f"KiloNeRF {'x'.join(map(str, s['grid']))} = {s['networks']:,} networks ({s['networks_trained']:,} trained), "
          f"PSNR {s['psnr_test']:.2f} dB, SSIM {s['ssim_test']:.4f} on {s['test_views']} test views; teacher "
          f"{s['teacher_psnr_test']:.2f} dB ({s['psnr_vs_teacher']:+.2f}); {s['train_seconds_total']:.0f} s "
          f"-> {out / 'summary.json'}")
    return 0


def cmd_kilo_compare(args) -> int:
    from flows.kilo_compare import kilo_compare
    from flows.runs import scene_name

    s = kilo_compare(args.scene, args.preset, hw=args.hw, bits=tuple(args.bits), runs_root=args.runs, area=args.area)
    out = Path(args.runs) / f"kilo-compare-{scene_name(args.scene)}-{args.preset}-{args.hw}"
    print((out / "table.md").read_text(), end="")
    print(f"-> {out}/{{summary.json,table.md,table.csv}}")
    return 0


def cmd_quantize(args) -> int:
    from flows.quantize import quantize

    s = quantize(args.scene, args.preset, args.policy, runs_root=args.runs, rays=args.rays, seed=args.seed,
                 quantizer=args.quantizer, placement=args.placement, calibration=args.calibration, hw=args.hw)
    how = "" if s["quantizer"] == "uniform" else f" with DHQ ({s['placement']}, {s['calibration']})"
    frame = s["frame"]
    latency = (f"{frame['latency_ms']:.1f} ms per 800x800 frame on {frame['hw']} ({frame['datapath']} datapath)"
               if "latency_ms" in frame else f"no frame latency on {frame['hw']}: {frame['note']}")
    print(f"{s['policy']}{how} on {s['scene']} ({s['preset']}): PSNR {s['psnr_q']:.2f} dB (full precision "
          f"{s['psnr_fp']:.2f} dB, {s['psnr_q'] - s['psnr_fp']:+.3f}), FQR {s['fqr']:.2f} bits, "
          f"{s['bitops'] / 1e12:.3f} TBitOps per 800x800 frame, {s['model_bytes']:,} bytes; {latency}")
    return 0


def cmd_sweep(args) -> int:
    from flows.quantize import SWEEP_COLUMNS, scene_name, sweep
    from flows.report import markdown_table

    s = sweep(args.scene, args.preset, bits=args.bits, runs_root=args.runs, rays=args.rays, seed=args.seed)
    print(markdown_table(s["rows"], SWEEP_COLUMNS), end="")
    print(f"-> {Path(args.runs) / f'sweep-{scene_name(args.scene)}-{args.preset}'}/"
          "{sweep.json,table.md,table.csv,psnr_vs_fqr.png}")
    return 0


def cmd_search(args) -> int:
    from flows.search import search

    s = search(args.scene, args.preset, hw=args.hw, episodes=args.episodes, objective=args.objective,
               budget=args.budget, lam=args.lam, max_loss=args.max_loss, b_min=args.b_min, b_max=args.b_max, val_views=args.val_views,
               warmup=args.warmup, seed=args.seed, rays=args.rays, resume=args.resume, runs_root=args.runs,
               name=args.name, workload_size=args.workload_size, model=args.model, quantizer=args.quantizer,
               placement=args.placement, calibration=args.calibration)
    b, u8 = s["best"], s["baselines"]["uniform-8"]
    print(f"best of {s['episodes']} episodes (episode {b['episode']}): PSNR {b['psnr']:.2f} dB "
          f"({s['psnr_change_vs_fp']:+.2f} vs full precision {s['baselines']['fp']['psnr']:.2f}), "
          f"{b['latency_ms']:.1f} ms per 800x800 frame = {s['latency_ratio_to_uniform8']:.3f} x uniform-8 "
          f"({u8['latency_ms']:.1f} ms, {u8['psnr']:.2f} dB), FQR {b['fqr']:.2f}; "
          f"{'dominates' if s['dominates_uniform'] else 'does NOT dominate'} the uniform policies; "
          f"{s['wall_seconds']:.0f} s")
    return 0


def cmd_memory(args) -> int:
    from flows.memory import memory_report

    s = memory_report(args.scene, args.preset, hw=args.hw, size=args.size, view=args.view,
                      table_bits=args.table_bits, runs_root=args.runs)
    from flows.runs import scene_name

    print((Path(args.runs) / f"memory-{scene_name(args.scene)}-{args.preset}" / "table.md").read_text())
    return 0


def cmd_inr(args) -> int:
    from flows.inr import inr, run_dir, table

    from flows.inr.methods import cross

    bits = args.bits
    settings = {k: getattr(args, k) for k in ("size", "steps", "finetune_steps", "width", "seed", "coord_bits")
                if getattr(args, k) is not None}
    choices = {k: getattr(args, k) for k in ("rotations", "calibrations", "granularities", "training")
               if getattr(args, k) is not None}
    methods = cross(**choices) if choices else None
    s = inr(args.image, bits=bits, runs_root=args.runs, methods=methods, **settings)
    print(table(s)[0], end="")
    print(f"{s['image']} {s['size'][1]}x{s['size'][0]}x{s['channels']}: FP {s['fp']['psnr']:.2f} dB "
          f"(SSIM {s['fp']['ssim']:.4f}), {s['wall_seconds']:.0f} s -> {run_dir(args.image, args.runs)}/"
          "{summary.json,table.md,table.csv,histograms.png,reconstructions.png}")
    return 0


def cmd_inr_table(args) -> int:
    from flows.inr.crossed import crossed_table

    root = Path(args.runs)
    s = crossed_table(args.images, root=root)
    print((root / "crossed.md").read_text(), end="")
    print(f"{len(s['images'])} images, {len(s['settings'])} settings at {len(s['bits'])} bitwidths -> "
          f"{root}/crossed.{{md,json,png}}")
    return 0


def _target(text: str) -> float:
    """argparse ``type=`` of --target: a PSNR in dB (>= 1) or an MSE in (0, 1)."""
    from flows.acaq import parse_target

    try:
        value = float(text)
        parse_target(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a PSNR in dB (>= 1, e.g. 30) or an MSE in (0, 1) (e.g. 1e-3), "
                                         f"not {text!r}") from None
    return value


def _targets(text: str) -> tuple[float, ...]:
    """argparse ``type=`` of --targets: comma-separated ``_target`` values."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError(f"give at least one target, not {text!r}")
    return tuple(_target(t) for t in items)


def _stopped_early(s: dict, out) -> int | None:
    """A resumable run that stopped before the end (a signal, ``--until``): say so and give the exit status
    (128 + signal, or 0); None for a finished run."""
    import signal

    if s.get("finished"):
        return None
    if s.get("interrupted"):
        print(f"interrupted by {s['interrupted']} at iteration {s['iterations']}: checkpoint saved in {out}; "
              "run the same command again to resume", file=sys.stderr)
        return 128 + int(signal.Signals[s["interrupted"]])
    print(f"stopped at iteration {s['iterations']}; run the same command again to continue ({out})")
    return 0


def cmd_acaq(args) -> int:
    from flows.acaq import acaq_run, run_folder

    from flows.acaq import DEFAULT_ITERATIONS

    s = acaq_run(args.scene, args.preset, args.mode, target=args.target, eps=args.eps,
                 iterations=args.iterations or DEFAULT_ITERATIONS, runs_root=args.runs,
                 checkpoint_seconds=args.checkpoint_seconds, until=args.until)
    code = _stopped_early(s, s.get("out"))
    if code is not None:
        return code
    lat = s["latency"].get("default", {})
    lat_text = f"{lat['latency_ms']:.1f} ms" if "latency_ms" in lat else f"n/a ({lat.get('error', 'no preset')})"
    out = run_folder("acaq", args.scene, args.preset, args.mode, target_mse=s["target_mse"], runs_root=args.runs)
    print(f"A-CAQ {args.mode.upper()} on {s['scene']} ({s['preset']}): PSNR {s['psnr']:.2f} dB (full precision "
          f"{s['psnr_fp']:.2f} dB), SSIM {s['ssim']:.4f}, FQR {s['fqr']:.2f} (A-CAQ 15: {s['fqr_acaq']:.2f}), "
          f"{s['tbitops']:.3f} TBitOps, {s['storage_mb']:.3f} MB, latency {lat_text} on the default accelerator; "
          f"{s['iterations']} iterations in {s['finetune_seconds']:.0f} s -> {out}/"
          "{policy.yaml,summary.json,bits.png,checkpoint.pt}")
    return 0


def cmd_acaq_table(args) -> int:
    from flows.acaq import TABLE_COLUMNS, acaq_table
    from flows.report import markdown_table
    from flows.runs import scene_name

    from flows.acaq import DEFAULT_ITERATIONS, TABLE_TARGETS

    s = acaq_table(args.scene, args.preset, targets=args.targets or TABLE_TARGETS,
                   iterations=args.iterations or DEFAULT_ITERATIONS, runs_root=args.runs)
    print(markdown_table(s["rows"], TABLE_COLUMNS), end="")
    print(f"-> {Path(args.runs) / f'acaq-table-{scene_name(args.scene)}-{args.preset}'}/"
          "{table.md,table.csv,table.json} in " f"{s['wall_seconds']:.0f} s")
    return 0


def cmd_compare(args) -> int:
    from flows.compare import compare, summary_lines

    s = compare(args.scene, args.preset, hw=args.hw, budget=args.budget, seed=args.seed, runs_root=args.runs,
                build_root=args.build, cpus=args.cpus)
    print("\n".join(summary_lines(s)))
    print(f"-> {s['out']}/{{table.md,table.csv,summary.json,pareto.png,report.html}} ({s['wall_seconds']:.0f} s)")
    return 1 if s["failed_cells"] else 0


def cmd_grid(args) -> int:
    from flows.compare import grid, summary_lines

    summaries = grid(args.scenes, args.preset, hws=args.hws, budget=args.budget, seeds=args.seeds,
                     runs_root=args.runs, build_root=args.build, cpus=args.cpus, name=args.name)
    for s in summaries:
        print("\n".join(summary_lines(s)))
    print(f"-> {Path(args.runs) / f'grid-{args.name}'}/{{grid.md,grid.json,cells/}} and one compare-* folder each")
    return 1 if any(s["failed_cells"] for s in summaries) else 0


def cmd_report(args) -> int:
    from flows.page import report

    print(f"-> {report(args.run, runs_root=args.runs)}")
    return 0


def cmd_compress(args) -> int:
    from flows.compress import compress_dir, compress_flow

    s = compress_flow(args.scene, model=args.model, preset=args.preset, lambdas=args.lambdas, bits=args.bits,
                      ablation_lambda=args.ablation_lambda, iterations=args.iterations,
                      recon_iterations=args.recon_iterations, policies=args.policy or (),
                      runs_root=args.runs, seed=args.seed)
    out = compress_dir(args.scene, args.preset, args.model, args.runs)
    if not s.get("finished"):
        print(f"interrupted: finished points are kept in {out}/points; run the same command again to resume",
              file=sys.stderr)
        return 130
    per = "feature" if args.model == "tensorf" else "table"
    for p in s["points"]:
        bpp = p.get(f"bits_per_{per}_parameter")
        print(f"{p['label']:34s} {p['bytes']:>11,} bytes  {'' if bpp is None else f'{bpp:7.3f} b/param'}  "
              f"{p['psnr']:6.2f} dB  SSIM {p['ssim']:.4f}")
    print(f"-> {out}/{{rd.md,rd.png,summary.json,bitstreams/}}")
    return 0


def cmd_hwrender(args) -> int:
    from flows.hwrender import hwrender, hwrender_dir, table_lines

    policy = None if args.checkpoint and args.policy is None else (args.policy or "uniform-8")
    s = hwrender(args.scene, args.preset, policy, hw=args.hw, runs_root=args.runs, views=args.views,
                 checkpoint=args.checkpoint, breakdown=args.breakdown)
    print("\n".join(table_lines(s)))
    print(f"-> {hwrender_dir(args.scene, args.preset, s['policy'], args.hw, args.runs)}/"
          "{summary.json,table.md,model.nhwi,hw/,diff/}")
    return 0


def _csv(kind, check=None):
    def parse(text: str) -> list:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"give a comma-separated list, not {text!r}")
        return [check(t) for t in items] if check else items

    parse.__name__ = kind
    return parse


def _work_options(p) -> None:
    """--budget and --cpus of compare and grid (the budgets' figures from ``flows.compare.BUDGETS``)."""
    from flows.compare import BUDGETS

    work = ", ".join(f"{b.name} ({b.iterations} fine-tuning iterations, {b.episodes} episodes, {b.finalise} finalised"
                     f"{'' if b.area else ', no synthesis'})" for b in BUDGETS.values())
    p.add_argument("--budget", default="full", choices=tuple(BUDGETS),
                   help=f"work per method: {work}; smoke checks the machinery, it is not a result (default full)")
    p.add_argument("--cpus", type=option(int, ge=1), help="local Ray's CPUs (default all cores)")


def _quantizer_options(p, search: bool = False) -> None:
    """--quantizer, --placement, --calibration (``quant.dhq_field``) of quantize and search."""
    from quant.choices import CALIBRATIONS, PLACEMENTS, QUANTIZERS

    p.add_argument("--quantizer", default="uniform", choices=QUANTIZERS,
                   help="the MLP layers' quantizer: uniform PTQ, or dhq (Hadamard-rotated, DHQ; latency on the "
                        "Hadamard datapath" + (", tables on chip: --hw onchip" if search else "")
                        + ") (default uniform)")
    p.add_argument("--placement", default=None, choices=PLACEMENTS[:2] if search else PLACEMENTS,
                   help="dhq: which layers' weights / inputs are rotated (default all)")
    p.add_argument("--calibration", default=None, choices=CALIBRATIONS,
                   help="dhq: how its quantizers' steps are calibrated (default min-max)")


def _scene_options(p, preset_help: str = "the training preset of the checkpoint (default tiny)") -> None:
    """--scene and --preset of the commands that work on a trained field."""
    p.add_argument("--scene", default="builtin", help="'builtin' or the scene folder trained on (default builtin)")
    p.add_argument("--preset", default="tiny", help=preset_help)


def build_parser() -> argparse.ArgumentParser:
    from nerf.images import IMAGES

    parser = argparse.ArgumentParser(prog="python -m flows.cli", description=__doc__)
    parser.add_argument("--build", default="build", help="build folder (Verilog, Verilator objects); default: build")
    parser.add_argument("--runs", default="runs", help="results folder; default: runs")
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name, func, help, config_help="preset YAML (default: every file in flows/configs)"):
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument("--config", help=config_help)
        p.set_defaults(func=func)
        return p

    p = add("verilog", cmd_verilog, "write build/verilog/<name>/<engine>.v for every engine section of a preset, "
                                    "or for the engines a searched policy needs")
    p.add_argument("--policy", help="policy.yaml of a `make search` run: the engines at the widths it needs "
                                    "(build/verilog/<run>/)")
    add("lint", cmd_lint, "verilator --lint-only -Wall on the generated Verilog of every engine section")
    p = add("cosim", cmd_cosim, "co-simulate RTL against the TLM, every engine section; writes "
                                "runs/cosim-<name>/summary.json")
    p.add_argument("--points", type=option(int, ge=2), default=2000,
                   help="hash encoder: input transactions, >= 2 (default 2000)")
    p.add_argument("--vectors", type=option(int, ge=1), default=30,
                   help="MLP engine, Hadamard datapath: input vectors over all phases, >= phases (default 30)")
    p.add_argument("--phases", type=option(int, ge=1),
                   help="MLP engine, Hadamard datapath: random configurations, one after the other (default 3, "
                        "or one per --shapes list); an MLP engine with two weight banks: the distinct cells that "
                        "random cell visits pick from")
    p.add_argument("--shapes", type=_shapes,
                   help="MLP engine: layer sizes in_0,out_0,...,out_last for every phase, e.g. 32,64,16, or one "
                        "list per phase separated by ';', e.g. '32,64,16;31,64,64,3' (default random within the "
                        "preset's maxima)")
    p.add_argument("--seed", type=option(int, ge=0), default=1, help="workload seed (default 1)")
    p.add_argument("--init-seed", type=option(int, ge=1), default=1,
                   help="seed of the random power-up state of registers and memories (default 1)")
    p.add_argument("--waves", action="store_true", help="keep a VCD waveform in the run folder")
    p = add("bench", cmd_bench, "Verilator vs TLM simulated cycles per second (on-chip tables and with the memory "
                                "system), frame-model seconds per 800x800 frame; writes runs/bench/",
            config_help="preset YAML (default: flows/configs/default.yaml)")
    p.add_argument("--points", type=option(int, ge=2), default=10_000, help="workload size, >= 2 (default 10000)")
    p.add_argument("--seed", type=option(int, ge=0), default=1)
    p = sub.add_parser("train", help="train the radiance field; writes runs/train-<scene>-<preset>/ (resumable)",
                       description="Train the Instant-NGP-style field (or TensoRF-VM, --model tensorf) on a scene and "
                                   "evaluate it on the test views. "
                                   "Re-running the same command resumes from the last checkpoint.")
    p.add_argument("--scene", default="builtin",
                   help="'builtin', a Blender folder (transforms_*.json), an LLFF folder (poses_bounds.npy) or an "
                        "Instant-NGP / nerfstudio folder (transforms.json) (default builtin)")
    p.add_argument("--preset", default="tiny",
                   help="tiny | small | full; TensoRF: tiny | tiny-paper | smoke (default tiny)")
    p.add_argument("--model", choices=("ngp", "tensorf"), default="ngp",
                   help="ngp: Instant-NGP; tensorf: TensoRF-VM, written to runs/train-<scene>-<preset>-tensorf/ "
                        "(default ngp)")
    p.add_argument("--downscale", type=option(int, ge=1), help="image downscale factor (default: the preset's)")
    p.add_argument("--iterations", type=option(int, ge=1), help="override the preset's iteration count")
    p.add_argument("--until", type=option(int, ge=1),
                   help="stop after this iteration (checkpointed); run again to continue")
    p.add_argument("--checkpoint-seconds", type=option(float, gt=0),
                   help="also checkpoint after this much wall time (default: the preset's, 60)")
    p.add_argument("--background", choices=("random", "white"),
                   help="training background of scenes with alpha (default random; evaluation uses white)")
    p.add_argument("--skip-missing", action="store_true",
                   help="load the frames that exist when the transforms file lists missing ones")
    p.add_argument("--name", help="run name (default <scene>-<preset>)")
    p.add_argument("--seed", type=option(int, ge=0), default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="run the field through torch.compile (default on for ngp, off for tensorf, whose "
                        "compiled training was not measured; --no-compile for plain eager PyTorch)")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("kilonerf", help="distil a trained field into KiloNeRF; writes runs/kilonerf-<scene>-<preset>/ "
                                        "(resumable)",
                       description="Distil the Instant-NGP field of `make train` (same SCENE and PRESET) into a grid "
                                   "of tiny MLPs (KiloNeRF), fine-tune it on the training images and evaluate both on "
                                   "the same test views. Re-running the same command resumes.")
    p.add_argument("--scene", default="builtin", help="the scene the teacher was trained on (default builtin)")
    p.add_argument("--preset", default="tiny", help="the teacher's training preset (default tiny)")
    p.add_argument("--kilo", help="KiloNeRF preset: tiny | smoke (default: the one named like --preset, else tiny)")
    p.add_argument("--cells", type=option(int, ge=1), help="networks along the box's longest side (default 16)")
    p.add_argument("--distill-iterations", type=option(int, ge=0), help="override the preset's distillation iterations")
    p.add_argument("--finetune-iterations", type=option(int, ge=0), help="override the preset's fine-tuning iterations")
    p.add_argument("--until", choices=("prepare", "distill"), help="stop after this stage (checkpointed)")
    p.add_argument("--seed", type=option(int, ge=0), default=0)
    p.set_defaults(func=cmd_kilonerf)
    p = sub.add_parser("kilo-compare", help="Instant-NGP vs KiloNeRF on one scene and accelerator preset; writes "
                                            "runs/kilo-compare-<scene>-<preset>-<hw>/",
                       description="PSNR, frame latency (compute, weight switching, memory stalls), model bytes and "
                                   "area of Instant-NGP (from `make compare`) and KiloNeRF (from `make kilonerf`) at "
                                   "full precision, uniform PTQ and the searched policy.")
    p.add_argument("--scene", default="builtin", help="the scene (default builtin)")
    p.add_argument("--preset", default="tiny", help="the training preset (default tiny)")
    p.add_argument("--hw", default="default", help="hardware preset: flows/accel/<name>.yaml (default default)")
    p.add_argument("--bits", type=bits_list(2, 16), default="8,6,4",
                   help="KiloNeRF's uniform PTQ widths, comma-separated, each in [2, 16] (default 8,6,4)")
    p.add_argument("--area", action=argparse.BooleanOptionalAction, default=True,
                   help="synthesise the engines' area (hw.array_area, cached in build/area; default on)")
    p.set_defaults(func=cmd_kilo_compare)
    for name, func, help in (
            ("quantize", cmd_quantize, "PTQ-evaluate one policy on a trained field; writes "
                                       "runs/quantize-<scene>-<preset>-<policy>/summary.json"),
            ("sweep", cmd_sweep, "uniform PTQ sweep; writes runs/sweep-<scene>-<preset>/ (table, PSNR-vs-FQR plot)")):
        p = sub.add_parser(name, help=help, description=help + ". Needs the checkpoint of `make train` with the same "
                                                               "SCENE and PRESET.")
        _scene_options(p, "the training preset (default tiny)")
        if name == "quantize":
            p.add_argument("--policy", default="uniform-8", type=policy_spec,
                           help="uniform-<bits>, fp, or a policy YAML file (default uniform-8)")
            _quantizer_options(p)
            p.add_argument("--hw", default="onchip",
                           help="hardware preset of the reported frame latency: flows/accel/<name>.yaml, tables on "
                                "chip (default onchip)")
            p.set_defaults(check=check_quantizer_options)
        else:
            p.add_argument("--bits", default="16,12,10,8,6,4", type=bits_list(2, 32),
                           help="comma-separated bitwidths in [2, 32] (default 16,12,10,8,6,4)")
        p.add_argument("--rays", type=option(int, ge=1), default=16384,
                       help="calibration rays from the training views (default 16384)")
        p.add_argument("--seed", type=option(int, ge=0), default=0, help="calibration ray seed (default 0)")
        p.set_defaults(func=func)
    p = sub.add_parser("memory", help="what the tables in DRAM cost on a trained scene: cache hit rates per level, "
                                      "DRAM bytes, stalls, latency; writes runs/memory-<scene>-<preset>/",
                       description="Render one validation view's samples (after empty-space skipping, ray-major) and "
                                   "run the exact memory-aware frame model for several cache configurations, at "
                                   "uniform-8 and with every table level at --table-bits.")
    _scene_options(p)
    p.add_argument("--hw", default="default", help="hardware preset with a memory section (default default)")
    p.add_argument("--size", type=option(int, ge=8), default=800, help="frame pixels per side (default 800)")
    p.add_argument("--view", type=option(int, ge=0), default=0, help="validation view (default 0)")
    p.add_argument("--table-bits", type=option(int, ge=2, le=16), default=4,
                   help="table width compared with uniform-8 (default 4)")
    p.set_defaults(func=cmd_memory)
    from flows.search import MODELS

    p = sub.add_parser("search", help="DDPG mixed-precision policy search; writes runs/search-<scene>-<preset>-<objective>/",
                       description="HAQ-style DDPG search of per-component bits for a trained field: PSNR from PTQ on "
                                   "validation views, latency from the frame-level model of a hardware preset. "
                                   "Needs the checkpoint of `make train` with the same SCENE and PRESET.")
    _scene_options(p)
    p.add_argument("--hw", default="default", help="hardware preset: flows/accel/<name>.yaml or a path (default default)")
    p.add_argument("--episodes", type=option(int, ge=1), default=60, help="episodes in total (default 60)")
    p.add_argument("--objective", default="latency", choices=("latency", "tradeoff", "quality"),
                   help="latency: best PSNR within BUDGET x uniform-8 latency (HAQ); tradeoff: "
                        "0.1 dPSNR - lam log2(latency / uniform-8); quality: lowest latency with PSNR >= "
                        "PSNR_fp - MAX_LOSS (reward -log2(latency / uniform-8) - max(0, deficit in dB))")
    p.add_argument("--budget", type=option(float, gt=0), default=0.5,
                   help="latency budget, fraction of uniform-8 (default 0.5)")
    p.add_argument("--lam", type=option(float, ge=0), default=0.1,
                   help="trade-off weight (default 0.1: halving latency = 1 dB)")
    p.add_argument("--max-loss", type=option(float, gt=0), default=0.5,
                   help="quality objective: PSNR loss allowed against full precision, dB (default 0.5)")
    p.add_argument("--b-min", type=option(int, ge=2, le=32), default=2, help="fewest bits per component (default 2)")
    p.add_argument("--b-max", type=option(int, ge=2, le=32), default=8, help="most bits per component (default 8)")
    p.add_argument("--val-views", type=option(int, ge=1), default=4,
                   help="validation views scored per episode (default 4)")
    p.add_argument("--warmup", type=option(int, ge=0), default=20,
                   help="random-action episodes before learning (default 20)")
    p.add_argument("--rays", type=option(int, ge=1), default=8192, help="calibration rays (default 8192)")
    p.add_argument("--seed", type=option(int, ge=0), default=0, help="agent and calibration seed (default 0)")
    p.add_argument("--resume", action="store_true", help="continue the search in the run folder")
    p.add_argument("--name", help="run name (default <scene>-<preset>-<objective>)")
    p.add_argument("--workload-size", type=option(int, ge=1, le=4096), default=800,
                   help="tables in DRAM, and KiloNeRF: pixels per side of the validation view whose samples are "
                        "the frame's workload (default 800: the 800x800 frame itself)")
    p.add_argument("--model", default="ngp", choices=MODELS,
                   help="ngp: the trained field of `make train`; kilonerf: its KiloNeRF of `make kilonerf` "
                        "(default ngp)")
    _quantizer_options(p, search=True)
    p.set_defaults(func=cmd_search, check=check_search)
    p = sub.add_parser("acaq", help="A-CAQ learned bitwidths (MDL or MGL) on a trained field; writes "
                                    "runs/acaq-<scene>-<preset>-<mdl|mglP>/ (resumable)",
                       description="Fine-tune a trained field with A-CAQ's learned-bitwidth quantization (LBQ): "
                                   "weights, tables and quantizer ranges on the reconstruction loss, the soft "
                                   "bitwidths on sqrt(|L - L_metric|) + eps * penalty. MDL: L_metric is the "
                                   "full-precision training loss; MGL: a target. Writes policy.yaml, the fine-tuned "
                                   "checkpoint, summary.json (PSNR, SSIM, FQR, BitOps, storage, latency per "
                                   "accelerator preset) and bits.png. Re-running resumes.")
    _scene_options(p)
    p.add_argument("--mode", default="mdl", choices=("mdl", "mgl"),
                   help="mdl: minimal degradation; mgl: metric-guided, needs --target (default mdl)")
    p.add_argument("--target", type=_target,
                   help="MGL target: a training PSNR in dB (>= 1, e.g. 30) or an MSE in (0, 1) (e.g. 1e-3)")
    p.add_argument("--eps", type=option(float, ge=0), default=1e-3,
                   help="weight of the bit penalty, >= 0 (default 1e-3)")
    p.add_argument("--iterations", type=option(int, ge=1), default=None,
                   help="fine-tuning iterations (default 600; the paper uses 3000 on a GPU)")
    p.add_argument("--until", type=option(int, ge=1),
                   help="stop after this iteration (checkpointed); run again to continue")
    p.add_argument("--checkpoint-seconds", type=option(float, gt=0), default=60.0,
                   help="checkpoint after this much wall time (default 60)")
    p.set_defaults(func=cmd_acaq, check=check_acaq)
    p = sub.add_parser("acaq-table", help="A-CAQ's Table 4 rows on one scene (FP; MDL: PTQ / LSQ+ 8b vs A-CAQ; MGL at "
                                          "two targets: PTQ / LSQ+ at matching bits vs A-CAQ); writes "
                                          "runs/acaq-table-<scene>-<preset>/",
                       description="Run (or reuse) every fine-tuning of A-CAQ's Table 4 on one scene and tabulate FQR, "
                                   "PSNR, SSIM, TBitOps (800x800), storage and latency on the default accelerator.")
    _scene_options(p)
    p.add_argument("--targets", type=_targets, default=None,
                   help="comma-separated MGL targets, PSNR dB or MSE (default 30,28)")
    p.add_argument("--iterations", type=option(int, ge=1), default=None,
                   help="fine-tuning iterations of every A-CAQ and LSQ+ run (default 600)")
    p.set_defaults(func=cmd_acaq_table)
    from flows.inr.methods import GRANULARITIES, ROTATIONS, TRAINING
    from quant.choices import CALIBRATIONS

    p = sub.add_parser("inr", help="DHQ vs uniform quantization of a SIREN image INR; writes runs/inr-<image>/",
                       description="Fit a SIREN to a scikit-image picture, then quantize every layer's weights and "
                                   "input activations to each of BITS by uniform min-max PTQ, LSQ+ fine-tuning, DHQ "
                                   "(Hadamard rotation + the same PTQ) and DHQ + LSQ+; writes summary.json, "
                                   "table.md/csv, histograms.png and reconstructions.png. Re-running reuses the "
                                   "fitted model and the finished cells.")
    p.add_argument("--image", default="camera", choices=sorted(IMAGES), metavar="IMAGE",
                   help="a skimage.data picture: " + ", ".join(sorted(IMAGES)) + " (default camera)")
    p.add_argument("--bits", default="8,6,4,3", type=bits_list(2, 16),
                   help="comma-separated bitwidths in [2, 16] (default 8,6,4,3)")
    p.add_argument("--size", type=option(int, ge=8), help="longer image side after downscaling, pixels, >= 8 "
                                                          "(default 256)")
    p.add_argument("--steps", type=option(int, ge=1), help="full-precision Adam steps (default 500)")
    p.add_argument("--finetune-steps", type=option(int, ge=0),
                   help="LSQ+ fine-tuning Adam steps per bitwidth (default 50; 0: none)")
    p.add_argument("--width", type=width, help="hidden width, a power of two <= 128 (default 64)")
    p.add_argument("--seed", type=option(int, ge=0), help="seed (default 0)")
    p.add_argument("--coord-bits", type=option(int, ge=2, le=32),
                   help="bits of the first layer's input, the pixel coordinates, in [2, 32] (default 16, "
                        "whatever BITS is)")
    g = p.add_argument_group("crossed settings (any of these: every combination of the lists, no ablations; "
                             "unset lists default to none,all / min-max / tensor / ptq,qat)")
    g.add_argument("--rotations", type=choice_list(ROTATIONS, "rotation"),
                   help="comma-separated rotation placements: " + ", ".join(ROTATIONS))
    g.add_argument("--calibrations", type=choice_list(CALIBRATIONS, "calibration"),
                   help="comma-separated step calibrations: " + ", ".join(CALIBRATIONS))
    g.add_argument("--granularities", type=choice_list(GRANULARITIES, "granularity"),
                   help="comma-separated weight step granularities: " + ", ".join(GRANULARITIES))
    g.add_argument("--training", type=choice_list(TRAINING, "training"),
                   help="comma-separated: ptq (calibrated steps), qat (LSQ+ from them, --finetune-steps)")
    p.set_defaults(func=cmd_inr)
    from flows.inr.crossed import DEFAULT_IMAGES

    p = sub.add_parser("inr-table", help="the crossed INR table over images: mean PSNR of every setting, best "
                                         "uniform vs best DHQ per bitwidth; writes <runs>/crossed.{md,json,png}",
                       description="Aggregate the crossed `inr` runs of several images (written with "
                                   "`--runs <folder> inr --image X --rotations ...`; `make inr-cross` does both).")
    p.add_argument("--images", type=choice_list(tuple(sorted(IMAGES)), "image"), default=DEFAULT_IMAGES,
                   help="comma-separated skimage.data pictures (default " + ",".join(DEFAULT_IMAGES) + ")")
    p.set_defaults(func=cmd_inr_table)
    p = sub.add_parser("compare", help="our quality-constrained search vs A-CAQ, PTQ and LSQ+ at equal PSNR; writes "
                                       "runs/compare-<scene>-<preset>-<hw>/ (resumable)",
                       description="On one trained field and accelerator preset: full precision, PTQ and LSQ+ at "
                                   "several bits, A-CAQ MDL and MGL, and the DDPG search under the quality objective "
                                   "(finalised by LSQ+ fine-tuning), as Ray tasks; table, Pareto plot, ratios "
                                   "against A-CAQ at equal PSNR, report.html.")
    _scene_options(p)
    p.add_argument("--hw", default="default", help="hardware preset (default default)")
    p.add_argument("--seed", type=option(int, ge=0), default=0, help="seed of every method (default 0)")
    _work_options(p)
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("grid", help="the comparison over scenes x hardware presets x seeds on Ray; writes "
                                    "runs/grid-<name>/ and one compare-* folder each (resumable)",
                       description="Every method of `compare` for every scene, preset and seed as Ray tasks "
                                   "(ray.init() here, or the cluster at RAY_ADDRESS); a failed cell is recorded "
                                   "and the grid goes on; a rerun keeps finished cells.")
    p.add_argument("--scenes", type=_csv("scene list"), required=True,
                   help="comma-separated scenes ('builtin' or folders trained with `make train`)")
    p.add_argument("--preset", default="tiny", help="the training preset (default tiny)")
    p.add_argument("--hws", type=_csv("preset list"), default=["default"], help="comma-separated hardware presets")
    p.add_argument("--seeds", type=_csv("seed list", option(int, ge=0)), default=[0], help="comma-separated seeds")
    p.add_argument("--name", default="main", help="grid name: runs/grid-<name>/ (default main)")
    _work_options(p)
    p.set_defaults(func=cmd_grid)
    p = sub.add_parser("compress", help="rate-distortion of compressed fields with real bitstreams; writes "
                                        "runs/compress-<scene>-<preset>-<model>/ (resumable)",
                       description="TensoRF: ECTensoRF (latent codes, learned masks, factorized entropy model, "
                                   "range-coded bitstream) at each lambda, its ablations without masks and without "
                                   "importance weights, and uniform quantization + zstd of the same planes. "
                                   "Instant-NGP: the hash-table codes of uniform (and given) policies range-coded "
                                   "under a learned entropy model, against zstd. Every PSNR is of the model decoded "
                                   "from its file alone. Re-running skips finished points.")
    _scene_options(p)
    p.add_argument("--model", choices=("tensorf", "ngp"), default="tensorf",
                   help="the field of `make train ... MODEL=tensorf` or the Instant-NGP one (default tensorf)")
    p.add_argument("--lambdas", type=_csv("lambda list", option(float, gt=0)), default=[0.003, 0.01, 0.03, 0.1],
                   help="ECTensoRF rate weights (> 0), per bit per feature parameter (default 0.003,0.01,0.03,0.1)")
    p.add_argument("--ablation-lambda", type=option(float, gt=0),
                   help="lambda of the ablations without masks / importance (default: the median lambda)")
    p.add_argument("--bits", type=bits_list(2, 8), default=(8, 6, 4),
                   help="bitwidths of the uniform baselines (TensoRF) or uniform policies (Instant-NGP) "
                        "(default 8,6,4)")
    p.add_argument("--iterations", type=option(int, ge=1),
                   help="ECTensoRF iterations with the rendering loss (default: quant.ectensorf.CompressSettings')")
    p.add_argument("--recon-iterations", type=option(int, ge=0),
                   help="ECTensoRF iterations before them on the plane reconstruction and rate only (default: "
                        "CompressSettings')")
    p.add_argument("--policy", action="append", help="an Instant-NGP policy YAML to code too (repeatable)")
    p.add_argument("--seed", type=option(int, ge=0), default=0)
    p.set_defaults(func=cmd_compress)
    p = sub.add_parser("hwrender", help="test views rendered through the accelerator's integer arithmetic; writes "
                                        "runs/hwrender-<scene>-<preset>-<policy>-<hw>/",
                       description="PTQ of the trained field at the accelerator top's widths, the integer export "
                                   "(model.nhwi: table codes, weight codes, biases, requantization multipliers and "
                                   "shifts, activation tables), and every test view rendered by the fake-quantized "
                                   "float model and by the top's bit-exact integer reference; PSNR / SSIM of both "
                                   "against ground truth, the hardware renders and their differences.")
    _scene_options(p)
    p.add_argument("--policy", help="uniform-<bits> or a policy YAML, by PTQ (default uniform-8); renderer inputs at "
                                    "32 bits run at 16")
    p.add_argument("--checkpoint", help="a QAT-finalised field instead: an LSQ+ fine-tuning checkpoint of the trained "
                                        "field (runs/final-*/checkpoint.pt of make compare), with its own policy")
    p.add_argument("--hw", default="default", help="hardware preset (default default)")
    p.add_argument("--views", type=option(int, ge=1), help="render only the first N test views (default all)")
    p.add_argument("--breakdown", action="store_true",
                   help="split the hardware's difference to fake-quant into the SH grid, the datapath, 8-bit pixels "
                        "and the compositor (two more renders per view)")
    p.set_defaults(func=cmd_hwrender)
    p = sub.add_parser("dhq-area", help="the DHQ Hadamard datapath vs a 16- and 32-bit fixed-point baseline of the "
                                        "same layer, synthesised (Yosys, xc7); writes runs/dhq-area/",
                       description="Synthesise every Hadamard preset and, for each, the full-precision fixed-point "
                                   "baseline of the same layer (hw.fixed_mv: same n, m, R, C) with Yosys "
                                   "(cached in build/area; minutes the first time); LUT, FF, DSP, BRAM18, cycles "
                                   "per vector from the TLMs, latency, an energy proxy, and the relative change "
                                   "beside the DHQ paper's claims. Writes summary.json and table.md.")
    p.add_argument("--presets", type=_csv("preset list"),
                   help="comma-separated Hadamard presets of flows/configs (default every had-* preset)")
    p.add_argument("--bits", type=bits_list(8, 32), default=(16, 32),
                   help="comma-separated fixed-point widths of the baselines in [8, 32] (default 16,32)")
    p.add_argument("--family", choices=("xc7", "ice40"), default="xc7", help="FPGA family (default xc7)")
    p.set_defaults(func=cmd_dhq_area)
    p = sub.add_parser("report", help="one self-contained HTML page for a search or comparison run folder",
                       description="Writes <run>/report.html: table, Pareto plot, latency by engine, bits per "
                                   "component, renders, co-simulation status.")
    p.add_argument("--run", required=True, help="the run folder, e.g. runs/compare-<scene>-tiny-default")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("demo", help="the main job on the built-in scene: train, search, Verilog, co-simulation",
                       description="Train the field (tiny) on the built-in scene, run a short DDPG search, generate "
                                   "the engines for the best policy and co-simulate them against the TLMs. Resumes.")
    p.add_argument("--seed", type=option(int, ge=0), default=1, help="co-simulation workload seed (default 1)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check = getattr(args, "check", None)
    problem = check(args) if check else None
    if problem:  # a cross-option rule: refused like a bad option, before any work
        print(f"python -m flows.cli {args.command}: error: {problem}", file=sys.stderr)
        return 2
    from hw.params import ConfigError

    try:
        return args.func(args)
    except (ConfigError, ValueError, RuntimeError, FileNotFoundError) as exc:  # Data/CheckpointError: ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
