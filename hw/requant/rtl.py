"""Vector requantizer of the renderer: a per-lane affine dyadic rescale, one vector per cycle, Amaranth 0.5.

Per input vector u of ``lanes`` signed ``in_bits`` values, bit-exactly as
``sim.tlm.requant.requant_reference``::

    v   = u_e * M_e + O_e                         # M_e unsigned mult_bits, O_e signed offset_bits
    r   = (v + 2^(S-1)) >> S                      # arithmetic shift, round half up; r = v for S = 0
    y_e = clamp(r, 0, 2^out_bits - 1)             # unsigned out_bits (run time, <= max_out_bits)

Interfaces (all in the ``sync`` domain):

* ``i``: ``stream.Signature(ArrayLayout(signed(in_bits), lanes))``: one vector per transfer, lane e in
  bits [e * in_bits, (e + 1) * in_bits), two's complement.
* ``o``: ``stream.Signature(ArrayLayout(unsigned(max_out_bits), lanes))``: the codes, lane e in bits
  [e * max_out_bits, (e + 1) * max_out_bits), the bits of a field above ``out_bits`` zero. Outputs leave
  in input order.
* ``cfg`` (``ConfigWriteSignature``): while ``en``, S and out_bits are written from ``data``
  (``config_layout``: fields of ``RequantParams.config_fields``); 2^(S-1) (0 for S = 0) and the limit
  2^out_bits - 1 are registered from ``data`` at the same edge, so the datapath computes neither.
  After reset S = 0 and out_bits = max_out_bits.
* ``consts`` (``ConstWriteSignature``): while ``en``, lane ``lane``'s multiplier M and offset O are
  written from ``mult`` (unsigned ``mult_bits``) and ``offset`` (two's complement ``offset_bits``)
  into registers (``lane`` >= lanes writes nothing). They have no reset value: load every lane.

Write the configuration and the constants while the unit is idle (no vector in flight).

Micro-architecture and timing (modelled cycle for cycle by ``sim.tlm.requant.RequantTLM``): a vector
transferred at cycle a is in the input register in cycle a + 1, its products u_e * M_e (``prod_bits``)
in a + 2, its sums u_e * M_e + O_e + 2^(S-1) (``sum_bits``) in a + 3, where they are shifted by S,
clamped and pushed into the output FIFO (``hw.common.StreamQueue``, D = ``OUT_FIFO_DEPTH`` = 5
entries); the vector is valid at ``o`` from cycle a + 4. Latency L = ``LATENCY`` = 4 cycles. The
registers never stall: an input transfer takes one of D credits, returned by the output transfer
(usable in the next cycle); ``i.ready`` is ``credits in use < D``, with no combinational path from
``o.ready``. D = L + 1 gives II = 1 at full rate::

    a_k = max(offer_k, a_{k-1} + 1, o_{k-5} + 1)                    input transfer
    o_k = min{t >= max(a_k + 4, o_{k-1} + 1) : ready[t]}            output transfer
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.common import StreamQueue, config_layout, index_range
from hw.requant.params import RequantParams

__all__ = ["Requantizer", "ConfigWriteSignature", "ConstWriteSignature", "input_layout", "output_layout"]


def input_layout(params: RequantParams) -> data.ArrayLayout:
    """Input payload: ``lanes`` signed ``in_bits`` values, lane 0 in the low bits."""
    return data.ArrayLayout(signed(params.in_bits), params.lanes)


def output_layout(params: RequantParams) -> data.ArrayLayout:
    """Output payload: ``lanes`` unsigned ``max_out_bits`` codes, lane 0 in the low bits."""
    return data.ArrayLayout(unsigned(params.max_out_bits), params.lanes)


class ConfigWriteSignature(wiring.Signature):
    """Configuration port, driver's view: ``en``, ``data`` (``config_layout``: ``shift``, ``out_bits``)."""

    def __init__(self, params: RequantParams):
        super().__init__({"en": Out(1), "data": Out(config_layout(params))})


class ConstWriteSignature(wiring.Signature):
    """Per-lane constants port, driver's view: ``en``, ``lane``, ``mult`` (unsigned ``mult_bits``),
    ``offset`` (signed ``offset_bits``)."""

    def __init__(self, params: RequantParams):
        super().__init__({
            "en": Out(1),
            "lane": Out(index_range(params.lanes)),
            "mult": Out(unsigned(params.mult_bits)),
            "offset": Out(signed(params.offset_bits)),
        })


class Requantizer(wiring.Component):
    """Per-lane affine dyadic requantizer; see the module docstring for interfaces, arithmetic and timing.

    Args:
        params: ``RequantParams`` (keyword-only).

    Raises:
        TypeError: ``params`` is not a ``RequantParams``.
    """

    def __init__(self, *, params: RequantParams):
        if not isinstance(params, RequantParams):
            raise TypeError(f"params must be a RequantParams, not {params!r}")
        self._params = params
        super().__init__({
            "i": In(stream.Signature(input_layout(params))),
            "o": Out(stream.Signature(output_layout(params))),
            "cfg": In(ConfigWriteSignature(params)),
            "consts": In(ConstWriteSignature(params)),
        })

    @property
    def params(self) -> RequantParams:
        return self._params

    def elaborate(self, platform):
        p = self._params
        m = Module()
        n, IB, OB, D = p.lanes, p.in_bits, p.max_out_bits, p.OUT_FIFO_DEPTH

        # --- configuration: S, 2^(S-1) and 2^out_bits - 1, registered when written ---------------------
        new = self.cfg.data
        shift = Signal(range(p.shift_max + 1), name="cfg_shift", init=0)
        half = Signal(p.shift_max, name="cfg_half", init=0)  # 2^(S-1), 0 for S = 0
        limit = Signal(OB, name="cfg_limit", init=(1 << OB) - 1)  # 2^out_bits - 1
        with m.If(self.cfg.en):
            m.d.sync += [
                shift.eq(new.shift),
                half.eq(((Const(1, p.shift_max + 1) << new.shift) >> 1)[:p.shift_max]),
                limit.eq(((Const(1, OB + 1) << new.out_bits) - 1)[:OB]),
            ]

        # --- per-lane constants (registers, no reset: loaded before use) ------------------------------
        mult = [Signal(unsigned(p.mult_bits), name=f"mult{e}", reset_less=True) for e in range(n)]
        offset = [Signal(signed(p.offset_bits), name=f"offset{e}", reset_less=True) for e in range(n)]
        for e in range(n):
            with m.If(self.consts.en & (self.consts.lane == e)):
                m.d.sync += [mult[e].eq(self.consts.mult), offset[e].eq(self.consts.offset)]

        # --- credits: vectors accepted whose output has not transferred ------------------------------
        credits = Signal(range(D + 1))
        m.d.comb += self.i.ready.eq(credits < D)
        in_fire = self.i.valid & self.i.ready
        pop = self.o.valid & self.o.ready
        m.d.sync += credits.eq(credits + in_fire - pop)

        # --- stage 1: input register; stage 2: u * M; stage 3: u * M + O + 2^(S-1) -------------------
        s1_valid, s2_valid, s3_valid = Signal(), Signal(), Signal()
        m.d.sync += [s1_valid.eq(in_fire), s2_valid.eq(s1_valid), s3_valid.eq(s2_valid)]
        x = Signal(n * IB, name="s1_x", reset_less=True)
        m.d.sync += x.eq(self.i.payload.as_value())
        codes = []
        for e in range(n):
            prod = Signal(signed(p.prod_bits), name=f"s2_prod{e}", reset_less=True)
            m.d.sync += prod.eq(x.word_select(e, IB).as_signed() * mult[e])
            total = Signal(signed(p.sum_bits), name=f"s3_sum{e}", reset_less=True)
            m.d.sync += total.eq(prod + offset[e] + half)
            # --- cycle a + 3: shift, clamp to [0, 2^out_bits - 1], into the output FIFO ----------------
            r = Signal(signed(p.sum_bits), name=f"s3_round{e}")
            m.d.comb += r.eq(total >> shift)
            code = Signal(OB, name=f"s3_code{e}")
            m.d.comb += code.eq(Mux(r < 0, 0, Mux(r > limit, limit, r[:OB])))
            codes.append(code)

        m.submodules.out_fifo = queue = StreamQueue(shape=n * OB, depth=D)
        m.d.comb += [
            queue.w_en.eq(s3_valid),
            queue.w_data.eq(Cat(*codes)),
            queue.o.ready.eq(self.o.ready),
            self.o.valid.eq(queue.o.valid),
            self.o.payload.eq(queue.o.payload),
        ]
        return m
