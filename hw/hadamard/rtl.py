"""DHQ Hadamard-transform quantized linear layer: FWHT, requantizer, bit-serial matrix-vector array, Amaranth 0.5.

One engine computes one linear layer of a DHQ-quantized network (Hadamard transform before quantizing
weights and activations; ``y = (x H)(W H)^T``). Per input vector x of n signed ``in_bits`` integers,
bit-exactly as ``sim.tlm.hadamard.reference_forward`` (its docstring has the semantics in full)::

    t   = x @ H_n                                             # H_n[i, j] = (-1)^popcount(i & j)
    u   = clamp(rne(t * M_a, S_a), +-(2^(a-1) - 1))           # a = act_bits (run time)
    acc = u @ W.T + bias                                      # W: (m, n), narrow weight_bits codes
    y   = clamp(rne(acc * M_o, S_o), +-(2^(out_bits-1) - 1))

with ``rne`` rounding to nearest, ties to even. The sizes n, m and the input, weight and output widths
are generation-time parameters (``hw.hadamard.params.HadamardParams``); the activation width a (2 ..
max_act_bits) and the scales M_a / 2^S_a, M_o / 2^S_o are run-time settings (``HadamardConfig``).

Interfaces (all in the ``sync`` domain; R = rows, C = cols, RT = ceil(m / R), CT = n / C, k = log2 n):

* ``i``: ``stream.Signature(ArrayLayout(signed(in_bits), n))``: one whole input vector per transfer,
  element j in bits [j * in_bits, (j + 1) * in_bits).
* ``o``: ``stream.Signature(ArrayLayout(signed(out_bits), m))``: the output vector, element 0 in the
  low bits (``sim.tlm.transfers.pack_vector``). Outputs leave in input order.
* ``cfg`` (``ConfigWriteSignature``): while ``en``, the settings are written from ``data``
  (``config_layout``: fields of ``HadamardParams.config_fields``). The rounding masks of S_a and S_o
  and the activation limits +-(2^(a-1) - 1) are registered from ``data`` at the same edge, so that
  the datapath computes none of them.
* ``weights`` (``WeightWriteSignature``): while ``en``, the weight word of (``row_tile``, ``col_tile``)
  is written from ``data``: field r * C + c (``weight_bits``, two's complement) is
  W[row_tile * R + r, col_tile * C + c] (``sim.tlm.hadamard.weight_writes`` builds these words).
  Rows past m of the last row tile may hold anything (their results are dropped).
* ``bias`` (``BiasWriteSignature``): while ``en``, the R biases of ``row_tile``, field r
  (``bias_bits``, two's complement) for row row_tile * R + r. Load zeros for a layer without bias.
* ``scales`` (``ScaleWriteSignature``), only with ``per_row_scales``: while ``en``, the R output
  multipliers of ``row_tile``, field r (``mult_bits``, unsigned) M_o[row_tile * R + r]
  (``sim.tlm.hadamard.scale_writes``); the same layout as the bias port. The rows then use these
  instead of the configuration's ``mult_o`` (which is ignored): ``y_r = clamp(rne(acc_r * M_o[r], S_o))``.

Write the configuration, weights, biases and multipliers while the engine is idle (no vector in flight); settings
written while vectors are in flight take effect at once and corrupt them.

Micro-architecture (modelled cycle for cycle by ``sim.tlm.hadamard``):

* Front end, F = k + 3 cycles, never stalls (every register moves every cycle, a valid bit travels
  along): the input register (the payload of the input transfer at cycle c is in it in cycle c + 1);
  k butterfly stages (``butterfly_stages``, the body of ``FwhtPipeline``, built inline: stage s
  pairs elements i and i + 2^s into sum and difference, adds and subtracts only, one bit of growth
  per stage, one vector per cycle); the products ``t * M_a`` (n multipliers); round half to even by
  S_a, clamp to a bits and write u into the activation FIFO as bit-planes (plane j: bit j of every
  u_i; u is sign-extended to max_act_bits). The vector is in the FIFO from cycle c + F.
* Input credits: a vector holds one from its input transfer until its load into the array, and the
  FIFO has ``front_depth`` = Q entries, Q = ceil(F / (2 * RT * CT)), so it never overflows:
  ``i.ready`` = (credits < Q) or a load in this cycle (``i.ready`` never depends on ``i.valid``).
* Matrix-vector array, activation bit-serial (Stripes style): weights bit-parallel, one activation
  bit-plane per cycle. In a cycle where the FIFO holds a vector, the issue unit is idle or on its
  last issue cycle, and fewer than ``OUT_FIFO_DEPTH`` = 4 vectors are loaded whose output has not
  transferred, the FIFO's head is *loaded* into the activation register; from the next cycle the
  issue unit (stage 0) walks row tiles > column tiles > activation planes j = 0 .. a - 1
  (innermost), one per cycle, reading the R x C weight tile (synchronous read) and selecting the
  plane's C bits. Stages: 1 per row, the sum of the C weights
  whose activation bit is set; 2 accumulate it shifted by j, negated for the MSB plane j = a - 1
  (two's complement), the first term of a row tile added to the bias; 3 multiply the finished
  accumulators by M_o (with ``per_row_scales``: by the row tile's R multipliers, read from the
  table with the stage 2 row tile as address, so that they arrive with stage 3: no extra stage,
  the same cycles); 4 round half to even by S_o, clamp to out_bits, merge the R results into the
  result buffer, and on the last row tile push the vector into the output FIFO (``PIPELINE_STAGES``
  = 4). A vector holds an output credit from its load to its output transfer, so the FIFO never
  overflows and output backpressure never stalls a pipeline: it stops loads, then the front end's
  credits run out and ``i.ready`` drops.

The matrix-vector product takes RT * CT * a cycles: linear in the run-time act_bits and in n (CT =
n / C), independent of weight_bits, which changes the array's area (the R x C x weight_bits tile
word and the adder trees) but not its cycles.

THE CYCLE FORMULA. For run-time act_bits a, with F = k + 3 and Q = front_depth:

    T = RT * CT * a                         issue cycles of a vector (initiation interval)

A vector loaded at cycle l issues in cycles l + 1 .. l + T and its output is valid from cycle
l + T + 5. Hence:

* latency, input transfer at c to output transfer, engine idle and output ready: c + F + T + 5
  = c + k + T + 8 (front end F, issue T, 4 pipeline stages, output FIFO 1);
* initiation interval at full rate (inputs offered back to back, output always ready): T cycles per
  vector (Q * T >= F and 4T >= T + 6 keep the credits from ever holding a load back); N vectors
  offered from cycle 0 finish (last output transfer + 1) at N * T + F + 6;
* in general, with vector k offered from offer_k, ready[t] the output's ready, and terms with a
  negative index left out:

      a_k = max(offer_k, a_{k-1} + 1, l_{k-Q})                     input transfer (a credit free)
      l_k = max(a_k + F, l_{k-1} + T, o_{k-4} + 1)                  load (in the FIFO, array free, credit)
      o_k = min{t >= max(l_k + T + 5, o_{k-1} + 1) : ready[t]}      output transfer
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw import common
from hw.common import adder_tree, config_layout, index_range
from hw.config import check_int
from hw.hadamard.params import HadamardParams

__all__ = ["HadamardEngine", "FwhtPipeline", "ConfigWriteSignature", "WeightWriteSignature", "BiasWriteSignature",
           "ScaleWriteSignature", "signed_vector_layout", "config_layout"]


def signed_vector_layout(count: int, bits: int) -> data.ArrayLayout:
    """Stream payload: ``count`` signed ``bits``-bit elements, element 0 in the low bits."""
    return data.ArrayLayout(signed(bits), count)


class ConfigWriteSignature(wiring.Signature):
    """Configuration port, driver's view: ``en``, ``data`` (``config_layout``)."""

    def __init__(self, params: HadamardParams):
        super().__init__({"en": Out(1), "data": Out(config_layout(params))})


class WeightWriteSignature(wiring.Signature):
    """Weight-load port, driver's view: ``en``, ``row_tile``, ``col_tile``, ``data`` (R * C * weight_bits bits)."""

    def __init__(self, params: HadamardParams):
        super().__init__({
            "en": Out(1),
            "row_tile": Out(index_range(params.row_tiles)),
            "col_tile": Out(index_range(params.col_tiles)),
            "data": Out(params.weight_word_bits),
        })


class BiasWriteSignature(wiring.Signature):
    """Bias-load port, driver's view: ``en``, ``row_tile``, ``data`` (R fields of ``bias_bits``)."""

    def __init__(self, params: HadamardParams):
        super().__init__({
            "en": Out(1),
            "row_tile": Out(index_range(params.row_tiles)),
            "data": Out(params.rows * params.bias_bits),
        })


class ScaleWriteSignature(wiring.Signature):
    """Per-row multiplier port (``per_row_scales``), driver's view: ``en``, ``row_tile``, ``data``
    (R unsigned fields of ``mult_bits``: M_o of rows row_tile * R + r)."""

    def __init__(self, params: HadamardParams):
        super().__init__({
            "en": Out(1),
            "row_tile": Out(index_range(params.row_tiles)),
            "data": Out(params.scale_word_bits),
        })


def butterfly_stages(m: Module, values: list, valid, in_bits: int) -> tuple[list, Signal]:
    """Add the log2(n) FWHT butterfly stages to ``m`` (``FwhtPipeline``'s body, also built inline by
    ``HadamardEngine`` so that the Verilog stays one flat module).

    Args:
        m: the module to add the registers to (``sync`` domain).
        values: n signed values of width ``in_bits`` (n a power of two), the stage input.
        valid: 1-bit value that travels along with them.

    Returns:
        ``(t, valid)``: the n registered outputs (``in_bits + log2 n`` bits) and their valid bit,
        log2(n) cycles behind the inputs.
    """
    n = len(values)
    s, h = 0, 1
    while h < n:
        regs = [Signal(signed(in_bits + s + 1), name=f"fwht{s}_{j}", reset_less=True) for j in range(n)]
        for j in range(n):
            m.d.sync += regs[j].eq(values[j] + values[j + h] if not j & h else values[j - h] - values[j])
        stage_valid = Signal(name=f"fwht{s}_valid")
        m.d.sync += stage_valid.eq(valid)
        values, valid = regs, stage_valid
        s, h = s + 1, 2 * h
    return values, valid


class FwhtPipeline(wiring.Component):
    """Fast Walsh-Hadamard transform ``t = x @ H_n``: log2(n) pipelined butterfly stages.

    Stage s (s = 0 .. log2(n) - 1) pairs elements i and i + 2^s (bit s of i clear) into
    ``(v[i] + v[i + 2^s], v[i] - v[i + 2^s])``, adds and subtracts only; its register holds
    ``in_bits + s + 1`` bits (one bit of growth per stage), so the output has ``in_bits + log2(n)``
    bits and is exact. Every register moves every cycle (no stall): one vector per cycle, and the
    ``i_data`` of a cycle with ``i_valid`` appears on ``o_data`` with ``o_valid`` log2(n) cycles later.

    Ports: ``i_valid``, ``i_data`` (``ArrayLayout(signed(in_bits), n)``) in; ``o_valid``, ``o_data``
    (``ArrayLayout(signed(in_bits + log2 n), n)``) out. ``HadamardEngine`` builds the same stages
    inline (``butterfly_stages``); this component is the transform alone, for unit tests and reuse.

    Args:
        n: transform length, a power of two >= 2. in_bits: input element width, >= 1.

    Raises:
        ValueError: n or in_bits out of range.
    """

    def __init__(self, *, n: int, in_bits: int):
        if check_int("n", n, 2) & (n - 1):
            raise ValueError(f"n must be a power of two >= 2, not {n!r}")
        check_int("in_bits", in_bits, 1)
        self.n, self.in_bits, self.stages = n, in_bits, n.bit_length() - 1
        super().__init__({
            "i_valid": In(1),
            "i_data": In(signed_vector_layout(n, in_bits)),
            "o_valid": Out(1),
            "o_data": Out(signed_vector_layout(n, in_bits + self.stages)),
        })

    def elaborate(self, platform):
        m = Module()
        values, valid = butterfly_stages(m, [self.i_data[j] for j in range(self.n)], self.i_valid, self.in_bits)
        m.d.comb += [self.o_data[j].eq(v) for j, v in enumerate(values)]
        m.d.comb += self.o_valid.eq(valid)
        return m


class HadamardEngine(wiring.Component):
    """DHQ Hadamard-transform datapath; see the module docstring for interfaces, arithmetic and timing.

    Args:
        params: ``HadamardParams`` (keyword-only).

    Raises:
        TypeError: ``params`` is not a ``HadamardParams``.
    """

    def __init__(self, *, params: HadamardParams):
        if not isinstance(params, HadamardParams):
            raise TypeError(f"params must be a HadamardParams, not {params!r}")
        self._params = params
        ports = {
            "i": In(stream.Signature(signed_vector_layout(params.n, params.in_bits))),
            "o": Out(stream.Signature(signed_vector_layout(params.out_size, params.out_bits))),
            "cfg": In(ConfigWriteSignature(params)),
            "weights": In(WeightWriteSignature(params)),
            "bias": In(BiasWriteSignature(params)),
        }
        if params.per_row_scales:
            ports["scales"] = In(ScaleWriteSignature(params))
        super().__init__(ports)

    @property
    def params(self) -> HadamardParams:
        return self._params

    def elaborate(self, platform):
        p = self._params
        m = Module()
        n, M, R, C, RT, CT = p.n, p.out_size, p.rows, p.cols, p.row_tiles, p.col_tiles
        AB, WB, OB, bb = p.max_act_bits, p.weight_bits, p.out_bits, p.bias_bits
        Q, D = p.front_depth, p.OUT_FIFO_DEPTH

        def named(expr, name):
            return common.named(m, expr, name)

        def round_half_even(prod, shift, guard, sticky, tag):
            return common.round_half_even(m, prod, shift, guard, sticky, tag)

        def clamp(y, limit, neg_limit, bits, tag):
            return common.clamp(m, y, limit, neg_limit, bits, tag)

        def fifo(name, width, depth, push, value, pop):
            return common.queue(m, name, width, depth, push, value, pop)

        # --- configuration register, and the values derived from it, registered at the same write ----
        layout = config_layout(p)
        cfg_word = Signal(layout.size, init=layout.const({"act_bits": AB, "mult_a": 1, "mult_o": 1}).as_bits())
        cfg = data.View(layout, cfg_word)  # a view of a plain register: no per-field alias wires

        def config_reg(name, shape, init, value):
            return common.config_reg(m, self.cfg.en, name, shape, init, value)

        def rounding_masks(shift, width, tag):
            return common.rounding_masks(m, self.cfg.en, shift, width, tag)

        new = self.cfg.data
        with m.If(self.cfg.en):
            m.d.sync += cfg_word.eq(new.as_value())
        guard_a, sticky_a = rounding_masks(new.shift_a, p.prod_a_bits, "qa")
        guard_o, sticky_o = rounding_masks(new.shift_o, p.prod_o_bits, "s4")
        # +-(2^(a-1) - 1), the activation range
        half_a = (Const(1, AB + 1) << new.act_bits) >> 1
        limit_a = config_reg("qa_limit", signed(AB), (1 << (AB - 1)) - 1, half_a - 1)
        neg_limit_a = config_reg("qa_neg_limit", signed(AB), 1 - (1 << (AB - 1)), 1 - half_a)

        # --- weight and bias memories ---------------------------------------------------------------
        wmem = memory.Memory(shape=unsigned(p.weight_word_bits), depth=max(p.weight_depth, 2), init=[])
        bmem = memory.Memory(shape=unsigned(R * bb), depth=max(RT, 2), init=[])
        m.submodules.weight_mem = wmem
        m.submodules.bias_mem = bmem
        w_wr, w_rd = wmem.write_port(), wmem.read_port()  # read ports: non-transparent
        b_wr, b_rd = bmem.write_port(), bmem.read_port()
        m.d.comb += [
            w_wr.en.eq(self.weights.en),
            w_wr.addr.eq(self.weights.row_tile * CT + self.weights.col_tile),
            w_wr.data.eq(self.weights.data),
            b_wr.en.eq(self.bias.en),
            b_wr.addr.eq(self.bias.row_tile),
            b_wr.data.eq(self.bias.data),
        ]

        # --- front end: input register, FWHT, t * M_a, round + clamp into the activation FIFO -------
        load = Signal()  # the FIFO's head moves into the activation register (driven below)
        credits_in = Signal(range(Q + 1))
        m.d.comb += self.i.ready.eq((credits_in < Q) | load)
        in_fire = self.i.valid & self.i.ready
        m.d.sync += credits_in.eq(credits_in + in_fire - load)

        x_reg = Signal(n * p.in_bits, name="x_reg", reset_less=True)
        x_valid = Signal()
        m.d.sync += [x_reg.eq(self.i.payload.as_value()), x_valid.eq(in_fire)]
        x_elems = [x_reg.word_select(j, p.in_bits).as_signed() for j in range(n)]

        t, t_valid = butterfly_stages(m, x_elems, x_valid, p.in_bits)

        qa_prod = [Signal(signed(p.prod_a_bits), name=f"qa_prod{j}", reset_less=True) for j in range(n)]
        qa_valid = Signal()
        m.d.sync += [qa_prod[j].eq(t[j] * cfg.mult_a) for j in range(n)]
        m.d.sync += qa_valid.eq(t_valid)

        # u in [-(2^(a-1) - 1), 2^(a-1) - 1]: its max_act_bits-bit code is sign-extended
        u_codes = [clamp(round_half_even(qa_prod[j], cfg.shift_a, guard_a, sticky_a, f"qa{j}"), limit_a, neg_limit_a,
                         AB, f"qa{j}") for j in range(n)]
        u_planes = Cat(*[Cat(u[b] for u in u_codes) for b in range(AB)])  # plane b at bits [b * n, (b + 1) * n)
        u_head, u_count = fifo("act_fifo", n * AB, Q, qa_valid, u_planes, load)

        # --- issue unit (stage 0) -------------------------------------------------------------------
        act = [Signal(n, name=f"act_plane{b}") for b in range(AB)]
        issuing = Signal()
        rt = Signal(index_range(RT))
        ct = Signal(index_range(CT))
        aj = Signal(index_range(AB))  # activation plane
        last_j = named(aj + 1 == cfg.act_bits, "s0_last_plane")
        last_ct = named(ct == CT - 1, "s0_last_col_tile")
        last_rt = named(rt == RT - 1, "s0_last_row_tile")
        vec_last = issuing & last_j & last_ct & last_rt
        credits_out = Signal(range(D + 1))
        m.d.comb += load.eq((u_count != 0) & (~issuing | vec_last) & (credits_out < D))

        plane = Array(act)[aj]
        act_tile = plane.word_select(ct, C) if CT > 1 else plane
        m.d.comb += w_rd.addr.eq(rt * CT + ct)

        with m.If(issuing):
            with m.If(~last_j):
                m.d.sync += aj.eq(aj + 1)
            with m.Else():
                m.d.sync += aj.eq(0)
                with m.If(~last_ct):
                    m.d.sync += ct.eq(ct + 1)
                with m.Else():
                    m.d.sync += ct.eq(0)
                    with m.If(~last_rt):
                        m.d.sync += rt.eq(rt + 1)
                    with m.Else():
                        m.d.sync += [rt.eq(0), issuing.eq(0)]
        with m.If(load):
            m.d.sync += issuing.eq(1)
            m.d.sync += [act[b].eq(u_head[b * n:(b + 1) * n]) for b in range(AB)]

        # --- stage 0 -> 1 ----------------------------------------------------------------------------
        s1 = {name: Signal(name=f"s1_{name}") for name in ("valid", "neg", "first", "last", "vec_end")}
        s1_act = Signal(C, name="s1_act")
        s1_shift = Signal.like(aj, name="s1_shift")
        s1_rt = Signal.like(rt, name="s1_rt")
        m.d.sync += [
            s1["valid"].eq(issuing),
            s1["neg"].eq(last_j),  # plane a - 1 carries the two's-complement sign: negative significance
            s1["first"].eq((ct == 0) & (aj == 0)),
            s1["last"].eq(last_ct & last_j),
            s1["vec_end"].eq(last_rt & last_ct & last_j),
            s1_act.eq(act_tile),
            s1_shift.eq(aj),
            s1_rt.eq(rt),
        ]
        # The bias of a row tile is read alongside, so that it arrives with stage 2.
        m.d.comb += b_rd.addr.eq(s1_rt)
        # Row tile of stages 2-4 (it picks the result slots); constant 0 when there is only one.
        tile_of = {s: Signal.like(rt, name=f"s{s}_rt") if RT > 1 else Const(0, 1) for s in (2, 3, 4)}
        if RT > 1:
            m.d.sync += [tile_of[2].eq(s1_rt), tile_of[3].eq(tile_of[2]), tile_of[4].eq(tile_of[3])]

        # --- stage 1: the weight tile arrives; per row the sum of the weights whose activation bit is set
        s2_sum = [Signal(signed(p.sum_bits), name=f"s2_sum{r}", reset_less=True) for r in range(R)]
        for r in range(R):
            terms = [Mux(s1_act[c], w_rd.data.word_select(r * C + c, WB).as_signed(), 0) for c in range(C)]
            m.d.sync += s2_sum[r].eq(adder_tree(terms))
        s2 = {name: Signal(name=f"s2_{name}") for name in s1}
        s2_shift = Signal.like(s1_shift, name="s2_shift")
        m.d.sync += [s2[name].eq(s1[name]) for name in s1] + [s2_shift.eq(s1_shift)]

        # --- stage 2: accumulate (modular in acc_bits; the final sum fits, so it is exact) ----------
        acc = [Signal(signed(p.acc_bits), name=f"acc{r}") for r in range(R)]
        for r in range(R):
            mag = named(s2_sum[r] << s2_shift, f"s2_mag{r}")
            term = Mux(s2["neg"], -mag, mag)
            base = Mux(s2["first"], b_rd.data.word_select(r, bb).as_signed(), acc[r])
            with m.If(s2["valid"]):
                m.d.sync += acc[r].eq(base + term)
        s3 = {name: Signal(name=f"s3_{name}") for name in ("valid", "vec_end")}
        m.d.sync += [s3["valid"].eq(s2["valid"] & s2["last"]), s3["vec_end"].eq(s2["vec_end"])]

        # --- stage 3: acc * M_o (the accumulators hold the finished row tile this cycle) ------------
        if p.per_row_scales:
            # The table of per-row multipliers, one word of R per row tile, read with the stage 2 row
            # tile as address: the word is on the read port's data in stage 3 (non-transparent; the
            # table is written only while idle).
            smem = memory.Memory(shape=unsigned(p.scale_word_bits), depth=max(RT, 2), init=[])
            m.submodules.scale_mem = smem
            s_wr, s_rd = smem.write_port(), smem.read_port()
            m.d.comb += [
                s_wr.en.eq(self.scales.en),
                s_wr.addr.eq(self.scales.row_tile),
                s_wr.data.eq(self.scales.data),
                s_rd.addr.eq(tile_of[2]),
            ]
            mult_o = [s_rd.data.word_select(r, p.mult_bits) for r in range(R)]
        else:
            mult_o = [cfg.mult_o] * R
        s4 = {name: Signal(name=f"s4_{name}") for name in s3}
        s4_prod = [Signal(signed(p.prod_o_bits), name=f"s4_prod{r}", reset_less=True) for r in range(R)]
        m.d.sync += [s4_prod[r].eq(acc[r] * mult_o[r]) for r in range(R)]
        m.d.sync += [s4[name].eq(s3[name]) for name in s3]

        # --- stage 4: round half to even, clamp; merge into the result buffer, push the vector ------
        limit_o = Const((1 << (OB - 1)) - 1, signed(OB))
        codes = [clamp(round_half_even(s4_prod[r], cfg.shift_o, guard_o, sticky_o, f"s4_{r}"), limit_o, -limit_o,
                       OB, f"s4_{r}") for r in range(R)]
        # Rows of the row tiles before the last wait in the result buffer; the last tile's rows come
        # straight from stage 4 when the vector is pushed.
        held = (RT - 1) * R
        res = [Signal(OB, name=f"res{i}", reset_less=True) for i in range(held)]
        with m.If(s4["valid"]):
            for i in range(held):
                with m.If(tile_of[4] == i // R):
                    m.d.sync += res[i].eq(codes[i % R])
        out_vector = Cat(*res, *codes[:M - held])

        push = s4["valid"] & s4["vec_end"]
        pop = self.o.valid & self.o.ready
        o_head, o_count = fifo("out_fifo", M * OB, D, push, out_vector, pop)
        m.d.comb += [self.o.valid.eq(o_count != 0), self.o.payload.eq(o_head)]
        m.d.sync += credits_out.eq(credits_out + load - pop)
        return m
