"""The memory system's parameters, its one table layout and the DRAM presets: values, packing, bad input."""

import numpy as np
import pytest

from hw.config import ConfigError
from hw.hash_encoder_axi.params import HashEncoderAxiParams, TableLayout
from hw.registry import ENGINES, load_config
from sim.memory.dram import AxiReadResponder, DelayPattern, DramModel, DramTiming, load_dram
from tests.conftest import CONFIGS

SMALL = dict(levels=4, log2_table_size=8, n_min=4, n_max=32, coord_bits=12, bus_bytes=8, line_bytes=32,
             cache_bytes=256, ways=2)


def _unpack(layout: TableLayout, image: bytes, level: int, index: int) -> list[int]:
    """Entry ``index`` of ``level`` read back from the image by the layout's own rules."""
    line, slot = layout.line_of(level, index)
    start = layout.line_address(level, line)
    word = int.from_bytes(image[start:start + layout.line_bytes], "little")
    b, f = layout.bits[level], layout.features
    out = []
    for k in range(f):
        v = (word >> ((slot * f + k) * b)) & ((1 << b) - 1)
        out.append(v - (1 << b) if v >> (b - 1) else v)
    return out


@pytest.mark.parametrize("bits", [(8, 8, 8, 8), (8, 6, 4, 3), (2, 5, 7, 8)])
def test_packed_image_holds_every_entry_at_its_level_width(bits):
    p = HashEncoderAxiParams(**SMALL, level_bits=bits)
    lay = p.layout
    rng = np.random.default_rng(1)
    tables = np.zeros((p.levels, p.table_size, p.features), dtype=np.int64)
    for level, b in enumerate(bits):
        tables[level] = rng.integers(-(1 << (b - 1)), 1 << (b - 1), size=tables[level].shape)
    image = lay.pack(tables)
    assert len(image) == lay.total_bytes == sum(lay.lines) * p.line_bytes
    for level in range(p.levels):
        for index in rng.choice(lay.entries[level], size=40, replace=False):
            assert _unpack(lay, image, level, int(index)) == tables[level, index].tolist()
    # fewer bits: more entries per line, fewer lines, fewer bytes
    assert lay.per_line == tuple(8 * p.line_bytes // (p.features * b) for b in bits)


def test_levels_are_line_aligned_and_disjoint():
    lay = HashEncoderAxiParams(**SMALL, level_bits=(8, 6, 4, 3)).layout
    for level in range(1, len(lay.lines)):
        assert lay.base[level] == lay.base[level - 1] + lay.lines[level - 1] * lay.line_bytes
    assert all(b % lay.line_bytes == 0 for b in lay.base)


def test_resident_levels_are_the_coarse_ones_that_fit_and_never_conflict():
    lines = HashEncoderAxiParams(**SMALL).layout.lines
    budget = (lines[0] + lines[1]) * 32
    lay = HashEncoderAxiParams(**{**SMALL, "resident_bytes": budget}).layout
    assert lay.resident == (True, True, False, False)
    for level in (0, 1):  # each set of a resident partition receives at most `ways` lines
        sets, tags = lay.set_tag(level, np.arange(lay.lines[level]))
        for s in np.unique(sets):
            assert len(np.unique(tags[sets == s])) <= lay.ways
    # a budget one byte short keeps level 1 off: residency is a prefix of the levels
    assert HashEncoderAxiParams(**{**SMALL, "resident_bytes": budget - 1}).layout.resident == (True, False, False, False)


def test_cached_partitions_do_not_overlap_within_a_lane():
    p = HashEncoderAxiParams(**{**SMALL, "lanes": 2})
    lay = p.layout
    spans = {}
    for level in range(p.levels):
        spans.setdefault(level % 2, []).append((lay.set_base[level], lay.set_base[level] + lay.sets[level]))
    for j, ranges in spans.items():
        ranges.sort()
        assert all(a[1] <= b[0] for a, b in zip(ranges, ranges[1:]))
        assert ranges[-1][1] == lay.lane_sets[j]


@pytest.mark.parametrize("change, message", [
    ({"line_bytes": 24}, "line_bytes must be a power of two, not 24"),
    ({"bus_bytes": 64, "line_bytes": 32}, "line_bytes = 32 is not a multiple of the bus width bus_bytes = 64"),
    ({"cache_bytes": 32}, "cache_bytes = 32 cannot hold one line in each of the 2 ways (64 bytes)"),
    ({"cache_bytes": 192}, "cache_bytes = 192 must be a power-of-two multiple of ways x line_bytes = 64"),
    ({"level_bits": (8, 9, 8, 8)}, "level_bits[1] = 9 does not fit the generated maximum feature_bits = 8"),
    ({"level_bits": (8, 8)}, "level_bits must have one width per level (4), not 2"),
    ({"ways": 3}, "ways must be a power of two, not 3"),
    ({"bus_bytes": 4, "line_bytes": 2048}, "needs 512 beats of bus_bytes; an AXI4 burst has at most 256"),
])
def test_bad_memory_parameters_are_named(change, message):
    with pytest.raises(ConfigError) as err:
        HashEncoderAxiParams(**{**SMALL, **change})
    assert message in str(err.value)


def test_registered_and_round_trips_through_yaml():
    assert "hash_encoder_axi" in ENGINES
    p = load_config(CONFIGS / "axi-mixed.yaml")["hash_encoder_axi"]
    assert p.bits == (10, 8, 6, 4, 3, 5)
    assert HashEncoderAxiParams.from_dict(p.to_dict()) == p


def test_dram_presets_load_in_accelerator_cycles():
    t = DramTiming.of(load_dram("lpddr4"), 200, 16)
    # 18 ns at 5 ns per cycle is 3.6 -> 4 cycles; 12.8 GB/s at 200 MHz is 64 bytes per cycle
    assert (t.t_rcd, t.t_cl, t.t_rp, t.bytes_per_cycle, t.beat_interval) == (4, 4, 4, 64.0, 1)
    slow = DramTiming.of(load_dram("lpddr4"), 1000, 128)  # 12.8 bytes per 1 ns cycle: a 128-byte beat every 10
    assert slow.beat_interval == 10 and slow.t_rcd == 18
    assert DramTiming.of(load_dram("hbm2"), 200, 16).t_cl == 3


def test_open_page_policy_row_hits_closed_banks_and_conflicts():
    t = DramTiming.of(load_dram("lpddr4"), 200, 16)
    dram = DramModel(t)
    row = t.row_bytes * t.banks
    assert dram.access(0) == (t.t_rcd + t.t_cl, 1)  # bank 0 closed
    assert dram.access(64) == (t.t_cl, 0)  # same row
    assert dram.access(t.row_bytes) == (t.t_rcd + t.t_cl, 1)  # bank 1 closed
    assert dram.access(row) == (t.t_rp + t.t_rcd + t.t_cl, 2)  # bank 0, another row
    assert dram.outcomes == [1, 2, 1]


def test_responder_timing_and_delays_are_reproducible():
    t = DramTiming.of(load_dram("lpddr4"), 200, 16)
    plain = AxiReadResponder(t, 4)
    a, beats = plain.serve(10, 0)
    assert a == 10 and beats == [10 + 1 + t.t_rcd + t.t_cl + i for i in range(4)]
    assert plain.free == beats[-1] + 1
    one, two = AxiReadResponder(t, 4, DelayPattern(seed=7)), AxiReadResponder(t, 4, DelayPattern(seed=7))
    seq = [(one.serve(v, 64 * v), two.serve(v, 64 * v)) for v in range(0, 400, 40)]
    assert all(x == y for x, y in seq)
    assert any(x[1][-1] - x[1][0] > 3 for x, _ in seq)  # some beats arrive with gaps


@pytest.mark.parametrize("text, message", [
    ("source: x\nbandwidth_gbs: 1\n", "missing field 'burst_bytes'"),
    ("source: x\nbandwidth_gbs: 1\nburst_bytes: 64\nbanks: 8\nrow_bytes: 2048\nt_rcd_ns: 18\nt_cl_ns: 18\n"
     "t_rp_ns: -1\n", "t_rp_ns"),
    ("source: x\nbandwidth_gbs: 1\nburst_bytes: 64\nbanks: 8\nrow_bytes: 2048\nt_rcd_ns: 18\nt_cl_ns: 18\n"
     "t_rp_ns: 18\ntRAS: 42\n", "tRAS"),
])
def test_bad_dram_presets_are_named(tmp_path, text, message):
    path = tmp_path / "part.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_dram(path)
    assert message in str(err.value)
    with pytest.raises(ConfigError, match="unknown DRAM preset 'ddr9'"):
        load_dram("ddr9")
