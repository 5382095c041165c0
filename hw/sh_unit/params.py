"""Parameters of the spherical-harmonics unit: frozen, validated, YAML round-trip. Imports nothing heavy
(no Amaranth): ``sim.tlm.sh_unit`` uses it without an HDL toolchain.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from common.validate import spec
from hw.config import ConfigError, ParamsMixin

__all__ = ["ShUnitParams", "verilog_header", "verilog_bytes", "SH_COEFFICIENTS"]

#: Real SH basis up to degree 4 (16 coefficients), the order of ``nerf.sh.sh_encode``.
SH_COEFFICIENTS = 16


@spec(ConfigError)
class ShUnitParams(ParamsMixin):
    """Parameters of the SH unit (``hw.sh_unit.ShUnit``): one unit view direction in, its degree-4 real
    spherical-harmonics encoding out, requantized to the colour engine's input grid.

    Arithmetic (``sim.tlm.sh_unit.sh_reference``; basis of ``nerf.sh``, Sloan 2008 appendix A2): the
    direction is three signed ``dir_bits`` codes with Q = dir_bits - 1 fractional bits; the 16
    monomials of the basis are formed with products rounded back to Q fractional bits; coefficient
    k is ``clamp(round_shift(m_k * M_k + O_k, S), out_bits, signed)`` with signed per-coefficient
    multipliers M_k (the basis constant over the output step) and offsets O_k (the basis's constant
    term and the output grid's offset), both loaded through the ``consts`` write port.

    Fields:
        dir_bits: D, width of one direction component (signed, Q = D - 1 fractional bits), in [4, 20].
        max_out_bits: widest run-time output code (signed two's complement, bits), in [2, 16].
        mult_bits: width of the signed multipliers M_k (bits), in [2, 24].
        offset_bits: width of the signed offsets O_k (bits), in [2, 48].

    Raises:
        ConfigError: naming the field, the allowed range and the value.
    """

    dir_bits: Annotated[int, Field(ge=4, le=20)] = 16
    max_out_bits: Annotated[int, Field(ge=2, le=16)] = 16
    mult_bits: Annotated[int, Field(ge=2, le=24)] = 18
    offset_bits: Annotated[int, Field(ge=2, le=48)] = 40

    #: Config-file section, Verilog top module and file stem.
    SECTION = "sh_unit"

    @property
    def frac_bits(self) -> int:
        """Q = dir_bits - 1: fractional bits of the direction and of every monomial."""
        return self.dir_bits - 1

    @property
    def monomial_bits(self) -> int:
        """Signed width of a monomial, Q + 4: every monomial of components in (-1, 1) is below 4 in magnitude
        (the largest, y (1 - 5 z^2), below 4; products are rounded back to Q fractional bits)."""
        return self.frac_bits + 4

    @property
    def shift_max(self) -> int:
        """Largest output shift S, ``max(monomial_bits + mult_bits, offset_bits)``."""
        return max(self.monomial_bits + self.mult_bits, self.offset_bits)


def verilog_header(params: ShUnitParams) -> str:
    p = params
    return (f"// one direction per cycle; 16 x signed out codes; direction {p.dir_bits} bits (Q{p.frac_bits}), "
            f"multipliers {p.mult_bits} bits, offsets {p.offset_bits} bits\n")


def verilog_bytes(params: ShUnitParams) -> int:
    """Estimated size of ``sh_unit.v`` in bytes (a rough figure for the export's size check)."""
    return 30_000 + 600 * (params.dir_bits + params.mult_bits)
