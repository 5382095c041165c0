"""``make search``: DDPG search of a mixed-precision policy with latency from ``sim/perf.py``.

Each episode the agent picks the bits of every component (``rl.env``), the policy is applied by PTQ
(``quant.ptq.PTQEvaluator``: one min-max calibration on training rays, then bits set per episode),
scored by PSNR on a fixed subset of the validation views, and costed by the frame-level model for
an 800x800 frame with the scene's measured samples per ray. Results in ``runs/search-<name>/``:
``policy.yaml`` (best), ``engines.yaml`` (the engines sized for the model and that policy's widths),
``episodes.csv``, ``pareto.png``, ``summary.json`` and ``checkpoint.pt`` (after every episode; a
resumed search continues at the next episode with the agent, replay buffer and generators restored).

``search`` runs the steps in order: ``_prior_state`` (what a resumed run already did), ``_setup``
(trained field, PTQ scorer, full precision, search space), ``_baselines`` (uniform policies, once),
``_run_episodes`` (``_episode`` after ``_episode``, checkpointed), then ``_best``, ``_summary`` and
``_write_best`` (policy, engines, plot). Tables, JSON and figures go through ``flows.report``.

Tables in DRAM (a hardware preset with a ``memory`` section, e.g. ``default``): latency depends on
where the samples are, so ``_setup`` builds the frame's workload from the scene (``flows.runs.cached_workload``): the
first scored validation view rendered by the full-precision field at ``workload_size`` x
``workload_size`` pixels (default 800 x 800, the searched frame; the focal length scaled with the
size) through ``nerf.render.sample_positions`` (empty-space skipping and early ray termination, rays in
scanline order, each ray near to far), saved as ``workload.npy`` (a resumed search reuses it). The
frame's samples are then the workload's points (times (800 / workload_size)^2 for a smaller render,
the workload standing for the frame). Policies are costed by ``rl.env.SearchSpace``'s memoised
memory model on every ``every``-th chunk of ``rl.env.CHUNK`` (4096) workload points, ``every`` the smallest that leaves
at most ``SEARCH_POINTS`` (an estimate; ``summary.json`` records it and its measured error for the
best policy and the baselines, whose memory statistics are computed exactly on the whole workload:
per-level hit rates, DRAM bytes, row outcomes, stall share, bottleneck).
"""

from __future__ import annotations

import time
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from common.atomic import atomic_write
from flows.report import Column, pyplot, save_figure, write_csv, write_json

__all__ = ["search", "SearchError", "FRAME_RAYS", "SEARCH_POINTS", "candidates", "objective_tag", "MODELS"]

#: Model families a search can run on.
MODELS = ("ngp", "kilonerf")

#: Rays of the frame whose latency is searched: 800 x 800 (NeRF-synthetic's full resolution).
FRAME_RAYS = 800 * 800
#: Tables in DRAM: the most workload points the search's cost model replays per policy (module doc).
SEARCH_POINTS = 1 << 18


class SearchError(RuntimeError):
    """A search cannot start or continue (an existing run without resume, a mismatched resume)."""


def _val_views(n_views: int, k: int) -> list[int]:
    return sorted({int(round(x)) for x in np.linspace(0, n_views - 1, min(k, n_views))})


def _engines(space, policy) -> dict:
    """Config sections of the engines sized for the model and the policy's widths (``make verilog``):
    ``sim.mapping.engines_for_policy``; KiloNeRF: ``sim.kilo_perf.kilo_engines_for_policy``."""
    if space.arch.get("model") == "kilonerf":
        from sim.kilo_perf import kilo_engines_for_policy

        return {"mlp_engine": kilo_engines_for_policy(space.preset, space.arch, policy)}
    from sim.mapping import engines_for_policy

    return engines_for_policy(space.preset, space.arch, policy)


def _plot(rows, baselines, best, path: Path, title: str, budget_ms: float | None,
          psnr_bound: float | None = None) -> None:
    """The episodes (PSNR against latency, coloured by episode), the uniform baselines and the best; the
    latency budget (latency objective) or the PSNR bound (quality objective) as a line."""
    plt = pyplot()
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
    if psnr_bound is not None:
        ax.axhline(psnr_bound, color="tab:orange", linestyle="-.", label=f"PSNR bound {psnr_bound:.2f} dB")
    ax.scatter([best["latency_ms"]], [best["psnr"]], marker="*", s=220, color="gold", edgecolor="black", zorder=5,
               label="best")
    ax.set_xscale("log")
    ax.set_xlabel("frame latency (ms, 800x800, log scale)")
    ax.set_ylabel("validation PSNR (dB)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="upper left", markerscale=0.6)
    fig.tight_layout()
    save_figure(fig, path)


def _episode_columns(names: list[str]) -> list[Column]:
    """``episodes.csv``: episode, psnr (dB), latency (cycles, ms), fqr (bits), reward, then every component's bits."""
    fixed = [Column(k, k) for k in ("episode", "psnr", "latency_cycles", "latency_ms", "fqr", "reward", "feasible")]
    return fixed + [Column(lambda r, n=n: r["bits"][n], n) for n in names]


@dataclass
class _Search:
    """What the episodes need: the run folder, the scorer, the search space, the latency model and the state.

    ``state`` is what ``checkpoint.pt`` holds: settings, fp (PSNR dB, samples per ray), rows (one per
    episode), baselines, the agent's state dict and wall_seconds.
    """

    out: Path
    state: dict
    evaluator: object  # quant.ptq.PTQEvaluator
    space: object  # rl.env.SearchSpace
    accel: object  # sim.perf accelerator preset
    arch: dict
    samples: int  # field evaluations of one 800x800 frame
    levels: int
    views: list[int]
    t_last: float = field(default_factory=time.perf_counter)
    policy_type: type = None  # quant.policy.QuantPolicy, or KiloPolicy for KiloNeRF

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoint.pt"

    workload: object = None  # tables in DRAM: float (N, 3) sample positions of the frame, accelerator order

    def perf(self, policy) -> dict:
        """Latency of one 800x800 frame under ``policy`` from the search space's frame model (cycles, ms)."""
        p = self.space.perf(policy)
        return {"latency_cycles": p.cycles, "latency_ms": round(p.latency_ms, 4)}

    def memory_stats(self, policy) -> dict:
        """Tables in DRAM: the frame under ``policy`` costed exactly on the whole workload
        (``sim.perf.frame_perf``): cycles, the search's estimate and its error, per-level hit rates,
        DRAM bytes, requests, row outcomes, stall share and the bottleneck."""
        from sim.perf import frame_perf

        p = frame_perf(self.accel, self.arch, policy, samples=self.samples, workload=self.workload)
        est = self.space.cycles(policy)
        return {"cycles": p.cycles, "latency_ms": round(p.latency_ms, 4), "search_estimate_cycles": est,
                "estimate_error": round(est / p.cycles - 1, 6) if p.cycles else 0.0, "bottleneck": p.bottleneck,
                "hit_rates": [round(lv["hit_rate"], 6) for lv in p.levels],
                "resident_levels": [i for i, lv in enumerate(p.levels) if lv["resident"]],
                "dram_bytes": p.dram["bytes"], "dram_requests": p.dram["requests"], "row": p.dram["row"],
                "stall_cycles": p.dram["stall_cycles"], "stall_share": p.dram["stall_share"],
                "utilization": {k: v["utilization"] for k, v in p.engines.items()}, "workload": p.workload["note"]}

    def save(self) -> None:
        """Add the wall time since the last save and write ``checkpoint.pt`` atomically."""
        import torch

        now = time.perf_counter()
        self.state["wall_seconds"] = self.state.get("wall_seconds", 0.0) + now - self.t_last
        self.t_last = now
        atomic_write(self.checkpoint, lambda tmp: torch.save(self.state, tmp))


def objective_tag(objective: str, max_loss: float) -> str:
    """The objective in run-folder names: ``latency``, ``tradeoff`` or ``quality<max_loss>dB``."""
    return f"quality{max_loss:g}dB" if objective == "quality" else objective


def _run_folder(scene: str, preset: str, objective: str, name: str | None, runs_root, model: str = "ngp",
                options: dict | None = None) -> Path:
    from flows.runs import scene_name

    tag = "" if model == "ngp" else f"-{model}"
    if options and options["quantizer"] != "uniform":
        tag += f"-dhq-{options['placement']}-{options['calibration']}"
    return Path(runs_root) / f"search-{name or f'{scene_name(scene)}-{preset}{tag}-{objective}'}"


def _prior_state(ckpt_path: Path, settings: dict, resume: bool) -> dict | None:
    """The saved state of a search to resume, or None to start one.

    Raises:
        SearchError: a search is there and ``resume`` is false, or it was run with other settings.
    """
    import torch

    if not ckpt_path.exists():
        return None
    if not resume:
        raise SearchError(f"{ckpt_path.parent} already holds a search: continue it with RESUME=1 (--resume), or "
                          "remove the folder to start again")
    state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    diff = {k: (state["settings"].get(k), v) for k, v in settings.items() if state["settings"].get(k) != v}
    if diff:
        raise SearchError(f"{ckpt_path}: cannot resume with other settings: "
                          + ", ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in diff.items()))
    return state


def _setup(scene: str, preset: str, accel, out: Path, settings: dict, state: dict | None, *, runs_root,
           val_views: int, rays: int, seed: int) -> _Search:
    """Load the trained field, calibrate the PTQ scorer, score full precision (once) and build the space."""
    import math

    from flows.runs import cached_workload, open_field
    from quant.policy import FULL_PRECISION_BITS, QuantPolicy
    from quant.ptq import PTQEvaluator
    from rl.env import CHUNK, SearchSpace

    trained = open_field(scene, preset, runs_root)
    if settings.get("model") == "kilonerf":
        return _setup_kilonerf(scene, preset, accel, out, settings, state, trained, runs_root=runs_root,
                               val_views=val_views, rays=rays, seed=seed)
    _check_range(trained.model.arch, accel, settings)
    val = trained.split("val")
    views = _val_views(len(val.images), val_views)
    workload = None
    if accel.has_memory:  # before PTQ puts quantizers into the model: the full-precision field's samples
        workload = cached_workload(trained, val, views[0], settings["workload_size"], out / "workload.npy")
    dhq = settings.get("quantizer", "uniform") == "dhq"
    evaluator = PTQEvaluator(trained.model, trained.occupancy, trained.train_data, val, views=views,
                             n_samples=trained.n_samples, rays=rays, seed=seed,
                             quantizer=settings.get("quantizer", "uniform"), placement=settings.get("placement"),
                             calibration=settings.get("calibration"))
    if state is None:
        fp = evaluator.evaluate(QuantPolicy.uniform(FULL_PRECISION_BITS, trained.levels))
        state = {"settings": settings, "fp": fp, "rows": [], "baselines": None, "agent": None}
    state.setdefault("wall_seconds", 0.0)
    samples = int(round(state["fp"]["samples_per_ray"] * FRAME_RAYS))
    every = 1
    if workload is not None:
        samples = max(len(workload), int(round(len(workload) * FRAME_RAYS / settings["workload_size"] ** 2)))
        every = max(1, math.ceil(len(workload) / SEARCH_POINTS))
        while every > 1 and math.ceil(len(workload) / (CHUNK * every)) * CHUNK > SEARCH_POINTS:
            every += 1
    space = SearchSpace(arch=trained.model.arch, preset=accel, samples=samples, b_min=settings["b_min"],
                        b_max=settings["b_max"], objective=settings["objective"], budget=settings["budget"],
                        lam=settings["lam"], max_loss=settings.get("max_loss", 0.5), workload=workload, every=every,
                        datapath="hadamard" if dhq else "mlp", rotations=evaluator.rotations)
    return _Search(out=out, state=state, evaluator=evaluator, space=space, accel=accel, arch=trained.model.arch,
                   samples=samples, levels=trained.levels, views=views, workload=workload, policy_type=QuantPolicy)


def _setup_kilonerf(scene: str, preset: str, accel, out: Path, settings: dict, state: dict | None, trained, *,
                    runs_root, val_views: int, rays: int, seed: int) -> _Search:
    """``_setup`` for KiloNeRF (``runs/kilonerf-<scene>-<preset>/``): the PTQ scorer on its validation views and
    ``rl.kilo_env.KiloSearchSpace`` on the samples of the first one rendered at ``workload_size`` pixels by the
    full-precision KiloNeRF (cells and rays saved as ``workload.npz``; a smaller render stands for the frame,
    its visits' vector counts scaled by (800 / workload_size)^2)."""
    from flows.kilonerf import kilo_dir
    from nerf.kilo_train import load_kilonerf
    from nerf.kilonerf import frame_cells
    from quant.policy import FULL_PRECISION_BITS, KiloPolicy
    from quant.ptq import PTQEvaluator
    from rl.kilo_env import KiloSearchSpace

    kdir = kilo_dir(scene, preset, runs_root)
    if not (kdir / "summary.json").exists():
        raise FileNotFoundError(f"no finished KiloNeRF in {kdir}: run `make kilonerf SCENE={scene} PRESET={preset}`")
    model, occ, ckpt = load_kilonerf(kdir / "checkpoint.pt")
    _check_range(model.arch, accel, settings)
    val = trained.split("val")
    views = _val_views(len(val.images), val_views)
    size = settings["workload_size"]
    path = out / "workload.npz"
    if path.exists():
        with np.load(path) as z:
            cells, ray_ids = z["cells"], z["rays"]
    else:
        cells, ray_ids = frame_cells(model, occ, val, views[0], n_samples=trained.n_samples, size=size)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, cells=cells, rays=ray_ids)

        atomic_write(path, write)
    if size != 800:  # each ray of the render stands for (800 / size)^2 rays of the frame, in the same cells
        scale = int(round((800 / size) ** 2))
        cells, ray_ids = np.repeat(cells, scale), np.repeat(ray_ids * scale, scale) + np.tile(np.arange(scale),
                                                                                             len(ray_ids))
    evaluator = PTQEvaluator(model, occ, trained.train_data, val, views=views, n_samples=trained.n_samples,
                             rays=rays, seed=seed)
    if state is None:
        fp = evaluator.evaluate(KiloPolicy.uniform(FULL_PRECISION_BITS))
        state = {"settings": settings, "fp": fp, "rows": [], "baselines": None, "agent": None}
    state.setdefault("wall_seconds", 0.0)
    space = KiloSearchSpace(arch=model.arch, preset=accel, cells=cells, rays=ray_ids,
                            networks=len(ckpt.get("active", [])) or model.networks, b_min=settings["b_min"],
                            b_max=settings["b_max"], objective=settings["objective"], budget=settings["budget"],
                            lam=settings["lam"], max_loss=settings.get("max_loss", 0.5))
    return _Search(out=out, state=state, evaluator=evaluator, space=space, accel=accel, arch=model.arch,
                   samples=len(cells), levels=0, views=views, policy_type=KiloPolicy)


def _check_range(arch: dict, accel, settings: dict) -> None:
    """Refuse a bit range or objective the engines cannot search, before calibrating (seconds of work).

    ``rl.env.SearchSpace``'s own rules, on a nominal one-sample frame; the budget, which needs the
    measured samples per ray, is checked once they are known.

    Raises:
        ValueError: b_min/b_max outside [2, the engines' widest] or b_min > b_max, an unknown objective.
    """
    if arch.get("model") == "kilonerf":
        from rl.kilo_env import KiloSearchSpace

        KiloSearchSpace(arch=arch, preset=accel, cells=[0], rays=[0], b_min=settings["b_min"],
                        b_max=settings["b_max"], objective="tradeoff" if settings["objective"] == "latency"
                        else settings["objective"], lam=settings["lam"])
        return
    from rl.env import SearchSpace

    SearchSpace(arch=arch, preset=accel, samples=1, b_min=settings["b_min"], b_max=settings["b_max"],
                objective="tradeoff" if settings["objective"] == "latency" else settings["objective"],
                lam=settings["lam"], workload=np.full((1, 3), 0.5) if accel.has_memory else None)


def _baselines(run: _Search, b_min: int, b_max: int) -> dict:
    """Full precision and uniform-b for b in [b_min, max(b_max, 8)] (the search's fixed components at their
    bits): PSNR (dB), latency, FQR (once per search)."""
    from quant.policy import fqr

    fp = run.state["fp"]
    baselines = {"fp": {"name": "fp", "psnr": round(fp["psnr"], 4), "latency_cycles": None, "latency_ms": None,
                        "fqr": 32.0, "note": "full precision does not run on the integer engines"}}
    for b in range(b_min, max(b_max, 8) + 1):
        pol = run.policy_type.uniform(b, run.levels).replace(run.space.fixed)
        baselines[f"uniform-{b}"] = {"name": f"uniform-{b}", "psnr": round(run.evaluator.evaluate(pol)["psnr"], 4),
                                     "fqr": round(fqr(pol), 4), **run.perf(pol)}
    return baselines


def _episode(run: _Search, agent, b_min: int, b_max: int) -> dict:
    """One episode: the agent picks every component's bits, the budget is enforced, PTQ scores it, it learns.

    Returns the episode's row: episode, psnr (dB), latency_cycles, latency_ms, fqr, reward, bits.
    """
    from quant.policy import fqr
    from rl.env import action_to_bits

    space = run.space
    obs, actions, bits, prev = [], [], {}, 0.0
    seed = space.seed_bits(agent.episode)
    for i, comp in enumerate(space.names):
        o = space.observation(i, prev)
        # a seed episode plays the centre of its bits' action bin (rl.env), the agent sees it as its own
        a = agent.act(o) if seed is None else (seed - b_min + 0.5) / (b_max - b_min + 1)
        obs.append(o)
        actions.append(a)
        bits[comp] = action_to_bits(a, b_min, b_max)
        prev = a
    bits.update(space.fixed)
    policy = space.enforce_budget(run.policy_type(bits, run.levels))
    res = run.evaluator.evaluate(policy)
    perf = run.perf(policy)
    reward = space.reward(res["psnr"], run.state["fp"]["psnr"], perf["latency_cycles"])
    learn = agent.end_episode(np.stack(obs), actions, reward)
    return {"episode": learn["episode"], "psnr": round(res["psnr"], 4), **perf, "fqr": round(fqr(policy), 4),
            "reward": round(reward, 6), "feasible": space.feasible(res["psnr"], run.state["fp"]["psnr"]),
            "bits": dict(policy)}


def _run_episodes(run: _Search, episodes: int, *, warmup: int, seed: int, b_min: int, b_max: int,
                  progress: bool) -> None:
    """Episodes until ``episodes`` are done; after each, ``checkpoint.pt`` and ``episodes.csv`` (resumable)."""
    from tqdm import tqdm

    from rl.ddpg import DDPG
    from rl.env import OBS_FEATURES

    agent = DDPG(len(OBS_FEATURES), seed=seed, warmup=warmup)
    if run.state["agent"] is not None:
        agent.load_state_dict(run.state["agent"])
    rows = run.state["rows"]
    columns = _episode_columns(run.space.names)
    bar = tqdm(total=episodes, initial=len(rows), desc="search", unit="episode", disable=not progress)
    while agent.episode < episodes:
        row = _episode(run, agent, b_min, b_max)
        rows.append(row)
        run.state["agent"] = agent.state_dict()
        run.save()
        write_csv(run.out / "episodes.csv", rows, columns)
        bar.update(1)
        bar.set_postfix(psnr=f"{row['psnr']:.2f}", ms=f"{row['latency_ms']:.0f}", reward=f"{row['reward']:+.3f}")
    bar.close()


def _best(rows: list[dict], objective: str) -> dict | None:
    """The best episode: highest PSNR (then lowest latency) for ``latency``, highest reward for ``tradeoff``;
    for ``quality`` the fastest feasible one (then highest PSNR), or the highest PSNR if none is feasible."""
    def quality(r):
        return (True, -r["latency_cycles"]) if r.get("feasible") else (False, r["psnr"])

    key = {"quality": quality, "latency": lambda r: (r["psnr"], -r["latency_cycles"])}.get(objective,
                                                                                          lambda r: r["reward"])
    return max(rows, key=key) if rows else None


def candidates(rows: list[dict], k: int) -> list[dict]:
    """The ``k`` best distinct policies of a search by reward (ties: the earlier episode), for finalisation.

    The reward ranks feasible policies by latency and infeasible ones by how far they miss the bound
    (``rl.env`` module doc), so the candidates straddle the proxy's bound: a policy the PTQ proxy puts just
    outside may be feasible after fine-tuning."""
    seen, out = set(), []
    for r in sorted(rows, key=lambda r: (-r["reward"], r["episode"])):
        key = tuple(sorted(r["bits"].items()))
        if key not in seen:
            seen.add(key)
            out.append(r)
        if len(out) == k:
            break
    return out


def _summary(run: _Search, best: dict | None) -> dict:
    """``summary.json`` without wall_seconds: settings, frame, baselines, the best episode and its comparisons."""
    state, space = run.state, run.space
    fp, baselines, settings = state["fp"], state["baselines"], state["settings"]
    summary = {"settings": settings, "episodes": len(state["rows"]), "wall_seconds": None,
               "frame": {"rays": FRAME_RAYS, "samples_per_ray": round(fp["samples_per_ray"], 4),
                         "samples": run.samples},
               "val_views": run.views, "baselines": baselines, "best": None}
    if run.workload is not None:  # tables in DRAM: the frame's samples are the workload's (module doc)
        summary["frame"]["samples_source"] = "workload"
        summary["frame"]["workload_samples_per_ray"] = round(run.samples / FRAME_RAYS, 4)
    if best is None:
        return summary
    u8 = baselines["uniform-8"]
    better_psnr = [k for k, v in baselines.items() if k.startswith("uniform-") and v["psnr"] >= best["psnr"]]
    summary["best"] = {k: best[k] for k in ("episode", "psnr", "latency_cycles", "latency_ms", "fqr", "reward")}
    summary["best"]["bits"] = best["bits"]
    summary["latency_ratio_to_uniform8"] = round(best["latency_cycles"] / u8["latency_cycles"], 4)
    summary["psnr_change_vs_fp"] = round(best["psnr"] - fp["psnr"], 4)
    summary["uniform_with_psnr_at_least_best"] = better_psnr
    summary["dominates_uniform"] = all(best["latency_cycles"] < baselines[k]["latency_cycles"] for k in better_psnr)
    if settings["objective"] == "latency":
        summary["budget_cycles"] = space.target_cycles
    if settings["objective"] == "quality":
        summary["psnr_bound"] = round(fp["psnr"] - settings["max_loss"], 4)
        summary["feasible_episodes"] = sum(bool(r.get("feasible")) for r in state["rows"])
        summary["best"]["feasible"] = bool(best.get("feasible"))
    if run.workload is not None:
        summary["memory"] = _memory_summary(run, best)
    return summary


def _memory_summary(run: _Search, best: dict) -> dict:
    """Tables in DRAM: the memory system, the workload, the search's cost model (the estimate) and the
    exact memory statistics of the best policy and the uniform baselines."""
    from quant.policy import QuantPolicy
    from rl.env import CHUNK

    space, mem = run.space, run.accel.memory
    policies = {"best": QuantPolicy(best["bits"], run.levels)}
    for name in run.state["baselines"]:
        if name.startswith("uniform-"):
            policies[name] = QuantPolicy.uniform(int(name.split("-")[1]), run.levels).replace(space.fixed)
    size = run.state["settings"]["workload_size"]
    return {
        "memory_system": {**dataclasses.asdict(mem), "dram_timing": run.accel.dram_timing().to_dict()},
        "workload": {"view": run.views[0], "pixels": [size, size], "points": len(run.workload),
                     "frame_samples": run.samples,
                     "order": "rays in scanline order (rows top to bottom, left to right), samples near to far",
                     "note": "validation view rendered by the full-precision field with empty-space skipping and "
                             "early ray termination" + ("" if size == 800 else
                                                        f"; {size}x{size} pixels standing for the 800x800 frame "
                                                        f"(counts scaled by {run.samples / len(run.workload):.4f})")},
        "cost_model": {"every": space.every, "chunk": CHUNK, "points": space.points, "replays": space.replays,
                       "note": "exact memory model" if space.every == 1 else
                       f"chunk-subset estimate: every {space.every}th chunk of {CHUNK} points replayed, scaled"},
        "policies": {name: run.memory_stats(pol) for name, pol in policies.items()},
    }


def _write_best(run: _Search, best: dict, title: str) -> None:
    """``policy.yaml`` (the best policy), ``engines.yaml`` (the engines sized for it) and ``pareto.png``."""
    from hw.params import save_config

    policy = run.policy_type(best["bits"], run.levels)
    policy.save(run.out / "policy.yaml")
    save_config(run.out / "engines.yaml", _engines(run.space, policy))
    latency = run.state["settings"]["objective"] == "latency"
    budget_ms = run.space.target_cycles / (run.accel.clock_mhz * 1e3) if latency else None
    settings = run.state["settings"]
    bound = run.state["fp"]["psnr"] - settings["max_loss"] if settings["objective"] == "quality" else None
    _plot(run.state["rows"], run.state["baselines"], best, run.out / "pareto.png", title, budget_ms, bound)


def search(scene: str, preset: str = "tiny", *, hw: str = "default", episodes: int = 60, objective: str = "latency",
           budget: float = 0.5, lam: float = 0.1, max_loss: float = 0.5, b_min: int = 2, b_max: int = 8,
           val_views: int = 4, warmup: int = 20, seed: int = 0, rays: int = 8192, resume: bool = False, runs_root="runs",
           name: str | None = None, progress: bool = True, workload_size: int = 800, model: str = "ngp",
           quantizer: str = "uniform", placement: str | None = None, calibration: str | None = None) -> dict:
    """Run (or resume) a search; returns the summary (also ``summary.json``).

    ``model``: ``ngp`` (the trained Instant-NGP field) or ``kilonerf`` (``make kilonerf``'s grid of tiny MLPs,
    ``rl.kilo_env``; run folder ``search-<scene>-<preset>-kilonerf-<objective>``).

    ``quantizer``: the MLPs' quantizer, ``uniform`` (default) or ``dhq`` (``quant.dhq_field``: DHQ layers placed
    by ``placement``, "all" (default) or "paper", calibrated by ``calibration``, "min-max" (default), "mse" or
    "percentile"): every policy is then scored with DHQ and costed on the Hadamard datapath
    (``sim.perf.frame_perf(datapath="hadamard")``, tables on chip: ``hw`` must be an on-chip preset); the
    full-precision baseline is the DHQ field at 32 bits (the rotation is exact: the field up to float
    rounding). Run folder ``...-dhq-<placement>-<calibration>-<objective>``.

    Raises:
        FileNotFoundError: no trained checkpoint (names the ``make train`` command).
        rl.env.BudgetError: the budget is unreachable in [b_min, b_max] (gives the lowest latency).
        SearchError: the run folder holds a search and ``resume`` is false, or a resume with other settings.
        hw.params.ConfigError: unknown or invalid hardware preset.
        ValueError: a bad argument (``rl.env.SearchSettings``: episodes 0, budget inf or nan, ...; an unknown
            quantizer, placement or calibration; placement "rule"; DHQ with KiloNeRF or a memory preset), before
            any work.
    """
    from quant.dhq_field import check_options
    from rl.env import SearchSettings

    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, not {model!r}")
    options = check_options(quantizer, placement, calibration)
    if options["quantizer"] == "dhq":
        if model != "ngp":
            raise ValueError(f"quantizer 'dhq' is for the Instant-NGP field's MLPs, not model {model!r}")
        if options["placement"] == "rule":
            raise ValueError("placement 'rule' decides each rotation from the policy's bits, which the search "
                             "changes with every episode: use placement 'all' or 'paper'")
    # every argument checked before any work starts (ValueError naming the field, range and value)
    SearchSettings(episodes=episodes, warmup=warmup, objective=objective, budget=budget, lam=lam, max_loss=max_loss,
                   b_min=b_min, b_max=b_max, val_views=val_views, rays=rays, seed=seed, workload_size=workload_size)
    from flows.runs import scene_name
    from sim.perf import load_accelerator

    t_start = time.perf_counter()
    accel = load_accelerator(hw)
    if options["quantizer"] == "dhq" and accel.has_memory:
        raise ValueError(f"hardware preset {accel.name!r} keeps the hash tables in DRAM; the Hadamard datapath (DHQ) "
                         "is modelled with the tables on chip: use HW=onchip (or another preset without memory)")
    out = _run_folder(scene, preset, objective_tag(objective, max_loss), name, runs_root, model, options)
    settings = {"scene": scene, "preset": preset, "hw": accel.name, "objective": objective, "budget": budget,
                "lam": lam, "b_min": b_min, "b_max": b_max, "val_views": val_views, "warmup": warmup, "seed": seed,
                "rays": rays}
    if accel.has_memory or model == "kilonerf":
        settings["workload_size"] = workload_size
    if model != "ngp":  # only here: older searches resume with the settings they were saved with
        settings["model"] = model
    if objective == "quality":  # only here: older searches resume with the settings they were saved with
        settings["max_loss"] = max_loss
    if options["quantizer"] != "uniform":  # only here, likewise
        settings.update(options)
    state = _prior_state(out / "checkpoint.pt", settings, resume)
    run = _setup(scene, preset, accel, out, settings, state, runs_root=runs_root, val_views=val_views, rays=rays,
                 seed=seed)
    run.t_last = t_start
    if run.state["baselines"] is None:
        run.state["baselines"] = _baselines(run, b_min, b_max)
    _run_episodes(run, episodes, warmup=warmup, seed=seed, b_min=b_min, b_max=b_max, progress=progress)
    best = _best(run.state["rows"], objective)
    summary = _summary(run, best)
    if best is not None:
        _write_best(run, best, f"{scene_name(scene)} ({preset}), {accel.name} accelerator, {objective} objective")
    run.save()
    summary["wall_seconds"] = round(run.state["wall_seconds"], 1)
    write_json(out / "summary.json", summary)
    return summary
