"""Integer export: a quantized Instant-NGP field as exactly what the accelerator top loads.

The model must carry a calibrated fake quantizer at every component the top runs (``quant.ptq`` with
``sim.mapping.hardware_bits`` of the policy, or LSQ+ / A-CAQ quantizers finalised at those widths);
``export_int`` reads their steps and offsets and derives the integer program:

* hash tables: level l's asymmetric codes k, stored signed as ``k - 2^(B_l - 1)`` (B_l bits);
* requant (encoder -> density engine): lane e of level l maps the encoder's interpolated code u
  (C fractional bits) onto ``enc.out``'s grid, ``M_e / 2^S = s_l / (s_enc 2^C)``,
  ``O_e / 2^S = (s_l 2^(B_l-1) + lo_l - lo_enc) / s_enc``;
* MLP layers (``hw.mlp_engine.params.MlpLayer``): weight codes; with the layer's input grid
  ``value = s_in x + low_in`` and output grid ``value = s_out y + low_out`` (an asymmetric output is
  shifted to signed codes, ``low_out = lo + s_out 2^(B-1)``), the bias is
  ``round(sum_k W[o, k] low_in / s_in - low_out / (s_w s_in))`` and ``M / 2^S = s_w s_in / s_out``
  (``quant.dyadic``; Jacob et al. 2018, sec. 2.2);
* the SH unit on ``density.l1.out``'s grid (``sim.tlm.sh_unit.sh_constants``), the density and colour
  activation tables (``sim.tlm.activation.activation_table``) and the compositor's pixel constants
  (``sim.tlm.compositor.pixel_constants``), with the density step for the host's per-ray q.

File: the ``quant.entropy`` container (magic, version, length, JSON header, sections, CRC32) of kind
``nerfhw-int``, ``format_version`` 1: the header holds the top's parameters, the model's architecture
and identity, the policy and every scalar; one section holds the arrays (NumPy ``.npz``, no pickles).
``load_int`` checks all of it before anything is rendered.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.config import ConfigError
from hw.mlp_engine.params import MlpLayer
from hw.top.params import TopParams
from nerf.layout import model_layout
from quant.dyadic import dyadic_multiplier
from quant.entropy import from_bytes, write_bitstream
from sim.tlm.activation import activation_table
from sim.tlm.compositor import PixelConstants, pixel_constants
from sim.tlm.fixed import fit_shift
from sim.tlm.sh_unit import sh_constants

__all__ = ["KIND", "FORMAT_VERSION", "ExportError", "IntMlp", "IntModel", "export_int", "save_int", "load_int",
           "model_id"]

KIND = "nerfhw-int"
FORMAT_VERSION = 1


class ExportError(ValueError):
    """An integer export that cannot be made or loaded: the message names the field and the value."""


@dataclass
class IntMlp:
    """One MLP engine's program: layer settings, weight codes int64 (out, in), biases int64 (out,)."""

    layers: list[MlpLayer]
    weights: list[np.ndarray]
    biases: list[np.ndarray]


@dataclass
class IntModel:
    """Everything the accelerator top loads, plus what the host needs to feed it.

    Attributes:
        top: the units' parameters. arch: the model's architecture dict. policy: the policy as given;
        bits: the widths the top runs (``sim.mapping.hardware_bits``). model: the model's identity
        (``model_id``).
        tables: int64 (L, T, F), signed level codes. requant_mult / requant_offset: int64 (L*F,);
        requant_shift, requant_bits: S and the ``enc.out`` width.
        density, color: the two MLP programs. density_table, color_table: int64 activation tables.
        sh_mult, sh_offset: int64 (16,); sh_shift; sh_bits: the SH output width (``density.l1.out``'s).
        pixel: the compositor's constants. sigma_step: the density code step (1/world unit) for q.
        color_step, color_low: the colour codes' grid (value = step * code + low), for analysis.
        bbox: the model's box ((lo), (hi)), world units. background: in [0, 1]. t_min: early ray
        termination threshold on transmittance.
    """

    top: TopParams
    arch: dict
    policy: dict
    bits: dict
    model: str
    tables: np.ndarray
    requant_mult: np.ndarray
    requant_offset: np.ndarray
    requant_shift: int
    density: IntMlp
    density_table: np.ndarray
    sh_mult: np.ndarray
    sh_offset: np.ndarray
    sh_shift: int
    color: IntMlp
    color_table: np.ndarray
    pixel: PixelConstants
    sigma_step: float
    color_step: float
    color_low: float
    bbox: list
    background: float = 1.0
    t_min: float = 1e-4

    @property
    def requant_bits(self) -> int:
        return self.bits["enc.out"]

    @property
    def geo_bits(self) -> int:
        """Width of the density engine's output codes and of the SH codes (``density.l1.out``)."""
        return self.bits["density.l1.out"]


def model_id(model) -> str:
    """A short identity of a model's float parameters (SHA-256 of its state, first 16 hex digits)."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        if name.startswith("quant."):
            continue
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# --- export -----------------------------------------------------------------------------------
def _quantizer(model, name: str, bits: int):
    key = name.replace(".", "__")
    q = model.quant[key] if key in model.quant else None
    if q is None or not getattr(q, "active", False) or not q.frozen:
        raise ExportError(f"component {name}: no calibrated quantizer at {bits} bits on the model (run PTQ with the "
                          "top's widths, sim.mapping.hardware_bits, first)")
    if q.bits != bits:
        raise ExportError(f"component {name}: the model's quantizer has {q.bits} bits, the top runs {bits}")
    return q


def _grid(q) -> tuple[float, float]:
    """(step, offset) of a quantizer as Python floats."""
    return float(q.scale.detach()), float(q.offset.detach())


def _codes(q, x) -> np.ndarray:
    from quant.quantizers import to_integer

    return to_integer(x.detach(), q)[0].cpu().numpy().astype(np.int64)


def _np_quantize(q):
    """float64 array -> the quantizer's codes (``quant.quantizers.to_integer``), for the activation tables."""
    import torch

    return lambda v: _codes(q, torch.from_numpy(np.asarray(v, np.float64)))


def _fit_shift(make, limits, shift_max: int, what: str):
    """``sim.tlm.fixed.fit_shift``, or ExportError naming ``what``."""
    fit = fit_shift(make, limits, shift_max)
    if fit is None:
        raise ExportError(f"{what}: no shift in [0, {shift_max}] fits the constants")
    return fit


def _mlp(model, top: TopParams, mlp: str, bits: Mapping[str, int], in_grid: tuple[float, float],
         in_signed: bool) -> IntMlp:
    layout = model_layout(model.arch)
    layers = layout.mlp(mlp)
    p = top.mlp
    grid = in_grid  # value = step * x + low for the integers x entering the layer
    out = IntMlp([], [], [])
    for i, ly in enumerate(layers):
        wq = _quantizer(model, ly.weight, bits[ly.weight])
        weight = getattr(model, ly.name.replace(".", "_")).weight
        w = _codes(wq, weight)
        s_w = _grid(wq)[0]
        last = i == len(layers) - 1
        out_name = f"{ly.name}.out" if last else layers[i + 1].inputs[0]
        oq = _quantizer(model, out_name, bits[out_name])
        s_out, lo_out = _grid(oq)
        relu = not last
        low_out = 0.0 if relu else lo_out + s_out * (1 << (bits[out_name] - 1))
        s_in, low_in = grid
        bias_real = w.sum(axis=1) * (low_in / s_in) - low_out / (s_w * s_in)
        bias = np.rint(bias_real).astype(np.int64)
        lim = 1 << (p.bias_bits - 1)
        if (np.abs(bias) >= lim).any():
            raise ExportError(f"{ly.name}: bias {int(bias[np.abs(bias).argmax()])} does not fit the engine's "
                              f"bias_bits = {p.bias_bits}")
        try:
            mult, shift = dyadic_multiplier(s_w * s_in / s_out, mult_bits=p.mult_bits, shift_max=p.shift_max)
        except ValueError as exc:
            raise ExportError(f"{ly.name}: requantization {exc}") from None
        act_bits = max(bits[n] for n in ly.inputs)
        layer = MlpLayer(in_size=ly.in_size, out_size=ly.out_size, weight_bits=bits[ly.weight], act_bits=act_bits,
                         act_signed=in_signed if i == 0 else False, relu=relu, out_bits=bits[out_name], bias=True,
                         mult=mult, shift=shift)
        out.layers.append(layer)
        out.weights.append(w)
        out.biases.append(bias)
        grid = (s_out, low_out)
    try:
        p.check_layers(out.layers)
    except ConfigError as exc:
        raise ExportError(f"{mlp} MLP: {exc}") from None
    return out


def export_int(model, top: TopParams, policy: Mapping[str, int], bits: Mapping[str, int], *,
               background: float = 1.0, t_min: float = 1e-4) -> IntModel:
    """The integer program of ``model`` (an ``InstantNGP`` with calibrated quantizers at ``bits``) for ``top``.

    Args:
        policy: the policy as given (recorded); bits: the top's widths (``sim.mapping.hardware_bits``).
        background: the renders' background value in [0, 1]; t_min: early ray termination threshold.

    Raises:
        ExportError: a missing or mismatched quantizer, or a constant that does not fit its unit
            (naming the component or layer).
    """
    import torch

    arch = dict(model.arch)
    layout = model_layout(arch)
    enc = top.encoder
    with torch.no_grad():
        table = model.encoding.table
        codes, steps, lows = [], [], []
        for level, name in enumerate(layout.hash_components):
            q = _quantizer(model, name, bits[name])
            step, low = _grid(q)
            codes.append(_codes(q, table[level]) - (1 << (bits[name] - 1)))
            steps.append(step)
            lows.append(low + step * (1 << (bits[name] - 1)))  # value at signed code 0
        eq = _quantizer(model, "enc.out", bits["enc.out"])
        s_e, lo_e = _grid(eq)
        f = arch["features"]
        c = enc.coord_bits
        rp = top.requant
        ratio = np.repeat(np.array(steps) / s_e, f)
        off = np.repeat((np.array(lows) - lo_e) / s_e, f)
        r_shift, (r_mult, r_off) = _fit_shift(
            lambda s: ([round(r * 2.0 ** (s - c)) for r in ratio], [round(o * 2.0 ** s) for o in off]),
            (1 << rp.mult_bits, 1 << (rp.offset_bits - 1)), rp.shift_max, "requant (enc.out)")
        density = _mlp(model, top, "density", bits, (s_e, lo_e), in_signed=False)
        gq = _quantizer(model, "density.l1.out", bits["density.l1.out"])
        s_o, lo_o = _grid(gq)
        geo = bits["density.l1.out"]
        color = _mlp(model, top, "color", bits, (s_o, lo_o + s_o * (1 << (geo - 1))), in_signed=True)
        try:
            sh_mult, sh_off, sh_shift = sh_constants(s_o, lo_o, geo, top.sh)
        except ValueError as exc:
            raise ExportError(f"sh unit: {exc}") from None
        sq = _quantizer(model, "density.out", bits["density.out"])
        density_table = activation_table(np.exp, s_o, lo_o, geo, _np_quantize(sq), top.density_act)
        lq = _quantizer(model, "color.l2.out", bits["color.l2.out"])
        cq = _quantizer(model, "color.out", bits["color.out"])
        s_l2, lo_l2 = _grid(lq)
        color_table = activation_table(lambda v: 1.0 / (1.0 + np.exp(-v)), s_l2, lo_l2, bits["color.l2.out"],
                                       _np_quantize(cq), top.color_act)
        s_c, lo_c = _grid(cq)
        try:
            pixel = pixel_constants(s_c, lo_c, background, t_min, top.compositor)
        except ValueError as exc:
            raise ExportError(f"compositor: {exc}") from None
    return IntModel(top=top, arch=arch, policy=dict(policy), bits=dict(bits), model=model_id(model),
                    tables=np.stack(codes), requant_mult=np.array(r_mult, np.int64),
                    requant_offset=np.array(r_off, np.int64), requant_shift=r_shift, density=density,
                    density_table=density_table, sh_mult=np.array(sh_mult, np.int64),
                    sh_offset=np.array(sh_off, np.int64), sh_shift=sh_shift, color=color, color_table=color_table,
                    pixel=pixel, sigma_step=_grid(sq)[0], color_step=s_c, color_low=lo_c,
                    bbox=[list(map(float, b)) for b in arch["bbox"]],
                    background=float(background), t_min=float(t_min))


# --- file -------------------------------------------------------------------------------------
_SCALARS = ("requant_shift", "sh_shift", "sigma_step", "color_step", "color_low", "background", "t_min")


def _arrays(m: IntModel) -> dict[str, np.ndarray]:
    out = {"tables": m.tables, "requant_mult": m.requant_mult, "requant_offset": m.requant_offset,
           "density_table": m.density_table, "color_table": m.color_table, "sh_mult": m.sh_mult,
           "sh_offset": m.sh_offset}
    for mlp in ("density", "color"):
        prog = getattr(m, mlp)
        for i, (w, b) in enumerate(zip(prog.weights, prog.biases)):
            out[f"{mlp}.w{i}"] = w
            out[f"{mlp}.b{i}"] = b
    return {k: np.asarray(v, np.int64) for k, v in out.items()}


def save_int(path: str | os.PathLike, m: IntModel) -> int:
    """Write ``m`` (module doc: kind ``nerfhw-int``), atomically; returns the file's bytes."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **_arrays(m))
    header = {"format_version": FORMAT_VERSION, "top": m.top.to_dict(), "arch": m.arch, "policy": m.policy,
              "bits": m.bits, "model": m.model, "pixel": dataclasses.asdict(m.pixel),
              "layers": {mlp: [ly.to_dict() for ly in getattr(m, mlp).layers] for mlp in ("density", "color")},
              "bbox": m.bbox, **{k: getattr(m, k) for k in _SCALARS}}
    return write_bitstream(path, KIND, header, {"arrays": buf.getvalue()})


def _need(header: Mapping, key: str, kind, source: str):
    if key not in header or not isinstance(header[key], kind) or isinstance(header[key], bool) and kind is not bool:
        raise ExportError(f"{source}: field {key!r} missing or of the wrong type")
    return header[key]


def _check_array(a: np.ndarray, name: str, shape: tuple, lo: int, hi: int, source: str) -> np.ndarray:
    if a.shape != shape:
        raise ExportError(f"{source}: {name} has shape {a.shape}, the top needs {shape}")
    if a.size and (a.min() < lo or a.max() > hi):
        bad = int(a.min()) if a.min() < lo else int(a.max())
        raise ExportError(f"{source}: {name} holds {bad}, outside [{lo}, {hi}]")
    return a


def load_int(path: str | os.PathLike, *, expect: Mapping | None = None) -> IntModel:
    """Read and check an export written by ``save_int``.

    Args:
        expect: fields the file must match, from ``arch``, ``model`` (``model_id``), ``preset``
            (the hardware preset's name) and ``policy``.

    Raises:
        quant.entropy.BitstreamError: not a readable ``nerfhw-int`` file (truncated, corrupted, another kind).
        ExportError: another format version, a field that does not match ``expect`` or the top, an array
            of the wrong shape or with a value outside its unit's width; each names the field.
    """
    source = str(path)
    header, sections = from_bytes(Path(path).read_bytes(), KIND, source=source)
    if header.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{source}: format_version {header.get('format_version')!r} is not supported "
                          f"(this reader reads {FORMAT_VERSION})")
    try:
        top = TopParams.from_dict(_need(header, "top", dict, source), where=f"{source}: top")
    except ConfigError as exc:
        raise ExportError(str(exc)) from None
    arch, policy = _need(header, "arch", dict, source), _need(header, "policy", dict, source)
    bits = _need(header, "bits", dict, source)
    for key, want in (expect or {}).items():
        got = top.preset if key == "preset" else header.get(key)
        if key == "arch":
            got = {k: arch.get(k) for k in want}
            want = dict(want)
        if got != want:
            raise ExportError(f"{source}: {key} is {got!r}, expected {want!r} (an export of another "
                              f"{'hardware preset' if key == 'preset' else key})")
    if set(sections) != {"arrays"}:
        raise ExportError(f"{source}: sections {sorted(sections)}, expected ['arrays']")
    try:
        with np.load(io.BytesIO(sections["arrays"]), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (ValueError, OSError, EOFError) as exc:
        raise ExportError(f"{source}: unreadable arrays section ({exc})") from None
    layout = model_layout(arch)
    listed = _need(header, "layers", dict, source)
    try:
        layers = {mlp: [MlpLayer.from_dict(d, where=f"{mlp} layer") for d in _need(listed, mlp, list, source)]
                  for mlp in ("density", "color")}
    except ConfigError as exc:
        raise ExportError(f"{source}: {exc}") from None
    need = {"tables", "requant_mult", "requant_offset", "density_table", "color_table", "sh_mult", "sh_offset"}
    need |= {f"{m}.{k}{i}" for m in ("density", "color") for i in range(len(layers[m])) for k in "wb"}
    if set(arrays) != need:
        raise ExportError(f"{source}: arrays {sorted(set(need) ^ set(arrays))} missing or unexpected")
    enc = top.encoder
    half = lambda b: (-(1 << (b - 1)), (1 << (b - 1)) - 1)  # noqa: E731
    _check_array(arrays["tables"], "tables", (layout.levels, enc.table_size, layout.features),
                 *half(enc.feature_bits), source)
    for level, name in enumerate(layout.hash_components):
        _check_array(arrays["tables"][level], f"tables[{level}]", arrays["tables"][level].shape,
                     *half(int(bits[name])), source)
    lanes = layout.encoder_out
    _check_array(arrays["requant_mult"], "requant_mult", (lanes,), 0, (1 << top.requant.mult_bits) - 1, source)
    _check_array(arrays["requant_offset"], "requant_offset", (lanes,), *half(top.requant.offset_bits), source)
    _check_array(arrays["sh_mult"], "sh_mult", (16,), *half(top.sh.mult_bits), source)
    _check_array(arrays["sh_offset"], "sh_offset", (16,), *half(top.sh.offset_bits), source)
    for name, unit, bits_in in (("density_table", top.density_act, bits["density.l1.out"]),
                                ("color_table", top.color_act, bits["color.l2.out"])):
        _check_array(arrays[name], name, (1 << min(bits_in, unit.index_bits),), 0, (1 << unit.out_bits) - 1, source)
    progs = {}
    for mlp in ("density", "color"):
        try:
            top.mlp.check_layers(layers[mlp])
        except ConfigError as exc:
            raise ExportError(f"{source}: {mlp} MLP: {exc}") from None
        shapes = layout.mlp(mlp)
        if len(shapes) != len(layers[mlp]):
            raise ExportError(f"{source}: {mlp} MLP has {len(layers[mlp])} layers, the model {len(shapes)}")
        ws, bs = [], []
        for i, (ly, shape) in enumerate(zip(layers[mlp], shapes)):
            ws.append(_check_array(arrays[f"{mlp}.w{i}"], f"{mlp}.w{i}", (shape.out_size, shape.in_size),
                                   -((1 << (ly.weight_bits - 1)) - 1), (1 << (ly.weight_bits - 1)) - 1, source))
            bs.append(_check_array(arrays[f"{mlp}.b{i}"], f"{mlp}.b{i}", (shape.out_size,),
                                   *half(top.mlp.bias_bits), source))
        progs[mlp] = IntMlp(layers[mlp], ws, bs)
    pix = _need(header, "pixel", dict, source)
    try:
        pixel = PixelConstants(**{k: int(pix[k]) for k in PixelConstants.__dataclass_fields__})
    except (KeyError, TypeError, ValueError):
        raise ExportError(f"{source}: field 'pixel' must hold {', '.join(PixelConstants.__dataclass_fields__)}") \
            from None
    scalars = {k: _need(header, k, (int, float), source) for k in _SCALARS}
    if not (isinstance(scalars["sigma_step"], float) and math.isfinite(scalars["sigma_step"])
            and scalars["sigma_step"] > 0):
        raise ExportError(f"{source}: sigma_step must be a positive float, not {scalars['sigma_step']!r}")
    m = IntModel(top=top, arch=arch, policy=policy, bits=bits, model=_need(header, "model", str, source),
                    tables=arrays["tables"], requant_mult=arrays["requant_mult"],
                    requant_offset=arrays["requant_offset"], requant_shift=int(scalars["requant_shift"]),
                    density=progs["density"], density_table=arrays["density_table"], sh_mult=arrays["sh_mult"],
                    sh_offset=arrays["sh_offset"], sh_shift=int(scalars["sh_shift"]), color=progs["color"],
                    color_table=arrays["color_table"], pixel=pixel, sigma_step=float(scalars["sigma_step"]),
                    color_step=float(scalars["color_step"]), color_low=float(scalars["color_low"]),
                    bbox=_need(header, "bbox", list, source), background=float(scalars["background"]),
                    t_min=float(scalars["t_min"]))
    _check_settings(m, source)
    return m


def _check_settings(m: IntModel, source: str) -> None:
    """The run-time settings through each unit's own check (the words the top's ports take)."""
    from hw.activation.params import ActivationConfig
    from hw.requant.params import RequantConfig
    from sim.tlm.compositor import check_constants
    from sim.tlm.sh_unit import sh_config_word

    top = m.top
    checks = (("requant", lambda: top.requant.check_config(RequantConfig(shift=m.requant_shift,
                                                                         out_bits=m.requant_bits))),
              ("sh", lambda: sh_config_word(top.sh, m.geo_bits, m.sh_shift)),
              ("density_act", lambda: top.density_act.check_config(ActivationConfig(bits=m.geo_bits))),
              ("color_act", lambda: top.color_act.check_config(ActivationConfig(bits=m.bits["color.l2.out"]))),
              ("pixel", lambda: check_constants(m.pixel, top.compositor)))
    for unit, check in checks:
        try:
            check()
        except ValueError as exc:  # ConfigError is a ValueError
            raise ExportError(f"{source}: {unit}: {exc}") from None
