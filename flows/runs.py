"""Where the flows keep their runs: ``runs/<flow>-<name>/`` folder names shared by the flows."""

from __future__ import annotations

from pathlib import Path

__all__ = ["scene_name", "train_dir", "train_command", "open_field"]


def scene_name(scene: str) -> str:
    """'builtin', or the scene folder's name."""
    return "builtin" if scene == "builtin" else Path(scene).resolve().name


def train_dir(scene: str, preset: str, runs_root="runs") -> Path:
    """The folder ``make train SCENE=<scene> PRESET=<preset>`` writes."""
    return Path(runs_root) / f"train-{scene_name(scene)}-{preset}"


def train_command(scene: str, preset: str) -> str:
    """The command that trains (or finishes training) that folder's checkpoint."""
    return f"make train SCENE={scene} PRESET={preset}"


def open_field(scene: str, preset: str, runs_root="runs"):
    """The finished ``nerf.field.TrainedField`` of ``train_dir(scene, preset, runs_root)``.

    Raises:
        FileNotFoundError: no checkpoint or an unfinished one (the message gives the ``make train`` command).
    """
    from nerf.field import TrainedField

    return TrainedField(train_dir(scene, preset, runs_root) / "checkpoint.pt", scene,
                        command=train_command(scene, preset))
