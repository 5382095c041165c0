"""Spherical-harmonics unit: one view direction per cycle in, its 16 requantized SH coefficients out
(Amaranth 0.5).

Per direction ``(x, y, z)`` (signed ``dir_bits`` codes, Q = dir_bits - 1 fractional bits), bit-exactly
as ``sim.tlm.sh_unit.sh_reference`` (its docstring has the semantics in full), with
``r(a, b) = (a * b + 2^(Q-1)) >> Q`` (round half up, arithmetic shift)::

    xx, yy, zz, xy, yz, xz = r(x, x), r(y, y), r(z, z), r(x, y), r(y, z), r(x, z)
    m = [2^Q, y, z, x, xy, yz, zz, xz, xx - yy, r(y, yy - 3 xx), r(xy, z), r(y, 2^Q - 5 zz),
         r(z, 5 zz - 3 * 2^Q), r(x, 2^Q - 5 zz), r(z, xx - yy), r(x, 3 yy - xx)]
    out_k = clamp((m_k * M_k + O_k + half) >> S, -2^(B-1), 2^(B-1) - 1)    # half = 2^(S-1), 0 for S = 0

with B = out_bits (run time). Every code of the signed dir_bits range is exact, -2^Q included.

Interfaces (all in the ``sync`` domain):

* ``i``: ``stream.Signature(direction_layout(dir_bits))``: ``x`` in bits [0, D), ``y`` in [D, 2D),
  ``z`` in [2D, 3D) (D = dir_bits, two's complement).
* ``o``: ``stream.Signature(coefficients_layout(params))``: 16 signed ``max_out_bits`` fields,
  coefficient k in bits [k * max_out_bits, (k + 1) * max_out_bits) (``sim.tlm.transfers.pack_vector``),
  each an out_bits code sign-extended to max_out_bits. Outputs leave in input order.
* ``cfg`` (``ConfigWriteSignature``): while ``en``, the settings are written from ``data``
  (``hw.common.config_layout``: ``out_bits`` then ``shift``, ``ShUnitParams.config_fields``); out_bits
  must lie in [2, max_out_bits] and S in [0, shift_max]. The rounding constant 2^(S-1) and the clamp
  limits are registered from ``data`` at the same edge, so the datapath computes none of them.
  Power-up: out_bits = max_out_bits, S = 0.
* ``consts`` (``ConstWriteSignature``): while ``en``, coefficient ``k`` (0..15) gets the signed
  multiplier ``mult`` (M_k, ``mult_bits``) and the signed offset ``offset`` (O_k, ``offset_bits``), in
  registers. Power-up: all 0.

Write ``cfg`` and ``consts`` while the unit is idle (no direction in flight); a write while directions
are in flight takes effect at once and changes their results.

Micro-architecture (modelled cycle for cycle by ``sim.tlm.sh_unit.ShUnitTLM``). Every register moves
every cycle, a valid bit travels along; the pipeline never stalls:

* input register: the payload of the input transfer at cycle a is in it in cycle a + 1;
* stage 1: the six squares and cross products (six (Q+1) x (Q+1) multipliers), rounded to Q
  fractional bits; x, y, z travel along;
* stage 2: the linear combinations (yy - 3 xx, 2^Q - 5 zz, 5 zz - 3 * 2^Q, xx - yy, 3 yy - xx) and the
  seven third-order products (seven (Q+1) x (Q+3) multipliers), rounded: the monomials m_1 .. m_15
  in registers of ``ShUnitParams.monomial_widths`` (m_0 = 2^Q is a constant);
* stage 3: ``m_k * M_k + O_k`` (fifteen monomial_width x mult_bits multipliers; m_0 * M_0 = M_0 << Q);
* stage 4: ``+ 2^(S-1)``, arithmetic shift right by S, clamp to out_bits, and write the 16 codes into the
  output FIFO (``hw.common.StreamQueue``, ``fifo_depth`` = 6 entries); the entry is on ``o`` the cycle
  after.
* credits: a direction holds one from its input transfer to its output transfer; ``i.ready`` =
  credits in use < fifo_depth (it never depends on ``i.valid``), so the FIFO never overflows and
  backpressure stops the input, never the pipeline.

THE CYCLE FORMULA (``ShUnitParams.latency`` L = PIPELINE_STAGES + 1 = 5, F = fifo_depth = 6):

* latency, input transfer at a to output transfer, output ready: a + 5;
* initiation interval 1 at full rate: N directions offered from cycle 0 with the output always ready
  transfer in cycles 0 .. N - 1 and leave in cycles 5 .. N + 4;
* in general, with direction k offered from offer_k, ready[t] the output's ready and terms with a
  negative index left out::

      a_k = max(offer_k, a_{k-1} + 1, o_{k-F} + 1)                   input transfer (a credit free)
      o_k = min{t >= max(a_k + L, o_{k-1} + 1) : ready[t]}           output transfer
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.common import StreamQueue, config_layout
from hw.sh_unit.params import SH_COEFFICIENTS, ShUnitParams

__all__ = ["ShUnit", "ConfigWriteSignature", "ConstWriteSignature", "direction_layout", "coefficients_layout"]


def direction_layout(dir_bits: int) -> data.StructLayout:
    """Input payload: ``x``, ``y``, ``z``, signed ``dir_bits`` each (x in the low bits)."""
    return data.StructLayout({"x": signed(dir_bits), "y": signed(dir_bits), "z": signed(dir_bits)})


def coefficients_layout(params: ShUnitParams) -> data.ArrayLayout:
    """Output payload: 16 signed ``max_out_bits`` fields, coefficient 0 in the low bits."""
    return data.ArrayLayout(signed(params.max_out_bits), SH_COEFFICIENTS)


class ConfigWriteSignature(wiring.Signature):
    """Configuration port, driver's view: ``en``, ``data`` (``config_layout``: out_bits, shift)."""

    def __init__(self, params: ShUnitParams):
        super().__init__({"en": Out(1), "data": Out(config_layout(params))})


class ConstWriteSignature(wiring.Signature):
    """Constant port, driver's view: ``en``, ``k`` (4 bits), ``mult`` (signed mult_bits), ``offset``
    (signed offset_bits)."""

    def __init__(self, params: ShUnitParams):
        super().__init__({
            "en": Out(1),
            "k": Out(range(SH_COEFFICIENTS)),
            "mult": Out(signed(params.mult_bits)),
            "offset": Out(signed(params.offset_bits)),
        })


class ShUnit(wiring.Component):
    """Spherical-harmonics unit; see the module docstring for the interfaces, arithmetic and timing.

    Args:
        params: ``ShUnitParams`` (keyword-only).

    Raises:
        TypeError: ``params`` is not a ``ShUnitParams``.
    """

    def __init__(self, *, params: ShUnitParams):
        if not isinstance(params, ShUnitParams):
            raise TypeError(f"params must be a ShUnitParams, not {params!r}")
        self._params = params
        super().__init__({
            "i": In(stream.Signature(direction_layout(params.dir_bits))),
            "o": Out(stream.Signature(coefficients_layout(params))),
            "cfg": In(ConfigWriteSignature(params)),
            "consts": In(ConstWriteSignature(params)),
        })

    @property
    def params(self) -> ShUnitParams:
        return self._params

    def elaborate(self, platform):
        p = self._params
        m = Module()
        Q, D, B, K = p.frac_bits, p.dir_bits, p.max_out_bits, SH_COEFFICIENTS
        one = 1 << Q

        def reg(name, shape):
            return Signal(shape, name=name, reset_less=True)

        def rnd(a, b):
            """``r(a, b)``: the product rounded half up to Q fractional bits."""
            return (a * b + (1 << (Q - 1))) >> Q

        # --- settings and constants ----------------------------------------------------------------
        new = self.cfg.data
        shift = Signal(range(1 << len(new.shift)), name="cfg_shift")
        half = Signal(p.shift_max, name="cfg_half")  # 2^(S-1), 0 for S = 0
        hi = Signal(signed(B), name="cfg_hi", init=(1 << (B - 1)) - 1)
        lo = Signal(signed(B), name="cfg_lo", init=-(1 << (B - 1)))
        with m.If(self.cfg.en):
            top = (Const(1, B + 1) << new.out_bits) >> 1  # 2^(out_bits-1)
            m.d.sync += [
                shift.eq(new.shift),
                half.eq((Const(1, p.shift_max + 1) << new.shift) >> 1),
                hi.eq(top - 1),
                lo.eq(-top),
            ]
        mult = [Signal(signed(p.mult_bits), name=f"mult{k}") for k in range(K)]
        offset = [Signal(signed(p.offset_bits), name=f"offset{k}") for k in range(K)]
        with m.If(self.consts.en):
            with m.Switch(self.consts.k):
                for k in range(K):
                    with m.Case(k):
                        m.d.sync += [mult[k].eq(self.consts.mult), offset[k].eq(self.consts.offset)]

        # --- credits and the input register ---------------------------------------------------------
        depth = p.fifo_depth
        credits = Signal(range(depth + 1))
        m.d.comb += self.i.ready.eq(credits < depth)
        in_fire = self.i.valid & self.i.ready
        valid = [Signal(name=f"s{s}_valid") for s in range(p.PIPELINE_STAGES)]  # registers of stages 0..3
        m.d.sync += valid[0].eq(in_fire)
        m.d.sync += [valid[s].eq(valid[s - 1]) for s in range(1, p.PIPELINE_STAGES)]
        x0, y0, z0 = (reg(f"s0_{c}", signed(D)) for c in "xyz")
        m.d.sync += [x0.eq(self.i.payload.x), y0.eq(self.i.payload.y), z0.eq(self.i.payload.z)]

        # --- stage 1: squares and cross products ----------------------------------------------------
        sq = {name: reg(f"s1_{name}", signed(Q + 2)) for name in ("xx", "yy", "zz", "xy", "yz", "xz")}
        m.d.sync += [sq["xx"].eq(rnd(x0, x0)), sq["yy"].eq(rnd(y0, y0)), sq["zz"].eq(rnd(z0, z0)),
                     sq["xy"].eq(rnd(x0, y0)), sq["yz"].eq(rnd(y0, z0)), sq["xz"].eq(rnd(x0, z0))]
        x1, y1, z1 = (reg(f"s1_{c}", signed(D)) for c in "xyz")
        m.d.sync += [x1.eq(x0), y1.eq(y0), z1.eq(z0)]

        # --- stage 2: the monomials -----------------------------------------------------------------
        xx, yy, zz, xy = sq["xx"], sq["yy"], sq["zz"], sq["xy"]
        one_5zz = one - 5 * zz  # [-4, 1] * 2^Q
        values = {
            1: y1, 2: z1, 3: x1, 4: xy, 5: sq["yz"], 6: zz, 7: sq["xz"], 8: xx - yy,
            9: rnd(y1, yy - 3 * xx), 10: rnd(xy, z1), 11: rnd(y1, one_5zz), 12: rnd(z1, 5 * zz - 3 * one),
            13: rnd(x1, one_5zz), 14: rnd(z1, xx - yy), 15: rnd(x1, 3 * yy - xx),
        }
        mono = {k: reg(f"s2_m{k}", signed(p.monomial_widths[k])) for k in values}
        m.d.sync += [mono[k].eq(v) for k, v in values.items()]

        # --- stage 3: constant multiplies and offsets -----------------------------------------------
        acc = []
        for k in range(K):
            term = (mult[0] << Q) if k == 0 else mono[k] * mult[k]
            expr = term + offset[k]
            a = reg(f"s3_acc{k}", expr.shape())
            m.d.sync += a.eq(expr)
            acc.append(a)

        # --- stage 4: round half up by S, clamp, into the output FIFO --------------------------------
        codes = []
        for k in range(K):
            rounded = acc[k] + half  # exact: its natural width has room for both
            y = Signal(rounded.shape(), name=f"s4_y{k}")
            m.d.comb += y.eq(rounded >> shift)
            code = Mux(y > hi, hi, Mux(y < lo, lo, y[:B].as_signed()))  # signed(B)
            codes.append(code)

        m.submodules.out_fifo = queue = StreamQueue(shape=coefficients_layout(p), depth=depth)
        m.d.comb += [queue.w_en.eq(valid[-1]), queue.w_data.eq(Cat(*codes))]
        wiring.connect(m, queue.o, wiring.flipped(self.o))
        pop = self.o.valid & self.o.ready
        m.d.sync += credits.eq(credits + in_fire - pop)
        return m
