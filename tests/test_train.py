import dataclasses
import json

import pytest
import torch

from nerf.train import PRESETS, CheckpointError, load_checkpoint, train

# A few iterations on the built-in scene: exercises the loop, checkpoints, resume and evaluation.
QUICK = dataclasses.replace(PRESETS["tiny"], name="quick", iterations=6, batch_rays=64, n_samples=16,
                            log2_table_size=10, n_max=64, occupancy_res=16, occupancy_warmup=2,
                            occupancy_every=2, checkpoint_every=2, test_every=4, downscale=4, batch_samples=None)


def test_training_writes_summary_views_and_checkpoint(tmp_path):
    s = train("builtin", QUICK, tmp_path, downscale=4, progress=False)
    assert {"scene", "preset", "psnr_test", "ssim_test", "iterations", "train_seconds", "parameters"} <= s.keys()
    assert s["iterations"] == 6 and s["finished"] and s["resolution"] == [25, 25]
    assert json.loads((tmp_path / "summary.json").read_text()) == s
    # test_every 4 would leave 2 of the 8 test views; the stride keeps at least 8 views
    assert sorted(p.name for p in (tmp_path / "test").iterdir()) == [f"{i:03d}.png" for i in range(8)]
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["step"] == 6
    assert ckpt["preset"]["mlp_lr"] == 1e-3 and ckpt["preset"]["downscale"] == 4  # what was really used
    assert 5 < s["psnr_test"] < 60


def test_interrupted_run_resumes_without_losing_or_repeating_iterations(tmp_path):
    straight = train("builtin", QUICK, tmp_path / "a", downscale=4, progress=False)
    part = train("builtin", QUICK, tmp_path / "b", until=3, downscale=4, progress=False)
    assert part == {"scene": "builtin", "preset": "quick", "iterations": 3, "finished": False}
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 3
    resumed = train("builtin", QUICK, tmp_path / "b", downscale=4, progress=False)
    assert resumed["iterations"] == 6
    a = load_checkpoint(tmp_path / "a" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-identical to the uninterrupted run
    assert resumed["psnr_test"] == straight["psnr_test"]


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    train("builtin", QUICK, tmp_path, until=2, downscale=4, progress=False)
    other = dataclasses.replace(QUICK, log2_table_size=11)
    with pytest.raises(CheckpointError, match=r"checkpoint.pt: architecture field 'log2_table_size' is 10, "
                                              r"this model needs 11"):
        train("builtin", other, tmp_path, downscale=4, progress=False)


def test_unreadable_checkpoint_is_named(tmp_path):
    bad = tmp_path / "checkpoint.pt"
    bad.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(bad)


def test_model_from_checkpoint_rebuilds_the_trained_field(tmp_path):
    from nerf.train import model_from_checkpoint

    train("builtin", QUICK, tmp_path, until=2, downscale=4, progress=False)
    model, occupancy, ckpt = model_from_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["step"] == 2 and occupancy.res == QUICK.occupancy_res
    assert all(torch.equal(v, ckpt["model"][k]) for k, v in model.state_dict().items())


def test_sample_budget_sets_the_ray_count_from_the_last_step(tmp_path):
    # warm-up steps (no occupancy grid yet) evaluate every sample of a ray that hits the box: at most
    # n_samples = 16 per ray, so the budget asks for at least budget / 16 rays (clamped to >= 64)
    budget = dataclasses.replace(QUICK, batch_samples=512, iterations=3)
    train("builtin", budget, tmp_path, until=2, downscale=4, progress=False)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["rays"] == 64
    budget = dataclasses.replace(budget, batch_samples=4096)
    train("builtin", budget, tmp_path / "b", until=2, downscale=4, progress=False)
    assert 4096 // 16 <= load_checkpoint(tmp_path / "b" / "checkpoint.pt")["rays"] < 4096 // 4


def test_compiled_training_matches_eager_training(tmp_path):
    quick = dataclasses.replace(QUICK, iterations=3)
    eager = train("builtin", quick, tmp_path / "eager", downscale=4, progress=False)
    compiled = train("builtin", quick, tmp_path / "compiled", compile=True, downscale=4, progress=False)
    assert compiled["compiled"] and not eager["compiled"]
    a = load_checkpoint(tmp_path / "eager" / "checkpoint.pt")["model"]
    b = load_checkpoint(tmp_path / "compiled" / "checkpoint.pt")["model"]
    # same steps, same rays; fused kernels round differently, so close rather than equal
    assert all(torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-4) for k in a)
    assert abs(compiled["psnr_test"] - eager["psnr_test"]) < 0.05
