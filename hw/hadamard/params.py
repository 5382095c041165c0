"""Parameters of the DHQ Hadamard datapath and its run-time settings: frozen, validated, YAML
round-trip. Imports nothing heavy (no Amaranth): ``sim.tlm.hadamard`` uses it without an HDL toolchain.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from common.validate import range_message, spec
from hw.config import ConfigError, ParamsMixin

__all__ = ["HadamardParams", "HadamardConfig", "verilog_header", "verilog_bytes"]


def _check_range(owner: str, name: str, value: int, lo: int, hi: int) -> None:
    # The type was checked by HadamardConfig; the range depends on the engine's maxima.
    if not lo <= value <= hi:
        raise ConfigError(range_message(owner, name, value, lo, hi))


@spec(ConfigError)
class HadamardParams(ParamsMixin):
    """Parameters of the DHQ Hadamard-transform datapath (``hw.hadamard.HadamardEngine``): one linear layer.

    The engine computes, per input vector x of n signed integers (``sim.tlm.hadamard`` has the exact
    semantics): ``t = x @ H_n`` (fast Walsh-Hadamard transform, H_n the unnormalised Sylvester matrix),
    ``u = clamp(rne(t * M_a, S_a), +-(2^(a-1) - 1))``, ``acc = u @ W.T + bias``,
    ``y = clamp(rne(acc * M_o, S_o), +-(2^(out_bits-1) - 1))``. The sizes and the weight and output
    widths are fixed here; the activation width a and the scales are run-time settings
    (``HadamardConfig``, checked by ``check_config``).

    Fields:
        n: transform and input length, a power of two in [2, 128] (k = log2 n butterfly stages).
        out_size: m, output elements (rows of W), in [1, 256].
        in_bits: width of one input element (signed two's complement, full range), in [2, 16].
        weight_bits: width of one weight (signed, narrow symmetric range +-(2^(wb-1) - 1)), in [2, 16].
        max_act_bits: widest run-time activation width a (bits of u), in [2, 16].
        out_bits: width of one output element (signed, narrow symmetric range), in [2, 16].
        rows: R, output rows computed in parallel (rows of the matrix-vector array), in [1, 64].
        cols: C, input elements per cycle (columns of the array), a power of two in [1, n].
        mult_bits: width of the unsigned multipliers M_a and M_o (bits), in [1, 20]; 20 keeps
            ``acc * M_o`` and its rounding inside int64 for every legal combination (see
            ``prod_o_bits``), so the TLM's reference stays in NumPy int64.
        per_row_scales: False (default): one output multiplier M_o for the layer (``HadamardConfig.mult_o``).
            True: one per output row, ``y_r = clamp(rne(acc_r * M_o[r], S_o))`` with the shared shift
            S_o, for per-channel weight steps (``M_o[r] = s_a s_w[r] / s_y * 2^S_o``): the engine holds
            a table of ``row_tiles * rows`` multipliers of ``mult_bits`` (``scale_bits`` in all), loaded
            through its ``scales`` write port, and ignores ``HadamardConfig.mult_o``. Same cycles.
        clock_mhz: clock frequency for converting cycles to time (MHz), in [1, 2000]; it changes no
            hardware.

    Raises:
        ConfigError: naming the field, the allowed range and the value.
    """

    n: Annotated[int, Field(ge=2, le=128)] = 64
    out_size: Annotated[int, Field(ge=1, le=256)] = 64
    in_bits: Annotated[int, Field(ge=2, le=16)] = 8
    weight_bits: Annotated[int, Field(ge=2, le=16)] = 8
    max_act_bits: Annotated[int, Field(ge=2, le=16)] = 8
    out_bits: Annotated[int, Field(ge=2, le=16)] = 8
    rows: Annotated[int, Field(ge=1, le=64)] = 8
    cols: Annotated[int, Field(ge=1, le=128)] = 16
    mult_bits: Annotated[int, Field(ge=1, le=20)] = 16
    per_row_scales: bool = False
    clock_mhz: Annotated[int, Field(ge=1, le=2000)] = 200

    #: Config-file section, Verilog top module and file stem.
    SECTION = "hadamard"
    #: Pipeline registers of the matrix-vector back end after its issue stage: 1 weight word read,
    #: 2 masked sum per row, 3 accumulate, 4 multiply by M_o, then round, clamp and write the result
    #: (see hw.hadamard). The per-row multiplier table (``per_row_scales``) is read during stage 3,
    #: so it adds no stage.
    PIPELINE_STAGES = 4
    #: Front-end registers besides the log2(n) butterfly stages: the input register, the product
    #: t * M_a, and the rounded, clamped u written into the activation FIFO.
    FRONT_EXTRA = 3
    #: Output FIFO entries, also the number of vectors loaded into the matrix-vector array whose output
    #: has not transferred yet. Four keep II = T at full rate for every T >= 2: a vector's output is
    #: valid T + 5 cycles after its load, so the credit of vector k - 4 is back by the load of vector k
    #: when 4T >= T + 6.
    OUT_FIFO_DEPTH = 4

    def __post_init__(self) -> None:
        owner, n, c = type(self).__name__, self.n, self.cols
        if n & (n - 1):
            raise ConfigError(f"{owner}.n must be a power of two in [2, 128], not {n!r}")
        if c > n or c & (c - 1):
            raise ConfigError(f"{owner}.cols must be a power of two in [1, {n}] (n), not {c!r}")

    # --- derived sizes and widths -------------------------------------------------------------
    @property
    def log2_n(self) -> int:
        """k = log2 n: butterfly stages of the transform (and bits of growth, one per stage)."""
        return self.n.bit_length() - 1

    @property
    def t_bits(self) -> int:
        """Signed width of a transform output t, ``in_bits + log2 n``.

        t_j is a sum of n inputs with signs +-1, so |t_j| <= n * 2^(in_bits-1) = 2^(in_bits-1+k); the
        bound is reached (t_0 of the all-minimum vector), so one bit fewer would not do.
        """
        return self.in_bits + self.log2_n

    @property
    def prod_a_bits(self) -> int:
        """Signed width of ``t * M_a``: ``t_bits + mult_bits`` (M_a < 2^mult_bits)."""
        return self.t_bits + self.mult_bits

    @property
    def shift_a_max(self) -> int:
        """Largest activation shift S_a, ``prod_a_bits - 1``: |t * M_a| < 2^S_a, so every u is 0 there."""
        return self.prod_a_bits - 1

    @property
    def row_tiles(self) -> int:
        """RT = ceil(out_size / R): row tiles (weight-memory row groups)."""
        return -(-self.out_size // self.rows)

    @property
    def col_tiles(self) -> int:
        """CT = n / C: column tiles (exact, C is a power of two <= n)."""
        return self.n // self.cols

    @property
    def sum_bits(self) -> int:
        """Signed width of one row's masked weight sum per cycle, ``weight_bits + log2 C``."""
        return self.weight_bits + self.cols.bit_length() - 1

    @property
    def dot_bits(self) -> int:
        """Signed width of any ``u @ W.T`` element: ``max_act_bits + weight_bits - 1 + log2 n``.

        Both operands lie in the narrow symmetric ranges, so a product has magnitude at most
        (2^(a-1) - 1)(2^(wb-1) - 1) < 2^(a+wb-2) and a sum of n of them less than 2^(a+wb-2+k).
        """
        return self.max_act_bits + self.weight_bits - 1 + self.log2_n

    @property
    def bias_bits(self) -> int:
        """Signed width of a bias, ``dot_bits``: any bias the dot product could cancel."""
        return self.dot_bits

    @property
    def acc_bits(self) -> int:
        """Signed accumulator width, ``dot_bits + 1``: holds dot product + bias exactly.

        The bit-serial partial sums may exceed it; two's-complement addition is modular, so the
        final sum, which fits, is exact anyway. At most 16 + 16 - 1 + 7 + 1 = 39.
        """
        return self.dot_bits + 1

    @property
    def prod_o_bits(self) -> int:
        """Signed width of ``acc * M_o``: ``acc_bits + mult_bits`` (at most 59)."""
        return self.acc_bits + self.mult_bits

    @property
    def shift_o_max(self) -> int:
        """Largest output shift S_o, ``prod_o_bits - 1``: beyond it every result is 0 anyway."""
        return self.prod_o_bits - 1

    @property
    def weight_word_bits(self) -> int:
        """Bits of one weight-memory word: the R x C tile, ``R * C * weight_bits`` (bit-parallel weights)."""
        return self.rows * self.cols * self.weight_bits

    @property
    def weight_depth(self) -> int:
        """Weight-memory words, ``RT * CT``; word ``row_tile * CT + col_tile``."""
        return self.row_tiles * self.col_tiles

    @property
    def scale_word_bits(self) -> int:
        """Bits of one word of the per-row multiplier table (``per_row_scales``): the R multipliers
        of a row tile, ``rows * mult_bits``."""
        return self.rows * self.mult_bits

    @property
    def scale_bits(self) -> int:
        """Memory bits of the per-row multiplier table, ``row_tiles * rows * mult_bits`` (m * mult_bits
        when R divides m); 0 without ``per_row_scales``."""
        return self.row_tiles * self.scale_word_bits if self.per_row_scales else 0

    @property
    def front_cycles(self) -> int:
        """F = log2 n + FRONT_EXTRA: cycles from a vector's input transfer to the first cycle its
        requantized activations can be loaded into the matrix-vector array."""
        return self.log2_n + self.FRONT_EXTRA

    @property
    def front_depth(self) -> int:
        """Q, activation-FIFO entries, also the vectors accepted but not yet loaded (input credits).

        ``ceil(F / T_min)`` with ``T_min = 2 * RT * CT`` (the matrix-vector cycles at act_bits 2). At
        full rate vector k is accepted when vector k - Q loads, Q * T cycles before its own load is
        due, and reaches the FIFO F cycles after its acceptance: in time whenever Q * T >= F, which
        this Q guarantees for every act_bits, so the front end never holds up II = T.
        """
        return -(-self.front_cycles // (2 * self.row_tiles * self.col_tiles))

    @property
    def config_fields(self) -> tuple[tuple[str, int], ...]:
        """The configuration word, ``(name, bits)`` from bit 0 up (see ``HadamardConfig``).

        The one definition of the layout, used by the RTL's ``cfg`` port and by drivers that pack it.
        """
        return (
            ("act_bits", self.max_act_bits.bit_length()),
            ("mult_a", self.mult_bits),
            ("shift_a", self.shift_a_max.bit_length()),
            ("mult_o", self.mult_bits),
            ("shift_o", self.shift_o_max.bit_length()),
        )

    def cycles_to_ms(self, cycles: int | float) -> float:
        """Convert a cycle count to milliseconds at ``clock_mhz``."""
        return cycles / (self.clock_mhz * 1e3)

    def check_config(self, cfg: Any) -> "HadamardConfig":
        """Validate a run-time configuration against these parameters.

        Returns:
            ``cfg``.

        Raises:
            ConfigError: not a ``HadamardConfig``, or a field out of range, naming the field, the
                allowed range and the value.
        """
        if not isinstance(cfg, HadamardConfig):
            raise ConfigError(f"cfg must be a HadamardConfig, not {cfg!r}")
        owner = type(cfg).__name__
        _check_range(owner, "act_bits", cfg.act_bits, 2, self.max_act_bits)
        _check_range(owner, "mult_a", cfg.mult_a, 0, (1 << self.mult_bits) - 1)
        _check_range(owner, "shift_a", cfg.shift_a, 0, self.shift_a_max)
        _check_range(owner, "mult_o", cfg.mult_o, 0, (1 << self.mult_bits) - 1)
        _check_range(owner, "shift_o", cfg.shift_o, 0, self.shift_o_max)
        return cfg



@spec(ConfigError)
class HadamardConfig(ParamsMixin):
    """Run-time settings of the Hadamard datapath (written through its ``cfg`` port while idle).

    Fields:
        act_bits: a, width of the requantized activations u (narrow symmetric range
            [-(2^(a-1) - 1), 2^(a-1) - 1]); the matrix-vector product takes a cycles per tile.
        mult_a, shift_a: M_a and S_a, the activation scale M_a / 2^S_a (it folds in the 1/sqrt(n) of
            the orthonormal transform).
        mult_o, shift_o: M_o and S_o, the output scale M_o / 2^S_o (s_a * s_w / s_y). With
            ``HadamardParams.per_row_scales`` the engine takes M_o per row from its table instead and
            ignores ``mult_o`` (it stays in the word, still range-checked, so that one layout serves
            both); S_o is shared by the rows.

    Types are checked here; ranges against the engine by ``HadamardParams.check_config``.

    Raises:
        ConfigError: a field of the wrong type, naming it and the value.
    """

    SECTION = "cfg"

    act_bits: Annotated[int, Field(ge=0)]
    mult_a: Annotated[int, Field(ge=0)] = 1
    shift_a: Annotated[int, Field(ge=0)] = 0
    mult_o: Annotated[int, Field(ge=0)] = 1
    shift_o: Annotated[int, Field(ge=0)] = 0


def verilog_header(params: HadamardParams) -> str:
    """The comment lines after the parameter line of ``hadamard.v``: the cycle formula and sizes."""
    p = params
    text = (f"// cycles per vector (II) T = ceil(m/R)*(n/C)*act_bits = {p.row_tiles * p.col_tiles}*act_bits; "
            f"latency T + log2(n) + 8 = T + {p.log2_n + 8} cycles; t {p.t_bits} bits, acc {p.acc_bits} bits, "
            f"bias {p.bias_bits} bits, weight memory {p.weight_depth} x {p.weight_word_bits} bits\n")
    if p.per_row_scales:
        text += (f"// per-row output multipliers M_o[r] (cfg mult_o unused): table {p.row_tiles} x "
                 f"{p.scale_word_bits} bits, written through the scales port\n")
    return text


def verilog_bytes(params: HadamardParams) -> int:
    """Estimated size of ``hadamard.v`` in bytes: n transform lanes of log2 n stages, n requantizers and an
    R x C array (no memory contents are written). Calibrated against the presets: within 0.7x to 1.8x."""
    p = params
    return 20_000 + 400 * p.n * (p.log2_n + 4) + 1_500 * p.rows * p.cols
