"""``make search``: DDPG search of a mixed-precision policy with latency from ``sim/perf.py``.

Each episode the agent picks the bits of every component (``rl.env``), the policy is applied by PTQ
(``quant.ptq.PTQEvaluator``: one min-max calibration on training rays, then bits set per episode),
scored by PSNR on a fixed subset of the validation views, and costed by the frame-level model for
an 800x800 frame with the scene's measured samples per ray. Results in ``runs/search-<name>/``:
``policy.yaml`` (best), ``engines.yaml`` (the engines sized for the model and that policy's widths),
``episodes.csv``, ``pareto.png``, ``summary.json`` and ``checkpoint.pt`` (after every episode; a
resumed search continues at the next episode with the agent, replay buffer and generators restored).
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import numpy as np

from common.atomic import atomic_write, atomic_write_text

__all__ = ["search", "SearchError", "FRAME_RAYS"]

#: Rays of the frame whose latency is searched: 800 x 800 (NeRF-synthetic's full resolution).
FRAME_RAYS = 800 * 800


class SearchError(RuntimeError):
    """A search cannot start or continue (an existing run without resume, a mismatched resume)."""


def _val_views(n_views: int, k: int) -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(0, n_views - 1, min(k, n_views))})


def _engines(space, policy) -> dict:
    """Config sections of the engines sized for the model and the policy's widths (``make verilog``):
    ``sim.mapping.engines_for_policy``."""
    from sim.mapping import engines_for_policy

    return engines_for_policy(space.preset, space.arch, policy)


def _plot(rows, baselines, best, path: Path, title: str, budget_ms: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    sc = ax.scatter([r["latency_ms"] for r in rows], [r["psnr"] for r in rows], c=[r["episode"] for r in rows],
                    cmap="viridis", s=14, label="episodes")
    fig.colorbar(sc, ax=ax, label="episode")
    uni = sorted((v for k, v in baselines.items() if k.startswith("uniform-")), key=lambda v: v["latency_ms"])
    ax.plot([u["latency_ms"] for u in uni], [u["psnr"] for u in uni], "s--", color="tab:red", label="uniform PTQ")
    for u in uni:
        ax.annotate(u["name"].split("-")[1], (u["latency_ms"], u["psnr"]), textcoords="offset points",
                    xytext=(4, 4), fontsize=8, color="tab:red")
    ax.axhline(baselines["fp"]["psnr"], color="grey", linestyle=":", label=f"full precision {baselines['fp']['psnr']:.2f} dB")
    if budget_ms is not None:
        ax.axvline(budget_ms, color="tab:orange", linestyle="-.", label="latency budget")
    ax.scatter([best["latency_ms"]], [best["psnr"]], marker="*", s=220, color="gold", edgecolor="black", zorder=5,
               label="best")
    ax.set_xscale("log")
    ax.set_xlabel("frame latency (ms, 800x800, log scale)")
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", markerscale=0.6)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def search(scene: str, preset: str = "tiny", *, hw: str = "default", episodes: int = 60, objective: str = "latency",
           budget: float = 0.5, lam: float = 0.1, b_min: int = 2, b_max: int = 8, val_views: int = 4,
           warmup: int = 20, seed: int = 0, rays: int = 8192, resume: bool = False, runs_root="runs",
           name: str | None = None, progress: bool = True) -> dict:
    """Run (or resume) a search; returns the summary (also ``summary.json``).

    Raises:
        FileNotFoundError: no trained checkpoint (names the ``make train`` command).
        rl.env.BudgetError: the budget is unreachable in [b_min, b_max] (gives the lowest latency).
        SearchError: the run folder holds a search and ``resume`` is false, or a resume with other settings.
        hw.params.ConfigError: unknown or invalid hardware preset.
        ValueError: a bad argument (``rl.env.SearchSettings``: episodes 0, budget inf or nan, ...), before any work.
    """
    from rl.env import SearchSettings

    # every argument checked before any work starts (ValueError naming the field, range and value)
    SearchSettings(episodes=episodes, warmup=warmup, objective=objective, budget=budget, lam=lam, b_min=b_min,
                   b_max=b_max, val_views=val_views, rays=rays, seed=seed)
    import torch
    from tqdm import tqdm

    from flows.quantize import TrainedField, scene_name
    from nerf.data import load_scene
    from quant.policy import FULL_PRECISION_BITS, QuantPolicy, fqr
    from quant.ptq import PTQEvaluator
    from rl.ddpg import DDPG
    from rl.env import OBS_FEATURES, SearchSpace, action_to_bits
    from sim.perf import frame_perf, load_accelerator

    t_last = time.perf_counter()
    accel = load_accelerator(hw)
    out = Path(runs_root) / f"search-{name or f'{scene_name(scene)}-{preset}-{objective}'}"
    ckpt_path = out / "checkpoint.pt"
    settings = {"scene": scene, "preset": preset, "hw": accel.name, "objective": objective, "budget": budget,
                "lam": lam, "b_min": b_min, "b_max": b_max, "val_views": val_views, "warmup": warmup, "seed": seed,
                "rays": rays}
    state = None
    if ckpt_path.exists():
        if not resume:
            raise SearchError(f"{out} already holds a search: continue it with RESUME=1 (--resume), or remove the "
                              "folder to start again")
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        diff = {k: (state["settings"].get(k), v) for k, v in settings.items() if state["settings"].get(k) != v}
        if diff:
            raise SearchError(f"{ckpt_path}: cannot resume with other settings: "
                              + ", ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in diff.items()))

    field = TrainedField(scene, preset, runs_root=runs_root, progress=False)
    val = load_scene(scene, "val", downscale=field.settings["downscale"])
    views = _val_views(len(val.images), val_views)
    evaluator = PTQEvaluator(field.model, field.occupancy, field.train_data, val, views=views,
                             n_samples=field.settings["n_samples"], rays=rays, seed=seed)
    levels = field.levels
    fp_policy = QuantPolicy.uniform(FULL_PRECISION_BITS, levels)
    if state is None:
        fp = evaluator.evaluate(fp_policy)
        state = {"settings": settings, "fp": fp, "rows": [], "baselines": None, "agent": None}
    fp = state["fp"]
    samples = int(round(fp["samples_per_ray"] * FRAME_RAYS))
    space = SearchSpace(arch=field.model.arch, preset=accel, samples=samples, b_min=b_min, b_max=b_max,
                        objective=objective, budget=budget, lam=lam)

    def perf_of(policy) -> dict:
        p = frame_perf(accel, field.model.arch, policy, samples=samples)
        return {"latency_cycles": p.cycles, "latency_ms": round(p.latency_ms, 4)}

    if state["baselines"] is None:
        baselines = {"fp": {"name": "fp", "psnr": round(fp["psnr"], 4), "latency_cycles": None, "latency_ms": None,
                            "fqr": 32.0, "note": "full precision does not run on the integer engines"}}
        for b in range(b_min, max(b_max, 8) + 1):
            pol = QuantPolicy.uniform(b, levels)
            baselines[f"uniform-{b}"] = {"name": f"uniform-{b}", "psnr": round(evaluator.evaluate(pol)["psnr"], 4),
                                         "fqr": float(b), **perf_of(pol)}
        state["baselines"] = baselines
    baselines = state["baselines"]

    agent = DDPG(len(OBS_FEATURES), seed=seed, warmup=warmup)
    if state["agent"] is not None:
        agent.load_state_dict(state["agent"])
    rows = state["rows"]
    state.setdefault("wall_seconds", 0.0)
    bar = tqdm(total=episodes, initial=len(rows), desc="search", unit="episode", disable=not progress)
    while agent.episode < episodes:
        obs, actions, bits, prev = [], [], {}, 0.0
        for i, comp in enumerate(space.names):
            o = space.observation(i, prev)
            a = agent.act(o)
            obs.append(o)
            actions.append(a)
            bits[comp] = action_to_bits(a, b_min, b_max)
            prev = a
        policy = space.enforce_budget(QuantPolicy(bits, levels))
        res = evaluator.evaluate(policy)
        perf = perf_of(policy)
        reward = space.reward(res["psnr"], fp["psnr"], perf["latency_cycles"])
        learn = agent.end_episode(np.stack(obs), actions, reward)
        rows.append({"episode": learn["episode"], "psnr": round(res["psnr"], 4), **perf,
                     "fqr": round(fqr(policy), 4), "reward": round(reward, 6), "bits": dict(policy)})
        state["agent"] = agent.state_dict()
        now = time.perf_counter()
        state["wall_seconds"] += now - t_last
        t_last = now
        atomic_write(ckpt_path, lambda tmp: torch.save(state, tmp))
        _write_csv(out / "episodes.csv", rows, space.names)
        bar.update(1)
        bar.set_postfix(psnr=f"{res['psnr']:.2f}", ms=f"{perf['latency_ms']:.0f}", reward=f"{reward:+.3f}")
    bar.close()

    key = (lambda r: (r["psnr"], -r["latency_cycles"])) if objective == "latency" else (lambda r: r["reward"])
    best = max(rows, key=key) if rows else None
    summary = {"settings": settings, "episodes": len(rows), "wall_seconds": None,
               "frame": {"rays": FRAME_RAYS, "samples_per_ray": round(fp["samples_per_ray"], 4), "samples": samples},
               "val_views": views, "baselines": baselines, "best": None}
    if best is not None:
        best_policy = QuantPolicy(best["bits"], levels)
        u8 = baselines["uniform-8"]
        better_psnr = [k for k, v in baselines.items() if k.startswith("uniform-") and v["psnr"] >= best["psnr"]]
        summary["best"] = {k: best[k] for k in ("episode", "psnr", "latency_cycles", "latency_ms", "fqr", "reward")}
        summary["best"]["bits"] = best["bits"]
        summary["latency_ratio_to_uniform8"] = round(best["latency_cycles"] / u8["latency_cycles"], 4)
        summary["psnr_change_vs_fp"] = round(best["psnr"] - fp["psnr"], 4)
        summary["uniform_with_psnr_at_least_best"] = better_psnr
        summary["dominates_uniform"] = all(best["latency_cycles"] < baselines[k]["latency_cycles"] for k in better_psnr)
        if objective == "latency":
            summary["budget_cycles"] = space.target_cycles
        best_policy.save(out / "policy.yaml")
        from hw.params import save_config

        save_config(out / "engines.yaml", _engines(space, best_policy))
        budget_ms = space.target_cycles / (accel.clock_mhz * 1e3) if objective == "latency" else None
        _plot(rows, baselines, best, out / "pareto.png",
              f"{scene_name(scene)} ({preset}), {accel.name} accelerator, {objective} objective", budget_ms)
    state["wall_seconds"] += time.perf_counter() - t_last
    atomic_write(ckpt_path, lambda tmp: torch.save(state, tmp))
    summary["wall_seconds"] = round(state["wall_seconds"], 1)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _write_csv(path: Path, rows: list[dict], names: list[str]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["episode", "psnr", "latency_cycles", "latency_ms", "fqr", "reward", *names])
    for r in rows:
        w.writerow([r["episode"], r["psnr"], r["latency_cycles"], r["latency_ms"], r["fqr"], r["reward"],
                    *(r["bits"][n] for n in names)])
    atomic_write_text(path, buf.getvalue())
