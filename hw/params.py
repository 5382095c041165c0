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
from nerf.atomic import atomic_write_text

__all__ = ["HashEncoderParams", "MlpEngineParams", "MlpLayer", "ConfigError", "load_config", "save_config", "ENGINES"]


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


#: Config-file section name -> params type. Later engines add their sections here.
ENGINES: dict[str, type] = {"hash_encoder": HashEncoderParams, "mlp_engine": MlpEngineParams}


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
