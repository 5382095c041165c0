"""``make compare`` and ``make grid``: our quality-constrained search against A-CAQ, PTQ and LSQ+ at equal PSNR.

On one trained field and one accelerator preset, every method's policy is measured the same way: PSNR
and SSIM on the test views, FQR, model bytes, and the preset's frame latency, DRAM bytes per frame and
area of the engines sized for that policy (``sim.mapping.engines_for_policy``). The area
(``AREA_UNITS``) is the two MLP engines' generic cell count, extrapolated from Yosys synthesis of small
arrays at the policy's widths (``hw.array_area``): one synthesis of a full 64 x 32 engine takes tens of
minutes on 2 cores; the hash encoder, whose 1 MB of Verilog takes longer still, is not in the figure.

Methods (each a cell of a Ray grid, ``flows.grid``; each cell one resumable run folder):

* full precision and PTQ at ``bits`` (min-max calibration, ``quant.ptq``);
* LSQ+ at ``bits`` (``flows.acaq.lsq_run``, the MGL learning rate 1e-3, which issue 12 measured as the
  fair one below 8 bits);
* A-CAQ MDL and MGL at ``mgl_target`` dB (``flows.acaq.acaq_run``);
* our DDPG search under the quality objective (``rl.env``, ``OBJECTIVE=quality``) at A-CAQ MDL's PSNR
  loss (at least ``MIN_LOSS``) and at the MGL target (loss = full precision - target); episodes are
  scored by PTQ (the proxy), then the ``finalise`` best distinct policies by reward
  (``flows.search.candidates``) are **finalised**: fine-tuned by LSQ+ at their fixed bits with the same
  iterations and learning rate as the LSQ+ baselines (``flows.acaq.finalise_run``). Only finalised
  numbers enter the table; the proxy's Spearman rank correlation with the finalised PSNR is reported.
  The search's pick is the fastest finalised policy within the bound, else the best finalised PSNR.

Equal-PSNR ratios (``equal_psnr``): each method's Pareto front (no point both slower and worse) is a
piecewise-linear latency-of-PSNR curve through its points. At each A-CAQ point's PSNR P, our front's
latency is interpolated linearly between its two points bracketing P; if our fastest point is already
at least as good as P, its latency is used and the ratio is a lower bound (``>=``); above our best PSNR
there is no ratio. ``latency_ratio`` = A-CAQ's latency / ours; ``cost_efficiency_ratio`` = ours /
A-CAQ's, cost efficiency = 1 / (latency in s x area in cells), interpolated
the same way.

Outputs (``runs/compare-<scene>-<preset>-<hw><suffix>/``): ``table.md``/``table.csv``, ``summary.json``,
``pareto.png``, ``page_sections.json`` and ``report.html`` (``flows.page``), ``cells/`` (the grid's
records). ``make grid`` runs scenes x presets x seeds in one Ray grid (shared fine-tunings run once:
they do not depend on the preset) and writes one compare folder per combination plus
``runs/grid-<name>/grid.md``.
"""

from __future__ import annotations

import hashlib
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from flows.grid import Cell, run_grid
from flows.report import Column, pyplot, save_figure, write_json, write_table
from flows.runs import scene_name

__all__ = ["Budget", "BUDGETS", "MIN_LOSS", "compare", "grid", "equal_psnr", "pareto_front", "summary_lines",
           "mlp_area", "CompareError"]

#: Smallest PSNR loss the MDL-matched search is given, dB: A-CAQ MDL can lose almost nothing (lego: 0.01 dB),
#: a bound no PTQ proxy resolves.
MIN_LOSS = 0.1


class CompareError(ValueError):
    """Bad comparison options (names the option and value) or an unusable earlier run."""


@dataclass(frozen=True)
class Budget:
    """How much work each method gets. ``iterations``: every fine-tuning (LSQ+, A-CAQ, finalisation);
    ``episodes``/``warmup``/``val_views``/``search_rays``: each search; ``finalise``: policies finalised per
    search; ``bits``: the PTQ and LSQ+ rows; ``mgl_target``: dB; ``workload_size``: pixels per side of the
    view whose samples cost latency with the tables in DRAM (800: the frame itself); ``qat_rays``: the
    fine-tunings' calibration and full-precision-loss rays (``quant.acaq.QATSettings``); ``area``: synthesise
    (``AREA_UNITS``; minutes per distinct MLP width pair on 2 cores), else no area or cost efficiency."""

    name: str
    iterations: int = 600
    episodes: int = 24
    warmup: int = 8
    val_views: int = 2
    search_rays: int = 8192
    finalise: int = 3
    bits: tuple[int, ...] = (8, 6, 5, 4)
    mgl_target: float = 28.0
    workload_size: int = 800
    qat_rays: int = 16384
    area: bool = True


BUDGETS = {
    "full": Budget("full"),
    # the grid on 2 cores: a sixth of the fine-tuning, the uniform seeds and 3 agent episodes, no synthesis
    "short": Budget("short", iterations=100, episodes=10, warmup=2, finalise=1, bits=(8, 4), workload_size=200,
                    area=False),
    # make demo and the tests: seconds per cell, a smoke test of the machinery, not a result
    "smoke": Budget("smoke", iterations=3, episodes=3, warmup=2, val_views=1, search_rays=1024, finalise=2,
                    bits=(8, 4), workload_size=64, qat_rays=2048, area=False),
}


def _suffix(budget: Budget, seed: int) -> str:
    return ("" if budget.name == "full" else f"-{budget.name}") + (f"-s{seed}" if seed else "")


def _keep(s: dict) -> dict:
    keys = ("method", "psnr", "ssim", "fqr", "fqr_acaq", "storage_mb", "bits", "psnr_fp", "samples_per_ray")
    return {k: s[k] for k in keys if k in s}


# --- cells (module-level: Ray pickles them by reference) -----------------------------------------------------
def _ptq_cell(*, scene: str, preset: str, bits: list[int], runs_root: str, workload_size: int) -> dict:
    from flows.acaq import _field, _ptq_row, _row, _workload
    from quant.policy import FULL_PRECISION_BITS, QuantPolicy

    field_ = _field(scene, preset, runs_root, False)
    fp = field_.full_precision()
    workload = _workload(field_, runs_root, workload_size)
    fp_row = _row(field_, "FP (32b)", QuantPolicy.uniform(FULL_PRECISION_BITS, field_.levels), fp, workload,
                  size=workload_size)
    rows = [{**_keep(fp_row), "group": "full precision"}]
    for b in bits:
        rows.append({**_keep(_ptq_row(scene, preset, b, runs_root, False, workload_size, fp)), "group": "PTQ"})
    return {"fp": {"psnr": fp["psnr"], "ssim": fp["ssim"]}, "rows": rows}


def _qat_rays(rays: int) -> dict:
    return {"calibration_rays": rays, "loss_rays": rays}


def _lsq_cell(*, scene, preset, bits, iterations, seed, suffix, rays, runs_root, workload_size) -> dict:
    from flows.acaq import lsq_run, require_finished

    s = require_finished(lsq_run(scene, preset, "mgl", bits, iterations=iterations, seed=seed, suffix=suffix,
                                 **_qat_rays(rays), runs_root=runs_root, progress=False, handle_signals=False,
                                 workload_size=workload_size))
    return {**_keep(s), "group": "LSQ+", "run": str(Path(s["checkpoint"]).parent)}


def _acaq_cell(*, scene, preset, mode, target, iterations, seed, suffix, rays, runs_root, workload_size) -> dict:
    from flows.acaq import acaq_run, require_finished

    s = require_finished(acaq_run(scene, preset, mode, target=target, iterations=iterations, seed=seed,
                                  suffix=suffix, **_qat_rays(rays), runs_root=runs_root, progress=False,
                                  handle_signals=False, workload_size=workload_size))
    return {**_keep(s), "group": "A-CAQ", "run": str(Path(s["checkpoint"]).parent)}


def _policy_hash(bits: dict) -> str:
    return hashlib.sha1(repr(sorted(bits.items())).encode()).hexdigest()[:10]


@contextmanager
def _locked(folder: Path):
    """An exclusive lock on ``folder`` (``fcntl.flock`` on ``<folder>.lock``) across processes and Ray workers."""
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _search_cell(ptq: dict, acaq: dict, *, scene, preset, hw, mode, budget: dict, seed, suffix, runs_root) -> dict:
    """Search under the quality objective, then finalise its best distinct policies (module doc)."""
    import torch

    from flows.acaq import finalise_run, require_finished
    from flows.search import candidates, search

    b = Budget(**{**budget, "bits": tuple(budget["bits"])})
    fp = ptq["fp"]["psnr"]
    max_loss = max(MIN_LOSS, fp - acaq["psnr"]) if mode == "mdl" else fp - b.mgl_target
    if max_loss <= 0:
        raise CompareError(f"MGL target {b.mgl_target} dB is not below full precision ({fp:.2f} dB): no loss to spend")
    name = f"{scene_name(scene)}-{preset}-{hw}-{mode}{suffix}"
    s = search(scene, preset, hw=hw, episodes=b.episodes, warmup=b.warmup, objective="quality", max_loss=max_loss,
               val_views=b.val_views, rays=b.search_rays, seed=seed, resume=True, runs_root=runs_root, name=name,
               progress=False, workload_size=b.workload_size)
    rows = torch.load(Path(runs_root) / f"search-{name}" / "checkpoint.pt", map_location="cpu",
                      weights_only=False)["rows"]
    finals = []
    for i, c in enumerate(candidates(rows, b.finalise)):
        out = Path(runs_root) / f"final-{scene_name(scene)}-{preset}-{_policy_hash(c['bits'])}{_suffix(b, seed)}"
        with _locked(out):  # the other search may finalise the same policy at the same time
            f = require_finished(finalise_run(scene, preset, c["bits"], out, label=f"ours {mode.upper()} #{i + 1}",
                                              iterations=b.iterations, seed=seed, **_qat_rays(b.qat_rays),
                                              runs_root=runs_root, progress=False, handle_signals=False,
                                              workload_size=b.workload_size))
        finals.append({**_keep(f), "group": f"ours ({mode.upper()})", "run": str(out), "proxy_psnr": c["psnr"],
                       "proxy_feasible": bool(c.get("feasible")), "episode": c["episode"]})
    return {"mode": mode, "max_loss": round(max_loss, 4), "psnr_bound": round(fp - max_loss, 4), "finalised": finals,
            "search": {"run": str(Path(runs_root) / f"search-{name}"), "episodes": s["episodes"],
                       "feasible_episodes": s.get("feasible_episodes"), "wall_seconds": s["wall_seconds"],
                       "best_proxy": s["best"]}}


# --- the cells of one comparison ------------------------------------------------------------------------------
def _cells(scene: str, preset: str, hws: list[str], budget: Budget, seed: int, runs_root: str) -> list[Cell]:
    sfx = _suffix(budget, seed)
    base = f"{scene_name(scene)}-{preset}{sfx}"
    common = dict(scene=scene, preset=preset, runs_root=runs_root, workload_size=budget.workload_size)
    qat = dict(iterations=budget.iterations, seed=seed, suffix=sfx, rays=budget.qat_rays, **common)
    cells = [Cell(f"{base}-ptq", _ptq_cell, kwargs={**common, "bits": list(budget.bits)})]
    cells += [Cell(f"{base}-lsq{b}", _lsq_cell, kwargs={**qat, "bits": b}) for b in budget.bits]
    cells += [Cell(f"{base}-acaq-mdl", _acaq_cell, kwargs={**qat, "mode": "mdl", "target": None}),
              Cell(f"{base}-acaq-mgl", _acaq_cell, kwargs={**qat, "mode": "mgl", "target": budget.mgl_target})]
    for hw in hws:
        for mode in ("mdl", "mgl"):
            cells.append(Cell(f"{scene_name(scene)}-{preset}-{hw}{sfx}-search-{mode}", _search_cell,
                              deps=(f"{base}-ptq", f"{base}-acaq-{mode}"),
                              kwargs=dict(scene=scene, preset=preset, hw=hw, mode=mode, seed=seed, suffix=sfx,
                                          runs_root=runs_root, budget={**asdict(budget), "bits": list(budget.bits)})))
    return cells


# --- fronts and ratios ------------------------------------------------------------------------------------------
def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (PSNR dB, latency) points no other point beats in both (higher PSNR and lower latency), by latency."""
    front, best = [], -math.inf
    for psnr, lat in sorted(points, key=lambda p: (p[1], -p[0])):
        if psnr > best:
            front.append((psnr, lat))
            best = psnr
    return front


def equal_psnr(front: list[tuple[float, float]], psnr: float) -> tuple[float | None, str]:
    """Our front's value (latency, or any quantity carried as the second item) at ``psnr`` (module doc).

    Returns ``(value, kind)``: kind "interpolated" (between two front points), "bound" (our fastest point is
    already at least as good: its value, so a ratio from it is a lower bound) or "none" (above our best PSNR).
    """
    if not front:
        return None, "none"
    pts = sorted(front)
    if psnr <= pts[0][0]:
        return pts[0][1], "bound" if psnr < pts[0][0] else "interpolated"
    for (p0, v0), (p1, v1) in zip(pts, pts[1:]):
        if p0 <= psnr <= p1:
            return v0 + (v1 - v0) * (psnr - p0) / (p1 - p0), "interpolated"
    return None, "none"


# --- assembling one comparison -----------------------------------------------------------------------------------
def _hw_metrics(row: dict, accel, arch, workload, size: int, family: str, cache_dir: Path, area_on: bool) -> dict:
    """Latency (ms), DRAM bytes per frame, the engine breakdown and the area of ``row``'s policy on ``accel``."""
    from hw.params import ConfigError
    from sim.mapping import engines_for_policy
    from flows.acaq import frame_samples
    from sim.perf import frame_perf

    if row["group"] == "full precision":
        return {"note": "full precision does not run on the integer engines"}
    samples = frame_samples(len(workload), size)
    try:
        p = frame_perf(accel, arch, row["bits"], samples=samples, workload=workload if accel.memory else None)
        engines = engines_for_policy(accel, arch, row["bits"])
    except ConfigError as exc:
        return {"note": f"the {accel.name} engines cannot run it: {exc}"}
    area = mlp_area(engines["mlp_engine"], family, cache_dir) if area_on else None
    seconds = p.latency_ms / 1e3
    out = {"latency_ms": round(p.latency_ms, 3), "cycles": p.cycles, "bottleneck": p.bottleneck,
           "dram_bytes": p.dram.get("bytes") if p.dram else None,
           "stall_share": p.dram.get("stall_share") if p.dram else None,
           "engines": {k: {"busy_cycles": v.get("busy_cycles"), "utilization": v.get("utilization")}
                       for k, v in p.engines.items()},
           "area": None if area is None else area["cells"], "area_detail": area}
    out["cost_efficiency"] = 1.0 / (seconds * area["cells"]) if area else None
    return out


#: What the comparison's ``area`` counts (module doc).
AREA_UNITS = ("generic cells (Yosys synth: gates and flip-flops, memories apart) of the two MLP engines (density and "
              "colour, generated alike) at the policy's widths, each extrapolated from synthesis of small arrays "
              "(hw.array_area); the hash encoder is not included. xc7 LUT/FF/BRAM/DSP are in area_detail")


def mlp_area(mlp, family: str, cache_dir: Path) -> dict:
    """Both MLP engines' xc7 figures (``hw.array_area``): {"lut", "ff", "bram18", "dsp", "cells"}."""
    from hw.array_area import array_area

    a = array_area(mlp, family=family, cache_dir=cache_dir)
    return {**{k: None if v is None else 2 * v for k, v in a["fpga"].items()}, "cells": 2 * a["generic"]["cells"]}


def _rows(records: dict, scene: str, preset: str, hw: str, budget: Budget, seed: int) -> tuple[list, list, dict]:
    """The table's rows (method order), the searches' records and the failed cells."""
    sfx = _suffix(budget, seed)
    base = f"{scene_name(scene)}-{preset}{sfx}"
    names = [f"{base}-ptq"] + [f"{base}-lsq{b}" for b in budget.bits] + [f"{base}-acaq-mdl", f"{base}-acaq-mgl"]
    names += [f"{scene_name(scene)}-{preset}-{hw}{sfx}-search-{m}" for m in ("mdl", "mgl")]
    rows, searches, failed = [], [], {}
    for n in names:
        rec = records.get(n)
        if rec is None or rec["status"] != "done":
            failed[n] = "not run" if rec is None else f"{rec['status']}: {rec.get('error')}"
            continue
        r = rec["result"]
        if n.endswith("-ptq"):
            rows += r["rows"]
        elif "-search-" in n:
            searches.append(r)
            rows += r["finalised"]
        else:
            rows.append(r)
    return rows, searches, failed


def _pick(search: dict, rows: list[dict]) -> dict | None:
    """The search's pick among its finalised policies (module doc); ``rows`` carry the preset's latency."""
    finals = [r for r in rows if r["group"] == f"ours ({search['mode'].upper()})"]
    within = [f for f in finals if f["psnr"] >= search["psnr_bound"] and f.get("latency_ms") is not None]
    if within:
        return min(within, key=lambda f: f["latency_ms"])
    return max(finals, key=lambda f: f["psnr"]) if finals else None


COLUMNS = [
    Column("group", "group", "method"),
    Column("method", "label", "policy"),
    Column("psnr", "psnr_db", "PSNR (dB)", lambda v: f"{v:.2f}"),
    Column("ssim", "ssim", "SSIM", lambda v: f"{v:.4f}"),
    Column("fqr", "fqr", "FQR", lambda v: f"{v:.2f}"),
    Column("latency_ms", "latency_ms", "latency (ms)", lambda v: f"{v:.1f}"),
    Column("area", "area_cells", "area (MLP cells)", lambda v: f"{v:,.0f}"),
    Column(lambda r: None if r.get("cost_efficiency") is None else r["cost_efficiency"] * 1e3, "cost_efficiency_x1e3",
           "cost eff. (x1e3)", lambda v: f"{v:.4f}"),
    Column(lambda r: r["storage_mb"] * 1e6, "model_bytes", "model bytes", lambda v: f"{v:,.0f}"),
    Column(lambda r: None if r.get("dram_bytes") is None else r["dram_bytes"] / 1e6, "dram_mb",
           "DRAM (MB/frame)", lambda v: f"{v:.1f}"),
    Column("pick", "pick", "pick", lambda v: "yes" if v else ""),
]


def _plot(rows: list[dict], bounds: dict, path: Path, title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.4), dpi=120)
    styles = {"PTQ": ("s", "tab:red"), "LSQ+": ("D", "tab:purple"), "A-CAQ": ("^", "tab:green"),
              "ours (MDL)": ("o", "tab:blue"), "ours (MGL)": ("o", "tab:cyan")}
    for group, (marker, colour) in styles.items():
        pts = [(r["psnr"], r["latency_ms"]) for r in rows if r["group"] == group and r.get("latency_ms")]
        if not pts:
            continue
        ax.scatter([p[1] for p in pts], [p[0] for p in pts], marker=marker, color=colour, label=group, s=30, zorder=3)
        front = pareto_front(pts)
        ax.plot([p[1] for p in front], [p[0] for p in front], color=colour, lw=1, alpha=0.6)
    for r in rows:
        if r.get("pick"):
            ax.scatter([r["latency_ms"]], [r["psnr"]], marker="*", s=220, color="gold", edgecolor="black", zorder=5)
    fp = next((r for r in rows if r["group"] == "full precision"), None)
    if fp:
        ax.axhline(fp["psnr"], color="grey", ls=":", label=f"full precision {fp['psnr']:.2f} dB")
    for mode, bound in bounds.items():
        ax.axhline(bound, color="tab:orange", ls="-.", lw=0.8)
        ax.annotate(f"{mode} bound", (ax.get_xlim()[0], bound), fontsize=7, color="tab:orange")
    ax.set_xscale("log")
    ax.set_xlabel("frame latency (ms, 800x800, log scale)")
    ax.set_ylabel("test PSNR (dB)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def _ratios(rows: list[dict]) -> list[dict]:
    """Latency and cost-efficiency ratios of our finalised front against each A-CAQ point at its PSNR."""
    ours = [r for r in rows if r["group"].startswith("ours") and r.get("latency_ms")]
    lat_front = pareto_front([(r["psnr"], r["latency_ms"]) for r in ours])
    ce_of = {(r["psnr"], r["latency_ms"]): r.get("cost_efficiency") for r in ours}
    ce_front = [(p, ce_of[(p, lat)]) for p, lat in lat_front]
    out = []
    for a in (r for r in rows if r["group"] == "A-CAQ" and r.get("latency_ms")):
        lat, kind = equal_psnr(lat_front, a["psnr"])
        ce, _ = equal_psnr(ce_front, a["psnr"]) if all(v for _, v in ce_front) else (None, "none")
        out.append({"acaq": a["method"], "psnr": a["psnr"], "acaq_latency_ms": a["latency_ms"],
                    "ours_latency_ms": None if lat is None else round(lat, 3), "kind": kind,
                    "latency_ratio": None if lat is None else round(a["latency_ms"] / lat, 4),
                    "cost_efficiency_ratio": None if ce is None or not a.get("cost_efficiency")
                    else round(ce / a["cost_efficiency"], 4)})
    return out


def assemble(records: dict, out: Path, *, scene: str, preset: str, hw: str, budget: Budget, seed: int,
             runs_root: str, family: str = "xc7", build_root="build", wall_seconds: float | None = None) -> dict:
    """Write one comparison's table, plot, summary and report page from the grid's records; returns the summary."""
    from flows.acaq import _field, _workload
    from sim.perf import load_accelerator

    rows, searches, failed = _rows(records, scene, preset, hw, budget, seed)
    accel = load_accelerator(hw)
    field_ = _field(scene, preset, runs_root, False)
    arch, workload = field_.model.arch, _workload(field_, runs_root, budget.workload_size)
    cache = Path(build_root) / "area"
    for r in rows:
        r.update(_hw_metrics(r, accel, arch, workload, budget.workload_size, family, cache, budget.area))
    picks = {}
    for s in searches:
        p = _pick(s, rows)
        if p is not None:
            p["pick"] = True
            picks[s["mode"]] = {k: p.get(k) for k in ("method", "psnr", "ssim", "latency_ms", "cost_efficiency",
                                                      "fqr", "bits", "run")}
            picks[s["mode"]]["within_bound"] = p["psnr"] >= s["psnr_bound"]
    fp = next((r for r in rows if r["group"] == "full precision"), None)
    ratios = _ratios(rows)
    finals = [f for s in searches for f in s["finalised"]]
    rho = None
    if len(finals) > 2:
        from scipy.stats import spearmanr

        rho = spearmanr([f["proxy_psnr"] for f in finals], [f["psnr"] for f in finals]).statistic
        rho = None if math.isnan(rho) else round(float(rho), 4)
    goal = next((x for x in ratios if x["acaq"] == "A-CAQ MDL"), None)
    summary = {"scene": scene, "preset": preset, "hw": hw, "seed": seed, "budget": asdict(budget), "out": str(out),
               "area_units": AREA_UNITS if budget.area else "not synthesised (budget without area)",
               "rows": rows, "ratios": ratios, "picks": picks,
               "searches": [{k: v for k, v in s.items() if k != "finalised"} for s in searches],
               "proxy_rank_correlation": {"spearman": rho, "n": len(finals),
                                          "what": "PTQ proxy PSNR (validation views) vs finalised PSNR (test views)"},
               "goal": {"target_latency_ratio": 1.33, "at": "A-CAQ MDL's PSNR",
                        "measured": None if goal is None else goal["latency_ratio"],
                        "kind": None if goal is None else goal["kind"],
                        "met": None if goal is None or goal["latency_ratio"] is None
                        else goal["latency_ratio"] >= 1.33},
               "psnr_change_of_picks_vs_fp": {m: round(p["psnr"] - fp["psnr"], 3) for m, p in picks.items()}
               if fp else {}, "failed_cells": failed, "wall_seconds": wall_seconds,
               "cells_seconds": {n: r.get("seconds") for n, r in records.items()}}
    out.mkdir(parents=True, exist_ok=True)
    title = f"{scene_name(scene)} ({preset}), {hw} accelerator, budget {budget.name}"
    write_table(out, rows, COLUMNS)
    _plot(rows, {s["mode"].upper(): s["psnr_bound"] for s in searches}, out / "pareto.png", title)
    write_json(out / "summary.json", summary)
    _page(out, summary, title, field_, runs_root, accel)
    return summary


def _page(out: Path, summary: dict, title: str, field_, runs_root: str, accel) -> None:
    """``page_sections.json`` and ``report.html`` (``flows.page``); ``engines-<mode>.yaml``: the engines of ``accel``
    sized for each pick, whose co-simulation records the page looks up."""
    from flows.page import Image, ImageGrid, KeyValue, Table, Text, cosim_section, report, sections_to_json
    from hw.params import save_config
    from sim.mapping import engines_for_policy

    rows, b = summary["rows"], summary["budget"]
    sections = [Text("What this is", [
        f"{title}. Every policy is measured on the test views; latency, DRAM traffic and area on this preset for "
        f"the engines sized for the policy. Budget '{b['name']}': {b['iterations']} fine-tuning iterations per "
        f"method and per finalised policy, {b['episodes']} search episodes, {b['finalise']} policies finalised "
        "per search.", "SMOKE TEST budget: these numbers check the machinery; they are not results."
        if b["name"] == "smoke" else f"Goal: >= 1.33x lower latency than A-CAQ at equal PSNR; measured "
        f"{summary['goal']['measured']} ({summary['goal']['kind']}) at A-CAQ MDL's PSNR."])]
    sections.append(Table.from_columns("All methods", rows, COLUMNS))
    sections.append(Image("PSNR against latency, Pareto fronts", out / "pareto.png"))
    sections.append(Table("Against A-CAQ at equal PSNR (our front interpolated at A-CAQ's PSNR)",
                          ["A-CAQ", "PSNR (dB)", "A-CAQ ms", "ours ms", "how", "latency ratio", "cost-eff. ratio"],
                          [[x["acaq"], x["psnr"], x["acaq_latency_ms"], x["ours_latency_ms"], x["kind"],
                            x["latency_ratio"], x["cost_efficiency_ratio"]] for x in summary["ratios"]], fmt=".4g"))
    engines = sorted({e for r in rows for e in r.get("engines", {})})
    sections.append(Table(
        "Latency by engine: busy cycles per frame (utilization), and the share of encoder cycles stalled on DRAM",
        ["policy", "latency (ms)", "bottleneck"] + [f"{e} busy" for e in engines] + ["stall share"],
        [[r["method"], r["latency_ms"], r["bottleneck"]]
         + [f"{r['engines'][e]['busy_cycles']:,} ({r['engines'][e]['utilization']:.2f})"
            if r["engines"].get(e, {}).get("busy_cycles") is not None else None for e in engines]
         + [r.get("stall_share")] for r in rows if r.get("latency_ms") is not None], fmt=".4g"))
    for mode, p in summary["picks"].items():
        bits = _bits_png(p, out / f"bits-{mode}.png")
        sections.append(Image(f"Our {mode.upper()} pick: bits per component", bits))
        sections.append(ImageGrid(f"Test views: full precision | our {mode.upper()} pick (fine-tuned)",
                                  _renders(field_, p, runs_root)))
        engines_yaml = out / f"engines-{mode}.yaml"
        save_config(engines_yaml, engines_for_policy(accel, field_.model.arch, p["bits"]))
        sections.append(cosim_section(engines_yaml, runs_root,
                                      caption=f"Co-simulation of the engines generated for our {mode.upper()} pick"))
    if summary["failed_cells"]:
        sections.append(KeyValue("Cells that did not finish", summary["failed_cells"]))
    write_json(out / "page_sections.json", {"title": title, "sections": sections_to_json(sections, base=out)})
    report(out, runs_root=runs_root)


def _bits_png(pick: dict, path: Path) -> Path:
    plt = pyplot()
    names = list(pick["bits"])
    fig, ax = plt.subplots(figsize=(max(8, 0.33 * len(names)), 3.6), dpi=110)
    ax.bar(np.arange(len(names)), [pick["bits"][n] for n in names], color="tab:blue")
    ax.set_xticks(np.arange(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylabel("bits")
    ax.set_title(f"{pick['method']}: {pick['psnr']:.2f} dB, FQR {pick['fqr']:.2f}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def _renders(field_, pick: dict, runs_root: str) -> list[tuple[str, Path]]:
    """Two test views side by side: the full-precision renders of training and the pick's fine-tuned ones."""
    from flows.runs import train_dir

    fp_dir = train_dir(field_.scene, field_.preset, runs_root) / "test"
    q_dir = Path(pick["run"]) / "test"
    names = sorted(p.name for p in q_dir.glob("*.png"))[:2] if q_dir.is_dir() else []
    items = []
    for n in names:
        items.append((f"full precision, view {n[:-4]}", fp_dir / n))
        items.append((f"{pick['method']}, view {n[:-4]}", q_dir / n))
    return items


def summary_lines(s: dict) -> list[str]:
    """The console summary of one comparison's ``summary.json``: the ratios against A-CAQ, the picks, the goal."""
    lines = [f"== {scene_name(s['scene'])} ({s['preset']}), {s['hw']} accelerator, budget {s['budget']['name']}"
             + (" (SMOKE TEST: not a result)" if s["budget"]["name"] == "smoke" else "")]
    for x in s["ratios"]:
        ratio = "n/a (above our best PSNR)" if x["latency_ratio"] is None else (
            f"{'>= ' if x['kind'] == 'bound' else ''}{x['latency_ratio']:.3f}x lower latency")
        ce = "" if x["cost_efficiency_ratio"] is None else f", {x['cost_efficiency_ratio']:.3f}x cost efficiency"
        lines.append(f"   vs {x['acaq']} at {x['psnr']:.2f} dB ({x['acaq_latency_ms']:.1f} ms): {ratio}{ce}")
    for mode, p in s["picks"].items():
        change = s["psnr_change_of_picks_vs_fp"].get(mode, 0)
        lines.append(f"   our {mode.upper()} pick: {p['psnr']:.2f} dB ({change:+.2f} vs full precision)"
                     f", {p['latency_ms']:.1f} ms, FQR {p['fqr']:.2f}"
                     + ("" if p["within_bound"] else " (NOT within the PSNR bound)"))
    g = s["goal"]
    lines.append(f"   goal >= 1.33x at A-CAQ MDL's PSNR: {'met' if g['met'] else 'not met'} (measured {g['measured']})")
    if s["failed_cells"]:
        lines.append(f"   cells that did not finish: {s['failed_cells']}")
    return lines


# --- drivers -----------------------------------------------------------------------------------------------------
def _check(scenes, hws, seeds, budget: str) -> Budget:
    """Every option checked before any work (CompareError naming it): budget, presets, seeds, trained fields."""
    from hw.params import ConfigError
    from sim.perf import load_accelerator

    if isinstance(budget, Budget):  # tests: a budget of their own
        return budget
    if budget not in BUDGETS:
        raise CompareError(f"budget must be one of {', '.join(BUDGETS)}, not {budget!r}")
    for hw in hws:
        try:
            load_accelerator(hw)
        except (ConfigError, FileNotFoundError) as exc:
            raise CompareError(f"hw {hw!r}: {exc}") from None
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise CompareError(f"seeds must be integers >= 0, not {s!r}")
    if not scenes or not hws or not seeds:
        raise CompareError("give at least one scene, one hardware preset and one seed")
    return BUDGETS[budget]


def _trained(scene: str, preset: str, runs_root) -> None:
    from flows.runs import train_command, train_dir

    ckpt = train_dir(scene, preset, runs_root) / "checkpoint.pt"
    if not ckpt.exists():
        raise CompareError(f"scene {scene!r}: no trained field at {ckpt}; run `{train_command(scene, preset)}` first")


def compare(scene: str, preset: str = "tiny", *, hw: str = "default", budget: str = "full", seed: int = 0,
            runs_root="runs", build_root="build", cpus: int | None = None, family: str = "xc7",
            progress: bool = True) -> dict:
    """One comparison (module doc) as a Ray grid; returns the summary (also ``summary.json``).

    Raises:
        CompareError: an unknown budget or preset, a negative seed, no trained field (before any work).
    """
    return grid([scene], preset, hws=[hw], budget=budget, seeds=[seed], runs_root=runs_root, build_root=build_root,
                cpus=cpus, family=family, progress=progress, name=None)[0]


def grid(scenes: list[str], preset: str = "tiny", *, hws: list[str], budget: str = "full", seeds=(0,),
         runs_root="runs", build_root="build", cpus: int | None = None, family: str = "xc7", progress: bool = True,
         name: str | None = None) -> list[dict]:
    """Scenes x presets x seeds (module doc) in one Ray grid; one compare folder per combination.

    ``name`` None: a single comparison, whose cells live in its own folder; else ``runs/grid-<name>/``
    holds the cells and ``grid.md``/``grid.json`` (one row per combination). Returns the summaries.

    Raises:
        CompareError: as ``compare``.
    """
    b = _check(scenes, hws, list(seeds), budget)
    for scene in scenes:
        _trained(scene, preset, runs_root)
    runs_root = str(Path(runs_root).resolve())
    t0 = time.perf_counter()
    cells: dict[str, Cell] = {}
    for scene in scenes:
        for seed in seeds:
            for c in _cells(scene, preset, list(hws), b, seed, runs_root):
                cells.setdefault(c.name, c)
    combos = [(scene, hw, seed) for scene in scenes for hw in hws for seed in seeds]

    def folder(scene, hw, seed):
        return Path(runs_root) / f"compare-{scene_name(scene)}-{preset}-{hw}{_suffix(b, seed)}"

    cell_dir = Path(runs_root) / f"grid-{name}" if name else folder(*combos[0])
    records = run_grid(list(cells.values()), cell_dir, cpus=cpus, progress=progress)
    wall = round(time.perf_counter() - t0, 1)
    summaries = []
    for scene, hw, seed in combos:
        summaries.append(assemble(records, folder(scene, hw, seed), scene=scene, preset=preset, hw=hw, budget=b,
                                  seed=seed, runs_root=runs_root, family=family, build_root=build_root,
                                  wall_seconds=wall))
    if name:
        rows = [{"scene": scene_name(s["scene"]), "hw": s["hw"], "seed": s["seed"],
                 "ratios": s["ratios"], "picks": s["picks"], "failed": len(s["failed_cells"])} for s in summaries]
        table_rows = []
        for r in rows:
            for x in r["ratios"]:
                table_rows.append({"scene": r["scene"], "hw": r["hw"], "seed": r["seed"], **x})
        cols = [Column("scene", "scene", "scene"), Column("hw", "hw", "preset"), Column("seed", "seed", "seed"),
                Column("acaq", "acaq", "A-CAQ"), Column("psnr", "psnr", "PSNR (dB)", lambda v: f"{v:.2f}"),
                Column("acaq_latency_ms", "acaq_ms", "A-CAQ ms", lambda v: f"{v:.1f}"),
                Column("ours_latency_ms", "ours_ms", "ours ms", lambda v: f"{v:.1f}"), Column("kind", "kind", "how"),
                Column("latency_ratio", "latency_ratio", "latency ratio", lambda v: f"{v:.3f}"),
                Column("cost_efficiency_ratio", "ce_ratio", "cost-eff. ratio", lambda v: f"{v:.3f}")]
        write_table(cell_dir, table_rows, cols, name="grid")
        write_json(cell_dir / "grid.json", {"scenes": scenes, "preset": preset, "hws": list(hws), "seeds": list(seeds),
                                            "budget": asdict(b), "rows": rows, "wall_seconds": wall,
                                            "cells": {n: r["status"] for n, r in records.items()}})
    return summaries
