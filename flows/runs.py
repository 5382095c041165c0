"""Where the flows keep their runs: ``runs/<flow>-<name>/`` folder names shared by the flows."""

from __future__ import annotations

from pathlib import Path

__all__ = ["scene_name", "model_suffix", "train_dir", "train_command", "open_field", "cached_workload"]


def scene_name(scene: str) -> str:
    """'builtin', or the scene folder's name."""
    return "builtin" if scene == "builtin" else Path(scene).resolve().name


def model_suffix(model: str) -> str:
    """What a training run's folder name adds for the model family: nothing for Instant-NGP, ``-tensorf``."""
    return "" if model == "ngp" else f"-{model}"


def train_dir(scene: str, preset: str, runs_root="runs", *, model: str = "ngp") -> Path:
    """The folder ``make train SCENE=<scene> PRESET=<preset> [MODEL=tensorf]`` writes."""
    return Path(runs_root) / f"train-{scene_name(scene)}-{preset}{model_suffix(model)}"


def train_command(scene: str, preset: str, *, model: str = "ngp") -> str:
    """The command that trains (or finishes training) that folder's checkpoint."""
    return f"make train SCENE={scene} PRESET={preset}" + (" MODEL=tensorf" if model == "tensorf" else "")


def open_field(scene: str, preset: str, runs_root="runs"):
    """The finished ``nerf.field.TrainedField`` of ``train_dir(scene, preset, runs_root)``.

    Raises:
        FileNotFoundError: no checkpoint or an unfinished one (the message gives the ``make train`` command).
    """
    from nerf.field import TrainedField

    return TrainedField(train_dir(scene, preset, runs_root) / "checkpoint.pt", scene,
                        command=train_command(scene, preset))


def cached_workload(trained, data, view: int, size: int, path: Path):
    """The samples ``nerf.render.sample_positions`` evaluates for ``data``'s ``view`` rendered at ``size`` x ``size``
    by ``trained`` (a ``nerf.field.TrainedField``): float (N, 3) in [0, 1)^3; read from ``path`` if it is there,
    else rendered and saved atomically (a frame's workload for the memory model)."""
    import numpy as np

    from common.atomic import atomic_write
    from nerf.render import sample_positions

    if path.exists():
        return np.load(path)
    u = sample_positions(trained.model, trained.occupancy, data, [view], n_samples=trained.n_samples, height=size,
                         width=size)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.save would append .npy to a name
            np.save(f, u, allow_pickle=False)

    atomic_write(path, write)
    return u
