"""Bit-serial MLP engine (BISMO / Stripes family), Amaranth 0.5.

An R x C array of dot-product units. Each cycle it takes one weight bit-plane (R x C bits: one bit of
R neurons' weights for C input elements) and one activation bit-plane (C bits), ANDs them, counts the
ones per row and adds the counts, shifted by the two planes' significance, to R accumulators. In two's
complement the weight MSB plane, and the activation MSB plane when the layer's activations are signed,
have negative significance. A layer's cost thus scales with weight bits x activation bits, which is
what makes mixed precision pay. Layer sizes, bitwidths and requantization are run-time settings
(``hw.mlp_engine.params.MlpLayer``) up to the generated maxima (``MlpEngineParams``).

Interfaces (all in the ``sync`` domain; R = rows, C = cols):

* ``i``: ``stream.Signature(vector_layout(max_in, max_act_bits))``: one whole input vector per
  transfer, element k in bits [k * max_act_bits, (k + 1) * max_act_bits), the layer-0 activation code
  in its low ``act_bits`` (two's complement when ``act_signed``); the bits above and the elements at
  and past layer 0's ``in_size`` are ignored (the latter are stored as 0).
* ``o``: ``stream.Signature(vector_layout(max_out, max_act_bits))``: the last layer's output vector,
  each element ``y mod 2^max_act_bits`` (so signed outputs are sign-extended), 0 past ``out_size``.
  Outputs leave in input order.
* ``cfg`` (``ConfigWriteSignature``): while ``en``, layer ``layer``'s settings are written from
  ``data`` (``config_layout``: fields of ``MlpEngineParams.config_fields``); while ``layers_en``, the
  layer count from ``layers``.
* ``weights`` (``WeightWriteSignature``): while ``en``, the weight memory word of (``layer``,
  ``row_tile``, ``col_tile``, ``plane``) is written from ``data``: bit r * C + c is bit ``plane`` of
  W[row_tile * R + r, col_tile * C + c] (``sim.tlm.mlp_engine.weight_writes`` builds these words).
  Write every tile a layer uses; positions outside the matrix may hold anything (they meet only
  zero activations, and neurons past ``out_size`` are dropped).
* ``bias`` (``BiasWriteSignature``): while ``en``, the R biases of (``layer``, ``row_tile``), field r
  (``bias_bits``, two's complement) for neuron row_tile * R + r.

Write the configuration, weights and biases while the engine is idle (no vector in flight); settings
written while vectors are in flight take effect at once and corrupt them. Memory read ports are
non-transparent (a read in the cycle of a write to the same word sees the old word; irrelevant when
loading while idle, and the TLM assumes loading while idle). With two weight banks (below) a loader
instead writes one bank while the engine computes from the other.

TWO WEIGHT BANKS (``weight_banks: 2``; KiloNeRF: one tiny MLP per grid cell, samples grouped by cell).
The settings (per-layer words and the layer count), the weights and the biases exist once per bank.
The weight and bias memories hold both banks, the bank being the outermost address digit (word
``(((bank * max_layers + layer) * RT + rt) * CT + ct) * max_weight_bits + plane``, bias word
``(bank * max_layers + layer) * RT + rt``): the engine reads one bank at a time through one read port
and the loader writes through one write port, so a bank costs depth, not ports or a read mux, and
with a power-of-two depth the bank is the address MSB. The settings are registers, one set per bank.
Interfaces change as follows:

* ``i`` and ``o`` payloads are structs (``input_layout``, ``output_layout``): ``data`` (the vector, as
  above) and ``last`` (the bit above it): the vector is the last of its cell group; ``o.last`` is the
  input's, passed through, so that the consumer sees the group boundaries.
* ``cfg``, ``weights`` and ``bias`` have a ``bank`` field: the bank each write goes to.
* ``banks`` (``BankSignature``): in ``commit`` (a one-cycle pulse) and ``commit_bank``; out ``free``
  (2 bits, bit b high while bank b is EMPTY).

Bank protocol. Each bank is EMPTY, FULL or BUSY; both are EMPTY after reset and the current bank
(the one loads read) is 0. A loader writes a whole cell (settings, layer count, weights, biases; any
order, one word per port per cycle) into an EMPTY bank and then pulses ``commit`` with ``commit_bank``
(in the cycle of the last write at the earliest); the bank is FULL from the next cycle. Cells go into
banks 0, 1, 0, 1, ... in the order of their groups in the input stream. A vector loads only while the
current bank is FULL (besides the single-bank conditions); the load of a group's last vector makes the
bank BUSY and the other bank current. The bank becomes EMPTY when that vector's last row tile leaves
stage 4, the last stage that reads the bank (stage 0 the settings and the weight memory, stage 1 the
bias memory, stages 2-4 the settings: the bank travels down the pipeline with each tile): with E the
vector's last issue cycle, its last tile is in stage 4 in cycle E + 4, and ``free`` is high from cycle
E + 5 (``MlpEngineParams.BANK_RELEASE``). Writing or committing a bank that is not EMPTY is a driver
error (it corrupts vectors in flight or a committed cell).

Timing with two banks: per vector as above with its own cell's T; vector k of group (visit) g(k),
c_g the cycle of group g's commit pulse, m(g) the last vector of group g, and the loader of
``sim.tlm.mlp_engine`` (part d: it sees the bank free in cycle t_g, writes in t_g + 1 .. t_g + load_g,
commits in c_g = t_g + 1 + load_g)::

      a_k = max(offer_k, a_{k-1} + 1, l_{k-1})
      l_k = max(a_k + 1, l_{k-1} + T_{k-1}, o_{k-3} + 1, c_{g(k)} + 1)
      o_k = min{t >= max(l_k + T_k + 5, o_{k-1} + 1) : ready[t]}
      t_g = max(c_{g-1} + 1, l_{m(g-2)} + T_{m(g-2)} + 5)     (t_0 = 0; t_1 = c_0 + 1)

At full rate a group of n_g vectors therefore costs max(n_g T_g, load_{g+1} + 2..7) cycles: when
compute hides the next cell's load, the next group's first vector loads on the last issue cycle of
this one, with no switch cycle (``sim.tlm.mlp_engine.cell_schedule`` gives the exact sum).

Arithmetic per layer: ``acc = W x + b`` exactly (accumulator ``acc_bits``), then
``y = (acc * M + 2^(S-1)) >> S`` (arithmetic shift, round half up; no rounding term for S = 0,
computed as ``(((2 * acc * M) >> S) + 1) >> 1``), ReLU if enabled, clamp to ``out_bits`` (unsigned
after ReLU, signed otherwise). Layer l's output vector is layer l + 1's input.

Micro-architecture (modelled cycle for cycle by ``sim.tlm.mlp_engine``):

* An input register (one vector). The cycle after a vector is in it and the engine can start it
  (issue unit idle, or on the last issue cycle of the previous vector, and fewer than
  ``OUT_FIFO_DEPTH`` = 3 vectors in flight) it is *loaded* into the activation buffer (bit-plane
  registers), freeing the input register: ``i.ready`` = input register empty or being loaded.
* The issue unit (stage 0) walks, per layer, row tiles > column tiles > weight planes > activation
  planes (innermost), one (weight plane, activation plane) pair per cycle, addressing the weight
  memory (synchronous read) and selecting the activation plane's C bits.
* Stages: 1 weight plane arrives, AND + popcount per row; 2 accumulate (the first pair of a row
  tile starts from the bias or 0); 3 multiply the finished accumulators by M; 4 round, shift, ReLU,
  clamp, write the R results into the result buffer (``PIPELINE_STAGES`` = 4).
* When stage 4 holds a layer's last row tile, the merged result buffer becomes the activation
  buffer (inner layer; the issue unit, which has been waiting since the layer's last issue, starts
  the next layer the cycle after) or is pushed into the output FIFO (last layer; ``o.valid`` the
  cycle after). A vector holds an output credit from its load to its output transfer, so the FIFO
  never overflows and backpressure never stalls the pipeline: it stops loads, then the input.

THE CYCLE FORMULA. For a configuration of L layers, layer l with settings (in_l, out_l, wb_l, ab_l):

    N_l = ceil(out_l / R) * ceil(in_l / C) * wb_l * ab_l      issue cycles of layer l
    T   = sum_l N_l + 4 * (L - 1)                              issue span of a vector

(the 4 idle cycles between layers: the next layer reads this layer's outputs, complete only when
its last tile has left the 4-stage pipeline). A vector loaded at cycle l issues in cycles
l + 1 .. l + T and its output is valid from cycle l + T + 5. Hence:

* latency, input transfer at a to output transfer, engine idle and output ready: a + T + 6
  (load at a + 1, issue T cycles, 4 pipeline stages, output FIFO 1);
* initiation interval at full rate (inputs offered back to back, output always ready): T cycles per
  vector; n vectors offered from cycle 0 finish (last output transfer + 1) at n * T + 7;
* in general, with vector k offered from offer_k, ready[t] the output's ready, and terms with a
  negative index left out:

      a_k = max(offer_k, a_{k-1} + 1, l_{k-1})               input transfer (input register free)
      l_k = max(a_k + 1, l_{k-1} + T, o_{k-3} + 1)           load (issue unit free, a credit free)
      o_k = min{t >= max(l_k + T + 5, o_{k-1} + 1) : ready[t]}   output transfer

  Backpressure delays o_k; once three vectors wait for (or sit in) the output FIFO, the next load
  waits for o_{k-3}, the input register stays full, and ``i.ready`` stays low.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.common import StreamQueue, adder_tree, config_layout, index_range
from hw.mlp_engine.params import MlpEngineParams

__all__ = ["MlpEngine", "ConfigWriteSignature", "WeightWriteSignature", "BiasWriteSignature", "BankSignature",
           "vector_layout", "input_layout", "output_layout", "config_layout", "adder_tree", "index_range"]


def vector_layout(count: int, bits: int) -> data.ArrayLayout:
    """Stream payload: ``count`` raw ``bits``-bit elements (codes; signedness is a run-time setting)."""
    return data.ArrayLayout(unsigned(bits), count)


def _stream_layout(params: MlpEngineParams, count: int):
    vector = vector_layout(count, params.max_act_bits)
    if not params.banked:
        return vector
    return data.StructLayout({"data": vector, "last": unsigned(1)})


def input_layout(params: MlpEngineParams):
    """Payload of ``i``: ``vector_layout(max_in, max_act_bits)``; with two weight banks a struct of that
    (``data``, bits [0, max_in * max_act_bits)) and ``last`` (the bit above: last vector of its cell group)."""
    return _stream_layout(params, params.max_in)


def output_layout(params: MlpEngineParams):
    """Payload of ``o``: ``vector_layout(max_out, max_act_bits)``; with two weight banks a struct of that
    (``data``) and ``last``, the input vector's ``last`` passed through."""
    return _stream_layout(params, params.max_out)




def _bank_field(params: MlpEngineParams) -> dict:
    # The ``bank`` member exists only with two banks, so that a single-bank engine keeps its ports.
    return {"bank": Out(1)} if params.banked else {}


class ConfigWriteSignature(wiring.Signature):
    """Configuration port, driver's view: ``en``, ``layer``, ``data`` (``config_layout``); ``layers_en``, ``layers``;
    with two weight banks also ``bank`` (the bank both writes go to)."""

    def __init__(self, params: MlpEngineParams):
        super().__init__({
            "en": Out(1),
            "layer": Out(index_range(params.max_layers)),
            "data": Out(config_layout(params)),
            "layers_en": Out(1),
            "layers": Out(range(params.max_layers + 1)),
            **_bank_field(params),
        })


class WeightWriteSignature(wiring.Signature):
    """Weight-load port, driver's view: ``en``, ``layer``, ``row_tile``, ``col_tile``, ``plane``,
    ``data`` (R * C bits); with two weight banks also ``bank``."""

    def __init__(self, params: MlpEngineParams):
        super().__init__({
            "en": Out(1),
            "layer": Out(index_range(params.max_layers)),
            "row_tile": Out(index_range(params.row_tiles)),
            "col_tile": Out(index_range(params.col_tiles)),
            "plane": Out(index_range(params.max_weight_bits)),
            "data": Out(params.rows * params.cols),
            **_bank_field(params),
        })


class BiasWriteSignature(wiring.Signature):
    """Bias-load port, driver's view: ``en``, ``layer``, ``row_tile``, ``data`` (R fields of ``bias_bits``);
    with two weight banks also ``bank``."""

    def __init__(self, params: MlpEngineParams):
        super().__init__({
            "en": Out(1),
            "layer": Out(index_range(params.max_layers)),
            "row_tile": Out(index_range(params.row_tiles)),
            "data": Out(params.rows * params.bias_bits),
            **_bank_field(params),
        })


class BankSignature(wiring.Signature):
    """Bank port of an engine with two weight banks, loader's view: ``commit`` (pulse: bank ``commit_bank``
    now holds a whole cell), ``commit_bank``; ``free`` (2 bits, bit b: bank b is empty and may be written).

    Args:
        params: ``MlpEngineParams`` with ``weight_banks`` 2.

    Raises:
        ValueError: the params have one bank.
    """

    def __init__(self, params: MlpEngineParams):
        if not params.banked:
            raise ValueError(f"BankSignature needs weight_banks 2, not {params.weight_banks}")
        super().__init__({"commit": Out(1), "commit_bank": Out(1), "free": In(2)})



class MlpEngine(wiring.Component):
    """Bit-serial MLP engine; see the module docstring for interfaces, arithmetic and timing.

    Args:
        params: ``MlpEngineParams`` (keyword-only).

    Raises:
        TypeError: ``params`` is not an ``MlpEngineParams``.
    """

    def __init__(self, *, params: MlpEngineParams):
        if not isinstance(params, MlpEngineParams):
            raise TypeError(f"params must be an MlpEngineParams, not {params!r}")
        self._params = params
        super().__init__({
            "i": In(stream.Signature(input_layout(params))),
            "o": Out(stream.Signature(output_layout(params))),
            "cfg": In(ConfigWriteSignature(params)),
            "weights": In(WeightWriteSignature(params)),
            "bias": In(BiasWriteSignature(params)),
            **({"banks": In(BankSignature(params))} if params.banked else {}),
        })

    @property
    def params(self) -> MlpEngineParams:
        return self._params

    def elaborate(self, platform):
        p = self._params
        m = Module()
        R, C, RT, CT = p.rows, p.cols, p.row_tiles, p.col_tiles
        WB, AB, LMAX = p.max_weight_bits, p.max_act_bits, p.max_layers
        bb, depth = p.bias_bits, p.OUT_FIFO_DEPTH
        # Two weight banks: every bank-dependent piece below has a banked branch; with one bank the
        # statements are exactly those of the single-bank engine (its Verilog is unchanged).
        banked = p.banked

        def named(expr, name):
            """A named combinational copy of an expression with several readers, so that it is built
            once (Amaranth emits an expression once per use). Its shape is the expression's own, so
            that Yosys keeps the name on the driving cell instead of leaving an unused alias."""
            sig = Signal(expr.shape(), name=name)
            m.d.comb += sig.eq(expr)
            return sig

        # --- configuration registers ------------------------------------------------------------
        layout = config_layout(p)
        if not banked:
            cfg_words = [Signal(layout.size, name=f"cfg{l}_word") for l in range(LMAX)]
            n_layers = Signal(range(LMAX + 1), init=1)
            with m.If(self.cfg.en):
                with m.Switch(self.cfg.layer):
                    for l in range(LMAX):
                        with m.Case(l):
                            m.d.sync += cfg_words[l].eq(self.cfg.data.as_value())
            with m.If(self.cfg.layers_en):
                m.d.sync += n_layers.eq(self.cfg.layers)
        else:
            # Word b * LMAX + l: bank b's layer l (the same outer-bank order as the memories).
            cfg_words = [Signal(layout.size, name=f"bank{b}_cfg{l}_word") for b in range(2) for l in range(LMAX)]
            bank_layers = [Signal(range(LMAX + 1), init=1, name=f"bank{b}_layers") for b in range(2)]
            for b in range(2):
                with m.If(self.cfg.en & (self.cfg.bank == b)):
                    with m.Switch(self.cfg.layer):
                        for l in range(LMAX):
                            with m.Case(l):
                                m.d.sync += cfg_words[b * LMAX + l].eq(self.cfg.data.as_value())
                with m.If(self.cfg.layers_en & (self.cfg.bank == b)):
                    m.d.sync += bank_layers[b].eq(self.cfg.layers)

        def cfg_of(layer_index, bank=None):
            """The settings of layer ``layer_index`` (of ``bank`` with two banks; a view; each field read
            is a small mux)."""
            if banked:
                return data.View(layout, Array(cfg_words)[bank if LMAX == 1 else bank * LMAX + layer_index])
            return data.View(layout, cfg_words[0] if LMAX == 1 else Array(cfg_words)[layer_index])

        # --- weight and bias memories -----------------------------------------------------------
        # Both banks share one memory of twice the depth, the bank being the outermost digit of the
        # address: one write port (the loader) and one read port (the issue unit, which reads one bank
        # at a time) as with one bank, so it maps onto the same simple dual-port RAMs, with no read mux.
        wmem = memory.Memory(shape=unsigned(R * C), depth=p.weight_depth, init=[])
        bmem = memory.Memory(shape=unsigned(R * bb), depth=max(p.bias_depth, 2), init=[])
        m.submodules.weight_mem = wmem
        m.submodules.bias_mem = bmem
        w_wr, w_rd = wmem.write_port(), wmem.read_port()  # read ports: non-transparent
        b_wr, b_rd = bmem.write_port(), bmem.read_port()

        if not banked:
            def weight_addr(layer, rt, ct, plane):
                return ((layer * RT + rt) * CT + ct) * WB + plane
        else:
            def weight_addr(layer, rt, ct, plane, bank):
                return (((bank * LMAX + layer) * RT + rt) * CT + ct) * WB + plane

        if not banked:
            m.d.comb += [
                w_wr.en.eq(self.weights.en),
                w_wr.addr.eq(weight_addr(self.weights.layer, self.weights.row_tile, self.weights.col_tile,
                                         self.weights.plane)),
                w_wr.data.eq(self.weights.data),
                b_wr.en.eq(self.bias.en),
                b_wr.addr.eq(self.bias.layer * RT + self.bias.row_tile),
                b_wr.data.eq(self.bias.data),
            ]
        else:
            m.d.comb += [
                w_wr.en.eq(self.weights.en),
                w_wr.addr.eq(weight_addr(self.weights.layer, self.weights.row_tile, self.weights.col_tile,
                                         self.weights.plane, self.weights.bank)),
                w_wr.data.eq(self.weights.data),
                b_wr.en.eq(self.bias.en),
                b_wr.addr.eq((self.bias.bank * LMAX + self.bias.layer) * RT + self.bias.row_tile),
                b_wr.data.eq(self.bias.data),
            ]

        # --- input register, activation buffer (one register per bit-plane, element k at bit k) ---
        in_full = Signal()
        in_buf = Signal(vector_layout(p.max_in, AB))
        act = [Signal(p.max_in, name=f"act_plane{j}") for j in range(AB)]
        credits = Signal(range(depth + 1))

        # --- weight banks: state, the current bank, the issuing vector's bank and group end -----------
        if banked:
            in_last = Signal()  # the input register's vector ends its cell group
            bank_full = [Signal(name=f"bank{b}_full") for b in range(2)]  # committed, group not all loaded
            bank_busy = [Signal(name=f"bank{b}_busy") for b in range(2)]  # group loaded, not all past stage 4
            cur_bank = Signal()  # the bank the next load reads
            s0_bank = Signal(name="s0_bank")  # the issuing vector's bank
            s0_glast = Signal(name="s0_glast")  # the issuing vector ends its group
            m.d.comb += self.banks.free.eq(Cat(~bank_full[b] & ~bank_busy[b] for b in range(2)))

        # --- issue unit (stage 0) -------------------------------------------------------------------
        issuing = Signal()
        waiting = Signal()  # between two layers of a vector, until the first one's last tile is done
        lyr = Signal(index_range(LMAX))
        rt = Signal(index_range(RT))
        ct = Signal(index_range(CT))
        row_base = Signal(index_range(p.max_out))  # rt * R
        col_base = Signal(index_range(p.max_in))  # ct * C
        wi = Signal(index_range(WB))  # weight plane
        aj = Signal(index_range(AB))  # activation plane
        c0 = cfg_of(lyr, s0_bank) if banked else cfg_of(lyr)
        last_j = named(aj + 1 == c0.act_bits, "s0_last_act_plane")
        last_i = named(wi + 1 == c0.weight_bits, "s0_last_weight_plane")
        last_ct = named(col_base + C >= c0.in_size, "s0_last_col_tile")
        last_rt = named(row_base + R >= c0.out_size, "s0_last_row_tile")
        n_layers = Array(bank_layers)[s0_bank] if banked else n_layers
        last_layer = named(lyr + 1 == n_layers, "s0_last_layer")
        tile_last = last_j & last_i & last_ct
        layer_last = named(tile_last & last_rt, "s0_layer_last")
        vec_last = issuing & layer_last & last_layer

        pad = CT * C - p.max_in
        planes = [Cat(a, Const(0, pad)) if pad else a for a in act]
        plane = Array(planes)[aj]
        act_tile = plane.word_select(ct, C) if CT > 1 else plane

        if banked:
            m.d.comb += w_rd.addr.eq(weight_addr(lyr, rt, ct, wi, s0_bank))
        else:
            m.d.comb += w_rd.addr.eq(weight_addr(lyr, rt, ct, wi))

        with m.If(issuing):
            with m.If(~last_j):
                m.d.sync += aj.eq(aj + 1)
            with m.Else():
                m.d.sync += aj.eq(0)
                with m.If(~last_i):
                    m.d.sync += wi.eq(wi + 1)
                with m.Else():
                    m.d.sync += wi.eq(0)
                    with m.If(~last_ct):
                        m.d.sync += [ct.eq(ct + 1), col_base.eq(col_base + C)]
                    with m.Else():
                        m.d.sync += [ct.eq(0), col_base.eq(0)]
                        with m.If(~last_rt):
                            m.d.sync += [rt.eq(rt + 1), row_base.eq(row_base + R)]
                        with m.Else():
                            m.d.sync += [rt.eq(0), row_base.eq(0), issuing.eq(0), waiting.eq(~last_layer)]

        # --- pipeline registers -------------------------------------------------------------------
        def stage_regs(s):
            return {n: Signal(name=f"s{s}_{n}") for n in ("valid", "neg", "first", "last", "layer_end", "vec_end")}

        s1, s2 = stage_regs(1), stage_regs(2)
        s1_act = Signal(C, name="s1_act")
        s1_shift = Signal(range(WB + AB - 1), name="s1_shift")
        s2_shift = Signal.like(s1_shift, name="s2_shift")
        s1_lyr, s1_rt = Signal.like(lyr, name="s1_lyr"), Signal.like(rt, name="s1_rt")
        # Layer (it picks the settings) and row tile (it picks the result slots) of stages 2-4;
        # constant 0 when there is only one.
        layer_of = {s: Signal.like(lyr, name=f"s{s}_lyr") if LMAX > 1 else Const(0, 1) for s in (2, 3, 4)}
        tile_of = {s: Signal.like(rt, name=f"s{s}_rt") if RT > 1 else Const(0, 1) for s in (2, 3, 4)}
        if LMAX > 1:
            m.d.sync += [layer_of[2].eq(s1_lyr), layer_of[3].eq(layer_of[2]), layer_of[4].eq(layer_of[3])]
        if RT > 1:
            m.d.sync += [tile_of[2].eq(s1_rt), tile_of[3].eq(tile_of[2]), tile_of[4].eq(tile_of[3])]
        if banked:
            # The bank travels with each pair down the pipeline (stage 1 reads the bias, stages 2-4 the
            # settings); ``gend``: this is the last row tile of the last layer of its group's last vector.
            bank_of = {s: Signal(name=f"s{s}_bank") for s in (1, 2, 3, 4)}
            gend_of = {s: Signal(name=f"s{s}_gend") for s in (1, 2, 3, 4)}
            m.d.sync += [bank_of[1].eq(s0_bank), gend_of[1].eq(layer_last & last_layer & s0_glast)]
            m.d.sync += [bank_of[s].eq(bank_of[s - 1]) for s in (2, 3, 4)]
            m.d.sync += [gend_of[s].eq(gend_of[s - 1]) for s in (2, 3, 4)]

        # --- stage 0 -> 1 ---------------------------------------------------------------------------
        m.d.sync += [
            s1["valid"].eq(issuing),
            s1["neg"].eq(last_i ^ (c0.act_signed & last_j)),  # exactly one of the two MSB planes is negative
            s1["first"].eq((ct == 0) & (wi == 0) & (aj == 0)),
            s1["last"].eq(tile_last),
            s1["layer_end"].eq(layer_last),
            s1["vec_end"].eq(layer_last & last_layer),
            s1_act.eq(act_tile),
            s1_shift.eq(wi + aj),
            s1_lyr.eq(lyr),
            s1_rt.eq(rt),
        ]
        # The bias of a row tile is read alongside, so that it arrives with stage 2.
        if banked:
            m.d.comb += b_rd.addr.eq((bank_of[1] * LMAX + s1_lyr) * RT + s1_rt)
        else:
            m.d.comb += b_rd.addr.eq(s1_lyr * RT + s1_rt)

        # --- stage 1: the weight plane arrives; AND + popcount per row -----------------------------
        s2_pop = [Signal(range(C + 1), name=f"s2_pop{r}") for r in range(R)]
        for r in range(R):
            m.d.sync += s2_pop[r].eq(adder_tree([w_rd.data[r * C + c] & s1_act[c] for c in range(C)]))
        m.d.sync += [s2[n].eq(s1[n]) for n in s1] + [s2_shift.eq(s1_shift)]

        # --- stage 2: accumulate (modular in acc_bits; the final sum fits, so it is exact) ----------
        c2 = cfg_of(layer_of[2], bank_of[2]) if banked else cfg_of(layer_of[2])
        acc = [Signal(signed(p.acc_bits), name=f"acc{r}") for r in range(R)]
        for r in range(R):
            mag = s2_pop[r] << s2_shift
            term = Mux(s2["neg"], -mag, mag)
            bias_r = b_rd.data[r * bb:(r + 1) * bb].as_signed()
            base = Mux(s2["first"], Mux(c2.bias, bias_r, 0), acc[r])
            with m.If(s2["valid"]):
                m.d.sync += acc[r].eq(base + term)
        s3 = {n: Signal(name=f"s3_{n}") for n in ("valid", "layer_end", "vec_end")}
        m.d.sync += [s3["valid"].eq(s2["valid"] & s2["last"]),
                     s3["layer_end"].eq(s2["layer_end"]), s3["vec_end"].eq(s2["vec_end"])]

        # --- stage 3: acc * M (the accumulators hold the finished row tile this cycle) --------------
        c3 = cfg_of(layer_of[3], bank_of[3]) if banked else cfg_of(layer_of[3])
        s4 = {n: Signal(name=f"s4_{n}") for n in ("valid", "layer_end", "vec_end")}
        s4_prod = [Signal(signed(p.prod_bits), name=f"s4_prod{r}") for r in range(R)]
        m.d.sync += [s4_prod[r].eq(acc[r] * c3.mult) for r in range(R)]
        m.d.sync += [s4[n].eq(s3[n]) for n in s3]

        # --- stage 4: round, shift, ReLU, clamp; merge into the result buffer -----------------------
        c4 = cfg_of(layer_of[4], bank_of[4]) if banked else cfg_of(layer_of[4])
        # 2^out_bits after ReLU, 2^(out_bits - 1) otherwise: the clamp is [lo, hi] = [0 or -limit, limit - 1]
        limit = (Const(1, AB + 1) << c4.out_bits) >> ~c4.relu
        hi = named(limit - 1, "s4_hi")
        lo = named(Mux(c4.relu, 0, -limit), "s4_lo")
        codes = []
        for r in range(R):
            # (acc * M + 2^(S-1)) >> S without a 2^S constant: (((2 * prod) >> S) + 1) >> 1
            half_up = ((s4_prod[r] << 1) >> c4.shift) + 1
            y_relu = named(Mux(c4.relu & (half_up < 0), 0, half_up >> 1), f"s4_relu{r}")
            # in [lo, hi], so the low AB bits are the code; the comparisons use every bit
            codes.append(named(Mux(y_relu > hi, hi[:AB], Mux(y_relu < lo, lo[:AB], y_relu[:AB])), f"s4_code{r}"))

        s4_rt = tile_of[4]
        hit = [named(s4_rt == t, f"s4_hit{t}") for t in range(RT)] if RT > 1 else None
        res = Signal(p.max_out * AB, name="res")  # element k at bits [k * AB, (k + 1) * AB)
        elements = []  # res with this row tile written in; neurons past out_size read as 0
        for k in range(p.max_out):
            fresh = Mux(k < c4.out_size, codes[k % R], 0)
            elements.append(named(Mux(hit[k // R], fresh, res[k * AB:(k + 1) * AB]) if RT > 1 else fresh,
                                  f"s4_merged{k}"))
        merged = Cat(*elements)

        with m.If(s4["valid"]):
            with m.If(s4["layer_end"]):
                m.d.sync += res.eq(0)  # the next layer starts from an empty buffer
                with m.If(~s4["vec_end"]):
                    n_act = min(p.max_in, p.max_out)
                    m.d.sync += [act[j].eq(Cat(elements[k][j] for k in range(n_act))) for j in range(AB)]
            with m.Else():
                m.d.sync += res.eq(merged)
        resume = waiting & s4["valid"] & s4["layer_end"] & ~s4["vec_end"]
        with m.If(resume):
            m.d.sync += [waiting.eq(0), issuing.eq(1), lyr.eq(lyr + 1)]

        # --- load: input register -> activation buffer, start a vector ------------------------------
        if not banked:
            load = named(in_full & ((~issuing & ~waiting) | vec_last) & (credits < depth), "load")
            first_in = data.View(layout, cfg_words[0]).in_size
        else:
            # A vector loads only from a full (committed) bank; the bank is then known, so elements past
            # its layer 0's in_size are zeroed here rather than at the input transfer.
            cur_full = named(Mux(cur_bank, bank_full[1], bank_full[0]), "cur_bank_full")
            load = named(in_full & ((~issuing & ~waiting) | vec_last) & (credits < depth) & cur_full, "load")
            first_in = cfg_of(0, cur_bank).in_size
        m.d.comb += self.i.ready.eq(~in_full | load)
        in_fire = self.i.valid & self.i.ready
        if not banked:
            with m.If(load):
                m.d.sync += [in_full.eq(0), issuing.eq(1), lyr.eq(0)]
                m.d.sync += [act[j].eq(Cat(in_buf[k][j] for k in range(p.max_in))) for j in range(AB)]
            with m.If(in_fire):
                # Elements past layer 0's in_size are stored as 0, so they add nothing.
                m.d.sync += in_full.eq(1)
                m.d.sync += [in_buf[k].eq(Mux(k < first_in, self.i.payload[k], 0)) for k in range(p.max_in)]
        else:
            kept = [named(Mux(k < first_in, in_buf[k], 0), f"in_kept{k}") for k in range(p.max_in)]
            with m.If(load):
                m.d.sync += [in_full.eq(0), issuing.eq(1), lyr.eq(0), s0_bank.eq(cur_bank), s0_glast.eq(in_last)]
                m.d.sync += [act[j].eq(Cat(kept[k][j] for k in range(p.max_in))) for j in range(AB)]
                with m.If(in_last):  # the group's last vector: the next load reads the other bank
                    m.d.sync += cur_bank.eq(~cur_bank)
            with m.If(in_fire):
                m.d.sync += [in_full.eq(1), in_last.eq(self.i.payload.last), in_buf.eq(self.i.payload.data)]

        # --- output queue and credits --------------------------------------------------------------
        push = s4["valid"] & s4["layer_end"] & s4["vec_end"]
        m.submodules.out_queue = queue = StreamQueue(shape=output_layout(p), depth=depth)
        if banked:
            m.d.comb += [queue.w_en.eq(push), queue.w_data.eq(Cat(merged, gend_of[4]))]
        else:
            m.d.comb += [queue.w_en.eq(push), queue.w_data.eq(merged)]
        wiring.connect(m, queue.o, wiring.flipped(self.o))
        pop = self.o.valid & self.o.ready
        m.d.sync += credits.eq(credits + load - pop)

        # --- bank states: EMPTY -> commit -> FULL -> group's last load -> BUSY -> its last push -> EMPTY
        if banked:
            for b in range(2):
                with m.If(self.banks.commit & (self.banks.commit_bank == b)):
                    m.d.sync += bank_full[b].eq(1)
                with m.If(load & in_last & (cur_bank == b)):
                    m.d.sync += [bank_full[b].eq(0), bank_busy[b].eq(1)]
                with m.If(push & gend_of[4] & (bank_of[4] == b)):
                    m.d.sync += bank_busy[b].eq(0)
        return m
