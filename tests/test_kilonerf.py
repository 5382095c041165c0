"""KiloNeRF: the batched grid of tiny MLPs, its grid fitting, policies, and distillation from a trained field."""

import json

import pytest
import torch
import torch.nn.functional as F

from flows.cli import main
from nerf.kilonerf import KiloNeRF, grid_shape, kilonerf_layout, positional_encoding
from quant.policy import KiloPolicy, PolicyError, QuantPolicy
from tests.conftest import quick_preset, train_quick

QUICK = quick_preset(iterations=40, n_samples=24, log2_table_size=10, n_max=32, levels=4, batch_samples=2048)


def _naive(model, pts, dirs):
    """One network at a time, no batching: the reference for the grouped evaluation."""
    cell, local = model.cell_of(pts)
    sig, rgb = [], []
    for i in range(pts.shape[0]):
        k = int(cell[i])

        def lin(name, h):
            return h @ model.weights[name.replace(".", "__")][k].T + model.biases[name.replace(".", "__")][k]

        h = F.relu(lin("density.l0", positional_encoding(local[i:i + 1], 10)))
        out = lin("density.l2", F.relu(lin("density.l1", h)))
        h = F.relu(lin("color.l0", torch.cat([out[:, 1:], positional_encoding(dirs[i:i + 1], 4)], -1)))
        sig.append(F.relu(out[0, 0]))
        rgb.append(torch.sigmoid(lin("color.l1", h))[0])
    return torch.stack(sig), torch.stack(rgb)


def test_grouped_evaluation_equals_one_network_per_sample():
    torch.manual_seed(0)
    model = KiloNeRF(grid=[3, 4, 2], bbox=[[-1, -1, -1], [1, 1, 1]])
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.2)  # networks differ from each other
    pts = torch.rand(300, 3) * 2 - 1
    dirs = F.normalize(torch.randn(300, 3), dim=-1)
    with torch.no_grad():
        sigma, rgb = model(pts, dirs)
        ref_sigma, ref_rgb = _naive(model, pts, dirs)
    assert torch.allclose(sigma, ref_sigma, atol=1e-5) and torch.allclose(rgb, ref_rgb, atol=1e-5)
    assert len(torch.unique(model.cell_of(pts)[0])) == 24  # every network was used


def test_layout_and_parameters_are_the_papers():
    model = KiloNeRF(grid=[9, 16, 10], bbox=[[0, 0, 0], [0.9, 1.6, 1.0]])
    assert kilonerf_layout(model.arch) == {"density.l0": (63, 32), "density.l1": (32, 32), "density.l2": (32, 33),
                                           "color.l0": (59, 32), "color.l1": (32, 3)}
    assert model.networks == 1440 and model.parameter_count() == 1440 * 6212


def test_grid_fits_the_box_with_cubic_cells():
    assert grid_shape((0.9, 1.6, 1.0), 16) == (9, 16, 10)
    assert grid_shape((2.0, 2.0, 2.0), 4) == (4, 4, 4)
    with pytest.raises(ValueError, match="longest axis must be a positive integer, not 0"):
        grid_shape((1.0, 1.0, 1.0), 0)
    with pytest.raises(ValueError, match="grid cells along y must be a positive integer, not 0"):
        KiloNeRF(grid=[2, 0, 2], bbox=[[0, 0, 0], [1, 1, 1]])


def test_policies_of_the_other_family_are_named():
    kilo = KiloPolicy.uniform(8)
    assert len(kilo) == 14 and set(kilo.values()) == {8}
    with pytest.raises(PolicyError, match="this is an Instant-NGP policy, the model is KiloNeRF"):
        KiloPolicy(QuantPolicy.uniform(8, 4).to_dict())
    with pytest.raises(PolicyError, match="this is a KiloNeRF policy, the model is an Instant-NGP field"):
        QuantPolicy(kilo.to_dict(), 4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_quick(tmp_path_factory.mktemp("runs"), QUICK)


def test_make_kilonerf_distils_resumes_and_reports_the_teacher(runs, capsys):
    args = ["--runs", str(runs), "kilonerf", "--scene", "builtin", "--preset", "quick", "--kilo", "smoke"]
    assert main(args + ["--until", "distill"]) == 0
    assert "run the same command again" in capsys.readouterr().out
    out = runs / "kilonerf-builtin-quick"
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["stage"] == "finetune" and ckpt["step"] == 0
    assert main(args) == 0  # resumes: fine-tuning only
    s = json.loads((out / "summary.json").read_text())
    assert s["finished"] and s["networks"] == 4 ** 3 >= s["networks_trained"] > 0
    assert abs(s["psnr_vs_teacher"]) < 3  # a 40-iteration teacher (~8 dB) is reproduced
    assert s["psnr_vs_teacher"] == pytest.approx(s["psnr_test"] - s["teacher_psnr_test"], abs=2e-3)
    assert s["train_seconds"]["distill"] > 0 and s["train_seconds"]["finetune"] > 0
    assert "KiloNeRF 4x4x4 = 64 networks" in capsys.readouterr().out
    assert len(list((out / "test").glob("*.png"))) == s["test_views"]


def test_a_kilonerf_checkpoint_is_refused_as_teacher(runs, capsys, tmp_path):
    from nerf.kilo_train import KILO_PRESETS, KiloCheckpointError, distill

    ckpt = runs / "kilonerf-builtin-quick" / "checkpoint.pt"
    if not ckpt.exists():
        pytest.skip("needs the distillation of the previous test")
    with pytest.raises(KiloCheckpointError, match="is a KiloNeRF checkpoint; the teacher must be"):
        distill(ckpt, KILO_PRESETS["smoke"], tmp_path / "out", progress=False)
    assert main(["--runs", str(tmp_path), "kilonerf", "--scene", "builtin", "--preset", "quick"]) == 2
    assert "run `make train SCENE=builtin PRESET=quick` first" in capsys.readouterr().err


@pytest.mark.parametrize("objective", ["latency", "tradeoff", "quality"])
def test_search_runs_on_kilonerf_with_every_objective(runs, objective):
    from flows.search import search

    if not (runs / "kilonerf-builtin-quick" / "summary.json").exists():
        pytest.skip("needs the distillation of test_make_kilonerf_distils_resumes_and_reports_the_teacher")
    s = search("builtin", "quick", hw="onchip", episodes=3, warmup=2, val_views=1, rays=256, b_min=6, b_max=8,
               objective=objective, budget=0.9, max_loss=3.0, runs_root=runs, progress=False, workload_size=10,
               model="kilonerf")
    out = runs / f"search-builtin-quick-kilonerf-{objective if objective != 'quality' else 'quality3dB'}"
    policy = KiloPolicy.load(out / "policy.yaml")
    assert s["episodes"] == 3 and dict(policy) == s["best"]["bits"]
    u6, u8 = s["baselines"]["uniform-6"], s["baselines"]["uniform-8"]
    assert u6["latency_cycles"] < u8["latency_cycles"]  # fewer bits, fewer cycles on the banked engines
    if objective == "latency":
        assert s["best"]["latency_cycles"] <= s["budget_cycles"]
    assert "weight_banks: 2" in (out / "engines.yaml").read_text()
    if objective == "quality":  # make verilog POLICY= takes it: the banked engine at the policy's widths
        from flows.cli import _policy_engines
        from hw.params import ConfigError

        engines, sections = _policy_engines(out / "policy.yaml")
        assert sections["mlp_engine"].weight_banks == 2 and engines == out / "engines.yaml"
        (out / "policy.yaml").write_text((out / "policy.yaml").read_text().replace("density.l0.weight: ",
                                                                                  "density.l0.weight: 1"))
        with pytest.raises(ConfigError, match="density.l0.weight = 1[0-9] bits does not fit"):
            _policy_engines(out / "policy.yaml")


def test_search_refuses_a_missing_kilonerf(tmp_path):
    from flows.search import search

    train_dir = tmp_path / "train-builtin-quick"
    train_dir.mkdir()
    with pytest.raises(FileNotFoundError, match="no trained checkpoint"):
        search("builtin", "quick", runs_root=tmp_path, model="kilonerf", progress=False)
    with pytest.raises(ValueError, match="model must be one of ngp, kilonerf, not 'nerf'"):
        search("builtin", "quick", runs_root=tmp_path, model="nerf", progress=False)
