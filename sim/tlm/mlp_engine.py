"""Cycle-for-cycle transaction-level model of ``hw.mlp_engine.MlpEngine``, plus its closed-form timing.

Imports the engine's params (``hw.mlp_engine.params``) and NumPy only (no Amaranth). Four parts:

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
    ready in cycle t (ready past the end). ``schedule`` steps the RTL's control state cycle by cycle
    (``EngineTiming``, which ``sim.tlm.top`` also steps inside the accelerator top).

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

(d) Two weight banks (``weight_banks: 2``, KiloNeRF: one tiny MLP per grid cell): ``MlpCellsTLM`` runs a
    sequence of cell *visits*, visit k a group of n_k >= 1 vectors of one cell (its own layers, weights
    and biases; the input's ``last`` bit marks each group's last vector), with the same stepping
    (``_step``) as ``MlpEngineTLM`` plus the bank states and the loader. Bank b is EMPTY (``banks.free``
    bit b high), FULL from the cycle after a commit to it, BUSY from the cycle after its group's last
    vector loads, and EMPTY again from E + ``BANK_RELEASE`` (E + 5), E that vector's last issue cycle:
    its last tile is then past stage 4, the last reader of the bank's settings. A vector loads (the
    single-bank condition) only while the current bank is FULL; the current bank starts at 0 and
    flips with each group's last load. The loader, deterministic given ``load_cycles`` (so that the
    testbench's loader and this model agree), fills visit k into bank k % 2::

        t_k = min{t >= c_{k-1} + 1 : banks.free bit (k % 2) high in cycle t}   (c_{-1} = -1)
        writes of cell k's ``cell_words`` in distinct cycles of t_k + 1 .. t_k + load_cycles[k]
        c_k = t_k + 1 + load_cycles[k]             the commit pulse (commit, commit_bank = k % 2)

    ``load_cycles[k]`` >= the words: the extra cycles stand for the memory system's latency and gaps.
    At full rate (``cell_schedule``, ``cell_stream_cycles``) a visit costs
    ``max(n_k T_k, load_{k+1} + 2..7)`` cycles: exactly, by a max-plus recurrence over the visits.
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
    "MlpEngineTLM", "EngineTiming", "MlpResult", "reference_forward", "layer_cycles", "vector_cycles", "vector_latency",
    "stream_cycles", "pack_vector", "unpack_vector", "config_word", "weight_writes", "bias_writes", "check_range",
    "MlpCellsTLM", "CellsResult", "CellTimes", "cell_words", "cell_writes", "cell_schedule", "cell_stream_cycles",
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
        output FIFO and its credits (vectors loaded whose output has not transferred yet); the
        stepping is ``_step``, which ``MlpCellsTLM`` shares.

        Raises:
            ValueError: the engine has two weight banks (``MlpCellsTLM`` models those).
        """
        if self.params.banked:
            raise ValueError("an engine with weight_banks 2 runs cell visits: use MlpCellsTLM")
        offers = check_offers(offer_cycles)
        steps = _step(self.params, [self._issue] * len(offers), offers, ready)
        return steps.accept, steps.out

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


# --- the control state, stepped one cycle at a time (one bank or two) -------------------------------
@dataclass
class _Steps:
    """What ``_step`` returns: transfer cycles, and with two banks the loader's and the banks' cycles."""

    accept: np.ndarray
    out: np.ndarray
    seen: np.ndarray | None = None
    commit: np.ndarray | None = None
    release: np.ndarray | None = None
    free_trace: list[tuple[int, int]] | None = None


class EngineTiming:
    """The engine's control state (``hw.mlp_engine.rtl``), stepped one cycle at a time: what ``_step`` runs for
    ``MlpEngineTLM`` and ``MlpCellsTLM``, and what ``sim.tlm.top`` composes with the other units of the top.

    State: the input register (full / empty), the issue unit (idle, issuing layer l with its remaining
    issue cycles, or waiting for layer l's last tile to leave the pipeline), the layer ends travelling
    down the ``PIPELINE_STAGES`` registers, the output FIFO and its credits (vectors loaded whose output
    has not transferred yet); with two banks also the banks' states and the loader of part (d). In a
    cycle, ``in_ready`` and ``out_valid`` depend on the state alone (``i.ready`` = input register empty
    or being loaded); ``clock(in_fire, out_fire)`` is the edge that closes the cycle. Vectors are numbered
    in input order (outputs leave in that order).

    Args:
        params: the engine parameters.
        issue_of: vector index -> the issue cycles of each of its layers (N_l).
        last: two banks: per vector, whether it ends its cell group (the input's ``last`` bit); None:
            one bank (loads wait for nothing but the issue unit and a credit).
        loads: two banks: per visit (cell group), the loader's ``load_cycles`` (module docstring, part d).

    With two banks, ``seen``, ``commit`` and ``release`` (int64 per visit) and ``free_trace`` record the
    loader's and the banks' cycles (``_Steps``).
    """

    IDLE, ISSUING, WAITING = 0, 1, 2

    def __init__(self, params: MlpEngineParams, issue_of, *, last: Sequence[bool] | None = None,
                 loads: Sequence[int] | None = None) -> None:
        self.issue_of = issue_of
        self.banked = last is not None
        self.stages, self.depth = params.PIPELINE_STAGES, params.OUT_FIFO_DEPTH
        self.t = 0
        self.mode, self.vec, self.layer, self.left, self.cur_issue, self.final_layer = self.IDLE, -1, 0, 0, (), -1
        self.in_full, self.in_vec, self.n_in = False, -1, 0
        self.ends: deque[tuple] = deque()  # (cycle in stage 4, vector, last layer[, bank, ends its group])
        self.fifo: deque[tuple[int, int]] = deque()  # (first cycle visible at the output, vector)
        self.credits = 0
        self._begun = -1  # the cycle whose start (the loader's decisions) has been evaluated
        self._commit_bank = -1
        if self.banked:
            self.last, self.loads = last, loads
            visits = len(loads)
            self.seen = np.full(visits, -1, dtype=np.int64)
            self.commit = np.full(visits, -1, dtype=np.int64)
            self.release = np.full(visits, -1, dtype=np.int64)
            self.full, self.busy, self.cur = [False, False], [False, False], 0
            self.vbank, self.vglast = 0, False  # the issuing vector's bank and group end
            self.group_of = np.cumsum([0] + [int(x) for x in last[:-1]])  # visit of each vector
            self.k_load, self.look_from, self.commit_at = 0, 0, -1  # loader: visit being loaded, ...
            self.free_trace: list[tuple[int, int]] = []
            self.free_prev = -1

    def _begin(self) -> None:
        """The start of the current cycle with two banks: ``banks.free`` and the loader's decisions."""
        if self._begun == self.t:
            return
        self._begun, t = self.t, self.t
        self._commit_bank = -1
        if not self.banked:
            return
        free = sum(1 << b for b in range(2) if not self.full[b] and not self.busy[b])
        if free != self.free_prev:
            self.free_trace.append((t, free))
            self.free_prev = free
        if self.k_load < len(self.loads):
            if self.commit_at < 0:
                if t >= self.look_from and free >> (self.k_load % 2) & 1:
                    self.seen[self.k_load] = t  # writes in cycles t + 1 .. t + loads[k], then the commit
                    self.commit_at = t + 1 + int(self.loads[self.k_load])
            elif t == self.commit_at:
                self.commit[self.k_load] = t
                self._commit_bank = self.k_load % 2
                self.k_load, self.look_from, self.commit_at = self.k_load + 1, t + 1, -1

    def _load(self) -> bool:
        vec_last = self.mode == self.ISSUING and self.left == 1 and self.layer == self.final_layer
        return (self.in_full and (self.mode == self.IDLE or vec_last) and self.credits < self.depth
                and (not self.banked or self.full[self.cur]))

    @property
    def in_ready(self) -> bool:
        """``i.ready``: the input register empty, or loaded into the activation buffer in this cycle."""
        self._begin()
        return not self.in_full or self._load()

    @property
    def out_valid(self) -> bool:
        """``o.valid``: the output FIFO holds a finished vector."""
        self._begin()
        return bool(self.fifo) and self.fifo[0][0] <= self.t

    def clock(self, in_fire: bool, out_fire: bool) -> None:
        """The edge closing the current cycle: an input transfer (``in_fire``, only while ``in_ready``) and an
        output transfer (``out_fire``, only while ``out_valid``)."""
        self._begin()
        t, banked = self.t, self.banked
        load = self._load()
        end = self.ends[0] if self.ends and self.ends[0][0] == t else None
        if self.mode == self.ISSUING:
            if self.left == 1:
                final = self.layer == self.final_layer
                self.ends.append((t + self.stages, self.vec, final, self.vbank, final and self.vglast) if banked
                                 else (t + self.stages, self.vec, final))
                self.mode = self.IDLE if final else self.WAITING
            else:
                self.left -= 1
        if end is not None:
            self.ends.popleft()
            if end[2]:
                self.fifo.append((t + 1, end[1]))
                if banked and end[4]:  # the group's last vector leaves stage 4: its bank is free from cycle t + 1
                    self.busy[end[3]] = False
                    self.release[self.group_of[end[1]]] = t + 1
            else:  # layer outputs now in the activation buffer: issue the next layer
                self.mode, self.layer = self.ISSUING, self.layer + 1
                self.left = self.cur_issue[self.layer]
        if load:
            self.cur_issue = self.issue_of(self.in_vec)
            self.mode, self.vec, self.layer = self.ISSUING, self.in_vec, 0
            self.left, self.final_layer = self.cur_issue[0], len(self.cur_issue) - 1
            self.in_full = False
            if banked:
                self.vbank, self.vglast = self.cur, bool(self.last[self.in_vec])
                if self.vglast:
                    self.full[self.cur], self.busy[self.cur], self.cur = False, True, self.cur ^ 1
        if self._commit_bank >= 0:
            self.full[self._commit_bank] = True
        if in_fire:
            self.in_full, self.in_vec = True, self.n_in
            self.n_in += 1
        if out_fire:
            self.fifo.popleft()
        self.credits += int(load) - int(out_fire)
        self.t += 1


def _step(params: MlpEngineParams, issue: Sequence[Sequence[int]], offers: np.ndarray, ready, *,
          last: Sequence[bool] | None = None, loads: Sequence[int] | None = None) -> _Steps:
    """Step the RTL's control state (``EngineTiming``) from cycle 0 until every output has transferred.

    Args:
        issue: per vector, the issue cycles of each of its layers (N_l).
        offers: int64 (N,), the first cycle each vector may be offered.
        ready: output ready per cycle (``ReadyPattern``'s argument).
        last: two banks: per vector, whether it ends its cell group (the input's ``last`` bit); None:
            one bank (loads wait for nothing but the issue unit and a credit).
        loads: two banks: per visit (cell group), the loader's ``load_cycles`` (module docstring, part d).

    The loader of part (d) is modelled here too: it is deterministic given ``loads`` and the banks' states.
    """
    ready_at = ReadyPattern(ready)
    n = len(offers)
    accept = np.full(n, -1, dtype=np.int64)
    out = np.full(n, -1, dtype=np.int64)
    state = EngineTiming(params, issue.__getitem__, last=last, loads=loads)
    nxt = done = 0
    t = 0
    while done < n:
        o_fire = state.out_valid and ready_at(t)
        in_fire = nxt < n and offers[nxt] <= t and state.in_ready
        state.clock(in_fire, o_fire)
        if in_fire:
            accept[nxt] = t
            nxt += 1
        if o_fire:
            out[done] = t
            done += 1
        t += 1
    if not state.banked:
        return _Steps(accept, out)
    return _Steps(accept, out, state.seen, state.commit, state.release, state.free_trace)


# --- two weight banks: the loader's words, the closed form, the model ------------------------------
def cell_words(params: MlpEngineParams, layers: Sequence[MlpLayer]) -> int:
    """Words a loader writes for one cell (one per cycle at most): one ``cfg`` word per layer, the layer
    count, ``sum_l ceil(out_l / R) * ceil(in_l / C) * weight_bits_l`` weight bit-planes and
    ``ceil(out_l / R)`` bias words per layer with a bias (``cell_writes`` lists them)."""
    R, C = params.rows, params.cols
    weights = sum(-(-x.out_size // R) * -(-x.in_size // C) * x.weight_bits for x in layers)
    return len(layers) + 1 + weights + sum(-(-x.out_size // R) for x in layers if x.bias)


def cell_writes(params: MlpEngineParams, layers: Sequence[MlpLayer], weights: Sequence, biases: Sequence | None,
                *, padding: np.random.Generator | None = None) -> list[tuple]:
    """The writes that load one cell into a bank, ``cell_words`` of them, in the order a loader issues them:
    ``("cfg", layer, config_word)`` per layer, ``("layers", L)``, ``("weights", layer, row_tile, col_tile,
    plane, data)`` (``weight_writes``; ``padding`` as there), ``("bias", layer, row_tile, data)`` per layer
    with a bias. The bank is the loader's (``bank`` field of each port)."""
    out: list[tuple] = [("cfg", l, config_word(params, x)) for l, x in enumerate(layers)]
    out.append(("layers", len(layers)))
    for l, x in enumerate(layers):
        out += [("weights", *w) for w in weight_writes(params, l, weights[l], x.weight_bits, padding=padding)]
    for l, x in enumerate(layers):
        if x.bias:
            out += [("bias", *b) for b in bias_writes(params, l, biases[l])]
    return out


def _per_visit(name: str, values, count: int, lo: int) -> np.ndarray:
    a = np.broadcast_to(np.asarray(values), (count,)) if np.ndim(values) == 0 else np.asarray(values)
    if a.shape == (count,) == (0,):
        return np.zeros(0, dtype=np.int64)
    if a.shape != (count,) or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be an integer or {count} integers (one per visit), not {values!r}")
    if count and a.min() < lo:
        k = int(np.argmin(a))
        raise ValueError(f"{name}[{k}] must be an integer >= {lo}, not {int(a[k])}")
    return a.astype(np.int64)


@dataclass(frozen=True)
class CellTimes:
    """The closed form's cycles of each cell visit k (``cell_schedule``), int64 (K,) each.

    Attributes:
        seen: t_k, the cycle the loader sees visit k's bank free.
        commit: c_k, its commit pulse (writes in cycles t_k + 1 .. t_k + load_k).
        first_load: F_k, the load (start) of its first vector.
        last_issue: E_k, the last issue cycle of its last vector.
        cycles: last output transfer + 1: E_{K-1} + 6.
    """

    seen: np.ndarray
    commit: np.ndarray
    first_load: np.ndarray
    last_issue: np.ndarray
    cycles: int


def cell_schedule(params: MlpEngineParams, counts, T, loads) -> CellTimes:
    """Cycles of a sequence of cell visits at full rate on an engine with two weight banks, no simulation.

    Full rate: every vector offered from cycle 0 (back to back, each cell group's last one with ``last``),
    the output always ready, both banks empty at cycle 0, the loader of the module docstring (part d).
    With R = ``BANK_RELEASE`` = 5 and terms with a negative index left out::

        t_k = max(c_{k-1} + 1, E_{k-2} + R)      (t_0 = 0)   the loader sees bank k % 2 free
        c_k = t_k + 1 + load_k                               commit
        F_k = max(E_{k-1}, c_k + 1)                          first vector of visit k loads
        E_k = F_k + n_k * T_k                                its last vector's last issue cycle
        cycles = E_{K-1} + 6

    A visit therefore costs ``V_k = F_{k+1} - F_k = max(n_k T_k, c_{k+1} + 1 - F_k)`` with
    ``max(n_k T_k, load_{k+1} + 2) <= V_k <= max(n_k T_k, load_{k+1} + 7)``: no switch cycle while
    compute hides the next load (the next cell's first vector loads on the last issue cycle), otherwise
    the load plus 2 (loader ahead) to 7 (loader waited for the bank of visit k - 1 to drain) cycles.

    Args:
        counts: n_k >= 1 vectors per visit, (K,).
        T: cycles per vector of each visit's cell (``vector_cycles``), one integer or (K,).
        loads: ``load_cycles`` of each visit (>= ``cell_words`` of its cell), one integer or (K,).

    Raises:
        ValueError: an argument of the wrong length or below its minimum, naming it; one weight bank.
    """
    if not params.banked:
        raise ValueError(f"cell visits need weight_banks 2, not {params.weight_banks}")
    n = _per_visit("counts", counts, len(np.atleast_1d(counts)), 1)
    K = len(n)
    T, loads = _per_visit("T", T, K, 1), _per_visit("loads", loads, K, 1)
    seen, commit, first, last = (np.zeros(K, dtype=np.int64) for _ in range(4))
    R = params.BANK_RELEASE
    for k in range(K):
        t = 0 if k == 0 else int(commit[k - 1]) + 1
        if k >= 2:
            t = max(t, int(last[k - 2]) + R)
        seen[k], commit[k] = t, t + 1 + int(loads[k])
        first[k] = max(int(last[k - 1]) if k else 0, int(commit[k]) + 1)
        last[k] = first[k] + int(n[k]) * int(T[k])
    cycles = int(last[-1]) + params.START_CYCLES + params.PIPELINE_STAGES if K else 0
    return CellTimes(seen, commit, first, last, cycles)


def cell_stream_cycles(params: MlpEngineParams, counts, T, loads) -> int:
    """Total cycles (last output transfer + 1) of cell visits at full rate: ``cell_schedule(...).cycles``.

    ``counts`` (n_k), ``T`` (T_k) and ``loads`` (load_k) per visit as in ``cell_schedule``; 0 for no visits.
    """
    return cell_schedule(params, counts, T, loads).cycles


@dataclass(frozen=True)
class CellsResult:
    """What ``MlpCellsTLM.run`` predicts for K cell visits of N vectors in all (vectors in visit order).

    Attributes:
        accept_cycles, out_cycles: int64 (N,), input and output transfer cycles.
        outputs: per visit int64 (n_k, out_size of its cell's last layer).
        last: bool (N,), the ``last`` bit of each vector (True for each visit's last vector).
        payloads: N output payloads (``MlpCellsTLM.payload``: the vector, ``last`` above it).
        cycles: last output transfer cycle + 1.
        seen, commit: int64 (K,), the cycle the loader saw visit k's bank free, and its commit pulse.
        release: int64 (K,), the first cycle visit k's bank reads free again (its group's last vector's
            last issue cycle + ``BANK_RELEASE``).
        free_trace: ``[(cycle, banks.free), ...]`` at cycle 0 and every change, up to the last output.
    """

    accept_cycles: np.ndarray
    out_cycles: np.ndarray
    outputs: list[np.ndarray]
    last: np.ndarray
    payloads: list[int]
    cycles: int
    seen: np.ndarray
    commit: np.ndarray
    release: np.ndarray
    free_trace: list[tuple[int, int]]


class MlpCellsTLM:
    """Model of an ``MlpEngine`` with two weight banks running a sequence of cell visits (KiloNeRF).

    Args:
        params: engine parameters with ``weight_banks`` 2.
        cells: one ``MlpEngineTLM`` per distinct cell (its layers, weights and biases; built on ``params``);
            visits name cells by index, so a cell visited twice is loaded twice.

    Raises:
        ValueError: one weight bank, or a cell built on other params.
    """

    def __init__(self, params: MlpEngineParams, cells: Sequence[MlpEngineTLM]):
        if not params.banked:
            raise ValueError(f"MlpCellsTLM needs weight_banks 2, not {params.weight_banks}")
        self.params = params
        self.cells = list(cells)
        for j, cell in enumerate(self.cells):
            if not isinstance(cell, MlpEngineTLM) or cell.params != params:
                raise ValueError(f"cells[{j}] must be an MlpEngineTLM on the same params, not {cell!r}")
        self.words = [cell_words(params, cell.layers) for cell in self.cells]

    def _visits(self, visits) -> list[int]:
        return [check_int(f"visits[{k}]", v, 0, len(self.cells) - 1) for k, v in enumerate(visits)]

    def load_cycles(self, visits, load_cycles=None) -> np.ndarray:
        """Each visit's ``load_cycles``, checked to be at least its cell's ``cell_words`` (one word per
        cycle); None: exactly the words (a loader with no memory latency or gaps)."""
        visits = self._visits(visits)
        words = np.array([self.words[v] for v in visits], dtype=np.int64)
        if load_cycles is None:
            return words
        loads = _per_visit("load_cycles", load_cycles, len(visits), 1)
        short = np.flatnonzero(loads < words)
        if len(short):
            k = int(short[0])
            raise ValueError(f"load_cycles[{k}] must be an integer >= {int(words[k])} (the words of cell "
                             f"{visits[k]}), not {int(loads[k])}")
        return loads

    def payload(self, output, last: bool) -> int:
        """Output payload: ``max_out`` elements of ``max_act_bits`` (0 past the end), ``last`` above them."""
        p = self.params
        return pack_vector(output, p.max_act_bits) | (int(last) << (p.max_out * p.max_act_bits))

    def schedule(self, visits, counts, offer_cycles=None, ready=None, load_cycles=None) -> _Steps:
        """Transfer cycles (and the loader's and banks' cycles) of the visits, by ``_step``.

        Args:
            visits: cell index per visit, (K,); counts: n_k >= 1 vectors per visit, (K,).
            offer_cycles: int (N,) over all vectors in visit order, N = sum n_k; default all 0.
            ready: bool output ready per cycle; default always ready.
            load_cycles: per visit (see ``load_cycles``).
        """
        visits = self._visits(visits)
        counts = _per_visit("counts", counts, len(visits), 1)
        loads = self.load_cycles(visits, load_cycles)
        n = int(counts.sum())
        offers = check_offers(offer_cycles, n, "vectors")
        issue = [self.cells[v]._issue for v, c in zip(visits, counts) for _ in range(int(c))]
        last = [i == c - 1 for c in counts for i in range(int(c))]
        return _step(self.params, issue, offers, ready, last=last, loads=loads)

    def run(self, visits, vectors, offer_cycles=None, ready=None, load_cycles=None) -> CellsResult:
        """Predict a whole run: payloads and every transfer cycle.

        Args:
            visits: cell index per visit, (K,).
            vectors: per visit an int array (n_k >= 1, in_size of its cell's layer 0) of input codes.
            offer_cycles, ready, load_cycles: as in ``schedule``.
        """
        visits = self._visits(visits)
        if len(vectors) != len(visits):
            raise ValueError(f"vectors has {len(vectors)} groups for {len(visits)} visits")
        outputs = [self.cells[v].forward(x) for v, x in zip(visits, vectors)]
        counts = [len(y) for y in outputs]
        steps = self.schedule(visits, counts, offer_cycles, ready, load_cycles)
        last = np.array([i == c - 1 for c in counts for i in range(c)], dtype=bool)
        payloads = [self.payload(row, i == len(y) - 1) for y in outputs for i, row in enumerate(y)]
        return CellsResult(steps.accept, steps.out, outputs, last, payloads, int(steps.out.max()) + 1, steps.seen,
                           steps.commit, steps.release, steps.free_trace)
