"""Parameters of the compositing unit: frozen, validated, YAML round-trip. Imports nothing heavy (no
Amaranth): ``sim.tlm.compositor`` uses it without an HDL toolchain.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from common.validate import spec
from hw.config import ConfigError, ParamsMixin

__all__ = ["CompositorParams", "verilog_header", "verilog_bytes"]


@spec(ConfigError)
class CompositorParams(ParamsMixin):
    """Parameters of the compositing unit (``hw.compositor.Compositor``): the samples of a ray in (density
    code, colour codes), one pixel out per ray.

    Volume rendering (Mildenhall et al. 2020, eq. 3) with transmittance from the accumulated optical
    depth (``sim.tlm.compositor`` has the exact arithmetic):

    * a ray's header gives q, the optical depth of one density code over one step (sigma step x
      delta), unsigned with ``depth_frac`` fractional bits;
    * D, the optical depth before a sample, accumulates ``sigma_code * q`` exactly, saturating at
      ``2^depth_bits - 1``;
    * the transmittance T(D) = exp(-D) has ``trans_bits`` fractional bits: ``2^-(D log2 e)`` from a
      table of ``2^exp_index_bits`` fractional powers of two and a right shift;
    * a sample's weight is ``T(D_i) - T(D_i+1)``, so the weights sum to ``1 - T`` exactly, and the
      colour sums are ``sum_i w_i c_i``;
    * early ray termination: once D reaches the run-time depth limit (where T falls to the software
      renderer's ``t_min``) the ray's remaining samples add nothing;
    * the pixel: ``clamp(round_shift(A * M_c + (2^Ft - T) * M_l + T * M_b, S), pixel_bits)`` per channel,
      which applies the colour step, the colour offset and the background.

    Fields:
        sigma_bits: widest density code (unsigned, bits), in [2, 16].
        color_bits: widest colour code (unsigned, bits), in [2, 16].
        trans_bits: Ft, fractional bits of T and of the weights, in [8, 20].
        depth_frac: fractional bits of q and D, in [8, 32].
        q_bits: width of q (unsigned, bits), in [8, 40].
        exp_index_bits: G, fractional bits of the exponent, table of 2^G entries, in [4, 14].
        l2e_bits: fractional bits of the constant log2(e), in [8, 24].
        pixel_bits: P, width of an output channel (unsigned), in [8, 16].
        pix_mult_bits: width of the signed pixel multipliers M_c, M_l, M_b, in [8, 24].
        count_bits: width of a ray's sample count (a ray has at most 2^count_bits - 1 samples), in [1, 16].

    Raises:
        ConfigError: naming the field, the allowed range and the value.
    """

    sigma_bits: Annotated[int, Field(ge=2, le=16)] = 16
    color_bits: Annotated[int, Field(ge=2, le=16)] = 16
    trans_bits: Annotated[int, Field(ge=8, le=20)] = 16
    depth_frac: Annotated[int, Field(ge=8, le=32)] = 24
    q_bits: Annotated[int, Field(ge=8, le=40)] = 32
    exp_index_bits: Annotated[int, Field(ge=4, le=14)] = 10
    l2e_bits: Annotated[int, Field(ge=8, le=24)] = 20
    pixel_bits: Annotated[int, Field(ge=8, le=16)] = 8
    pix_mult_bits: Annotated[int, Field(ge=8, le=24)] = 24
    count_bits: Annotated[int, Field(ge=1, le=16)] = 12

    #: Config-file section, Verilog top module and file stem.
    SECTION = "compositor"

    @property
    def depth_bits(self) -> int:
        """Width of D: ``depth_frac`` plus enough integer bits that T is 0 at saturation
        (``exp(-2^int) < 2^-(Ft+1)``)."""
        need = (self.trans_bits + 1) * math.log(2)
        return self.depth_frac + max(1, math.ceil(math.log2(need)) + 1)

    @property
    def l2e(self) -> int:
        """log2(e) with ``l2e_bits`` fractional bits (round to nearest)."""
        return round(math.log2(math.e) * (1 << self.l2e_bits))

    @property
    def acc_bits(self) -> int:
        """Width of a colour sum, ``trans_bits + 1 + color_bits`` (unsigned: the weights sum to at most 1)."""
        return self.trans_bits + 1 + self.color_bits

    @property
    def pixel_shift_max(self) -> int:
        """Largest pixel shift S, ``acc_bits + pix_mult_bits``."""
        return self.acc_bits + self.pix_mult_bits


def verilog_header(params: CompositorParams) -> str:
    p = params
    return (f"// one sample per cycle; T with {p.trans_bits} fractional bits, exp table {1 << p.exp_index_bits} "
            f"entries; pixel 3 x {p.pixel_bits} bits\n")


def verilog_bytes(params: CompositorParams) -> int:
    """Estimated size of ``compositor.v`` in bytes (a rough figure for the export's size check)."""
    return 40_000
