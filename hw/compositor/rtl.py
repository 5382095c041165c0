"""The compositing unit of the renderer: volume rendering of a ray's samples into one pixel, Amaranth 0.5.

Per ray, bit-exactly as ``sim.tlm.compositor.composite_reference`` (its module docstring has the
arithmetic; Ft = trans_bits, G = exp_index_bits)::

    D_0 = 0;  D_{i+1} = min(D_i + sigma_i * q, 2^depth_bits - 1) while D_i < depth_limit, else D_i
    T(D) = round_shift(EXP2[g], k) if k <= Ft + 1 else 0,  (k, g) = divmod(round_shift(D * L2E, ...), 2^G)
    w_i = T(D_i) - T(D_{i+1});  A_c = sum_i w_i * color_i,c;  T_end = T(D) after the ray
    pixel_c = clamp(round_shift(A_c * M_c + (2^Ft - T_end) * M_l + T_end * M_b, S), pixel_bits, unsigned)

Once D reaches the depth limit (early ray termination) it stops, so the later samples of the ray have
w = T(D) - T(D) = 0 and T_end is T of the depth where the ray stopped: the datapath needs no
"terminated" flag, and the test is the integer compare D < depth_limit on the accumulated D (no
feedback from T). A ray without samples is one *background token* (sigma 0, colours 0, first and last
sample of its ray): D stays 0, w = 2^Ft - T(0) = 0 and T_end = 2^Ft.

Interfaces (all in the ``sync`` domain):

* ``rays``: ``stream.Signature(ray_layout(params))``: a ray header, ``q`` (unsigned ``q_bits``, the
  optical depth of one density code over the ray's step, ``depth_frac`` fractional bits) in the low
  bits, then ``count`` (unsigned ``count_bits``, the ray's samples, 0 allowed).
* ``samples``: ``stream.Signature(sample_layout(params))``: ``sigma`` (unsigned ``sigma_bits``) in the
  low bits, then ``color`` (3 x unsigned ``color_bits``, R first). The samples of ray 0, then those of
  ray 1, ...: the unit takes exactly ``count`` samples after each header.
* ``pixels``: ``stream.Signature(pixel_layout(params))``: 3 x unsigned ``pixel_bits``, R in the low
  bits (``sim.tlm.transfers.pack_vector``). One pixel per ray, in ray order.
* ``cfg`` (``ConfigWriteSignature``): while ``en``, the run-time constants are written from ``data``
  (``config_layout``: fields of ``CompositorParams.config_fields``: M_c, M_l, M_b as two's complement
  ``pix_mult_bits``, S, depth_limit; ``sim.tlm.compositor.constants_word`` packs it). The rounding
  half ``2^(S-1)`` of the pixel shift is registered at the same edge. Write it while the unit is idle
  (no ray accepted whose pixel has not transferred): a write takes effect at once.

The exp2 table is a ROM (``amaranth.lib.memory.Memory`` with ``init``, 2^G words of Ft + 1 bits,
``CompositorParams.exp2_entries``) behind a synchronous read port.

Micro-architecture (modelled cycle for cycle by ``sim.tlm.compositor.CompositorTLM``; P =
``PIPELINE_STAGES`` = 10, H = ``HEADER_DEPTH`` = 2, Q = ``OUT_FIFO_DEPTH`` = 13):

* Header queue (``hw.common.StreamQueue``, H entries): ``rays.ready`` = (queue level < H) and (credits
  < Q); a header accepted in cycle h is at the queue's head from h + 1. A ray holds one *credit* from
  its header transfer to its pixel transfer, so the output queue (Q entries) never overflows and the
  pipeline never stalls: output backpressure holds the credits, then ``rays.ready`` drops, then the
  samples run out. Neither ready depends on a valid.
* Sample issue: while the head ray has samples, ``samples.ready`` is high; a counter of the samples
  taken marks the first and last sample of the ray, and the head is popped in the cycle its last sample
  transfers, so the next ray's first sample can transfer in the next cycle. A head ray without samples
  is popped in the cycle it is at the head, as one background token (``samples.ready`` is low then).
* Pipeline, every register moves every cycle; a token accepted (transferred, or issued as a background
  token) in cycle a is in stage j in cycle a + j: 1 input register (sigma, colours, the ray's q,
  first/last), the product sigma * q clipped to 2^depth_bits; 2 the D loop, one add, saturate and
  compare per cycle (D restarts from 0 at a ray's first token; it is updated only while D <
  depth_limit); 3 ``D * L2E`` plus the rounding half, shifted: the exponent y; 4 the ROM address g,
  k registered; 5 ``T = round_shift(EXP2[g], k)`` (0 for k > Ft + 1); 6 ``w = T_prev - T`` (T_prev =
  2^Ft at a ray's first token), T_prev updated; 7 the products ``w * c``; 8 the colour sums A (restart
  at a ray's first token); 9 at a ray's last token the pixel products ``A * M_c``, ``(2^Ft - T) * M_l``,
  ``T * M_b``; 10 their sum plus the rounding half, arithmetic shift by S, clamp to [0, 2^P - 1], and
  the push into the output queue (``hw.common.StreamQueue``, Q entries), whose head is on ``pixels``
  from the next cycle.

THE CYCLE FORMULA. With the header of ray k transferring at h_k, its tokens (its samples' transfers, or
its background token) at cycles a, and its last token at e_k:

* the first token of ray k is at the earliest max(h_k + 1, e_{k-1} + 1): the samples of consecutive
  rays stream back to back, one per cycle, when the headers run ahead (the header queue holds them);
* its pixel is pushed at e_k + P and transfers at the first cycle t >= max(e_k + P + 1, o_{k-1} + 1)
  with ``pixels.ready``: latency ``LATENCY`` = P + 1 = 11 cycles from the last sample's transfer,
  ``HEADER_CYCLES + LATENCY`` = 12 from the header of a ray without samples;
* full rate (every header and sample offered from cycle 0, output always ready): ray k takes
  max(count_k, 1) cycles, the initiation interval is one sample per cycle and a ray without samples
  costs one cycle; R rays finish (last pixel transfer + 1) at ``sum_k max(count_k, 1) + P + 2``
  (``sim.tlm.compositor.stream_cycles``). Q = P + 3 credits cover the round trip of a ray without
  samples (header h, token h + 1, pixel transfer h + P + 2, credit free from h + P + 3), so they never
  slow a full-rate stream.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.common import StreamQueue, config_layout
from hw.compositor.params import CompositorParams

__all__ = ["Compositor", "ConfigWriteSignature", "ray_layout", "sample_layout", "pixel_layout", "config_layout"]


def ray_layout(params: CompositorParams) -> data.StructLayout:
    """Ray header payload: ``q`` (unsigned ``q_bits``) in the low bits, then ``count`` (unsigned ``count_bits``)."""
    return data.StructLayout({"q": unsigned(params.q_bits), "count": unsigned(params.count_bits)})


def sample_layout(params: CompositorParams) -> data.StructLayout:
    """Sample payload: ``sigma`` (unsigned ``sigma_bits``) in the low bits, then ``color``, 3 x unsigned
    ``color_bits`` (R first)."""
    return data.StructLayout({"sigma": unsigned(params.sigma_bits),
                              "color": data.ArrayLayout(unsigned(params.color_bits), 3)})


def pixel_layout(params: CompositorParams) -> data.ArrayLayout:
    """Pixel payload: 3 x unsigned ``pixel_bits``, R in the low bits."""
    return data.ArrayLayout(unsigned(params.pixel_bits), 3)


class ConfigWriteSignature(wiring.Signature):
    """Constants port, driver's view: ``en``, ``data`` (``config_layout``)."""

    def __init__(self, params: CompositorParams):
        super().__init__({"en": Out(1), "data": Out(config_layout(params))})


class Compositor(wiring.Component):
    """The compositing unit; see the module docstring for interfaces, arithmetic and timing.

    Args:
        params: ``CompositorParams`` (keyword-only).

    Raises:
        TypeError: ``params`` is not a ``CompositorParams``.
    """

    def __init__(self, *, params: CompositorParams):
        if not isinstance(params, CompositorParams):
            raise TypeError(f"params must be a CompositorParams, not {params!r}")
        self._params = params
        super().__init__({
            "rays": In(stream.Signature(ray_layout(params))),
            "samples": In(stream.Signature(sample_layout(params))),
            "pixels": Out(stream.Signature(pixel_layout(params))),
            "cfg": In(ConfigWriteSignature(params)),
        })

    @property
    def params(self) -> CompositorParams:
        return self._params

    def elaborate(self, platform):
        p = self._params
        m = Module()
        Ft, G, CB = p.trans_bits, p.exp_index_bits, p.color_bits
        H, Q = p.HEADER_DEPTH, p.OUT_FIFO_DEPTH
        one = 1 << Ft

        def reg(name, shape, *, reset=False):
            """A pipeline register; data registers are reset-less (a valid bit travels beside them)."""
            return Signal(shape, name=name, reset_less=not reset)

        # --- constants: the configuration word, and the pixel rounding half registered from it ------
        layout = config_layout(p)
        cfg_word = Signal(layout.size, init=layout.const({"depth_limit": p.depth_max}).as_bits())
        cfg = data.View(layout, cfg_word)
        with m.If(self.cfg.en):
            m.d.sync += cfg_word.eq(self.cfg.data.as_value())
        pix_half = Signal(max(p.pixel_shift_max, 1), name="pix_half")
        with m.If(self.cfg.en):
            m.d.sync += pix_half.eq((Const(1, p.pixel_shift_max + 1) << self.cfg.data.shift) >> 1)
        mult_c, mult_l, mult_b = (cfg.mult_color.as_signed(), cfg.mult_low.as_signed(),
                                  cfg.mult_background.as_signed())

        # --- header queue, credits ---------------------------------------------------------------
        hq = StreamQueue(shape=ray_layout(p), depth=H)
        oq = StreamQueue(shape=pixel_layout(p), depth=Q)
        m.submodules.header_fifo = hq
        m.submodules.out_fifo = oq
        credits = Signal(range(Q + 1))
        ray_fire = self.rays.valid & self.rays.ready
        pix_fire = self.pixels.valid & self.pixels.ready
        m.d.comb += [
            self.rays.ready.eq((hq.level < H) & (credits < Q)),
            hq.w_en.eq(ray_fire),
            hq.w_data.eq(self.rays.payload),
        ]
        m.d.sync += credits.eq(credits + ray_fire - pix_fire)

        # --- sample issue -------------------------------------------------------------------------
        head = hq.o.payload
        taken = Signal(range(1 << p.count_bits), name="taken")  # samples of the head ray transferred
        has_samples = head.count != 0
        m.d.comb += self.samples.ready.eq(hq.o.valid & has_samples)
        s_fire = self.samples.valid & self.samples.ready
        last_sample = Signal(name="last_sample")
        m.d.comb += last_sample.eq(taken + 1 == head.count)
        background = Signal(name="background_token")
        m.d.comb += background.eq(hq.o.valid & ~has_samples)
        m.d.comb += hq.o.ready.eq(background | (s_fire & last_sample))
        with m.If(s_fire):
            m.d.sync += taken.eq(Mux(last_sample, 0, taken + 1))

        # --- stage 1: input register; sigma * q clipped ------------------------------------------
        s1_valid, s1_first, s1_last = (reg(f"s1_{n}", 1, reset=True) for n in ("valid", "first", "last"))
        s1_sigma = reg("s1_sigma", p.sigma_bits)
        s1_q = reg("s1_q", p.q_bits)
        s1_color = reg("s1_color", 3 * CB)
        m.d.sync += [
            s1_valid.eq(s_fire | background),
            s1_first.eq(background | (taken == 0)),
            s1_last.eq(background | last_sample),
            s1_sigma.eq(Mux(background, 0, self.samples.payload.sigma)),
            s1_q.eq(head.q),
            s1_color.eq(Mux(background, 0, self.samples.payload.color.as_value())),
        ]
        step_cap = p.depth_max + 1
        prod_dq = Signal(p.sigma_bits + p.q_bits, name="s1_sigma_q")
        m.d.comb += prod_dq.eq(s1_sigma * s1_q)

        # stage registers carried along: valid, first, last, colours
        def carry(stage, prev):
            regs = {
                "valid": reg(f"s{stage}_valid", 1, reset=True),
                "first": reg(f"s{stage}_first", 1, reset=True),
                "last": reg(f"s{stage}_last", 1, reset=True),
            }
            m.d.sync += [regs[n].eq(prev[n]) for n in regs]
            return regs

        flags1 = {"valid": s1_valid, "first": s1_first, "last": s1_last}
        s2 = carry(2, flags1)
        s2_step = reg("s2_step", p.step_bits)
        s2_color = reg("s2_color", 3 * CB)
        m.d.sync += [s2_step.eq(Mux(prod_dq > step_cap, step_cap, prod_dq)), s2_color.eq(s1_color)]

        # --- stage 2: the D loop (add, saturate, early ray termination) ----------------------------
        depth = Signal(p.depth_bits, name="depth")  # D after the token now in stage 3
        d_base = Signal(p.depth_bits, name="s2_depth_base")
        m.d.comb += d_base.eq(Mux(s2["first"], 0, depth))
        alive = Signal(name="s2_alive")
        m.d.comb += alive.eq(d_base < cfg.depth_limit)
        total = Signal(p.depth_bits + 2, name="s2_depth_sum")
        m.d.comb += total.eq(d_base + s2_step)
        with m.If(s2["valid"]):
            m.d.sync += depth.eq(Mux(alive, Mux(total > p.depth_max, p.depth_max, total), d_base))
        s3 = carry(3, s2)
        s3_color = reg("s3_color", 3 * CB)
        m.d.sync += s3_color.eq(s2_color)

        # --- stage 3: the exponent y = round_shift(D * L2E, exp_shift) ------------------------------
        s4 = carry(4, s3)
        s4_y = reg("s4_y", p.exp_bits)
        s4_color = reg("s4_color", 3 * CB)
        y_full = depth * p.l2e + (1 << (p.exp_shift - 1))  # < 2^(exp_bits + exp_shift)
        m.d.sync += [s4_y.eq(y_full[p.exp_shift:]), s4_color.eq(s3_color)]

        # --- stage 4: the ROM address g; k registered -----------------------------------------------
        rom = memory.Memory(shape=unsigned(Ft + 1), depth=1 << G, init=p.exp2_entries())
        m.submodules.exp2_rom = rom
        rd = rom.read_port()  # synchronous: the word of the address in stage 4 is in stage 5
        m.d.comb += rd.addr.eq(s4_y[:G])
        s5 = carry(5, s4)
        k_bits = p.exp_bits - G
        s5_k = reg("s5_k", k_bits)
        s5_color = reg("s5_color", 3 * CB)
        m.d.sync += [s5_k.eq(s4_y[G:]), s5_color.eq(s4_color)]

        # --- stage 5: T = round_shift(EXP2[g], k), 0 for k > Ft + 1 --------------------------------
        kk_bits = (Ft + 1).bit_length()
        kk = s5_k[:kk_bits]  # the shift when k <= Ft + 1
        k_half = ((Const(1, Ft + 2) << kk) >> 1)[:Ft + 1]  # 2^(k-1), 0 for k = 0
        rounded = Signal(Ft + 2, name="s5_rounded")
        m.d.comb += rounded.eq(rd.data + k_half)
        s6 = carry(6, s5)
        s6_t = reg("s6_t", Ft + 1)
        s6_color = reg("s6_color", 3 * CB)
        m.d.sync += [s6_t.eq(Mux(s5_k > Ft + 1, 0, rounded >> kk)), s6_color.eq(s5_color)]

        # --- stage 6: the weight w = T_prev - T (T_prev = 2^Ft at a ray's first token) ---------------
        t_prev = Signal(Ft + 1, name="t_prev")
        with m.If(s6["valid"]):
            m.d.sync += t_prev.eq(s6_t)
        weight = Mux(s6["first"], one, t_prev) - s6_t  # in [0, 2^Ft]: T is nonincreasing in D
        s7 = carry(7, s6)
        s7_w = reg("s7_w", Ft + 1)
        s7_t = reg("s7_t", Ft + 1)
        s7_color = reg("s7_color", 3 * CB)
        m.d.sync += [s7_w.eq(weight), s7_t.eq(s6_t), s7_color.eq(s6_color)]

        # --- stage 7: the products w * c ------------------------------------------------------------
        s8 = carry(8, s7)
        s8_prod = [reg(f"s8_prod{c}", Ft + 1 + CB) for c in range(3)]
        s8_t = reg("s8_t", Ft + 1)
        m.d.sync += [s8_prod[c].eq(s7_w * s7_color.word_select(c, CB)) for c in range(3)]
        m.d.sync += s8_t.eq(s7_t)

        # --- stage 8: the colour sums ---------------------------------------------------------------
        acc = [Signal(p.acc_bits, name=f"acc{c}") for c in range(3)]  # A after the token now in stage 9
        with m.If(s8["valid"]):
            m.d.sync += [acc[c].eq(Mux(s8["first"], 0, acc[c]) + s8_prod[c]) for c in range(3)]
        s9_valid = reg("s9_valid", 1, reset=True)  # the ray's last token: its pixel
        s9_t = reg("s9_t", Ft + 1)
        m.d.sync += [s9_valid.eq(s8["valid"] & s8["last"]), s9_t.eq(s8_t)]

        # --- stage 9: the pixel products ------------------------------------------------------------
        prod_bits = p.acc_bits + p.pix_mult_bits
        s10_valid = reg("s10_valid", 1, reset=True)
        s10_color = [reg(f"s10_color{c}", signed(prod_bits)) for c in range(3)]
        s10_low = reg("s10_low", signed(Ft + 1 + p.pix_mult_bits))
        s10_bg = reg("s10_background", signed(Ft + 1 + p.pix_mult_bits))
        m.d.sync += [s10_color[c].eq(acc[c] * mult_c) for c in range(3)]
        m.d.sync += [s10_valid.eq(s9_valid), s10_low.eq((one - s9_t) * mult_l), s10_bg.eq(s9_t * mult_b)]

        # --- stage 10: sum, round, shift, clamp; push ---------------------------------------------
        pmax = (1 << p.pixel_bits) - 1
        codes = []
        for c in range(3):
            total_c = s10_color[c] + s10_low + s10_bg + pix_half  # fits signed(pixel_sum_bits)
            shifted = total_c >> cfg.shift  # arithmetic
            code = Signal(p.pixel_bits, name=f"s10_code{c}")
            m.d.comb += code.eq(Mux(shifted < 0, 0, Mux(shifted > pmax, pmax, shifted[:p.pixel_bits])))
            codes.append(code)
        m.d.comb += [
            oq.w_en.eq(s10_valid),
            oq.w_data.eq(Cat(*codes)),
            self.pixels.valid.eq(oq.o.valid),
            self.pixels.payload.eq(oq.o.payload),
            oq.o.ready.eq(self.pixels.ready),
        ]
        return m
