"""Entropy-coded Instant-NGP hash tables: one bitstream file that decodes to a bit-identical field.

``encode_ngp`` takes an ``InstantNGP`` whose policy quantizers are installed and calibrated (after
``quant.ptq.ptq``) and writes one ``quant.entropy`` bitstream of kind ``"ngp-tables"``; ``decode_ngp``
rebuilds the model and its occupancy grid from that file alone, rendering exactly what the encoded
fake-quantized model renders.

What the file holds (sections, in order):

================================ ============================================================================
section                          content
================================ ============================================================================
``qparams``                      float32 (scale, offset) of every installed quantizer, in header order
``hash.levelNN.codes``           range-coded integer codes of level NN's used rows (``T_l x F``), one channel
                                 per feature (``quant.entropy.encode_symbols``)
``hash.levelNN.tables``          their frequency tables (``serialize_tables``): the entropy model in the file
``hash.levelNN.float32``         instead of the two above, for a level at 32 bits: its used rows as float32
``mlp.<layer>.weight``           each MLP weight as raw float32 (not entropy coded: not this codec's subject;
                                 fake-quantized at render time by its stored quantizer, as before)
``occupancy``                    the occupancy grid's ``occupied`` flags, ``np.packbits`` (res^3 bits)
================================ ============================================================================

and a JSON header: the architecture (``model.arch``), the policy, each quantizer's name, scheme, bits
and enabled flag, each level's rows, bits, per-channel centre / range / table sizes / counts and table
precision, and the occupancy grid's res, threshold, decay and box.

Entropy model. Per level, one ``FactorizedPrior`` (Ballé et al. 2018, App. 6.1) with one channel per
feature (F = 2): the features of a level are trained together but play different roles, so their
code histograms differ; a channel costs only its frequency table (measured: a few hundred bytes at
8 bits, negligible against T_l = 2^15 rows). The prior is fitted to the centred codes
(``codes - median``, so Ballé's initialisation near 0 fits) by minimising their bits
(``quant.entropy.fit_prior``: no noise, the codes are integers). Its pmf over each channel's
[min, max] becomes the integer tables that the file stores, so decoding needs no float model.
Measured on a 40-iteration 4-level test field (T = 2^13, uniform 8 bits): 7.25 bits per table
parameter with the prior against 7.14 with empirical histograms and 7.13 for zstd -19 of the packed
codes; the smooth prior misses the spike of never-trained entries (one code holding ~10 % of a level)
but its tables are smaller. ``entropy_model="empirical"`` is offered as that baseline.

Used rows: a dense level (``nerf.grid.is_dense``) reads only its first ``(N_l + 1)^3`` rows (the
parameter count of ``quant.costs``); only those are coded, the rest decode to code 0 (never read).

Bit-exactness: level values are ``codes * scale + offset`` in float32, the operations of
``quant.quantizers.to_integer`` and ``fake_quantize``; the decoded model carries the same frozen
quantizers, and ``encode_ngp`` checks that re-quantizing the decoded values gives them back bit for
bit (true unless codes exceed float32's 24-bit mantissa), so the decoded render equals the encoded
model's. The decoded occupancy grid has the stored ``occupied`` flags and a zero ``density`` (the
decayed densities are not stored; ``update`` starts afresh from them).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np
import torch
import zstandard
from torch import nn

from nerf import grid
from nerf.layout import model_layout
from nerf.model import InstantNGP
from nerf.occupancy import OccupancyGrid
from quant.entropy import BitstreamError, fit_prior, pack_channels, read_bitstream, unpack_channels, write_bitstream
from quant.policy import FULL_PRECISION_BITS, QuantPolicy, scheme_of
from quant.quantizers import FakeQuantizer, to_integer

__all__ = ["KIND", "encode_ngp", "decode_ngp", "level_rows", "pack_codes"]

#: The bitstream kind of this codec's files.
KIND = "ngp-tables"
#: Frequency-table precision (bits) used when a channel's range fits; wider ranges use more, up to 24.
TABLE_PRECISION = 16
#: Where a level's frequency tables come from (``encode_ngp``'s ``entropy_model``).
ENTROPY_MODELS = ("prior", "empirical")
#: zstandard level of the baseline (``zstd_bits``).
ZSTD_LEVEL = 19


def level_rows(arch: Mapping) -> list[int]:
    """Rows of each hash level that the encoder reads: ``(N_l + 1)^3`` for a dense level, else ``T``.

    ``arch`` is ``InstantNGP.arch``; the resolutions come from ``nerf.grid.level_resolutions``.
    """
    size = 1 << arch["log2_table_size"]
    res = grid.level_resolutions(arch["n_min"], arch["n_max"], arch["levels"])
    return [(r + 1) ** 3 if grid.is_dense(r, size) else size for r in res]


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Codes as a plain ``bits``-wide bit string (``np.packbits``, LSB of each code first).

    Args:
        codes: int array, any shape, values in [0, 2**bits) (a signed range must be offset first).
        bits: 1..32.

    Returns:
        ``ceil(n * bits / 8)`` bytes: the raw size of the codes at the policy's width.

    Raises:
        ValueError: a code outside [0, 2**bits).
    """
    c = np.asarray(codes, np.int64).reshape(-1)
    if c.size and (c.min() < 0 or c.max() >= 1 << bits):
        raise ValueError(f"codes span [{c.min()}, {c.max()}], outside [0, 2**{bits})")
    planes = (c[:, None] >> np.arange(bits, dtype=np.int64)[None, :]) & 1
    return np.packbits(planes.astype(np.uint8).reshape(-1)).tobytes()


def _policy(model, policy) -> QuantPolicy:
    levels = model.arch["levels"]
    if isinstance(policy, QuantPolicy):
        if policy.levels != levels:
            raise ValueError(f"the policy is for {policy.levels} hash levels, the model has {levels}")
        return policy
    return QuantPolicy.from_dict(policy, levels)


def _installed(model, policy: QuantPolicy) -> dict[str, FakeQuantizer]:
    """The model's quantizers by component name, checked against the policy."""
    if not isinstance(model, InstantNGP):
        raise ValueError(f"encode_ngp codes an InstantNGP field, not {type(model).__name__}")
    for layer in model_layout(model.arch).layers.values():
        module = getattr(model, layer.name.replace(".", "_"))
        if type(module) is not nn.Linear:
            raise ValueError(f"layer {layer.name} is a {type(module).__name__} (e.g. DHQ): only plain nn.Linear "
                             "layers with policy quantizers can be coded")
    found = {}
    for name in policy:
        key = model._key(name)
        q = model.quant[key] if key in model.quant else None
        bits = policy[name]
        if bits == FULL_PRECISION_BITS:
            if q is not None and getattr(q, "active", True):
                raise ValueError(f"component {name}: the policy says 32 bits, the model quantizes it")
            continue
        if q is None:
            raise ValueError(f"component {name}: the policy says {bits} bits but no quantizer is installed "
                             "(run quant.ptq.ptq first)")
        if type(q) is not FakeQuantizer:
            raise ValueError(f"component {name}: quantizer {type(q).__name__} is not a FakeQuantizer")
        if q.bits != bits or not q.active:
            raise ValueError(f"component {name}: the quantizer has bits={q.bits} (enabled={q.enabled}), "
                             f"the policy says {bits}")
        if not q.frozen:
            raise ValueError(f"component {name}: the quantizer is not calibrated (run quant.ptq.ptq first)")
        found[name] = q
    extra = sorted(set(model.quant.keys()) - {model._key(n) for n in policy})
    if extra:
        raise ValueError(f"the model has quantizers outside the policy: {', '.join(extra)}")
    return found


def _fit_precision(size: int) -> int:
    if size <= 1 << TABLE_PRECISION:
        return TABLE_PRECISION
    p = max(TABLE_PRECISION, math.ceil(math.log2(size)) + 1)
    if p > 24:
        raise ValueError(f"{size} distinct code values are too many for a frequency table (at most 2**23)")
    return p


@torch.no_grad()
def encode_ngp(model: InstantNGP, occupancy: OccupancyGrid, policy, path: str | os.PathLike, *,
               entropy_model: str = "prior", fit_steps: int = 500, lr: float = 0.05, seed: int = 0) -> dict:
    """Write ``model`` (quantizers installed and calibrated: ``quant.ptq.ptq``) and ``occupancy`` to ``path``.

    Args:
        model: the field, on the CPU or not (tensors are copied to the CPU).
        occupancy: its grid.
        policy: the ``QuantPolicy`` (or a component -> bits mapping) the quantizers were installed from.
        path: the bitstream file (written atomically).
        entropy_model: "prior" (default): each level's tables from its fitted ``FactorizedPrior``;
            "empirical": from the codes' own histograms (the i.i.d. optimum for the stream, a baseline
            for the learned model; the decoder reads either, tables are tables).
        fit_steps, lr, seed: ``quant.entropy.fit_prior`` settings of each level's prior.

    Returns:
        Summary dict (sizes in bits unless named bytes):
        ``file_bytes``; ``levels``: per hash level ``name``, ``bits`` (policy), ``parameters`` (T_l x F),
        ``raw_bits`` (parameters x bits), ``coded_bits`` (stream + tables), ``stream_bits``,
        ``table_bits``, ``bits_per_parameter`` (coded / parameters), ``entropy_bits`` (the codes'
        empirical entropy x count, the ideal of a per-channel i.i.d. code without its tables),
        ``zstd_bits`` (the codes bit-packed at the policy's width, zstandard level 19: the baseline);
        totals ``table_parameters``, ``raw_bits``, ``coded_bits``, ``bits_per_parameter``,
        ``policy_bits_per_parameter``, ``zstd_bits``, ``zstd_bits_per_parameter``; and ``mlp_bytes`` (raw
        float32 weights) and ``occupancy_bytes``. A level at 32 bits counts its float32 bytes as coded.

    Raises:
        ValueError: a model that is not an ``InstantNGP`` with plain linear layers, quantizers that do not
            match the policy or are not calibrated, a level whose decoded values would not re-quantize
            to themselves.
    """
    if entropy_model not in ENTROPY_MODELS:
        raise ValueError(f"entropy_model must be one of {', '.join(ENTROPY_MODELS)}, not {entropy_model!r}")
    policy = _policy(model, policy)
    quantizers = _installed(model, policy)
    arch = model.arch
    rows, features = level_rows(arch), arch["features"]
    qnames = list(quantizers)
    qparams = np.array([[float(quantizers[n].scale), float(quantizers[n].offset)] for n in qnames], np.float32)
    sections: dict[str, bytes] = {"qparams": qparams.astype("<f4").tobytes()}
    levels_header, levels_summary = [], []
    table = model.encoding.table.detach().cpu()
    for level in range(arch["levels"]):
        name = f"hash.level{level:02d}"
        used = table[level, :rows[level]]
        params = used.numel()
        q = quantizers.get(name)
        if q is None:  # full precision: the float32 rows as they are
            raw = used.numpy().astype("<f4").tobytes()
            sections[f"{name}.float32"] = raw
            levels_header.append({"name": name, "rows": rows[level], "bits": FULL_PRECISION_BITS})
            levels_summary.append({"name": name, "bits": FULL_PRECISION_BITS, "parameters": params,
                                   "raw_bits": 32 * params, "coded_bits": 8 * len(raw), "stream_bits": 8 * len(raw),
                                   "table_bits": 0, "bits_per_parameter": 32.0, "entropy_bits": None,
                                   "zstd_bits": 8 * len(zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(raw))})
            continue
        qcpu = _cpu_copy(q)
        codes, scale, offset = to_integer(used, qcpu)
        decoded = codes.to(torch.float32) * scale + offset
        if not torch.equal(qcpu(decoded), decoded):
            raise ValueError(f"{name}: decoded values do not re-quantize to themselves at {q.bits} bits "
                             "(codes beyond float32's exact range); this level cannot be coded bit-exactly")
        codes = codes.numpy()
        center = np.median(codes, axis=0).round().astype(np.int64)
        channels = [codes[:, f] - center[f] for f in range(features)]
        spans = [int(c.max() - c.min() + 1) for c in channels]
        precision = _fit_precision(max(spans))
        prior = fit_prior(channels, steps=fit_steps, lr=lr, seed=seed + level) if entropy_model == "prior" else None
        stream, meta = pack_channels(channels, prior, precision=precision)
        sections[f"{name}.codes"] = stream
        sections[f"{name}.tables"] = meta["tables"]
        levels_header.append({"name": name, "rows": rows[level], "bits": q.bits, "center": center.tolist(),
                              "lo": meta["lo"], "sizes": meta["sizes"], "counts": meta["counts"],
                              "precision": meta["precision"], "entropy_model": entropy_model})
        qmin = -(2 ** (q.bits - 1) - 1) if q.scheme == "symmetric" else 0
        zstd = len(zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(pack_codes(codes - qmin, q.bits)))
        entropy = sum(_entropy_bits(c) for c in channels)
        coded = 8 * (len(stream) + len(meta["tables"]))
        levels_summary.append({"name": name, "bits": q.bits, "parameters": params, "raw_bits": q.bits * params,
                               "coded_bits": coded, "stream_bits": 8 * len(stream),
                               "table_bits": 8 * len(meta["tables"]), "bits_per_parameter": coded / params,
                               "entropy_bits": entropy, "zstd_bits": 8 * zstd})
    mlp_names = []
    for layer in model_layout(arch).layers.values():
        weight = getattr(model, layer.name.replace(".", "_")).weight.detach().cpu()
        sections[f"mlp.{layer.name}.weight"] = weight.numpy().astype("<f4").tobytes()
        mlp_names.append(layer.name)
    occupied = occupancy.occupied.detach().cpu().numpy().astype(bool).reshape(-1)
    if occupied.size != occupancy.res ** 3:
        raise ValueError(f"occupancy grid holds {occupied.size} flags, res {occupancy.res} needs {occupancy.res ** 3}")
    sections["occupancy"] = np.packbits(occupied).tobytes()
    header = {
        "arch": arch,
        "policy": policy.to_dict(),
        "quantizers": [{"name": n, "scheme": quantizers[n].scheme, "bits": quantizers[n].bits} for n in qnames],
        "levels": levels_header,
        "mlp": mlp_names,
        "occupancy": {"res": int(occupancy.res), "threshold": float(occupancy.threshold),
                      "decay": float(occupancy.decay),
                      "bbox": [occupancy.lo.cpu().tolist(), occupancy.hi.cpu().tolist()]},
    }
    file_bytes = write_bitstream(path, KIND, header, sections)
    params = sum(s["parameters"] for s in levels_summary)
    raw = sum(s["raw_bits"] for s in levels_summary)
    coded = sum(s["coded_bits"] for s in levels_summary)
    zstd = sum(s["zstd_bits"] for s in levels_summary)
    return {"file_bytes": file_bytes, "levels": levels_summary, "table_parameters": params, "raw_bits": raw,
            "coded_bits": coded, "bits_per_parameter": coded / params, "policy_bits_per_parameter": raw / params,
            "zstd_bits": zstd, "zstd_bits_per_parameter": zstd / params,
            "mlp_bytes": sum(len(sections[f"mlp.{n}.weight"]) for n in mlp_names),
            "occupancy_bytes": len(sections["occupancy"])}


def _cpu_copy(q: FakeQuantizer) -> FakeQuantizer:
    c = FakeQuantizer(q.scheme, q.bits, enabled=q.enabled, name=q.name)
    c.scale.data.copy_(q.scale.detach().cpu())
    c.offset.data.copy_(q.offset.detach().cpu())
    c.frozen = True
    return c


def _entropy_bits(symbols: np.ndarray) -> float:
    _, counts = np.unique(symbols, return_counts=True)
    return float(-(counts * np.log2(counts / counts.sum())).sum())


def _field(mapping, key, source, kind=None):
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise BitstreamError(f"{source}: header lacks {key!r}")
    value = mapping[key]
    if kind is not None and not isinstance(value, kind):
        raise BitstreamError(f"{source}: header field {key!r} is {type(value).__name__}, not {kind.__name__}")
    return value


def _section(sections, name, size, source) -> bytes:
    if name not in sections:
        raise BitstreamError(f"{source}: section {name!r} missing")
    data = sections[name]
    if size is not None and len(data) != size:
        raise BitstreamError(f"{source}: section {name!r} holds {len(data)} bytes, expected {size}")
    return data


def decode_ngp(path: str | os.PathLike) -> tuple[InstantNGP, OccupancyGrid]:
    """Rebuild the field and its occupancy grid from a file of ``encode_ngp`` alone (CPU, eval mode).

    The model carries the stored policy's quantizers, frozen at the stored scales and offsets; its
    hash levels hold ``codes * scale + offset`` (float32), so it renders bit-identically to the
    encoded model (module doc).

    Raises:
        BitstreamError: the file is unreadable, damaged, of another kind (both named), or its header or
            sections do not describe a valid field.
    """
    source = str(path)
    header, sections = read_bitstream(path, KIND)
    arch = _field(header, "arch", source, dict)
    try:
        model = InstantNGP(**arch)
        policy = QuantPolicy.from_dict(_field(header, "policy", source, dict), arch["levels"])
    except (TypeError, ValueError, KeyError) as exc:
        raise BitstreamError(f"{source}: invalid architecture or policy in the header: {exc}") from None
    model.eval()
    qlist = _field(header, "quantizers", source, list)
    qparams = np.frombuffer(_section(sections, "qparams", 8 * len(qlist), source), "<f4").reshape(-1, 2)
    quantizers = {}
    for entry, (scale, offset) in zip(qlist, qparams):
        name = _field(entry, "name", source, str)
        bits = _field(entry, "bits", source, int)
        if name not in policy or policy[name] != bits or _field(entry, "scheme", source, str) != scheme_of(name):
            raise BitstreamError(f"{source}: quantizer {name!r} ({bits} bits) does not match the stored policy")
        q = FakeQuantizer(scheme_of(name), bits, name=name)
        q.scale.data.fill_(float(scale))
        q.offset.data.fill_(float(offset))
        q.frozen = True
        model.install_quantizer(name, q)
        quantizers[name] = q
    missing = [n for n in policy if policy[n] != FULL_PRECISION_BITS and n not in quantizers]
    if missing:
        raise BitstreamError(f"{source}: no quantizer stored for {', '.join(missing)}")
    rows, features = level_rows(arch), arch["features"]
    levels = _field(header, "levels", source, list)
    if len(levels) != arch["levels"]:
        raise BitstreamError(f"{source}: {len(levels)} levels stored, the architecture has {arch['levels']}")
    table = torch.zeros_like(model.encoding.table)
    for level, entry in enumerate(levels):
        name = f"hash.level{level:02d}"
        if _field(entry, "name", source, str) != name or _field(entry, "rows", source, int) != rows[level]:
            raise BitstreamError(f"{source}: level entry {level} is not {name} with {rows[level]} rows")
        if policy[name] == FULL_PRECISION_BITS:
            raw = _section(sections, f"{name}.float32", 4 * rows[level] * features, source)
            table[level, :rows[level]] = torch.from_numpy(np.frombuffer(raw, "<f4").astype(np.float32).reshape(
                rows[level], features))
            continue
        meta = {k: _field(entry, k, source, list) for k in ("lo", "sizes", "counts")}
        meta["precision"] = _field(entry, "precision", source, int)
        meta["tables"] = _section(sections, f"{name}.tables", None, source)
        center = _field(entry, "center", source, list)
        if len(center) != features or meta["counts"] != [rows[level]] * features:
            raise BitstreamError(f"{source}: {name} must hold {features} channels of {rows[level]} codes")
        try:
            channels = unpack_channels(_section(sections, f"{name}.codes", None, source), meta)
        except ValueError as exc:
            raise BitstreamError(f"{source}: {name}: {exc}") from None
        codes = np.zeros((table.shape[1], features), np.int64)
        for f, c in enumerate(channels):
            codes[:rows[level], f] = c + int(center[f])
        q = quantizers[name]
        scale, offset = float(q.scale.detach()), float(q.offset.detach())  # to_integer's Python floats
        table[level] = torch.from_numpy(codes).to(torch.float32) * scale + offset
    model.encoding.table.data.copy_(table)
    mlp = _field(header, "mlp", source, list)
    layers = model_layout(arch).layers
    if mlp != [layer.name for layer in layers.values()]:
        raise BitstreamError(f"{source}: MLP layers {mlp} do not match the architecture")
    for layer in layers.values():
        raw = _section(sections, f"mlp.{layer.name}.weight", 4 * layer.in_size * layer.out_size, source)
        weight = np.frombuffer(raw, "<f4").astype(np.float32).reshape(layer.out_size, layer.in_size)
        getattr(model, layer.name.replace(".", "_")).weight.data.copy_(torch.from_numpy(weight))
    occ = _field(header, "occupancy", source, dict)
    res = _field(occ, "res", source, int)
    if res < 1:
        raise BitstreamError(f"{source}: occupancy res {res} must be >= 1")
    try:
        bbox = torch.tensor(_field(occ, "bbox", source, list), dtype=torch.float32).reshape(2, 3)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise BitstreamError(f"{source}: occupancy bbox is not 2 x 3 numbers: {exc}") from None
    grid_ = OccupancyGrid(bbox, threshold=float(_field(occ, "threshold", source)), res=res,
                          decay=float(_field(occ, "decay", source)))
    packed = np.frombuffer(_section(sections, "occupancy", (res ** 3 + 7) // 8, source), np.uint8)
    grid_.occupied = torch.from_numpy(np.unpackbits(packed)[:res ** 3].astype(bool))
    return model, grid_
