"""The baseline ECTensoRF is measured against: TensoRF planes quantized uniformly, codes through zstd.

Each feature plane is quantized per tensor with the asymmetric min-max rule of ``quant.quantizers``
(step ``(max - min) / (2^B - 1)``, codes ``round((x - min) / step)``), one code per byte, and the codes
of all planes go through zstandard at level 19; the lines, basis matrix and MLP are stored as float16
through zstd as well (as ECTensoRF stores them), so the two differ only in how the planes are coded.
The file is a ``quant.entropy`` container of kind ``tensorf-uniform-zstd``; ``decode_tensorf_uniform``
rebuilds the field from it alone.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import zstandard

from quant.ectensorf import model_from_header, pack_fp16, pack_occupancy, round_rest_fp16
from quant.entropy import read_bitstream, write_bitstream

__all__ = ["encode_tensorf_uniform", "decode_tensorf_uniform", "KIND", "ZSTD_LEVEL"]

KIND = "tensorf-uniform-zstd"
ZSTD_LEVEL = 19


def _dequantize(codes: np.ndarray, lo: float, step: float) -> torch.Tensor:
    return torch.from_numpy(codes.astype(np.float32)) * torch.tensor(step, dtype=torch.float32) + \
        torch.tensor(lo, dtype=torch.float32)


@torch.no_grad()
def encode_tensorf_uniform(model, occupancy, bits: int, path) -> dict:
    """Quantize ``model``'s planes to ``bits`` (2..8), write the file, install the dequantized planes in
    ``model.plane_override`` (then exactly what ``decode_tensorf_uniform`` rebuilds).

    Returns ``{"bytes", "sections", "bits_per_feature_parameter"}`` (the last: 8 * zstd plane bytes / elements).

    Raises:
        ValueError: bits outside 2..8.
    """
    from nerf.tensorf import feature_planes

    if not (isinstance(bits, int) and 2 <= bits <= 8):
        raise ValueError(f"bits must be an integer in 2..8 (one code per byte), not {bits!r}")
    shapes = feature_planes(model.arch)
    round_rest_fp16(model)
    codes, ranges, planes = [], {}, {}
    for name in shapes:
        x = model.plane(name).detach()
        lo, hi = float(x.min()), float(x.max())
        step = float(np.float32((hi - lo) / (2 ** bits - 1) if hi > lo else 1.0))
        c = torch.round((x - torch.tensor(lo, dtype=torch.float32)) / step).clamp(0, 2 ** bits - 1)
        c = c.to(torch.uint8).numpy()
        codes.append(c.reshape(-1))
        ranges[name] = [lo, step]
        planes[name] = _dequantize(c, lo, step)
    rest_bytes, rest_index = pack_fp16({n: p for n, p in model.named_parameters() if "_planes." not in n})
    sections = {"planes": zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(np.concatenate(codes).tobytes()),
                "rest": rest_bytes, "occupancy": pack_occupancy(occupancy)}
    header = {"arch": model.arch, "bits": bits, "ranges": ranges, "planes": {n: list(s) for n, s in shapes.items()},
              "rest": rest_index, "occupancy": {"res": occupancy.res, "threshold": occupancy.threshold}}
    size = write_bitstream(path, KIND, header, sections)
    model.plane_override = {n: planes[n] for n in shapes}
    params = sum(math.prod(s) for s in shapes.values())
    return {"bytes": size, "sections": {k: len(v) for k, v in sections.items()},
            "bits_per_feature_parameter": 8 * len(sections["planes"]) / params, "feature_parameters": params}


@torch.no_grad()
def decode_tensorf_uniform(path):
    """``(model, occupancy)`` from a ``tensorf-uniform-zstd`` file alone.

    Raises:
        quant.entropy.BitstreamError: not such a file, truncated, corrupted or another kind.
    """
    header, sections = read_bitstream(path, KIND)
    model, occ = model_from_header(header, sections)
    raw = np.frombuffer(zstandard.ZstdDecompressor().decompress(sections["planes"]), np.uint8)
    at, planes = 0, {}
    for name, shape in header["planes"].items():
        n = math.prod(shape)
        lo, step = header["ranges"][name]
        planes[name] = _dequantize(raw[at:at + n].reshape(1, *shape), lo, step)
        at += n
    model.plane_override = planes
    return model, occ
