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
    #: Pipeline stages after the input register (``hw.sh_unit.rtl``): 1 squares and cross products,
    #: 2 the third-order monomials, 3 the 16 constant multiplies plus offsets, 4 round, clamp and
    #: write into the output FIFO.
    PIPELINE_STAGES = 4
    #: Largest |m_k| / 2^Q of each monomial for direction codes anywhere in the signed dir_bits range
    #: (-2^Q included; reached there, e.g. m_11 = r(y, 2^Q - 5 zz) = 4 * 2^Q at y = -2^Q, |z| = 2^Q);
    #: 0 marks the plain components y, z, x (monomials 1-3), which keep dir_bits bits.
    MONOMIAL_BOUNDS = (1, 0, 0, 0, 1, 1, 1, 1, 1, 2, 1, 4, 2, 4, 1, 2)

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

    @property
    def monomial_widths(self) -> tuple[int, ...]:
        """Signed width (bits) of each monomial register m_0 .. m_15 (``MONOMIAL_BOUNDS``): dir_bits for the
        components, else the narrowest that holds +-bound * 2^Q (Q + 2, Q + 3 or Q + 4 = monomial_bits).

        The bounds are checked exhaustively at dir_bits 4..6 (``tests/test_tlm_sh_unit.py``); the widths
        also follow from the factors' ranges alone: a component and a square are within +-2^Q, and the
        linear combinations of monomials 9, 12 and 15 within +-3 * 2^Q, 11 and 13 within +-4 * 2^Q."""
        return tuple(self.dir_bits if b == 0 else (b << self.frac_bits).bit_length() + 1 for b in self.MONOMIAL_BOUNDS)

    @property
    def latency(self) -> int:
        """Cycles from a direction's input transfer to the earliest transfer of its output: the input
        register, ``PIPELINE_STAGES`` (the last writes the output FIFO) and the FIFO's output, 5."""
        return self.PIPELINE_STAGES + 1

    @property
    def fifo_depth(self) -> int:
        """Output FIFO entries, also the input credits (a direction holds one from its input transfer to its
        output transfer): ``latency + 1`` = 6 keeps II = 1 with the output always ready."""
        return self.latency + 1

    @property
    def config_fields(self) -> tuple[tuple[str, int], ...]:
        """The ``cfg`` word, ``(name, bits)`` from bit 0 up: ``out_bits`` (2 .. max_out_bits) and ``shift``
        (S, 0 .. shift_max). The one definition of the layout (``hw.common.config_layout``)."""
        return (("out_bits", self.max_out_bits.bit_length()), ("shift", self.shift_max.bit_length()))


def verilog_header(params: ShUnitParams) -> str:
    """The comment lines after the parameter line of ``sh_unit.v``: timing and widths."""
    p = params
    return (f"// one direction per cycle (II = 1), latency {p.latency} cycles; 16 x signed out codes of "
            f"{p.max_out_bits} bits; direction {p.dir_bits} bits (Q{p.frac_bits}), "
            f"multipliers {p.mult_bits} bits, offsets {p.offset_bits} bits, shift 0..{p.shift_max}\n")


def verilog_bytes(params: ShUnitParams) -> int:
    """Estimated size of ``sh_unit.v`` in bytes: 16 coefficients' datapaths whatever the widths; calibrated
    on dir_bits 4..20 and mult_bits 2..24 (56 to 62 kB, within 0.9x to 1.1x)."""
    return 50_000 + 300 * (params.dir_bits + params.mult_bits)
