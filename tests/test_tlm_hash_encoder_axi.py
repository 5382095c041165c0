"""The hash encoder with external tables, TLM (``sim.tlm.hash_encoder_axi``) against the contract
``hw/hash_encoder_axi/CYCLES.md``: expected cycles and requests are derived here by hand from the
contract and the DRAM timing, not from the model."""

import numpy as np
import pytest

from hw.hash_encoder.params import HashEncoderParams
from hw.hash_encoder_axi.params import HashEncoderAxiParams
from sim.memory.dram import DelayPattern, DramTiming
from sim.tlm.hash_encoder import HashEncoderTLM, pack_features
from sim.tlm.hash_encoder_axi import HashEncoderAxiTLM

#: A small DRAM: 2 banks of 64-byte rows, 32-byte bursts, tRCD 5, tCL 7, tRP 4, a beat every 2 cycles.
DRAM = DramTiming(t_rcd=5, t_cl=7, t_rp=4, beat_interval=2, bytes_per_cycle=2.0, banks=2, row_bytes=64,
                  burst_bytes=32)

#: The pipeline after the issue register: a point accepted at edge a is in the issue register from
#: a + 1 (group g at a + 1 + g), in stage k at a + 1 + g + k, pushed at the edge of stage 6 of its last
#: group and visible (transferred, when ready) one cycle later.
STAGES = 6


def base_params(p: HashEncoderAxiParams) -> HashEncoderParams:
    return HashEncoderParams(levels=p.levels, log2_table_size=p.log2_table_size, features=p.features,
                             feature_bits=p.feature_bits, coord_bits=p.coord_bits, n_min=p.n_min,
                             n_max=p.n_max, lanes=p.lanes)


def random_tables(p: HashEncoderAxiParams, seed: int) -> np.ndarray:
    """Tables with level l's codes drawn over its whole signed b_l-bit range."""
    rng = np.random.default_rng(seed)
    t = np.empty((p.levels, p.table_size, p.features), dtype=np.int64)
    for level, b in enumerate(p.bits):
        t[level] = rng.integers(-(1 << (b - 1)), 1 << (b - 1), size=t.shape[1:])
    return t


def random_coords(p: HashEncoderAxiParams, n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1 << p.coord_bits, size=(n, 3))


def plane_params(cache_bytes: int) -> HashEncoderAxiParams:
    """One dense level of 8 x 8 x 8 vertices, 1-byte entries, 64-byte lines: line n = vertex plane z = n,
    so a point in cell (0, 0, cz) reads line cz with corners 0-3 and line cz + 1 with corners 4-7."""
    return HashEncoderAxiParams(levels=1, log2_table_size=9, features=1, feature_bits=8, coord_bits=8,
                                n_min=7, n_max=7, bus_bytes=16, line_bytes=64, cache_bytes=cache_bytes, ways=2)


def plane_point(cz: int) -> list[int]:
    """The code of a point in cell (0, 0, cz) of ``plane_params`` (N = 7, C = 8): z * 7 >> 8 = cz."""
    z = -(-cz * 256 // 7)
    assert (z * 7) >> 8 == cz
    return [0, 0, z]


class BankModel:
    """Hand model of the DRAM row state for expected latencies (open page, all banks closed at 0)."""

    def __init__(self, dram: DramTiming):
        self.d, self.open = dram, {}

    def latency(self, addr: int) -> int:
        page = addr // self.d.row_bytes
        bank, row = page % self.d.banks, page // self.d.banks
        was = self.open.get(bank)
        self.open[bank] = row
        if was is None:
            return self.d.t_rcd + self.d.t_cl  # first access to the bank: activate, read
        if was == row:
            return self.d.t_cl
        return self.d.t_rp + self.d.t_rcd + self.d.t_cl


# --- 1. data ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("lanes", [1, 3])
def test_payloads_equal_the_on_chip_encoder_with_mixed_level_bits(lanes):
    p = HashEncoderAxiParams(levels=5, log2_table_size=8, features=2, feature_bits=10, coord_bits=10, n_min=2,
                             n_max=24, lanes=lanes, level_bits=(10, 8, 6, 4, 3), bus_bytes=4, line_bytes=16,
                             cache_bytes=64, ways=2)
    tables = random_tables(p, seed=lanes)
    coords = random_coords(p, 120, seed=5)
    result = HashEncoderAxiTLM(p, tables, dram=DRAM).run(coords)
    want = HashEncoderTLM(base_params(p), tables).encode(coords)
    np.testing.assert_array_equal(result.features, want)
    assert result.payloads == [pack_features(f.ravel(), p.out_bits) for f in want]
    assert any(f.min() < 0 for f in want)  # negative codes are sign-extended, not masked
    assert len(result.payloads) == 120 and np.all(np.diff(result.out_cycles) > 0)


# --- 2. one point, cold cache ------------------------------------------------------------------------
def test_single_point_cold_cache_exact_cycles_and_requests():
    # One dense level N = 3 (64 vertices), 2 x 8-bit features: 8 entries per 16-byte line, 4 beats of 4
    # bytes. Cell (0, 0, 0): corners x + 4 y + 16 z = 0, 1, 4, 5 (line 0) and 16, 17, 20, 21 (line 2).
    p = HashEncoderAxiParams(levels=1, log2_table_size=6, features=2, feature_bits=8, coord_bits=8, n_min=3,
                             n_max=3, bus_bytes=4, line_bytes=16, cache_bytes=64, ways=1)
    r = HashEncoderAxiTLM(p, np.zeros((1, 64, 2), dtype=np.int64), dram=DRAM).run(np.array([[0, 0, 0]]))
    d = 64 // 16  # sets = cache_bytes / (ways line_bytes), one level in one lane
    assert r.clear_cycles == d and r.accept_cycles.tolist() == [d]
    # The token reaches stage 3 at d + 4; fill 1 (addr 0, bank 0 closed: tRCD + tCL = 12): ARVALID and
    # AR at d + 5 = 9, beats 9 + 1 + 12 = 22, 24, 26, 28; hits at 29, fill 2 decided then (addr 32, same
    # bank and row: tCL = 7): AR 30, beats 38 .. 44; all corners hit at 45.
    assert r.requests == [(9, 9, 0, 0, 0, (22, 24, 26, 28)), (30, 30, 32, 0, 0, (38, 40, 42, 44))]
    penalty = [3 + (5 + 7) + 3 * 2, 3 + 7 + 3 * 2]  # CYCLES.md: 3 + latency + (beats - 1) beat_interval
    assert r.stall_cycles == sum(penalty) == 37
    # Stage 6 of the (only) group at d + 1 + 6 + stall = 48, pushed there, transferred at 49.
    assert r.out_cycles.tolist() == [d + p.groups + STAGES + 1 + sum(penalty)] == [49]
    assert r.cycles == 50
    assert r.misses.tolist() == [2] and r.hits.tolist() == [6]
    assert r.dram_outcomes == (1, 1, 0)  # (row hit, closed, conflict)
    assert r.dram_bytes == 2 * 32  # 16-byte lines rounded up to 32-byte bursts


def test_single_point_many_levels_fills_and_stall_match_the_penalty_formula():
    p = HashEncoderAxiParams(levels=6, log2_table_size=9, features=2, feature_bits=8, coord_bits=12, n_min=3,
                             n_max=90, lanes=2, bus_bytes=4, line_bytes=16, cache_bytes=128, ways=1)
    tables = random_tables(p, 1)
    lay = p.layout
    for seed in range(4):
        code = random_coords(p, 1, seed=seed)
        r = HashEncoderAxiTLM(p, tables, dram=DRAM).run(code)
        idx = HashEncoderTLM(base_params(p), tables).indices(code)[0]  # (L, 8)
        banks, stall, order = BankModel(DRAM), 0, []
        for g in range(p.groups):
            for j in range(p.lanes):
                level = g * p.lanes + j
                if level >= p.levels:
                    continue
                seen = []
                for c in range(8):
                    line = int(idx[level, c]) // lay.per_line[level]
                    if line not in seen:  # the first corner of each distinct line misses, in order
                        seen.append(line)
                        addr = lay.base[level] + line * p.line_bytes
                        order.append(addr)
                        stall += 3 + banks.latency(addr) + (p.beats - 1) * DRAM.beat_interval
                assert r.misses[level] == len(seen)
        assert [q[2] for q in r.requests] == order
        assert r.stall_cycles == stall
        assert r.out_cycles.tolist() == [max(lay.lane_sets) + p.groups + STAGES + 1 + stall]
        assert (r.hits + r.misses).tolist() == [8] * p.levels


# --- 3. a second identical point hits everywhere -----------------------------------------------------
def test_same_point_twice_second_all_hits_at_ii():
    p = HashEncoderAxiParams(levels=4, log2_table_size=10, features=2, feature_bits=8, coord_bits=12, n_min=4,
                             n_max=100, lanes=1, bus_bytes=8, line_bytes=32, cache_bytes=4096, ways=4)
    tables = random_tables(p, 2)
    code = random_coords(p, 1, seed=3)
    idx = HashEncoderTLM(base_params(p), tables).indices(code)[0]
    for level in range(p.levels):  # precondition: the point does not evict its own lines
        lines = {int(i) // p.layout.per_line[level] for i in idx[level]}
        sets = [p.layout.set_tag(level, n)[0] for n in lines]
        assert max(sets.count(s) for s in sets) <= p.ways
    tlm = HashEncoderAxiTLM(p, tables, dram=DRAM)
    one, two = tlm.run(code), tlm.run(np.repeat(code, 2, axis=0))
    assert two.requests == one.requests and two.stall_cycles == one.stall_cycles
    assert two.misses.tolist() == one.misses.tolist()
    assert two.hits.tolist() == (one.hits + 8).tolist()
    assert two.out_cycles[0] == one.out_cycles[0]
    assert two.out_cycles[1] - two.out_cycles[0] == p.groups == 4
    assert two.payloads == one.payloads * 2


# --- 4. replacement ----------------------------------------------------------------------------------
def test_lru_replacement_keeps_the_recently_hit_line():
    # 2 sets x 2 ways: set 0 holds even planes, set 1 odd. Cells cz = 0, 2, 0, 4, 0 give set 0 the
    # sequence A B A C A (A = line 0, B = 2, C = 4) and set 1 A' B' A' C' A' (1, 3, 1, 5, 1). LRU evicts
    # B (then B') for C, so the last A hits: 6 fills. FIFO would evict A and refetch it: 8.
    p = plane_params(cache_bytes=2 * 2 * 64)
    assert p.layout.sets == (2,)
    coords = np.array([plane_point(cz) for cz in (0, 2, 0, 4, 0)])
    r = HashEncoderAxiTLM(p, np.zeros((1, 512, 1), dtype=np.int64), dram=DRAM).run(coords)
    assert [q[2] for q in r.requests] == [0, 64, 128, 192, 256, 320]
    assert r.misses.tolist() == [6] and r.hits.tolist() == [34]


def test_victim_is_chosen_after_the_same_edge_touches():
    # One set of 2 ways. CYCLES.md: the victim is chosen at the refill from the ages then, which include
    # the touches of the decision edge.
    # cz = 1: lines 1 -> way 1, 2 -> way 0; way 1 (line 1) is then the LRU way.
    # cz = 0: line 1 hits in its first stage-3 cycle and is touched, so the victim for line 0 is way 0
    #   (line 2); ages before that touch would evict line 1 instead.
    # cz = 1: line 1 hits, line 2 is refetched (the other reading would refetch line 1).
    p = plane_params(cache_bytes=2 * 64)
    assert p.layout.sets == (1,)
    coords = np.array([plane_point(cz) for cz in (1, 0, 1)])
    r = HashEncoderAxiTLM(p, np.zeros((1, 512, 1), dtype=np.int64), dram=DRAM).run(coords)
    assert [q[2] for q in r.requests] == [64, 128, 0, 128]


# --- 5. resident levels --------------------------------------------------------------------------
def test_resident_levels_fetch_each_line_once():
    p = HashEncoderAxiParams(levels=6, log2_table_size=10, features=2, feature_bits=8, coord_bits=12, n_min=2,
                             n_max=40, lanes=2, bus_bytes=8, line_bytes=32, cache_bytes=256, ways=2,
                             resident_bytes=1024)
    lay = p.layout
    assert lay.resident[0] and not lay.resident[-1]
    tables = random_tables(p, 4)
    coords = random_coords(p, 400, seed=9)
    r = HashEncoderAxiTLM(p, tables, dram=DRAM).run(coords)
    idx = HashEncoderTLM(base_params(p), tables).indices(coords)
    refetched_cached = False
    for level in range(p.levels):
        addrs = [q[2] for q in r.requests if q[3] == level]
        used = {lay.base[level] + int(i) // lay.per_line[level] * p.line_bytes for i in idx[:, level].ravel()}
        assert all(q[4] == level % p.lanes for q in r.requests if q[3] == level)
        if lay.resident[level]:
            assert sorted(addrs) == sorted(used)  # each line on first use, never again
            assert lay.sets[level] * p.ways >= lay.lines[level]
        else:
            refetched_cached |= len(addrs) > len(set(addrs))
    assert refetched_cached  # the cached levels do evict: the resident property is not vacuous
    assert (r.hits + r.misses).tolist() == [8 * 400] * p.levels


# --- 6. request order and addresses ---------------------------------------------------------------
def test_request_addresses_lane_major_then_corner_order():
    p = HashEncoderAxiParams(levels=6, log2_table_size=10, features=2, feature_bits=8, coord_bits=12, n_min=3,
                             n_max=120, lanes=3, level_bits=(8, 7, 6, 5, 4, 3), bus_bytes=4, line_bytes=16,
                             ways=8, cache_bytes=16 * 8 * 64)
    lay = p.layout
    tables = random_tables(p, 6)
    coords = random_coords(p, 10, seed=11)
    idx = HashEncoderTLM(base_params(p), tables).indices(coords)
    want, seen = [], set()
    for i in range(len(coords)):
        for g in range(p.groups):
            for j in range(p.lanes):
                level = g * p.lanes + j
                for c in range(8):
                    line, _ = lay.line_of(level, int(idx[i, level, c]))
                    if (level, line) not in seen:
                        seen.add((level, line))
                        want.append((int(lay.line_address(level, line)), level, j))
    for level in range(p.levels):  # precondition: no set overflows, so first use is the only miss
        sets = [lay.set_tag(level, line)[0] for (lv, line) in seen if lv == level]
        assert max(sets.count(s) for s in sets) <= p.ways
    r = HashEncoderAxiTLM(p, tables, dram=DRAM).run(coords)
    assert [(q[2], q[3], q[4]) for q in r.requests] == want
    for v, a, _, _, _, beats in r.requests:
        assert a == v and len(beats) == p.beats  # no random delays: ARREADY is high when ARVALID rises


# --- 7. random delays ------------------------------------------------------------------------------
def test_random_delays_only_add_cycles():
    p = HashEncoderAxiParams(levels=4, log2_table_size=9, features=2, feature_bits=8, coord_bits=12, n_min=3,
                             n_max=60, lanes=2, bus_bytes=4, line_bytes=16, cache_bytes=128, ways=2)
    tables = random_tables(p, 7)
    coords = random_coords(p, 150, seed=13)
    base = HashEncoderAxiTLM(p, tables, dram=DRAM).run(coords)
    for seed in (1, 2):
        slow = HashEncoderAxiTLM(p, tables, dram=DRAM, delays=DelayPattern(seed=seed)).run(coords)
        assert slow.payloads == base.payloads
        assert [q[2:5] for q in slow.requests] == [q[2:5] for q in base.requests]
        assert slow.misses.tolist() == base.misses.tolist()
        assert slow.dram_outcomes == base.dram_outcomes
        assert np.all(slow.out_cycles >= base.out_cycles) and np.all(slow.accept_cycles >= base.accept_cycles)
        assert slow.cycles > base.cycles and slow.stall_cycles > base.stall_cycles
        assert any(a > v for v, a, *_ in slow.requests)  # ARREADY held low sometimes
        for v, a, _, _, _, beats in slow.requests:
            assert a >= v and beats[0] >= a + 1 + DRAM.t_cl
            assert all(y - x >= DRAM.beat_interval for x, y in zip(beats, beats[1:]))
        # blocking handler: the next ARVALID rises after the previous last beat (decision at u + 1)
        assert all(q[0] >= prev[5][-1] + 2 for prev, q in zip(slow.requests, slow.requests[1:]))


# --- 8. backpressure and input gaps -------------------------------------------------------------------
def test_backpressure_and_input_gaps_keep_order_and_credits():
    p = HashEncoderAxiParams(levels=3, log2_table_size=9, features=2, feature_bits=8, coord_bits=12, n_min=2,
                             n_max=20, lanes=3, bus_bytes=8, line_bytes=32, cache_bytes=1024, ways=4,
                             resident_bytes=4096)
    assert p.groups == 1 and p.fifo_depth == 9
    tables = random_tables(p, 8)
    n = 200
    coords = random_coords(p, n, seed=17)
    rng = np.random.default_rng(19)
    offers = np.cumsum(rng.integers(0, 3, size=n) * (rng.random(n) < 0.3))
    ready = rng.random(6000) < 0.25
    tlm = HashEncoderAxiTLM(p, tables, dram=DRAM)
    free = tlm.run(coords)
    r = tlm.run(coords, offer_cycles=offers, ready=ready)
    assert r.payloads == free.payloads
    assert [q[2] for q in r.requests] == [q[2] for q in free.requests]
    acc, out = r.accept_cycles, r.out_cycles
    assert acc[0] >= r.clear_cycles and np.all(acc >= offers) and np.all(np.diff(acc) > 0)
    assert np.all(np.diff(out) > 0) and all(ready[t] for t in out if t < len(ready))
    assert np.all(out >= acc + p.groups + STAGES + 1)
    # Credits in use during cycle t: accepted at edges < t minus transferred out at edges < t.
    in_use = [i - int(np.searchsorted(out, a)) for i, a in enumerate(acc)]
    assert max(in_use) < p.fifo_depth  # never accepted with every credit taken
    assert max(in_use) == p.fifo_depth - 1  # ... and the limit was reached (the backpressure bites)
    occupancy = [int(np.searchsorted(acc, t)) - i for i, t in enumerate(out)]  # the FIFO holds at most these
    assert max(occupancy) <= p.fifo_depth


# --- 9. bad input ---------------------------------------------------------------------------------
def test_bad_tables_and_codes_are_refused_naming_them():
    p = HashEncoderAxiParams(levels=3, log2_table_size=8, features=2, feature_bits=8, coord_bits=10, n_min=2,
                             n_max=30, level_bits=(8, 6, 4), bus_bytes=4, line_bytes=16, cache_bytes=64, ways=2)
    good = random_tables(p, 0)
    with pytest.raises(ValueError, match=r"shape .*\(3, 256, 2\).*\(3, 128, 2\)"):
        HashEncoderAxiTLM(p, good[:, :128], dram=DRAM)
    with pytest.raises(ValueError, match="integers"):
        HashEncoderAxiTLM(p, good.astype(float), dram=DRAM)
    bad = good.copy()
    bad[2, 77, 1] = 8  # level 2 stores 4-bit codes: [-8, 7]
    with pytest.raises(ValueError, match=r"tables\[2, 77, 1\] = 8 is outside the signed 4-bit range \[-8, 7\] "
                                         r"of level 2"):
        HashEncoderAxiTLM(p, bad, dram=DRAM)
    bad = good.copy()
    bad[1, 3, 0] = -33
    with pytest.raises(ValueError, match=r"tables\[1, 3, 0\] = -33 .* level 1"):
        HashEncoderAxiTLM(p, bad, dram=DRAM)
    # Level 0 is dense (N = 2: 27 vertices): entries past the 27 stored are never read and not checked.
    assert p.layout.entries[0] == 27
    unused = good.copy()
    unused[0, 27:] = 1000
    tlm = HashEncoderAxiTLM(p, unused, dram=DRAM)
    coords = random_coords(p, 20, seed=1)
    assert tlm.run(coords).payloads == HashEncoderAxiTLM(p, good, dram=DRAM).run(coords).payloads
    with pytest.raises(ValueError, match=r"point 1: coordinate y = 1024"):
        tlm.run(np.array([[0, 0, 0], [0, 1024, 0]]))
    with pytest.raises(ValueError, match="offer_cycles has 1 entries for 2 points"):
        tlm.run(np.zeros((2, 3), dtype=np.int64), offer_cycles=[0])


def test_no_points():
    p = HashEncoderAxiParams(levels=2, log2_table_size=6, features=1, feature_bits=8, coord_bits=8, n_min=2,
                             n_max=4, bus_bytes=4, line_bytes=16, cache_bytes=64, ways=2)
    r = HashEncoderAxiTLM(p, np.zeros((2, 64, 1), dtype=np.int64), dram=DRAM).run(np.zeros((0, 3), dtype=np.int64))
    assert r.cycles == 0 and r.requests == [] and r.payloads == [] and r.misses.tolist() == [0, 0]
    assert r.clear_cycles == max(p.layout.lane_sets) == 2 * 64 // (2 * 16)  # 2 levels x 2 sets in lane 0
