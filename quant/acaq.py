"""Quantization-aware fine-tuning of a trained radiance field: A-CAQ (learned bits) and LSQ+ (fixed bits).

A-CAQ (Liu et al., ECCV 2024, Algorithm 1; the reference code's ``QatTrainer``): start from the trained
full-precision field, install an ``LBQuantizer`` on every component (``quant.policy`` names), initialise
the ranges by min-max (PTQ), then each iteration optimise two objectives on one ray batch:

* the reconstruction loss ``L_nerf`` (MSE of the batch) for the hash table, the MLP weights and the
  quantizers' ranges and maxima (Adam, ``lr``: 1e-4 for MDL, 1e-3 for MGL);
* ``L_bit = sqrt(|L_nerf - L_metric|) + eps * penalty`` for the soft bitwidths only (Adam, 1e-2),
  where the penalty is the weighted mean of the rounded bits (straight-through): weights and the hash
  table count 1.3x, the exp output 2x (the reference code's alpha_w = 0.3, alpha_exp = 1), and the
  table's levels share one component's weight in proportion to their entries
  (``quant.costs.acaq_weights``), so the penalty is that of A-CAQ's 15-component model.

``L_metric``: **MDL** the full-precision model's training loss, measured on ``loss_rays`` training
rays drawn like the training batches; **MGL** a target MSE (a PSNR target ``p`` dB is ``10^(-p/10)``).
Both gradients come from one backward pass: ``dL_bit/db = sign(d) / (2 sqrt|d|) dL_nerf/db + eps
dpenalty/db`` with ``d = L_nerf - L_metric`` is the chain rule through the same graph that the
reference code runs backward twice. Learning rates are flat for the first ``decay_start`` of the
iterations and then fall 10x (the reference: flat to iteration 2000 of 3000). Bits are projected
onto [2, 32] after each step.

LSQ+ (Bhalgat et al., 2020): the same loop, data, iterations and learning rate with
``quant.quantizers.FakeQuantizer`` at fixed bits (``baseline_policy``: uniform, the exp output 24 bits
wider; learned step and offset, min-max initialised), so the comparison with A-CAQ is at equal budget.
Each step ``s`` learns at ``lr / (2^B - 1)``, so that its range ``s (2^B - 1)`` moves like LBQ's ``r``
(the reference code's fixed-bit baseline is LBQ with frozen bits); the offset, like ``v_max``, at ``lr``.

The occupancy grid stays the full-precision field's. Checkpoints (model with its quantizers,
optimisers, schedule, random generators, ray sampler, history) are written atomically every
``checkpoint_seconds``, on SIGINT/SIGTERM and at the end; re-running with the same folder resumes.
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tqdm import tqdm

from common.atomic import atomic_write, clean_stale
from common.signals import deferred_signals
from quant.costs import acaq_weights
from quant.lbq import LBQuantizer
from quant.policy import QuantPolicy, component_names, fqr

__all__ = ["QATSettings", "QATError", "finetune", "install_lbq", "baseline_policy", "bit_penalty_weights",
           "learned_policy",
           "bit_grads", "mse_of_psnr", "psnr_of_mse", "training_loss"]

#: Weight of a weight or hash-table component's bits in the penalty (reference code: 1 + alpha_w = 1.3).
WEIGHT_PENALTY = 1.3
#: Weight of the exp (density) output's bits in the penalty (reference code: 1 + alpha_exp = 2).
EXP_PENALTY = 2.0


class QATError(ValueError):
    """Bad fine-tuning settings or a checkpoint that does not belong to them; names the field and value."""


class QATSettings(BaseModel):
    """Fine-tuning settings (module doc). Units: iterations, rays, samples, seconds.

    ``target`` (MGL only): the L_metric MSE. ``lr`` None: 1e-4 (MDL) or 1e-3 (MGL), as in the reference.
    ``policy`` (LSQ+ only): a mixed-precision policy (component -> bits in [2, 32], 32 = full precision)
    fine-tuned at fixed bits instead of ``baseline_policy(bits)`` (a searched policy's finalisation).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["acaq", "lsq+"]
    mode: Literal["mdl", "mgl"]
    target: Annotated[float, Field(gt=0, lt=1)] | None = None
    eps: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1e-3
    bits: Annotated[int, Field(ge=2, le=16)] = 8
    iterations: Annotated[int, Field(ge=1)] = 300
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    lr_bits: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1e-2
    decay_start: Annotated[float, Field(ge=0, le=1)] = 2 / 3
    batch_samples: Annotated[int, Field(ge=256)] = 1 << 15
    calibration_rays: Annotated[int, Field(ge=64)] = 16384
    loss_rays: Annotated[int, Field(ge=64)] = 16384
    seed: int = 0
    policy: dict[str, Annotated[int, Field(ge=2, le=32)]] | None = None

    @model_validator(mode="after")
    def _target_for_mgl(self):
        if self.policy is not None and self.method != "lsq+":
            raise ValueError("a fixed policy is fine-tuned by method lsq+; A-CAQ learns its own bits")
        if self.method == "acaq" and self.mode == "mgl" and self.target is None:
            raise ValueError("mode mgl needs a target (an MSE in (0, 1))")
        if (self.mode == "mdl" or self.method != "acaq") and self.target is not None:
            raise ValueError(f"mode mdl takes no target (its L_metric is the full-precision loss), not {self.target}")
        return self

    @property
    def rest_lr(self) -> float:
        return self.lr if self.lr is not None else (1e-4 if self.mode == "mdl" else 1e-3)


def mse_of_psnr(psnr: float) -> float:
    """MSE of a PSNR in dB for images in [0, 1]: ``10^(-psnr / 10)``."""
    return 10.0 ** (-psnr / 10.0)


def psnr_of_mse(mse: float) -> float:
    """PSNR in dB of an MSE for images in [0, 1]: ``-10 log10(mse)``."""
    return -10.0 * math.log10(max(mse, 1e-30))


def baseline_policy(bits: int, levels: int) -> QuantPolicy:
    """The PTQ / LSQ+ baselines' policy: every component at ``bits`` but the exp (density) output at
    ``min(32, bits + 24)``, as the reference code's baseline scripts set it (e.g. 6 bits, exp at 30)."""
    return QuantPolicy.uniform(bits, levels).replace({"density.out": min(32, bits + 24)})


def install_lbq(model) -> dict[str, LBQuantizer]:
    """An ``LBQuantizer`` on every component of the model (uncalibrated); returns name -> quantizer."""
    model.clear_quantizers()
    quantizers = {}
    for name in component_names(model.arch["levels"]):
        q = LBQuantizer.for_component(name).to(model.bbox.device)
        model.install_quantizer(name, q)
        quantizers[name] = q
    return quantizers


def bit_penalty_weights(arch: Mapping) -> dict[str, float]:
    """Each component's weight in the bit penalty (module doc), normalised to sum to 1."""
    w = acaq_weights(arch)
    for name in w:
        if name.endswith(".weight") or name.startswith("hash."):
            w[name] *= WEIGHT_PENALTY
        elif name == "density.out":
            w[name] *= EXP_PENALTY
    total = sum(w.values())
    return {n: v / total for n, v in w.items()}


def learned_policy(quantizers: Mapping[str, LBQuantizer], levels: int) -> QuantPolicy:
    """The hard bitwidths ``round(clamp(b, 2, 32))`` of every component as a ``QuantPolicy``."""
    return QuantPolicy({name: q.bits for name, q in quantizers.items()}, levels)


def bit_grads(bits_params, weights, loss: float, l_metric: float, eps: float) -> None:
    """Turn the soft bits' ``.grad`` (dL_nerf/db after ``L_nerf.backward()``) into dL_bit/db, in place.

    ``L_bit = sqrt(|L_nerf - L_metric|) + eps * sum_c w_c round_ste(b_c)``, so by the chain rule
    ``dL_bit/db_c = sign(d) / (2 sqrt|d|) dL_nerf/db_c + eps w_c`` with ``d = L_nerf - L_metric``
    (|d| floored at 1e-12). ``weights``: the penalty weights (``bit_penalty_weights``), in the order of
    ``bits_params``.
    """
    d = loss - l_metric
    scale = math.copysign(0.5 / math.sqrt(max(abs(d), 1e-12)), d)
    for p, w in zip(bits_params, weights):
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        p.grad = scale * g + eps * w


def _batch_loss(model, occupancy, batcher, rays: int, n_samples: int, background: str, gen, *, grad: bool):
    from nerf.render import render_rays
    from nerf.data import training_batch

    origins, dirs, target, bg = training_batch(batcher, rays, background, gen)
    with torch.set_grad_enabled(grad):
        rgb, _, stats = render_rays(model, origins, dirs, n_samples=n_samples, occupancy=occupancy, perturb=True,
                                    generator=gen, background=bg)
        return torch.mean((rgb - target) ** 2), stats


def training_loss(model, occupancy, data, *, rays: int, n_samples: int, background: str, seed: int,
                  chunk: int = 4096) -> float:
    """Mean training MSE of ``model`` on ``rays`` training rays drawn and composited like training batches.

    Deterministic for a seed (ray sampler, jitter and backgrounds seeded). Used for MDL's L_metric.
    """
    from nerf.data import RayBatcher

    batcher = RayBatcher(data, chunk, seed=seed + 1)
    gen = torch.Generator().manual_seed(seed + 1)
    total, done = 0.0, 0
    while done < rays:
        n = min(chunk, rays - done)
        loss, _ = _batch_loss(model, occupancy, batcher, n, n_samples, background, gen, grad=False)
        total += float(loss) * n
        done += n
    return total / rays


def _lr_lambda(iterations: int, decay_start: float):
    start = int(round(decay_start * iterations))

    def factor(it: int) -> float:
        if it < start or iterations <= start:
            return 1.0
        return 0.1 ** min(1.0, (it - start) / (iterations - start))

    return factor


def finetune(field, settings: QATSettings, out_dir: str | Path, *, background: str = "random",
             checkpoint_seconds: float = 60.0, until: int | None = None, progress: bool = True,
             handle_signals: bool = True) -> dict:
    """Fine-tune ``field`` (a ``nerf.field.TrainedField``) in place under ``settings``; resumable.

    Leaves ``field.model`` quantized (its quantizers installed and trained) for evaluation.

    Args:
        field: the trained full-precision field; its model is modified.
        settings: ``QATSettings``.
        out_dir: folder of ``checkpoint.pt``; an existing one of the same settings is resumed.
        background: training background on scenes with alpha ("random" per ray, as training).
        until: stop after this iteration (for tests of resume); None runs all.

    Returns:
        ``{"finished", "iterations", "interrupted" (signal name or None), "loss_fp" (MSE), "l_metric",
        "psnr_train_fp" (dB), "seconds", "history": [{"step", "loss", "psnr", "fqr", "bits"}, ...]}``;
        ``bits`` is the hard bits per component (A-CAQ) at that step, every 10th step and the last.

    Raises:
        QATError: a checkpoint in ``out_dir`` of other settings or architecture (naming the field); an
            MGL target better than the full-precision model's training loss (naming both, in dB).
    """
    from nerf.data import RayBatcher, rays_for_budget
    from quant.ptq import apply_policy, calibrate_field

    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoint.pt"
    clean_stale(ckpt_path)
    model, occupancy, data = field.model, field.occupancy, field.train_data
    n_samples, levels = field.n_samples, field.levels
    ckpt = None
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        _check_resume(ckpt_path, ckpt, settings, model.arch)
    model.clear_quantizers()
    if ckpt is None:
        loss_fp = training_loss(model, occupancy, data, rays=settings.loss_rays, n_samples=n_samples,
                                background=background, seed=settings.seed)
    else:
        loss_fp = ckpt["loss_fp"]
    l_metric = settings.target if settings.target is not None else loss_fp
    if l_metric < loss_fp:
        raise QATError(f"target {psnr_of_mse(l_metric):.2f} dB (MSE {l_metric:.3g}) is above the full-precision "
                       f"model's training PSNR {psnr_of_mse(loss_fp):.2f} dB (MSE {loss_fp:.3g}): no quantized model "
                       "can be asked to do better; choose a lower target")
    if settings.method == "acaq":
        quantizers, fixed = install_lbq(model), None
    else:  # full-precision components have no quantizer: the history's bits are the whole policy's
        fixed = (QuantPolicy(settings.policy, levels) if settings.policy is not None  # validates the components
                 else baseline_policy(settings.bits, levels)).to_dict()
        quantizers = apply_policy(model, fixed)
    if ckpt is None:
        calibrate_field(model, occupancy, data, rays=settings.calibration_rays, n_samples=n_samples, seed=settings.seed)
    bits_params = [q.soft_bits for q in quantizers.values()] if settings.method == "acaq" else []
    # LSQ+: each step s at rest_lr / (2^B - 1), i.e. its range s (2^B - 1) at rest_lr, as LBQ's range r
    steps = [] if settings.method == "acaq" else [(q.scale, 2**q.bits - 1) for q in quantizers.values()]
    special = {id(p) for p in bits_params} | {id(p) for p, _ in steps}
    rest = [p for p in model.parameters() if id(p) not in special]
    groups = [{"params": rest, "lr": settings.rest_lr}]
    groups += [{"params": [p], "lr": settings.rest_lr / levels_q} for p, levels_q in steps]
    if bits_params:
        groups.append({"params": bits_params, "lr": settings.lr_bits})
    optim = torch.optim.Adam(groups, betas=(0.9, 0.99), eps=1e-15)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, _lr_lambda(settings.iterations, settings.decay_start))
    gen = torch.Generator().manual_seed(settings.seed)
    batcher = RayBatcher(data, 1024, seed=settings.seed)
    step, seconds, rays, history = 0, 0.0, 1024, []
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optim.load_state_dict(ckpt["optim"])
        sched.load_state_dict(ckpt["sched"])
        gen.set_state(ckpt["generator"])
        batcher.rng.bit_generator.state = ckpt["batcher"]
        step, seconds, rays, history = ckpt["step"], ckpt["seconds"], ckpt["rays"], ckpt["history"]
    penalty_w = bit_penalty_weights(model.arch)
    pw = [penalty_w[n] for n in quantizers] if bits_params else None

    def save(finished: bool = False):
        state = {"kind": "nerfhw-qat", "settings": settings.model_dump(), "arch": model.arch,
                 "scene": field.scene, "preset": field.settings, "source": str(field.checkpoint),
                 "model": model.state_dict(), "optim": optim.state_dict(), "sched": sched.state_dict(),
                 "generator": gen.get_state(), "batcher": batcher.rng.bit_generator.state, "step": step,
                 "seconds": seconds, "rays": rays, "history": history, "loss_fp": loss_fp, "l_metric": l_metric,
                 "finished": finished, "occupancy": occupancy.state_dict()}
        atomic_write(ckpt_path, lambda tmp: torch.save(state, tmp))

    stop = settings.iterations if until is None else min(until, settings.iterations)
    label = "A-CAQ" if settings.method == "acaq" else ("LSQ+ policy" if settings.policy else f"LSQ+ {settings.bits}b")
    bar = tqdm(total=settings.iterations, initial=step, desc=f"{label} {settings.mode.upper()}", unit="it",
               disable=not progress)
    model.train()
    last_save = time.monotonic()
    with deferred_signals(handle_signals) as caught:
        while step < stop and not caught:
            t0 = time.perf_counter()
            loss, stats = _batch_loss(model, occupancy, batcher, rays, n_samples, background, gen, grad=True)
            rays = rays_for_budget(stats.samples_evaluated, stats.rays, settings.batch_samples)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            if bits_params:
                bit_grads(bits_params, pw, float(loss.detach()), l_metric, settings.eps)
            optim.step()
            sched.step()
            if bits_params:
                for q in quantizers.values():
                    q.clamp_bits()
            step += 1
            seconds += time.perf_counter() - t0
            bar.update(1)
            if step % 10 == 0 or step == settings.iterations:
                bits = fixed if fixed is not None else {n: q.bits for n, q in quantizers.items()}
                row = {"step": step, "loss": round(loss.item(), 7), "psnr": round(psnr_of_mse(loss.item()), 3),
                       "fqr": round(fqr(bits), 4), "bits": bits}
                history.append(row)
                bar.set_postfix(psnr=f"{row['psnr']:.2f}", fqr=f"{row['fqr']:.2f}", rays=rays)
            if step == stop or caught or time.monotonic() - last_save >= checkpoint_seconds:
                save(finished=step >= settings.iterations)
                last_save = time.monotonic()
    bar.close()
    model.eval()
    return {"finished": step >= settings.iterations, "iterations": step,
            "interrupted": signal.Signals(caught[0]).name if caught else None, "loss_fp": loss_fp,
            "l_metric": l_metric, "psnr_train_fp": round(psnr_of_mse(loss_fp), 3), "seconds": round(seconds, 1),
            "history": history}


def _check_resume(path: Path, ckpt, settings: QATSettings, arch: Mapping) -> None:
    if not isinstance(ckpt, dict) or ckpt.get("kind") != "nerfhw-qat":
        raise QATError(f"{path}: not a fine-tuning checkpoint of nerfhw")
    for key in sorted(set(arch) | set(ckpt["arch"])):
        if ckpt["arch"].get(key) != arch.get(key):
            raise QATError(f"{path}: architecture field {key!r} is {ckpt['arch'].get(key)!r}, the trained field's is "
                           f"{arch.get(key)!r}: use another folder")
    saved = ckpt["settings"]
    for key, value in settings.model_dump().items():
        if saved.get(key) != value:
            raise QATError(f"{path}: was started with {key} = {saved.get(key)!r}, not {value!r}: resume with the "
                           "same settings or use another folder")
