"""What a ``make inr`` run depends on: its methods, its settings (validated), its bitwidths and its folder."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from pydantic import Field

from common.validate import checker, spec

__all__ = ["METHODS", "ABLATIONS", "LABELS", "DEFAULT_BITS", "MIN_BITS", "MAX_BITS", "Bits", "InrSettings",
           "parse_bits", "run_dir", "check_width"]

#: The quantization methods, in table order: name -> (rotate, fine-tune).
METHODS: dict[str, tuple[bool, bool]] = {"uniform": (False, False), "lsq+": (False, True), "dhq": (True, False),
                                         "dhq+lsq+": (True, True)}
#: Ablations (min-max PTQ, one side quantized, the other at full precision): name -> (rotate, weights, acts).
ABLATIONS: dict[str, tuple[bool, bool, bool]] = {"uniform-w": (False, True, False), "dhq-w": (True, True, False),
                                                 "uniform-a": (False, False, True), "dhq-a": (True, False, True)}
#: Column labels of the tables and figures.
LABELS = {"fp": "FP", "uniform-w": "uniform W only", "dhq-w": "DHQ W only", "uniform-a": "uniform A only",
          "dhq-a": "DHQ A only", "uniform": "uniform PTQ", "lsq+": "LSQ+ QAT", "dhq": "DHQ PTQ",
          "dhq+lsq+": "DHQ + LSQ+ QAT"}
DEFAULT_BITS = (8, 6, 4, 3)
#: The bitwidths the experiment accepts (the Hadamard datapath's range).
MIN_BITS, MAX_BITS = 2, 16
#: One bitwidth B of the experiment.
Bits = Annotated[int, Field(ge=MIN_BITS, le=MAX_BITS)]
_check_bits = checker(Bits)

_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
#: The hidden widths the Hadamard datapath runs (its n): powers of two up to 128.
Width = Annotated[int, Field(ge=2, le=128)]


def check_width(width: int, what: str = "InrSettings.width") -> int:
    """``width`` if it is a power of two in [2, 128] (the Hadamard datapath's sizes); else ValueError naming it."""
    if width & (width - 1):
        raise ValueError(f"{what} must be a power of two (the Hadamard datapath's sizes), not {width}")
    return width


@spec(ValueError)
class InrSettings:
    """Everything a run depends on (validated; keyword-only). Units: pixels, Adam steps, seconds.

    Defaults measured on this project's 2-core CPU: camera at 256 px, width 64, 500 FP steps reach
    about 31.5 dB; ``make inr IMAGE=camera BITS=8,6,4,3`` then takes about 4 minutes.

    Raises:
        ValueError: an unknown image, a field outside its range or of the wrong type (naming the field,
            the range and the value), a width that is not a power of two, an unknown field.
    """

    image: str = "camera"
    size: Annotated[int, Field(ge=8)] = 256  # longer side after anti-aliased downscaling (pixels)
    width: Width = 64
    hidden_layers: Annotated[int, Field(ge=0, le=16)] = 3
    steps: Annotated[int, Field(ge=1)] = 500  # FP full-batch Adam steps
    lr: _Positive = 1e-3  # FP learning rate
    finetune_steps: Annotated[int, Field(ge=0)] = 50  # QAT full-batch Adam steps per (bits, lsq+ method)
    finetune_lr: _Positive = 1e-4  # QAT learning rate of weights and biases
    scale_lr: _Positive = 1e-2  # QAT learning rate of each step, relative to its initial value
    seed: Annotated[int, Field(ge=0)] = 0
    coord_bits: Annotated[int, Field(ge=2, le=32)] = 16  # the first layer's input (pixel coordinates), whatever B is

    _FP_FIELDS = ("image", "size", "width", "hidden_layers", "steps", "lr", "seed")

    def __post_init__(self) -> None:
        from nerf.siren import IMAGES

        if self.image not in IMAGES:
            raise ValueError(f"unknown image {self.image!r} (choices: {', '.join(sorted(IMAGES))})")
        check_width(self.width)

    def fp_key(self) -> dict:
        """The settings the FP checkpoint depends on."""
        return {k: getattr(self, k) for k in self._FP_FIELDS}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_bits(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"8,6,4,3"`` (or a sequence of ints) -> ``(8, 6, 4, 3)``: distinct ints in [2, 16], order kept.

    Raises:
        ValueError: an entry that is not an integer, outside [2, 16], or repeated (naming it), or none.
    """
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    bits: list[int] = []
    for item in items:
        if isinstance(item, str):
            try:
                item = int(item)
            except ValueError:
                raise ValueError(f"bits must be comma-separated integers in [{MIN_BITS}, {MAX_BITS}], "
                                 f"not {item!r} (in {text!r})") from None
        value = _check_bits(item, "bits")
        if value in bits:
            raise ValueError(f"bits {value} is listed twice")
        bits.append(value)
    if not bits:
        raise ValueError("bits: give at least one bitwidth")
    return tuple(bits)


def run_dir(image: str, runs_root="runs") -> Path:
    """``runs/inr-<image>``."""
    return Path(runs_root) / f"inr-{image}"
