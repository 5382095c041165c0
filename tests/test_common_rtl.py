"""hw.common: the shared stream output queue (on amaranth.lib.fifo) and helpers, in Amaranth's simulator."""

import pytest
from amaranth.sim import Simulator

from hw.common import StreamQueue, adder_tree, index_range


def _run(depth, pushes, ready, cycles):
    """Drive ``w_en``/``w_data`` from ``pushes`` ({cycle: value}) and ``o.ready`` from ``ready`` (a set of
    cycles); returns the (cycle, payload) of every output transfer and the level per cycle."""
    dut = StreamQueue(shape=8, depth=depth)
    seen, levels = [], []

    async def bench(ctx):
        for t in range(cycles):
            ctx.set(dut.w_en, t in pushes)
            ctx.set(dut.w_data, pushes.get(t, 0))
            ctx.set(dut.o.ready, t in ready)
            levels.append(ctx.get(dut.level))
            if ctx.get(dut.o.valid) and t in ready:
                seen.append((t, ctx.get(dut.o.payload)))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen, levels


def test_an_entry_leaves_the_cycle_after_its_push():
    # the timing of the hand-written FIFOs it replaces: valid the cycle after the push
    seen, _ = _run(3, {0: 11, 1: 22}, ready=set(range(10)), cycles=6)
    assert seen == [(1, 11), (2, 22)]


def test_push_and_pop_coincide_and_order_holds_under_backpressure():
    pushes = {0: 1, 1: 2, 2: 3, 5: 4, 6: 5}
    seen, levels = _run(3, pushes, ready={4, 5, 6, 7, 9, 10}, cycles=12)
    assert [v for _, v in seen] == [1, 2, 3, 4, 5]
    assert [t for t, _ in seen] == [4, 5, 6, 7, 9]
    assert max(levels) == 3 and levels[6] == 2  # cycle 5: push 4 and pop 2 together kept the level


def test_depth_one_and_bad_depth():
    seen, _ = _run(1, {0: 7, 2: 8}, ready={1, 3}, cycles=5)
    assert seen == [(1, 7), (3, 8)]
    with pytest.raises(ValueError, match="depth must be an integer >= 1, not 0"):
        StreamQueue(shape=8, depth=0)


def test_helpers():
    assert index_range(1) == range(2) and index_range(5) == range(5)
    assert adder_tree([1, 2, 3, 4, 5]) == 15
