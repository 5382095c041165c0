"""Parameters of the vector requantizer: frozen, validated, YAML round-trip. Imports nothing heavy (no
Amaranth): ``sim.tlm.requant`` uses it without an HDL toolchain.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from common.validate import range_message, spec
from hw.config import ConfigError, ParamsMixin

__all__ = ["RequantParams", "RequantConfig", "verilog_header", "verilog_bytes"]


@spec(ConfigError)
class RequantParams(ParamsMixin):
    """Parameters of the vector requantizer (``hw.requant.Requantizer``): ``lanes`` signed values in,
    each mapped by its own affine dyadic rescale to an unsigned code.

    Arithmetic (``sim.tlm.requant.requant_reference``): element e of a vector u becomes
    ``clamp(round_shift(u_e * M_e + O_e, S), out_bits, unsigned)`` with unsigned multipliers M_e, signed
    offsets O_e (loaded through the ``consts`` write port) and one shift S (run-time). Between the
    hash encoder and the density engine it maps each level's interpolated table codes (per-level
    scale and offset) onto the one grid of ``enc.out`` (Jacob et al. 2018, sec. 2.2, with an offset).

    Fields:
        lanes: n, elements per vector, in [1, 64].
        in_bits: width of an input element (signed two's complement), in [2, 40].
        max_out_bits: widest run-time output code (unsigned, bits), in [2, 16].
        mult_bits: width of the unsigned multipliers M_e, in [1, 20].
        offset_bits: width of the signed offsets O_e, in [2, 48].

    Raises:
        ConfigError: naming the field, the allowed range and the value.
    """

    lanes: Annotated[int, Field(ge=1, le=64)] = 32
    in_bits: Annotated[int, Field(ge=2, le=40)] = 32
    max_out_bits: Annotated[int, Field(ge=2, le=16)] = 16
    mult_bits: Annotated[int, Field(ge=1, le=20)] = 16
    offset_bits: Annotated[int, Field(ge=2, le=48)] = 48

    #: Config-file section, Verilog top module and file stem.
    SECTION = "requant"
    #: Cycles from an input transfer to the earliest output transfer of the same vector: the input
    #: register, the product u * M, the sum u * M + O + 2^(S-1), then the shift and clamp written into
    #: the output FIFO (visible the cycle after). See ``hw.requant.rtl``.
    LATENCY = 4
    #: Output FIFO entries, also the input credits; LATENCY + 1 keeps II = 1 at full rate.
    OUT_FIFO_DEPTH = 5

    @property
    def prod_bits(self) -> int:
        """Signed width of ``u * M``: ``in_bits + mult_bits`` (at most 60)."""
        return self.in_bits + self.mult_bits

    @property
    def shift_max(self) -> int:
        """Largest shift S, ``max(prod_bits, offset_bits)``."""
        return max(self.prod_bits, self.offset_bits)

    @property
    def sum_bits(self) -> int:
        """Signed width of ``u * M + O + 2^(S-1)``, ``shift_max + 2``: each of the three terms has a
        magnitude of at most ``2^(shift_max - 1)``, so the sum's is at most ``3 * 2^(shift_max - 1)``
        (below 2^62: the int64 reference is exact)."""
        return self.shift_max + 2

    @property
    def config_fields(self) -> tuple[tuple[str, int], ...]:
        """The configuration word, ``(name, bits)`` from bit 0 up (``RequantConfig``)."""
        return (("shift", self.shift_max.bit_length()), ("out_bits", self.max_out_bits.bit_length()))

    def check_config(self, cfg: Any) -> "RequantConfig":
        """Validate a run-time configuration: shift in [0, shift_max], out_bits in [2, max_out_bits].

        Returns:
            ``cfg``.

        Raises:
            ConfigError: not a ``RequantConfig``, or a field out of range, naming the field and the value.
        """
        if not isinstance(cfg, RequantConfig):
            raise ConfigError(f"cfg must be a RequantConfig, not {cfg!r}")
        owner = type(cfg).__name__
        if not 0 <= cfg.shift <= self.shift_max:
            raise ConfigError(range_message(owner, "shift", cfg.shift, 0, self.shift_max))
        if not 2 <= cfg.out_bits <= self.max_out_bits:
            raise ConfigError(range_message(owner, "out_bits", cfg.out_bits, 2, self.max_out_bits))
        return cfg


@spec(ConfigError)
class RequantConfig(ParamsMixin):
    """Run-time settings of the requantizer (written through its ``cfg`` port while idle).

    Fields:
        shift: S, the rounding right shift, in [0, shift_max].
        out_bits: width of the output codes (unsigned), in [2, max_out_bits]; the payload fields are
            ``max_out_bits`` wide, the bits above ``out_bits`` zero.

    Types are checked here; ranges against the unit by ``RequantParams.check_config``.
    """

    SECTION = "cfg"

    shift: Annotated[int, Field(ge=0)]
    out_bits: Annotated[int, Field(ge=0)]


def verilog_header(params: RequantParams) -> str:
    p = params
    return (f"// one vector per cycle; {p.lanes} x signed {p.in_bits} bits in, unsigned <= {p.max_out_bits} bits out; "
            f"latency {p.LATENCY} cycles, output FIFO {p.OUT_FIFO_DEPTH}; u * M {p.prod_bits} bits, "
            f"sum {p.sum_bits} bits, shift <= {p.shift_max}\n")


def verilog_bytes(params: RequantParams) -> int:
    """Estimated size of ``requant.v`` in bytes (a rough figure for the export's size check). Calibrated
    against generated files: within 1.0x to 1.1x."""
    return 8_000 + 2_000 * params.lanes
