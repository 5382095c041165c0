"""KiloNeRF by distillation from our trained Instant-NGP field, then fine-tuning on the images.

KiloNeRF (Reiser et al., ICCV 2021, Sec. 3.4 and the reference code ``creiser/kilonerf``) distils a
trained NeRF into the tiny networks and fine-tunes them on the training images. Here the teacher is our
Instant-NGP field (``nerf.field.TrainedField``), not a vanilla NeRF: it is cheaper to train, renders
with its own occupancy grid, and was trained with random backgrounds on scenes with alpha (so empty
space has zero density, which the distilled networks inherit). Stages, each resumable:

1. **Prepare** (``prepare.pt``): the box (``nerf.kilo_occupancy.fit_box``), the network grid
   (``cells_longest`` cells along its longest side, cubic cells), the ESS voxel grid
   (``occupancy_factor`` voxels per cell per axis, 16 in the paper), the networks that own an occupied
   voxel (the others are never evaluated and are not trained), and per such network a pool of
   ``pool`` points drawn uniformly in its occupied voxels with uniformly random view directions, with
   the teacher's colour and alpha ``1 - exp(-sigma * step)`` at the renderer's step.
2. **Distil**: every iteration each trained network regresses ``distill_batch`` points of its pool
   (128 in the reference code): MSE of colour plus MSE of alpha.
3. **Fine-tune**: ``render_rays`` on random training rays (random background on scenes with alpha,
   as the teacher was trained), ESS by the voxel grid, photometric MSE plus the reference code's
   ``l2_regularization_lambda`` = 1e-6 times the squared weights and biases of the view-dependent
   layers (``color.l0``, ``color.l1``).

Renders use early ray termination at transmittance ``t_min`` = 0.01 (KiloNeRF Sec. 3.3).

``distill(...)`` writes ``checkpoint.pt`` (atomic; every ``checkpoint_seconds`` of wall time, at the end
of each stage and on SIGINT/SIGTERM), ``summary.json``, ``preset.json`` and ``test/NNN.png``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from common.atomic import atomic_write, atomic_write_text, clean_stale
from common.signals import deferred_signals
from nerf.kilo_occupancy import VoxelOccupancy, fit_box, measure_occupancy
from nerf.kilonerf import KILO_ARCH_KEYS, T_MIN, KiloNeRF, grid_shape
from nerf.occupancy import MIN_OPTICAL_THICKNESS
from nerf.train import CheckpointError, ModelFamilyError, load_checkpoint

__all__ = ["KiloPreset", "KILO_PRESETS", "distill", "load_kilonerf", "KiloCheckpointError", "T_MIN"]

#: Weight of the squared view-dependent weights in the fine-tuning loss (reference code's
#: ``l2_regularization_lambda``).
L2_LAMBDA = 1e-6
VIEW_DEPENDENT = ("color.l0", "color.l1")


class KiloCheckpointError(CheckpointError):
    """A KiloNeRF checkpoint of another architecture, or one given where the teacher belongs."""


@dataclass(frozen=True)
class KiloPreset:
    """Distillation settings. Units: cells, voxels per cell per axis, points, iterations, rays."""

    name: str
    cells_longest: int = 16
    occupancy_factor: int = 16
    pool: int = 2048
    distill_iterations: int = 2000
    distill_batch: int = 128
    distill_lr: float = 1e-2
    finetune_iterations: int = 1000
    finetune_rays: int = 4096
    finetune_lr: float = 1e-3
    box_quantile: float = 0.001
    checkpoint_seconds: float = 60.0


KILO_PRESETS = {
    # ESS voxels at 8 per cell per axis, not the paper's 16: 1/8 of the teacher queries, and at the tiny
    # preset's 100 x 100 pixels a voxel (lego: 0.018 world units) is still finer than a pixel's footprint.
    "tiny": KiloPreset("tiny", occupancy_factor=8),
    "smoke": KiloPreset("smoke", cells_longest=4, occupancy_factor=4, pool=256, distill_iterations=60,
                        distill_batch=32, finetune_iterations=20, finetune_rays=256, box_quantile=0.0),
}


def _check_preset(p: KiloPreset) -> None:
    for name in ("cells_longest", "occupancy_factor", "pool", "distill_iterations", "distill_batch",
                 "finetune_iterations", "finetune_rays"):
        value = getattr(p, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if "iterations" in name else 1):
            raise ValueError(f"{name} must be a {'non-negative' if 'iterations' in name else 'positive'} "
                             f"integer, not {value!r}")


def load_kilonerf(path: str | Path) -> tuple[KiloNeRF, VoxelOccupancy, dict]:
    """A KiloNeRF checkpoint -> (model, ESS grid, checkpoint dict), CPU.

    Raises:
        FileNotFoundError: no such file. nerf.train.CheckpointError: unreadable; ModelFamilyError: not a
        KiloNeRF checkpoint (``nerf.train.load_checkpoint``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no KiloNeRF checkpoint {path}: run `make kilonerf` first")
    ckpt = load_checkpoint(path, family="kilonerf")
    arch = ckpt["arch"]
    model = KiloNeRF(grid=arch["grid"], bbox=arch["bbox"], hidden=arch["hidden"], pos_freqs=arch["pos_freqs"],
                     dir_freqs=arch["dir_freqs"])
    model.load_state_dict(ckpt["model"], strict=False)
    return model, VoxelOccupancy.from_state(ckpt["occupancy"]), ckpt


def _render_step(bbox: torch.Tensor, n_samples: int) -> float:
    """The renderer's longest step in the box (``nerf.occupancy.OccupancyGrid.for_steps``): diagonal / n_samples."""
    return float(torch.linalg.vector_norm(bbox[1] - bbox[0])) / n_samples


@torch.no_grad()
def _prepare(teacher, preset: KiloPreset, gen: torch.Generator, progress: bool) -> dict:
    tm = teacher.model
    box = fit_box(teacher.occupancy, quantile=preset.box_quantile)
    grid = grid_shape((box[1] - box[0]).tolist(), preset.cells_longest)
    step = _render_step(box, teacher.n_samples)
    shape = [g * preset.occupancy_factor for g in grid]
    density_fn = lambda p: tm.density(p)[0]  # noqa: E731
    occ = measure_occupancy(density_fn, teacher.occupancy, box, shape, MIN_OPTICAL_THICKNESS / step,
                            progress=progress)
    f = preset.occupancy_factor
    vox = occ.occupied.nonzero()  # (V, 3)
    cell_ijk = vox // f
    cell = (cell_ijk[:, 0] * grid[1] + cell_ijk[:, 1]) * grid[2] + cell_ijk[:, 2]
    order = torch.argsort(cell, stable=True)
    vox, cell = vox[order], cell[order]
    active, counts = torch.unique_consecutive(cell, return_counts=True)
    if active.numel() == 0:
        raise ValueError("no voxel of the fitted box is occupied: the teacher's density is empty")
    # pool: per active network, `pool` points uniform over its occupied voxels (voxel, then jitter)
    start = torch.cumsum(counts, 0) - counts
    pick = (torch.rand(active.numel(), preset.pool, generator=gen) * counts[:, None]).long() + start[:, None]
    size = (box[1] - box[0]) / torch.tensor(shape)
    pts = box[0] + (vox[pick].float() + torch.rand(active.numel(), preset.pool, 3, generator=gen)) * size
    dirs = F.normalize(torch.randn(active.numel(), preset.pool, 3, generator=gen), dim=-1)
    flat_p, flat_d = pts.reshape(-1, 3), dirs.reshape(-1, 3)
    sig, rgb = [], []
    for a in tqdm(range(0, flat_p.shape[0], 1 << 15), desc="teacher", unit="chunk", disable=not progress,
                  leave=False):
        s, c = tm(flat_p[a:a + (1 << 15)], flat_d[a:a + (1 << 15)])
        sig.append(s)
        rgb.append(c)
    alpha = 1.0 - torch.exp(-torch.cat(sig) * step)
    return {"box": box, "grid": list(grid), "step": step, "occupancy": occ.state_dict(), "active": active,
            "points": pts, "dirs": dirs, "rgb": torch.cat(rgb).reshape(active.numel(), preset.pool, 3),
            "alpha": alpha.reshape(active.numel(), preset.pool)}


def distill(checkpoint: str | Path, preset: KiloPreset, out_dir: str | Path, *, scene: str | None = None,
            seed: int = 0, progress: bool = True, handle_signals: bool = True, until: str | None = None,
            command: str | None = None) -> dict:
    """Distil the trained field at ``checkpoint`` (an Instant-NGP ``checkpoint.pt``) into KiloNeRF (module doc).

    Resumes from ``out_dir/checkpoint.pt`` (and ``prepare.pt``) when present. ``until`` ("prepare",
    "distill") stops after that stage with a checkpoint (a time-boxed run). ``command``: the command that
    trains the teacher, quoted in the errors.

    Raises:
        FileNotFoundError: no teacher checkpoint, or an unfinished one. nerf.train.CheckpointError: a
        teacher checkpoint that is unreadable or not an Instant-NGP one. ValueError: a bad preset field
        (named) or an empty teacher.

    Returns:
        The summary (also ``summary.json``): PSNR / SSIM of KiloNeRF and of the teacher on the same test
        views, grid, networks (all and trained), parameters, occupancy, seconds per stage; a run stopped
        early returns ``{"finished": False, "stage": ...}``.
    """
    from nerf.data import RayBatcher, training_batch
    from nerf.field import TrainedField
    from nerf.render import evaluate, render_rays
    from nerf.train import test_stride

    _check_preset(preset)
    if until not in (None, "prepare", "distill"):
        raise ValueError(f"until must be 'prepare' or 'distill', not {until!r}")
    path = Path(checkpoint)
    try:
        teacher = TrainedField(path, scene, command=command)
    except ModelFamilyError:
        raise KiloCheckpointError(f"{path} is a KiloNeRF checkpoint; the teacher must be a trained Instant-NGP "
                                  "field (`make train`)") from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "preset.json", json.dumps(dataclasses.asdict(preset), indent=2) + "\n")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    prep_path, ckpt_path = out_dir / "prepare.pt", out_dir / "checkpoint.pt"
    clean_stale(prep_path)
    clean_stale(ckpt_path)
    seconds = {"prepare": 0.0, "distill": 0.0, "finetune": 0.0}
    if prep_path.exists():
        prep = torch.load(prep_path, map_location="cpu", weights_only=False)
    else:
        t0 = time.perf_counter()
        prep = _prepare(teacher, preset, gen, progress)
        seconds["prepare"] = time.perf_counter() - t0
        prep["seconds"] = seconds["prepare"]
        atomic_write(prep_path, lambda tmp: torch.save(prep, tmp))
    seconds["prepare"] = prep["seconds"]
    occ = VoxelOccupancy.from_state(prep["occupancy"])
    model = KiloNeRF(grid=prep["grid"], bbox=prep["box"].tolist(), seed=seed)
    active = prep["active"]
    stage, step = "distill", 0
    optim = torch.optim.Adam(model.parameters(), lr=preset.distill_lr)
    batcher = RayBatcher(teacher.train_data, preset.finetune_rays, seed=seed)
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        for key in KILO_ARCH_KEYS:
            if ckpt["arch"].get(key) != model.arch.get(key):
                raise KiloCheckpointError(f"{ckpt_path}: architecture field {key!r} is {ckpt['arch'].get(key)!r}, "
                                          f"this run needs {model.arch.get(key)!r}; use another folder")
        model.load_state_dict(ckpt["model"])
        stage, step, seconds = ckpt["stage"], ckpt["step"], ckpt["seconds"]
        if stage == "finetune":
            optim = torch.optim.Adam(model.parameters(), lr=preset.finetune_lr)
        optim.load_state_dict(ckpt["optim"])
        gen.set_state(ckpt["generator"])
        batcher.rng.bit_generator.state = ckpt["batcher"]

    def save():
        state = {"arch": model.arch, "model": model.state_dict(), "occupancy": occ.state_dict(), "stage": stage,
                 "step": step, "optim": optim.state_dict(), "generator": gen.get_state(),
                 "batcher": batcher.rng.bit_generator.state, "seconds": seconds, "teacher": str(path),
                 "scene": teacher.scene, "n_samples": teacher.n_samples, "preset": dataclasses.asdict(preset),
                 "active": active}
        atomic_write(ckpt_path, lambda tmp: torch.save(state, tmp))

    def stopped(reason=None) -> dict:
        out = {"finished": False, "stage": stage, "step": step, "iterations": step}
        if reason:
            out["interrupted"] = reason
        return out

    if until == "prepare":
        return stopped()
    last_save = time.monotonic()
    n_active = active.numel()
    cells = active[:, None].expand(-1, preset.distill_batch).reshape(-1)
    with deferred_signals(handle_signals) as caught:
        def run_stage(name: str, total: int, lr: float, one_step) -> bool:
            """Iterations ``step`` .. ``total`` of a stage (lr decayed 10x over it), checkpointed every
            ``checkpoint_seconds``; False when a signal stopped it (checkpoint written)."""
            nonlocal step, last_save
            bar = tqdm(total=total, initial=step, desc=name, unit="it", disable=not progress)
            while step < total and not caught:
                t0 = time.perf_counter()
                for g in optim.param_groups:
                    g["lr"] = lr * 0.1 ** (step / max(1, total))
                shown = one_step()
                step += 1
                seconds[name] += time.perf_counter() - t0
                bar.update(1)
                if step % 10 == 0:
                    bar.set_postfix(shown)
                if time.monotonic() - last_save >= preset.checkpoint_seconds:
                    save()
                    last_save = time.monotonic()
            bar.close()
            if caught:
                save()
            return not caught

        def distill_step() -> dict:
            idx = torch.randint(0, preset.pool, (n_active, preset.distill_batch), generator=gen)
            rows = torch.arange(n_active)[:, None]
            pts, dirs = prep["points"][rows, idx].reshape(-1, 3), prep["dirs"][rows, idx].reshape(-1, 3)
            sigma, rgb = model(pts, dirs, cells=cells)
            alpha = 1.0 - torch.exp(-sigma * prep["step"])
            loss = (F.mse_loss(rgb, prep["rgb"][rows, idx].reshape(-1, 3))
                    + F.mse_loss(alpha, prep["alpha"][rows, idx].reshape(-1)))
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            return {"loss": f"{loss.item():.5f}"}

        def finetune_step() -> dict:
            origins, dirs, target, bg = training_batch(batcher, preset.finetune_rays, background, gen)
            rgb, _, _ = render_rays(model, origins, dirs, n_samples=teacher.n_samples, occupancy=occ, perturb=True,
                                    generator=gen, background=bg, t_min=T_MIN, chunks=4)
            l2 = sum((model.weights[model._key(n)] ** 2).sum() + (model.biases[model._key(n)] ** 2).sum()
                     for n in VIEW_DEPENDENT)
            mse = torch.mean((rgb - target) ** 2)
            optim.zero_grad(set_to_none=True)
            (mse + L2_LAMBDA * l2).backward()
            optim.step()
            return {"psnr": f"{-10 * math.log10(max(mse.item(), 1e-10)):.2f}"}

        background = teacher.settings.get("background", "random")
        if stage == "distill":  # stage 2
            if not run_stage("distill", preset.distill_iterations, preset.distill_lr, distill_step):
                return stopped(signal.Signals(caught[0]).name)
            stage, step = "finetune", 0
            optim = torch.optim.Adam(model.parameters(), lr=preset.finetune_lr)
            save()
            last_save = time.monotonic()
            if until == "distill":
                return stopped()
        if stage == "finetune":  # stage 3
            if not run_stage("finetune", preset.finetune_iterations, preset.finetune_lr, finetune_step):
                return stopped(signal.Signals(caught[0]).name)
            stage = "done"
            save()
    every = test_stride(teacher.settings["test_every"], len(teacher.test_data.images))
    kilo = evaluate(model, occ, teacher.test_data, n_samples=teacher.n_samples, every=every,
                    out_dir=out_dir / "test", progress=progress)
    ref = evaluate(teacher.model, teacher.occupancy, teacher.test_data, n_samples=teacher.n_samples, every=every,
                   progress=progress)
    summary = {
        "scene": teacher.scene, "teacher": str(path), "preset": preset.name,
        "psnr_test": round(kilo["psnr"], 3), "ssim_test": round(kilo["ssim"], 4),
        "teacher_psnr_test": round(ref["psnr"], 3), "teacher_ssim_test": round(ref["ssim"], 4),
        "psnr_vs_teacher": round(kilo["psnr"] - ref["psnr"], 3),
        "resolution": [teacher.test_data.height, teacher.test_data.width], "test_views": kilo["views"],
        "grid": prep["grid"], "box": [[round(v, 4) for v in row] for row in prep["box"].tolist()],
        "networks": model.networks, "networks_trained": int(n_active),
        "parameters": model.parameter_count(), "parameters_per_network": model.parameter_count() // model.networks,
        "occupancy_shape": list(occ.occupied.shape), "occupancy_fraction": round(occ.fraction, 4),
        "samples_evaluated_per_view": round(kilo["samples_evaluated_per_view"], 1),
        "teacher_samples_evaluated_per_view": round(ref["samples_evaluated_per_view"], 1),
        "t_min": T_MIN, "train_seconds": {k: round(v, 1) for k, v in seconds.items()},
        "train_seconds_total": round(sum(seconds.values()), 1), "threads": torch.get_num_threads(),
        "seed": seed, "finished": True,
    }
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
