"""Cycle-for-cycle model of ``hw.top.AcceleratorTop``: every pixel and the cycle of every transfer.

Imports the units' params and models only (no Amaranth). Payloads come from the bit-exact reference of
the whole top (``sim.bitexact.render_int``: the units' own arithmetic in data-flow order). Timing is the
composition of the units' own timing models, stepped one cycle at a time beside the glue's state:

* the units: ``sim.tlm.hash_encoder.EncoderTiming``, ``sim.tlm.requant.timing``, two
  ``sim.tlm.mlp_engine.EngineTiming`` (density and colour, each with its layers' issue cycles),
  ``sim.tlm.sh_unit.timing``, ``sim.tlm.activation.timing`` (density, colour) and
  ``sim.tlm.compositor.CompositorTiming``; in every cycle each gives its ``in_ready`` / ``out_valid``
  (functions of its state alone: no unit has a combinational path from its output's ready to its
  input's ready) and takes the cycle's transfers at the closing edge (``clock``);
* the glue of ``hw.top.rtl`` (its docstring has the structure): the two eager forks (a flag per branch),
  the count, ray and sigma FIFOs (``amaranth.lib.fifo.SyncFIFO``: ready while not full, valid while not
  empty, an entry written in cycle t readable from t + 1), the SH pairing (samples of the held ray
  still to pair) and the join. Their handshakes are combinational, evaluated in the order the signals
  depend on each other (the readies from the compositor back to the inputs).

Cycle 0 is the first cycle with the top idle after every unit's configuration and memories were
written; a transfer "at cycle t" means valid and ready were both high when cycle t's closing rising
edge sampled them. Ray k is offered from ``max(ray_offers[k], accept of ray k-1 + 1)``, sample j from
``max(sample_offers[j], accept of sample j-1 + 1)``, each until accepted; ``ready[t]`` is the pixels'
ready in cycle t (ready past its end).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hw.config import ConfigError
from sim.tlm import activation, requant, sh_unit
from sim.tlm.compositor import CompositeResult, CompositorTiming
from sim.tlm.hash_encoder import EncoderTiming, HashEncoderTLM, pack_point
from sim.tlm.mlp_engine import EngineTiming, layer_cycles
from sim.tlm.transfers import ReadyPattern, check_offers, pack_vector

__all__ = ["TopTLM", "TopResult", "ray_payload", "sample_payload", "pixel_payload", "load_writes", "STAGES"]

#: Per-sample transfer points that ``TopResult.stages`` records, in data-flow order: the encoder's output,
#: the requant's output (the density engine's input), the density engine's output (the density fork), the
#: colour engine's input and output, and the join (the compositor's ``samples`` input).
STAGES = ("encoder", "requant", "density", "color_in", "color", "join")


def ray_payload(params, direction, q: int, count: int) -> int:
    """``rays`` payload (``hw.top.rtl.ray_layout``): direction codes (x, y, z) as two's complement
    ``sh.dir_bits``, then q (``compositor.q_bits``), then count (``compositor.count_bits``)."""
    d = params.sh.dir_bits
    return pack_vector(direction, d) | (int(q) << (3 * d)) | (int(count) << (3 * d + params.compositor.q_bits))


def sample_payload(params, coords) -> int:
    """``samples`` payload: fixed-point position codes (x, y, z), ``encoder.coord_bits`` each, x low."""
    return pack_point(coords, params.encoder.coord_bits)


def pixel_payload(params, pixel) -> int:
    """``pixels`` payload: 3 x unsigned ``compositor.pixel_bits``, R in the low bits."""
    return pack_vector(pixel, params.compositor.pixel_bits)


def load_writes(m) -> dict[str, list[dict[str, int]]]:
    """The writes that load an integer model into the top through its write ports (``hw.top.rtl``).

    Args:
        m: a ``quant.int_export.IntModel``.

    Returns:
        ``{port: [{field: value, ...}, ...]}``, one dict per write (one cycle of that port), the port's enable
        (``en``, or ``layers_en`` for an MLP engine's layer count) among the fields; ports are independent, so
        a driver may write them in parallel. Signed values are Python ints (a driver writes them as two's
        complement of the field's width). Built with each unit's own helpers: the encoder's table entries
        (F features of ``feature_bits``, feature 0 low), ``sim.tlm.requant.const_writes``,
        ``sim.tlm.mlp_engine.weight_writes`` / ``bias_writes`` / ``config_word`` for both engines,
        ``sim.tlm.sh_unit.sh_config_word`` / ``const_writes``, ``sim.tlm.activation.table_writes`` and
        ``sim.tlm.compositor.constants_word``.
    """
    from hw.activation.params import ActivationConfig
    from hw.requant.params import RequantConfig
    from sim.tlm.compositor import constants_word
    from sim.tlm.mlp_engine import bias_writes, config_word, weight_writes

    p = m.top
    enc = p.encoder
    tables = np.asarray(m.tables, np.int64)
    out: dict[str, list[dict[str, int]]] = {
        "encoder_table": [{"en": 1, "level": lv, "index": i, "data": pack_vector(tables[lv, i], enc.feature_bits)}
                          for lv in range(enc.levels) for i in range(enc.table_size)],
        "requant_cfg": [{"en": 1, "data": config_word(p.requant, RequantConfig(shift=m.requant_shift,
                                                                                out_bits=m.requant_bits))}],
        "requant_consts": [{"en": 1, "lane": e, "mult": mu, "offset": off}
                           for e, mu, off in requant.const_writes(p.requant, m.requant_mult, m.requant_offset)],
    }
    for name in ("density", "color"):
        prog = getattr(m, name)
        cfg = [{"en": 1, "layer": lv, "data": config_word(p.mlp, x)} for lv, x in enumerate(prog.layers)]
        out[f"{name}_cfg"] = cfg + [{"layers_en": 1, "layers": len(prog.layers)}]
        out[f"{name}_weights"] = [{"en": 1, "layer": lv, "row_tile": rt, "col_tile": ct, "plane": pl, "data": d}
                                  for lv, x in enumerate(prog.layers)
                                  for _, rt, ct, pl, d in weight_writes(p.mlp, lv, prog.weights[lv], x.weight_bits)]
        out[f"{name}_bias"] = [{"en": 1, "layer": lv, "row_tile": rt, "data": d}
                               for lv, x in enumerate(prog.layers) if x.bias
                               for _, rt, d in bias_writes(p.mlp, lv, prog.biases[lv])]
    out["sh_cfg"] = [{"en": 1, "data": sh_unit.sh_config_word(p.sh, m.geo_bits, m.sh_shift)}]
    out["sh_consts"] = [{"en": 1, "k": k, "mult": mu, "offset": off}
                        for k, mu, off in sh_unit.const_writes(m.sh_mult, m.sh_offset)]
    for name, table, bits in (("density_act", m.density_table, m.geo_bits),
                              ("color_act", m.color_table, m.bits["color.l2.out"])):
        unit = getattr(p, name)
        out[f"{name}_cfg"] = [{"en": 1, "data": config_word(unit, ActivationConfig(bits=bits))}]
        out[f"{name}_table"] = [{"en": 1, "addr": a, "data": v} for a, v in activation.table_writes(unit, table)]
    out["compositor_cfg"] = [{"en": 1, "data": constants_word(p.compositor, m.pixel)}]
    return out


@dataclass(frozen=True)
class TopResult:
    """What ``TopTLM.run`` predicts for R rays of N samples.

    Attributes:
        ray_accept: int64 (R,), cycle of each ``rays`` transfer.
        sample_accept: int64 (N,), cycle of each ``samples`` transfer.
        pixel_cycles: int64 (R,), cycle of each ``pixels`` transfer (in ray order).
        pixels: int64 (R, 3), the pixel codes (``sim.bitexact.render_int``); payloads: R ``pixels`` payloads.
        composite: the reference's ``CompositeResult`` (pixels, T_end, samples contributing per ray).
        cycles: last pixel transfer + 1 (0 for no rays).
        stages: {name: int64 (N,)} the cycle each sample crosses each point of ``STAGES``.
    """

    ray_accept: np.ndarray
    sample_accept: np.ndarray
    pixel_cycles: np.ndarray
    pixels: np.ndarray
    payloads: list[int]
    composite: CompositeResult | None
    cycles: int
    stages: dict = field(default_factory=dict)


class _Fifo:
    """An ``amaranth.lib.fifo.SyncFIFO``'s occupancy: ``w_rdy`` = level < depth, ``r_rdy`` = level > 0; the
    level changes at the edge, so an entry written in cycle t is readable from t + 1."""

    def __init__(self, depth: int) -> None:
        self.depth, self.level = depth, 0

    @property
    def w_rdy(self) -> bool:
        return self.level < self.depth

    @property
    def r_rdy(self) -> bool:
        return self.level > 0

    def clock(self, write: bool, read: bool) -> None:
        self.level += int(write) - int(read)


def _check_counts(counts) -> np.ndarray:
    c = np.asarray(counts)
    if c.ndim != 1 or not np.issubdtype(c.dtype, np.integer) or (c < 0).any():
        raise ValueError(f"counts must be a 1-D array of non-negative integers, not {c!r}")
    return c.astype(np.int64)


class TopTLM:
    """Model of one ``AcceleratorTop`` loaded with an integer model.

    Args:
        m: a ``quant.int_export.IntModel`` (its ``top`` is the hardware; its ``arch`` gives G, the
            geometry features).
        encoder: a ``HashEncoderTLM`` over ``m``'s tables for the payloads (built when None).

    Raises:
        ValueError: units that do not fit together (``TopParams.check_top``).
    """

    def __init__(self, m, *, encoder: HashEncoderTLM | None = None) -> None:
        self._setup(m.top, {name: getattr(m, name).layers for name in ("density", "color")},
                    int(m.arch.get("geo_features", 15)))
        self.m = m
        self.encoder = encoder

    @classmethod
    def from_layers(cls, top, layers, geo_features: int = 15) -> "TopTLM":
        """A model for timing alone (``schedule``; ``run`` needs an ``IntModel``).

        Args:
            top: the ``TopParams``.
            layers: ``{"density": [...], "color": [...]}``, each layer an ``MlpLayer`` or a mapping with
                ``in_size``, ``out_size``, ``weight_bits`` and ``act_bits`` (``sim.mapping.mlp_layers``).
            geo_features: G.
        """
        self = cls.__new__(cls)
        self._setup(top, layers, geo_features)
        self.m = self.encoder = None
        return self

    def _setup(self, top, layers, geo_features: int) -> None:
        self.params = p = top
        self.geo_features = geo_features
        p.check_top(geo_features)

        def dims(x):
            get = x.get if isinstance(x, dict) else lambda k: getattr(x, k)
            return {k: int(get(k)) for k in ("in_size", "out_size", "weight_bits", "act_bits")}

        try:
            self.issue = {name: tuple(layer_cycles(p.mlp, **dims(x)) for x in layers[name])
                          for name in ("density", "color")}
        except ValueError as exc:
            raise ConfigError(f"the model's MLP layers do not fit the engines: {exc}") from None

    # --- timing -----------------------------------------------------------------------------------
    def schedule(self, counts, ray_offers=None, sample_offers=None, ready=None, *,
                 stall_limit: int | None = None) -> dict:
        """Transfer cycles of R rays with ``counts`` samples (module doc), stepping every unit's state and
        the glue's one cycle at a time.

        Args:
            counts: int (R,), samples per ray (0 allowed).
            ray_offers: int (R,); sample_offers: int (sum counts,); default all 0.
            ready: bool (T,), the pixels' ready per cycle; ready past the end. None: always ready.
            stall_limit: cycles without any transfer, past every offer and the ready pattern, after which
                the model gives up (a deadlock; never expected); default 100 000.

        Returns:
            ``{"ray_accept", "sample_accept", "pixel_cycles", "stages", "cycles"}`` (``TopResult``'s fields).

        Raises:
            RuntimeError: no transfer for ``stall_limit`` cycles (naming the cycle and the progress).
        """
        p = self.params
        counts = _check_counts(counts)
        R, N = len(counts), int(counts.sum())
        r_offers = check_offers(ray_offers, R, "rays")
        s_offers = check_offers(sample_offers, N, "samples")
        ready_at = ReadyPattern(ready)
        quiet_after = max(int(r_offers.max()) if R else 0, int(s_offers.max()) if N else 0,
                          0 if ready is None else len(ready))
        limit = 100_000 if stall_limit is None else stall_limit
        ray_acc = np.full(R, -1, np.int64)
        smp_acc = np.full(N, -1, np.int64)
        pix = np.full(R, -1, np.int64)
        stages = {name: np.full(N, -1, np.int64) for name in STAGES}
        enc = EncoderTiming(p.encoder)
        rq = requant.timing(p.requant)
        dens = EngineTiming(p.mlp, lambda k, c=self.issue["density"]: c)
        col = EngineTiming(p.mlp, lambda k, c=self.issue["color"]: c)
        sh = sh_unit.timing(p.sh)
        dact = activation.timing(p.density_act)
        cact = activation.timing(p.color_act)
        comp = CompositorTiming(p.compositor, counts)
        cnt, rfifo, sfifo = _Fifo(p.count_fifo_depth), _Fifo(p.ray_fifo_depth), _Fifo(p.sigma_fifo_depth)
        ray_done = [False, False, False]  # the ray fork's branches: SH unit, count FIFO, ray FIFO
        dens_done = [False, False]  # the density fork's branches: density activation, pairing
        left = 0  # samples of the held ray still to pair
        n_taken = 0  # rays taken by the pairing
        nr = ns = done = 0
        n_enc = n_rq = n_dens = n_cin = n_cout = n_join = 0
        t = last_fire = 0
        while done < R:
            # --- the cycle's handshakes (every unit's in_ready / out_valid is a function of its state) ---
            s_fire = ns < N and s_offers[ns] <= t and enc.in_ready
            enc_fire = enc.out_valid and rq.in_ready
            rq_fire = rq.out_valid and dens.in_ready
            # ray splitter (eager fork) into the SH unit, the count FIFO and the ray FIFO
            r_valid = nr < R and r_offers[nr] <= t
            b_ready = (sh.in_ready, cnt.w_rdy, rfifo.w_rdy)
            r_fire = r_valid and all(d or r for d, r in zip(ray_done, b_ready))
            b_fire = [r_valid and not d and r for d, r in zip(ray_done, b_ready)]
            comp_ray = rfifo.r_rdy and comp.rays_ready
            # SH pairing
            holding = left > 0
            take = not holding and sh.out_valid and cnt.r_rdy
            # density fork into the density activation and the pairing (-> colour engine input)
            d_valid = dens.out_valid
            geo_ready = holding and col.in_ready
            d_ready = (dact.in_ready, geo_ready)
            d_fire = d_valid and all(d or r for d, r in zip(dens_done, d_ready))
            dact_in = d_valid and not dens_done[0] and dact.in_ready
            col_in = d_valid and not dens_done[1] and geo_ready
            dact_out = dact.out_valid and sfifo.w_rdy
            col_out = col.out_valid and cact.in_ready
            join = sfifo.r_rdy and cact.out_valid and comp.samples_ready
            p_fire = comp.pixels_valid and ready_at(t)
            # --- the closing edge ---
            enc.clock(s_fire, enc_fire)
            rq.clock(enc_fire, rq_fire)
            dens.clock(rq_fire, d_fire)
            sh.clock(b_fire[0], take)
            cnt.clock(b_fire[1], take)
            rfifo.clock(b_fire[2], comp_ray)
            ray_done = [False] * 3 if r_fire else [d or f for d, f in zip(ray_done, b_fire)]
            dens_done = [False] * 2 if d_fire else [dens_done[0] or dact_in, dens_done[1] or col_in]
            if take:
                left = int(counts[n_taken])
                n_taken += 1
            elif col_in:
                left -= 1
            dact.clock(dact_in, dact_out)
            sfifo.clock(dact_out, join)
            col.clock(col_in, col_out)
            cact.clock(col_out, join)
            comp.clock(comp_ray, join, p_fire)
            # --- bookkeeping ---
            if s_fire:
                smp_acc[ns] = t
                ns += 1
            if r_fire:
                ray_acc[nr] = t
                nr += 1
            if p_fire:
                pix[done] = t
                done += 1
            for fired, name, k in ((enc_fire, "encoder", n_enc), (rq_fire, "requant", n_rq),
                                   (d_fire, "density", n_dens), (col_in, "color_in", n_cin),
                                   (col_out, "color", n_cout), (join, "join", n_join)):
                if fired:
                    stages[name][k] = t
            n_enc += enc_fire
            n_rq += rq_fire
            n_dens += d_fire
            n_cin += col_in
            n_cout += col_out
            n_join += join
            if s_fire or r_fire or p_fire or enc_fire or rq_fire or d_fire or take or col_in or col_out or join \
                    or dact_in or dact_out or comp_ray or any(b_fire):
                last_fire = t
            elif t - last_fire > limit and t > quiet_after:
                raise RuntimeError(f"the top model made no transfer for {limit} cycles (cycle {t}): rays {nr}/{R} in, "
                                   f"samples {ns}/{N} in, pixels {done}/{R} out")
            t += 1
        return {"ray_accept": ray_acc, "sample_accept": smp_acc, "pixel_cycles": pix, "stages": stages,
                "cycles": int(pix[-1]) + 1 if R else 0}

    # --- the whole prediction ---------------------------------------------------------------------
    def run(self, rays, ray_offers=None, sample_offers=None, ready=None) -> TopResult:
        """Predict a whole run: the pixels (``sim.bitexact.render_int``) and every transfer cycle (``schedule``).

        Args:
            rays: a ``sim.bitexact.RayBatch`` (coords (N, 3), counts (R,), dirs (R, 3), q (R,)).
            ray_offers, sample_offers, ready: as ``schedule``.
        """
        from sim.bitexact import render_int

        m = self.m
        if m is None:
            raise ValueError("a timing-only TopTLM (from_layers) predicts no pixels: build it from an IntModel")
        if self.encoder is None:
            self.encoder = HashEncoderTLM(m.top.encoder, m.tables)
        counts = _check_counts(rays.counts)
        if len(rays.coords) != int(counts.sum()) or len(rays.dirs) != len(counts) or len(rays.q) != len(counts):
            raise ValueError(f"a RayBatch of {len(counts)} rays with {int(counts.sum())} samples needs that many "
                             f"dirs and q and as many coords, not {len(rays.dirs)}, {len(rays.q)} and "
                             f"{len(rays.coords)}")
        times = self.schedule(counts, ray_offers, sample_offers, ready)
        comp = render_int(m, rays, self.encoder) if len(counts) else None
        pixels = comp.pixels if comp is not None else np.zeros((0, 3), np.int64)
        return TopResult(times["ray_accept"], times["sample_accept"], times["pixel_cycles"], pixels,
                         [pixel_payload(self.params, px) for px in pixels], comp, times["cycles"], times["stages"])

    def in_payloads(self, rays) -> tuple[list[int], list[int]]:
        """The ``rays`` and ``samples`` payloads of a ``RayBatch``, in order."""
        p = self.params
        return ([ray_payload(p, d, q, c) for d, q, c in zip(rays.dirs, rays.q, rays.counts)],
                [sample_payload(p, xyz) for xyz in rays.coords])
