"""Parameters of the full-precision fixed-point matrix-vector engine and its run-time setting: frozen,
validated, YAML round-trip. Imports nothing heavy (no Amaranth): ``sim.tlm.fixed_mv`` uses it without an
HDL toolchain.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from common.validate import range_message, spec
from hw.config import ConfigError, ParamsMixin

__all__ = ["FixedMvParams", "FixedMvConfig", "verilog_header", "verilog_bytes"]


def _ceil_log2(n: int) -> int:
    return (n - 1).bit_length()


@spec(ConfigError)
class FixedMvParams(ParamsMixin):
    """Parameters of the bit-parallel fixed-point matrix-vector engine (``hw.fixed_mv.FixedMatVec``): one
    full-precision linear layer, the baseline the DHQ Hadamard datapath (``hw.hadamard``) is measured against.

    The engine computes, per input vector x of n signed ``data_bits`` integers (``sim.tlm.fixed_mv`` has the
    exact semantics): ``acc = x @ W.T + bias`` (exact, ``acc_bits`` wide),
    ``y = clamp(rne(acc, S_o), -2^(out_bits-1), 2^(out_bits-1) - 1)``, S_o a run-time setting
    (``FixedMvConfig``). No transform, no requantization, no multiplier on the output: the fixed-point
    format of W, x and y is the layer's, and S_o moves the accumulator's binary point to the output's.

    "Full precision" here is fixed point at 16 or 32 bits (the presets ``fmv-inr16`` / ``fmv-inr32``).
    Floating point is not built: a float32 datapath needs a floating-point multiplier and adder per cell
    (exponent logic, alignment and normalisation shifters, rounding), which Amaranth has no library for
    and Yosys does not infer onto DSP48s; a hand-written one would measure our FPU rather than the layer.
    32-bit fixed point is the integer datapath of the same operand width (the usual FPGA stand-in for
    float32; a float32 multiply is a 24 x 24 mantissa product plus that logic), 16-bit fixed point the
    common "full-precision" FPGA baseline; the comparison is against those two, not against float32.

    Fields:
        n: input length, any integer in [1, 128] (the last column tile is zero-padded when C does not
            divide n).
        out_size: m, output elements (rows of W), in [1, 256].
        data_bits: d, width of an input element and of a weight (signed two's complement, full range
            [-2^(d-1), 2^(d-1) - 1]), in [8, 32].
        out_bits: width of an output element (signed, full range, saturating), in [2, 32].
        rows: R, output rows computed in parallel (rows of the multiply-accumulate array), in [1, 64].
        cols: C, input elements per cycle (columns of the array), in [1, n]; R x C multipliers of d x d bits.
        clock_mhz: clock frequency for converting cycles to time (MHz), in [1, 2000]; it changes no hardware.

    Raises:
        ConfigError: naming the field, the allowed range and the value.
    """

    n: Annotated[int, Field(ge=1, le=128)] = 64
    out_size: Annotated[int, Field(ge=1, le=256)] = 64
    data_bits: Annotated[int, Field(ge=8, le=32)] = 16
    out_bits: Annotated[int, Field(ge=2, le=32)] = 16
    rows: Annotated[int, Field(ge=1, le=64)] = 8
    cols: Annotated[int, Field(ge=1, le=128)] = 16
    clock_mhz: Annotated[int, Field(ge=1, le=2000)] = 200

    #: Config-file section, Verilog top module and file stem.
    SECTION = "fixed_mv"
    #: Registers of the array after its issue stage: 1 weight word read (and the input tile), 2 the R x C
    #: products, 3 the R row sums, 4 accumulate; then round, clamp and write the result (see hw.fixed_mv).
    PIPELINE_STAGES = 4
    #: Cycles from an input transfer to the first cycle the vector can be loaded into the array: the
    #: input buffer (one vector).
    FRONT_CYCLES = 1
    #: Input buffer entries, also the input credits (vectors accepted but not loaded). One keeps II = T
    #: for every T >= 1: vector k is accepted in the cycle vector k - 1 loads and can load one cycle later.
    IN_DEPTH = 1

    def __post_init__(self) -> None:
        if self.cols > self.n:
            raise ConfigError(range_message(type(self).__name__, "cols", self.cols, 1, self.n) + " (n)")

    # --- derived sizes and widths -------------------------------------------------------------
    @property
    def row_tiles(self) -> int:
        """RT = ceil(out_size / R): row tiles."""
        return -(-self.out_size // self.rows)

    @property
    def col_tiles(self) -> int:
        """CT = ceil(n / C): column tiles (input elements past n of the last one are 0)."""
        return -(-self.n // self.cols)

    @property
    def padded_n(self) -> int:
        """CT * C: the input length the array walks (n plus the zero padding of the last column tile)."""
        return self.col_tiles * self.cols

    @property
    def weight_bits(self) -> int:
        """Width of one weight, ``data_bits`` (the name the shared write-port signatures use)."""
        return self.data_bits

    @property
    def prod_bits(self) -> int:
        """Signed width of one product x_i * w_ij, ``2 * data_bits``: (-2^(d-1))^2 = 2^(2d-2) needs 2d bits."""
        return 2 * self.data_bits

    @property
    def sum_bits(self) -> int:
        """Signed width of one row's sum of C products per cycle, ``2d + ceil(log2 C)``."""
        return self.prod_bits + _ceil_log2(self.cols)

    @property
    def dot_bits(self) -> int:
        """Signed width of any ``x @ W.T`` element, ``2d + ceil(log2 n)``: |x_i w_ij| <= 2^(2d-2), so a sum
        of n of them is at most 2^(2d-2+ceil(log2 n)) in magnitude (reached by all-minimum x and W)."""
        return self.prod_bits + _ceil_log2(self.n)

    @property
    def bias_bits(self) -> int:
        """Signed width of a bias (at the accumulator scale), ``dot_bits``."""
        return self.dot_bits

    @property
    def acc_bits(self) -> int:
        """Signed accumulator width, ``dot_bits + 1 = 2d + ceil(log2 n) + 1``: dot product + bias, exact
        (at most 72 bits: d = 32, n = 128). Partial sums are modular in it; the final sum fits."""
        return self.dot_bits + 1

    @property
    def shift_o_max(self) -> int:
        """Largest output shift S_o, ``acc_bits - 1``: |acc| < 2^S_o there, every result is -1, 0 or 1."""
        return self.acc_bits - 1

    @property
    def weight_word_bits(self) -> int:
        """Bits of one weight-memory word: the R x C tile, ``R * C * data_bits``."""
        return self.rows * self.cols * self.data_bits

    @property
    def weight_depth(self) -> int:
        """Weight-memory words, ``RT * CT``; word ``row_tile * CT + col_tile``."""
        return self.row_tiles * self.col_tiles

    @property
    def vector_cycles(self) -> int:
        """T = RT * CT: issue cycles of one vector, the initiation interval at full rate (any data_bits)."""
        return self.row_tiles * self.col_tiles

    @property
    def out_fifo_depth(self) -> int:
        """D, output FIFO entries, also the vectors loaded whose output has not transferred (output credits):
        ``1 + ceil((PIPELINE_STAGES + 2) / T)``. A vector's output is valid T + 5 cycles after its load, so
        at full rate the credit of vector k - D is back by the load of vector k when (D - 1) T >= 6."""
        return 1 + -(-(self.PIPELINE_STAGES + 2) // self.vector_cycles)

    @property
    def config_fields(self) -> tuple[tuple[str, int], ...]:
        """The configuration word, ``(name, bits)`` from bit 0 up: the output shift S_o only."""
        return (("shift_o", self.shift_o_max.bit_length()),)

    def cycles_to_ms(self, cycles: int | float) -> float:
        """Convert a cycle count to milliseconds at ``clock_mhz``."""
        return cycles / (self.clock_mhz * 1e3)

    def check_config(self, cfg: Any) -> "FixedMvConfig":
        """Validate a run-time configuration against these parameters.

        Returns:
            ``cfg``.

        Raises:
            ConfigError: not a ``FixedMvConfig``, or shift_o outside [0, shift_o_max], naming the field.
        """
        if not isinstance(cfg, FixedMvConfig):
            raise ConfigError(f"cfg must be a FixedMvConfig, not {cfg!r}")
        if not 0 <= cfg.shift_o <= self.shift_o_max:
            raise ConfigError(range_message(type(cfg).__name__, "shift_o", cfg.shift_o, 0, self.shift_o_max))
        return cfg


@spec(ConfigError)
class FixedMvConfig(ParamsMixin):
    """Run-time setting of the fixed-point matrix-vector engine (written through its ``cfg`` port while idle).

    Fields:
        shift_o: S_o, the output shift: ``y = clamp(rne(acc, S_o))``, 2^-S_o the ratio of the accumulator's
            scale (s_x * s_w) to the output's. Range checked by ``FixedMvParams.check_config``.
    """

    SECTION = "cfg"

    shift_o: Annotated[int, Field(ge=0)] = 0


def verilog_header(params: FixedMvParams) -> str:
    """The comment lines after the parameter line of ``fixed_mv.v``: the cycle formula and sizes."""
    p = params
    return (f"// cycles per vector (II) T = ceil(m/R)*ceil(n/C) = {p.vector_cycles}; latency T + 6 = "
            f"{p.vector_cycles + 6} cycles; {p.rows * p.cols} multipliers of {p.data_bits} x {p.data_bits} bits, "
            f"acc {p.acc_bits} bits, bias {p.bias_bits} bits, weight memory {p.weight_depth} x "
            f"{p.weight_word_bits} bits\n")


def verilog_bytes(params: FixedMvParams) -> int:
    """Estimated size of ``fixed_mv.v`` in bytes: an R x C array of products, row adder trees, R accumulators
    and output rounders, the input buffer and register. Calibrated against the presets: within 0.9x to 1.2x."""
    p = params
    return 15_000 + p.rows * p.cols * (650 + 12 * p.data_bits) + 150 * (p.n + p.out_size) + 500 * p.rows
