"""Parameters of the bit-serial MLP engine and its run-time layer settings: frozen, validated, YAML
round-trip. Imports nothing heavy (no Amaranth): ``sim.tlm.mlp_engine`` uses it without an HDL toolchain.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from common.validate import range_message, spec
from hw.config import ConfigError, ParamsMixin

__all__ = ["MlpEngineParams", "MlpLayer", "verilog_header", "verilog_bytes"]


def _check_range(owner: str, name: str, value: int, lo: int, hi: int) -> None:
    # The type was checked by MlpLayer; the range depends on the engine's maxima.
    if not lo <= value <= hi:
        raise ConfigError(range_message(owner, name, value, lo, hi))


@spec(ConfigError)
class MlpEngineParams(ParamsMixin):
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
        weight_banks: weight banks, in [1, 2]. 1: one set of weights, biases and layer settings,
            written while the engine is idle. 2 (KiloNeRF, one tiny MLP per grid cell): two banks used
            ping-pong, so that a loader fills the next cell's weights while the engine computes the
            current cell (the bank protocol is in ``hw.mlp_engine.rtl``); every write port gets a
            ``bank`` field, the streams a ``last`` bit, and the engine a ``banks`` port. With 1 the
            field is left out of ``to_dict`` (hence out of the Verilog parameter line, YAML and
            summaries), so a single-bank engine's Verilog is byte for byte that of releases before it.

    Raises:
        ConfigError: naming the field, the allowed range and the value.
    """

    rows: Annotated[int, Field(ge=1, le=64)] = 8
    cols: Annotated[int, Field(ge=1, le=64)] = 8
    max_in: Annotated[int, Field(ge=1, le=256)] = 64
    max_out: Annotated[int, Field(ge=1, le=256)] = 64
    max_layers: Annotated[int, Field(ge=1, le=8)] = 4
    max_weight_bits: Annotated[int, Field(ge=2, le=16)] = 8
    max_act_bits: Annotated[int, Field(ge=2, le=16)] = 8
    mult_bits: Annotated[int, Field(ge=1, le=20)] = 16
    clock_mhz: Annotated[int, Field(ge=1, le=2000)] = 200
    weight_banks: Annotated[int, Field(ge=1, le=2)] = 1

    #: Config-file section, Verilog top module and file stem.
    SECTION = "mlp_engine"
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
    #: Two banks: cycles from the last issue cycle E of a cell group's last vector to the first cycle its
    #: bank reads as free: the vector's last tile is in stage 4 (the last stage that reads the bank's
    #: settings) at E + 4, and the bank is released at the edge closing that cycle.
    BANK_RELEASE = 5

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict; ``weight_banks`` only when it is 2 (see the field's description)."""
        out = super().to_dict()
        if self.weight_banks == 1:
            del out["weight_banks"]
        return out

    @property
    def banked(self) -> bool:
        """Whether the engine has two weight banks (``weight_banks == 2``)."""
        return self.weight_banks == 2

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
        """Weight-memory words (R * C bits each, one bit-plane of one tile), all banks:
        ``weight_banks * max_layers * RT * CT * max_weight_bits``; word
        ``(((bank * max_layers + layer) * RT + rt) * CT + ct) * max_weight_bits + plane`` (bank 0 with one bank).
        """
        return self.weight_banks * self.max_layers * self.row_tiles * self.col_tiles * self.max_weight_bits

    @property
    def bias_depth(self) -> int:
        """Bias-memory words (R biases of ``bias_bits`` each), all banks: ``weight_banks * max_layers * RT``;
        word ``(bank * max_layers + layer) * RT + rt``."""
        return self.weight_banks * self.max_layers * self.row_tiles

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
            _check_range(owner, "in_size", layer.in_size, 1, self.max_in)
            _check_range(owner, "out_size", layer.out_size, 1, self.max_out)
            _check_range(owner, "weight_bits", layer.weight_bits, 2, self.max_weight_bits)
            _check_range(owner, "act_bits", layer.act_bits, 2, self.max_act_bits)
            _check_range(owner, "out_bits", layer.out_bits, 2, self.max_act_bits)
            _check_range(owner, "mult", layer.mult, 0, (1 << self.mult_bits) - 1)
            _check_range(owner, "shift", layer.shift, 0, self.shift_max)
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



@spec(ConfigError)
class MlpLayer(ParamsMixin):
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

    SECTION = "layer"

    in_size: Annotated[int, Field(ge=0)]
    out_size: Annotated[int, Field(ge=0)]
    weight_bits: Annotated[int, Field(ge=0)]
    act_bits: Annotated[int, Field(ge=0)]
    act_signed: bool = False
    relu: bool = False
    out_bits: Annotated[int, Field(ge=0)]
    bias: bool = False
    mult: Annotated[int, Field(ge=0)] = 1
    shift: Annotated[int, Field(ge=0)] = 0


    @property
    def out_signed(self) -> bool:
        """Whether the output is two's complement (no ReLU) or unsigned (ReLU)."""
        return not self.relu


def verilog_header(params: MlpEngineParams) -> str:
    """The comment lines after the parameter line of ``mlp_engine.v``: the cycle formula and sizes (and,
    with two weight banks, the cost of a cell visit)."""
    p = params
    text = ("// cycles per vector T = sum_l ceil(out_l/R)*ceil(in_l/C)*wbits_l*abits_l + 4*(L-1); latency T + 6 "
            f"cycles; acc {p.acc_bits} bits, bias {p.bias_bits} bits, weight memory {p.weight_depth} x "
            f"{p.rows * p.cols} bits\n")
    if p.banked:
        text += ("// 2 weight banks (ping-pong, bank = outer address digit): at full rate a cell visit of n vectors "
                 "costs max(n*T, load of the next cell + 2..7) cycles (sim.tlm.mlp_engine.cell_stream_cycles); "
                 f"a bank is free {p.BANK_RELEASE} cycles after its group's last issue cycle\n")
    return text


def verilog_bytes(params: MlpEngineParams) -> int:
    """Estimated size of ``mlp_engine.v`` in bytes: the datapath grows with R x C and the vector widths
    (no memory contents are written); two weight banks double the settings' multiplexers, about 1.5x
    in all. Calibrated against the presets: within 0.7x to 1.8x."""
    p = params
    single = 20_000 + 1_000 * p.rows * p.cols + 150 * (p.max_in + p.max_out) * p.max_act_bits
    return single * (1 + p.weight_banks) // 2 if p.banked else single
