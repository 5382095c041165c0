"""Resuming ``make inr``: the cells a previous ``summary.json`` of the same settings already holds."""

from __future__ import annotations

import json
from pathlib import Path

from flows.inr.plots import recon_path
from flows.inr.settings import InrSettings

__all__ = ["done_cells", "todo"]


def done_cells(out: Path, settings: InrSettings, log=print) -> dict[str, dict]:
    """``{"<method>@<B>": {"psnr", "ssim", "seconds"}}`` from ``out/summary.json``, if it has these settings.

    Every method of the summary's rows counts, so a run with other methods keeps the cells they share.

    A cell counts only if its reconstruction PNG exists too. A summary of other settings is ignored
    and ``log`` names the settings that changed; an unreadable one is ignored silently.
    """
    path = out / "summary.json"
    if not path.is_file():
        return {}
    try:
        prior = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if not isinstance(prior, dict):
        return {}
    if prior.get("settings") != settings.to_dict():
        if isinstance(prior.get("settings"), dict) and prior["settings"]:
            changed = [k for k, v in settings.to_dict().items() if prior["settings"].get(k) != v]
            log(f"{path}: computed with other settings ({', '.join(changed)}): recomputing its rows")
        return {}
    cells = {}
    for r in prior.get("rows", []):
        for m, cell in r.items():
            if isinstance(cell, dict) and "psnr" in cell and recon_path(out, m, r["bits"]).is_file():
                cells[f"{m}@{r['bits']}"] = {k: cell[k] for k in ("psnr", "ssim", "seconds", "rotated") if k in cell}
    return cells


def todo(bits, cells: dict, methods) -> list[tuple[str, int]]:
    """The (method, B) cells of ``methods`` (names, in order) still to compute, row by row."""
    return [(m, b) for b in bits for m in methods if f"{m}@{b}" not in cells]
