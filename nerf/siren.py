"""SIREN image INR: an MLP with sine activations fitted to one image (coordinates -> pixel values).

Sitzmann et al., "Implicit Neural Representations with Periodic Activation Functions", NeurIPS 2020:
``h_0 = x`` (2 coordinates in [-1, 1]^2), ``h_{i+1} = sin(omega_0 (W_i h_i + b_i))`` for the first and
the hidden layers, and a linear last layer ``y = W_L h_L + b_L``; omega_0 = 30. Initialisation (sec. 3.2
and the reference code): first-layer weights ~ U(-1/in, 1/in), every later weight
~ U(-sqrt(6/in)/omega_0, sqrt(6/in)/omega_0); biases keep PyTorch's default U(-1/sqrt(in), 1/sqrt(in)).

Every layer is a plain ``nn.Linear`` child of ``Siren.layers`` and the sine is applied outside it, so
``quant.hadamard.dhq_wrap`` can replace the layers by quantized ones. The hidden width is a power of two
<= 128, the sizes the Hadamard datapath (``hw/hadamard/``) runs.

Images come from ``nerf.images`` (the scikit-image wheel's pictures; re-exported here as ``IMAGES`` and
``load_image``): float32 (H, W, C) in [0, 1], C = 1 for grayscale and 3 for RGB.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Annotated

import numpy as np
import torch
from pydantic import Field
from torch import nn

from common.validate import checker, spec
from nerf.images import IMAGES, load_image  # noqa: F401  (re-exported: the images SIRENs are fitted to)

__all__ = ["IMAGES", "OMEGA_0", "MAX_WIDTH", "SirenArch", "Siren", "load_image", "image_coordinates", "fit",
           "predict_image"]

#: SIREN's frequency factor omega_0 (Sitzmann et al. 2020, sec. 3.2).
OMEGA_0 = 30.0
#: The widest layer the Hadamard datapath runs (its n).
MAX_WIDTH = 128


_check_steps = checker(Annotated[int, Field(ge=0)])
_check_lr = checker(Annotated[float, Field(gt=0, allow_inf_nan=False)])


@spec(ValueError)
class SirenArch:
    """The shape of a ``Siren`` (validated; keyword-only): see ``Siren``'s arguments.

    Raises:
        ValueError: a size outside its range, a width that is not a power of two, omega_0 not a finite
            number > 0 (naming the field, the range and the value).
    """

    in_features: Annotated[int, Field(ge=1, le=MAX_WIDTH)] = 2
    width: Annotated[int, Field(ge=2, le=MAX_WIDTH)] = 64
    hidden_layers: Annotated[int, Field(ge=0, le=16)] = 3
    channels: Annotated[int, Field(ge=1, le=4)] = 1
    omega_0: Annotated[float, Field(gt=0, allow_inf_nan=False)] = OMEGA_0

    def __post_init__(self) -> None:
        if self.width & (self.width - 1):
            raise ValueError(f"SirenArch.width must be a power of two (the Hadamard datapath's sizes), not {self.width}")


class Siren(nn.Module):
    """SIREN: 2 -> width (sin) -> width (sin) x hidden_layers -> channels (linear); see the module doc.

    Args (keyword-only):
        width: hidden features, a power of two in [2, 128] (default 64).
        hidden_layers: width -> width sine layers after the first one (default 3, as the reference
            code: 2 + hidden_layers linear layers in all).
        channels: outputs, 1 (grayscale) or 3 (RGB) (default 1).
        in_features: input coordinates (default 2).
        omega_0: the sine's frequency factor (default 30).

    Attributes:
        layers: ``nn.ModuleList`` of the ``nn.Linear`` layers, first to last.

    Raises:
        ValueError: as ``SirenArch`` (a size outside its range or a width that is not a power of two,
            naming the field and value, or omega_0 not a finite number > 0).
    """

    def __init__(self, *, width: int = 64, hidden_layers: int = 3, channels: int = 1, in_features: int = 2,
                 omega_0: float = OMEGA_0) -> None:
        super().__init__()
        arch = SirenArch(width=width, hidden_layers=hidden_layers, channels=channels, in_features=in_features,
                         omega_0=omega_0)
        self.arch = dataclasses.asdict(arch)
        self.omega_0 = arch.omega_0
        sizes = [in_features] + [width] * (hidden_layers + 1) + [channels]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        with torch.no_grad():
            first = self.layers[0]
            first.weight.uniform_(-1 / first.in_features, 1 / first.in_features)
            for layer in self.layers[1:]:
                bound = math.sqrt(6 / layer.in_features) / self.omega_0
                layer.weight.uniform_(-bound, bound)

    @property
    def shape(self) -> list[list[int]]:
        """[[in, out], ...] of every layer."""
        return [[l.in_features, l.out_features] for l in self.layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Coordinates (N, in_features) in [-1, 1] -> values (N, channels) (about [0, 1] once fitted)."""
        for layer in self.layers[:-1]:
            x = torch.sin(self.omega_0 * layer(x))
        return self.layers[-1](x)

    def hidden_inputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The input of every layer, first to last (the first is ``x``), detached: [(N, in_i)]."""
        inputs = []
        with torch.no_grad():
            for layer in self.layers[:-1]:
                inputs.append(x)
                x = torch.sin(self.omega_0 * layer(x))
            inputs.append(x)
        return inputs

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def image_coordinates(height: int, width: int) -> torch.Tensor:
    """Pixel coordinates (H * W, 2) float32 in [-1, 1], row-major, columns (x, y); the corners are +-1.

    As the SIREN reference's ``get_mgrid``: ``linspace(-1, 1)`` along each axis.
    """
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    return torch.stack([xs, ys], dim=-1).reshape(-1, 2)


def predict_image(model: nn.Module, coords: torch.Tensor, height: int, width: int,
                  chunk: int = 65536) -> np.ndarray:
    """``model(coords)`` as float32 (H, W, C) clipped to [0, 1] (no gradients, chunked)."""
    with torch.no_grad():
        out = torch.cat([model(coords[a:a + chunk]) for a in range(0, coords.shape[0], chunk)])
    return out.reshape(height, width, -1).clamp(0, 1).numpy()


def fit(model: nn.Module, coords: torch.Tensor, target: torch.Tensor, *, steps: int, lr: float = 1e-3,
        params=None, seed: int = 0, progress: bool = True, desc: str = "fit",
        after_step=None, keep_best: bool = False) -> tuple[nn.Module, dict]:
    """Full-batch Adam on the mean squared error ``mean((model(coords) - target)^2)``.

    Args:
        model: maps (N, 2) -> (N, C); trained in place.
        coords: (N, 2) float32, ``image_coordinates``; target: (N, C) float32 pixel values in [0, 1].
        steps: Adam steps (>= 0); lr: learning rate (default 1e-3, measured best for width 64).
        params: what to optimise (parameters or Adam parameter groups); default ``model.parameters()``.
        seed: ``torch.manual_seed`` before training (full batch: nothing else is random).
        progress: a tqdm bar with the running PSNR; desc: its label.
        after_step: called with no arguments after every optimiser step (e.g. to clamp learned steps).
        keep_best: end with the parameters (the whole state dict) of the lowest loss seen, the loss of
            the image being the metric (fine-tuning from a good start must not end worse than it began).

    Returns:
        ``(model, history)``; history: ``{"step": [...], "psnr": [...] (dB, of the training loss before
        that step's update, every ~1% of the steps and the last), "seconds": wall seconds of the loop,
        "final_psnr": dB at the end (of the kept parameters)}``.

    Raises:
        ValueError: steps not an int >= 0, or lr not a finite number > 0.
    """
    from tqdm import tqdm

    _check_steps(steps, "steps")
    _check_lr(lr, "lr")
    torch.manual_seed(seed)
    optim = torch.optim.Adam(model.parameters() if params is None else params, lr=lr)
    history = {"step": [], "psnr": []}
    every = max(1, steps // 100)
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(range(steps), desc=desc, unit="step", disable=not progress, leave=False)
    best_loss, best_state = float("inf"), None
    for step in bar:
        loss = torch.mean((model(coords) - target) ** 2)
        if keep_best and loss.item() < best_loss:
            best_loss, best_state = loss.item(), copy.deepcopy(model.state_dict())
        optim.zero_grad(set_to_none=True)
        loss.backward()
        optim.step()
        if after_step is not None:
            after_step()
        if step % every == 0 or step == steps - 1:
            p = -10 * math.log10(max(loss.item(), 1e-12))
            history["step"].append(step)
            history["psnr"].append(round(p, 3))
            bar.set_postfix(psnr=f"{p:.2f}")
    bar.close()
    model.eval()
    with torch.no_grad():
        final = torch.mean((model(coords) - target) ** 2).item()
    if keep_best and best_loss < final:
        model.load_state_dict(best_state)
        final = best_loss
    history["seconds"] = time.perf_counter() - t0
    history["final_psnr"] = -10 * math.log10(max(final, 1e-12))
    return model, history
