"""Post-training quantization (PTQ) of the radiance field under a ``QuantPolicy``.

``apply_policy`` installs one ``FakeQuantizer`` per component at the model's hook points (scheme from
``quant.policy.scheme_of``); ``calibrate_field`` runs training rays through the full-precision field
with every quantizer observing, then freezes the min-max scales (A-CAQ's PTQ baseline). Hash-table
quantizers observe their whole level table; activation quantizers observe the samples that the
occupancy grid lets through, i.e. the activations the field really sees when rendering.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from quant.policy import FULL_PRECISION_BITS, KiloPolicy, QuantPolicy, scheme_of
from quant.quantizers import FakeQuantizer, calibrate

__all__ = ["apply_policy", "calibrate_field", "ptq", "PTQEvaluator", "uniform_policy"]


def uniform_policy(model, bits: int) -> QuantPolicy:
    """Every component of ``model``'s family at ``bits``: a ``KiloPolicy`` for ``nerf.kilonerf.KiloNeRF``,
    a ``QuantPolicy`` of its hash levels for ``nerf.model.InstantNGP``."""
    if model.arch.get("model") == "kilonerf":
        return KiloPolicy.uniform(bits)
    return QuantPolicy.uniform(bits, model.arch["levels"])


def apply_policy(model, policy: Mapping[str, int]) -> dict[str, FakeQuantizer]:
    """Install a (not yet calibrated) quantizer for every component of ``policy`` that is below 32 bits.

    Any quantizers installed before are removed first. Returns name -> quantizer.
    """
    model.clear_quantizers()
    quantizers = {}
    for name, bits in policy.items():
        if bits == FULL_PRECISION_BITS:
            continue
        q = FakeQuantizer(scheme_of(name), bits, name=name).to(model.bbox.device)
        model.install_quantizer(name, q)
        quantizers[name] = q
    return quantizers


@torch.no_grad()
def calibrate_field(model, occupancy, data, *, rays: int = 16384, n_samples: int, seed: int = 0,
                    chunk: int = 8192, observers=None) -> int:
    """Min-max calibration on ``rays`` random rays of ``data`` (a training split); returns the samples seen.

    ``observers``: a module holding the quantizers to calibrate (default: every one of ``model``); the
    others keep their scales (e.g. LSQ+-trained ones beside a newly added quantizer).

    Rays are drawn with ``nerf.data.RayBatcher(data, rays, seed=seed)``, so calibration is deterministic.
    """
    from nerf.data import RayBatcher
    from nerf.render import render_rays

    origins, dirs, _ = RayBatcher(data, rays, seed=seed).next_batch()
    device = model.bbox.device
    seen = 0
    model.eval()
    with calibrate(model if observers is None else observers):
        for a in range(0, rays, chunk):
            o = torch.from_numpy(np.ascontiguousarray(origins[a:a + chunk])).to(device)
            d = torch.from_numpy(np.ascontiguousarray(dirs[a:a + chunk])).to(device)
            _, _, stats = render_rays(model, o, d, n_samples=n_samples, occupancy=occupancy, t_min=1e-4, chunks=4)
            seen += stats.samples_evaluated
    return seen


def ptq(model, occupancy, calibration_data, policy: QuantPolicy, *, n_samples: int, rays: int = 16384,
        seed: int = 0) -> dict[str, FakeQuantizer]:
    """``apply_policy`` then ``calibrate_field``: the model then renders at the policy's bitwidths."""
    quantizers = apply_policy(model, policy)
    if quantizers:
        calibrate_field(model, occupancy, calibration_data, rays=rays, n_samples=n_samples, seed=seed)
    return quantizers


class PTQEvaluator:
    """Evaluate many policies on one field quickly: calibrate every component once, then set bits.

    Min-max calibration observes full-precision tensors whatever the bits, so setting a calibrated
    quantizer's ``bits`` re-derives exactly the scale ``ptq`` would give (``FakeQuantizer.bits``): one
    calibration serves every policy of a search.

    With ``quantizer="dhq"`` the field's MLP layers are DHQ layers (``quant.dhq_field``, placement "all" or
    "paper": "rule" decides from the bits, which change with every policy) and their quantizers, also
    calibrated once, re-derive their steps at each policy's bits by their ``calibration`` (the stored
    calibration samples for "mse" and "percentile"). The model keeps the DHQ layers.

    Args:
        model, occupancy: the trained field and its occupancy grid.
        calibration_data: a training split (rays for calibration); eval_data: the views to score.
        views: indices of ``eval_data`` to render; n_samples: samples per ray.
        rays, seed: calibration rays and their seed (as ``calibrate_field``).
        quantizer, placement, calibration: the MLPs' quantizer (``quant.dhq_field.check_options``).

    Raises:
        ValueError: an unknown quantizer, placement or calibration; placement "rule"; DHQ on a KiloNeRF.
    """

    def __init__(self, model, occupancy, calibration_data, eval_data, *, views, n_samples: int, rays: int = 16384,
                 seed: int = 0, quantizer: str = "uniform", placement: str | None = None,
                 calibration: str | None = None):
        from quant.dhq_field import check_options, field_rotations, install_dhq

        self.options = check_options(quantizer, placement, calibration)
        self.model, self.occupancy, self.data = model, occupancy, eval_data
        self.views, self.n_samples = list(views), n_samples
        self.rotations, self.dhq_layers = None, {}
        if self.options["quantizer"] == "dhq":
            if model.arch.get("model") == "kilonerf":
                raise ValueError("quantizer 'dhq' is for the Instant-NGP field's MLPs, not KiloNeRF")
            if self.options["placement"] == "rule":
                raise ValueError("placement 'rule' decides each rotation from the policy's bits, which the search "
                                 "changes with every policy: use placement 'all' or 'paper'")
            self.rotations = field_rotations(model, self.options["placement"])
            installed = install_dhq(model, uniform_policy(model, 8), self.rotations,
                                    calibration=self.options["calibration"])
            self.quantizers, self.dhq_layers = installed["quantizers"], installed["layers"]
        else:
            self.quantizers = apply_policy(model, uniform_policy(model, 8))
        calibrate_field(model, occupancy, calibration_data, rays=rays, n_samples=n_samples, seed=seed)

    def set_policy(self, policy: Mapping[str, int]) -> None:
        for name, q in self.quantizers.items():
            q.bits = policy[name]
        if self.dhq_layers:
            from quant.dhq_field import set_dhq_bits

            set_dhq_bits(self.dhq_layers, policy, self.model.arch, self.rotations)

    def evaluate(self, policy: Mapping[str, int]) -> dict:
        """``{"psnr": mean dB over the views, "samples_per_ray": field evaluations per ray}`` under ``policy``."""
        from nerf.metrics import psnr
        from nerf.render import render_image

        self.set_policy(policy)
        scores, samples, rays = [], 0, 0
        for i in self.views:
            img, stats = render_image(self.model, self.occupancy, self.data, i, n_samples=self.n_samples)
            scores.append(psnr(img, self.data.images[i]))
            samples += stats.samples_evaluated
            rays += stats.rays
        return {"psnr": float(np.mean(scores)), "samples_per_ray": samples / max(rays, 1)}
