"""Cycle-for-cycle transaction-level model of ``hw.hash_encoder.HashEncoder``.

Imports the engine's params (``hw.hash_encoder.params``) and ``nerf.grid`` only (no Amaranth). Given the parameters, the table contents,
the input points with the cycle each is first offered, and the output-ready pattern, ``run`` returns
every output payload bit-exactly and the cycle of every input and output transfer.

Cycle numbering: cycle 0 is the first clock cycle after reset is released; a transfer "at cycle t"
means valid and ready were both high while cycle t's closing rising edge sampled them.

Arithmetic (bit-exact with the RTL), per point and level l with resolution N_l:

* scaled position ``p_d = X_d * N_l`` (exact integer, C fractional bits); cell ``p_d >> C``,
  fraction ``f_d = p_d mod 2**C``;
* corner indices from ``nerf.grid.corner_indices`` (dense or spatial hash mod T);
* exact trilinear interpolation by three lerps, ``a = e0 * 2**C + (e1 - e0) * f``, along x, then y,
  then z, which gives ``S = sum_c w_c e_c`` with integer weights ``w_c = prod_d (f_d or 2**C - f_d)``;
* output ``floor(S / 2**(2C))``: signed, ``feature_bits + C`` bits, C fractional bits, in the units of
  the table entries. It is the exact trilinear value rounded down to a step of ``2**-C``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from hw.hash_encoder.params import HashEncoderParams
from nerf import grid
from sim.tlm.transfers import ReadyPattern, check_offers

__all__ = ["HashEncoderTLM", "EncoderTiming", "TLMResult", "to_fixed", "pack_point", "pack_features", "unpack_features"]


def to_fixed(points, coord_bits: int) -> np.ndarray:
    """Quantize float points in [0, 1)^3 to the engine's input format ``floor(x * 2**C)``.

    Args:
        points: float array, shape (N, 3).
        coord_bits: C.

    Returns:
        int64 array, shape (N, 3), each in [0, 2**C).

    Raises:
        ValueError: a coordinate outside [0, 1) (or not finite), naming the point, axis and value.
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), not {pts.shape}")
    bad = ~((pts >= 0.0) & (pts < 1.0))
    if bad.any():
        i, d = map(int, np.argwhere(bad)[0])
        raise ValueError(f"point {i}: coordinate {'xyz'[d]} = {float(pts[i, d])!r} is outside [0, 1)")
    return np.minimum(np.floor(pts * (1 << coord_bits)).astype(np.int64), (1 << coord_bits) - 1)


def pack_point(code, coord_bits: int) -> int:
    """Input payload of one point: fixed-point codes ``(X, Y, Z)``, x in the low ``coord_bits``."""
    x, y, z = (int(v) for v in code)
    return x | (y << coord_bits) | (z << 2 * coord_bits)


def pack_features(values, bits: int) -> int:
    """Pack a flat sequence of signed ints into one payload int, field i at bits [i*bits, (i+1)*bits)."""
    mask = (1 << bits) - 1
    out = 0
    for i, v in enumerate(values):
        out |= (int(v) & mask) << (i * bits)
    return out


def unpack_features(payload: int, count: int, bits: int) -> list[int]:
    """Inverse of ``pack_features``: ``count`` signed two's complement fields of ``bits`` bits."""
    mask = (1 << bits) - 1
    half = 1 << (bits - 1)
    out = []
    for i in range(count):
        v = (payload >> (i * bits)) & mask
        out.append(v - (1 << bits) if v >= half else v)
    return out


@dataclass(frozen=True)
class TLMResult:
    """What the model predicts for one run of N points.

    Attributes:
        accept_cycles: int64 (N,), cycle of each input transfer.
        out_cycles: int64 (N,), cycle of each output transfer (outputs leave in input order).
        features: int array (N, L, F), output features (signed, ``out_bits`` wide, C fractional bits).
        payloads: N packed output payloads (``pack_features`` of ``features[i].ravel()``).
        cycles: total cycles, last output transfer cycle + 1 (0 for no points).
    """

    accept_cycles: np.ndarray
    out_cycles: np.ndarray
    features: np.ndarray
    payloads: list[int]
    cycles: int


class EncoderTiming:
    """The engine's control state, stepped one cycle at a time: what ``HashEncoderTLM.schedule`` runs, and
    what ``sim.tlm.top`` composes with the other units of the accelerator top.

    State mirrored from ``hw.hash_encoder``: the issue register (a point for G cycles, one level group
    each), the points in the ``PIPELINE_STAGES`` registers (as the cycle each becomes visible in the
    output FIFO), the FIFO's visible entries and the credits in use. In a cycle, ``in_ready`` and
    ``out_valid`` depend on the state alone (the RTL has no combinational path from ``o.ready`` to
    ``i.ready``); ``clock(in_fire, out_fire)`` is the edge that closes the cycle. Points are counted, not
    named: outputs leave in input order.
    """

    def __init__(self, params: HashEncoderParams) -> None:
        self.g_last, self.depth, self.stages = params.groups - 1, params.fifo_depth, params.PIPELINE_STAGES
        self.t = 0  # the current cycle
        self.s0_valid, self.s0_group = False, 0
        self.credits = 0
        self.visible = 0  # FIFO entries on the output in the current cycle
        self.arrivals: deque[int] = deque()  # cycles from which the points in the pipeline are visible

    @property
    def in_ready(self) -> bool:
        """``i.ready``: the issue register free or on its last group, and a credit free."""
        return (not self.s0_valid or self.s0_group == self.g_last) and self.credits < self.depth

    @property
    def out_valid(self) -> bool:
        """``o.valid``: the output FIFO holds a point."""
        return self.visible > 0

    def clock(self, in_fire: bool, out_fire: bool) -> None:
        """The edge closing the current cycle: an input transfer (``in_fire``, only while ``in_ready``) and
        an output transfer (``out_fire``, only while ``out_valid``)."""
        if self.s0_valid and self.s0_group == self.g_last:
            self.arrivals.append(self.t + self.stages + 1)
        if in_fire:
            self.s0_valid, self.s0_group = True, 0
        elif self.s0_valid and self.s0_group < self.g_last:
            self.s0_group += 1
        else:
            self.s0_valid = False
        self.visible -= int(out_fire)
        self.credits += int(in_fire) - int(out_fire)
        self.t += 1
        while self.arrivals and self.arrivals[0] == self.t:
            self.arrivals.popleft()
            self.visible += 1


class HashEncoderTLM:
    """Model of one ``HashEncoder`` instance.

    Args:
        params: the engine parameters.
        tables: int array, shape (L, T, F): table contents, signed, each in
            [-2**(feature_bits-1), 2**(feature_bits-1)).

    Raises:
        ValueError: wrong table shape or an entry out of range, naming the level, index and value.
    """

    def __init__(self, params: HashEncoderParams, tables) -> None:
        self.params = params
        p = params
        t = np.asarray(tables)
        want = (p.levels, p.table_size, p.features)
        if t.shape != want:
            raise ValueError(f"tables must have shape (levels, table_size, features) = {want}, not {t.shape}")
        if not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"tables must hold integers, not {t.dtype}")
        lo, hi = -(1 << (p.feature_bits - 1)), (1 << (p.feature_bits - 1)) - 1
        bad = (t < lo) | (t > hi)
        if bad.any():
            l, i, f = map(int, np.argwhere(bad)[0])
            raise ValueError(
                f"tables[{l}, {i}, {f}] = {int(t[l, i, f])} is outside the signed {p.feature_bits}-bit range [{lo}, {hi}]"
            )
        self.tables = t.astype(np.int64)
        # Exact sums need fb + 3C + 2 bits; beyond int64 fall back to Python ints.
        self._dtype = np.int64 if p.feature_bits + 3 * p.coord_bits + 2 <= 63 else object

    # --- data path --------------------------------------------------------------------------
    def _check_coords(self, coords) -> np.ndarray:
        c = np.asarray(coords)
        if c.ndim != 2 or c.shape[1] != 3 or not np.issubdtype(c.dtype, np.integer):
            raise ValueError(f"coords must be an integer array of shape (N, 3), not {c.dtype} {c.shape}")
        full = 1 << self.params.coord_bits
        bad = (c < 0) | (c >= full)
        if bad.any():
            i, d = map(int, np.argwhere(bad)[0])
            raise ValueError(
                f"point {i}: coordinate {'xyz'[d]} = {int(c[i, d])} / 2**{self.params.coord_bits} is outside [0, 1) "
                f"(fixed-point code must be in [0, {full}))"
            )
        return c.astype(np.int64)

    def _cells(self, coords: np.ndarray, level: int) -> tuple[np.ndarray, np.ndarray]:
        scaled = coords * self.params.resolutions[level]
        c = self.params.coord_bits
        return scaled >> c, scaled & ((1 << c) - 1)

    def indices(self, coords) -> np.ndarray:
        """Corner table indices, int64 array of shape (N, L, 8), corner order of ``nerf.grid``."""
        coords = self._check_coords(coords)
        p = self.params
        out = np.empty((len(coords), p.levels, 8), dtype=np.int64)
        for level, res in enumerate(p.resolutions):
            cell, _ = self._cells(coords, level)
            out[:, level] = grid.corner_indices(cell, res, p.log2_table_size)
        return out

    def encode(self, coords) -> np.ndarray:
        """Output features, shape (N, L, F): ``floor(trilinear * 2**C)`` (see module docstring)."""
        coords = self._check_coords(coords)
        p = self.params
        c = p.coord_bits
        one = 1 << c
        idx = self.indices(coords)
        out = np.empty((len(coords), p.levels, p.features), dtype=self._dtype)
        for level in range(p.levels):
            _, frac = self._cells(coords, level)
            frac = frac.astype(self._dtype)[:, :, None]  # (N, 3, 1)
            e = self.tables[level][idx[:, level]].astype(self._dtype)  # (N, 8, F)
            for axis in range(3):  # corner bit 0 = x first, so pairs are (2i, 2i+1)
                lo, hi = e[:, 0::2], e[:, 1::2]
                e = lo * one + (hi - lo) * frac[:, axis][:, None]
            out[:, level] = e[:, 0] >> (2 * c)
        return out

    # --- timing -----------------------------------------------------------------------------
    def schedule(self, offer_cycles, ready=None) -> tuple[np.ndarray, np.ndarray]:
        """Transfer cycles for N points.

        Args:
            offer_cycles: int (N,), the first cycle at which point i may be offered; the source offers
                in order, point i from ``max(offer_cycles[i], accept[i-1] + 1)`` until accepted.
            ready: bool (R,), output ready during each cycle; cycles >= R are ready. None: always ready.

        Returns:
            ``(accept_cycles, out_cycles)``, int64 arrays of shape (N,).

        Micro-architecture modelled (hw.hash_encoder): an issue register holding one point for G
        cycles (one level group per cycle), ``PIPELINE_STAGES`` registers, an output FIFO of
        ``fifo_depth`` entries and as many credits. Input ready = (issue register free or on its last
        group) and (credits in use < depth); credits return when an output transfers. The state is
        ``EncoderTiming``'s, stepped once per cycle.
        """
        offers = check_offers(offer_cycles)
        ready_at = ReadyPattern(ready)
        n = len(offers)
        accept = np.full(n, -1, dtype=np.int64)
        out = np.full(n, -1, dtype=np.int64)
        state = EncoderTiming(self.params)
        nxt = done = 0
        t = 0
        while done < n:
            in_fire = nxt < n and offers[nxt] <= t and state.in_ready
            o_fire = state.out_valid and ready_at(t)
            state.clock(in_fire, o_fire)
            if in_fire:
                accept[nxt] = t
                nxt += 1
            if o_fire:
                out[done] = t
                done += 1
            t += 1
        return accept, out

    def run(self, coords, offer_cycles=None, ready=None) -> TLMResult:
        """Predict a whole run: payloads (``encode``) and transfer cycles (``schedule``).

        ``offer_cycles`` defaults to all zeros (a source that is always valid).
        """
        coords = self._check_coords(coords)
        n = len(coords)
        offer_cycles = check_offers(offer_cycles, n, "points")
        feats = self.encode(coords)
        accept, out = self.schedule(offer_cycles, ready)
        bits = self.params.out_bits
        payloads = [pack_features(f.ravel(), bits) for f in feats]
        cycles = int(out.max()) + 1 if n else 0
        return TLMResult(accept, out, feats, payloads, cycles)
