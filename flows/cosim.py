"""``make cosim``: Verilog of a preset, a cocotb + Verilator run against the TLM, a summary.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from hw.params import load_config
from nerf.atomic import atomic_write_text

__all__ = ["run_cosim", "config_name"]

ENGINE = "hash_encoder"
TEST_MODULE = "sim.cosim.tb_hash_encoder"


def config_name(config: str | Path) -> str:
    """Preset name: the config file's stem (``flows/configs/lanes.yaml`` -> ``lanes``)."""
    return Path(config).stem


def run_cosim(
    config: str | Path,
    *,
    points: int = 2000,
    seed: int = 1,
    waves: bool = False,
    fault: str | None = None,
    idle: bool = True,
    backpressure: bool = True,
    build_root: str | Path = "build",
    runs_root: str | Path = "runs",
    run_name: str | None = None,
) -> dict:
    """Co-simulate the hash encoder of one preset and write ``<runs_root>/cosim-<name>/summary.json``.

    Args:
        config: a preset YAML with a ``hash_encoder`` section.
        points: input transactions (random points, with 0 and the largest coordinate).
        seed: workload seed (points, tables, gaps, backpressure).
        waves: keep a VCD waveform in the run folder.
        fault: inject a model fault ("cycle" or "bit") to prove the scoreboard fails.
        run_name: run folder name; default ``cosim-<config name>``.

    Returns:
        The summary dict: engine, config, transactions, mismatches, cycles_rtl, cycles_tlm, wall times
        (seconds), passed, and the paths of the Verilog, log and waveform.

    Raises:
        hw.params.ConfigError: a bad preset. RuntimeError: the simulator gave no result.
    """
    from hw.export import write_verilog
    from sim.cosim import runner

    name = config_name(config)
    params = load_config(config).get(ENGINE)
    if params is None:
        raise ValueError(f"config {str(config)!r} has no {ENGINE!r} section")
    build_root, runs_root = Path(build_root), Path(runs_root)
    verilog = write_verilog(params, build_root / "verilog" / name)
    sim_build = build_root / "cosim" / (name + ("-waves" if waves else ""))
    sim, build_seconds = runner.build(verilog, ENGINE, sim_build, waves=waves)
    run_dir = runs_root / (run_name or f"cosim-{name}")
    job = {"params": params.to_dict(), "points": points, "seed": seed, "fault": fault,
           "idle": idle, "backpressure": backpressure}
    result = runner.run(sim, toplevel=ENGINE, test_module=TEST_MODULE, build_dir=sim_build,
                        run_dir=run_dir, job=job, waves=waves)
    shutil.copyfile(config, run_dir / "config.yaml")
    summary = {
        "engine": ENGINE,
        "config": name,
        "config_path": str(config),
        "params": params.to_dict(),
        "seed": seed,
        "points": points,
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
