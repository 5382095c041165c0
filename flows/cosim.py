"""``make cosim``: Verilog of a preset's engine, a cocotb + Verilator run against the TLM, a summary.json.

Engine-agnostic: the engine's testbench, workload and summary lines come from ``hw.registry.ENGINES``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from common.atomic import atomic_write_text
from hw.config import ConfigError
from hw.registry import ENGINES, load_config, read_params_line

__all__ = ["run_cosim", "run_top_cosim", "config_name", "config_engines", "check_verilog", "summary_lines",
           "TOP_TRAIN", "top_accelerator", "whole_rays", "top_workload",
           "TEST_MODULES"]

#: Engine section -> cocotb test module (from the registry).
TEST_MODULES = {name: engine.testbench for name, engine in ENGINES.items()}


def config_name(config: str | Path) -> str:
    """Preset name: the config file's stem (``flows/configs/lanes.yaml`` -> ``lanes``)."""
    return Path(config).stem


def config_engines(config: str | Path) -> list[str]:
    """The engine sections present in a preset, in file order."""
    return list(load_config(config))


def check_verilog(verilog: str | Path, engine: str, params) -> Path:
    """Check that ``verilog`` was generated for ``engine`` with exactly ``params`` (its first line,
    ``hw.config.params_line``), so that a co-simulation of it checks what the caller describes.

    Returns:
        The path.

    Raises:
        ConfigError: no such file, no parameter line, another engine, or different parameters
            (naming each differing field, the file's value and the expected one).
    """
    path = Path(verilog)
    if not path.is_file():
        raise ConfigError(f"verilog {str(path)!r}: no such file")
    found = read_params_line(path)
    if found is None:
        raise ConfigError(f"verilog {str(path)!r} has no nerfhw parameter line; generate it with `make verilog`")
    section, values = found
    if section != engine:
        raise ConfigError(f"verilog {str(path)!r} is a {section} engine, not {engine}")
    want = {k: str(v) for k, v in params.to_dict().items()}
    diff = [f"{k}={values.get(k, '(missing)')} (expected {v})" for k, v in want.items() if values.get(k) != v]
    diff += [f"{k}={v} (not a parameter)" for k, v in values.items() if k not in want]
    if diff:
        raise ConfigError(f"verilog {str(path)!r} was generated with other {engine} parameters: {', '.join(diff)}")
    return path


def run_cosim(
    config: str | Path,
    *,
    engine: str | None = None,
    points: int = 2000,
    vectors: int = 30,
    phases: int | None = None,
    shapes: list | None = None,
    seed: int = 1,
    init_seed: int = 1,
    waves: bool = False,
    fault: str | None = None,
    idle: bool = True,
    backpressure: bool = True,
    verilog: str | Path | None = None,
    build_root: str | Path = "build",
    runs_root: str | Path = "runs",
    run_name: str | None = None,
) -> dict:
    """Co-simulate one engine of one preset and write ``<runs_root>/cosim-<name>/summary.json``.

    Args:
        config: a preset YAML.
        engine: the section to simulate; default the preset's only section. When a preset has
            several, each gets its own run folder ``cosim-<name>-<engine>`` and build folder.
        points: hash encoder: input transactions (random points, with 0 and the largest coordinate).
        vectors: MLP engine and Hadamard datapath: input vectors, split over the phases.
        phases: MLP engine and Hadamard datapath: random configurations written one after the other
            (each while idle); default 3, or one per size list of ``shapes``. An MLP engine with two
            weight banks runs random cell visits instead (groups of vectors, the next cell's weights
            loaded while the current one computes): ``phases`` distinct cells, ``shapes`` per cell.
        shapes: MLP engine: layer sizes ``[in_0, out_0, ..., out_last]`` for every phase, or a list of
            them, one per phase (e.g. ``[[32, 64, 16], [31, 64, 64, 3]]``); default random. Other
            engines ignore it.
        seed: workload seed (data, configurations, gaps, backpressure).
        init_seed: seed of the random initial state of every register and memory without an
            explicit initial value (``sim.cosim.runner.random_init_plusargs``), >= 1.
        waves: keep a VCD waveform in the run folder.
        fault: inject a model fault ("cycle" or "bit") to prove the scoreboard fails.
        verilog: co-simulate this file (the output of ``make verilog``) instead of generating one; its
            parameter line must match the preset's parameters (``check_verilog``).
        run_name: run folder name; default ``cosim-<config name>``.

    Returns:
        The summary dict: engine, config, transactions, mismatches, cycles_rtl, cycles_tlm, wall times
        (seconds), passed, and the paths of the simulated Verilog, the log and the waveform.

    Raises:
        hw.config.ConfigError: a bad preset, or a Verilog file for other parameters.
        ValueError: no such section, bad shapes, counts or seeds. RuntimeError: the simulator gave no result.
    """
    from hw.export import write_verilog
    from sim.cosim import runner

    name = config_name(config)
    sections = load_config(config)
    if engine is None:
        if len(sections) != 1:
            raise ValueError(f"config {str(config)!r} has several engine sections ({', '.join(sections)}); "
                             "name one")
        engine = next(iter(sections))
    params = sections.get(engine)
    if params is None:
        raise ValueError(f"config {str(config)!r} has no {engine!r} section")
    record = ENGINES[engine]
    # Every check before the (slow) generation and build.
    workload = record.load("workload")(params, points=points, vectors=vectors, phases=phases, shapes=shapes)
    runner.random_init_plusargs(init_seed)
    tag = name if len(sections) == 1 else f"{name}-{engine}"
    build_root, runs_root = Path(build_root), Path(runs_root)
    if verilog is None:
        verilog = write_verilog(params, build_root / "verilog" / name)
    else:
        verilog = check_verilog(verilog, engine, params)
    sim_build = build_root / "cosim" / (tag + ("-waves" if waves else ""))
    sim, build_seconds = runner.build(verilog, engine, sim_build, waves=waves)
    run_dir = runs_root / (run_name or f"cosim-{tag}")
    job = {"params": params.to_dict(), **workload, "seed": seed, "fault": fault,
           "idle": idle, "backpressure": backpressure}
    result = runner.run(sim, toplevel=engine, test_module=record.testbench, build_dir=sim_build,
                        run_dir=run_dir, job=job, waves=waves, init_seed=init_seed)
    shutil.copyfile(config, run_dir / "config.yaml")
    summary = {
        "engine": engine,
        "config": name,
        "config_path": str(config),
        "params": params.to_dict(),
        "seed": seed,
        "init_seed": init_seed,
        **workload,
        "fault": fault,
        **result.result,
        "passed": result.passed,
        "build_seconds": round(build_seconds, 3),
        "test_seconds": round(result.test_seconds, 3),
        "verilog": str(verilog),
        "log": str(result.log),
        "waves": str(result.waves) if result.waves else None,
    }
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def summary_lines(summary: dict) -> list[str]:
    """The lines of a printed co-simulation summary: the result, the engine's own lines (its
    registry ``summary``), wall times and the summary file, the waveform and mismatches."""
    s = summary
    ok = "PASS" if s["passed"] and s["mismatches"] == 0 else "FAIL"
    lines = [f"[{ok}] {s['engine']} {s['config']}: {s['transactions']} transactions, {s['mismatches']} mismatches; "
             f"cycles RTL {s['cycles_rtl']} / TLM {s['cycles_tlm']}"]
    lines += ["       " + line for line in ENGINES[s["engine"]].load("summary")(s)]
    lines.append(f"       build {s['build_seconds']:.1f} s, co-simulation {s['test_seconds']:.1f} s "
                 f"(streaming {s['sim_seconds']:.2f} s); Verilog {s['verilog']}; "
                 f"summary: {Path(s['log']).parent / 'summary.json'}")
    if s.get("waves"):
        lines.append(f"       waveform: {s['waves']}")
    lines += [f"       mismatch: {m}" for m in s["mismatch_examples"]]
    return lines


def run_top_cosim(model: str | Path, rays: str | Path, *, seed: int = 1, init_seed: int = 1, idle: bool = True,
                  backpressure: bool = True, fault: str | None = None, waves: bool = False,
                  build_root: str | Path = "build", runs_root: str | Path = "runs",
                  run_name: str = "cosim-top") -> dict:
    """Co-simulate the accelerator top (``hw.top``) loaded with an integer model on whole rays, against
    ``sim.tlm.top.TopTLM`` (``sim.cosim.tb_top``), and write ``<runs_root>/<run_name>/summary.json``.

    Args:
        model: a ``quant.int_export`` file (``save_int``): the top's parameters and everything it loads.
        rays: the rays (``sim.cosim.workload_top.save_rays``, a ``sim.bitexact.RayBatch``).
        seed: the traffic seed (``workload_top.top_traffic``); idle, backpressure: its input gaps and the
            pixels' stalls. init_seed: the random power-up state (>= 1). fault: "cycle" or "bit" (a wrong
            model, to show the scoreboard catches it). waves: keep a VCD waveform.

    Returns:
        The summary: the testbench's result (transfers, mismatches, cycles_rtl, cycles_tlm, ...), passed, the
        build and test wall times (seconds), the Verilog and the log.

    Raises:
        quant.int_export.ExportError, quant.entropy.BitstreamError: an unreadable model file.
        RuntimeError: the simulator gave no result.
    """
    import time

    from hw.top.rtl import write_top_verilog
    from quant.int_export import load_int
    from sim.cosim import runner

    m = load_int(model)  # every check before the (slow) generation and build
    runner.random_init_plusargs(init_seed)
    build_root, runs_root = Path(build_root), Path(runs_root)
    t0 = time.perf_counter()
    verilog = write_top_verilog(m.top, build_root / "verilog" / "top", geo_features=int(m.arch["geo_features"]))
    verilog_seconds = time.perf_counter() - t0
    sim_build = build_root / "cosim" / ("top" + ("-waves" if waves else ""))
    sim, build_seconds = runner.build(verilog, "accelerator_top", sim_build, waves=waves)
    run_dir = runs_root / run_name
    job = {"model": str(Path(model).resolve()), "rays": str(Path(rays).resolve()), "seed": seed, "idle": idle,
           "backpressure": backpressure, "fault": fault}
    result = runner.run(sim, toplevel="accelerator_top", test_module="sim.cosim.tb_top", build_dir=sim_build,
                        run_dir=run_dir, job=job, waves=waves, init_seed=init_seed)
    summary = {"engine": "accelerator_top", "top": m.top.to_dict(), "model_id": m.model, **job, "init_seed": init_seed,
               **result.result, "passed": result.passed, "verilog_seconds": round(verilog_seconds, 3),
               "build_seconds": round(build_seconds, 3), "test_seconds": round(result.test_seconds, 3),
               "verilog": str(verilog), "log": str(result.log), "waves": str(result.waves) if result.waves else None}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


# --- a small trained top: the co-simulation test's and the benchmark's workload ----------------------
#: The training run of ``top_workload``: the built-in scene at 25 x 25, 4 levels of 2^8 entries, an MLP width of 8.
TOP_TRAIN = dict(name="topcosim", iterations=300, batch_rays=256, n_samples=12, log2_table_size=8, levels=4, n_min=4,
                 n_max=32, ngp_hidden=8, occupancy_res=16, occupancy_warmup=8, occupancy_every=8, test_every=100,
                 downscale=4, batch_samples=None)


def top_accelerator():
    """One encoder lane and 8 x 8 bit-serial arrays: 196 / 392 cycles per sample for the density / colour MLP
    of ``top_workload``'s model at 8 bits (small Verilog, a quick Verilator build)."""
    from hw.mlp_engine.params import MlpEngineParams
    from sim.mapping import AcceleratorPreset

    mlp = MlpEngineParams(rows=8, cols=8, max_in=64, max_out=64, max_layers=3, max_weight_bits=8, max_act_bits=8)
    return AcceleratorPreset(name="topcosim", lanes=1, coord_bits=16, feature_bits=8, mlp=mlp)


def whole_rays(m, occupancy, data, rng, rows):
    """Rays through the pixels of ``rows`` of test view 0, each as the host prepares it (``flows.hwrender.host_rays``)
    with 1, 3 or 6 samples across the box, and a third of them turned around so that they miss the box (no
    samples): rays with and without samples, in image order, as one ``sim.bitexact.RayBatch``."""
    import dataclasses

    import numpy as np
    import torch

    from flows.hwrender import host_rays
    from nerf.cameras import get_rays
    from sim.bitexact import RayBatch

    o, d = get_rays(data.height, data.width, data.focal, data.poses[0], **data.intrinsics)
    o, d = torch.from_numpy(np.asarray(o, np.float32)), torch.from_numpy(np.asarray(d, np.float32))
    parts = []
    for row in rows:
        for i in range(row * data.width, (row + 1) * data.width):
            sign = -1.0 if rng.random() < 1 / 3 else 1.0
            parts.append(host_rays(m, occupancy, o[i:i + 1], sign * d[i:i + 1], n_samples=int(rng.choice([1, 3, 6]))))
    return RayBatch(*(np.concatenate([getattr(r, f.name) for r in parts]) for f in dataclasses.fields(RayBatch)))


def top_workload(root: str | Path, *, rows=(11, 13), seed: int = 0) -> dict:
    """Train ``TOP_TRAIN`` on the built-in scene, PTQ at the top's widths (uniform 8 bits), export it for
    ``top_accelerator`` and read it back; the rays of ``rows`` of a test view (``whole_rays``).

    Returns:
        ``{"root", "model" (the nerfhw-int file), "rays" (the rays file), "m" (IntModel), "batch" (RayBatch),
        "accel", "policy", "psnr" (the trained field's test PSNR)}``.
    """
    import dataclasses

    import numpy as np

    from nerf.data import load_scene
    from nerf.train import PRESETS, model_from_checkpoint, train
    from quant.int_export import export_int, load_int, save_int
    from quant.policy import QuantPolicy
    from quant.ptq import ptq
    from sim.cosim.workload_top import save_rays
    from sim.mapping import hardware_bits, top_params

    root = Path(root)
    preset = dataclasses.replace(PRESETS["tiny"], **TOP_TRAIN, checkpoint_every=TOP_TRAIN["iterations"])
    summary = train("builtin", preset, root / "train", downscale=4, progress=False)
    model, occupancy, _ = model_from_checkpoint(root / "train" / "checkpoint.pt")
    policy = QuantPolicy.uniform(8, model.arch["levels"])
    bits = hardware_bits(policy, model.arch)
    accel = top_accelerator()
    top = top_params(accel, model.arch, policy)
    train_data = load_scene("builtin", "train", downscale=4)
    ptq(model, occupancy, train_data, QuantPolicy(bits, model.arch["levels"]), n_samples=preset.n_samples, rays=2048)
    save_int(root / "model.nhwi", export_int(model, top, policy, bits))
    m = load_int(root / "model.nhwi", expect={"arch": model.arch, "preset": accel.name})
    test_data = load_scene("builtin", "test", downscale=4)
    rays = whole_rays(m, occupancy, test_data, np.random.default_rng(seed), rows=rows)
    save_rays(root / "rays.npz", rays)
    return {"root": root, "model": root / "model.nhwi", "rays": root / "rays.npz", "m": m, "batch": rays,
            "accel": accel, "policy": policy, "psnr": summary["psnr_test"]}
