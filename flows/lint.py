"""``make lint``: ``verilator --lint-only -Wall`` on generated Verilog, with the waivers of hw/lint.vlt and
hw/<engine>/lint.vlt."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["lint_verilog", "lint_preset"]


def lint_verilog(path: str | Path) -> tuple[bool, str]:
    """Lint one Verilog file; returns ``(clean, verilator output)``. Any warning makes it unclean."""
    from sim.cosim.runner import lint_configs, verilator_env

    verilator_env()
    proc = subprocess.run(
        ["verilator", "--lint-only", "-Wall", *map(str, lint_configs()), str(path)],
        capture_output=True,
        text=True,
    )
    output = (proc.stdout + proc.stderr).strip()
    return proc.returncode == 0 and "%Warning" not in output, output


def lint_preset(config: str | Path, out_dir: str | Path) -> list[tuple[Path, bool, str]]:
    """Write and lint the Verilog of every engine section of a preset (``<out_dir>/<engine>.v``).

    Returns:
        ``[(verilog path, clean, verilator output), ...]`` in the preset's section order.

    Raises:
        hw.config.ConfigError: a bad preset.
    """
    from hw.export import write_verilog
    from hw.registry import load_config

    results = []
    for params in load_config(config).values():
        path = write_verilog(params, out_dir)
        results.append((path, *lint_verilog(path)))
    return results
