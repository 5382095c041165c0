"""Full-precision fixed-point linear layer on a bit-parallel R x C multiply-accumulate array, Amaranth 0.5.

The baseline of the DHQ Hadamard datapath (``hw.hadamard``) for the same layer: no transform, no
requantization, no bit-serial activations. Per input vector x of n signed ``data_bits`` integers,
bit-exactly as ``sim.tlm.fixed_mv.reference_forward``::

    acc = x @ W.T + bias                                      # W: (m, n) signed data_bits, exact
    y   = clamp(rne(acc, S_o), -2^(out_bits-1), 2^(out_bits-1) - 1)

with ``rne`` the arithmetic shift right by S_o rounded to nearest, ties to even, and S_o a run-time
setting (``FixedMvConfig``). Sizes and widths are generation-time parameters (``FixedMvParams``).

Interfaces (all in the ``sync`` domain; R = rows, C = cols, RT = ceil(m / R), CT = ceil(n / C), d = data_bits);
the write-port signatures are the Hadamard engine's (``hw.hadamard.rtl``), sized by these parameters:

* ``i``: ``stream.Signature(ArrayLayout(signed(d), n))``: one whole input vector per transfer, element j in
  bits [j * d, (j + 1) * d).
* ``o``: ``stream.Signature(ArrayLayout(signed(out_bits), m))``: the output vector, element 0 in the low
  bits (``sim.tlm.transfers.pack_vector``). Outputs leave in input order.
* ``cfg`` (``ConfigWriteSignature``): while ``en``, S_o is written from ``data`` (``config_layout``: the
  one field ``shift_o``); the rounding masks of S_o are registered from ``data`` at the same edge.
* ``weights`` (``WeightWriteSignature``): while ``en``, the weight word of (``row_tile``, ``col_tile``) is
  written from ``data``: field r * C + c (d bits, two's complement) is W[row_tile * R + r, col_tile * C + c]
  (``sim.tlm.fixed_mv.weight_writes``). Rows past m and columns past n may hold anything (the inputs
  there are 0, the results of those rows are dropped).
* ``bias`` (``BiasWriteSignature``): while ``en``, the R biases of ``row_tile``, field r (``bias_bits``,
  two's complement) for row row_tile * R + r. Load zeros for a layer without bias.

Write the configuration, weights and biases while the engine is idle (no vector in flight).

Micro-architecture (modelled cycle for cycle by ``sim.tlm.fixed_mv``):

* Input buffer (one vector, its input credit): an input transfer at cycle c writes it; ``i.ready`` =
  buffer empty or a load in this cycle (never depends on ``i.valid``). F = 1: the vector can be loaded
  from cycle c + 1.
* Issue: in a cycle where the buffer holds a vector, the issue unit is idle or on its last issue cycle,
  and fewer than D = ``out_fifo_depth`` vectors are loaded whose output has not transferred, the buffer
  is *loaded* into the input register; from the next cycle the issue unit (stage 0) walks row tiles >
  column tiles, one tile per cycle (T = RT * CT cycles), reading the R x C weight tile (synchronous,
  non-transparent read) and selecting the C inputs of the column tile (0 past n). Stages: 1 the weight
  tile arrives with the registered input tile, the R x C products ``x_j * w_ij`` (plain ``*``, d x d
  signed: Yosys maps them onto DSP48E1s on xc7) are registered; 2 per row the adder tree of its C
  products is registered; 3 accumulate, the first column tile of a row tile added to its bias (read
  alongside); 4 round half to even by S_o, clamp to out_bits, merge the R results into the result buffer,
  and on the last row tile push the vector into the output FIFO (``PIPELINE_STAGES`` = 4). A vector holds
  an output credit from its load to its output transfer, so the FIFO never overflows and output
  backpressure stops loads, then the input buffer stays full and ``i.ready`` drops.

THE CYCLE FORMULA. T = RT * CT, independent of data_bits (which changes the area only). A vector loaded at
cycle l issues in cycles l + 1 .. l + T and its output is valid from l + T + 5. Hence the latency (input
transfer at c to output transfer, engine idle, output ready) is T + 6; at full rate II = T; N vectors offered
from cycle 0 finish (last output transfer + 1) at N * T + 7; in general (terms with a negative index left out)::

    a_k = max(offer_k, a_{k-1} + 1, l_{k-1})                    input transfer (the buffer is free)
    l_k = max(a_k + 1, l_{k-1} + T, o_{k-D} + 1)                load
    o_k = min{t >= max(l_k + T + 5, o_{k-1} + 1) : ready[t]}    output transfer
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.common import adder_tree, clamp, config_layout, index_range, named, queue, round_half_even, rounding_masks
from hw.fixed_mv.params import FixedMvParams
from hw.hadamard.rtl import BiasWriteSignature, ConfigWriteSignature, WeightWriteSignature, signed_vector_layout

__all__ = ["FixedMatVec", "ConfigWriteSignature", "WeightWriteSignature", "BiasWriteSignature"]


class FixedMatVec(wiring.Component):
    """Bit-parallel fixed-point matrix-vector engine; see the module docstring for interfaces, arithmetic and
    timing.

    Args:
        params: ``FixedMvParams`` (keyword-only).

    Raises:
        TypeError: ``params`` is not a ``FixedMvParams``.
    """

    def __init__(self, *, params: FixedMvParams):
        if not isinstance(params, FixedMvParams):
            raise TypeError(f"params must be a FixedMvParams, not {params!r}")
        self._params = params
        super().__init__({
            "i": In(stream.Signature(signed_vector_layout(params.n, params.data_bits))),
            "o": Out(stream.Signature(signed_vector_layout(params.out_size, params.out_bits))),
            "cfg": In(ConfigWriteSignature(params)),
            "weights": In(WeightWriteSignature(params)),
            "bias": In(BiasWriteSignature(params)),
        })

    @property
    def params(self) -> FixedMvParams:
        return self._params

    def elaborate(self, platform):
        p = self._params
        m = Module()
        n, M, R, C, RT, CT = p.n, p.out_size, p.rows, p.cols, p.row_tiles, p.col_tiles
        d, OB, bb, D = p.data_bits, p.out_bits, p.bias_bits, p.out_fifo_depth

        # --- configuration: S_o and its rounding masks, registered at the same write -----------------
        cfg_word = Signal(config_layout(p).size, name="cfg_word")
        cfg = data.View(config_layout(p), cfg_word)
        with m.If(self.cfg.en):
            m.d.sync += cfg_word.eq(self.cfg.data.as_value())
        guard, sticky = rounding_masks(m, self.cfg.en, self.cfg.data.shift_o, p.acc_bits, "s4")

        # --- weight and bias memories (read ports non-transparent) ----------------------------------
        wmem = memory.Memory(shape=unsigned(p.weight_word_bits), depth=max(p.weight_depth, 2), init=[])
        bmem = memory.Memory(shape=unsigned(R * bb), depth=max(RT, 2), init=[])
        m.submodules.weight_mem = wmem
        m.submodules.bias_mem = bmem
        w_wr, w_rd = wmem.write_port(), wmem.read_port()
        b_wr, b_rd = bmem.write_port(), bmem.read_port()
        m.d.comb += [
            w_wr.en.eq(self.weights.en),
            w_wr.addr.eq(self.weights.row_tile * CT + self.weights.col_tile),
            w_wr.data.eq(self.weights.data),
            b_wr.en.eq(self.bias.en),
            b_wr.addr.eq(self.bias.row_tile),
            b_wr.data.eq(self.bias.data),
        ]

        # --- input buffer: one vector, its input credit ---------------------------------------------
        load = Signal()  # the buffer moves into the input register (driven below)
        in_full = Signal()
        m.d.comb += self.i.ready.eq(~in_full | load)
        in_fire = self.i.valid & self.i.ready
        x_buf = Signal(n * d, name="x_buf", reset_less=True)
        with m.If(in_fire):
            m.d.sync += [x_buf.eq(self.i.payload.as_value()), in_full.eq(1)]
        with m.Elif(load):
            m.d.sync += in_full.eq(0)

        # --- issue unit (stage 0) -------------------------------------------------------------------
        issuing = Signal()
        rt = Signal(index_range(RT))
        ct = Signal(index_range(CT))
        last_ct = named(m, ct == CT - 1, "s0_last_col_tile")
        last_rt = named(m, rt == RT - 1, "s0_last_row_tile")
        credits_out = Signal(range(D + 1))
        m.d.comb += load.eq(in_full & (~issuing | (last_ct & last_rt)) & (credits_out < D))

        x_reg = Signal(n * d, name="x_reg", reset_less=True)
        pad = p.padded_n - n  # the last column tile's inputs past n are 0
        x_padded = Cat(x_reg, Const(0, pad * d)) if pad else x_reg
        x_tile = x_padded.word_select(ct, C * d) if CT > 1 else x_padded
        m.d.comb += w_rd.addr.eq(rt * CT + ct)

        with m.If(issuing):
            with m.If(~last_ct):
                m.d.sync += ct.eq(ct + 1)
            with m.Else():
                m.d.sync += ct.eq(0)
                with m.If(~last_rt):
                    m.d.sync += rt.eq(rt + 1)
                with m.Else():
                    m.d.sync += [rt.eq(0), issuing.eq(0)]
        with m.If(load):
            m.d.sync += [issuing.eq(1), x_reg.eq(x_buf)]

        # --- stage 0 -> 1 ----------------------------------------------------------------------------
        flags = ("valid", "first", "last", "vec_end")
        s1 = {name: Signal(name=f"s1_{name}") for name in flags}
        s1_x = Signal(C * d, name="s1_x", reset_less=True)
        s1_rt = Signal.like(rt, name="s1_rt")
        m.d.sync += [
            s1["valid"].eq(issuing),
            s1["first"].eq(ct == 0),
            s1["last"].eq(last_ct),
            s1["vec_end"].eq(last_ct & last_rt),
            s1_x.eq(x_tile),
            s1_rt.eq(rt),
        ]

        # --- stage 1: the weight tile arrives; the R x C products ------------------------------------
        prod = [[Signal(signed(p.prod_bits), name=f"s2_prod{r}_{c}", reset_less=True) for c in range(C)]
                for r in range(R)]
        xs = [s1_x.word_select(c, d).as_signed() for c in range(C)]
        for r in range(R):
            for c in range(C):
                m.d.sync += prod[r][c].eq(w_rd.data.word_select(r * C + c, d).as_signed() * xs[c])
        s2 = {name: Signal(name=f"s2_{name}") for name in flags}
        s2_rt = Signal.like(rt, name="s2_rt")
        m.d.sync += [s2[name].eq(s1[name]) for name in flags] + [s2_rt.eq(s1_rt)]
        # The bias of a row tile is read alongside, so that it arrives with stage 3.
        m.d.comb += b_rd.addr.eq(s2_rt)

        # --- stage 2: per row the sum of its C products ----------------------------------------------
        s3_sum = [Signal(signed(p.sum_bits), name=f"s3_sum{r}", reset_less=True) for r in range(R)]
        m.d.sync += [s3_sum[r].eq(adder_tree(list(prod[r]))) for r in range(R)]
        s3 = {name: Signal(name=f"s3_{name}") for name in flags}
        m.d.sync += [s3[name].eq(s2[name]) for name in flags]
        # Row tile of stages 3-4 (it picks the result slots); constant 0 when there is only one.
        tile_of = {s: Signal.like(rt, name=f"s{s}_rt") if RT > 1 else Const(0, 1) for s in (3, 4)}
        if RT > 1:
            m.d.sync += [tile_of[3].eq(s2_rt), tile_of[4].eq(tile_of[3])]

        # --- stage 3: accumulate (modular in acc_bits; the final sum fits, so it is exact) ------------
        acc = [Signal(signed(p.acc_bits), name=f"acc{r}") for r in range(R)]
        for r in range(R):
            base = Mux(s3["first"], b_rd.data.word_select(r, bb).as_signed(), acc[r])
            with m.If(s3["valid"]):
                m.d.sync += acc[r].eq(base + s3_sum[r])
        s4 = {name: Signal(name=f"s4_{name}") for name in ("valid", "vec_end")}
        m.d.sync += [s4["valid"].eq(s3["valid"] & s3["last"]), s4["vec_end"].eq(s3["vec_end"])]

        # --- stage 4: round half to even, clamp (the accumulators hold the finished row tile); merge
        # into the result buffer, push the vector --------------------------------------------------------
        limit = Const((1 << (OB - 1)) - 1, signed(OB))
        neg_limit = Const(-(1 << (OB - 1)), signed(OB))
        codes = [clamp(m, round_half_even(m, acc[r], cfg.shift_o, guard, sticky, f"s4_{r}"), limit, neg_limit, OB,
                       f"s4_{r}") for r in range(R)]
        held = (RT - 1) * R  # rows of the row tiles before the last wait in the result buffer
        res = [Signal(OB, name=f"res{i}", reset_less=True) for i in range(held)]
        with m.If(s4["valid"]):
            for i in range(held):
                with m.If(tile_of[4] == i // R):
                    m.d.sync += res[i].eq(codes[i % R])
        out_vector = Cat(*res, *codes[:M - held])

        push = s4["valid"] & s4["vec_end"]
        pop = self.o.valid & self.o.ready
        o_head, o_count = queue(m, "out_fifo", M * OB, D, push, out_vector, pop)
        m.d.comb += [self.o.valid.eq(o_count != 0), self.o.payload.eq(o_head)]
        m.d.sync += credits_out.eq(credits_out + load - pop)
        return m
