"""Multiresolution hash encoder with its tables in external memory (Amaranth 0.5).

The datapath is ``hw.hash_encoder``'s (issue register, 6 pipeline stages, output queue, input credits);
stage 3 no longer reads an on-chip table but looks the 8 corners' lines up in a per-lane cache and
freezes the whole pipeline while any corner misses. The cycle behaviour is the contract in
``hw/hash_encoder_axi/CYCLES.md``, modelled cycle for cycle by ``sim.tlm.hash_encoder_axi``.

Interfaces (``sync`` domain):

* ``i``, ``o``: as ``hw.hash_encoder.HashEncoder`` (points in, ``L * F`` signed ``feature_bits + C``-bit
  features out, in input order).
* ``axi``: ``AxiReadSignature``, an AXI4 read-only manager (AR and R channels; single ID, INCR bursts
  of ``beats`` x ``bus_bytes`` = one line, at most one burst outstanding; RRESP is not connected).

Storage per lane (``TableLayout``: one partition per level; resident levels are never evicted):

* tags: one word per set, ``ways`` x (valid, tag);
* lines: one word per set, ``ways`` x ``8 line_bytes`` bits, written a way at a time;
* ages (ways > 1): one word per set, ``ways`` x log2(ways) bits, true LRU.

All three have 8 read ports (one per corner) addressed by stage 2's sets when the pipeline advances
and by stage 3's own while it stalls, transparent for every write port, so stage 3 always sees the
state written up to the previous edge. The miss handler and the clear phase own the other writes.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.hash_encoder.rtl import (corner_index, features_layout, group_rom, issue_stage, lerp_stages, output_stage,
                                 point_layout, stage1)
from hw.hash_encoder_axi.params import AXI_BURST_INCR, HashEncoderAxiParams

__all__ = ["HashEncoderAxi", "AxiReadSignature"]

_IDLE, _AR, _R = 0, 1, 2


class AxiReadSignature(wiring.Signature):
    """AXI4 read address and read data channels, manager's view (AMBA AXI4, IHI 0022, A2.2 and A2.6).

    ``araddr`` (``addr_bits``), ``arlen`` (8), ``arsize`` (3), ``arburst`` (2), ``arvalid`` out,
    ``arready`` in; ``rdata`` (8 ``bus_bytes``), ``rlast``, ``rvalid`` in, ``rready`` out.
    """

    def __init__(self, params: HashEncoderAxiParams):
        super().__init__({
            "araddr": Out(params.addr_bits), "arlen": Out(8), "arsize": Out(3), "arburst": Out(2),
            "arvalid": Out(1), "arready": In(1),
            "rdata": In(8 * params.bus_bytes), "rlast": In(1), "rvalid": In(1), "rready": Out(1),
        })


def _bits_for(count: int) -> int:
    """Width of an unsigned value in [0, count - 1] (at least 1)."""
    return max(1, (count - 1).bit_length())


class HashEncoderAxi(wiring.Component):
    """Hash encoder reading its tables through AXI4 behind a table cache; see the module docstring.

    Args:
        params: ``HashEncoderAxiParams`` (keyword-only).

    Raises:
        TypeError: ``params`` is not a ``HashEncoderAxiParams``.
    """

    def __init__(self, *, params: HashEncoderAxiParams):
        if not isinstance(params, HashEncoderAxiParams):
            raise TypeError(f"params must be a HashEncoderAxiParams, not {params!r}")
        self._params = params
        super().__init__({
            "i": In(stream.Signature(point_layout(params.coord_bits))),
            "o": Out(stream.Signature(features_layout(params))),
            "axi": Out(AxiReadSignature(params)),
        })

    @property
    def params(self) -> HashEncoderAxiParams:
        return self._params

    def elaborate(self, platform):
        p = self._params
        lay = p.layout
        m = Module()
        lanes = p.lanes
        n_clear = max(lay.lane_sets)

        # --- clear phase: every set invalid, ages w -> w ----------------------------------------
        clearing = Signal(init=1)
        clear_addr = Signal(range(max(n_clear, 2)))
        with m.If(clearing):
            m.d.sync += clear_addr.eq(clear_addr + 1)
            with m.If(clear_addr == n_clear - 1):
                m.d.sync += clearing.eq(0)

        stall = Signal()
        adv = ~stall

        valid, group, s0_point, credits, in_fire = issue_stage(m, p, self.i, adv=adv, gate=~clearing)

        ctx = dict(clearing=clearing, clear_addr=clear_addr, adv=adv, valid=valid, group=group)
        lanes_io = [self._lane(m, j, list(range(j, p.levels, lanes)), s0_point, ctx) for j in range(lanes)]

        # --- miss handler ---------------------------------------------------------------------
        missing = Cat(*[lane["missing"] for lane in lanes_io])  # bit 8 j + c
        m.d.comb += stall.eq(missing.any())
        state = Signal(range(3))
        tgt_lane = Signal(range(max(lanes, 2)))
        tgt_corner = Signal(3)
        araddr = Signal(p.addr_bits)
        bus = 8 * p.bus_bytes
        line_bits = 8 * p.line_bytes
        beat = Signal(range(max(p.beats, 2)))
        line_buf = Signal(line_bits)
        axi = self.axi
        m.d.comb += [axi.araddr.eq(araddr), axi.arlen.eq(p.beats - 1), axi.arsize.eq(p.bus_bytes.bit_length() - 1),
                     axi.arburst.eq(AXI_BURST_INCR), axi.arvalid.eq(state == _AR), axi.rready.eq(state == _R)]
        refill = Signal()
        m.d.comb += refill.eq((state == _R) & axi.rvalid & axi.rlast)
        with m.Switch(state):
            with m.Case(_IDLE):
                with m.If(stall):
                    m.d.sync += state.eq(_AR)
                    # priority: the first missing (lane, corner), lane-major
                    for bit in reversed(range(8 * lanes)):
                        with m.If(missing[bit]):
                            j, c = divmod(bit, 8)
                            m.d.sync += [tgt_lane.eq(j), tgt_corner.eq(c), araddr.eq(lanes_io[j]["addr"][c])]
            with m.Case(_AR):
                with m.If(axi.arready):
                    m.d.sync += [state.eq(_R), beat.eq(0)]
            with m.Case(_R):
                with m.If(axi.rvalid):
                    m.d.sync += [line_buf.word_select(beat, bus).eq(axi.rdata), beat.eq(beat + 1)]
                    with m.If(axi.rlast):
                        m.d.sync += state.eq(_IDLE)
        line_in = Cat(line_buf[:line_bits - bus], axi.rdata) if p.beats > 1 else axi.rdata
        for j, lane in enumerate(lanes_io):
            lane["refill"](refill & (tgt_lane == j), tgt_corner, line_in)

        output_stage(m, p, [lane["out"] for lane in lanes_io], valid, group, credits, in_fire, self.o, adv=adv)
        return m

    def _lane(self, m, j, lane_levels, s0_point, ctx):
        """Stages 1-6 of lane ``j`` with its cache; returns a dict: ``out`` (F stage-6 fields),
        ``missing`` (8 bits), ``addr`` (8 line addresses), ``refill(en, corner, line)``."""
        p = self._params
        lay = p.layout
        adv, valid, group = ctx["adv"], ctx["valid"], ctx["group"]
        C, F, fb, k = p.coord_bits, p.features, p.feature_bits, p.log2_table_size
        G, W = p.groups, p.ways
        n_local = len(lane_levels)
        pad = G - n_local
        padded = lane_levels + [lane_levels[-1]] * pad
        n_sets = lay.lane_sets[j]
        set_w = _bits_for(n_sets)
        tag_w = lay.tag_bits(p)
        line_w = _bits_for(max(lay.lines))
        slot_w = _bits_for(max(lay.per_line))
        age_w = _bits_for(W)
        line_bits = 8 * p.line_bytes

        def rom(name, values, shape, sel):
            return group_rom(m, f"lane{j}_{name}", values, shape, sel)

        cell1, frac1, dense1, s1_stride1, s1_stride2 = stage1(m, j, p, padded, s0_point, group[0], adv)

        # Stage 2: corner index -> line, slot, set, tag (TableLayout.line_of / set_tag).
        line2 = [Signal(line_w, name=f"lane{j}_s2_line{c}") for c in range(8)]
        slot2 = [Signal(slot_w, name=f"lane{j}_s2_slot{c}") for c in range(8)]
        set2 = [Signal(set_w, name=f"lane{j}_s2_set{c}") for c in range(8)]
        tag2 = [Signal(tag_w, name=f"lane{j}_s2_tag{c}") for c in range(8)]
        frac2 = [Signal(C, name=f"lane{j}_s2_frac{d}") for d in range(3)]
        set_base = rom("set_base", [lay.set_base[l] for l in padded], range(n_sets + 1), group[1])
        resident = rom("resident", [int(lay.resident[l]) for l in padded], 1, group[1])
        way_shift = W.bit_length() - 1
        set_shift = p.sets.bit_length() - 1
        for c in range(8):
            index = Signal(k, name=f"lane{j}_s2_index{c}")
            m.d.comb += index.eq(corner_index(p, c, cell1, dense1, s1_stride1, s1_stride2))
            line = Signal(line_w, name=f"lane{j}_line{c}")
            slot = Signal(slot_w, name=f"lane{j}_slot{c}")
            with m.Switch(group[1]):
                for g, level in enumerate(padded):
                    with m.Case(g):
                        epl = lay.per_line[level]
                        m.d.comb += [line.eq(index // epl), slot.eq(index % epl)]
            set_res, tag_res = set_base + (line >> way_shift), line & (W - 1)
            set_cached, tag_cached = set_base + (line & (p.sets - 1)), line >> set_shift
            with m.If(adv):
                m.d.sync += [line2[c].eq(line), slot2[c].eq(slot),
                             set2[c].eq(Mux(resident, set_res, set_cached)),
                             tag2[c].eq(Mux(resident, tag_res, tag_cached))]
        with m.If(adv):
            m.d.sync += [f2.eq(f1) for f2, f1 in zip(frac2, frac1)]

        # Stage 3: cache lookup.
        line3 = [Signal(line_w, name=f"lane{j}_s3_line{c}") for c in range(8)]
        slot3 = [Signal(slot_w, name=f"lane{j}_s3_slot{c}") for c in range(8)]
        set3 = [Signal(set_w, name=f"lane{j}_s3_set{c}") for c in range(8)]
        tag3 = [Signal(tag_w, name=f"lane{j}_s3_tag{c}") for c in range(8)]
        frac3 = [Signal(C, name=f"lane{j}_s3_frac{d}") for d in range(3)]
        with m.If(adv):
            for c in range(8):
                m.d.sync += [line3[c].eq(line2[c]), slot3[c].eq(slot2[c]), set3[c].eq(set2[c]), tag3[c].eq(tag2[c])]
            m.d.sync += [f3.eq(f2) for f3, f2 in zip(frac3, frac2)]

        tag_entry = 1 + tag_w
        tags = memory.Memory(shape=unsigned(W * tag_entry), depth=n_sets, init=[])
        lines = memory.Memory(shape=unsigned(W * line_bits), depth=n_sets, init=[])
        m.submodules[f"tags_lane{j}"] = tags
        m.submodules[f"lines_lane{j}"] = lines
        tag_wp = tags.write_port(granularity=tag_entry)
        line_wp = lines.write_port(granularity=line_bits)
        ages = age_wp = None
        touch_wps = []
        if W > 1:
            ages = memory.Memory(shape=unsigned(W * age_w), depth=n_sets, init=[])
            m.submodules[f"ages_lane{j}"] = ages
            age_wp = ages.write_port()
            touch_wps = [ages.write_port() for _ in range(8)]
        read_addr = [Mux(adv, set2[c], set3[c]) for c in range(8)]
        tag_rp = [tags.read_port(transparent_for=(tag_wp,)) for _ in range(8)]
        line_rp = [lines.read_port(transparent_for=(line_wp,)) for _ in range(8)]
        age_rp = [ages.read_port(transparent_for=(age_wp, *touch_wps)) for _ in range(8)] if W > 1 else []
        for c in range(8):
            m.d.comb += [tag_rp[c].addr.eq(read_addr[c]), line_rp[c].addr.eq(read_addr[c])]
            if W > 1:
                m.d.comb += age_rp[c].addr.eq(read_addr[c])

        active = valid[3] & (group[3] < n_local) if pad else valid[3]
        got = [Signal(name=f"lane{j}_s3_got{c}") for c in range(8)]
        held = [Signal(F * fb, name=f"lane{j}_s3_held{c}") for c in range(8)]
        hit, hit_way, entry, missing, fresh = [], [], [], [], []
        for c in range(8):
            word = tag_rp[c].data
            ways_hit = Cat(*[word[w * tag_entry] & (word[w * tag_entry + 1:(w + 1) * tag_entry] == tag3[c])
                             for w in range(W)])
            way = Signal(range(W), name=f"lane{j}_s3_way{c}") if W > 1 else Const(0, 1)
            for w in range(1, W):
                with m.If(ways_hit[w]):
                    m.d.comb += way.eq(w)
            h = Signal(name=f"lane{j}_s3_hit{c}")
            m.d.comb += h.eq(active & ways_hit.any())
            line_word = line_rp[c].data.word_select(way, line_bits) if W > 1 else line_rp[c].data
            fields = [Signal(signed(fb), name=f"lane{j}_s3_entry{c}_f{f}") for f in range(F)]
            with m.Switch(group[3]):
                for g, level in enumerate(padded):
                    with m.Case(g):
                        b = lay.bits[level]
                        raw = (line_word >> (slot3[c] * (F * b)))[:F * b]
                        # each b-bit field sign-extended to feature_bits
                        m.d.comb += [fields[f].eq(raw[f * b:(f + 1) * b].as_signed()) for f in range(F)]
            ent = Cat(*fields)
            new = Signal(name=f"lane{j}_s3_new{c}")
            m.d.comb += new.eq(h & ~got[c])
            with m.If(adv):
                m.d.sync += got[c].eq(0)
            with m.Else():
                m.d.sync += got[c].eq(got[c] | h)
            with m.If(new):
                m.d.sync += held[c].eq(ent)
            miss = Signal(name=f"lane{j}_s3_missing{c}")
            m.d.comb += miss.eq(active & ~got[c] & ~h)
            hit.append(h)
            hit_way.append(way)
            entry.append(Mux(got[c], held[c], ent))
            missing.append(miss)
            fresh.append(new)

        # LRU touches: the corners that hit for the first time, in corner order, each seeing the ages
        # its set has after the earlier corners' touches.
        def touch(age_word, w):
            a = [age_word[v * age_w:(v + 1) * age_w] for v in range(W)]
            aw = Signal(age_w)
            with m.Switch(w):
                for v in range(W):
                    with m.Case(v):
                        m.d.comb += aw.eq(a[v])
            return Cat(*[Mux(w == v, 0, Mux(a[v] < aw, a[v] + 1, a[v]))[:age_w] for v in range(W)])

        def oldest(age_word):
            way = Signal(range(max(W, 2)))
            for v in range(W):
                with m.If(age_word[v * age_w:(v + 1) * age_w] == W - 1):
                    m.d.comb += way.eq(v)
            return way

        if W > 1:
            after = []
            for c in range(8):
                state = age_rp[c].data
                for e in range(c):
                    # a signal per step: a nested expression would grow exponentially with c
                    step = Signal(W * age_w, name=f"lane{j}_s3_ages{c}_after{e}")
                    m.d.comb += step.eq(Mux(fresh[e] & (set3[e] == set3[c]), touch(state, hit_way[e]), state))
                    state = step
                state_c = Signal(W * age_w, name=f"lane{j}_s3_ages{c}")
                m.d.comb += state_c.eq(touch(state, hit_way[c]))
                after.append(state_c)
            for c in range(8):
                later = [fresh[e] & (set3[e] == set3[c]) for e in range(c + 1, 8)]
                last = fresh[c] & ~Cat(*later).any() if later else fresh[c]
                m.d.comb += [touch_wps[c].addr.eq(set3[c]), touch_wps[c].data.eq(after[c]), touch_wps[c].en.eq(last)]

        values = [[entry[c][f * fb:(f + 1) * fb].as_signed() for f in range(F)] for c in range(8)]
        out = lerp_stages(m, j, p, values, frac3, adv)

        # Line addresses of the 8 corners (TableLayout.line_address), for the miss handler.
        base = rom("base", [lay.base[l] for l in padded], range(lay.total_bytes + 1), group[3])
        line_shift = p.line_bytes.bit_length() - 1
        addr = [(base + (line3[c] << line_shift))[:p.addr_bits] for c in range(8)]

        def refill(en, corner, line_in):
            """Write ``line_in`` into the victim way of ``corner``'s set (or clear, during the clear phase)."""
            clearing, clear_addr = ctx["clearing"], ctx["clear_addr"]
            sel_set = Signal(set_w, name=f"lane{j}_fill_set")
            sel_tag = Signal(tag_w, name=f"lane{j}_fill_tag")
            sel_ages = Signal(W * age_w, name=f"lane{j}_fill_ages")
            with m.Switch(corner):
                for c in range(8):
                    with m.Case(c):
                        m.d.comb += [sel_set.eq(set3[c]), sel_tag.eq(tag3[c])]
                        if W > 1:
                            m.d.comb += sel_ages.eq(age_rp[c].data)
            victim = oldest(sel_ages) if W > 1 else Const(0, 1)
            onehot = Const(1, W) << victim if W > 1 else Const(1, 1)
            clear_here = clearing & (clear_addr < n_sets)
            m.d.comb += [
                tag_wp.addr.eq(Mux(clearing, clear_addr, sel_set)),
                tag_wp.data.eq(Mux(clearing, 0, Cat(*[Cat(Const(1, 1), sel_tag) for _ in range(W)]))),
                tag_wp.en.eq(Mux(clear_here, (1 << W) - 1, Mux(en, onehot, 0))),
                line_wp.addr.eq(sel_set),
                line_wp.data.eq(Cat(*[line_in for _ in range(W)])),
                line_wp.en.eq(Mux(en & ~clearing, onehot, 0)),
            ]
            if W > 1:
                init = sum(w << (w * age_w) for w in range(W))
                m.d.comb += [age_wp.addr.eq(Mux(clearing, clear_addr, sel_set)),
                             age_wp.data.eq(Mux(clearing, init, touch(sel_ages, victim))),
                             age_wp.en.eq(clear_here | en)]

        return {"out": out, "missing": Cat(*missing), "addr": addr, "refill": refill}
