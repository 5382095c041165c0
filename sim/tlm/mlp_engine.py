"""Cycle-for-cycle transaction-level model of ``hw.mlp_engine.MlpEngine``, plus its closed-form timing.

Imports the engine's params (``hw.mlp_engine.params``) and NumPy only (no Amaranth). Three parts:

(a) ``reference_forward``: the bit-exact integer forward pass of the quantized MLP, in NumPy int64.
    Per layer (``hw.mlp_engine.params.MlpLayer``), with ``x`` the layer's input codes as integers (signed or
    unsigned per ``act_signed``) and ``W`` the signed weight codes::

        acc = x @ W.T + (b if bias else 0)                 # exact: |acc| < 2^(acc_bits - 1) <= 2^40
        y   = (acc * M + (2^(S-1) if S > 0 else 0)) >> S    # arithmetic shift: round half up
        y   = max(y, 0) if relu                             # then clamp to out_bits:
        y   = clip(y, 0, 2^ob - 1) if relu else clip(y, -2^(ob-1), 2^(ob-1) - 1)

    ``acc * M + 2^(S-1)`` stays below 2^61 in magnitude (``MlpEngineParams.mult_bits`` <= 20), so
    int64 is exact. The RTL computes ``acc`` bit-serially (AND + popcount of bit-planes, shifted and
    accumulated, the weight MSB plane and a signed activation's MSB plane negative), which equals
    the plain integer dot product; it computes the rounding as ``((2 * acc * M) >> S) + 1) >> 1``,
    the same value.

(b) ``MlpEngineTLM.run``: payloads and the cycle of every input and output transfer. Cycle 0 is
    the first cycle with the engine idle after configuration (reset released; ``cfg``, weights and
    biases written while idle: the RTL's memory read ports are non-transparent, and no read meets a
    write then, so the model needs no read-during-write rule). A transfer "at cycle t" means valid
    and ready were both high when cycle t's closing rising edge sampled them. Vector i is offered
    from ``max(offer_cycles[i], accept[i-1] + 1)`` until accepted; ``ready[t]`` is the output's
    ready in cycle t (ready past the end). ``schedule`` steps the RTL's control state cycle by cycle.

(c) The closed form, no simulation (``layer_cycles``, ``vector_cycles``, ``vector_latency``,
    ``stream_cycles``), for performance models. The timing (see ``hw.mlp_engine`` for the derivation):

        N_l = ceil(out_l / R) * ceil(in_l / C) * weight_bits_l * act_bits_l   issue cycles of layer l
        T   = sum_l N_l + 4 * (L - 1)                        cycles per vector (initiation interval)
        latency (input transfer -> output transfer, idle engine, ready output) = T + 6
        n vectors offered at cycle 0, output always ready: last output transfer at n * T + 6

    and in general, for vector k (terms with a negative index are left out)::

        a_k = max(offer_k, a_{k-1} + 1, l_{k-1})            input transfer
        l_k = max(a_k + 1, l_{k-1} + T, o_{k-3} + 1)         load cycle; issues l_k + 1 .. l_k + T
        o_k = min{t >= max(l_k + T + 5, o_{k-1} + 1) : ready[t]}   output transfer
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hw.config import ConfigError, check_int
from hw.mlp_engine.params import MlpEngineParams, MlpLayer
from sim.tlm.transfers import ReadyPattern, check_offers, check_range, config_word, pack_vector, unpack_vector

__all__ = [
    "MlpEngineTLM", "MlpResult", "reference_forward", "layer_cycles", "vector_cycles", "vector_latency",
    "stream_cycles", "pack_vector", "unpack_vector", "config_word", "weight_writes", "bias_writes", "check_range",
]


# --- payload and write-port formats (the drivers' view) ----------------------------------------
def weight_writes(params: MlpEngineParams, layer_index: int, weights, weight_bits: int, *,
                  padding: np.random.Generator | None = None) -> list[tuple[int, int, int, int, int]]:
    """Words for the ``weights`` write port that load one layer's weight matrix as bit-planes.

    Args:
        layer_index: the layer's index in the configuration.
        weights: int array (out_size, in_size), signed ``weight_bits`` codes.
        weight_bits: the layer's weight width; planes 0 .. weight_bits - 1 are written.
        padding: what the tile positions outside the matrix hold: None 0, or random bits from this
            generator (the engine ignores them: it masks activations past in_size and neurons past
            out_size; testbenches use this to prove it).

    Returns:
        ``[(layer, row_tile, col_tile, plane, data), ...]``: bit ``r * C + c`` of ``data`` is bit
        ``plane`` (two's complement) of ``W[row_tile * R + r, col_tile * C + c]``; every tile the
        layer uses is written in full.
    """
    w = np.asarray(weights, dtype=np.int64)
    R, C = params.rows, params.cols
    out_size, in_size = w.shape
    rt_n, ct_n = -(-out_size // R), -(-in_size // C)
    padded = np.zeros((rt_n * R, ct_n * C), dtype=np.int64)
    if padding is not None:
        padded[:] = padding.integers(0, 1 << weight_bits, size=padded.shape)
    padded[:out_size, :in_size] = w & ((1 << weight_bits) - 1)
    words = []
    for rt in range(rt_n):
        for ct in range(ct_n):
            tile = padded[rt * R:(rt + 1) * R, ct * C:(ct + 1) * C].ravel()  # index r * C + c
            for plane in range(weight_bits):
                bits = (tile >> plane) & 1
                data = int(sum(int(b) << k for k, b in enumerate(bits) if b))
                words.append((layer_index, rt, ct, plane, data))
    return words


def bias_writes(params: MlpEngineParams, layer_index: int, bias) -> list[tuple[int, int, int]]:
    """Words for the ``bias`` write port: ``[(layer, row_tile, data), ...]``, field r of ``data``
    (``bias_bits`` wide, two's complement) is the bias of neuron ``row_tile * R + r`` (0 past the end)."""
    b = np.asarray(bias, dtype=np.int64)
    R = params.rows
    words = []
    for rt in range(-(-len(b) // R)):
        words.append((layer_index, rt, pack_vector(b[rt * R:(rt + 1) * R], params.bias_bits)))
    return words


# --- closed-form timing --------------------------------------------------------------------------
def _dims(layer) -> tuple[int, int, int, int]:
    if isinstance(layer, MlpLayer):
        return layer.in_size, layer.out_size, layer.weight_bits, layer.act_bits
    if isinstance(layer, Mapping):
        try:
            return tuple(int(layer[k]) for k in ("in_size", "out_size", "weight_bits", "act_bits"))
        except KeyError as exc:
            raise ValueError(f"layer mapping lacks {exc.args[0]!r}: {dict(layer)!r}") from None
    raise TypeError(f"a layer must be an MlpLayer or a mapping, not {layer!r}")


def layer_cycles(params: MlpEngineParams, *, in_size: int, out_size: int, weight_bits: int, act_bits: int) -> int:
    """Issue cycles of one layer: ``ceil(out_size / R) * ceil(in_size / C) * weight_bits * act_bits``.

    Each cycle the R x C array takes one weight bit-plane and one activation bit-plane of one
    (row tile, column tile) pair.

    Raises:
        ValueError: a size or width outside the engine's maxima.
    """
    in_size = check_int("in_size", in_size, 1, params.max_in)
    out_size = check_int("out_size", out_size, 1, params.max_out)
    weight_bits = check_int("weight_bits", weight_bits, 2, params.max_weight_bits)
    act_bits = check_int("act_bits", act_bits, 2, params.max_act_bits)
    return -(-out_size // params.rows) * -(-in_size // params.cols) * weight_bits * act_bits


def vector_cycles(params: MlpEngineParams, layers: Sequence) -> int:
    """T, cycles per vector (the initiation interval at full rate): ``sum_l N_l + LAYER_GAP * (L - 1)``.

    Args:
        layers: ``MlpLayer`` objects or mappings with ``in_size``, ``out_size``, ``weight_bits``,
            ``act_bits`` (other keys ignored).
    """
    if not 1 <= len(layers) <= params.max_layers:
        raise ValueError(f"layers must hold between 1 and {params.max_layers} layers, not {len(layers)}")
    total = 0
    for layer in layers:
        i, o, wb, ab = _dims(layer)
        total += layer_cycles(params, in_size=i, out_size=o, weight_bits=wb, act_bits=ab)
    return total + params.LAYER_GAP * (len(layers) - 1)


def vector_latency(params: MlpEngineParams, layers: Sequence) -> int:
    """Cycles from an input transfer to the output transfer of the same vector, engine idle, output
    ready: ``T + START_CYCLES + PIPELINE_STAGES`` = T + 6 (load 1, issue T, pipeline 4, FIFO 1)."""
    return vector_cycles(params, layers) + params.START_CYCLES + params.PIPELINE_STAGES


def stream_cycles(params: MlpEngineParams, layers: Sequence, vectors: int) -> int:
    """Total cycles (last output transfer + 1) of ``vectors`` vectors all offered at cycle 0 with the
    output always ready: ``vectors * T + 7`` (0 for no vectors)."""
    if check_int("vectors", vectors, 0) == 0:
        return 0
    return vectors * vector_cycles(params, layers) + params.START_CYCLES + params.PIPELINE_STAGES + 1


# --- data path ------------------------------------------------------------------------------------
def _requantize(acc: np.ndarray, layer: MlpLayer) -> np.ndarray:
    s = layer.shift
    y = (acc * layer.mult + ((1 << (s - 1)) if s else 0)) >> s
    if layer.relu:
        return np.clip(y, 0, (1 << layer.out_bits) - 1)
    return np.clip(y, -(1 << (layer.out_bits - 1)), (1 << (layer.out_bits - 1)) - 1)


def reference_forward(layers: Sequence[MlpLayer], weights: Sequence, biases: Sequence | None, x,
                      *, trace: bool = False):
    """The bit-exact integer forward pass (module docstring, part a). No range checks here.

    Args:
        layers: the layer settings.
        weights: per layer an int array (out_size, in_size).
        biases: per layer an int array (out_size,) or None (None for all: no biases); used only
            where ``layer.bias``.
        x: int array (N, layers[0].in_size), input codes as integers.
        trace: also return the per-layer accumulators and outputs.

    Returns:
        int64 (N, layers[-1].out_size); with ``trace``, ``(y, [(acc_l, y_l), ...])``.
    """
    a = np.asarray(x, dtype=np.int64)
    steps = []
    for l, layer in enumerate(layers):
        acc = a @ np.asarray(weights[l], dtype=np.int64).T
        if layer.bias:
            acc = acc + np.asarray(biases[l], dtype=np.int64)[None, :]
        a = _requantize(acc, layer)
        steps.append((acc, a))
    return (a, steps) if trace else a


@dataclass(frozen=True)
class MlpResult:
    """What the model predicts for one run of N vectors.

    Attributes:
        accept_cycles: int64 (N,), cycle of each input transfer.
        out_cycles: int64 (N,), cycle of each output transfer (outputs leave in input order).
        outputs: int64 (N, out_size of the last layer), output values (signed or unsigned).
        payloads: N output payloads (``pack_vector`` over ``max_out`` elements, 0 past out_size).
        cycles: last output transfer cycle + 1 (0 for no vectors).
    """

    accept_cycles: np.ndarray
    out_cycles: np.ndarray
    outputs: np.ndarray
    payloads: list[int]
    cycles: int


class MlpEngineTLM:
    """Model of one ``MlpEngine`` instance under one configuration.

    Args:
        params: the engine parameters.
        layers: the run-time configuration, validated by ``params.check_layers``.
        weights: per layer an int array (out_size, in_size) of signed ``weight_bits`` codes.
        biases: per layer an int array (out_size,) of signed ``bias_bits`` codes, or None; required
            for layers with ``bias``. None: no layer may use a bias.

    Raises:
        hw.config.ConfigError: a bad layer configuration. ValueError: a weight or bias of the
            wrong shape or out of range, naming the layer, the position and the value.
    """

    def __init__(self, params: MlpEngineParams, layers: Sequence[MlpLayer], weights: Sequence,
                 biases: Sequence | None = None) -> None:
        self.params = params
        self.layers = params.check_layers(list(layers))
        if len(weights) != len(self.layers):
            raise ValueError(f"weights has {len(weights)} matrices for {len(self.layers)} layers")
        self.weights = []
        self.biases = []
        for l, layer in enumerate(self.layers):
            w = np.asarray(weights[l])
            if w.shape != (layer.out_size, layer.in_size) or not np.issubdtype(w.dtype, np.integer):
                raise ValueError(f"weights[{l}] must be an integer array of shape (out_size, in_size) = "
                                 f"{(layer.out_size, layer.in_size)}, not {w.dtype} {w.shape}")
            check_range(w, -(1 << (layer.weight_bits - 1)), (1 << (layer.weight_bits - 1)) - 1,
                        f"weights[{l}]", f"signed {layer.weight_bits}-bit")
            self.weights.append(w.astype(np.int64))
            b = None if biases is None else biases[l]
            if layer.bias:
                if b is None:
                    raise ValueError(f"layers[{l}] adds a bias but biases[{l}] is None")
                b = np.asarray(b)
                if b.shape != (layer.out_size,) or not np.issubdtype(b.dtype, np.integer):
                    raise ValueError(f"biases[{l}] must be an integer array of shape ({layer.out_size},), "
                                     f"not {b.dtype} {b.shape}")
                half = 1 << (params.bias_bits - 1)
                check_range(b, -half, half - 1, f"biases[{l}]", f"signed {params.bias_bits}-bit")
                b = b.astype(np.int64)
            self.biases.append(b if layer.bias else None)
        self.T = vector_cycles(params, self.layers)
        self._issue = [layer_cycles(params, in_size=x.in_size, out_size=x.out_size, weight_bits=x.weight_bits,
                                    act_bits=x.act_bits) for x in self.layers]

    # --- data path --------------------------------------------------------------------------------
    def check_inputs(self, vectors) -> np.ndarray:
        """Validate input codes: int (N, in_size of layer 0) in the layer-0 activation range."""
        first = self.layers[0]
        x = np.asarray(vectors)
        if x.ndim != 2 or x.shape[1] != first.in_size or not np.issubdtype(x.dtype, np.integer):
            raise ValueError(f"vectors must be an integer array of shape (N, {first.in_size}), not {x.dtype} {x.shape}")
        ab = first.act_bits
        lo, hi = (-(1 << (ab - 1)), (1 << (ab - 1)) - 1) if first.act_signed else (0, (1 << ab) - 1)
        check_range(x, lo, hi, "vectors", f"{'signed' if first.act_signed else 'unsigned'} {ab}-bit")
        return x.astype(np.int64)

    def forward(self, vectors, *, trace: bool = False):
        """Outputs of the last layer, int64 (N, out_size); see ``reference_forward``."""
        return reference_forward(self.layers, self.weights, self.biases, self.check_inputs(vectors), trace=trace)

    def payload(self, output) -> int:
        """Output payload of one output vector (``max_out`` elements of ``max_act_bits``, 0 past the end)."""
        return pack_vector(output, self.params.max_act_bits)

    # --- timing -----------------------------------------------------------------------------------
    def schedule(self, offer_cycles, ready=None) -> tuple[np.ndarray, np.ndarray]:
        """Transfer cycles of N vectors, stepping the RTL's control state one cycle at a time.

        Args:
            offer_cycles: int (N,), the first cycle vector i may be offered (see the module docstring).
            ready: bool (R,), output ready per cycle; cycles >= R are ready. None: always ready.

        Returns:
            ``(accept_cycles, out_cycles)``, int64 (N,).

        State mirrored from ``hw.mlp_engine``: the input register (full / empty), the issue unit
        (idle, issuing layer l with its remaining issue cycles, or waiting for layer l's last tile
        to leave the pipeline), the layer ends travelling down the PIPELINE_STAGES registers, the
        output FIFO and its credits (vectors loaded whose output has not transferred yet).
        """
        p = self.params
        offers = check_offers(offer_cycles)
        ready_at = ReadyPattern(ready)
        n = len(offers)
        last_layer = len(self.layers) - 1
        stages, depth = p.PIPELINE_STAGES, p.OUT_FIFO_DEPTH
        accept = np.full(n, -1, dtype=np.int64)
        out = np.full(n, -1, dtype=np.int64)
        IDLE, ISSUING, WAITING = 0, 1, 2
        mode, vec, layer, left = IDLE, -1, 0, 0
        in_full, in_vec = False, -1
        ends: deque[tuple[int, int, bool]] = deque()  # (cycle in stage 4, vector, last layer)
        fifo: deque[tuple[int, int]] = deque()  # (first cycle visible at the output, vector)
        credits = 0
        nxt = done = 0
        t = 0
        while done < n:
            o_fire = bool(fifo) and fifo[0][0] <= t and ready_at(t)
            vec_last = mode == ISSUING and left == 1 and layer == last_layer
            load = in_full and (mode == IDLE or vec_last) and credits < depth
            in_fire = nxt < n and offers[nxt] <= t and (not in_full or load)
            end = ends[0] if ends and ends[0][0] == t else None
            # --- closing edge of cycle t ---
            if mode == ISSUING:
                if left == 1:
                    ends.append((t + stages, vec, layer == last_layer))
                    mode = IDLE if layer == last_layer else WAITING
                else:
                    left -= 1
            if end is not None:
                ends.popleft()
                if end[2]:
                    fifo.append((t + 1, end[1]))
                else:  # layer outputs now in the activation buffer: issue the next layer
                    mode, layer = ISSUING, layer + 1
                    left = self._issue[layer]
            if load:
                mode, vec, layer, left = ISSUING, in_vec, 0, self._issue[0]
                in_full = False
            if in_fire:
                accept[nxt] = t
                in_full, in_vec = True, nxt
                nxt += 1
            if o_fire:
                out[fifo.popleft()[1]] = t
                done += 1
            credits += int(load) - int(o_fire)
            t += 1
        return accept, out

    def run(self, vectors, offer_cycles=None, ready=None) -> MlpResult:
        """Predict a whole run: outputs (``forward``) and transfer cycles (``schedule``).

        Args:
            vectors: int (N, in_size of layer 0), input codes.
            offer_cycles: int (N,); default all zeros (a source that is always valid).
            ready: bool (R,) output ready pattern; default always ready.
        """
        x = self.check_inputs(vectors)
        n = len(x)
        offer_cycles = check_offers(offer_cycles, n, "vectors")
        y = reference_forward(self.layers, self.weights, self.biases, x)
        accept, out = self.schedule(offer_cycles, ready)
        payloads = [self.payload(row) for row in y]
        return MlpResult(accept, out, y, payloads, int(out.max()) + 1 if n else 0)
