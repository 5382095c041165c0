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

    Timing (``hw.compositor.rtl`` has the micro-architecture, ``sim.tlm.compositor.CompositorTLM`` the
    cycle model): a pipeline of ``PIPELINE_STAGES`` = 10 registers that never stalls, one token per cycle.

    * Throughput: one sample per cycle, also across rays (the next ray's header waits in a queue of
      ``HEADER_DEPTH`` = 2, so its first sample follows the previous ray's last in the next cycle): per
      ray overhead 0 cycles for a ray with samples, 1 cycle for a ray without samples (its background
      token). At full rate R rays take ``sum_k max(count_k, 1) + PIPELINE_STAGES + 2`` cycles.
    * Latency (``LATENCY`` = 11): from the transfer of a ray's last sample to its pixel's transfer; a ray
      without samples has its pixel ``HEADER_CYCLES + LATENCY`` = 12 cycles after its header; a ray's
      first sample transfers at the earliest ``HEADER_CYCLES`` = 1 cycle after its header.
    * Backpressure: a ray holds a credit from its header to its pixel transfer; ``OUT_FIFO_DEPTH`` = 13
      credits and output-queue entries, enough that an always-ready output never slows a full-rate
      stream (the round trip of a ray without samples is 13 cycles). A stalled output fills the queue,
      then the headers and so the samples wait; nothing inside stalls.

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
    #: Cycles from a token's acceptance (a sample transfer, or the cycle a ray without samples reaches the
    #: head of the header queue) to the push of its ray's pixel into the output queue, when it is the ray's
    #: last token: 1 input register, sigma * q (clipped); 2 the D add/saturate/ERT loop; 3 D * L2E; 4 the
    #: exp2 ROM address; 5 the ROM word shifted and rounded into T; 6 the weight T_prev - T; 7 the three
    #: products w * c; 8 the colour sums; 9 the pixel products; 10 sum, round, clamp and push.
    PIPELINE_STAGES = 10
    #: Ray headers buffered ahead of the samples (a queue): the next ray's header waits there while the
    #: current ray's samples stream, so that its first sample can follow the last one in the next cycle.
    HEADER_DEPTH = 2
    #: Output queue entries, also the rays accepted whose pixel has not transferred yet (a ray holds a
    #: credit from its header transfer to its pixel transfer). ``PIPELINE_STAGES + 3`` covers the round
    #: trip of a ray without samples (header h, token h + 1, push h + 1 + PIPELINE_STAGES, transfer one
    #: cycle later, credit back the cycle after), so the credits never slow a full-rate stream whose
    #: output is always ready, whatever the sample counts.
    OUT_FIFO_DEPTH = PIPELINE_STAGES + 3
    #: Cycles from the transfer of a ray's last sample to the transfer of its pixel (output ready):
    #: the pipeline, then one cycle in the output queue.
    LATENCY = PIPELINE_STAGES + 1
    #: Cycles from a header transfer to its first token (the header queue's register): the first sample
    #: of a ray, or the background token of a ray without samples, transfers at the earliest one cycle
    #: after its header. A ray without samples thus has a pixel ``HEADER_CYCLES + LATENCY`` = 12 cycles
    #: after its header.
    HEADER_CYCLES = 1

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

    @property
    def depth_max(self) -> int:
        """Saturation value of D, ``2^depth_bits - 1``; also the largest depth limit."""
        return (1 << self.depth_bits) - 1

    @property
    def step_bits(self) -> int:
        """Width of a clipped depth step ``min(sigma * q, 2^depth_bits)``: ``depth_bits + 1``."""
        return self.depth_bits + 1

    @property
    def exp_shift(self) -> int:
        """The rounding shift of ``D * L2E`` into the exponent y (``G`` fractional bits):
        ``depth_frac + l2e_bits - exp_index_bits`` (at least 2 for every legal combination)."""
        return self.depth_frac + self.l2e_bits - self.exp_index_bits

    @property
    def exp_bits(self) -> int:
        """Width of the exponent y = round_shift(D * L2E, exp_shift) (unsigned, G fractional bits)."""
        return ((self.depth_max * self.l2e + (1 << (self.exp_shift - 1))) >> self.exp_shift).bit_length()

    @property
    def shift_bits(self) -> int:
        """Width of the run-time pixel shift S (0 .. ``pixel_shift_max``)."""
        return self.pixel_shift_max.bit_length()

    @property
    def pixel_sum_bits(self) -> int:
        """Signed width of ``A * M_c + (2^Ft - T) * M_l + T * M_b`` plus the rounding half: each of the
        three terms has magnitude below ``2^(acc_bits + pix_mult_bits - 1)``, the half at most
        ``2^(pixel_shift_max - 1)``, so ``acc_bits + pix_mult_bits + 2`` bits hold it."""
        return self.acc_bits + self.pix_mult_bits + 2

    def exp2_entries(self) -> tuple[int, ...]:
        """The exp2 ROM, ``EXP2[g] = round(2^Ft * 2^(-g / 2^G))`` for g in [0, 2^G), ``trans_bits + 1``-bit
        unsigned words (EXP2[0] = 2^Ft). The same numbers as ``sim.tlm.compositor.exp2_table`` (tested for
        every (trans_bits, exp_index_bits)); computed here so that the RTL needs no ``sim`` import."""
        g_one = 1 << self.exp_index_bits
        return tuple(round(2.0 ** (self.trans_bits - g / g_one)) for g in range(g_one))

    @property
    def config_fields(self) -> tuple[tuple[str, int], ...]:
        """The ``cfg`` word, ``(name, bits)`` from bit 0 up: the three signed pixel multipliers (two's
        complement), the pixel shift S and the depth limit. The one definition of the layout, used by
        the RTL (``hw.common.config_layout``) and by ``sim.tlm.compositor.constants_word``."""
        return (
            ("mult_color", self.pix_mult_bits),
            ("mult_low", self.pix_mult_bits),
            ("mult_background", self.pix_mult_bits),
            ("shift", self.shift_bits),
            ("depth_limit", self.depth_bits),
        )


def verilog_header(params: CompositorParams) -> str:
    """The comment lines after the parameter line of ``compositor.v``: the timing and the sizes."""
    p = params
    return (f"// one sample per cycle, a ray without samples 1 cycle; latency {p.LATENCY} cycles from a ray's last "
            f"sample to its pixel, {p.HEADER_CYCLES + p.LATENCY} from the header of a ray without samples; "
            f"{p.HEADER_DEPTH} headers queued, {p.OUT_FIFO_DEPTH} rays in flight\n"
            f"// T with {p.trans_bits} fractional bits, exp2 ROM {1 << p.exp_index_bits} x {p.trans_bits + 1} bits; "
            f"D {p.depth_bits} bits ({p.depth_frac} fractional); colour sums {p.acc_bits} bits; "
            f"pixel 3 x {p.pixel_bits} bits\n")


def verilog_bytes(params: CompositorParams) -> int:
    """Estimated size of ``compositor.v`` in bytes: the datapath plus one line per exp2 ROM word.
    Calibrated against the presets (64 and 1024 words: within 5 %)."""
    return 30_000 + 33 * (1 << params.exp_index_bits)
