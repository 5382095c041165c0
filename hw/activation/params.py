"""Parameters of the activation unit (a table lookup per lane): frozen, validated, YAML round-trip.
Imports nothing heavy (no Amaranth): ``sim.tlm.activation`` uses it without an HDL toolchain.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from common.validate import range_message, spec
from hw.config import ConfigError, ParamsMixin

__all__ = ["ActivationParams", "ActivationConfig", "verilog_header", "verilog_bytes"]


@spec(ConfigError)
class ActivationParams(ParamsMixin):
    """Parameters of the activation unit (``hw.activation.ActivationUnit``): ``lanes`` signed codes in,
    as many unsigned codes out, each through one table of ``2^index_bits`` entries.

    The density activation (truncated exp) and the colour sigmoid act on codes of the MLP engines'
    quantized outputs, so a table indexed by the input code gives exactly the fake-quantized
    activation (quantize the activated value of each input code). An input of B bits wider than
    ``index_bits`` indexes the table by its top ``index_bits`` bits (``sim.tlm.activation``: piecewise
    constant, the entry of each bucket being the activation at its middle code).

    Fields:
        lanes: codes per input transfer, in [1, 4] (density: 1, colour: 3).
        in_bits: widest run-time input code (signed two's complement, bits), in [2, 16].
        out_bits: width of a table entry (unsigned, bits), in [2, 16].
        index_bits: A, table address width (2^A entries), in [2, 14].

    Raises:
        ConfigError: naming the field, the allowed range and the value.
    """

    lanes: Annotated[int, Field(ge=1, le=4)] = 1
    in_bits: Annotated[int, Field(ge=2, le=16)] = 16
    out_bits: Annotated[int, Field(ge=2, le=16)] = 16
    index_bits: Annotated[int, Field(ge=2, le=14)] = 10

    #: Config-file section, Verilog top module and file stem.
    SECTION = "activation"
    #: Cycles from an input transfer to the earliest output transfer of the same vector: the index
    #: register, the table read (non-transparent read port: data one cycle after the address) and
    #: the output FIFO (an entry pushed in cycle t is visible from t + 1). See ``hw.activation.rtl``.
    LATENCY = 3
    #: Output FIFO entries, also the input credits (vectors accepted whose output has not transferred).
    #: LATENCY + 1 keeps II = 1 at full rate: the credit of vector k - 4 is back by the cycle of vector k.
    OUT_FIFO_DEPTH = 4

    @property
    def depth(self) -> int:
        """Table entries, ``2^index_bits``."""
        return 1 << self.index_bits

    @property
    def shift_max(self) -> int:
        """Largest index shift ``max(0, B - index_bits)`` over the run-time widths B <= in_bits."""
        return max(0, self.in_bits - self.index_bits)

    @property
    def config_fields(self) -> tuple[tuple[str, int], ...]:
        """The configuration word, ``(name, bits)`` from bit 0 up (``ActivationConfig``): ``bits``, B."""
        return (("bits", self.in_bits.bit_length()),)

    def used_entries(self, bits: int) -> int:
        """Table entries a run-time width B can index: ``2^min(B, index_bits)``."""
        return 1 << min(bits, self.index_bits)

    def check_config(self, cfg: Any) -> "ActivationConfig":
        """Validate a run-time configuration: B in [2, in_bits].

        Returns:
            ``cfg``.

        Raises:
            ConfigError: not an ``ActivationConfig``, or B out of range (naming the field and the value).
        """
        if not isinstance(cfg, ActivationConfig):
            raise ConfigError(f"cfg must be an ActivationConfig, not {cfg!r}")
        if not 2 <= cfg.bits <= self.in_bits:
            raise ConfigError(range_message(type(cfg).__name__, "bits", cfg.bits, 2, self.in_bits))
        return cfg


@spec(ConfigError)
class ActivationConfig(ParamsMixin):
    """Run-time setting of the activation unit (written through its ``cfg`` port while idle).

    Fields:
        bits: B, the width of the input codes (signed two's complement, sign-extended to ``in_bits``
            in the payload), in [2, in_bits] (checked by ``ActivationParams.check_config``).
    """

    SECTION = "cfg"

    bits: Annotated[int, Field(ge=0)]


def verilog_header(params: ActivationParams) -> str:
    p = params
    return (f"// {p.lanes} lane(s) per cycle; table {p.depth} x {p.out_bits} bits; input signed {p.in_bits} bits; "
            f"II 1, latency {p.LATENCY} cycles, output FIFO {p.OUT_FIFO_DEPTH}\n")


def verilog_bytes(params: ActivationParams) -> int:
    """Estimated size of ``activation.v`` in bytes (a rough figure for the export's size check): the
    control and output FIFO, a read port per lane, and one initializer line per table entry. Calibrated
    against generated files: within 0.9x to 1.1x."""
    return 9_000 + 400 * params.lanes + params.depth * (24 + params.out_bits // 4)
