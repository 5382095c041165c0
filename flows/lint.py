"""``make lint``: ``verilator --lint-only -Wall`` on generated Verilog, with the waivers of hw/lint.vlt."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["lint_verilog"]


def lint_verilog(path: str | Path) -> tuple[bool, str]:
    """Lint one Verilog file; returns ``(clean, verilator output)``. Any warning makes it unclean."""
    from sim.cosim.runner import lint_config, verilator_env

    verilator_env()
    proc = subprocess.run(
        ["verilator", "--lint-only", "-Wall", str(lint_config()), str(path)],
        capture_output=True,
        text=True,
    )
    output = (proc.stdout + proc.stderr).strip()
    return proc.returncode == 0 and "%Warning" not in output, output
