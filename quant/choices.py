"""The names of the quantizers' options, torch-free so that the CLI can list them while parsing.

``CALIBRATIONS`` (``quant.calibration``: how a step is calibrated), ``PLACEMENTS`` (``quant.hadamard``:
where DHQ's rotation is applied) and ``QUANTIZERS`` (the radiance field's MLP quantizers,
``quant.dhq_field``).
"""

from __future__ import annotations

__all__ = ["CALIBRATIONS", "DEFAULT_PERCENTILE", "PLACEMENTS", "QUANTIZERS", "check_calibration", "check_percentile",
           "check_placement", "check_quantizer"]

CALIBRATIONS = ("min-max", "mse", "percentile")
DEFAULT_PERCENTILE = 99.9
#: Where DHQ's rotation is applied (``quant.hadamard`` module doc).
PLACEMENTS = ("all", "paper", "rule")
#: The MLP quantizers of ``make quantize`` / ``make search`` (``quant.dhq_field``).
QUANTIZERS = ("uniform", "dhq")


def _check_name(name, choices, what: str) -> str:
    if not isinstance(name, str) or name not in choices:
        raise ValueError(f"unknown {what} {name!r} (choices: {', '.join(choices)})")
    return name


def check_calibration(name, what: str = "calibration") -> str:
    """``name`` if it is one of ``CALIBRATIONS``; else ValueError naming ``what`` and the value."""
    return _check_name(name, CALIBRATIONS, what)


def check_placement(name, what: str = "placement") -> str:
    """``name`` if it is one of ``PLACEMENTS``; else ValueError naming ``what`` and the value."""
    return _check_name(name, PLACEMENTS, what)


def check_quantizer(name, what: str = "quantizer") -> str:
    """``name`` if it is one of ``QUANTIZERS``; else ValueError naming ``what`` and the value."""
    return _check_name(name, QUANTIZERS, what)


def check_percentile(p, what: str = "percentile") -> float:
    """``p`` as a float if it is a number in (50, 100]; else ValueError naming ``what`` and the value."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 50 < p <= 100:
        raise ValueError(f"{what} must be a number in (50, 100], not {p!r}")
    return float(p)
