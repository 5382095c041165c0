"""``make kilonerf``: distil a trained Instant-NGP field into KiloNeRF (``nerf.kilo_train``), in
``runs/kilonerf-<scene>-<preset>/`` (resumable)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from flows.runs import scene_name, train_command, train_dir

__all__ = ["kilo_dir", "kilonerf"]


def kilo_dir(scene: str, preset: str, runs_root="runs") -> Path:
    """The folder ``make kilonerf SCENE=<scene> PRESET=<preset>`` writes."""
    return Path(runs_root) / f"kilonerf-{scene_name(scene)}-{preset}"


def kilonerf(scene: str, preset: str, *, kilo: str | None = None, cells: int | None = None,
             distill_iterations: int | None = None, finetune_iterations: int | None = None,
             until: str | None = None, seed: int = 0, runs_root="runs", progress: bool = True) -> dict:
    """Distil the field of ``make train SCENE=<scene> PRESET=<preset>`` into KiloNeRF.

    Args:
        kilo: the ``nerf.kilo_train.KILO_PRESETS`` entry (default: the one named like ``preset``, else tiny).
        cells, distill_iterations, finetune_iterations: override the KiloNeRF preset's ``cells_longest``
            and iteration counts.

    Raises:
        ValueError: an unknown KiloNeRF preset or a bad override (named). FileNotFoundError: no finished
        teacher (the message gives the ``make train`` command).
    """
    from nerf.kilo_train import KILO_PRESETS, distill

    name = kilo or (preset if preset in KILO_PRESETS else "tiny")
    if name not in KILO_PRESETS:
        raise ValueError(f"unknown KiloNeRF preset {name!r} (allowed: {', '.join(KILO_PRESETS)})")
    p = KILO_PRESETS[name]
    overrides = {"cells_longest": cells, "distill_iterations": distill_iterations,
                 "finetune_iterations": finetune_iterations}
    p = dataclasses.replace(p, **{k: v for k, v in overrides.items() if v is not None})
    return distill(train_dir(scene, preset, runs_root) / "checkpoint.pt", p, kilo_dir(scene, preset, runs_root),
                   scene=scene, seed=seed, progress=progress, until=until, command=train_command(scene, preset))
