"""Activation unit of the renderer: one table lookup per lane, one vector per cycle, Amaranth 0.5.

Per input vector of ``lanes`` signed codes z (run-time width B <= in_bits), bit-exactly as
``sim.tlm.activation.activation_reference``::

    u   = z + 2^(B-1)                       # in [0, 2^B)
    idx = u >> max(0, B - A)                # A = index_bits: every code when B <= A, else its top A bits
    y   = table[idx]                        # unsigned out_bits

Interfaces (all in the ``sync`` domain):

* ``i``: ``stream.Signature(ArrayLayout(signed(in_bits), lanes))``: one vector per transfer, lane j in
  bits [j * in_bits, (j + 1) * in_bits), each code sign-extended from B to ``in_bits`` bits (the
  bits above B must be copies of bit B - 1, as ``sim.tlm.transfers.pack_vector`` writes them).
* ``o``: ``stream.Signature(ArrayLayout(unsigned(out_bits), lanes))``: the table entries, lane j in bits
  [j * out_bits, (j + 1) * out_bits). Outputs leave in input order.
* ``cfg`` (``ConfigWriteSignature``): while ``en``, B is written from ``data.bits``
  (``ActivationParams.config_fields``); the unit registers 2^(B-1) and max(0, B - A) from it at the
  same edge, so the datapath computes neither. B = in_bits after reset.
* ``table`` (``TableWriteSignature``): while ``en``, entry ``addr`` of the table (2^A x out_bits, one
  ``amaranth.lib.memory.Memory``) is written from ``data``. Every lane reads the same table through its
  own read port (non-transparent).

Write the configuration and the table while the unit is idle (no vector in flight).

Micro-architecture and timing (modelled cycle for cycle by ``sim.tlm.activation.ActivationTLM``): a vector
transferred at cycle a has its indices registered at the edge closing cycle a; the read ports take
them in cycle a + 1 and give the entries in cycle a + 2, which are pushed into the output FIFO
(``hw.common.StreamQueue``, D = ``OUT_FIFO_DEPTH`` = 4 entries) then; the vector is valid at ``o`` from
cycle a + 3. Latency L = ``LATENCY`` = 3 cycles. The registers never stall: an input transfer takes one
of D credits, returned by the output transfer (usable in the next cycle); ``i.ready`` is
``credits in use < D``, with no combinational path from ``o.ready``. D = L + 1 gives II = 1 at full rate::

    a_k = max(offer_k, a_{k-1} + 1, o_{k-4} + 1)                    input transfer
    o_k = min{t >= max(a_k + 3, o_{k-1} + 1) : ready[t]}            output transfer
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.activation.params import ActivationParams
from hw.common import StreamQueue, config_layout

__all__ = ["ActivationUnit", "ConfigWriteSignature", "TableWriteSignature", "input_layout", "output_layout"]


def input_layout(params: ActivationParams) -> data.ArrayLayout:
    """Input payload: ``lanes`` signed ``in_bits`` codes, lane 0 in the low bits."""
    return data.ArrayLayout(signed(params.in_bits), params.lanes)


def output_layout(params: ActivationParams) -> data.ArrayLayout:
    """Output payload: ``lanes`` unsigned ``out_bits`` codes, lane 0 in the low bits."""
    return data.ArrayLayout(unsigned(params.out_bits), params.lanes)


class ConfigWriteSignature(wiring.Signature):
    """Configuration port, driver's view: ``en``, ``data`` (``config_layout``: the field ``bits``, B)."""

    def __init__(self, params: ActivationParams):
        super().__init__({"en": Out(1), "data": Out(config_layout(params))})


class TableWriteSignature(wiring.Signature):
    """Table-load port, driver's view: ``en``, ``addr`` (``index_bits``), ``data`` (``out_bits``)."""

    def __init__(self, params: ActivationParams):
        super().__init__({"en": Out(1), "addr": Out(params.index_bits), "data": Out(params.out_bits)})


class ActivationUnit(wiring.Component):
    """Table-lookup activation; see the module docstring for interfaces, arithmetic and timing.

    Args:
        params: ``ActivationParams`` (keyword-only).

    Raises:
        TypeError: ``params`` is not an ``ActivationParams``.
    """

    def __init__(self, *, params: ActivationParams):
        if not isinstance(params, ActivationParams):
            raise TypeError(f"params must be an ActivationParams, not {params!r}")
        self._params = params
        super().__init__({
            "i": In(stream.Signature(input_layout(params))),
            "o": Out(stream.Signature(output_layout(params))),
            "cfg": In(ConfigWriteSignature(params)),
            "table": In(TableWriteSignature(params)),
        })

    @property
    def params(self) -> ActivationParams:
        return self._params

    def elaborate(self, platform):
        p = self._params
        m = Module()
        n, IB, A, D = p.lanes, p.in_bits, p.index_bits, p.OUT_FIFO_DEPTH

        # --- configuration: 2^(B-1) and the index shift max(0, B - A), registered when B is written ---
        bits = self.cfg.data.bits
        half = Signal(IB, name="cfg_half", init=1 << (IB - 1))
        with m.If(self.cfg.en):
            m.d.sync += half.eq(((Const(1, IB + 1) << bits) >> 1)[:IB])
        if p.shift_max:
            shift = Signal(range(p.shift_max + 1), name="cfg_shift", init=p.shift_max)
            with m.If(self.cfg.en):
                m.d.sync += shift.eq(Mux(bits > A, bits - A, 0))
        else:
            shift = Const(0, 1)

        # --- the table: one write port, one non-transparent read port per lane ----------------------
        table = memory.Memory(shape=unsigned(p.out_bits), depth=p.depth, init=[])
        m.submodules.table = table
        table_wr = table.write_port()
        m.d.comb += [table_wr.en.eq(self.table.en), table_wr.addr.eq(self.table.addr),
                     table_wr.data.eq(self.table.data)]
        reads = [table.read_port() for _ in range(n)]

        # --- credits: vectors accepted whose output has not transferred ------------------------------
        credits = Signal(range(D + 1))
        m.d.comb += self.i.ready.eq(credits < D)
        in_fire = self.i.valid & self.i.ready
        pop = self.o.valid & self.o.ready
        m.d.sync += credits.eq(credits + in_fire - pop)

        # --- stage 1: the table index of every lane ---------------------------------------------------
        idx_bits = min(IB, A)
        s1_valid = Signal()
        m.d.sync += s1_valid.eq(in_fire)
        for j in range(n):
            u = (self.i.payload[j] + half)[:IB]  # z + 2^(B-1) in [0, 2^B): its low in_bits bits are exact
            idx = Signal(idx_bits, name=f"s1_index{j}", reset_less=True)
            m.d.sync += idx.eq((u >> shift)[:idx_bits])
            m.d.comb += reads[j].addr.eq(idx)

        # --- stage 2: the entries arrive and go into the output FIFO -----------------------------------
        s2_valid = Signal()
        m.d.sync += s2_valid.eq(s1_valid)
        m.submodules.out_fifo = queue = StreamQueue(shape=n * p.out_bits, depth=D)
        m.d.comb += [
            queue.w_en.eq(s2_valid),
            queue.w_data.eq(Cat(*[r.data for r in reads])),
            queue.o.ready.eq(self.o.ready),
            self.o.valid.eq(queue.o.valid),
            self.o.payload.eq(queue.o.payload),
        ]
        return m
