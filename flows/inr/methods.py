"""The quantization settings of ``make inr``: rotation placement x calibration x weight granularity x training.

A setting is one way to quantize every layer's weight and input activation at B bits:

* rotation: ``none`` (plain uniform), or DHQ's Hadamard rotation placed by ``quant.hadamard.PLACEMENTS``
  (``all``: every weight and input; ``paper``: the first and last layer weights and the last layer's
  input; ``rule``: per tensor, where the rotation lowers the quantization error);
* calibration of the steps (``quant.calibration``): ``min-max``, ``mse`` (MSE-optimal clipping) or
  ``percentile`` (99.9th);
* weight granularity: one step per ``tensor`` or per output ``channel`` (row);
* training: ``ptq`` (the calibrated steps as they are) or ``qat`` (LSQ+ from them, ``finetune_steps``
  Adam steps of weights, biases and steps: the same budget for every setting).

Names: ``uniform`` / ``dhq`` / ``dhq-paper`` / ``dhq-rule`` for the rotation (``lsq+`` and ``dhq+lsq+``
etc. when trained), then ``_mse`` or ``_pct`` for a calibration other than min-max and ``_ch`` for
per-channel weights: ``dhq-paper+lsq+_mse_ch``. The four min-max per-tensor settings keep the names
of the first ``make inr`` table: ``uniform``, ``lsq+``, ``dhq``, ``dhq+lsq+``.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

from quant.choices import CALIBRATIONS, PLACEMENTS

__all__ = ["ROTATIONS", "GRANULARITIES", "TRAINING", "Setting", "LEGACY", "cross", "parse_choices", "setting_of"]

ROTATIONS = ("none", *PLACEMENTS)
GRANULARITIES = ("tensor", "channel")
TRAINING = ("ptq", "qat")
_ROT_NAME = {"none": "uniform", "all": "dhq", "paper": "dhq-paper", "rule": "dhq-rule"}
_CAL_SUFFIX = {"min-max": "", "mse": "_mse", "percentile": "_pct"}
_ROT_LABEL = {"none": "uniform", "all": "DHQ all", "paper": "DHQ paper", "rule": "DHQ rule"}
_CAL_LABEL = {"min-max": "min-max", "mse": "MSE", "percentile": "p99.9"}


@dataclasses.dataclass(frozen=True)
class Setting:
    """One quantization setting (module doc); ``name`` is its key in the results."""

    rotation: str = "none"
    calibration: str = "min-max"
    granularity: str = "tensor"
    training: str = "ptq"

    @property
    def name(self) -> str:
        rot = _ROT_NAME[self.rotation]
        if self.training == "qat":
            rot = "lsq+" if self.rotation == "none" else f"{rot}+lsq+"
        return rot + _CAL_SUFFIX[self.calibration] + ("_ch" if self.granularity == "channel" else "")

    @property
    def label(self) -> str:
        """A column label: ``DHQ paper, MSE, per-channel, LSQ+``."""
        parts = [_ROT_LABEL[self.rotation], _CAL_LABEL[self.calibration]]
        parts += ["per-channel"] if self.granularity == "channel" else []
        parts += ["LSQ+"] if self.training == "qat" else []
        return ", ".join(parts)

    @property
    def rotates(self) -> bool:
        return self.rotation != "none"

    @property
    def per_channel(self) -> bool:
        return self.granularity == "channel"

    @property
    def trained(self) -> bool:
        return self.training == "qat"


#: The four settings of the first ``make inr`` table (min-max, per tensor).
LEGACY = {s.name: s for s in (Setting(), Setting(training="qat"), Setting("all"), Setting("all", training="qat"))}


def parse_choices(text: str | Sequence[str], choices: Sequence[str], what: str) -> tuple[str, ...]:
    """``"a,b"`` (or a sequence) -> distinct names of ``choices``, order kept.

    Raises:
        ValueError: an unknown or repeated name (naming ``what`` and the value), or none.
    """
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    out: list[str] = []
    for item in items:
        if item not in choices:
            raise ValueError(f"unknown {what} {item!r} (choices: {', '.join(choices)})")
        if item in out:
            raise ValueError(f"{what} {item!r} is listed twice")
        out.append(item)
    if not out:
        raise ValueError(f"{what}: give at least one of {', '.join(choices)}")
    return tuple(out)


def cross(rotations=("none", "all"), calibrations=("min-max",), granularities=("tensor",),
          training=TRAINING) -> dict[str, Setting]:
    """Every combination of the given choices (each a ``parse_choices`` input), name -> ``Setting``.

    Raises:
        ValueError: an unknown or repeated choice, naming it (rotation, calibration, granularity, training).
    """
    lists = (parse_choices(rotations, ROTATIONS, "rotation"), parse_choices(calibrations, CALIBRATIONS, "calibration"),
             parse_choices(granularities, GRANULARITIES, "granularity"), parse_choices(training, TRAINING, "training"))
    settings = [Setting(r, c, g, t) for r, c, g, t in itertools.product(*lists)]
    return {s.name: s for s in settings}


def setting_of(name: str) -> Setting:
    """The ``Setting`` of a name (module doc). Raises ValueError for a name no setting has."""
    for s in cross(ROTATIONS, CALIBRATIONS, GRANULARITIES, TRAINING).values():
        if s.name == name:
            return s
    raise ValueError(f"no quantization setting is named {name!r}")
