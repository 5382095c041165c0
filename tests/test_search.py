"""The DDPG search flow (flows/search.py) and its environment (rl/env.py) on a quickly trained field."""

import json

import numpy as np
import pytest

from flows.search import SearchError, search
from hw.params import load_config
from nerf.model import InstantNGP
from quant.policy import QuantPolicy
from rl.env import OBS_FEATURES, BudgetError, SearchSpace, action_to_bits
from sim.perf import frame_perf, load_accelerator
from tests.conftest import acaq_arch, quick_preset, train_quick

QUICK = quick_preset(iterations=30, n_samples=24, log2_table_size=10, n_max=32, levels=4, batch_samples=2048)
ARGS = dict(episodes=4, warmup=2, val_views=1, rays=1024, progress=False, hw="onchip")
ARCH = acaq_arch()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_quick(tmp_path_factory.mktemp("runs"), QUICK)


def test_action_to_bits_is_haqs_equal_width_mapping():
    assert [action_to_bits(a, 2, 8) for a in (0.0, 0.1428, 0.1429, 0.5, 0.857, 0.8572, 1.0)] == [2, 2, 3, 5, 7, 8, 8]


def test_observations_are_normalised_and_carry_the_previous_action():
    space = SearchSpace(arch=ARCH, preset=load_accelerator("onchip"), samples=10_000_000)
    assert space.static.shape == (30, len(OBS_FEATURES) - 1)
    assert space.static.min() == 0.0 and space.static.max() == 1.0
    o = space.observation(3, 0.25)
    assert o.dtype == np.float32 and o[-1] == np.float32(0.25)
    shares = space.latency_shares(QuantPolicy.uniform(8, 16))
    assert shares["density.out"] == 0 and shares["color.l1.weight"] == shares["color.l1.act_in"] > 0


def test_budget_is_enforced_on_latency_sensitive_components_only():
    space = SearchSpace(arch=ARCH, preset=load_accelerator("onchip"), samples=1_000_000, budget=0.3)
    policy = space.enforce_budget(QuantPolicy.uniform(8, 16))
    assert space.cycles(policy) <= space.target_cycles < space.cycles(QuantPolicy.uniform(8, 16))
    assert all(policy[f"hash.level{i:02d}"] == 8 for i in range(16)) and policy["color.out"] == 8
    assert QuantPolicy(policy, 16) != QuantPolicy.uniform(8, 16)


def test_unreachable_budget_names_the_lowest_latency():
    with pytest.raises(BudgetError, match=r"below the lowest latency reachable with bits in \[4, 8\]: \d+ cycles "
                                          r"\(uniform-4, 0.2\d\d x uniform-8\)"):
        SearchSpace(arch=ARCH, preset=load_accelerator("onchip"), samples=1000, b_min=4, budget=0.1)
    with pytest.raises(ValueError, match=r"SearchSpace.objective must be one of .latency., .tradeoff., .quality., "
                                         r"not .fast."):
        SearchSpace(arch=ARCH, preset=load_accelerator("onchip"), samples=1000, objective="fast")


def test_tradeoff_reward_formula():
    space = SearchSpace(arch=ARCH, preset=load_accelerator("onchip"), samples=1000, objective="tradeoff", lam=0.1)
    ref = space.reference_cycles
    assert space.reward(30.0, 31.0, ref) == pytest.approx(-0.1)
    assert space.reward(30.0, 31.0, ref // 2) == pytest.approx(-0.1 + 0.1, abs=1e-4)


def test_quality_reward_has_a_slope_on_both_sides_of_the_bound():
    from rl.env import QUALITY_MU

    space = SearchSpace(arch=ARCH, preset=load_accelerator("onchip"), samples=1000, objective="quality", max_loss=0.5)
    ref = space.reference_cycles
    # inside: 0 at uniform-8's latency, +1 per halving, PSNR above the bound earns nothing more
    assert space.reward(30.6, 31.0, ref) == pytest.approx(0.0)
    assert space.reward(30.9, 31.0, ref // 2) == pytest.approx(1.0, abs=1e-6)
    assert space.feasible(30.5, 31.0) and not space.feasible(30.49, 31.0)
    # outside: mu per dB of deficit below PSNR_fp - max_loss, latency still counts
    assert space.reward(29.5, 31.0, ref) == pytest.approx(-QUALITY_MU * 1.0)
    assert space.reward(29.5, 31.0, ref // 2) > space.reward(29.5, 31.0, ref) > space.reward(29.0, 31.0, ref)
    other = SearchSpace(arch=ARCH, preset=load_accelerator("onchip"), samples=1000, objective="tradeoff")
    assert other.feasible(0.0, 31.0)


def test_quality_best_is_the_fastest_feasible_and_candidates_are_distinct():
    from flows.search import _best, candidates

    def row(ep, psnr, cycles, reward, feasible, b):
        return {"episode": ep, "psnr": psnr, "latency_cycles": cycles, "reward": reward, "feasible": feasible,
                "bits": {"x": b}}

    rows = [row(0, 30.0, 100, 0.1, True, 8), row(1, 29.9, 80, 0.3, True, 6), row(2, 25.0, 40, -2.0, False, 2),
            row(3, 29.9, 80, 0.3, True, 6), row(4, 29.0, 60, 0.2, False, 4)]
    assert _best(rows, "quality")["episode"] == 1
    assert _best([rows[2], rows[4]], "quality")["episode"] == 4  # none feasible: the highest PSNR
    assert [r["episode"] for r in candidates(rows, 3)] == [1, 4, 0]  # by reward, the repeat of episode 1 dropped
    assert len(candidates(rows, 10)) == 4


def test_search_writes_everything_and_resumes_without_losing_or_repeating(runs):
    straight = search("builtin", "quick", runs_root=runs, name="a", **ARGS)
    out = runs / "search-a"
    for f in ("policy.yaml", "engines.yaml", "episodes.csv", "pareto.png", "summary.json", "checkpoint.pt"):
        assert (out / f).is_file(), f
    assert json.loads((out / "summary.json").read_text()) == straight
    assert {"psnr", "latency_cycles", "latency_ms", "fqr"} <= straight["best"].keys()
    assert {"uniform-8", "uniform-6", "fp"} <= straight["baselines"].keys() and straight["episodes"] == 4
    assert len((out / "episodes.csv").read_text().splitlines()) == 1 + 4
    # every episode meets the budget, and the latency is the frame model's for that policy
    accel = load_accelerator("onchip")
    rows = straight["baselines"]
    assert straight["best"]["latency_cycles"] <= straight["budget_cycles"] < rows["uniform-8"]["latency_cycles"]
    best = QuantPolicy.load(out / "policy.yaml", 4)
    arch = InstantNGP(levels=4, log2_table_size=10, n_min=QUICK.n_min, n_max=QUICK.n_max).arch
    assert frame_perf(accel, arch, best,
                      samples=straight["frame"]["samples"]).cycles == straight["best"]["latency_cycles"]
    engines = load_config(out / "engines.yaml")
    assert engines["mlp_engine"].max_weight_bits == max(v for k, v in best.items() if k.endswith(".weight"))
    # interrupted after 2 episodes, resumed to 4: the same episodes as the straight run
    search("builtin", "quick", runs_root=runs, name="b", **{**ARGS, "episodes": 2})
    with pytest.raises(SearchError, match="already holds a search: continue it with RESUME=1"):
        search("builtin", "quick", runs_root=runs, name="b", **ARGS)
    with pytest.raises(SearchError, match="cannot resume with other settings: budget was 0.5, now 0.6"):
        search("builtin", "quick", runs_root=runs, name="b", resume=True, budget=0.6, **ARGS)
    resumed = search("builtin", "quick", runs_root=runs, name="b", resume=True, **ARGS)
    assert (runs / "search-b" / "episodes.csv").read_text() == (out / "episodes.csv").read_text()
    assert resumed["best"] == straight["best"]


def test_search_without_a_checkpoint_says_which_command_makes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run `make train SCENE=builtin PRESET=tiny` first"):
        search("builtin", "tiny", runs_root=tmp_path, **ARGS)


def test_a_bit_range_the_engines_cannot_run_is_refused_before_calibration(runs, monkeypatch):
    import quant.ptq

    monkeypatch.setattr(quant.ptq, "PTQEvaluator", lambda *a, **k: pytest.fail("calibrated before checking"))
    with pytest.raises(ValueError, match=r"SearchSpace.b_max must be an integer in \[2, 16\], not 20"):
        search("builtin", "quick", runs_root=runs, name="wide", **{**ARGS, "episodes": 1}, b_max=20)
    assert not (runs / "search-wide").exists()


@pytest.mark.parametrize("kwargs, message", [
    ({"episodes": 0}, r"^SearchSettings.episodes must be an integer >= 1, not 0$"),
    ({"budget": float("inf")}, r"^SearchSettings.budget must be a finite number > 0, not inf$"),
    ({"budget": float("nan")}, r"^SearchSettings.budget must be a finite number > 0, not nan$"),
    ({"budget": 0}, r"^SearchSettings.budget must be a finite number > 0, not 0$"),
    ({"lam": -0.1}, r"^SearchSettings.lam must be a finite number >= 0, not -0.1$"),
    ({"b_min": 6, "b_max": 4}, r"^SearchSettings.b_max must be an integer in \[6, 32\], not 4$"),
    ({"objective": "fast"}, r"^SearchSettings.objective must be one of 'latency', 'tradeoff', 'quality', not 'fast'$"),
    ({"max_loss": 0}, r"^SearchSettings.max_loss must be a finite number > 0, not 0$"),
    ({"max_loss": float("inf")}, r"^SearchSettings.max_loss must be a finite number > 0, not inf$"),
    ({"warmup": -1}, r"^SearchSettings.warmup must be an integer >= 0, not -1$"),
])
def test_search_refuses_bad_arguments_before_any_work(tmp_path, kwargs, message):
    # no trained field in tmp_path: a check made after the setup would raise FileNotFoundError instead
    with pytest.raises(ValueError, match=message):
        search("builtin", "tiny", runs_root=tmp_path, **{**ARGS, **kwargs})
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("kwargs, message", [
    ({"budget": float("inf")}, r"SearchSpace.budget must be a finite number > 0, not inf"),
    ({"samples": 0}, r"SearchSpace.samples must be an integer >= 1, not 0"),
    ({"b_min": 3, "b_max": 9}, r"SearchSpace.b_max must be an integer in \[3, 8\], not 9 \(b_min to the engines' "
                               r"widest\)"),
    ({"b_min": 1}, r"SearchSpace.b_min must be an integer in \[2, 32\], not 1"),
    ({"b_min": 9, "b_max": 9}, r"SearchSpace.b_min must be an integer in \[2, 8\], not 9 \(the engines' widest\)"),
    ({"lam": float("nan"), "objective": "tradeoff"}, r"SearchSpace.lam must be a finite number >= 0, not nan"),
])
def test_search_space_refuses_bad_fields(kwargs, message):
    args = {"arch": ARCH, "preset": load_accelerator("small"), "samples": 1000, **kwargs}
    with pytest.raises(ValueError, match=message):
        SearchSpace(**args)


# --- tables in DRAM: the memory-aware search space --------------------------------------------------
MEM_ARCH = {"levels": 4, "log2_table_size": 12, "features": 2, "n_min": 8, "n_max": 128, "hidden": 8,
            "geo_features": 3, "bbox": [[-1.0] * 3, [1.0] * 3]}


def _rays(n_rays=500, seed=0):
    rng = np.random.default_rng(seed)
    start, step = rng.random((n_rays, 3)) * 0.8 + 0.1, (rng.random((n_rays, 3)) - 0.5) * 0.02
    return np.clip((start[:, None, :] + np.arange(6)[None, :, None] * step[:, None, :]).reshape(-1, 3), 0, 0.999)


def _memory_space(**kw):
    from sim.mapping import MemoryPreset

    mlp = dict(rows=64, cols=32, max_in=64, max_out=64, max_layers=3, max_weight_bits=8, max_act_bits=8, mult_bits=8)
    from hw.params import MlpEngineParams
    from sim.mapping import AcceleratorPreset

    preset = AcceleratorPreset(name="m", lanes=2, coord_bits=12, feature_bits=8, mlp=MlpEngineParams(**mlp),
                               memory=MemoryPreset(cache_bytes=512, ways=2))
    u = _rays()
    return SearchSpace(arch=MEM_ARCH, preset=preset, samples=len(u), workload=u, **kw), u


def test_memory_search_space_costs_policies_with_the_memory_model_memoised():
    space, u = _memory_space(objective="tradeoff")
    pol = QuantPolicy.uniform(3, 4).replace({f"hash.level{i:02d}": 4 for i in range(4)})
    exact = frame_perf(space.preset, MEM_ARCH, pol, samples=len(u), workload=u)
    n = space.replays
    assert space.cycles(pol) == exact.cycles and space.replays == n + 1
    assert space.cycles(pol) == exact.cycles and space.replays == n + 1  # memoised: no second replay
    # color.out feeds the renderer, no engine: same latency key, no replay
    assert space.cycles(pol.replace({"color.out": 7})) == exact.cycles and space.replays == n + 1
    wider = pol.replace({f"hash.level{i:02d}": 8 for i in range(4)})
    assert space.cycles(wider) > space.cycles(pol) and space.replays == n + 2  # table bits change latency
    assert space.perf(wider).dram["requests"] > exact.dram["requests"]
    # hash levels are latency-sensitive and carry their share of the encoder's busy cycles
    assert {f"hash.level{i:02d}" for i in range(4)} <= set(space.latency_sensitive)
    shares = space.latency_shares(QuantPolicy.uniform(8, 4))
    p8 = space.perf(QuantPolicy.uniform(8, 4))
    hashed = [shares[f"hash.level{i:02d}"] for i in range(4)]
    assert all(h > 0 for h in hashed) and hashed[3] > hashed[0]  # the finest level misses most
    assert sum(hashed) == pytest.approx(p8.engines["encoder"]["busy_cycles"] / p8.cycles)
    with pytest.raises(ValueError, match="needs the scene's workload"):
        SearchSpace(arch=MEM_ARCH, preset=space.preset, samples=100)


def test_memory_budget_lowers_table_bits_when_the_memory_is_the_bottleneck():
    space, _ = _memory_space(budget=0.24)
    base = QuantPolicy.uniform(2, 4).replace({f"hash.level{i:02d}": 8 for i in range(4)})  # MLPs at their lowest
    assert space.perf(base).bottleneck == "memory" and space.cycles(base) > space.target_cycles
    policy = space.enforce_budget(base)
    assert space.cycles(policy) <= space.target_cycles
    assert any(policy[f"hash.level{i:02d}"] < 8 for i in range(4))


def test_memory_search_space_subset_estimate_is_close_to_exact():
    rng = np.random.default_rng(3)
    u = np.clip(np.cumsum(rng.normal(0, 0.004, (40000, 3)), axis=0) % 1.0, 0, 0.999)  # a coherent stream
    from sim.mapping import AcceleratorPreset, MemoryPreset
    from hw.params import MlpEngineParams

    preset = AcceleratorPreset(name="m", lanes=2, coord_bits=12, feature_bits=8, mlp=MlpEngineParams(
        rows=64, cols=32, max_in=64, max_out=64, max_layers=3, max_weight_bits=8, max_act_bits=8, mult_bits=8),
        memory=MemoryPreset(cache_bytes=512, ways=2))
    est = SearchSpace(arch=MEM_ARCH, preset=preset, samples=len(u), workload=u, every=2, objective="tradeoff")
    assert est.points < len(u)
    pol = QuantPolicy.uniform(2, 4).replace({"hash.level02": 6})
    exact = frame_perf(preset, MEM_ARCH, pol, samples=len(u), workload=u).cycles
    assert est.cycles(pol) != exact and abs(est.cycles(pol) / exact - 1) < 0.02
    assert "estimate" in est.perf(pol).workload["note"]


def test_memory_search_builds_the_workload_and_reports_memory_statistics(runs):
    s = search("builtin", "quick", runs_root=runs, name="mem", **{**ARGS, "hw": "default", "episodes": 2},
               workload_size=24)
    out = runs / "search-mem"
    u = np.load(out / "workload.npy")
    mem = s["memory"]
    assert mem["workload"]["points"] == len(u) > 0 and mem["workload"]["pixels"] == [24, 24]
    assert s["frame"]["samples"] == round(len(u) * 800 * 800 / 24 ** 2)  # the view stands for the 800x800 frame
    assert {"best", "uniform-8", "uniform-2"} <= mem["policies"].keys()
    best = mem["policies"]["best"]
    assert len(best["hit_rates"]) == 4 and best["bottleneck"] in ("encoder", "density", "color", "memory")
    assert best["dram_bytes"] > 0 and 0 <= best["stall_share"] <= 1
    # the summary's exact statistics are frame_perf's on the workload, and the episodes' latency the space's
    arch = InstantNGP(levels=4, log2_table_size=10, n_min=QUICK.n_min, n_max=QUICK.n_max).arch
    policy = QuantPolicy.load(out / "policy.yaml", 4)
    exact = frame_perf(load_accelerator("default"), arch, policy, samples=s["frame"]["samples"], workload=u)
    assert best["cycles"] == exact.cycles and best["dram_bytes"] == exact.dram["bytes"]
    assert s["best"]["latency_cycles"] == best["search_estimate_cycles"]
    assert mem["cost_model"]["every"] == 1 and best["estimate_error"] == 0.0
    assert "hash_encoder_axi" in load_config(out / "engines.yaml")


def test_memory_report_compares_caches_and_table_bits_exactly(runs):
    from flows.memory import CACHE_VARIANTS, memory_report

    s = memory_report("builtin", "quick", size=24, runs_root=runs)
    out = runs / "memory-builtin-quick"
    codes = np.load(out / "workload.npy")
    assert s["samples"] == len(codes) > 0 and set(s["configs"]) == set(CACHE_VARIANTS)
    arch = InstantNGP(levels=4, log2_table_size=10, n_min=QUICK.n_min, n_max=QUICK.n_max).arch
    for row in s["configs"].values():
        for p in row["policies"].values():  # every request reads one 64-byte line, one LPDDR4/HBM2 burst
            assert p["dram"]["bytes"] == 64 * p["dram"]["requests"] > 0
            assert all(0.0 <= lv["hit_rate"] <= 1.0 for lv in p["levels"])
    exact = frame_perf(load_accelerator("default"), arch, QuantPolicy.uniform(8, 4), samples=len(codes), workload=codes)
    assert s["configs"]["preset"]["policies"]["uniform-8"]["cycles"] == exact.cycles
    assert "| preset | tables-4 |" in (out / "table.md").read_text()


def test_quality_search_seeds_uniform_policies_and_keeps_the_exp_output_wide(runs):
    import torch

    s = search("builtin", "quick", runs_root=runs, name="q", objective="quality", max_loss=3.0,
               **{**ARGS, "episodes": 8})
    rows = torch.load(runs / "search-q" / "checkpoint.pt", weights_only=False)["rows"]
    for e, b in enumerate(range(8, 1, -1)):  # the first b_max - b_min + 1 episodes: uniform b_max .. b_min
        assert rows[e]["bits"] == {**QuantPolicy.uniform(b, 4).to_dict(), "density.out": 32}
    assert all(r["bits"]["density.out"] == 32 for r in rows)
    assert s["psnr_bound"] == pytest.approx(s["baselines"]["fp"]["psnr"] - 3.0, abs=1e-3)
    assert s["feasible_episodes"] == sum(r["psnr"] >= s["psnr_bound"] for r in rows) >= 1
    assert s["best"]["feasible"] and s["best"]["latency_cycles"] == min(r["latency_cycles"] for r in rows
                                                                        if r["feasible"])
    assert (runs / "search-q" / "summary.json").is_file()
