"""The quantization cells of ``make inr``: a copy of the FP SIREN quantized by one method at B bits.

Every method first wraps the layers (``quant.hadamard.dhq_wrap``; rotated for DHQ) and calibrates
the steps by min-max on the image's coordinates (PTQ); the ``+lsq+`` methods then fine-tune the
weights, biases and steps (QAT). See ``flows.inr`` for the methods and why.
"""

from __future__ import annotations

import copy
import time

from flows.inr.settings import ABLATIONS, METHODS, InrSettings

__all__ = ["method_plan", "quantize", "run_cell"]


def method_plan(method: str) -> tuple[bool, bool, bool, bool]:
    """``(rotate, weights quantized, activations quantized, fine-tune)`` of a method or ablation."""
    if method in ABLATIONS:
        rotate, weights, acts = ABLATIONS[method]
        return rotate, weights, acts, False
    rotate, train = METHODS[method]
    return rotate, True, True, train


def _calibrated(model, bits: int, rotate: bool, weights: bool, acts: bool, settings: InrSettings, coords):
    """A wrapped, min-max calibrated copy of ``model`` (the PTQ model)."""
    import torch

    from quant.hadamard import dhq_layers, dhq_wrap
    from quant.quantizers import calibrate

    q = copy.deepcopy(model)
    dhq_wrap(q, rotate=rotate, weight_bits=bits if weights else None, act_bits=bits if acts else None)
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
    floors = [float(s.detach()) * 1e-3 for s in scales]
    groups = [{"params": layer_parameters(q), "lr": settings.finetune_lr}]
    groups += [{"params": [s], "lr": settings.scale_lr * float(s.detach())} for s in scales]

    def keep_positive():  # a step must stay > 0; Adam could push a tiny one through zero
        with torch.no_grad():
            for s, floor in zip(scales, floors):
                s.clamp_(min=floor)

    fit(q, data.coords, data.target, steps=settings.finetune_steps, params=groups, seed=settings.seed,
        progress=progress, desc=desc, after_step=keep_positive, keep_best=True)


def quantize(model, method: str, bits: int, settings: InrSettings, data, progress: bool):
    """A quantized copy of ``model`` by ``method`` at ``bits`` (weights and activations); see the module doc."""
    rotate, weights, acts, train = method_plan(method)
    q = _calibrated(model, bits, rotate, weights, acts, settings, data.coords)
    if train and settings.finetune_steps:
        _finetune(q, settings, data, f"{method} {bits}b", progress)
    return q


def run_cell(model, method: str, bits: int, settings: InrSettings, data, progress: bool):
    """One (method, bits) cell from the seed: ``({"psnr", "ssim", "seconds"}, reconstruction (H, W, C))``."""
    import torch

    torch.manual_seed(settings.seed)
    t0 = time.perf_counter()
    q = quantize(model, method, bits, settings, data, progress)
    metrics, rec = data.metrics(q)
    return {**metrics, "seconds": round(time.perf_counter() - t0, 2)}, rec
