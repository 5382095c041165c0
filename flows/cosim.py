"""``make cosim``: Verilog of a preset's engine, a cocotb + Verilator run against the TLM, a summary.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hw.params import load_config
from common.atomic import atomic_write_text

__all__ = ["run_cosim", "config_name", "config_engines", "TEST_MODULES"]

#: Engine section -> cocotb test module.
TEST_MODULES = {
    "hash_encoder": "sim.cosim.tb_hash_encoder",
    "mlp_engine": "sim.cosim.tb_mlp_engine",
    "hadamard": "sim.cosim.tb_hadamard",
}


def config_name(config: str | Path) -> str:
    """Preset name: the config file's stem (``flows/configs/lanes.yaml`` -> ``lanes``)."""
    return Path(config).stem


def config_engines(config: str | Path) -> list[str]:
    """The engine sections present in a preset, in file order."""
    return list(load_config(config))


def run_cosim(
    config: str | Path,
    *,
    engine: str | None = None,
    points: int = 2000,
    vectors: int = 30,
    phases: int = 3,
    shapes: list[int] | None = None,
    seed: int = 1,
    waves: bool = False,
    fault: str | None = None,
    idle: bool = True,
    backpressure: bool = True,
    build_root: str | Path = "build",
    runs_root: str | Path = "runs",
    run_name: str | None = None,
    verilog: str | Path | None = None,
) -> dict:
    """Co-simulate one engine of one preset and write ``<runs_root>/cosim-<name>/summary.json``.

    Args:
        config: a preset YAML.
        engine: the section to simulate; default the preset's only section. When a preset has
            several, each gets its own run folder ``cosim-<name>-<engine>`` and build folder.
        points: hash encoder: input transactions (random points, with 0 and the largest coordinate).
        vectors: MLP engine and Hadamard datapath: input vectors, split over ``phases`` random
            configurations.
        phases: MLP engine and Hadamard datapath: configurations written one after the other (each
            while idle).
        shapes: MLP engine: layer sizes ``[in_0, out_0, ..., out_last]`` for every phase; default random.
            Other engines ignore it.
        seed: workload seed (data, configurations, gaps, backpressure).
        waves: keep a VCD waveform in the run folder.
        fault: inject a model fault ("cycle" or "bit") to prove the scoreboard fails.
        run_name: run folder name; default ``cosim-<config name>``.
        verilog: simulate this Verilog file (written for this section's params, e.g. by the verilog
            step) instead of writing a new one; the summary's ``verilog`` is the simulated path.

    Returns:
        The summary dict: engine, config, transactions, mismatches, cycles_rtl, cycles_tlm, wall times
        (seconds), passed, and the paths of the Verilog, log and waveform.

    Raises:
        hw.params.ConfigError: a bad preset. ValueError: no such section, or bad shapes.
        RuntimeError: the simulator gave no result.
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
    if engine == "hash_encoder":
        workload = {"points": points}
    else:
        if phases < 1 or vectors < phases:
            raise ValueError(f"need at least one vector per phase, not {vectors} vectors for {phases} phases")
        workload = {"vectors": vectors, "phases": phases}
        if engine == "mlp_engine":
            from sim.cosim.traffic import check_shapes

            workload["shapes"] = None if shapes is None else check_shapes(params, shapes)
    tag = name if len(sections) == 1 else f"{name}-{engine}"
    build_root, runs_root = Path(build_root), Path(runs_root)
    verilog = Path(verilog) if verilog is not None else write_verilog(params, build_root / "verilog" / name)
    sim_build = build_root / "cosim" / (tag + ("-waves" if waves else ""))
    sim, build_seconds = runner.build(verilog, engine, sim_build, waves=waves)
    run_dir = runs_root / (run_name or f"cosim-{tag}")
    job = {"params": params.to_dict(), **workload, "seed": seed, "fault": fault,
           "idle": idle, "backpressure": backpressure}
    result = runner.run(sim, toplevel=engine, test_module=TEST_MODULES[engine], build_dir=sim_build,
                        run_dir=run_dir, job=job, waves=waves)
    shutil.copyfile(config, run_dir / "config.yaml")
    summary = {
        "engine": engine,
        "config": name,
        "config_path": str(config),
        "params": params.to_dict(),
        "seed": seed,
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
