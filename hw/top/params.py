"""Parameters of the accelerator top: the generate-time parameters of every unit it connects. Imports
nothing heavy (no Amaranth): the bit-exact reference (``sim.bitexact``) and the integer export
(``quant.int_export``) use it without an HDL toolchain. ``sim.mapping.top_params`` derives them from a
hardware preset, a model and a policy.

The datapath, per sample (rays in, pixels out)::

    point -> hash encoder -> requant (per-level grid -> enc.out) -> density MLP engine -+-> density act -> compositor
                                                                                       | geometry (15)
    direction (per ray) -> SH unit (on density.l1.out's grid) ------------------------ +-> colour MLP engine
                                                                                          -> colour act -> compositor
"""

from __future__ import annotations

from typing import Any

from pydantic import InstanceOf

from common.validate import spec
from hw.activation.params import ActivationParams
from hw.compositor.params import CompositorParams
from hw.config import ConfigError
from hw.hash_encoder.params import HashEncoderParams
from hw.mlp_engine.params import MlpEngineParams
from hw.requant.params import RequantParams
from hw.sh_unit.params import ShUnitParams

__all__ = ["TopParams", "UNITS"]

#: The top's units in data-flow order: field name -> parameter type.
UNITS: dict[str, type] = {
    "encoder": HashEncoderParams,
    "requant": RequantParams,
    "mlp": MlpEngineParams,
    "sh": ShUnitParams,
    "density_act": ActivationParams,
    "color_act": ActivationParams,
    "compositor": CompositorParams,
}


@spec(ConfigError)
class TopParams:
    """The accelerator top's units (``UNITS``); both MLP engines (density, colour) are generated alike.

    Fields:
        preset: the hardware preset's name (``flows/accel/<name>.yaml``).
        encoder: the hash encoder (the arithmetic of ``hw.hash_encoder``; a preset with a memory
            section puts the tables in DRAM, which changes timing, not values).
        requant, mlp, sh, density_act, color_act, compositor: the other units.

    Raises:
        ConfigError: a field of the wrong type.
    """

    preset: str
    encoder: InstanceOf[HashEncoderParams]
    requant: InstanceOf[RequantParams]
    mlp: InstanceOf[MlpEngineParams]
    sh: InstanceOf[ShUnitParams]
    density_act: InstanceOf[ActivationParams]
    color_act: InstanceOf[ActivationParams]
    compositor: InstanceOf[CompositorParams]

    def to_dict(self) -> dict[str, Any]:
        """``{"preset": name, <unit>: params dict, ...}`` (JSON-ready)."""
        return {"preset": self.preset, **{name: getattr(self, name).to_dict() for name in UNITS}}

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "top") -> "TopParams":
        """Inverse of ``to_dict``.

        Raises:
            ConfigError: not a mapping, a missing or unknown unit, a bad field (naming it).
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a mapping of units, not {data!r}")
        extra = set(data) - set(UNITS) - {"preset"}
        missing = [n for n in ("preset", *UNITS) if n not in data]
        if extra or missing:
            raise ConfigError(f"{where}: unknown units {sorted(extra)} / missing {missing} "
                              f"(expected: preset, {', '.join(UNITS)})")
        units = {name: kind.from_dict(data[name], where=f"{where}.{name}") for name, kind in UNITS.items()}
        return cls(preset=data["preset"], **units)
