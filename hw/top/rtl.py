"""The accelerator top: every unit of the renderer connected, rays and samples in, pixels out (Amaranth 0.5).

Per sample, bit-exactly as ``sim.bitexact.render_int`` (the units' own arithmetic; ``hw.top.params`` has
the data flow)::

    samples -> hash encoder -> requant -> density MLP engine -+- element 0 -> density act -> sigma FIFO -+
                                                              |                                          |
                                                              +- elements 1..G --+                     join
    rays -+- direction -> SH unit --+                                             |                      |
          +- count -> count FIFO ---+-> SH pairing ------------------------------+-> colour MLP engine  |
          |                                                                          -> colour act -----+
          +- (q, count) -> ray FIFO -> compositor (ray headers)      join -> compositor (samples) -> pixels

Interfaces (all in the ``sync`` domain; D = sh.dir_bits, C = encoder.coord_bits):

* ``rays``: ``stream.Signature(ray_layout(params))``: ``dir`` (``x``, ``y``, ``z``, signed D bits each, x in
  the low bits: the unit view direction as SH-unit codes, ``sim.tlm.sh_unit.to_direction_codes``), then
  ``q`` (unsigned ``compositor.q_bits``: the optical depth of one density code over the ray's step),
  then ``count`` (unsigned ``compositor.count_bits``: the ray's samples, 0 allowed).
* ``samples``: ``stream.Signature(point_layout(C))``: the samples' positions (``x``, ``y``, ``z`` unsigned
  C bits), those of ray 0 first, then ray 1's, ... (exactly ``count`` per ray, near to far), on their own
  stream: the two inputs need not be aligned in time.
* ``pixels``: ``stream.Signature(pixel_layout(compositor))``: 3 x unsigned ``pixel_bits``, R in the low
  bits; one pixel per ray, in ray order.
* Configuration and memory write ports, each unit's own brought out with the unit's prefix
  (``<prefix>_<port>``): ``encoder_table``; ``requant_cfg``, ``requant_consts``; ``density_cfg``,
  ``density_weights``, ``density_bias`` and ``color_cfg``, ``color_weights``, ``color_bias`` (the two MLP
  engines); ``sh_cfg``, ``sh_consts``; ``density_act_cfg``, ``density_act_table``, ``color_act_cfg``,
  ``color_act_table``; ``compositor_cfg``. Their layouts and rules are the units' (write them while
  the top is idle; ``sim.cosim.tb_top`` loads a ``quant.int_export.IntModel`` through them).

Glue (no arithmetic; the payloads are the units' own, fields sign- or zero-extended between widths):

* Ray splitter: an *eager fork* of ``rays`` into the SH unit's input, the count FIFO and the ray FIFO.
  Each branch's valid is ``rays.valid`` until that branch has taken the ray (a flag per branch), and
  ``rays.ready`` is high once every branch has taken it or takes it now; so each branch obeys the stream
  rules (its valid holds until its transfer) and no branch waits for another.
* Count FIFO (``TopParams.count_fifo_depth`` = ``sh.fifo_depth`` entries, ``amaranth.lib.fifo.SyncFIFO``):
  each ray's count, beside the SH unit, which holds at most ``sh.fifo_depth`` rays (its credits): the
  count branch is therefore never the one that holds the splitter.
* Ray FIFO (``TopParams.ray_fifo_depth``): each ray's header (q, count) for the compositor, whose own
  header queue is short; it lets rays (and their SH codes) run ahead of the compositor by the rays
  whose samples are still between the SH pairing and the compositor.
* SH pairing: holds the SH codes of the current ray for ``count`` samples. When it holds none (count
  left 0), it takes the SH unit's next output together with the count FIFO's head in one cycle
  (``sh.o.ready`` and the FIFO's read enable are the same signal, high when both are valid and nothing is
  held), and holds that ray from the next cycle, or drops it if its count is 0. While it holds a ray, the
  colour engine's input is valid with the geometry branch of the density fork: the payload is the
  density engine's elements 1..G (the geometry features) followed by the 16 SH codes; each transfer
  counts one sample down.
* Density fork: an eager fork of the density engine's output into the density activation (element 0,
  the density logit) and the SH pairing (elements 1..G).
* Sigma FIFO (``TopParams.sigma_fifo_depth``): the density activation's codes wait there for the colour
  of the same sample, which is one colour engine pass behind.
* Join: the compositor's ``samples`` input is valid when the sigma FIFO and the colour activation both
  hold a sample (the same one: both are in sample order); both are read in the cycle it transfers.

No deadlock for any input traffic, any output backpressure and any FIFO depth >= 1: every unit and
FIFO passes its items in order, each item a unit or FIFO waits for is ahead of it in the same order
(the SH pairing needs the SH codes of the ray of its next sample, which entered the splitter before any
later ray; the join needs the sigma and colour of the same sample, both past the density fork; the
compositor needs the header of the ray of its next sample, which precedes it in the ray FIFO), and no
item waits for a later one. The depths only decide when the sample path may stall for room
(``hw.top.params``).

Timing: the composition of the units' own (``sim.tlm.top.TopTLM`` steps each unit's model cycle by
cycle with the glue's state). The glue adds no register on the sample path except the two FIFOs, each
one cycle from write to read: encoder -> requant and requant -> density engine transfer in the cycle
the producer's output is valid and the consumer ready, as do density engine -> colour engine (through
the fork and the pairing), colour engine -> colour activation and colour activation -> compositor.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from hw.activation.rtl import ActivationUnit
from hw.compositor.rtl import Compositor, pixel_layout
from hw.hash_encoder.rtl import HashEncoder, point_layout
from hw.mlp_engine.rtl import MlpEngine
from hw.requant.rtl import Requantizer
from hw.sh_unit.rtl import ShUnit, direction_layout
from hw.top.params import TopParams

__all__ = ["AcceleratorTop", "ray_layout", "point_layout", "pixel_layout", "PORT_PREFIXES", "top_verilog",
           "write_top_verilog"]

#: Unit field of ``TopParams`` (or engine instance) -> prefix of its ports on the top (``<prefix>_<port>``).
PORT_PREFIXES = {"encoder": "encoder", "requant": "requant", "density": "density", "color": "color", "sh": "sh",
                 "density_act": "density_act", "color_act": "color_act", "compositor": "compositor"}

#: The units' stream ports, which the glue connects (every other port is brought out).
_STREAMS = {"i", "o", "rays", "samples", "pixels"}


def ray_layout(params: TopParams) -> data.StructLayout:
    """``rays`` payload: ``dir`` (``direction_layout``: x, y, z signed ``sh.dir_bits``) in the low bits, then
    ``q`` (unsigned ``compositor.q_bits``), then ``count`` (unsigned ``compositor.count_bits``)."""
    c = params.compositor
    return data.StructLayout({"dir": direction_layout(params.sh.dir_bits), "q": unsigned(c.q_bits),
                              "count": unsigned(c.count_bits)})


def _eager_fork(m: Module, name: str, valid, readies: list) -> tuple[list, object]:
    """Branch valids and the input's ready of an eager fork (module doc) of a stream with ``valid`` into
    branches whose readies are ``readies``."""
    done = [Signal(name=f"{name}_done{b}") for b in range(len(readies))]
    valids = [valid & ~d for d in done]
    in_ready = Cat(d | r for d, r in zip(done, readies)).all()
    with m.If(valid & in_ready):
        m.d.sync += [d.eq(0) for d in done]
    with m.Else():
        for d, v, r in zip(done, valids, readies):
            with m.If(v & r):
                m.d.sync += d.eq(1)
    return valids, in_ready


class AcceleratorTop(wiring.Component):
    """The accelerator top; see the module docstring for interfaces, glue and timing.

    Args:
        params: ``TopParams`` (keyword-only).
        geo_features: G, the geometry features the density MLP passes to the colour MLP (``nerf.layout``:
            the model's ``geo_features``); the colour engine's input is G + 16 elements.

    Raises:
        TypeError: ``params`` is not a ``TopParams``.
        ValueError: units that do not fit together (naming the fields and values).
    """

    def __init__(self, *, params: TopParams, geo_features: int = 15):
        if not isinstance(params, TopParams):
            raise TypeError(f"params must be a TopParams, not {params!r}")
        params.check_top(geo_features)
        self._params = params
        self._geo = geo_features
        p = params
        self.units = {
            "encoder": HashEncoder(params=p.encoder),
            "requant": Requantizer(params=p.requant),
            "density": MlpEngine(params=p.mlp),
            "color": MlpEngine(params=p.mlp),
            "sh": ShUnit(params=p.sh),
            "density_act": ActivationUnit(params=p.density_act),
            "color_act": ActivationUnit(params=p.color_act),
            "compositor": Compositor(params=p.compositor),
        }
        ports = {
            "rays": In(stream.Signature(ray_layout(p))),
            "samples": In(stream.Signature(point_layout(p.encoder.coord_bits))),
            "pixels": Out(stream.Signature(pixel_layout(p.compositor))),
        }
        for unit, component in self.units.items():
            for name, member in component.signature.members.items():
                if name not in _STREAMS:
                    ports[f"{PORT_PREFIXES[unit]}_{name}"] = member
        super().__init__(ports)

    @property
    def params(self) -> TopParams:
        return self._params

    @property
    def geo_features(self) -> int:
        return self._geo

    def elaborate(self, platform):
        p, G = self._params, self._geo
        m = Module()
        u = self.units
        for name, unit in u.items():
            m.submodules[name] = unit
            for port in unit.signature.members:
                if port not in _STREAMS:
                    wiring.connect(m, wiring.flipped(getattr(self, f"{PORT_PREFIXES[name]}_{port}")),
                                   getattr(unit, port))
        enc, rq, dens, col, sh = u["encoder"], u["requant"], u["density"], u["color"], u["sh"]
        dact, cact, comp = u["density_act"], u["color_act"], u["compositor"]

        # --- samples -> encoder -> requant -> density engine ------------------------------------------
        wiring.connect(m, wiring.flipped(self.samples), enc.i)
        m.d.comb += [
            rq.i.valid.eq(enc.o.valid),
            enc.o.ready.eq(rq.i.ready),
            dens.i.valid.eq(rq.o.valid),
            rq.o.ready.eq(dens.i.ready),
        ]
        m.d.comb += [rq.i.payload[e].eq(enc.o.payload[e]) for e in range(p.requant.lanes)]  # sign-extended
        m.d.comb += [dens.i.payload[e].eq(rq.o.payload[e]) for e in range(p.requant.lanes)]  # zero-extended

        # --- rays: the splitter, the count FIFO, the ray FIFO -------------------------------------------
        m.submodules.count_fifo = cnt = fifo.SyncFIFO(width=p.compositor.count_bits, depth=p.count_fifo_depth)
        m.submodules.ray_fifo = rfifo = fifo.SyncFIFO(width=p.compositor.q_bits + p.compositor.count_bits,
                                                      depth=p.ray_fifo_depth)
        (to_sh, to_cnt, to_ray), rays_ready = _eager_fork(m, "ray_fork", self.rays.valid,
                                                          [sh.i.ready, cnt.w_rdy, rfifo.w_rdy])
        ray = self.rays.payload
        m.d.comb += [
            self.rays.ready.eq(rays_ready),
            sh.i.valid.eq(to_sh),
            sh.i.payload.eq(ray.dir),
            cnt.w_en.eq(to_cnt),
            cnt.w_data.eq(ray.count),
            rfifo.w_en.eq(to_ray),
            rfifo.w_data.eq(Cat(ray.q, ray.count)),
            comp.rays.valid.eq(rfifo.r_rdy),
            comp.rays.payload.eq(rfifo.r_data),
            rfifo.r_en.eq(comp.rays.ready),
        ]

        # --- SH pairing ---------------------------------------------------------------------------------
        left = Signal(p.compositor.count_bits, name="pair_left")  # samples of the held ray still to pair
        code_bits = p.sh.max_out_bits
        held = Signal(16 * code_bits, name="pair_sh")  # the held ray's SH codes, coefficient k at [k B, (k + 1) B)
        holding = Signal(name="pair_holding")
        m.d.comb += holding.eq(left != 0)
        take = Signal(name="pair_take")
        m.d.comb += [
            take.eq(~holding & sh.o.valid & cnt.r_rdy),
            sh.o.ready.eq(take),
            cnt.r_en.eq(take),
        ]

        # --- density fork: element 0 -> density activation; elements 1..G -> the pairing ----------------
        geo_ready = Signal(name="geo_ready")
        m.d.comb += geo_ready.eq(holding & col.i.ready)
        (to_dact, to_geo), dens_ready = _eager_fork(m, "density_fork", dens.o.valid, [dact.i.ready, geo_ready])
        m.d.comb += [
            dens.o.ready.eq(dens_ready),
            dact.i.valid.eq(to_dact),
            dact.i.payload[0].eq(dens.o.payload[0].as_signed()),
            col.i.valid.eq(to_geo & holding),
        ]
        m.d.comb += [col.i.payload[k].eq(dens.o.payload[k + 1]) for k in range(G)]
        m.d.comb += [col.i.payload[G + k].eq(held.word_select(k, code_bits).as_signed())  # sign-extended
                     for k in range(16)]
        with m.If(take):
            m.d.sync += [left.eq(cnt.r_data), held.eq(sh.o.payload.as_value())]
        with m.Elif(col.i.valid & col.i.ready):
            m.d.sync += left.eq(left - 1)

        # --- sigma FIFO; colour engine -> colour activation; join -> compositor -> pixels ---------------
        m.submodules.sigma_fifo = sfifo = fifo.SyncFIFO(width=p.density_act.out_bits, depth=p.sigma_fifo_depth)
        m.d.comb += [
            sfifo.w_en.eq(dact.o.valid),
            sfifo.w_data.eq(dact.o.payload[0]),
            dact.o.ready.eq(sfifo.w_rdy),
            cact.i.valid.eq(col.o.valid),
            col.o.ready.eq(cact.i.ready),
        ]
        m.d.comb += [cact.i.payload[c].eq(col.o.payload[c].as_signed()) for c in range(3)]
        m.d.comb += [
            comp.samples.valid.eq(sfifo.r_rdy & cact.o.valid),
            comp.samples.payload.sigma.eq(sfifo.r_data),
            sfifo.r_en.eq(cact.o.valid & comp.samples.ready),
            cact.o.ready.eq(sfifo.r_rdy & comp.samples.ready),
        ]
        m.d.comb += [comp.samples.payload.color[c].eq(cact.o.payload[c]) for c in range(3)]
        wiring.connect(m, comp.pixels, wiring.flipped(self.pixels))
        return m


def top_verilog(params: TopParams, *, geo_features: int = 15, name: str = "accelerator_top") -> str:
    """Verilog text of the top (``emit_src=False``, deterministic), module ``name``, with a header line of
    its parameters (JSON of ``TopParams.to_dict`` and G)."""
    import json

    from amaranth.back import verilog

    text = verilog.convert(AcceleratorTop(params=params, geo_features=geo_features), name=name, emit_src=False)
    head = json.dumps({**params.to_dict(), "geo_features": geo_features}, sort_keys=True)
    return f"// {name} generated by nerfhw (hw.top.rtl): {head}\n" + text


def write_top_verilog(params: TopParams, out_dir, *, geo_features: int = 15, name: str = "accelerator_top"):
    """Write ``<out_dir>/<name>.v`` atomically (``top_verilog``); returns its path."""
    from pathlib import Path

    from common.atomic import atomic_write_text

    path = Path(out_dir) / f"{name}.v"
    atomic_write_text(path, top_verilog(params, geo_features=geo_features, name=name))
    return path
