import dataclasses
import json
import re

import numpy as np
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


# ---------------------------------------------------------------------------------- background (item 8)


def test_scenes_with_alpha_train_on_a_random_background_per_ray(tmp_path, monkeypatch):
    import nerf.train as T

    seen = []
    original = T.render_rays

    def spy(*args, **kwargs):
        seen.append(kwargs.get("background"))
        return original(*args, **kwargs)

    monkeypatch.setattr(T, "render_rays", spy)
    quick = dataclasses.replace(QUICK, iterations=2)
    s = train("builtin", quick, tmp_path / "random", downscale=4, progress=False)
    bgs = [b for b in seen if isinstance(b, torch.Tensor)]
    assert len(bgs) == 2 and s["background"] == "random"  # the two training steps; evaluation is on white
    assert all(b.shape[1] == 3 and 0 <= float(b.min()) and float(b.max()) <= 1 and float(b.std()) > 0.2 for b in bgs)
    assert all(b in (None, 1.0) for b in seen if not isinstance(b, torch.Tensor))  # evaluation: the default, white
    seen.clear()
    train("builtin", quick, tmp_path / "white", downscale=4, progress=False, background="white")
    assert all(b in (None, 1.0) for b in seen)


def test_alpha_composites_onto_any_background(tmp_path):
    """images + (b - 1)(1 - alpha) is the scene on background b: the identity training relies on."""
    from PIL import Image

    from nerf.data import load_blender

    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    (tmp_path / "a.png").parent.mkdir(exist_ok=True)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    (tmp_path / "transforms_train.json").write_text(json.dumps(
        {"camera_angle_x": 0.7, "frames": [{"file_path": "a", "transform_matrix": np.eye(4).tolist()}]}))
    white = load_blender(tmp_path, "train", downscale=2)
    for b in ((0.0, 0.0, 0.0), (0.2, 0.9, 0.5)):
        other = load_blender(tmp_path, "train", downscale=2, background=b)
        composed = white.images + (np.asarray(b, np.float32) - 1) * (1 - white.alpha[..., None])
        assert np.allclose(composed, other.images, atol=1e-6)


def test_builtin_alpha_is_coverage():
    from nerf import scene

    d = scene.builtin_scene("test", resolution=25)
    assert d.alpha.shape == (8, 25, 25) and d.alpha.min() == 0.0 and d.alpha.max() == 1.0
    assert np.all(d.images[d.alpha == 0] == 1.0)  # nothing hit: the white backdrop
    assert np.all(d.images[d.alpha == 1].min(axis=-1) < 1.0)  # fully covered: shaded colour


# ---------------------------------------------------------------------------------- argument checks (item 6)


@pytest.mark.parametrize("kwargs, message", [
    ({"iterations": 0}, "iterations must be an integer >= 1, not 0"),
    ({"iterations": -5}, "iterations must be an integer >= 1, not -5"),
    ({"until": 0}, "until must be an integer >= 1, not 0"),
    ({"downscale": 0}, "downscale must be an integer >= 1, not 0"),
    ({"checkpoint_seconds": float("inf")}, "checkpoint_seconds must be a finite number > 0, not inf"),
    ({"background": "pink"}, "background must be one of random, white, not 'pink'"),
])
def test_train_refuses_bad_arguments_before_any_work(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        train("builtin", QUICK, tmp_path, progress=False, **kwargs)
    assert not tmp_path.joinpath("preset.json").exists()


@pytest.mark.parametrize("argv, message", [
    (["--iterations", "0"], "argument --iterations: must be an integer >= 1, not '0'"),
    (["--iterations", "-5"], "argument --iterations: must be an integer >= 1, not '-5'"),
    (["--downscale", "0"], "argument --downscale: must be an integer >= 1, not '0'"),
    (["--until", "0"], "argument --until: must be an integer >= 1, not '0'"),
    (["--checkpoint-seconds", "nan"], "argument --checkpoint-seconds: must be a finite number > 0, not 'nan'"),
    (["--background", "pink"], "argument --background: invalid choice: 'pink'"),
])
def test_train_cli_refuses_bad_options(tmp_path, capsys, argv, message):
    from flows.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--runs", str(tmp_path), "train", *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_train_cli_refuses_cuda_without_cuda(tmp_path, capsys):
    from flows.cli import main

    assert main(["--runs", str(tmp_path), "train", "--device", "cuda"]) == 2
    assert "--device cuda: PyTorch sees no CUDA device here" in capsys.readouterr().err
    assert main(["--runs", str(tmp_path), "train", "--device", "gpu0"]) == 2
    assert "--device must be cpu or cuda[:N], not 'gpu0'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------------------- kills and signals (item 6)

# the child trains the preset given as JSON and logs the monotonic time of every training iteration
CHILD = r"""
import json, sys, time
import nerf.train as T
preset = T.TrainPreset(**json.loads(sys.argv[1]))
log = open(sys.argv[3], "a", buffering=1)
original = T.render_rays
def logged(*args, **kwargs):
    out = original(*args, **kwargs)
    if kwargs.get("perturb"):
        log.write(f"{time.monotonic()}\n")
    return out
T.render_rays = logged
s = T.train("builtin", preset, sys.argv[2], downscale=4, progress=False, checkpoint_seconds=float(sys.argv[4]))
print(json.dumps(s))
"""

LONG = dataclasses.replace(QUICK, iterations=100_000, checkpoint_every=10 ** 9, occupancy_warmup=8, occupancy_every=8)


def _start_child(tmp_path, preset, seconds):
    import subprocess
    import sys
    from pathlib import Path

    log = tmp_path / "steps.log"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(dataclasses.asdict(preset)), str(tmp_path / "run"),
                             str(log), str(seconds)], cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, log


def _wait_steps(proc, log, n, timeout=120.0):
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if log.exists() and len(log.read_text().split()) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.communicate()}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("child made no progress")


def test_sigkill_at_a_random_moment_loses_at_most_checkpoint_seconds_and_resumes_exactly(tmp_path):
    import random
    import signal
    import time

    seconds = 0.5
    proc, log = _start_child(tmp_path, LONG, seconds)
    _wait_steps(proc, log, 10)
    end = time.monotonic() + 120
    while not (tmp_path / "run" / "checkpoint.pt").exists() and time.monotonic() < end:
        time.sleep(0.05)  # the first time-based checkpoint
    time.sleep(random.uniform(0.0, 2.0))  # a random moment: mid-iteration, mid-checkpoint, anywhere
    killed_at = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    times = [float(t) for t in log.read_text().split()]
    done = sum(t <= killed_at for t in times)  # iterations rendered before the kill
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    step = ckpt["step"]
    assert 1 <= step <= done
    # the work lost: from the end of the checkpointed iteration to the kill, at most the checkpoint
    # period plus one iteration and one checkpoint write (slack for a loaded machine)
    lost = killed_at - times[step - 1]
    assert lost <= seconds + 1.5, (lost, step, done)
    # resume: the same run continues exactly where the checkpoint was (bit-identical to no kill)
    until = step + 5
    resumed = train("builtin", LONG, tmp_path / "run", downscale=4, until=until, progress=False)
    straight = train("builtin", LONG, tmp_path / "straight", downscale=4, until=until, progress=False)
    assert resumed["iterations"] == straight["iterations"] == until
    a = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["occupancy"]["density"], b["occupancy"]["density"]) and a["rays"] == b["rays"]
    # a temporary file of a write the kill interrupted is gone after the resume
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoint.pt", "preset.json"]


def test_sigterm_checkpoints_and_exits_cleanly(tmp_path):
    import signal

    proc, log = _start_child(tmp_path, LONG, 3600.0)  # no time-based checkpoint: only the signal's
    _wait_steps(proc, log, 5)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    s = json.loads(out.strip().splitlines()[-1])
    assert s["finished"] is False and s["interrupted"] == "SIGTERM"
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == s["iterations"] >= 5
    assert len(log.read_text().split()) == s["iterations"]  # it stopped after the iteration in flight


def test_cli_sigint_message_and_status(tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    runs = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "--runs", str(runs), "train", "--iterations", "100000",
                             "--downscale", "4", "--no-compile"], cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    preset = runs / "train-builtin-tiny" / "preset.json"
    end = time.monotonic() + 120
    while not preset.exists() and time.monotonic() < end and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(1.0)  # into the iterations
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signal.SIGINT, err
    step = load_checkpoint(runs / "train-builtin-tiny" / "checkpoint.pt")["step"]
    assert (f"interrupted by SIGINT at iteration {step}: checkpoint saved in {runs / 'train-builtin-tiny'}; "
            "run the same command again to resume") in err
    assert "Traceback" not in err
