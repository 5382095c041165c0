"""cocotb drivers and monitors for ``amaranth.lib.stream`` interfaces (valid / ready / payload).

Every component counts cycles from the clock edge at which it is started: cycle 0 is the cycle right
after that edge, and a transfer at cycle t is one where valid and ready were high when the edge
closing cycle t sampled them. Start all components of one run at the same edge.
"""

from __future__ import annotations

from collections.abc import Sequence

import cocotb
from cocotb.queue import Queue
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["StreamSource", "StreamSink", "StreamMonitor"]


class StreamSource:
    """Drives a stream input: item i is offered from ``max(offer_cycles[i], accept of i-1 + 1)``.

    The payload holds and valid stays high until the transfer, as the stream rules require.
    """

    def __init__(self, clk, bus: str, dut, items: Sequence[int], offer_cycles: Sequence[int]):
        if len(items) != len(offer_cycles):
            raise ValueError(f"{len(items)} items but {len(offer_cycles)} offer cycles")
        self.clk = clk
        self.valid = getattr(dut, f"{bus}__valid")
        self.ready = getattr(dut, f"{bus}__ready")
        self.payload = getattr(dut, f"{bus}__payload")
        self.items = list(items)
        self.offers = [int(c) for c in offer_cycles]
        self.valid.value = 0

    def start(self):
        return cocotb.start_soon(self._run())

    async def _run(self) -> None:
        cycle, i, n = 0, 0, len(self.items)
        while i < n:
            offering = cycle >= self.offers[i]
            self.valid.value = int(offering)
            if offering:
                self.payload.value = self.items[i]
            await ReadOnly()
            fired = offering and bool(self.ready.value)
            await RisingEdge(self.clk)
            i += fired
            cycle += 1
        self.valid.value = 0


class StreamSink:
    """Drives a stream output's ready from a pattern: ``pattern[t]`` in cycle t, ready past its end."""

    def __init__(self, clk, bus: str, dut, pattern: Sequence[bool]):
        self.clk = clk
        self.ready = getattr(dut, f"{bus}__ready")
        self.pattern = [bool(x) for x in pattern]
        self.ready.value = 0

    def start(self):
        return cocotb.start_soon(self._run())

    async def _run(self) -> None:
        cycle, n = 0, len(self.pattern)
        while True:
            self.ready.value = int(self.pattern[cycle]) if cycle < n else 1
            await RisingEdge(self.clk)
            cycle += 1


class StreamMonitor:
    """Puts ``(cycle, payload)`` of every transfer on a stream into ``queue``; counts them in ``count``."""

    def __init__(self, clk, bus: str, dut):
        self.clk = clk
        self.valid = getattr(dut, f"{bus}__valid")
        self.ready = getattr(dut, f"{bus}__ready")
        self.payload = getattr(dut, f"{bus}__payload")
        self.queue: Queue[tuple[int, int]] = Queue()
        self.count = 0

    def start(self):
        return cocotb.start_soon(self._run())

    async def _run(self) -> None:
        cycle = 0
        while True:
            await ReadOnly()
            if self.valid.value and self.ready.value:
                self.queue.put_nowait((cycle, int(self.payload.value)))
                self.count += 1
            await RisingEdge(self.clk)
            cycle += 1
