"""Parameters and table layout of the hash encoder with external tables (``hw.hash_encoder_axi``).

Imports nothing heavy (no Amaranth): the TLM, the DRAM image export and the frame model use the one
table-layout definition here (``TableLayout``) without an HDL toolchain.

Table layout in external memory (byte addresses from 0; ``TableLayout``):

* level l stores ``E_l`` entries: ``(N_l + 1)^3`` for a dense level, T for a hashed one;
* each entry is F fields of ``b_l`` bits (``level_bits[l]``, two's complement), packed back to back,
  feature 0 in the low bits: ``F b_l`` bits per entry;
* a line of ``line_bytes`` holds ``epl_l = floor(8 line_bytes / (F b_l))`` entries, entry ``slot`` at
  bits ``[slot F b_l, (slot + 1) F b_l)`` of the line read as a little-endian integer; unused high bits
  are zero;
* level l holds ``lines_l = ceil(E_l / epl_l)`` lines from ``base_l`` (levels in order, each starting
  on a line boundary): entry i is in line ``i // epl_l`` at ``base_l + (i // epl_l) line_bytes``, slot
  ``i mod epl_l``.

On-chip storage per lane (lane j serves levels j, j + lanes, ...), one partition per level, so a level's
hits and misses depend only on its own access stream and bits:

* *resident* levels: the coarse levels, from level 0 on while their packed tables fit the on-chip
  budget ``resident_bytes`` together; a partition of ``ceil(lines_l / ways)`` sets, line n in set
  ``n >> log2(ways)`` with tag ``n mod ways``, so each line is read once (on first use) and never evicted;
* *cached* levels: ``sets = cache_bytes / (ways line_bytes)`` sets, line n in set ``n mod sets`` with tag
  ``n >> log2(sets)``, ways replaced least-recently-used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from common.validate import range_message, spec
from hw.config import ConfigError
from hw.hash_encoder.params import HashEncoderParams

__all__ = ["HashEncoderAxiParams", "TableLayout", "verilog_header", "verilog_bytes", "AXI_BURST_INCR"]

#: AXI4 ARBURST encoding of an incrementing burst (AMBA AXI4 spec, IHI 0022, A3.4.1).
AXI_BURST_INCR = 1

_LevelBits = Annotated[int, Field(strict=True, ge=2, le=16)]
# The memory fields' ranges, also those of an accelerator preset's memory section (sim.mapping).
BusBytes = Annotated[int, Field(ge=4, le=128)]
LineBytes = Annotated[int, Field(ge=4, le=4096)]
CacheBytes = Annotated[int, Field(ge=4, le=1 << 24)]
Ways = Annotated[int, Field(ge=1, le=8)]
ResidentBytes = Annotated[int, Field(ge=0, le=1 << 30)]
AddrBits = Annotated[int, Field(ge=12, le=64)]


def _pow2(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


@spec(ConfigError)
class HashEncoderAxiParams(HashEncoderParams):
    """The hash encoder's parameters (``HashEncoderParams``) plus its memory system.

    Fields (besides the hash encoder's; ``feature_bits`` is the widest table width generated):
        level_bits: each level's stored table width b_l in [2, feature_bits], from the policy; empty:
            every level at ``feature_bits``.
        bus_bytes: AXI4 data width in bytes, a power of two in [4, 128].
        line_bytes: cache line, read as one INCR burst of ``line_bytes / bus_bytes`` beats; a power of
            two, a multiple of ``bus_bytes``, at most 256 beats and 4096 bytes (AXI4 burst limits).
        cache_bytes: bytes of each cached level's partition, a power-of-two multiple of
            ``ways * line_bytes`` (sets = cache_bytes / (ways line_bytes)).
        ways: associativity, 1, 2, 4 or 8.
        resident_bytes: on-chip budget for resident (never-evicted) coarse levels, bytes >= 0.
        addr_bits: AXI4 address width, in [12, 64]; the packed tables must fit.

    Raises:
        ConfigError: naming the field, the allowed values and the value.
    """

    level_bits: Annotated[tuple[_LevelBits, ...], Field(strict=False)] = ()
    bus_bytes: BusBytes = 16
    line_bytes: LineBytes = 64
    cache_bytes: CacheBytes = 2048
    ways: Ways = 2
    resident_bytes: ResidentBytes = 0
    addr_bits: AddrBits = 32

    SECTION = "hash_encoder_axi"

    def __post_init__(self) -> None:
        super().__post_init__()
        owner = type(self).__name__
        if self.level_bits and len(self.level_bits) != self.levels:
            raise ConfigError(f"{owner}.level_bits must have one width per level ({self.levels}), "
                              f"not {len(self.level_bits)}: {list(self.level_bits)!r}")
        for level, bits in enumerate(self.level_bits):
            if bits > self.feature_bits:
                raise ConfigError(f"{owner}.level_bits[{level}] = {bits} does not fit the generated maximum "
                                  f"feature_bits = {self.feature_bits}")
        for name in ("bus_bytes", "line_bytes", "ways"):
            if not _pow2(getattr(self, name)):
                raise ConfigError(f"{owner}.{name} must be a power of two, not {getattr(self, name)!r}")
        if self.line_bytes % self.bus_bytes:
            raise ConfigError(f"{owner}.line_bytes = {self.line_bytes} is not a multiple of the bus width "
                              f"bus_bytes = {self.bus_bytes}")
        if self.line_bytes // self.bus_bytes > 256:
            raise ConfigError(f"{owner}.line_bytes = {self.line_bytes} needs {self.line_bytes // self.bus_bytes} "
                              "beats of bus_bytes; an AXI4 burst has at most 256")
        if 8 * self.line_bytes < self.features * self.feature_bits:
            raise ConfigError(f"{owner}.line_bytes = {self.line_bytes} cannot hold one entry of "
                              f"{self.features} x {self.feature_bits} bits")
        way_bytes = self.ways * self.line_bytes
        if self.cache_bytes < way_bytes:
            raise ConfigError(f"{owner}.cache_bytes = {self.cache_bytes} cannot hold one line in each of the "
                              f"{self.ways} ways ({way_bytes} bytes)")
        if self.cache_bytes % way_bytes or not _pow2(self.cache_bytes // way_bytes):
            raise ConfigError(f"{owner}.cache_bytes = {self.cache_bytes} must be a power-of-two multiple of "
                              f"ways x line_bytes = {way_bytes}")
        top = self.layout.total_bytes
        if top > 1 << self.addr_bits:
            raise ConfigError(f"{owner}.addr_bits = {self.addr_bits} cannot address the packed tables "
                              f"({top} bytes)")

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["level_bits"] = list(self.level_bits)  # YAML and JSON have lists, not tuples
        return out

    @property
    def bits(self) -> tuple[int, ...]:
        """b_l per level (``level_bits``, or ``feature_bits`` everywhere)."""
        return tuple(self.level_bits) or (self.feature_bits,) * self.levels

    @property
    def beats(self) -> int:
        """AXI beats per line read (ARLEN + 1)."""
        return self.line_bytes // self.bus_bytes

    @property
    def sets(self) -> int:
        """Sets of a cached level's partition."""
        return self.cache_bytes // (self.ways * self.line_bytes)

    @property
    def layout(self) -> "TableLayout":
        """The table layout (external addresses, on-chip partitions) of these parameters."""
        return TableLayout.of(self)


@dataclass(frozen=True)
class TableLayout:
    """Where every table entry lives, off chip and on chip (module docstring). All tuples are per level.

    Attributes:
        entries: E_l, entries stored; bits: b_l; per_line: epl_l, entries per line; lines: lines_l;
        base: byte address of the level's first line; resident: True for a resident level;
        sets: sets of the level's partition; set_base: first set of the partition in its lane's cache;
        lane_sets: sets of each lane's cache (all its partitions); line_bytes, ways, features, table_size:
        as the params; total_bytes: bytes of the packed tables.
    """

    entries: tuple[int, ...]
    bits: tuple[int, ...]
    per_line: tuple[int, ...]
    lines: tuple[int, ...]
    base: tuple[int, ...]
    resident: tuple[bool, ...]
    sets: tuple[int, ...]
    set_base: tuple[int, ...]
    lane_sets: tuple[int, ...]
    line_bytes: int
    ways: int
    features: int
    table_size: int
    total_bytes: int

    @classmethod
    def of(cls, p: HashEncoderAxiParams) -> "TableLayout":
        entries = tuple((r + 1) ** 3 if d else p.table_size for r, d in zip(p.resolutions, p.dense))
        bits = p.bits
        per_line = tuple(8 * p.line_bytes // (p.features * b) for b in bits)
        lines = tuple(-(-e // n) for e, n in zip(entries, per_line))
        base, addr = [], 0
        for n in lines:
            base.append(addr)
            addr += n * p.line_bytes
        resident, budget = [], p.resident_bytes
        for n in lines:  # coarse levels first, while they fit together
            fits = (not resident or resident[-1]) and n * p.line_bytes <= budget
            resident.append(fits)
            budget -= n * p.line_bytes if fits else 0
        cached_sets = p.cache_bytes // (p.ways * p.line_bytes)
        sets = tuple(-(-n // p.ways) if res else cached_sets for n, res in zip(lines, resident))
        set_base, lane_sets = [0] * p.levels, [0] * p.lanes
        for level in range(p.levels):
            j = level % p.lanes
            set_base[level] = lane_sets[j]
            lane_sets[j] += sets[level]
        return cls(entries=entries, bits=bits, per_line=per_line, lines=lines, base=tuple(base),
                   resident=tuple(resident), sets=sets, set_base=tuple(set_base), lane_sets=tuple(lane_sets),
                   line_bytes=p.line_bytes, ways=p.ways, features=p.features, table_size=p.table_size,
                   total_bytes=addr)

    def line_of(self, level: int, index):
        """(line, slot) of entry ``index`` (int or int64 array) of ``level``."""
        return index // self.per_line[level], index % self.per_line[level]

    def line_address(self, level: int, line):
        """Byte address of ``line`` (int or int64 array) of ``level``."""
        return self.base[level] + line * self.line_bytes

    def set_tag(self, level: int, line):
        """(set within the lane's cache, tag) of ``line`` (int or int64 array) of ``level``."""
        if self.resident[level]:
            shift = self.ways.bit_length() - 1
            return self.set_base[level] + (line >> shift), line & (self.ways - 1)
        shift = self.sets[level].bit_length() - 1
        return self.set_base[level] + (line & (self.sets[level] - 1)), line >> shift

    def tag_bits(self, params: HashEncoderAxiParams) -> int:
        """Width of a stored tag: enough for every level's largest tag (at least 1)."""
        most = 1
        for level in range(len(self.lines)):
            _, tag = self.set_tag(level, self.lines[level] - 1)
            most = max(most, int(tag))
        return max(1, most.bit_length())

    def stored_codes(self, tables):
        """The codes a level stores, int64 (L, T, F): ``tables`` with the entries past ``E_l`` zeroed
        (never stored nor read).

        Raises:
            ValueError: not an integer array of shape (L, T, F); a stored code outside the signed b_l-bit
                range, naming level, index and value.
        """
        import numpy as np

        t = np.asarray(tables)
        want = (len(self.entries), self.table_size, self.features)
        if t.shape != want:
            raise ValueError(f"tables must have shape (levels, table_size, features) = {want}, not {t.shape}")
        if not np.issubdtype(t.dtype, np.integer):
            raise ValueError(f"tables must hold integers, not {t.dtype}")
        used = np.zeros(t.shape, dtype=np.int64)
        for level, (n_entries, b) in enumerate(zip(self.entries, self.bits)):
            codes = t[level, :n_entries].astype(np.int64)
            lo, hi = -(1 << (b - 1)), (1 << (b - 1)) - 1
            bad = (codes < lo) | (codes > hi)
            if bad.any():
                i, f = map(int, np.argwhere(bad)[0])
                raise ValueError(f"tables[{level}, {i}, {f}] = {int(codes[i, f])} is outside the signed "
                                 f"{b}-bit range [{lo}, {hi}] of level {level}")
            used[level, :n_entries] = codes
        return used

    def pack(self, tables) -> bytes:
        """The external-memory image of ``tables`` (int array (L, T, F), level l's codes in b_l bits).

        Raises:
            ValueError: as ``stored_codes``.
        """
        t = self.stored_codes(tables)
        image = bytearray(self.total_bytes)
        for level, (n_entries, b, epl) in enumerate(zip(self.entries, self.bits, self.per_line)):
            codes = t[level, :n_entries]
            mask = (1 << b) - 1
            for line in range(self.lines[level]):
                word = 0
                for slot, entry in enumerate(codes[line * epl:(line + 1) * epl]):
                    for f, v in enumerate(entry.tolist()):
                        word |= (v & mask) << ((slot * self.features + f) * b)
                start = self.base[level] + line * self.line_bytes
                image[start:start + self.line_bytes] = word.to_bytes(self.line_bytes, "little")
        return bytes(image)


def verilog_header(params: HashEncoderAxiParams) -> str:
    """The comment lines after the parameter line of ``hash_encoder_axi.v``."""
    p, lay = params, params.layout
    res = sum(lay.resident)
    return (f"// II = {p.groups} cycles/point on hits, latency = {p.groups + p.PIPELINE_STAGES + 1} cycles without "
            f"misses, output: {p.levels * p.features} x signed {p.out_bits} bits\n"
            f"// tables off chip: {lay.total_bytes} bytes via AXI4 ({p.bus_bytes * 8}-bit data, {p.beats}-beat "
            f"bursts of {p.line_bytes} bytes); {res} resident level(s), {p.levels - res} cached "
            f"({p.sets} sets x {p.ways} ways each)\n")


def verilog_bytes(params: HashEncoderAxiParams) -> int:
    """Estimated size of ``hash_encoder_axi.v`` in bytes, before generating it.

    No table contents: per lane about 60 kB plus 25 kB per level group (the 8 corners' extraction and
    lerps) plus 30 kB per way and 10 kB for LRU logic when ways > 1, and the cache memories' ``initial``
    blocks (one hex word per set of tags, lines and ages). Calibrated against the presets
    (``tests/test_verilog.py``: within 0.6x to 2x of the generated size).
    """
    p, lay = params, params.layout
    per_lane = 60_000 + 25_000 * p.groups + (30_000 * p.ways + 10_000 if p.ways > 1 else 0)
    word_hex = -(-p.ways * (8 * p.line_bytes + 1 + lay.tag_bits(p) + 3) // 4)
    return 20_000 + p.lanes * per_lane + sum(lay.lane_sets) * (word_hex + 3 * 30)
