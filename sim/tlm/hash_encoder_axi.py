"""Cycle-for-cycle transaction-level model of ``hw.hash_encoder_axi.HashEncoderAxi``: the hash encoder
whose tables live in external DRAM, read through AXI4 behind a per-lane, per-level partitioned
set-associative LRU cache with one blocking miss handler.

The contract is ``hw/hash_encoder_axi/CYCLES.md``; the table layout (lines, sets, tags, addresses) is
``hw.hash_encoder_axi.params.TableLayout``; the memory side is ``sim.memory.dram.AxiReadResponder``
(a fresh one per call, so runs are reproducible). Imports no Amaranth.

Cycle numbering: cycle 0 is the first cycle after reset is released; a transfer "at cycle t" means
valid and ready were both high when cycle t's closing rising edge sampled them.

Model:

* Datapath: the on-chip encoder's arithmetic, ``sim.tlm.hash_encoder.HashEncoderTLM`` built on the
  equivalent ``HashEncoderParams`` (per-level codes of b_l bits are plain signed integers there).
* Pipeline: stage 0 (issue register, one level group per cycle, G groups per point), stages 1-6, the
  output FIFO of ``fifo_depth`` entries and as many input credits, as ``HashEncoderTLM.schedule``; plus
  the global stall: while the token in stage 3 has a missing corner, stages 0-6 freeze (the FIFO still
  pops) and input ready is low. Input ready is also low during the clear phase, cycles 0..D-1.
* Cache: per lane, ``ways`` (valid, tag) per set and LRU ages; a line is identified by its byte
  address (``TableLayout.line_address``), which is equivalent to (set, tag) within a lane because every
  level has its own partition.
* Miss handler: the first missing (lane, corner) of stage 3, lane-major then corner order, is fetched
  in one AXI burst; the refill is written at the edge of the last beat and visible one cycle later.
  Since nothing but the FIFO can change while a fill is outstanding, the model jumps over the cycles
  from the decision to the last beat, only popping the FIFO in them.

The victim is chosen at the refill (cycle u of the last beat) from the set's ages then (CYCLES.md), so
it includes the touches of the decision edge: a corner that hits in a token's first stage-3 cycle
touches its way before a missing corner of the same set picks its victim
(``test_victim_is_chosen_after_the_same_edge_touches``). No touch happens between the decision and u
(only a refill makes a new hit), so a refill's touch and the step-1 touches never meet at one edge.

Readings of the contract where it leaves a choice (the simplest reading each time):

* The table range check (codes in signed b_l bits) covers the entries a level stores, ``E_l`` of them
  (``(N_l + 1)^3`` for a dense level, T for a hashed one), exactly what ``TableLayout.pack`` writes to
  DRAM; entries past ``E_l`` are never read and are ignored (zeroed for the datapath model).
* DRAM bytes: each request's ``line_bytes`` rounded up to whole ``burst_bytes`` bursts, summed
  (``sim.memory.dram``: "DRAM bytes of a request are its bytes rounded up to whole bursts").
* ``cycles`` is 0 for no points (as ``HashEncoderTLM``).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass

import numpy as np

from hw.hash_encoder.params import HashEncoderParams
from hw.hash_encoder_axi.params import HashEncoderAxiParams
from sim.memory.dram import AxiReadResponder, DelayPattern, DramTiming
from sim.tlm.hash_encoder import HashEncoderTLM, pack_features
from sim.tlm.transfers import ReadyPattern, check_offers

__all__ = ["HashEncoderAxiTLM", "AxiSchedule", "AxiTLMResult", "Request"]

#: One AXI read: (ARVALID rise cycle, AR transfer cycle, ARADDR, level, lane, cycle of every R beat).
Request = tuple[int, int, int, int, int, tuple[int, ...]]


@dataclass(frozen=True)
class AxiSchedule:
    """Timing and counters of one run of N points (L levels).

    Attributes:
        accept_cycles: int64 (N,), cycle of each input transfer.
        out_cycles: int64 (N,), cycle of each output transfer (outputs leave in input order).
        cycles: last output transfer cycle + 1 (0 for no points).
        clear_cycles: D, cycles of the clear phase (input ready low in cycles 0..D-1).
        requests: every AXI read in order, ``(ar_valid_cycle, ar_cycle, addr, level, lane, beat_cycles)``:
            the cycle ARVALID rose, the AR transfer cycle, the byte address, the level and lane of the
            missing corner and the tuple of the ``beats`` R transfer cycles.
        hits, misses: int64 (L,), per level; misses = line fills, hits = 8 N - misses.
        stall_cycles: cycles with ``stall`` (stage 3 valid with a missing corner).
        dram_outcomes: (row hits, bank closed, row conflicts) counts of the requests.
        dram_bytes: bytes read from DRAM, each request rounded up to whole bursts.
    """

    accept_cycles: np.ndarray
    out_cycles: np.ndarray
    cycles: int
    clear_cycles: int
    requests: list[Request]
    hits: np.ndarray
    misses: np.ndarray
    stall_cycles: int
    dram_outcomes: tuple[int, int, int]
    dram_bytes: int


@dataclass(frozen=True)
class AxiTLMResult(AxiSchedule):
    """``AxiSchedule`` plus the data.

    Attributes:
        features: int array (N, L, F), output features (signed, ``out_bits`` wide, C fractional bits).
        payloads: N output payloads, ``pack_features(features[i].ravel(), out_bits)``.
    """

    features: np.ndarray
    payloads: list[int]


def _touch(ages: list[int], way: int) -> None:
    """LRU touch: every age below ``ages[way]`` grows by one, ``ages[way]`` becomes 0."""
    a = ages[way]
    if a:
        for x, b in enumerate(ages):
            if b < a:
                ages[x] = b + 1
        ages[way] = 0


class HashEncoderAxiTLM:
    """Model of one ``HashEncoderAxi`` instance (module docstring).

    Args:
        params: the engine parameters.
        tables: int array (L, T, F); level l's stored entries (the first ``E_l``) are signed ``b_l``-bit
            codes, b_l = ``params.bits[l]``.
        dram: the DRAM timing in accelerator cycles (``DramTiming.of(preset, clock_mhz, bus_bytes)``).
        delays: extra responder delays (``DelayPattern``); None: none.

    Raises:
        ValueError: wrong table shape or dtype, or a code outside its level's range, naming the level,
            index and value.
    """

    def __init__(self, params: HashEncoderAxiParams, tables, *, dram: DramTiming,
                 delays: DelayPattern | None = None) -> None:
        p = params
        self.params = p
        self.layout = p.layout
        self.dram = dram
        self.delays = delays
        used = self.layout.stored_codes(tables)  # entries past E_l are never stored nor read
        base = HashEncoderParams(**{f.name: getattr(p, f.name) for f in dataclasses.fields(HashEncoderParams)})
        self.encoder = HashEncoderTLM(base, used)

    @property
    def clear_cycles(self) -> int:
        """D = the most sets of any lane's cache (one set cleared per cycle per lane)."""
        return max(self.layout.lane_sets)

    # --- timing -----------------------------------------------------------------------------
    def schedule(self, coords, offer_cycles=None, ready=None) -> AxiSchedule:
        """Transfer cycles, AXI requests and counters for N points.

        Args:
            coords: int (N, 3), fixed-point codes in [0, 2**C) (as ``HashEncoderTLM``).
            offer_cycles: int (N,), the first cycle point i may be offered; the source offers in order,
                point i from ``max(offer_cycles[i], accept[i-1] + 1)`` until accepted. None: all 0.
            ready: bool (R,), output ready in each cycle; cycles >= R are ready. None: always ready.
        """
        p, lay = self.params, self.layout
        idx = self.encoder.indices(coords)  # (N, L, 8); checks the codes
        n = len(idx)
        offers = check_offers(offer_cycles, n, "points")
        ready_at = ReadyPattern(ready)
        levels, lanes, ways = p.levels, p.lanes, p.ways
        groups, g_last, depth = p.groups, p.groups - 1, p.fifo_depth
        last_stage = p.PIPELINE_STAGES  # stage 3 looks up; the last stage pushes into the FIFO
        clear = self.clear_cycles

        # Per (point, level, corner): line address (the cache key) and set within the lane's cache.
        addr = np.empty_like(idx)
        sets = np.empty_like(idx)
        for level in range(levels):
            line, _ = lay.line_of(level, idx[:, level])
            addr[:, level] = lay.line_address(level, line)
            sets[:, level] = lay.set_tag(level, line)[0]
        addr_l, sets_l = addr.tolist(), sets.tolist()

        # Cache per lane: where[j] maps a resident line address to its way; lines[j][s][w] is the address
        # in way w of set s (-1 invalid); ages[j][s] the LRU ages. Reset state (after the clear phase).
        where = [dict() for _ in range(lanes)]
        lines = [[[-1] * ways for _ in range(lay.lane_sets[j])] for j in range(lanes)]
        ages = [[list(range(ways)) for _ in range(lay.lane_sets[j])] for j in range(lanes)]

        responder = AxiReadResponder(self.dram, p.beats, self.delays)
        requests: list[Request] = []
        misses = np.zeros(levels, dtype=np.int64)
        accept = np.full(n, -1, dtype=np.int64)
        out = np.full(n, -1, dtype=np.int64)

        slots: list[tuple[int, int] | None] = [None] * (last_stage + 1)  # (point, group) per stage
        got = [[False] * 8 for _ in range(lanes)]  # corners of the stage-3 token already hit
        fifo: deque[int] = deque()
        pending = None  # point pushed at the last edge, visible in the FIFO from this cycle
        credits = nxt = done = stall_cycles = 0
        t = 0
        while done < n:
            if pending is not None:
                fifo.append(pending)
                pending = None
            elif not fifo and nxt < n and slots.count(None) == len(slots):
                t = max(t, clear, int(offers[nxt]))  # nothing can change before the next input

            # Stage 3: hits (cache state of cycle t), touches at edge t, first missing corner.
            stall = False
            target = None
            s3 = slots[3]
            if s3 is not None:
                i, g = s3
                for j in range(lanes):
                    level = g * lanes + j
                    if level >= levels:
                        break
                    gj, wj, aj = got[j], where[j], ages[j]
                    a_il, s_il = addr_l[i][level], sets_l[i][level]
                    for c in range(8):
                        if gj[c]:
                            continue
                        w = wj.get(a_il[c])
                        if w is None:
                            if not stall:
                                stall, target = True, (j, level, c)
                        else:
                            if ways > 1:
                                _touch(aj[s_il[c]], w)
                            gj[c] = True  # got <- got or hit (reset below if the pipeline advances)

            in_fire = (not stall and t >= clear and nxt < n and offers[nxt] <= t
                       and (slots[0] is None or slots[0][1] == g_last) and credits < depth)
            o_fire = bool(fifo) and ready_at(t)

            # Closing edge of cycle t.
            if o_fire:
                out[fifo.popleft()] = t
                done += 1
                credits -= 1
            if not stall:
                s_last = slots[last_stage]
                if s_last is not None and s_last[1] == g_last:
                    pending = s_last[0]
                s0 = slots[0]
                slots[1:] = slots[:-1]
                if in_fire:
                    accept[nxt] = t
                    slots[0] = (nxt, 0)
                    nxt += 1
                    credits += 1
                elif s0 is not None and s0[1] < g_last:
                    slots[0] = (s0[0], s0[1] + 1)
                else:
                    slots[0] = None
                if s3 is not None:
                    got = [[False] * 8 for _ in range(lanes)]
            else:
                # Miss handler, IDLE (it always is when a stall is evaluated: the model completes each
                # fill at once): decide at edge t, ARVALID from t + 1, write at the last beat's edge u.
                j, level, c = target
                i = s3[0]
                line_addr = addr_l[i][level][c]
                s = sets_l[i][level][c]
                ar_cycle, beats = responder.serve(t + 1, line_addr)
                requests.append((t + 1, ar_cycle, line_addr, level, j, tuple(beats)))
                misses[level] += 1
                u = beats[-1]
                # Cycles t+1..u: everything frozen but the FIFO, which may still pop.
                tt = t + 1
                while fifo and tt <= u:
                    if ready_at(tt):
                        out[fifo.popleft()] = tt
                        done += 1
                        credits -= 1
                    tt += 1
                stall_cycles += u - t + 1
                # Refill at edge u: the victim from the set's ages at u (they include edge t's touches).
                victim = ages[j][s].index(ways - 1)
                old = lines[j][s][victim]
                if old >= 0:
                    del where[j][old]
                lines[j][s][victim] = line_addr
                where[j][line_addr] = victim
                if ways > 1:
                    _touch(ages[j][s], victim)
                t = u
            t += 1

        hits = 8 * n - misses
        burst = self.dram.burst_bytes
        per_request = -(-p.line_bytes // burst) * burst
        return AxiSchedule(
            accept_cycles=accept, out_cycles=out, cycles=int(out.max()) + 1 if n else 0, clear_cycles=clear,
            requests=requests, hits=hits, misses=misses, stall_cycles=stall_cycles,
            dram_outcomes=tuple(int(x) for x in responder.dram.outcomes), dram_bytes=len(requests) * per_request)

    def run(self, coords, offer_cycles=None, ready=None) -> AxiTLMResult:
        """Predict a whole run: ``schedule`` plus the output features and payloads (``HashEncoderTLM.encode``)."""
        sched = self.schedule(coords, offer_cycles, ready)
        feats = self.encoder.encode(coords)
        bits = self.params.out_bits
        payloads = [pack_features(f.ravel(), bits) for f in feats]
        return AxiTLMResult(**{f.name: getattr(sched, f.name) for f in dataclasses.fields(AxiSchedule)},
                            features=feats, payloads=payloads)
