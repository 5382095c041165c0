"""A trained radiance field loaded for use: the model, its occupancy grid and its scene's splits.

Built on ``nerf.train.load_checkpoint`` / ``model_from_checkpoint`` (a ``checkpoint.pt`` that training
writes); the scene is the one the checkpoint records unless given, loaded at the checkpoint's
downscale. Everything that renders or scores the field (``nerf.render``, ``quant.ptq``) takes the
parts: ``model``, ``occupancy``, the splits and ``n_samples``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["TrainedField"]


class TrainedField:
    """A finished training run's field with its train and test splits (CPU).

    Args:
        checkpoint: path of ``checkpoint.pt``.
        scene: the scene to load (``nerf.data.load_scene``); default the checkpoint's own.
        command: the command that makes or finishes the checkpoint, quoted in the errors.

    Attributes:
        model (``InstantNGP``), occupancy (``OccupancyGrid``), checkpoint (Path), scene (str),
        settings (the training preset as a dict: ``n_samples``, ``downscale``, ``test_every``, ...),
        train_data, test_data (``nerf.data`` splits).

    Raises:
        FileNotFoundError: no checkpoint, or a checkpoint of an unfinished training (iteration named).
        nerf.train.CheckpointError: an unreadable checkpoint. nerf.data.DataError: a bad scene.
    """

    def __init__(self, checkpoint: str | Path, scene: str | None = None, *, command: str | None = None):
        from nerf.train import model_from_checkpoint

        path = Path(checkpoint)
        how = f"run `{command}`" if command else "train it"
        if not path.is_file():
            raise FileNotFoundError(f"no trained checkpoint {path}: {how} first")
        self.model, self.occupancy, ckpt = model_from_checkpoint(path)
        if ckpt["step"] < ckpt["preset"]["iterations"]:
            finish = f"finish it with `{command}`" if command else "finish its training"
            raise FileNotFoundError(f"{path} stopped at iteration {ckpt['step']} of {ckpt['preset']['iterations']}: "
                                    f"{finish}")
        self.checkpoint = path
        self.scene = ckpt.get("scene") if scene is None else scene
        self.settings = ckpt["preset"]
        self.train_data = self.split("train")
        self.test_data = self.split("test")

    @property
    def levels(self) -> int:
        """Hash-grid levels L of the model."""
        return self.model.arch["levels"]

    @property
    def n_samples(self) -> int:
        """Samples per ray the field was trained with (its renders use the same)."""
        return self.settings["n_samples"]

    def split(self, name: str):
        """The ``train`` / ``val`` / ``test`` split of the scene at the checkpoint's downscale."""
        from nerf.data import load_scene

        return load_scene(self.scene, name, downscale=self.settings["downscale"])

    def test_metrics(self, *, out_dir: Path | None = None, progress: bool = True) -> dict:
        """``nerf.render.evaluate`` on the test split at training's stride (``nerf.train.test_stride``)."""
        from nerf.render import evaluate
        from nerf.train import test_stride

        every = test_stride(self.settings["test_every"], len(self.test_data.images))
        return evaluate(self.model, self.occupancy, self.test_data, n_samples=self.n_samples, every=every,
                        out_dir=out_dir, progress=progress)
