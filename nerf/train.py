"""Training and evaluation of the Instant-NGP-style field: presets, checkpoints, resume, metrics.

``train(scene, preset, out_dir)`` writes into ``out_dir``: ``checkpoint.pt`` (atomic; every
``checkpoint_every`` iterations, every ``checkpoint_seconds`` of wall time, on SIGINT/SIGTERM and at
the end), ``test/NNN.png`` (rendered test views), ``summary.json`` and ``preset.json``. Re-running
with the same folder resumes from the checkpoint exactly (model, optimiser, schedule, occupancy
grid, both random generators, ray count), so a killed run loses at most ``checkpoint_seconds`` plus
one iteration of work.

Background: on scenes with alpha (Blender, RGBA transforms.json captures, the built-in scene),
training composites each ray's target onto a random colour drawn per ray and renders that ray onto
the same colour (Instant-NGP's practice), so the only way to match every colour is zero density in
empty space; a fixed white background would let the field paint white fog into the empty space
instead. Evaluation still composites onto white.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from tqdm import tqdm

from common.atomic import atomic_write, atomic_write_text, clean_stale
from common.signals import deferred_signals
from common.validate import checker
from nerf.data import rays_for_budget, training_batch
from nerf.model import ARCH_KEYS, InstantNGP
from nerf.occupancy import OccupancyGrid
from nerf.render import evaluate, render_image, render_rays  # noqa: F401  (render_image: re-exported)

__all__ = ["TrainPreset", "PRESETS", "BACKGROUNDS", "train", "evaluate", "load_checkpoint", "CheckpointError",
           "ModelFamilyError", "FAMILIES"]

#: Training backgrounds for scenes with alpha: a random RGB per ray, or white.
BACKGROUNDS = ("random", "white")


class CheckpointError(ValueError):
    """A checkpoint is unreadable or belongs to another architecture; names the file and the field."""


class ModelFamilyError(CheckpointError):
    """A checkpoint of the other model family: KiloNeRF where an Instant-NGP field is needed, or the reverse."""


#: Model families by ``arch["model"]`` (an Instant-NGP checkpoint has none), and their names in messages.
FAMILIES = {"ngp": "Instant-NGP", "kilonerf": "KiloNeRF", "tensorf": "TensoRF"}


def _a(family: str) -> str:
    name = FAMILIES.get(family, family)
    return f"{'an' if name[0] in 'AEIOU' else 'a'} {name}"


@dataclass(frozen=True)
class TrainPreset:
    """Training settings. Units: iterations, rays per batch, samples per ray, cells per axis."""

    name: str
    iterations: int
    batch_rays: int  # rays of the first step; every step when batch_samples is None
    n_samples: int
    log2_table_size: int
    n_max: int
    downscale: int  # applied to file-based scenes at load time (the built-in scene is 100 x 100)
    lr: float = 1e-2  # Adam learning rate of the hash table
    mlp_lr: float | None = None  # of the MLP weights (None: lr)
    occupancy_res: int = 64
    occupancy_every: int = 16
    occupancy_warmup: int = 32
    checkpoint_every: int = 250
    test_every: int = 8  # evaluate every k-th test view
    levels: int = 16
    n_min: int = 16
    ngp_hidden: int = 64  # Instant-NGP's MLP width H (nerf.layout); small hardware tests narrow it
    # Instant-NGP's fixed sample budget: after each step the ray count becomes
    # batch_samples / (field evaluations per ray of that step), clamped to [64, max_batch_rays].
    batch_samples: int | None = None
    max_batch_rays: int = 16384
    background: str = "random"  # training background of scenes with alpha: "random" per ray or "white"
    checkpoint_seconds: float = 60.0  # also checkpoint when this much wall time passed since the last
    # --- TensoRF-VM (model="tensorf"); the reference code's names in brackets ---
    model: str = "ngp"  # "ngp" (Instant-NGP) or "tensorf"
    voxels_init: int = 128 ** 3  # [N_voxel_init]
    voxels_final: int = 300 ** 3  # [N_voxel_final]
    upsample_at: tuple[int, ...] = ()  # [upsamp_list]: iterations at which the grid grows (log-spaced voxels)
    density_components: int = 16  # [n_lamb_sigma]
    app_components: int = 48  # [n_lamb_sh]
    app_dim: int = 27  # [data_dim_color]
    hidden: int = 128  # [featureC]
    l1_weight: float = 8e-5  # [L1_weight_inital]


PRESETS = {
    "tiny": TrainPreset("tiny", iterations=2000, batch_rays=512, n_samples=96, log2_table_size=15, n_max=256,
                        downscale=4, batch_samples=1 << 15),
    "small": TrainPreset("small", iterations=8000, batch_rays=1024, n_samples=128, log2_table_size=17,
                         n_max=512, downscale=2, batch_samples=1 << 16),
    "full": TrainPreset("full", iterations=20000, batch_rays=2048, n_samples=192, log2_table_size=19,
                        n_max=2048, downscale=1, test_every=1, batch_samples=1 << 18),
}


#: TensoRF-VM presets. The paper's lego setting (TensoRF-VM-192): 30k iterations of 4096 rays, 128^3 -> 300^3
#: voxels with upsampling at 2k, 3k, 4k, 5.5k, 7k, R_sigma 16 / R_c 48, featureC 128, lr 0.02 / 1e-3. The tiny
#: preset is what 2 cores afford on 100x100 views (ten times fewer iterations, 32^3 -> 128^3 voxels, a third
#: of the components, a 64-wide decoder, the Instant-NGP sample budget); its PSNR cost is in the README.
_TENSORF_TINY = TrainPreset("tiny", model="tensorf", iterations=2500, batch_rays=1024, n_samples=96,
                            log2_table_size=0, n_max=0, downscale=4, batch_samples=1 << 14, lr=0.02, mlp_lr=1e-3,
                            voxels_init=32 ** 3, voxels_final=128 ** 3, upsample_at=(250, 500, 750, 1000),
                            density_components=8, app_components=24, hidden=64)
TENSORF_PRESETS = {
    "tiny": _TENSORF_TINY,
    # the tiny schedule with the paper's components and decoder width: what the smaller tiny model costs
    "tiny-paper": dataclasses.replace(_TENSORF_TINY, name="tiny-paper", density_components=16, app_components=48,
                                      hidden=128),
    "smoke": TrainPreset("smoke", model="tensorf", iterations=40, batch_rays=256, n_samples=48, log2_table_size=0,
                         n_max=0, downscale=4, batch_samples=1 << 12, lr=0.02, mlp_lr=1e-3, voxels_init=16 ** 3,
                         voxels_final=24 ** 3, upsample_at=(20,), density_components=4, app_components=8,
                         hidden=32, occupancy_warmup=8, occupancy_every=8, occupancy_res=32),
}


def presets_for(model: str) -> dict[str, TrainPreset]:
    """The training presets of a model family: ``PRESETS`` (Instant-NGP) or ``TENSORF_PRESETS``."""
    if model not in ("ngp", "tensorf"):
        raise ValueError(f"model must be ngp or tensorf, not {model!r}")
    return TENSORF_PRESETS if model == "tensorf" else PRESETS


def tensorf_grid(preset: TrainPreset, bbox, step: int) -> list[int]:
    """Voxels per axis after ``step`` iterations: the reference code's log-spaced ``N_voxel_list``
    (``voxels_init`` before the first of ``upsample_at``, ``voxels_final`` after the last)."""
    from nerf.tensorf import grid_for_voxels

    n = len(preset.upsample_at)
    done = sum(step >= s for s in preset.upsample_at)
    if n == 0:
        return grid_for_voxels(preset.voxels_final, bbox)
    log_v = math.log(preset.voxels_init) + (math.log(preset.voxels_final) - math.log(preset.voxels_init)) * done / n
    return grid_for_voxels(round(math.exp(log_v)), bbox)


#: Adam learning rate of the MLP weights on the built-in scene (when the preset leaves mlp_lr unset).
BUILTIN_MLP_LR = 1e-3


def test_stride(test_every: int, views: int) -> int:
    """Evaluate every k-th test view: ``test_every``, but at least 8 views when the split has them."""
    return max(1, min(test_every, views // 8))


def build_model(preset: TrainPreset, bbox, *, step: int = 0):
    """The untrained field of ``preset`` (``preset.model``), for TensoRF at the grid of iteration ``step``."""
    if preset.model == "tensorf":
        from nerf.tensorf import TensoRF

        return TensoRF(grid=tensorf_grid(preset, bbox, step), bbox=bbox, density_components=preset.density_components,
                       app_components=preset.app_components, app_dim=preset.app_dim, hidden=preset.hidden)
    return InstantNGP(levels=preset.levels, log2_table_size=preset.log2_table_size, n_min=preset.n_min,
                      n_max=preset.n_max, hidden=preset.ngp_hidden, bbox=bbox)


def _optimizer(model, preset: TrainPreset):
    """Adam over the two groups: the grid (hash tables; TensoRF planes and lines) at ``lr``, the rest at
    ``mlp_lr``, with the per-iteration decay to 0.1 of both references (restarted after a TensoRF upsampling,
    the reference code's ``lr_upsample_reset``)."""
    grid = list(model.encoding.parameters()) if preset.model == "ngp" else model.grid_parameters()
    ids = {id(p) for p in grid}
    rest = [p for p in model.parameters() if id(p) not in ids]
    optim = torch.optim.Adam([{"params": grid, "lr": preset.lr},
                              {"params": rest, "lr": preset.lr if preset.mlp_lr is None else preset.mlp_lr}],
                             betas=(0.9, 0.99), eps=1e-15)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda it: 0.1 ** min(1.0, it / preset.iterations))
    return optim, sched


def load_checkpoint(path: str | Path, arch: dict | None = None, *, family: str = "ngp") -> dict:
    """Load ``checkpoint.pt`` of a ``family`` model (``FAMILIES``); with ``arch``, check every field of
    ``ARCH_KEYS`` matches (Instant-NGP).

    Raises:
        ModelFamilyError: a checkpoint of the other family (both named). CheckpointError: unreadable, or a
        field of ``ARCH_KEYS`` differs (named, with both values).
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {exc}") from exc
    if not isinstance(ckpt, dict) or "arch" not in ckpt or "model" not in ckpt:
        raise CheckpointError(f"{path}: not a nerfhw checkpoint (no 'arch' / 'model')")
    got = ckpt["arch"].get("model", "ngp")
    if got != family:
        raise ModelFamilyError(f"{path} is {_a(got)} checkpoint, not {_a(family)} one")
    if arch is not None:
        keys = ARCH_KEYS
        if family == "tensorf":
            from nerf.tensorf import TENSORF_ARCH_KEYS as keys
        for key in keys:
            if ckpt["arch"].get(key) != arch.get(key):
                raise CheckpointError(
                    f"{path}: architecture field {key!r} is {ckpt['arch'].get(key)!r}, this model needs {arch.get(key)!r}")
    return ckpt


def model_from_checkpoint(path: str | Path, *, family: str = "ngp") -> tuple[InstantNGP, OccupancyGrid, dict]:
    """Rebuild the model of ``family`` (``"ngp"`` or ``"tensorf"``) and its occupancy grid from a checkpoint (CPU).

    Raises:
        ModelFamilyError, CheckpointError: as ``load_checkpoint``.
    """
    ckpt = load_checkpoint(path, family=family)
    if family == "tensorf":
        from nerf.tensorf import TensoRF

        model = TensoRF(**ckpt["arch"])
    else:
        model = InstantNGP(**ckpt["arch"])
    model.load_state_dict(ckpt["model"], strict=False)
    occ = OccupancyGrid.for_steps(model.bbox, ckpt["preset"]["n_samples"], res=ckpt["occupancy"]["res"])
    occ.load_state_dict(ckpt["occupancy"])
    return model, occ, ckpt


_POSITIVE_INT = checker(Annotated[int, Field(ge=1)])
_POSITIVE_FLOAT = checker(Annotated[float, Field(gt=0, allow_inf_nan=False)])


def _check_positive(name: str, value, kind=int) -> None:
    (_POSITIVE_INT if kind is int else _POSITIVE_FLOAT)(int(value) if isinstance(value, np.integer) else value, name)


def train(scene: str, preset: TrainPreset, out_dir: str | Path, *, seed: int = 0, downscale: int | None = None,
          iterations: int | None = None, until: int | None = None, device: str = "cpu",
          compile: bool = False, progress: bool = True, checkpoint_seconds: float | None = None,
          skip_missing: bool = False, background: str | None = None, handle_signals: bool = True) -> dict:
    """Train on ``scene`` (see ``nerf.data.load_scene``), evaluate on its test split, write results.

    Resumes from ``out_dir/checkpoint.pt`` when present (same architecture required). ``until``
    stops this call after that iteration with a checkpoint and no evaluation (a time-boxed run; the
    next call continues exactly where it stopped); the result then has ``"finished": False``.
    ``compile`` runs the training forward and backward through ``torch.compile`` (inductor; about
    3x faster per sample on CPU, after a one-off compile of 30-60 s that is counted in train_seconds).
    ``checkpoint_seconds`` and ``background`` override the preset's; ``skip_missing`` loads the
    frames that exist when a transforms file lists missing ones.

    With ``handle_signals`` (and in the main thread), SIGINT and SIGTERM during the iterations write
    a checkpoint after the current iteration and return ``{"finished": False, "interrupted":
    "SIGTERM", ...}`` instead of dying; run again to resume.

    Raises:
        nerf.data.DataError: a bad scene. CheckpointError: a checkpoint of another architecture.
        ValueError: iterations, until, downscale, checkpoint_seconds not positive; unknown background.

    Returns:
        The summary dict (also written to ``out_dir/summary.json``): scene, preset, psnr_test (dB),
        ssim_test, iterations, train_seconds, parameters, occupancy_fraction, samples per view and
        per ray, and evaluation details. A run stopped early (``until``, a signal) returns
        ``{"scene", "preset", "iterations", "finished": False}`` (plus ``"interrupted"`` for a signal).
    """
    from nerf.data import RayBatcher, load_scene

    out_dir = Path(out_dir)
    for name, value in (("iterations", iterations), ("until", until), ("downscale", downscale)):
        if value is not None:
            _check_positive(name, value)
    if checkpoint_seconds is not None:
        _check_positive("checkpoint_seconds", checkpoint_seconds, float)
        preset = dataclasses.replace(preset, checkpoint_seconds=float(checkpoint_seconds))
    if background is not None:
        preset = dataclasses.replace(preset, background=background)
    if preset.background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {', '.join(BACKGROUNDS)}, not {preset.background!r}")
    if iterations is not None:
        preset = dataclasses.replace(preset, iterations=iterations)
    _check_positive("iterations", preset.iterations)
    # the built-in scene is rendered at its own 100 x 100 (lego's tiny size); presets downscale files
    ds = (1 if scene == "builtin" else preset.downscale) if downscale is None else downscale
    preset = dataclasses.replace(preset, downscale=ds)  # the checkpoint records what was trained on
    if scene == "builtin" and preset.mlp_lr is None:
        # measured: at lr 1e-2 the colour MLP's ReLUs die on the built-in scene's saturated colours
        # (16.8 dB, grey renders); 1e-3 learns them (23.5 dB after 1000 iterations). On lego 1e-2 is best.
        preset = dataclasses.replace(preset, mlp_lr=BUILTIN_MLP_LR)
    torch.manual_seed(seed)
    train_data = load_scene(scene, "train", downscale=ds, skip_missing=skip_missing)
    test_data = load_scene(scene, "test", downscale=ds, skip_missing=skip_missing)
    bbox = np.asarray(train_data.bbox, dtype=np.float32).tolist()
    ckpt_path = out_dir / "checkpoint.pt"
    clean_stale(ckpt_path)  # a temporary file of a run killed while it wrote
    ckpt = None
    if ckpt_path.exists():
        ckpt = load_checkpoint(ckpt_path, build_model(preset, bbox).arch, family=preset.model)
    # a TensoRF checkpoint holds the grid of its iteration: build that size before loading
    model = build_model(preset, bbox, step=ckpt["step"] if ckpt else 0).to(device)
    occupancy = OccupancyGrid.for_steps(model.bbox.cpu(), preset.n_samples, res=preset.occupancy_res)
    optim, sched = _optimizer(model, preset)
    gen = torch.Generator().manual_seed(seed)
    batcher = RayBatcher(train_data, preset.batch_rays, seed=seed)
    step, train_seconds, rays = 0, 0.0, preset.batch_rays
    if ckpt is not None:
        model.load_state_dict(ckpt["model"], strict=False)
        optim.load_state_dict(ckpt["optim"])
        sched.load_state_dict(ckpt["sched"])
        occupancy.load_state_dict(ckpt["occupancy"])
        gen.set_state(ckpt["generator"])
        batcher.rng.bit_generator.state = ckpt["batcher"]
        step, train_seconds, rays = ckpt["step"], ckpt["train_seconds"], ckpt.get("rays", rays)
    atomic_write_text(out_dir / "preset.json", json.dumps(dataclasses.asdict(preset), indent=2) + "\n")

    def save():
        state = {"arch": model.arch, "preset": dataclasses.asdict(preset), "scene": scene,
                            "model": model.state_dict(), "optim": optim.state_dict(), "sched": sched.state_dict(),
                            "occupancy": occupancy.state_dict(), "generator": gen.get_state(),
                 "batcher": batcher.rng.bit_generator.state, "step": step, "rays": rays,
                            "train_seconds": train_seconds}
        atomic_write(ckpt_path, lambda tmp: torch.save(state, tmp))

    density_fn = lambda p: model.density(p.to(device))[0].cpu()  # noqa: E731
    field = torch.compile(model, dynamic=True) if compile else model
    bar = tqdm(total=preset.iterations, initial=step, desc=f"train {preset.name}", unit="it", disable=not progress)
    model.train()
    stop = preset.iterations if until is None else min(until, preset.iterations)
    last_save = time.monotonic()
    with deferred_signals(handle_signals) as caught:  # finish the iteration, checkpoint, return
        while step < stop and not caught:
            t0 = time.perf_counter()
            if step >= preset.occupancy_warmup and step % preset.occupancy_every == 0:
                occupancy.update(density_fn, cells=preset.occupancy_res ** 3 // 4, generator=gen)
            origins, dirs, target, bg = training_batch(batcher, rays, preset.background, gen, device)
            try:
                rgb, _, stats = render_rays(field, origins, dirs, n_samples=preset.n_samples,
                                            occupancy=occupancy if step >= preset.occupancy_warmup else None,
                                            perturb=True, generator=gen, background=bg)
            except Exception as exc:
                if compile:
                    raise RuntimeError(f"torch.compile of the field failed ({type(exc).__name__}: {exc}); "
                                       "train without it (--no-compile)") from exc
                raise
            if preset.batch_samples is not None:
                rays = rays_for_budget(stats.samples_evaluated, stats.rays, preset.batch_samples,
                                       preset.max_batch_rays)
            loss = torch.mean((rgb - target) ** 2)
            total = loss + preset.l1_weight * model.density_l1() if preset.model == "tensorf" else loss
            optim.zero_grad(set_to_none=True)
            total.backward()
            optim.step()
            sched.step()
            step += 1
            if preset.model == "tensorf" and step in preset.upsample_at:
                model.upsample(tensorf_grid(preset, bbox, step))
                optim, sched = _optimizer(model, preset)  # lr_upsample_reset
            train_seconds += time.perf_counter() - t0
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", psnr=f"{-10 * math.log10(max(loss.item(), 1e-10)):.2f}",
                                occ=f"{occupancy.fraction:.3f}", rays=rays)
            if (step % preset.checkpoint_every == 0 or step == stop or caught
                    or time.monotonic() - last_save >= preset.checkpoint_seconds):
                save()
                last_save = time.monotonic()
    bar.close()
    if caught:
        return {"scene": scene, "preset": preset.name, "iterations": step, "finished": False,
                "interrupted": signal.Signals(caught[0]).name}
    if step < preset.iterations:
        return {"scene": scene, "preset": preset.name, "iterations": step, "finished": False}
    metrics = evaluate(model, occupancy, test_data, n_samples=preset.n_samples,
                       every=test_stride(preset.test_every, len(test_data.images)),
                       out_dir=out_dir / "test", progress=progress)
    summary = {
        "scene": scene,
        "model": preset.model,
        "preset": preset.name,
        "psnr_test": round(metrics["psnr"], 3),
        "ssim_test": round(metrics["ssim"], 4),
        "iterations": step,
        "train_seconds": round(train_seconds, 1),
        "parameters": model.parameter_count(),
        "resolution": [train_data.height, train_data.width],
        "test_views": metrics["views"],
        "occupancy_fraction": round(occupancy.fraction, 4),
        "samples_evaluated_per_view": round(metrics["samples_evaluated_per_view"], 1),
        "samples_in_box_per_view": round(metrics["samples_in_box_per_view"], 1),
        "samples_evaluated_per_ray": round(metrics["samples_evaluated_per_view"] / (test_data.height * test_data.width), 2),
        "background": preset.background if train_data.alpha is not None else "none (opaque scene)",
        "seed": seed,
        "finished": True,
        "device": device,
        "compiled": compile,
        "threads": torch.get_num_threads(),
    }
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
