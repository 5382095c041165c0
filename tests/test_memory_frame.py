"""sim/memory/frame.py against cycle-stepping models: every colour-engine output cycle and every level's
hits and misses of the encoder with external tables -> FIFO(2) -> density -> FIFO(2) -> colour chain.

Two encoder oracles: ``_reference_encoder`` below, a per-cycle stepping of hw/hash_encoder_axi/CYCLES.md
written for this test, and, where the branch has it, ``sim.tlm.hash_encoder_axi.HashEncoderAxiTLM``."""

import dataclasses
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hw.hash_encoder_axi.params import HashEncoderAxiParams
from hw.params import MlpEngineParams, MlpLayer
from nerf import grid
from sim.memory.dram import AxiReadResponder, DramTiming
from sim.memory.frame import (level_fills, level_stats, memory_frame_perf, policy_perf, replay_level)
from sim.tlm.mlp_engine import MlpEngineTLM
from sim.tlm.transfers import ReadyPattern

try:
    from sim.tlm.hash_encoder_axi import HashEncoderAxiTLM
except ImportError:  # the TLM lands on branch tlm
    HashEncoderAxiTLM = None

FIFO = 2
DRAM = DramTiming(t_rcd=3, t_cl=2, t_rp=4, beat_interval=2, bytes_per_cycle=4.0, banks=2, row_bytes=64,
                  burst_bytes=32)


def _params(**kw):
    base = dict(levels=4, log2_table_size=8, features=2, feature_bits=8, coord_bits=12, n_min=4, n_max=32, lanes=2,
                bus_bytes=8, line_bytes=16, cache_bytes=64, ways=2)
    return HashEncoderAxiParams(**{**base, **kw})


def _corner_lines(p, coords):
    """(line, set, tag) per (point, level, corner) from the layout's own functions: int64 (N, L, 8) each."""
    lay = p.layout
    n = len(coords)
    lines, sets, tags = (np.empty((n, p.levels, 8), dtype=np.int64) for _ in range(3))
    for level, res in enumerate(p.resolutions):
        cell = (coords * res) >> p.coord_bits
        idx = grid.corner_indices(cell, res, p.log2_table_size)
        lines[:, level], _ = lay.line_of(level, idx)
        sets[:, level], tags[:, level] = lay.set_tag(level, lines[:, level])
    return lines, sets, tags


def _reference_encoder(p, coords, dram, ready=None):
    """CYCLES.md stepped one cycle at a time (no responder delays): accept and output cycles, misses per
    level, stall cycles."""
    lay = p.layout
    lines, sets, tags = _corner_lines(p, coords)
    n, L, lanes, G, depth = len(coords), p.levels, p.lanes, p.groups, p.fifo_depth
    valid = [np.zeros((s, p.ways), dtype=bool) for s in lay.lane_sets]
    tag = [np.zeros((s, p.ways), dtype=np.int64) for s in lay.lane_sets]
    age = [np.tile(np.arange(p.ways), (s, 1)) for s in lay.lane_sets]

    def touch(j, s, w):
        a = age[j][s]
        old = a[w]
        a[a < old] += 1
        a[w] = 0

    clear = max(lay.lane_sets)
    resp = AxiReadResponder(dram, p.beats)
    ready_at = ReadyPattern(ready)
    stages = [None] * 7
    got = np.zeros((lanes, 8), dtype=bool)
    handler = None  # (u, lane, level, corner) while a fill is in flight
    accept, out = np.full(n, -1), np.full(n, -1)
    misses = np.zeros(L, dtype=np.int64)
    queue, arrivals = deque(), deque()
    credits = nxt = done = t = stall_cycles = 0
    while done < n:
        assert t < 10_000_000
        while arrivals and arrivals[0][0] == t:
            queue.append(arrivals.popleft()[1])
        tok = stages[3]
        hit = np.full((lanes, 8), -1)
        stall = False
        if tok is not None:
            k, g = tok
            for j in range(lanes):
                level = g * lanes + j
                if level >= L:
                    continue
                for c in range(8):
                    s = sets[k, level, c]
                    match = np.flatnonzero(valid[j][s] & (tag[j][s] == tags[k, level, c]))
                    hit[j, c] = match[0] if len(match) else -1
                    stall |= hit[j, c] < 0 and not got[j, c]
        adv = not stall
        in_fire = (adv and t >= clear and nxt < n and (stages[0] is None or stages[0][1] == G - 1)
                   and credits < depth)
        o_fire = bool(queue) and ready_at(t)
        # --- edge t ---
        if tok is not None:
            k, g = tok
            for j in range(lanes):
                for c in range(8):
                    if hit[j, c] >= 0 and not got[j, c]:
                        touch(j, sets[k, g * lanes + j, c], hit[j, c])
            got = np.zeros_like(got) if adv else got | (hit >= 0)
        if handler is None and stall:
            k, g = tok
            j, c = next((j, c) for j in range(lanes) for c in range(8) if hit[j, c] < 0 and not got[j, c]
                        and g * lanes + j < L)
            level = g * lanes + j
            _, beats = resp.serve(t + 1, lay.line_address(level, int(lines[k, level, c])))
            handler = (beats[-1], j, level, k, c)
        elif handler is not None and handler[0] == t:
            _, j, level, k, c = handler
            s = sets[k, level, c]
            victim = int(np.flatnonzero(age[j][s] == p.ways - 1)[0])
            valid[j][s, victim], tag[j][s, victim] = True, tags[k, level, c]
            touch(j, s, victim)
            misses[level] += 1
            handler = None
        stall_cycles += stall
        if adv:
            last = stages[6]
            if last is not None and last[1] == G - 1:
                arrivals.append((t + 1, last[0]))
            s0 = stages[0]
            stages[1:] = stages[:6]
            if in_fire:
                stages[0] = (nxt, 0)
                accept[nxt] = t
                nxt += 1
            elif s0 is not None and s0[1] < G - 1:
                stages[0] = (s0[0], s0[1] + 1)
            else:
                stages[0] = None
        if o_fire:
            out[queue.popleft()] = t
            done += 1
        credits += int(in_fire) - int(o_fire)
        t += 1
    return {"accept": accept, "out": out, "misses": misses, "stall_cycles": stall_cycles}


def _tlm_encoder(p, coords, dram, ready=None):
    tables = np.zeros((p.levels, p.table_size, p.features), dtype=np.int64)
    r = HashEncoderAxiTLM(p, tables, dram=dram).schedule(coords, None, ready)
    return {"accept": r.accept_cycles, "out": r.out_cycles, "misses": np.asarray(r.misses),
            "hits": np.asarray(r.hits), "stall_cycles": r.stall_cycles, "row": tuple(r.dram_outcomes),
            "dram_bytes": r.dram_bytes}


ENCODERS = {"reference": _reference_encoder}
if HashEncoderAxiTLM is not None:
    ENCODERS["tlm"] = _tlm_encoder


def _mlp(t_layers):
    """An MLP engine TLM (1 x 1 array) with one layer per (in, out, weight bits, act bits)."""
    mp = MlpEngineParams(rows=1, cols=1, max_in=8, max_out=8, max_layers=3, max_weight_bits=8, max_act_bits=8,
                         mult_bits=8, clock_mhz=100)
    layers = [MlpLayer(in_size=i, out_size=o, weight_bits=w, act_bits=a, act_signed=n == 0,
                       relu=n < len(t_layers) - 1, out_bits=t_layers[n + 1][3] if n < len(t_layers) - 1 else 8,
                       mult=1, shift=0) for n, (i, o, w, a) in enumerate(t_layers)]
    return MlpEngineTLM(mp, layers, [np.zeros((ly.out_size, ly.in_size), dtype=np.int64) for ly in layers])


def _room(writes, reads, depth, horizon):
    t = np.arange(horizon)
    held = np.searchsorted(np.sort(writes), t, side="left") - np.searchsorted(np.sort(reads), t, side="left")
    return held < depth


def chained(encoder, p, coords, dram, dens, col):
    """Encoder -> FIFO(2) -> density -> FIFO(2) -> colour, backpressure solved to a fixed point."""
    n = len(coords)
    ready1 = ready2 = None
    for _ in range(10 * n + 10):
        enc = encoder(p, coords, dram, ready1)
        e = enc["out"]
        a_d, o_d = dens.schedule(e + 1, ready2)
        a_c, o_c = col.schedule(o_d + 1)
        horizon = int(o_c.max()) + 2
        new1, new2 = _room(e, a_d, FIFO, horizon), _room(o_d, a_c, FIFO, horizon)
        if ready1 is not None and np.array_equal(new1, ready1) and np.array_equal(new2, ready2):
            return {**enc, "density": o_d, "color": o_c, "stalled": not (new1.all() and new2.all())}
        ready1, ready2 = new1, new2
    raise AssertionError("backpressure did not settle")


def _walk(rng, n, c_bits, step):
    """Coherent points: a clipped random walk of fixed-point codes."""
    pos = rng.integers(0, 1 << c_bits, size=3)
    out = np.empty((n, 3), dtype=np.int64)
    for i in range(n):
        pos = np.clip(pos + rng.integers(-step, step + 1, size=3), 0, (1 << c_bits) - 1)
        out[i] = pos
    return out


FAST_MLP = ([(1, 2, 2, 2)], [(1, 1, 2, 2)])  # T = 8, 4: faster than the encoder's misses
SLOW_MLP = ([(2, 4, 2, 4)], [(2, 3, 4, 2), (3, 2, 2, 2)])  # T = 64, 48 + 24 + 4 = 76
CASES = {
    "1lane-direct-mapped-tiny-cache": (dict(lanes=1, levels=3, ways=1, cache_bytes=16), FAST_MLP),
    "2lanes-2ways-mixed-bits": (dict(lanes=2, levels=4, ways=2, level_bits=(8, 3, 5, 8)), FAST_MLP),
    "2lanes-4ways-resident-odd-levels": (dict(lanes=2, levels=5, ways=4, cache_bytes=128, resident_bytes=700,
                                              n_max=64), SLOW_MLP),
    "4lanes-G1-deep-credits": (dict(lanes=4, levels=4, ways=2, cache_bytes=128), FAST_MLP),
    "1lane-slow-mlp": (dict(lanes=1, levels=2, ways=4, cache_bytes=256, level_bits=(4, 6)), SLOW_MLP),
}


@pytest.mark.parametrize("encoder", ENCODERS)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("coherent", [False, True], ids=["random", "walk"])
def test_frame_model_equals_the_chained_models(case, encoder, coherent):
    kw, (d_layers, c_layers) = CASES[case]
    p = _params(**kw)
    rng = np.random.default_rng(len(case) + coherent)
    n = 24
    coords = _walk(rng, n, p.coord_bits, 60) if coherent else rng.integers(0, 1 << p.coord_bits, size=(n, 3))
    dens, col = _mlp(d_layers), _mlp(c_layers)
    ref = chained(ENCODERS[encoder], p, coords, DRAM, dens, col)
    r = memory_frame_perf(p, coords, dram=DRAM, mlp_T={"density": dens.T, "color": col.T}, transfers=True)
    np.testing.assert_array_equal(r.transfers["encoder"], ref["out"])
    np.testing.assert_array_equal(r.transfers["accept"], ref["accept"])
    np.testing.assert_array_equal(r.transfers["density"], ref["density"])
    np.testing.assert_array_equal(r.transfers["color"], ref["color"])
    assert r.cycles == int(ref["color"][-1]) + 1
    assert [lv["misses"] for lv in r.levels] == ref["misses"].tolist()
    if "hits" in ref:
        assert [lv["hits"] for lv in r.levels] == np.asarray(ref["hits"]).tolist()
    assert r.stall_cycles == ref["stall_cycles"] > 0
    assert r.requests == int(ref["misses"].sum())
    if "row" in ref:
        assert (r.row["hit"], r.row["closed"], r.row["conflict"]) == ref["row"] and r.dram_bytes == ref["dram_bytes"]


def test_the_cases_exercise_what_they_claim():
    # tiny cache: most accesses miss; resident levels exist; backpressure from a slow MLP happens
    p = _params(**CASES["1lane-direct-mapped-tiny-cache"][0])
    coords = np.random.default_rng(0).integers(0, 1 << p.coord_bits, size=(24, 3))
    r = memory_frame_perf(p, coords, dram=DRAM, mlp_T={"density": 8, "color": 4})
    assert all(lv["hit_rate"] < 0.5 for lv in r.levels[1:]) and r.bottleneck == "memory"
    p = _params(**CASES["2lanes-4ways-resident-odd-levels"][0])
    assert any(p.layout.resident) and not all(p.layout.resident)
    dens, col = _mlp(SLOW_MLP[0]), _mlp(SLOW_MLP[1])
    assert col.T > dens.T > p.groups  # density faster than colour: its FIFO fills, it is stalled
    coords = _walk(np.random.default_rng(1), 24, p.coord_bits, 60)
    assert chained(_reference_encoder, p, coords, DRAM, dens, col)["stalled"]


@settings(max_examples=12)
@given(lanes=st.sampled_from([1, 2, 3]), ways=st.sampled_from([1, 2, 4]), sets_log=st.integers(0, 3),
       bits=st.lists(st.integers(2, 8), min_size=3, max_size=3), resident=st.sampled_from([0, 200, 2000]),
       t_d=st.sampled_from([[(1, 1, 2, 2)], [(2, 3, 3, 2)]]), seed=st.integers(0, 1 << 16))
def test_frame_model_equals_the_reference_on_random_params(lanes, ways, sets_log, bits, resident, t_d, seed):
    p = _params(levels=3, lanes=lanes, ways=ways, cache_bytes=16 * ways << sets_log, level_bits=tuple(bits),
                resident_bytes=resident)
    coords = _walk(np.random.default_rng(seed), 16, p.coord_bits, 200)
    dens, col = _mlp(t_d), _mlp([(1, 2, 2, 3)])
    r = memory_frame_perf(p, coords, dram=DRAM, mlp_T={"density": dens.T, "color": col.T}, transfers=True)
    for encoder in ENCODERS.values():
        ref = chained(encoder, p, coords, DRAM, dens, col)
        np.testing.assert_array_equal(r.transfers["color"], ref["color"])
        assert [lv["misses"] for lv in r.levels] == ref["misses"].tolist()


def test_replay_level_lru_victim_counts_the_touches_before_the_fill():
    # one set of 2 ways, entries per line 1: lines 0 and 1 filled by point 0; point 1 hits line 0
    # (touch: line 1 becomes LRU) and misses line 2, which therefore evicts line 1, not line 0
    idx = np.array([[0, 1, 0, 1, 0, 1, 0, 1], [0, 2, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0]])
    counts, lines = replay_level(idx, per_line=1, sets=1, ways=2, resident=False)
    assert counts.tolist() == [2, 1, 1] and lines.tolist() == [0, 1, 2, 1]
    # direct mapped, two sets: lines 0 and 2 share set 0 and evict each other within one point
    counts, lines = replay_level(np.array([[0, 2, 0, 2, 1, 3, 1, 3]]), per_line=1, sets=2, ways=1, resident=False)
    assert counts.tolist() == [4] and lines.tolist() == [0, 2, 1, 3]
    # resident: each line read once, never evicted
    idx = np.random.default_rng(0).integers(0, 40, size=(50, 8))
    counts, lines = replay_level(idx, per_line=4, sets=5, ways=2, resident=True)
    assert sorted(lines.tolist()) == sorted(set((idx // 4).ravel().tolist()))


def test_fused_corner_indices_equal_the_grid():
    p = _params(levels=4, n_max=128, log2_table_size=9, level_bits=(8, 4, 3, 6))
    coords = np.random.default_rng(3).integers(0, 1 << p.coord_bits, size=(300, 3))
    lay = p.layout
    assert any(p.dense) and not all(p.dense)
    for level, f in enumerate(level_fills(p, coords)):
        cell = (coords * p.resolutions[level]) >> p.coord_bits
        idx = grid.corner_indices(cell, p.resolutions[level], p.log2_table_size)
        counts, lines = replay_level(idx, per_line=lay.per_line[level], sets=lay.sets[level], ways=p.ways,
                                     resident=lay.resident[level])
        np.testing.assert_array_equal(f.counts, counts)
        np.testing.assert_array_equal(f.lines, lines)


def test_policy_lookup_equals_the_full_model():
    p = _params(levels=4, n_max=64, resident_bytes=600, cache_bytes=64)
    coords = _walk(np.random.default_rng(5), 200, p.coord_bits, 40)
    stats = level_stats(p, coords, [3, 4, 8])
    mlp = {"density": 12, "color": 20}
    for bits in [(8, 8, 8, 8), (3, 4, 8, 3), (4, 3, 3, 4)]:
        q = dataclasses.replace(p, level_bits=bits)
        full = memory_frame_perf(q, coords, dram=DRAM, mlp_T=mlp)
        fast = policy_perf(stats, bits, dram=DRAM, mlp_T=mlp)
        assert fast.to_dict() == full.to_dict()
    assert any(dataclasses.replace(p, level_bits=b).layout.resident[1] for b in [(3, 4, 8, 3)])
    with pytest.raises(KeyError, match="level 0 at 5 bits"):
        policy_perf(stats, (5, 8, 8, 8), dram=DRAM, mlp_T=mlp)


def test_bottleneck_names_memory_encoder_or_the_slowest_engine():
    coords = _walk(np.random.default_rng(2), 300, 12, 3)
    cached = _params(levels=4, lanes=1, cache_bytes=64)
    big = _params(levels=4, lanes=1, resident_bytes=1 << 16)  # every level resident: misses only once per line
    assert memory_frame_perf(cached, coords, dram=DRAM, mlp_T={"density": 4, "color": 4}).bottleneck == "memory"
    r = memory_frame_perf(big, coords, dram=DRAM, mlp_T={"density": 4, "color": 4})
    assert r.bottleneck == "encoder" and r.engines["encoder"]["stall_cycles"] < 300 * 4
    r = memory_frame_perf(big, coords, dram=DRAM, mlp_T={"density": 4, "color": 200})
    assert r.bottleneck == "color" and r.engines["color"]["utilization"] > 0.95
    assert r.dram_bytes == r.requests * 32 and sum(r.row.values()) == r.requests


def test_estimate_from_chunks_is_close_to_exact_on_a_homogeneous_stream():
    p = _params(levels=4, lanes=2, n_max=64, cache_bytes=64)
    coords = np.random.default_rng(9).integers(0, 1 << p.coord_bits, size=(4000, 3))  # stationary
    mlp = {"density": 12, "color": 20}
    exact = memory_frame_perf(p, coords, dram=DRAM, mlp_T=mlp)
    est = memory_frame_perf(p, coords, dram=DRAM, mlp_T=mlp, every=2, chunk=500)
    assert est.samples == exact.samples and est.levels[0]["accesses"] == 8 * 4000
    assert est.cycles == pytest.approx(exact.cycles, rel=0.05) and est.cycles != exact.cycles
    assert est.requests == pytest.approx(exact.requests, rel=0.05)
    half = memory_frame_perf(p, np.concatenate([coords[i:i + 500] for i in range(0, 4000, 1000)]), dram=DRAM,
                             mlp_T=mlp)
    assert est.requests == 2 * half.requests and est.stall_cycles == 2 * half.stall_cycles
