"""Parameter types of the engines: frozen, validated, YAML round-trip.

Imports nothing heavy (no Amaranth, no torch) so that ``sim/tlm`` and the flows can use it without an
HDL toolchain. Validation follows amaranth-soc: every keyword is checked before anything is derived,
and each error names the field, the allowed range and the value given.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nerf import grid
from common.atomic import atomic_write_text

__all__ = ["HashEncoderParams", "MlpEngineParams", "MlpLayer", "HadamardParams", "HadamardConfig", "ConfigError",
           "load_config", "save_config", "ENGINES"]


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the field and the value."""


def _check_int(owner: str, name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{owner}.{name} must be an integer in [{lo}, {hi}], not {value!r}")


def _check_bool(owner: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{owner}.{name} must be a bool (true or false), not {value!r}")


def _from_mapping(cls, data: Any, where: str):
    """Build ``cls`` from a mapping; unknown keys raise ``ConfigError`` naming the key and ``where``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must be a mapping of parameters, not {data!r}")
    allowed = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in allowed:
            raise ConfigError(f"unknown key {key!r} in {where} (allowed: {', '.join(allowed)})")
    return cls(**data)


@dataclass(frozen=True, kw_only=True)
class HashEncoderParams:
    """Parameters of the multiresolution hash-encoding engine (``hw.hash_encoder.HashEncoder``).

    Fields:
        levels: L, number of resolution levels, in [1, 32].
        log2_table_size: k, each level's table holds T = 2**k entries, k in [4, 24].
        features: F, features per table entry, in [1, 8].
        feature_bits: width of one table feature (signed two's complement), in [2, 16].
        coord_bits: C, input coordinates are unsigned fixed point X / 2**C in [0, 1), C in [4, 24].
        n_min: N_min, coarsest resolution (cells per axis), in [1, 2**coord_bits].
        n_max: N_max, finest resolution, in [n_min, 2**coord_bits]; equal to n_min when levels is 1.
        lanes: parallel (point, level) pipelines, in [1, levels]. Lane j serves levels j, j + lanes, ...

    Raises:
        ConfigError: naming the field, the allowed range and the value.
    """

    levels: int = 16
    log2_table_size: int = 14
    features: int = 2
    feature_bits: int = 8
    coord_bits: int = 16
    n_min: int = 16
    n_max: int = 512
    lanes: int = 1

    #: Pipeline registers between the issue register and the interpolated result (see hw.hash_encoder).
    PIPELINE_STAGES = 6

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_int(owner, "levels", self.levels, 1, 32)
        _check_int(owner, "log2_table_size", self.log2_table_size, 4, 24)
        _check_int(owner, "features", self.features, 1, 8)
        _check_int(owner, "feature_bits", self.feature_bits, 2, 16)
        _check_int(owner, "coord_bits", self.coord_bits, 4, 24)
        _check_int(owner, "n_min", self.n_min, 1, 1 << self.coord_bits)
        _check_int(owner, "n_max", self.n_max, self.n_min, 1 << self.coord_bits)
        if self.levels == 1 and self.n_max != self.n_min:
            raise ConfigError(
                f"{owner}.n_max must equal n_min ({self.n_min}) when levels is 1, not {self.n_max!r}"
            )
        _check_int(owner, "lanes", self.lanes, 1, self.levels)

    # --- derived geometry -------------------------------------------------------------------
    @property
    def table_size(self) -> int:
        """T, entries per level table."""
        return 1 << self.log2_table_size

    @property
    def resolutions(self) -> tuple[int, ...]:
        """N_l per level (``nerf.grid.level_resolutions``: floor of N_min * b^l)."""
        return grid.level_resolutions(self.n_min, self.n_max, self.levels)

    @property
    def dense(self) -> tuple[bool, ...]:
        """Per level: True when the level is indexed densely, False when hashed."""
        return tuple(grid.is_dense(r, self.table_size) for r in self.resolutions)

    @property
    def groups(self) -> int:
        """G = ceil(L / lanes): cycles one point occupies the issue stage, i.e. the II in cycles per point."""
        return math.ceil(self.levels / self.lanes)

    @property
    def out_bits(self) -> int:
        """Width of one output feature: signed, ``feature_bits + coord_bits`` bits, ``coord_bits`` of them fractional."""
        return self.feature_bits + self.coord_bits

    @property
    def cell_bits(self) -> int:
        """Width of the integer part (cell coordinate) of a scaled position: holds 0..N_max."""
        return max(1, self.n_max.bit_length())

    @property
    def fifo_depth(self) -> int:
        """Output FIFO entries (and input credits).

        A point holds a credit from its input transfer at cycle a until its output transfer, at the
        earliest a + G + PIPELINE_STAGES + 1; this depth keeps II = G under no backpressure.
        """
        return (self.groups + self.PIPELINE_STAGES + 1) // self.groups + 1

    # --- dict / YAML ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "hash_encoder") -> "HashEncoderParams":
        """Build from a mapping; unknown keys raise ``ConfigError`` naming the key and ``where``."""
        return _from_mapping(cls, data, where)


@dataclass(frozen=True, kw_only=True)
class MlpEngineParams:
    """Parameters of the bit-serial MLP engine (``hw.mlp_engine.MlpEngine``), all generate-time maxima.

    The per-layer settings (sizes, bitwidths, requantization) are run-time values, ``MlpLayer``, bounded
    by these fields; ``check_layers`` validates a configuration against them.

    Fields:
        rows: R, output neurons computed in parallel (rows of the dot-product array), in [1, 64].
        cols: C, input elements per dot product per cycle (columns of the array), in [1, 64].
        max_in: longest input vector of any layer (elements), in [1, 256].
        max_out: widest layer output (elements), in [1, 256].
        max_layers: most layers per configuration, in [1, 8].
        max_weight_bits: widest weight (signed two's complement, bits), in [2, 16].
        max_act_bits: widest activation, input element and output element (bits), in [2, 16].
        mult_bits: width of the unsigned requantization multiplier M (bits), in [1, 20]; 20 keeps
            ``acc * M`` plus its rounding term inside int64 for every legal combination (see
            ``acc_bits``), so the TLM's reference stays in NumPy int64.
        clock_mhz: clock frequency for converting cycles to time (MHz), in [1, 2000]; it changes no
            hardware.

    Raises:
        ConfigError: naming the field, the allowed range and the value.
    """

    rows: int = 8
    cols: int = 8
    max_in: int = 64
    max_out: int = 64
    max_layers: int = 4
    max_weight_bits: int = 8
    max_act_bits: int = 8
    mult_bits: int = 16
    clock_mhz: int = 200

    #: Pipeline registers after the issue stage: 1 weight-plane read, 2 AND + popcount, 3 accumulate,
    #: 4 multiply by M, then requantize and write the result buffer (see hw.mlp_engine).
    PIPELINE_STAGES = 4
    #: Idle issue cycles between two layers of one vector: layer l + 1 reads layer l's outputs, which
    #: are complete only when layer l's last tile has left the pipeline (PIPELINE_STAGES cycles).
    LAYER_GAP = 4
    #: Cycles from an input transfer to the first issue cycle of that vector when the engine is idle:
    #: the input register is loaded into the activation buffer one cycle after the transfer.
    START_CYCLES = 2
    #: Output FIFO entries, also the number of vectors in flight (loaded, output not yet transferred).
    #: Three keep back-to-back vectors from waiting for a credit under no backpressure: a vector's
    #: output is valid 5 cycles after its last issue cycle and every vector issues for >= 4 cycles.
    OUT_FIFO_DEPTH = 3

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_int(owner, "rows", self.rows, 1, 64)
        _check_int(owner, "cols", self.cols, 1, 64)
        _check_int(owner, "max_in", self.max_in, 1, 256)
        _check_int(owner, "max_out", self.max_out, 1, 256)
        _check_int(owner, "max_layers", self.max_layers, 1, 8)
        _check_int(owner, "max_weight_bits", self.max_weight_bits, 2, 16)
        _check_int(owner, "max_act_bits", self.max_act_bits, 2, 16)
        _check_int(owner, "mult_bits", self.mult_bits, 1, 20)
        _check_int(owner, "clock_mhz", self.clock_mhz, 1, 2000)

    # --- derived sizes ----------------------------------------------------------------------
    @property
    def row_tiles(self) -> int:
        """RT = ceil(max_out / R): row tiles of the widest layer (weight-memory regions per layer)."""
        return -(-self.max_out // self.rows)

    @property
    def col_tiles(self) -> int:
        """CT = ceil(max_in / C): column tiles of the longest input."""
        return -(-self.max_in // self.cols)

    @property
    def dot_bits(self) -> int:
        """Signed width of any dot product: ``max_weight_bits + max_act_bits + ceil(log2(max_in))``.

        One product of a signed wb-bit weight and a wa-bit activation (signed or unsigned) lies in
        [-2^(wb+wa-1), 2^(wb+wa-1)); a sum of up to max_in of them needs ceil(log2(max_in)) more bits.
        """
        return self.max_weight_bits + self.max_act_bits + (self.max_in - 1).bit_length()

    @property
    def bias_bits(self) -> int:
        """Signed width of a per-neuron bias, ``dot_bits``: any bias the dot product could cancel."""
        return self.dot_bits

    @property
    def acc_bits(self) -> int:
        """Signed accumulator width, ``dot_bits + 1``: holds dot product + bias exactly.

        Partial sums of the bit-serial accumulation may exceed this width; two's-complement addition
        is modular, so the final sum, which fits, is exact anyway. At most 16 + 16 + 8 + 1 = 41.
        """
        return self.dot_bits + 1

    @property
    def prod_bits(self) -> int:
        """Signed width of ``acc * M``: ``acc_bits + mult_bits`` (at most 61)."""
        return self.acc_bits + self.mult_bits

    @property
    def shift_max(self) -> int:
        """Largest requantization shift S, ``prod_bits - 1``: beyond it every result is -1, 0 or 1 anyway."""
        return self.prod_bits - 1

    @property
    def weight_depth(self) -> int:
        """Weight-memory words (R * C bits each, one bit-plane of one tile):
        ``max_layers * RT * CT * max_weight_bits``; word ``((layer * RT + rt) * CT + ct) * max_weight_bits + plane``.
        """
        return self.max_layers * self.row_tiles * self.col_tiles * self.max_weight_bits

    @property
    def bias_depth(self) -> int:
        """Bias-memory words (R biases of ``bias_bits`` each): ``max_layers * RT``; word ``layer * RT + rt``."""
        return self.max_layers * self.row_tiles

    @property
    def config_fields(self) -> tuple[tuple[str, int], ...]:
        """One layer's configuration word, ``(name, bits)`` from bit 0 up (see ``MlpLayer``).

        The one definition of the layout, used by the RTL's ``cfg`` port and by drivers that pack it.
        """
        return (
            ("in_size", self.max_in.bit_length()),
            ("out_size", self.max_out.bit_length()),
            ("weight_bits", self.max_weight_bits.bit_length()),
            ("act_bits", self.max_act_bits.bit_length()),
            ("act_signed", 1),
            ("relu", 1),
            ("out_bits", self.max_act_bits.bit_length()),
            ("bias", 1),
            ("mult", self.mult_bits),
            ("shift", self.shift_max.bit_length()),
        )

    def cycles_to_ms(self, cycles: int | float) -> float:
        """Convert a cycle count to milliseconds at ``clock_mhz``."""
        return cycles / (self.clock_mhz * 1e3)

    def check_layers(self, layers: Any) -> tuple["MlpLayer", ...]:
        """Validate a run-time configuration (a sequence of ``MlpLayer``) against these maxima.

        Besides each field's range, consecutive layers must chain: layer l + 1 reads layer l's output,
        so its ``in_size``, ``act_bits`` and ``act_signed`` must equal layer l's ``out_size``,
        ``out_bits`` and ``not relu``.

        Returns:
            The layers as a tuple.

        Raises:
            ConfigError: naming the layer, the field, the allowed value(s) and the value.
        """
        if not isinstance(layers, (list, tuple)) or not all(isinstance(x, MlpLayer) for x in layers):
            raise ConfigError(f"layers must be a list of MlpLayer, not {layers!r}")
        if not 1 <= len(layers) <= self.max_layers:
            raise ConfigError(f"layers must hold between 1 and {self.max_layers} layers, not {len(layers)}")
        for i, layer in enumerate(layers):
            owner = f"layers[{i}]"
            _check_int(owner, "in_size", layer.in_size, 1, self.max_in)
            _check_int(owner, "out_size", layer.out_size, 1, self.max_out)
            _check_int(owner, "weight_bits", layer.weight_bits, 2, self.max_weight_bits)
            _check_int(owner, "act_bits", layer.act_bits, 2, self.max_act_bits)
            _check_int(owner, "out_bits", layer.out_bits, 2, self.max_act_bits)
            _check_int(owner, "mult", layer.mult, 0, (1 << self.mult_bits) - 1)
            _check_int(owner, "shift", layer.shift, 0, self.shift_max)
            if i:
                prev = layers[i - 1]
                for name, field in (("in_size", "out_size"), ("act_bits", "out_bits")):
                    want, got = getattr(prev, field), getattr(layer, name)
                    if got != want:
                        raise ConfigError(f"{owner}.{name} must equal layers[{i - 1}].{field} ({want}), not {got!r}")
                if layer.act_signed != prev.out_signed:
                    raise ConfigError(f"{owner}.act_signed must be {prev.out_signed} because layers[{i - 1}].relu is "
                                      f"{prev.relu}, not {layer.act_signed!r}")
        return tuple(layers)

    # --- dict / YAML ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "mlp_engine") -> "MlpEngineParams":
        """Build from a mapping; unknown keys raise ``ConfigError`` naming the key and ``where``."""
        return _from_mapping(cls, data, where)


@dataclass(frozen=True, kw_only=True)
class MlpLayer:
    """Run-time settings of one layer of the MLP engine (written through its ``cfg`` port).

    The layer computes, for each output neuron o < out_size (integers throughout):
    ``acc = sum_k W[o, k] * x[k] + (b[o] if bias else 0)``,
    ``y = (acc * mult + 2^(shift - 1)) >> shift`` (arithmetic shift; no rounding term when shift is 0:
    round half up), then ``max(y, 0)`` if ``relu``, then a clamp to ``out_bits``: [0, 2^out_bits - 1]
    after ReLU, [-2^(out_bits-1), 2^(out_bits-1) - 1] otherwise.

    Fields:
        in_size, out_size: elements of the input and output vector.
        weight_bits: signed two's-complement weight width (bits).
        act_bits: input activation width (bits); ``act_signed`` says two's complement or unsigned.
        relu: apply ReLU (then the output is unsigned).
        out_bits: output width (bits).
        bias: add the per-neuron bias ``b`` (``bias_bits`` signed) to the accumulator.
        mult: M, unsigned requantization multiplier, ``mult_bits`` wide.
        shift: S, requantization right shift (bits).

    Types are checked here; ranges against the engine's maxima by ``MlpEngineParams.check_layers``.

    Raises:
        ConfigError: a field of the wrong type, naming it and the value.
    """

    in_size: int
    out_size: int
    weight_bits: int
    act_bits: int
    act_signed: bool = False
    relu: bool = False
    out_bits: int
    bias: bool = False
    mult: int = 1
    shift: int = 0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for name in ("in_size", "out_size", "weight_bits", "act_bits", "out_bits", "mult", "shift"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{owner}.{name} must be a non-negative integer, not {value!r}")
        for name in ("act_signed", "relu", "bias"):
            _check_bool(owner, name, getattr(self, name))

    @property
    def out_signed(self) -> bool:
        """Whether the output is two's complement (no ReLU) or unsigned (ReLU)."""
        return not self.relu

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "layer") -> "MlpLayer":
        """Build from a mapping; unknown keys raise ``ConfigError`` naming the key and ``where``."""
        return _from_mapping(cls, data, where)


@dataclass(frozen=True, kw_only=True)
class HadamardParams:
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
        clock_mhz: clock frequency for converting cycles to time (MHz), in [1, 2000]; it changes no
            hardware.

    Raises:
        ConfigError: naming the field, the allowed range and the value.
    """

    n: int = 64
    out_size: int = 64
    in_bits: int = 8
    weight_bits: int = 8
    max_act_bits: int = 8
    out_bits: int = 8
    rows: int = 8
    cols: int = 16
    mult_bits: int = 16
    clock_mhz: int = 200

    #: Pipeline registers of the matrix-vector back end after its issue stage: 1 weight word read,
    #: 2 masked sum per row, 3 accumulate, 4 multiply by M_o, then round, clamp and write the result
    #: (see hw.hadamard).
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
        owner = type(self).__name__
        n = self.n
        if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= 128 or n & (n - 1):
            raise ConfigError(f"{owner}.n must be a power of two in [2, 128], not {n!r}")
        _check_int(owner, "out_size", self.out_size, 1, 256)
        _check_int(owner, "in_bits", self.in_bits, 2, 16)
        _check_int(owner, "weight_bits", self.weight_bits, 2, 16)
        _check_int(owner, "max_act_bits", self.max_act_bits, 2, 16)
        _check_int(owner, "out_bits", self.out_bits, 2, 16)
        _check_int(owner, "rows", self.rows, 1, 64)
        c = self.cols
        if isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= n or c & (c - 1):
            raise ConfigError(f"{owner}.cols must be a power of two in [1, {n}] (n), not {c!r}")
        _check_int(owner, "mult_bits", self.mult_bits, 1, 20)
        _check_int(owner, "clock_mhz", self.clock_mhz, 1, 2000)

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
        _check_int(owner, "act_bits", cfg.act_bits, 2, self.max_act_bits)
        _check_int(owner, "mult_a", cfg.mult_a, 0, (1 << self.mult_bits) - 1)
        _check_int(owner, "shift_a", cfg.shift_a, 0, self.shift_a_max)
        _check_int(owner, "mult_o", cfg.mult_o, 0, (1 << self.mult_bits) - 1)
        _check_int(owner, "shift_o", cfg.shift_o, 0, self.shift_o_max)
        return cfg

    # --- dict / YAML ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "hadamard") -> "HadamardParams":
        """Build from a mapping; unknown keys raise ``ConfigError`` naming the key and ``where``."""
        return _from_mapping(cls, data, where)


@dataclass(frozen=True, kw_only=True)
class HadamardConfig:
    """Run-time settings of the Hadamard datapath (written through its ``cfg`` port while idle).

    Fields:
        act_bits: a, width of the requantized activations u (narrow symmetric range
            [-(2^(a-1) - 1), 2^(a-1) - 1]); the matrix-vector product takes a cycles per tile.
        mult_a, shift_a: M_a and S_a, the activation scale M_a / 2^S_a (it folds in the 1/sqrt(n) of
            the orthonormal transform).
        mult_o, shift_o: M_o and S_o, the output scale M_o / 2^S_o (s_a * s_w / s_y).

    Types are checked here; ranges against the engine by ``HadamardParams.check_config``.

    Raises:
        ConfigError: a field of the wrong type, naming it and the value.
    """

    act_bits: int
    mult_a: int = 1
    shift_a: int = 0
    mult_o: int = 1
    shift_o: int = 0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{owner}.{f.name} must be a non-negative integer, not {value!r}")

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "cfg") -> "HadamardConfig":
        """Build from a mapping; unknown keys raise ``ConfigError`` naming the key and ``where``."""
        return _from_mapping(cls, data, where)


#: Config-file section name -> params type. Later engines add their sections here.
ENGINES: dict[str, type] = {"hash_encoder": HashEncoderParams, "mlp_engine": MlpEngineParams,
                            "hadamard": HadamardParams}


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a hardware preset YAML file.

    The file is a mapping of engine section names (see ``ENGINES``) to parameter mappings.

    Returns:
        ``{section: params}`` for the sections present.

    Raises:
        ConfigError: unreadable file, unknown section or key, or an invalid value; the message names
            the file.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config {str(path)!r}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"config {str(path)!r} must be a mapping with at least one of: {', '.join(ENGINES)}")
    out: dict[str, Any] = {}
    for section, body in raw.items():
        if section not in ENGINES:
            raise ConfigError(f"unknown section {section!r} in {str(path)!r} (allowed: {', '.join(ENGINES)})")
        try:
            out[section] = ENGINES[section].from_dict(body, where=section)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return out


def save_config(path: str | os.PathLike, sections: dict[str, Any]) -> None:
    """Write ``{section: params}`` as YAML, atomically (temporary file + rename)."""
    text = yaml.safe_dump({name: p.to_dict() for name, p in sections.items()}, sort_keys=False)
    atomic_write_text(path, text)
