"""NeuRex-style multiresolution hash-encoding engine (Amaranth 0.5).

Interfaces (all in the ``sync`` domain):

* ``i``: ``stream.Signature(point_layout(C))``, one point ``(x, y, z)``, each unsigned fixed point
  ``X / 2**C`` in [0, 1).
* ``o``: ``stream.Signature(features_layout(params))``, ``L * F`` signed fields of
  ``feature_bits + C`` bits, level-major (field ``l * F + f``), C fractional bits, in the units of
  the table entries: ``floor(trilinear(x) * 2**C)``. Outputs leave in input order.
* ``table``: ``TableWriteSignature``: while ``en`` is high, entry ``index`` of level ``level`` is
  written with ``data`` (F fields of ``feature_bits``, feature 0 in the low bits). Read ports are
  non-transparent: a read issued in the cycle of a write to the same entry sees the old value.
  Load the tables before streaming points.

Micro-architecture (modelled cycle for cycle by ``sim.tlm.hash_encoder``):

* ``lanes`` pipelines; lane j serves levels j, j + lanes, ... A point sits in the issue register for
  G = ceil(L / lanes) cycles, one level group per cycle, so the initiation interval is 1 per
  (point, level) per lane and G cycles per point.
* Stages after the issue register (``PIPELINE_STAGES`` = 6): 1 scaled position, cell and fraction;
  2 the 8 corner indices (dense or hashed; registered, they address the table read ports);
  3 table data (synchronous read); 4 lerp along x; 5 along y; 6 along z and the output shift.
* The last group of a point reaches stage 6 six cycles after it left the issue register and is
  written with the earlier groups into the output queue (``hw.common.StreamQueue``) of ``fifo_depth``
  entries; the output is valid the next cycle. Pipeline latency, input transfer to earliest output transfer: G + 7 cycles.
* The pipeline never stalls: the input takes a point only while a credit is free (credits =
  FIFO entries; one is held from input transfer to output transfer), so backpressure stops the
  input instead of the pipeline.
"""

from __future__ import annotations

import contextlib

from amaranth.hdl import Cat, Const, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.common import StreamQueue
from hw.hash_encoder.params import HashEncoderParams
from nerf.grid import HASH_PRIMES

__all__ = ["HashEncoder", "TableWriteSignature", "point_layout", "features_layout"]


def point_layout(coord_bits: int) -> data.StructLayout:
    """Input payload: ``x``, ``y``, ``z`` unsigned ``coord_bits`` each (x in the low bits)."""
    return data.StructLayout({"x": unsigned(coord_bits), "y": unsigned(coord_bits), "z": unsigned(coord_bits)})


def features_layout(params: HashEncoderParams) -> data.ArrayLayout:
    """Output payload: ``L * F`` signed ``feature_bits + coord_bits`` fields, level-major."""
    return data.ArrayLayout(signed(params.out_bits), params.levels * params.features)


class TableWriteSignature(wiring.Signature):
    """Table-load port, driver's view: ``en``, ``level``, ``index`` (log2 T bits), ``data`` (F * feature_bits)."""

    def __init__(self, params: HashEncoderParams):
        super().__init__({
            "en": Out(1),
            "level": Out(range(max(params.levels, 2))),  # at least 1 bit wide
            "index": Out(params.log2_table_size),
            "data": Out(params.features * params.feature_bits),
        })


def _when(m, en):
    """``with m.If(en)`` for a pipeline enable, or no condition at all (the on-chip encoder never stalls)."""
    return m.If(en) if en is not None else contextlib.nullcontext()


def group_rom(m, name, values, shape, sel):
    """A per-level-group constant of a lane (resolution, strides, ...) selected by the group register ``sel``.

    Read as a shift of one constant (a continuous assignment). A case statement would be an `always @*`
    block whose only input, the group register, holds its initial value until a point's second group:
    event-driven 4-state simulators never evaluate it before then, so the first point's group 0 saw X.
    """
    if len(set(values)) == 1:
        return Const(values[0], shape)
    width = Shape.cast(shape).width
    # every value of the group register has an entry, so no select is ever out of range
    values = values + [values[-1]] * ((1 << len(sel)) - len(values))
    table = Const(sum(v << (g * width) for g, v in enumerate(values)), width * len(values))
    sig = Signal(shape, name=name)
    m.d.comb += sig.eq(table.word_select(sel, width))
    return sig


def issue_stage(m, p, i, *, adv=None, gate=None):
    """Stage 0 (the issue register: a point for G cycles, one level group each) and the input credits.

    Input ready = ``adv and gate and`` (issue register free or on its last group) and a credit free; the
    register and the valid/group chain of stages 1-6 move only while ``adv`` (None: always).

    Returns:
        ``(valid, group, s0_point, credits, in_fire)``: valid and group of stages 0-6 (group entries are
        constants when G = 1).
    """
    G, depth = p.groups, p.fifo_depth
    s0_valid = Signal()
    s0_point = Signal(point_layout(p.coord_bits))
    credits = Signal(range(depth + 1))
    if G == 1:
        group = [Const(0, 1)] * 7
        s0_last = Const(1, 1)
    else:
        group = [Signal(range(G), name=f"s{s}_group") for s in range(7)]
        s0_last = group[0] == G - 1
    ready = (~s0_valid | s0_last) & (credits < depth)
    for extra in (adv, gate):
        if extra is not None:
            ready = extra & ready
    m.d.comb += i.ready.eq(ready)
    in_fire = i.valid & i.ready
    with m.If(in_fire):
        m.d.sync += [s0_valid.eq(1), s0_point.eq(i.payload)]
        if G > 1:
            m.d.sync += group[0].eq(0)
    if G > 1:
        with m.Elif(s0_valid & ~s0_last if adv is None else adv & s0_valid & ~s0_last):
            m.d.sync += group[0].eq(group[0] + 1)
    with (m.Else() if adv is None else m.Elif(adv)):
        m.d.sync += s0_valid.eq(0)

    valid = [s0_valid] + [Signal(name=f"s{s}_valid") for s in range(1, 7)]
    with _when(m, adv):
        for s in range(1, 7):
            m.d.sync += valid[s].eq(valid[s - 1])
            if G > 1:
                m.d.sync += group[s].eq(group[s - 1])
    return valid, group, s0_point, credits, in_fire


def stage1(m, j, p, padded, s0_point, sel, adv=None):
    """Stage 1 of lane ``j``: scaled position -> cell (integer part) and fraction, and the level's dense
    flag and strides (``padded``: the lane's level per group). Returns (cell, frac, dense, stride1, stride2)."""
    res, dense = p.resolutions, p.dense
    C, cb = p.coord_bits, p.cell_bits
    lv_res = [res[l] for l in padded]
    n_sel = group_rom(m, f"lane{j}_res", lv_res, range(p.n_max + 1), sel)
    dense_sel = group_rom(m, f"lane{j}_dense", [int(dense[l]) for l in padded], 1, sel)
    stride1 = group_rom(m, f"lane{j}_stride1", [r + 1 for r in lv_res], range((p.n_max + 1) + 1), sel)
    stride2 = group_rom(m, f"lane{j}_stride2", [(r + 1) ** 2 for r in lv_res], range((p.n_max + 1) ** 2 + 1), sel)
    cell1 = [Signal(cb, name=f"lane{j}_s1_cell{d}") for d in range(3)]
    frac1 = [Signal(C, name=f"lane{j}_s1_frac{d}") for d in range(3)]
    dense1 = Signal(name=f"lane{j}_s1_dense")
    s1_stride1 = Signal.like(stride1, name=f"lane{j}_s1_stride1")
    s1_stride2 = Signal.like(stride2, name=f"lane{j}_s1_stride2")
    with _when(m, adv):
        for d, axis in enumerate("xyz"):
            scaled = s0_point[axis] * n_sel
            m.d.sync += [cell1[d].eq(scaled[C:]), frac1[d].eq(scaled[:C])]
        m.d.sync += [dense1.eq(dense_sel), s1_stride1.eq(stride1), s1_stride2.eq(stride2)]
    return cell1, frac1, dense1, s1_stride1, s1_stride2


def corner_index(p, c, cell1, dense1, stride1, stride2):
    """Table index of corner ``c`` (dense or hashed, ``nerf.grid``), as an expression of stage 1."""
    mask_primes = [q & ((1 << p.log2_table_size) - 1) for q in HASH_PRIMES]
    cx, cy, cz = (cell1[d] + ((c >> d) & 1) for d in range(3))
    hashed = cx ^ (cy * mask_primes[1]) ^ (cz * mask_primes[2])
    linear = cx + stride1 * cy + stride2 * cz
    return Mux(dense1, linear, hashed)


def lerp_stages(m, j, p, values, frac3, adv=None):
    """Stages 4-6 of lane ``j``: exact lerps ``a = e0 2^C + (e1 - e0) frac`` along x, y, z of the 8 corners'
    F signed entries ``values[c][f]``; returns the F stage-6 fields ``floor(S / 2^2C)``."""
    C, F, fb = p.coord_bits, p.features, p.feature_bits

    def lerp(lo, hi, frac):
        return (lo << C) + (hi - lo) * frac

    # The y and z fractions wait one and two more cycles for their lerps.
    frac4 = [Signal(C, name=f"lane{j}_s4_frac{d}") for d in (1, 2)]
    frac5 = Signal(C, name=f"lane{j}_s5_frac2")
    with _when(m, adv):
        m.d.sync += [frac4[0].eq(frac3[1]), frac4[1].eq(frac3[2]), frac5.eq(frac4[1])]
    for stage, frac in ((4, frac3[0]), (5, frac4[0]), (6, frac5)):
        width = fb + (stage - 3) * C  # exact: the lerp stays within [min, max] * 2^(kC)
        drop = 2 * C if stage == 6 else 0  # S = sum w_c e_c; the output is floor(S / 2^2C)
        nxt = []
        for pair in range(len(values) // 2):
            regs = [Signal(signed(width - drop), name=f"lane{j}_s{stage}_v{pair}_f{f}") for f in range(F)]
            for f in range(F):
                v = lerp(values[2 * pair][f], values[2 * pair + 1][f], frac)
                with _when(m, adv):
                    m.d.sync += regs[f].eq(v[drop:].as_signed() if drop else v)
            nxt.append(regs)
        values = nxt
    return values[0]


def output_stage(m, p, lane_out, valid, group, credits, in_fire, o, adv=None):
    """Gather the level groups of a point (stage 6 of each lane), push the point into the output queue
    (``hw.common.StreamQueue`` of ``fifo_depth``) and count credits; ``o`` is the component's output."""
    F, G, lanes = p.features, p.groups, p.lanes
    fields = [None] * (p.levels * F)
    gather = {}
    for g in range(G):
        for j in range(lanes):
            level = g * lanes + j
            if level >= p.levels:
                continue
            for f in range(F):
                if g == G - 1:
                    fields[level * F + f] = lane_out[j][f]
                else:
                    reg = Signal(signed(p.out_bits), name=f"gather_l{level}_f{f}")
                    gather[(g, j, f)] = reg
                    fields[level * F + f] = reg
    if gather:
        with m.If(valid[6] if adv is None else valid[6] & adv):
            with m.Switch(group[6]):
                for g in range(G - 1):
                    with m.Case(g):
                        m.d.sync += [reg.eq(lane_out[j][f]) for (gg, j, f), reg in gather.items() if gg == g]
    push = valid[6] & (group[6] == G - 1)
    if adv is not None:
        push = push & adv
    m.submodules.out_queue = queue = StreamQueue(shape=features_layout(p), depth=p.fifo_depth)
    m.d.comb += [queue.w_en.eq(push), queue.w_data.eq(Cat(*fields))]
    wiring.connect(m, queue.o, wiring.flipped(o))
    pop = o.valid & o.ready
    m.d.sync += credits.eq(credits + in_fire - pop)


class HashEncoder(wiring.Component):
    """Multiresolution hash encoder; see the module docstring for interfaces and timing.

    Args:
        params: ``HashEncoderParams`` (keyword-only).

    Raises:
        TypeError: ``params`` is not a ``HashEncoderParams``.
    """

    def __init__(self, *, params: HashEncoderParams):
        if not isinstance(params, HashEncoderParams):
            raise TypeError(f"params must be a HashEncoderParams, not {params!r}")
        self._params = params
        super().__init__({
            "i": In(stream.Signature(point_layout(params.coord_bits))),
            "o": Out(stream.Signature(features_layout(params))),
            "table": In(TableWriteSignature(params)),
        })

    @property
    def params(self) -> HashEncoderParams:
        return self._params

    def elaborate(self, platform):
        p = self._params
        m = Module()
        k, lanes = p.log2_table_size, p.lanes

        valid, group, s0_point, credits, in_fire = issue_stage(m, p, self.i)

        lane_out = []  # per lane: F output fields of stage 6
        write_ports = []
        for j in range(lanes):
            out, wp = self._lane(m, j, list(range(j, p.levels, lanes)), s0_point, group)
            lane_out.append(out)
            write_ports.append(wp)

        # --- table write port fan-out -----------------------------------------------------------
        with m.Switch(self.table.level):
            for level in range(p.levels):
                with m.Case(level):
                    wp = write_ports[level % lanes]
                    local = level // lanes
                    m.d.comb += [
                        wp.en.eq(self.table.en),
                        wp.addr.eq(self.table.index | (local << k)),
                        wp.data.eq(self.table.data),
                    ]

        output_stage(m, p, lane_out, valid, group, credits, in_fire, self.o)
        return m

    def _lane(self, m, j, lane_levels, s0_point, group):
        """Stages 1-6 of lane ``j``; returns (its F output fields, its table write port)."""
        p = self._params
        C, F, fb, k = p.coord_bits, p.features, p.feature_bits, p.log2_table_size
        G = p.groups
        n_local = len(lane_levels)
        mem = memory.Memory(shape=unsigned(F * fb), depth=n_local << k, init=[])
        m.submodules[f"table_lane{j}"] = mem
        write_port = mem.write_port()

        # A lane may idle in the last group; repeating its last level there keeps its ROMs small.
        pad = G - n_local
        padded = lane_levels + [lane_levels[-1]] * pad
        cell1, frac1, dense1, s1_stride1, s1_stride2 = stage1(m, j, p, padded, s0_point, group[0])

        # Stage 2: corner indices (registered; they address the read ports).
        idx2 = [Signal(k, name=f"lane{j}_s2_index{c}") for c in range(8)]
        frac2 = [Signal(C, name=f"lane{j}_s2_frac{d}") for d in range(3)]
        for c in range(8):
            m.d.sync += idx2[c].eq(corner_index(p, c, cell1, dense1, s1_stride1, s1_stride2))
        m.d.sync += [f2.eq(f1) for f2, f1 in zip(frac2, frac1)]

        # Stage 3: synchronous table reads; fractions travel alongside.
        ports = [mem.read_port() for _ in range(8)]
        if n_local > 1:
            # In the last group an idle lane (pad > 0) reads level 0 and its result is dropped.
            local_group = Mux(group[2] < n_local, group[2], 0) if pad else group[2]
            for c, port in enumerate(ports):
                m.d.comb += port.addr.eq(Cat(idx2[c], local_group))
        else:
            for c, port in enumerate(ports):
                m.d.comb += port.addr.eq(idx2[c])
        frac3 = [Signal(C, name=f"lane{j}_s3_frac{d}") for d in range(3)]
        m.d.sync += [f3.eq(f2) for f3, f2 in zip(frac3, frac2)]

        def entry(port, f):
            return port.data[f * fb:(f + 1) * fb].as_signed()

        values = [[entry(port, f) for f in range(F)] for port in ports]  # corner order: x is bit 0
        return lerp_stages(m, j, p, values, frac3), write_port

