"""The image and the full-precision SIREN of a ``make inr`` run: fitted once, kept in ``fp.pt``, reused."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from common.atomic import atomic_write
from flows.inr.settings import InrSettings

__all__ = ["ImageData", "fp_model"]


class ImageData:
    """The image (H, W, C) float32 in [0, 1], its coordinates (H*W, 2) and targets (H*W, C) as tensors."""

    def __init__(self, settings: InrSettings):
        import torch

        from nerf.siren import image_coordinates, load_image

        self.image = load_image(settings.image, size=settings.size)
        self.height, self.width, self.channels = self.image.shape
        self.coords = image_coordinates(self.height, self.width)
        self.target = torch.from_numpy(self.image).reshape(-1, self.channels)

    def metrics(self, model) -> tuple[dict, np.ndarray]:
        """``({"psnr": dB, "ssim": ...}, reconstruction (H, W, C))`` of ``model`` on the whole image."""
        from nerf.metrics import psnr, ssim
        from nerf.siren import predict_image

        rec = predict_image(model, self.coords, self.height, self.width)
        return {"psnr": round(psnr(rec, self.image), 3), "ssim": round(ssim(rec, self.image), 4)}, rec


def _load(path: Path, key: dict, out: Path):
    """The model and training info of ``fp.pt``, if it was trained with the settings ``key``.

    Raises:
        ValueError: unreadable, or trained with other settings (naming the first that differs).
    """
    import torch

    from nerf.siren import Siren

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise ValueError(f"cannot read checkpoint {str(path)!r}: {exc}; delete it to retrain") from exc
    old = ckpt.get("settings", {}) if isinstance(ckpt, dict) else {}
    for k, v in key.items():
        if old.get(k) != v:
            raise ValueError(f"{path} was trained with {k}={old.get(k)!r}, this run asks for {k}={v!r}: "
                             f"delete {out} to retrain, or write the run elsewhere (--runs)")
    model = Siren(**ckpt["arch_args"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, {**ckpt["training"], "reused": True}


def _train(settings: InrSettings, data: ImageData, path: Path, progress: bool):
    """Fit a new SIREN (``nerf.siren.fit``) and save it to ``path`` atomically with its settings."""
    import torch

    from nerf.siren import Siren, fit

    torch.manual_seed(settings.seed)
    model = Siren(width=settings.width, hidden_layers=settings.hidden_layers, channels=data.channels)
    model, history = fit(model, data.coords, data.target, steps=settings.steps, lr=settings.lr, seed=settings.seed,
                         progress=progress, desc=f"fit {settings.image}")
    training = {"steps": settings.steps, "lr": settings.lr, "seconds": round(history["seconds"], 2),
                "final_loss_psnr": round(history["final_psnr"], 3),
                "history": {"step": history["step"], "psnr": history["psnr"]}}
    arch_args = {"width": settings.width, "hidden_layers": settings.hidden_layers, "channels": data.channels}
    state = {"settings": settings.fp_key(), "arch_args": arch_args, "model": model.state_dict(), "training": training}
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return model, {**training, "reused": False}


def fp_model(settings: InrSettings, data: ImageData, out: Path, progress: bool):
    """Load ``out/fp.pt`` if it matches ``settings.fp_key()``, else train and save it. -> (model, training info).

    Raises:
        ValueError: ``fp.pt`` is unreadable or was trained with other settings.
    """
    path = out / "fp.pt"
    if path.is_file():
        return _load(path, settings.fp_key(), out)
    return _train(settings, data, path, progress)
