"""Parameters of the activation unit (a table lookup per lane): frozen, validated, YAML round-trip.
Imports nothing heavy (no Amaranth): ``sim.tlm.activation`` uses it without an HDL toolchain.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from common.validate import spec
from hw.config import ConfigError, ParamsMixin

__all__ = ["ActivationParams", "verilog_header", "verilog_bytes"]


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

    @property
    def depth(self) -> int:
        """Table entries, ``2^index_bits``."""
        return 1 << self.index_bits


def verilog_header(params: ActivationParams) -> str:
    p = params
    return (f"// {p.lanes} lane(s) per cycle; table {p.depth} x {p.out_bits} bits; input signed {p.in_bits} bits\n")


def verilog_bytes(params: ActivationParams) -> int:
    """Estimated size of ``activation.v`` in bytes (a rough figure for the export's size check)."""
    return 8_000 + 3_000 * params.lanes
