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

    The glue of ``hw.top.rtl`` adds three FIFOs (``count_fifo_depth``, ``ray_fifo_depth``,
    ``sigma_fifo_depth``, each justified below); ``check_top`` checks that the units fit together.

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

    #: Entries of the top's ray FIFO (``hw.top.rtl``): ray headers (q, count) waiting for the compositor,
    #: whose own header queue holds 2. A ray passes the splitter (into the SH unit, the count FIFO and this
    #: FIFO together) only when all three have room, so the rays that are past the SH pairing but not yet
    #: started by the compositor must fit here (plus the compositor's 2), or the SH codes of the next ray
    #: wait. Between the pairing and the compositor are at most 8 samples (the colour engine's input
    #: register and 3 vectors in flight, the colour activation's 4), so 16 leave room for 8 rays without
    #: samples among them: the sample path never waits for it unless a frame has long runs of empty rays.
    RAY_FIFO_DEPTH = 16

    @property
    def count_fifo_depth(self) -> int:
        """Entries of the top's count FIFO (each ray's sample count, for the SH pairing): ``sh.fifo_depth``.
        The SH unit holds at most that many rays (its credits) and each has its count here, so the count
        FIFO is never the branch of the ray splitter that waits."""
        return self.sh.fifo_depth

    @property
    def sigma_fifo_depth(self) -> int:
        """Entries of the top's sigma FIFO (density codes waiting for the colour of the same sample):
        ``2 + mlp.OUT_FIFO_DEPTH + color_act.OUT_FIFO_DEPTH`` = 9. Past the density fork, a sample's colour
        is in the colour engine (its input register and ``OUT_FIFO_DEPTH`` vectors in flight) or in the
        colour activation (``OUT_FIFO_DEPTH`` credits), and the density fork's sigma branch may run one
        sample ahead: at most that many sigmas wait, so the FIFO never fills and the sigma branch never
        holds the density engine's output."""
        return 2 + self.mlp.OUT_FIFO_DEPTH + self.color_act.OUT_FIFO_DEPTH

    @property
    def ray_fifo_depth(self) -> int:
        """Entries of the top's ray FIFO, ``RAY_FIFO_DEPTH``."""
        return self.RAY_FIFO_DEPTH

    def check_top(self, geo_features: int) -> None:
        """Check that the units fit together as the top connects them, for G = ``geo_features`` geometry
        features (the density engine's outputs 1..G, the colour engine's inputs 0..G-1 before 16 SH codes).

        Raises:
            ValueError: naming the fields and values that do not fit.
        """
        e, r, mlp = self.encoder, self.requant, self.mlp
        g = geo_features
        need = [
            (isinstance(g, int) and not isinstance(g, bool) and g >= 1,
             f"geo_features must be an integer >= 1, not {g!r}"),
            (r.lanes == e.levels * e.features,
             f"requant.lanes ({r.lanes}) must equal encoder.levels * encoder.features ({e.levels * e.features})"),
            (r.in_bits >= e.out_bits,
             f"requant.in_bits ({r.in_bits}) must hold the encoder's outputs ({e.out_bits} bits)"),
            (mlp.max_in >= r.lanes, f"mlp.max_in ({mlp.max_in}) must hold the requant's {r.lanes} lanes"),
        ]
        if need[0][0]:
            need += [
                (mlp.max_out >= 1 + g, f"mlp.max_out ({mlp.max_out}) must hold the density logit and {g} geometry "
                                       "features"),
                (mlp.max_in >= g + 16, f"mlp.max_in ({mlp.max_in}) must hold {g} geometry features and 16 SH codes"),
            ]
        need += [
            (mlp.max_out >= 3, f"mlp.max_out ({mlp.max_out}) must hold the 3 colour logits"),
            (self.density_act.lanes == 1, f"density_act.lanes must be 1, not {self.density_act.lanes}"),
            (self.color_act.lanes == 3, f"color_act.lanes must be 3, not {self.color_act.lanes}"),
            (self.density_act.out_bits <= self.compositor.sigma_bits,
             f"density_act.out_bits ({self.density_act.out_bits}) must fit compositor.sigma_bits "
             f"({self.compositor.sigma_bits})"),
            (self.color_act.out_bits <= self.compositor.color_bits,
             f"color_act.out_bits ({self.color_act.out_bits}) must fit compositor.color_bits "
             f"({self.compositor.color_bits})"),
        ]
        bad = [msg for ok, msg in need if not ok]
        if bad:
            raise ValueError("the top's units do not fit together: " + "; ".join(bad))

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
