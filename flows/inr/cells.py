"""The quantization cells of ``make inr``: a copy of the FP SIREN quantized by one setting at B bits.

Every setting (``flows.inr.methods``) first wraps the layers (``quant.hadamard.dhq_wrap``; rotated as
its placement says) and calibrates the steps on the image's coordinates (PTQ, by its calibration);
the ``+lsq+`` settings then fine-tune the weights, biases and steps (QAT). See ``flows.inr``.
"""

from __future__ import annotations

import copy
import time

from flows.inr.methods import Setting, setting_of
from flows.inr.settings import ABLATIONS, InrSettings

__all__ = ["method_plan", "quantize", "run_cell", "rotated_tensors", "layer_rotations"]


def method_plan(method: str) -> tuple[Setting, bool, bool]:
    """``(setting, weights quantized, activations quantized)`` of a setting name or an ablation."""
    if method in ABLATIONS:
        rotate, weights, acts = ABLATIONS[method]
        return Setting("all" if rotate else "none"), weights, acts
    return setting_of(method), True, True


def _rotations(model, setting: Setting, bits: int, weights: bool, acts: bool, settings: InrSettings, coords):
    """``dhq_wrap``'s ``rotate``: a bool, or the per-layer choices of the "paper" and "rule" placements."""
    from quant.hadamard import placement_rotations

    if setting.rotation in ("none", "all"):
        return setting.rotates
    layer_bits = {f"layers.{k}": (bits if weights else None, (settings.coord_bits if k == 0 else bits) if acts else None)
                  for k in range(len(model.layers))}
    return placement_rotations(model, setting.rotation, names=list(layer_bits), bits=layer_bits, inputs=coords,
                               calibration=setting.calibration, per_channel=setting.per_channel)


def layer_rotations(model, method: str, bits: int, settings: InrSettings, coords) -> list[list[bool]]:
    """What ``quantize`` rotates for ``method`` at ``bits`` (``rotated_tensors`` of its model), without quantizing."""
    setting, weights, acts = method_plan(method)
    rot = _rotations(model, setting, bits, weights, acts, settings, coords)
    if isinstance(rot, bool):
        return [[rot, rot] for _ in model.layers]
    return [list(rot[f"layers.{k}"]) for k in range(len(model.layers))]


def _calibrated(model, bits: int, setting: Setting, weights: bool, acts: bool, settings: InrSettings, coords):
    """A wrapped, calibrated copy of ``model`` (the PTQ model)."""
    import torch

    from quant.hadamard import dhq_layers, dhq_wrap
    from quant.quantizers import calibrate

    q = copy.deepcopy(model)
    rotate = _rotations(model, setting, bits, weights, acts, settings, coords)
    dhq_wrap(q, rotate=rotate, weight_bits=bits if weights else None, act_bits=bits if acts else None,
             calibration=setting.calibration, per_channel=setting.per_channel)
    if acts:  # the coordinates are the network's input, an exact fixed-point pixel address in hardware
        next(iter(dhq_layers(q).values())).act_quantizer.bits = settings.coord_bits
    q.eval()
    with torch.no_grad(), calibrate(q):
        q(coords)
    return q


def _finetune(q, settings: InrSettings, data, desc: str, progress: bool) -> None:
    """LSQ+ QAT in place: Adam on weights and biases (``finetune_lr``) and on each step (``scale_lr`` x its value)."""
    import torch

    from nerf.siren import fit
    from quant.hadamard import layer_parameters, quantizer_parameters

    scales = quantizer_parameters(q)
    floors = [s.detach().clone() * 1e-3 for s in scales]
    groups = [{"params": layer_parameters(q), "lr": settings.finetune_lr}]
    # Per-channel steps share one learning rate, scaled by their mean.
    groups += [{"params": [s], "lr": settings.scale_lr * float(s.detach().mean())} for s in scales]

    def keep_positive():  # a step must stay > 0; Adam could push a tiny one through zero
        with torch.no_grad():
            for s, floor in zip(scales, floors):
                torch.maximum(s, floor, out=s)

    fit(q, data.coords, data.target, steps=settings.finetune_steps, params=groups, seed=settings.seed,
        progress=progress, desc=desc, after_step=keep_positive, keep_best=True)


def quantize(model, method: str, bits: int, settings: InrSettings, data, progress: bool):
    """A quantized copy of ``model`` by ``method`` (a setting name or an ablation) at ``bits``; see the module doc."""
    setting, weights, acts = method_plan(method)
    q = _calibrated(model, bits, setting, weights, acts, settings, data.coords)
    if setting.trained and settings.finetune_steps:
        _finetune(q, settings, data, f"{method} {bits}b", progress)
    return q


def rotated_tensors(q) -> list[list[bool]]:
    """``[[weight rotated, input rotated], ...]`` per layer of a quantized model, in layer order."""
    from quant.hadamard import dhq_layers

    return [[layer.rotate_weight, layer.rotate_act] for layer in dhq_layers(q).values()]


def run_cell(model, method: str, bits: int, settings: InrSettings, data, progress: bool):
    """One (method, bits) cell from the seed: ``({"psnr", "ssim", "seconds", "rotated"}, reconstruction (H, W, C))``;
    ``rotated``: ``rotated_tensors``."""
    import torch

    torch.manual_seed(settings.seed)
    t0 = time.perf_counter()
    q = quantize(model, method, bits, settings, data, progress)
    metrics, rec = data.metrics(q)
    return {**metrics, "seconds": round(time.perf_counter() - t0, 2), "rotated": rotated_tensors(q)}, rec
