"""Parameters of the vector requantizer: frozen, validated, YAML round-trip. Imports nothing heavy (no
Amaranth): ``sim.tlm.requant`` uses it without an HDL toolchain.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from common.validate import spec
from hw.config import ConfigError, ParamsMixin

__all__ = ["RequantParams", "verilog_header", "verilog_bytes"]


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

    @property
    def prod_bits(self) -> int:
        """Signed width of ``u * M``: ``in_bits + mult_bits`` (at most 60)."""
        return self.in_bits + self.mult_bits

    @property
    def shift_max(self) -> int:
        """Largest shift S, ``max(prod_bits, offset_bits)``."""
        return max(self.prod_bits, self.offset_bits)


def verilog_header(params: RequantParams) -> str:
    p = params
    return (f"// one vector per cycle; {p.lanes} x signed {p.in_bits} bits in, unsigned <= {p.max_out_bits} bits out\n")


def verilog_bytes(params: RequantParams) -> int:
    """Estimated size of ``requant.v`` in bytes (a rough figure for the export's size check)."""
    return 6_000 + 1_500 * params.lanes
