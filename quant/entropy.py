"""Learned entropy model, range coding of integer symbols, and the versioned bitstream container.

Three layers, each usable alone:

1. ``FactorizedPrior`` (torch): the univariate non-parametric density of Ballé et al., "Variational
   image compression with a scale hyperprior", ICLR 2018, Appendix 6.1 (the "factorized prior";
   CompressAI's ``EntropyBottleneck``), one density per channel. The cumulative is a chain of K = 4
   vector functions (filters (3, 3, 3): 1 -> 3 -> 3 -> 3 -> 1 per channel), as App. 6.1 defines them::

       f_k(x) = g_k(H_k x + b_k)              k < K, with H_k = softplus(H'_k)   (positive: monotone)
       g_k(x) = x + a_k * tanh(x)             a_k = tanh(a'_k)                    (a_k > -1: monotone)
       c(x)   = sigmoid(H_K f_{K-1}(...) + b_K)                                  (the cumulative)

   The mass of integer y is ``c(y + 1/2) - c(y - 1/2)`` (App. 6.1, the density convolved with a unit
   uniform: the likelihood of a quantized latent). Differences of sigmoids are taken on the
   side where both are small (``sigmoid(-u) - sigmoid(-l)`` when ``u + l > 0``), as CompressAI does,
   so the tails do not cancel to zero in float32.

2. Range coding with ``constriction`` (``constriction.stream.queue.RangeEncoder`` / ``RangeDecoder``,
   ``constriction.stream.model.Categorical(perfect=False)``) of integer symbols under integer
   frequency tables. The tables are what a file stores: decoding never evaluates the float model, so it
   is bit-exact on every machine. constriction receives ``table / table.sum()`` as float64, the same
   array on both sides, and quantizes it the same way (its 24-bit default precision).

3. A container for bitstream files (``to_bytes`` / ``from_bytes`` / ``write_bitstream`` /
   ``read_bitstream``), little-endian::

       offset  size  field
       0       4     magic b"NHWB"
       4       2     u16 format version (FORMAT_VERSION)
       6       8     u64 total file length in bytes, CRC included
       14      4     u32 JSON header length H
       18      H     JSON header (UTF-8): {"kind", "version", "sections": [[name, bytes], ...], "header"}
       18 + H  ...   the section payloads, in the order listed
       end - 4 4     u32 CRC32 (zlib.crc32) of every byte before it

   Any defect (short, long, wrong magic, version, checksum, malformed header, wrong kind) raises
   ``BitstreamError`` naming the file and what is wrong.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import constriction
import numpy as np
import torch
import zstandard
from torch import nn
from torch.nn import functional as F

from common.atomic import atomic_write

__all__ = [
    "FactorizedPrior",
    "fit_prior",
    "LIKELIHOOD_BOUND",
    "table_from_probabilities",
    "empirical_table",
    "encode_symbols",
    "decode_symbols",
    "encode_bits",
    "decode_bits",
    "serialize_tables",
    "deserialize_tables",
    "pack_channels",
    "unpack_channels",
    "BitstreamError",
    "MAGIC",
    "FORMAT_VERSION",
    "to_bytes",
    "from_bytes",
    "write_bitstream",
    "read_bitstream",
]

#: Lower clamp of a symbol's probability mass (CompressAI's ``likelihood_lower_bound``): <= 29.9 bits.
LIKELIHOOD_BOUND = 1e-9
#: Largest frequency-table precision (bits): constriction's Categorical works at 24 bits.
MAX_PRECISION = 24


# --------------------------------------------------------------------------------------------------
# 1. The learned density (torch)
# --------------------------------------------------------------------------------------------------

class FactorizedPrior(nn.Module):
    """Ballé et al. 2018 (App. 6.1) factorized density, one per channel (formulas: module doc).

    Args:
        channels: C >= 1 independent densities.
        filters: widths of the hidden vector functions (Ballé: (3, 3, 3)); ints >= 1.
        init_scale: initial width of each density, in symbol units (Ballé / CompressAI: 10). The
            matrices start at ``softplus^-1(1 / (s * width))`` with ``s = init_scale^(1/K)``, so the
            initial cumulative is a sigmoid of scale ~``init_scale``; biases start uniform in
            [-1/2, 1/2] (CompressAI's initialisation).

    Parameters (float32): ``matrices[k]`` (C, d_{k+1}, d_k), ``biases[k]`` (C, d_{k+1}, 1),
    ``factors[k]`` (C, d_{k+1}, 1) for k < K - 1, with d = (1, *filters, 1).

    Raises:
        ValueError: channels < 1, a filter < 1, or init_scale not a positive finite number.
    """

    def __init__(self, channels: int, *, filters: Sequence[int] = (3, 3, 3), init_scale: float = 10.0):
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels < 1:
            raise ValueError(f"channels must be an int >= 1, not {channels!r}")
        filters = tuple(filters)
        if any(isinstance(f, bool) or not isinstance(f, (int, np.integer)) or f < 1 for f in filters):
            raise ValueError(f"filters must be ints >= 1, not {filters!r}")
        if not (isinstance(init_scale, (int, float)) and math.isfinite(init_scale) and init_scale > 0):
            raise ValueError(f"init_scale must be a positive finite number, not {init_scale!r}")
        self.channels, self.filters, self.init_scale = int(channels), filters, float(init_scale)
        dims = (1, *filters, 1)
        scale = self.init_scale ** (1 / (len(filters) + 1))
        self.matrices, self.biases, self.factors = nn.ParameterList(), nn.ParameterList(), nn.ParameterList()
        for k in range(len(filters) + 1):
            init = math.log(math.expm1(1 / scale / dims[k + 1]))
            self.matrices.append(nn.Parameter(torch.full((self.channels, dims[k + 1], dims[k]), init)))
            self.biases.append(nn.Parameter(torch.empty(self.channels, dims[k + 1], 1).uniform_(-0.5, 0.5)))
            if k < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(self.channels, dims[k + 1], 1)))

    def cdf_logits(self, x):
        """Logits of the cumulative c(x) (module doc): x float (C, 1, N) -> (C, 1, N)."""
        logits = x
        for k, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            logits = torch.matmul(F.softplus(matrix), logits) + bias
            if k < len(self.factors):
                logits = logits + torch.tanh(self.factors[k]) * torch.tanh(logits)
        return logits

    def _flat(self, y, what: str = "y"):
        if not isinstance(y, torch.Tensor):
            y = torch.as_tensor(np.asarray(y))
        if y.dim() < 1 or y.shape[0] != self.channels:
            raise ValueError(f"{what} must have shape (C, ...) with C = {self.channels} channels, "
                             f"not {tuple(y.shape)}")
        p = next(self.parameters())
        return y.reshape(self.channels, 1, -1).to(device=p.device, dtype=p.dtype)

    def likelihood(self, y):
        """Probability mass of ``[y - 1/2, y + 1/2]`` under each channel's density (App. 6.1).

        Args:
            y: float tensor (C, ...) (channel first); flattened to (C, N).

        Returns:
            float32 (C, N): ``c(y + 1/2) - c(y - 1/2)``, clamped below at ``LIKELIHOOD_BOUND``;
            differentiable w.r.t. ``y`` and the parameters.

        Raises:
            ValueError: the first dimension is not C.
        """
        x = self._flat(y)
        lower, upper = self.cdf_logits(x - 0.5), self.cdf_logits(x + 0.5)
        # sigmoid(u) - sigmoid(l) == sigmoid(-l) - sigmoid(-u): take the side where both are small
        sign = torch.where(lower + upper > 0, -1.0, 1.0).to(x.dtype).detach()
        mass = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        return mass.clamp_min(LIKELIHOOD_BOUND).reshape(self.channels, -1)

    def bits(self, y, mask=None):
        """Information content ``sum -log2 P(y)`` in bits (0-d float32 tensor) of ``y`` (C, ...).

        ``mask`` (optional, y's shape): bool/0-1 entries select the counted values; a float mask in
        [0, 1] multiplies each value's bits (soft Gumbel masks during training).

        Raises:
            ValueError: y's first dimension is not C, or mask's shape differs from y's.
        """
        info = -torch.log2(self.likelihood(y))
        if mask is None:
            return info.sum()
        mask = torch.as_tensor(mask, device=info.device)
        ys = tuple(y.shape) if hasattr(y, "shape") else np.shape(y)
        if tuple(mask.shape) != tuple(ys):
            raise ValueError(f"mask must have y's shape {tuple(ys)}, not {tuple(mask.shape)}")
        return (info * mask.reshape(self.channels, -1).to(info.dtype)).sum()

    @staticmethod
    def noisy(y):
        """Training proxy of quantization (Ballé et al. 2018, additive uniform noise): ``y + U(-1/2, 1/2)``."""
        return y + torch.empty_like(y).uniform_(-0.5, 0.5)

    @staticmethod
    def quantize(y):
        """Rounding to the nearest integer (half to even), y's shape and dtype."""
        return torch.round(y)

    @torch.no_grad()
    def pmf_table(self, lo, hi, precision: int = 16) -> list[np.ndarray]:
        """Integer frequency tables of the integers ``lo[c] .. hi[c]`` (inclusive) per channel.

        Frequencies come from ``likelihood`` at the integers (``table_from_probabilities``): each
        >= 1, summing to exactly ``2**precision``.

        Args:
            lo, hi: int arrays (C,), lo <= hi.
            precision: table precision in bits, 1..24.

        Returns:
            C uint32 arrays of lengths ``hi - lo + 1``.

        Raises:
            ValueError: wrong shapes, lo > hi, or a channel with more than ``2**precision`` symbols.
        """
        lo, hi = _channel_bounds(lo, hi, self.channels)
        _check_precision(precision)
        sizes = hi - lo + 1
        if np.any(sizes > 1 << precision):
            c = int(np.argmax(sizes > 1 << precision))
            raise ValueError(f"channel {c}: {sizes[c]} symbols [{lo[c]}, {hi[c]}] do not fit a table of "
                             f"precision {precision} (at most 2**{precision} = {1 << precision})")
        width = int(sizes.max())
        grid = lo[:, None] + np.minimum(np.arange(width)[None, :], (sizes - 1)[:, None])
        p = self.likelihood(torch.from_numpy(grid.astype(np.float64))).double().cpu().numpy()
        return [table_from_probabilities(p[c, :sizes[c]], precision) for c in range(self.channels)]


def fit_prior(symbols_per_channel: Sequence[np.ndarray], *, steps: int = 300, lr: float = 0.05, seed: int = 0,
              filters: Sequence[int] = (3, 3, 3), init_scale: float = 10.0) -> FactorizedPrior:
    """Fit a ``FactorizedPrior`` to integer symbols by minimising their information content.

    The loss is ``bits(y)`` (the rate term of Ballé et al. 2018's rate-distortion loss) on the symbols, no
    noise: they are already integers. It is evaluated on each channel's distinct values weighted by
    their counts (``bits`` with a float mask), the same sum as over all symbols at a fraction of the
    cost. Adam (``lr``) for ``steps`` steps, on one intra-op thread (restored after). The
    initialisation draws from a private generator seeded with ``seed`` (torch's global RNG is left as
    it was), so fitting is deterministic.

    Args:
        symbols_per_channel: C int arrays (any lengths >= 1).
        steps, lr: Adam steps (>= 0) and learning rate (> 0).
        filters, init_scale: as ``FactorizedPrior``.

    Returns:
        The fitted prior (C channels), in eval mode, on the CPU.

    Raises:
        ValueError: no channels, an empty or non-integer channel, steps < 0 or lr <= 0.
    """
    rows = _channel_list(symbols_per_channel, len(symbols_per_channel))
    if not rows or any(r.size == 0 for r in rows):
        raise ValueError("fit_prior needs at least one channel, each with at least one symbol")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, not {steps!r}")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, not {lr!r}")
    uniq = [np.unique(r, return_counts=True) for r in rows]
    width = max(u.shape[0] for u, _ in uniq)
    values = np.zeros((len(rows), width), np.float32)
    counts = np.zeros((len(rows), width), np.float32)
    for c, (u, n) in enumerate(uniq):
        values[c, :u.shape[0]], values[c, u.shape[0]:] = u, u[0]
        counts[c, :u.shape[0]] = n
    y, w = torch.from_numpy(values), torch.from_numpy(counts)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        prior = FactorizedPrior(len(rows), filters=filters, init_scale=init_scale)
    optim = torch.optim.Adam(prior.parameters(), lr=lr)
    total = float(counts.sum())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tensors of C x (distinct values): intra-op threads only add overhead
    try:
        with torch.enable_grad():  # a caller's no_grad must not stop the fit
            for _ in range(int(steps)):
                optim.zero_grad(set_to_none=True)
                loss = prior.bits(y, w) / total
                loss.backward()
                optim.step()
    finally:
        torch.set_num_threads(threads)
    return prior.eval()


# --------------------------------------------------------------------------------------------------
# 2. Frequency tables and range coding
# --------------------------------------------------------------------------------------------------

def _check_precision(precision) -> int:
    if (isinstance(precision, bool) or not isinstance(precision, (int, np.integer))
            or not 1 <= precision <= MAX_PRECISION):
        raise ValueError(f"precision must be an int in [1, {MAX_PRECISION}] bits, not {precision!r}")
    return int(precision)


def _int_vector(x, name: str, n: int | None = None) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1 or (a.size and not np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-d array of ints, not {a.dtype} of shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} must have {n} entries (one per channel), not {a.shape[0]}")
    return a.astype(np.int64)


def _channel_bounds(lo, hi, channels: int) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = _int_vector(lo, "lo", channels), _int_vector(hi, "hi", channels)
    bad = np.nonzero(lo > hi)[0]
    if bad.size:
        c = int(bad[0])
        raise ValueError(f"channel {c}: lo {lo[c]} > hi {hi[c]}")
    return lo, hi


def table_from_probabilities(p, precision: int = 16) -> np.ndarray:
    """Integer frequencies of n symbols from probabilities (any non-negative weights) ``p``.

    Deterministic rounding: ``f = 1 + floor(p / sum(p) * (2**precision - n))`` (every symbol codable),
    then the remainder up to ``2**precision`` goes to the largest entry (the first, on ties).

    Args:
        p: float array (n,), finite, >= 0; all zeros means uniform.
        precision: bits, 1..24.

    Returns:
        uint32 (n,), each >= 1, summing to exactly ``2**precision``.

    Raises:
        ValueError: n = 0, n > 2**precision, a negative or non-finite entry, or a bad precision.
    """
    _check_precision(precision)
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"probabilities must be a non-empty 1-d array, not shape {p.shape}")
    total, n = 1 << precision, p.shape[0]
    if n > total:
        raise ValueError(f"{n} symbols do not fit a table of precision {precision} (at most {total})")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError("probabilities must be finite and >= 0")
    s = p.sum()
    q = p / s if s > 0 else np.full(n, 1.0 / n)
    f = 1 + np.floor(q * (total - n)).astype(np.int64)
    f = np.minimum(f, total - n + 1)  # floor of a float product can exceed by rounding; keep sum <= total
    f[int(np.argmax(f))] += total - int(f.sum())
    return f.astype(np.uint32)


def empirical_table(symbols, lo: int, hi: int, precision: int = 16) -> np.ndarray:
    """Frequency table of ``lo .. hi`` from the histogram of ``symbols`` (int array, any shape).

    Returns uint32 (hi - lo + 1,), as ``table_from_probabilities(counts, precision)``.

    Raises:
        ValueError: lo > hi, a symbol outside [lo, hi], or too many symbols for the precision.
    """
    s = np.asarray(symbols).reshape(-1)
    if s.size and not np.issubdtype(s.dtype, np.integer):
        raise ValueError(f"symbols must be integers, not {s.dtype}")
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise ValueError(f"lo {lo} > hi {hi}")
    if s.size and (s.min() < lo or s.max() > hi):
        raise ValueError(f"symbols span [{s.min()}, {s.max()}], outside [{lo}, {hi}]")
    return table_from_probabilities(np.bincount(s.astype(np.int64) - lo, minlength=hi - lo + 1), precision)


def _check_table(t, c: int) -> np.ndarray:
    t = np.asarray(t)
    if t.ndim != 1 or t.size == 0 or not np.issubdtype(t.dtype, np.integer) or np.any(t < 1):
        raise ValueError(f"table of channel {c} must be a non-empty 1-d int array with entries >= 1")
    return t.astype(np.float64)


def _channel_list(symbols, channels: int) -> list[np.ndarray]:
    if isinstance(symbols, np.ndarray):
        if symbols.ndim != 2:
            raise ValueError(f"symbols must be (C, N) or a list of C arrays, not shape {symbols.shape}")
        rows = list(symbols)
    else:
        rows = [np.asarray(s).reshape(-1) for s in symbols]
    if len(rows) != channels:
        raise ValueError(f"symbols have {len(rows)} channels, the tables {channels}")
    for c, r in enumerate(rows):
        if r.size and not np.issubdtype(r.dtype, np.integer):
            raise ValueError(f"symbols of channel {c} must be integers, not {r.dtype}")
    return [r.astype(np.int64) for r in rows]


def encode_symbols(symbols, lo, tables: Sequence[np.ndarray]) -> bytes:
    """Range-code integer symbols, channel after channel, under fixed frequency tables.

    Channel c's symbol s is coded as index ``s - lo[c]`` of ``tables[c]``, whose probabilities
    ``tables[c] / tables[c].sum()`` (float64) go to ``constriction.stream.model.Categorical(perfect=False)``.

    Args:
        symbols: int (C, N) array, or a list of C int arrays (any lengths).
        lo: int (C,), the symbol of each table's index 0.
        tables: C int arrays (entries >= 1), e.g. from ``FactorizedPrior.pmf_table``.

    Returns:
        The compressed stream, a whole number of little-endian u32 words. A channel whose table has one
        entry costs nothing (its symbols are all ``lo[c]``).

    Raises:
        ValueError: shapes disagree, a table is invalid, or a symbol lies outside its channel's
            [lo, lo + len(table) - 1] (the error names channel, symbol and range).
    """
    rows = _channel_list(symbols, len(tables))
    lo = _int_vector(lo, "lo", len(tables))
    enc = constriction.stream.queue.RangeEncoder()
    for c, (row, table) in enumerate(zip(rows, tables)):
        probs = _check_table(table, c)
        if not row.size:
            continue
        hi = lo[c] + probs.shape[0] - 1
        bad = np.nonzero((row < lo[c]) | (row > hi))[0]
        if bad.size:
            raise ValueError(f"channel {c}: symbol {row[bad[0]]} at position {bad[0]} is outside the table's "
                             f"range [{lo[c]}, {hi}]")
        if probs.shape[0] == 1:  # one possible symbol: it carries no information (constriction needs two)
            continue
        model = constriction.stream.model.Categorical(probs / probs.sum(), perfect=False)
        enc.encode((row - lo[c]).astype(np.int32), model)
    return enc.get_compressed().astype("<u4").tobytes()


def decode_symbols(data: bytes, lo, tables: Sequence[np.ndarray], counts: Sequence[int]) -> list[np.ndarray]:
    """Inverse of ``encode_symbols``: ``counts[c]`` symbols of channel c, as C int64 arrays.

    Raises:
        ValueError: the data is not a whole number of u32 words, shapes disagree, a table is invalid,
            or the stream cannot be decoded.
    """
    lo = _int_vector(lo, "lo", len(tables))
    counts = _int_vector(counts, "counts", len(tables))
    if np.any(counts < 0):
        raise ValueError(f"counts must be >= 0, not {counts.tolist()}")
    if len(data) % 4:
        raise ValueError(f"a range-coded stream is a whole number of 4-byte words, not {len(data)} bytes")
    words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
    dec = constriction.stream.queue.RangeDecoder(words)
    out = []
    for c, (table, n) in enumerate(zip(tables, counts)):
        probs = _check_table(table, c)
        if n == 0:
            out.append(np.zeros(0, np.int64))
            continue
        if probs.shape[0] == 1:
            out.append(np.full(int(n), lo[c], np.int64))
            continue
        model = constriction.stream.model.Categorical(probs / probs.sum(), perfect=False)
        try:
            idx = dec.decode(model, int(n))
        except Exception as exc:  # constriction raises its own errors on invalid streams
            raise ValueError(f"channel {c}: range-coded stream cannot be decoded ({exc})") from exc
        out.append(np.asarray(idx, dtype=np.int64) + lo[c])
    return out


#: Header of ``encode_bits``: u32 frequency of a 1 at BIT_PRECISION bits.
BIT_PRECISION = 16


def encode_bits(bits) -> bytes:
    """Code a binary mask with one fixed Bernoulli probability (the mask's own share of ones).

    Stream: u32 frequency f1 of a one at 16 bits (``f1 / 2**16``, clamped to [1, 2**16 - 1]), then the
    range-coded bits (``encode_symbols`` with table ``[2**16 - f1, f1]``). Cost: about
    ``n H(p)`` bits plus 4 bytes.

    Args:
        bits: bool (or 0/1 int) array, any shape; flattened.

    Raises:
        ValueError: entries other than 0/1.
    """
    b = np.asarray(bits).reshape(-1)
    if b.dtype != np.bool_:
        if b.size and (not np.issubdtype(b.dtype, np.integer) or np.any((b != 0) & (b != 1))):
            raise ValueError("bits must be bool or 0/1 integers")
        b = b.astype(bool)
    total = 1 << BIT_PRECISION
    ones = int(b.sum())
    f1 = min(max(round(ones / b.size * total) if b.size else 1, 1), total - 1)
    table = np.array([total - f1, f1], np.uint32)
    return struct.pack("<I", f1) + encode_symbols([b.astype(np.int64)], [0], [table])


def decode_bits(data: bytes, n: int) -> np.ndarray:
    """Inverse of ``encode_bits``: bool (n,).

    Raises:
        ValueError: n < 0, a stream shorter than its 4-byte header, or a frequency outside [1, 2**16 - 1].
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an int >= 0, not {n!r}")
    if len(data) < 4:
        raise ValueError(f"bit stream of {len(data)} bytes is shorter than its 4-byte header")
    (f1,) = struct.unpack_from("<I", data)
    total = 1 << BIT_PRECISION
    if not 1 <= f1 < total:
        raise ValueError(f"bit stream: frequency of a one is {f1}, not in [1, {total - 1}]")
    table = np.array([total - f1, f1], np.uint32)
    return decode_symbols(bytes(data[4:]), [0], [table], [int(n)])[0].astype(bool)


def serialize_tables(tables: Sequence[np.ndarray], precision: int) -> bytes:
    """Frequency tables -> compact bytes (zstandard level 19).

    For precision <= 16 each entry is stored as ``f - 1`` in 16 bits and each table as the
    differences of consecutive entries mod 2**16 (smooth tables give small differences); wider
    precisions store u32 entries. Table lengths are not stored (``deserialize_tables`` takes them).
    """
    _check_precision(precision)
    if not tables:
        return zstandard.ZstdCompressor(level=19).compress(b"")
    if precision <= 16:
        parts = [np.diff((np.asarray(t, np.int64) - 1), prepend=0).astype(np.uint16) for t in tables]
        raw = np.concatenate(parts).astype("<u2").tobytes()
    else:
        raw = np.concatenate([np.asarray(t, np.uint32) for t in tables]).astype("<u4").tobytes()
    return zstandard.ZstdCompressor(level=19).compress(raw)


def deserialize_tables(data: bytes, sizes: Sequence[int], precision: int) -> list[np.ndarray]:
    """Inverse of ``serialize_tables``: uint32 tables of the given lengths.

    Raises:
        ValueError: undecompressable data, a length mismatch, or a table that is not >= 1 everywhere
            with sum ``2**precision``.
    """
    _check_precision(precision)
    sizes = _int_vector(sizes, "sizes")
    if np.any(sizes < 1):
        raise ValueError(f"table sizes must be >= 1, not {sizes.tolist()}")
    width = 2 if precision <= 16 else 4
    want = int(sizes.sum()) * width
    try:
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=want + 1)
    except zstandard.ZstdError as exc:
        raise ValueError(f"frequency tables cannot be decompressed: {exc}") from exc
    if len(raw) != want:
        raise ValueError(f"frequency tables hold {len(raw)} bytes, their sizes need {want}")
    flat = np.frombuffer(raw, dtype="<u2" if width == 2 else "<u4")
    tables, start = [], 0
    for c, n in enumerate(sizes):
        part = flat[start:start + n]
        start += n
        if width == 2:
            t = (np.cumsum(part.astype(np.int64)) % (1 << 16)) + 1
        else:
            t = part.astype(np.int64)
        if np.any(t < 1) or int(t.sum()) != 1 << precision:
            raise ValueError(f"frequency table {c} does not sum to 2**{precision} with entries >= 1")
        tables.append(t.astype(np.uint32))
    return tables


def pack_channels(symbols_per_channel: Sequence[np.ndarray], prior=None, *, precision: int = 16
                  ) -> tuple[bytes, dict]:
    """Entropy-code C channels of integer symbols with their frequency tables.

    Each channel's range [lo, hi] is its data's min..max; its table comes from ``prior``
    (a ``FactorizedPrior`` with C channels: ``pmf_table``) or, with ``prior=None``, from the channel's
    own histogram (``empirical_table``).

    Returns:
        ``(data, meta)``: the range-coded stream, and ``meta`` = {"lo": [C ints], "sizes": [C table
        lengths], "counts": [C symbol counts], "precision": int, "tables": bytes (``serialize_tables``)}.
        The tables are part of what a file must store (the entropy model's parameters): count
        ``len(meta["tables"])`` in its size.

    Raises:
        ValueError: non-integer symbols, a prior with another channel count, a range wider than
            ``2**precision`` symbols.
    """
    rows = _channel_list(symbols_per_channel, len(symbols_per_channel))
    lo = np.array([r.min() if r.size else 0 for r in rows], np.int64)
    hi = np.array([r.max() if r.size else 0 for r in rows], np.int64)
    if prior is None:
        tables = [empirical_table(r, lo[c], hi[c], precision) for c, r in enumerate(rows)]
    else:
        if prior.channels != len(rows):
            raise ValueError(f"the prior has {prior.channels} channels, the symbols {len(rows)}")
        tables = prior.pmf_table(lo, hi, precision)
    data = encode_symbols(rows, lo, tables)
    meta = {"lo": lo.tolist(), "sizes": [len(t) for t in tables], "counts": [int(r.size) for r in rows],
            "precision": int(precision), "tables": serialize_tables(tables, precision)}
    return data, meta


def unpack_channels(data: bytes, meta: Mapping) -> list[np.ndarray]:
    """Inverse of ``pack_channels``: the C int64 symbol arrays, exactly.

    Raises:
        ValueError: meta lacks a field or holds invalid tables, or the stream cannot be decoded.
    """
    missing = [k for k in ("lo", "sizes", "counts", "precision", "tables") if k not in meta]
    if missing:
        raise ValueError(f"channel meta lacks {', '.join(missing)}")
    tables = deserialize_tables(meta["tables"], meta["sizes"], meta["precision"])
    return decode_symbols(data, meta["lo"], tables, meta["counts"])


# --------------------------------------------------------------------------------------------------
# 3. The container
# --------------------------------------------------------------------------------------------------

MAGIC = b"NHWB"
FORMAT_VERSION = 1
_FIXED = struct.Struct("<4sHQI")  # magic, version, total length, header length
_CRC = struct.Struct("<I")


class BitstreamError(ValueError):
    """A bitstream file or buffer that cannot be read: the message names the source and the defect."""


def to_bytes(kind: str, header: Mapping, sections: Mapping[str, bytes]) -> bytes:
    """Serialize one bitstream (module doc, layout 3).

    Args:
        kind: what the file holds (e.g. "ngp-tables"); a non-empty str.
        header: JSON-able mapping (the user header).
        sections: name -> bytes, in file order; names are non-empty str.

    Raises:
        ValueError: empty kind or section name, a non-bytes section, or a header JSON cannot encode.
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"kind must be a non-empty str, not {kind!r}")
    names = []
    for name, payload in sections.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"section names must be non-empty str, not {name!r}")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise ValueError(f"section {name!r} must be bytes, not {type(payload).__name__}")
        names.append([name, len(payload)])
    try:
        meta = json.dumps({"kind": kind, "version": FORMAT_VERSION, "sections": names, "header": dict(header)},
                          allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bitstream header is not JSON-able: {exc}") from exc
    total = _FIXED.size + len(meta) + sum(n for _, n in names) + _CRC.size
    body = b"".join([_FIXED.pack(MAGIC, FORMAT_VERSION, total, len(meta)), meta,
                     *(bytes(sections[name]) for name, _ in names)])
    return body + _CRC.pack(zlib.crc32(body))


def from_bytes(data: bytes, kind: str | None = None, *, source: str = "<bytes>") -> tuple[dict, dict[str, bytes]]:
    """Parse and check one bitstream; returns ``(user header, {section name: bytes})``.

    Args:
        data: the whole file.
        kind: the expected kind; None accepts any.
        source: the file name for messages.

    Raises:
        BitstreamError: too short or too long ("truncated: 1234 bytes, header says 2345"), wrong magic,
            unsupported version, checksum mismatch, malformed JSON header, section lengths that do not
            add up, or another kind ("kind 'a' expected, file holds 'b'").
    """
    header, sections, _ = _parse(data, kind, source)
    return header, sections


def _parse(data, kind, source) -> tuple[dict, dict[str, bytes], str]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"{source}: a bitstream must be bytes, not {type(data).__name__}")
    data = bytes(data)
    n = len(data)
    if n < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise BitstreamError(f"{source}: not a nerfhw bitstream (magic {data[:len(MAGIC)]!r}, expected {MAGIC!r})")
    if n < _FIXED.size + _CRC.size:
        raise BitstreamError(f"{source}: truncated: {n} bytes, shorter than the {_FIXED.size + _CRC.size}-byte "
                             "fixed header and checksum")
    _, version, total, hlen = _FIXED.unpack_from(data)
    if version != FORMAT_VERSION:
        raise BitstreamError(f"{source}: version {version} not supported (this reader reads {FORMAT_VERSION})")
    if n < total:
        raise BitstreamError(f"{source}: truncated: {n} bytes, header says {total}")
    if n > total:
        raise BitstreamError(f"{source}: {n - total} trailing bytes: {n} bytes, header says {total}")
    (crc,) = _CRC.unpack_from(data, n - _CRC.size)
    if zlib.crc32(data[:n - _CRC.size]) != crc:
        raise BitstreamError(f"{source}: checksum mismatch (CRC32 stored {crc:#010x}, computed "
                             f"{zlib.crc32(data[:n - _CRC.size]):#010x}): the file is corrupted")
    start = _FIXED.size + hlen
    if start > n - _CRC.size:
        raise BitstreamError(f"{source}: header length {hlen} runs past the end of the {n}-byte file")
    try:
        meta = json.loads(data[_FIXED.size:start].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BitstreamError(f"{source}: malformed JSON header ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or set(meta) != {"kind", "version", "sections", "header"}:
        raise BitstreamError(f"{source}: malformed header: expected the fields kind, version, sections, header")
    got, user, listed = meta["kind"], meta["header"], meta["sections"]
    if not isinstance(got, str) or not isinstance(user, dict) or meta["version"] != version:
        raise BitstreamError(f"{source}: malformed header: kind must be a str, header an object, version {version}")
    if kind is not None and got != kind:
        raise BitstreamError(f"{source}: kind {kind!r} expected, file holds {got!r}")
    if not isinstance(listed, list) or not all(
            isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and e[0]
            and isinstance(e[1], int) and not isinstance(e[1], bool) and e[1] >= 0 for e in listed):
        raise BitstreamError(f"{source}: malformed header: sections must be a list of [name, bytes >= 0]")
    names = [e[0] for e in listed]
    if len(set(names)) != len(names):
        raise BitstreamError(f"{source}: malformed header: duplicate section names")
    payload = n - _CRC.size - start
    if sum(e[1] for e in listed) != payload:
        raise BitstreamError(f"{source}: sections list {sum(e[1] for e in listed)} bytes, the file holds {payload}")
    sections, pos = {}, start
    for name, size in listed:
        sections[name] = data[pos:pos + size]
        pos += size
    return user, sections, got


def write_bitstream(path: str | os.PathLike, kind: str, header: Mapping, sections: Mapping[str, bytes]) -> int:
    """Write ``to_bytes(kind, header, sections)`` to ``path`` atomically; returns the file size in bytes."""
    blob = to_bytes(kind, header, sections)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(blob))
    return len(blob)


def read_bitstream(path: str | os.PathLike, kind: str | None = None) -> tuple[dict, dict[str, bytes]]:
    """Read and check a bitstream file (``from_bytes``); BitstreamError names ``path``.

    Raises:
        BitstreamError: as ``from_bytes``, or the file cannot be read.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BitstreamError(f"{path}: cannot read bitstream ({exc.strerror or exc})") from exc
    return from_bytes(data, kind, source=str(path))
