"""RTL pieces every engine shares (Amaranth 0.5): index shapes, adder trees, configuration-word
layouts, and the stream output queue.

Imports Amaranth; the params modules and ``hw.registry`` never import this module.
"""

from __future__ import annotations

from amaranth.hdl import Module, Shape, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["index_range", "adder_tree", "config_layout", "StreamQueue"]


def index_range(n: int) -> range:
    """The shape of an index signal for n values: ``range(max(n, 2))``, so it is at least one bit wide."""
    return range(max(n, 2))


def adder_tree(terms: list):
    """The sum of ``terms`` (Amaranth values) as a balanced adder tree; of 1-bit terms, their popcount."""
    while len(terms) > 1:
        pairs = [terms[k] + terms[k + 1] for k in range(0, len(terms) - 1, 2)]
        terms = pairs + ([terms[-1]] if len(terms) % 2 else [])
    return terms[0]


def config_layout(params) -> data.StructLayout:
    """A configuration word: the fields of ``params.config_fields`` (``(name, bits)`` from bit 0 up),
    all unsigned. The one layout of the RTL's ``cfg`` ports; drivers pack it with
    ``sim.tlm.transfers.config_word``."""
    return data.StructLayout({name: unsigned(bits) for name, bits in params.config_fields})


class StreamQueue(wiring.Component):
    """A first-in first-out queue of ``depth`` entries with a stream output: the engines' output FIFO.

    Built on ``amaranth.lib.fifo.SyncFIFO`` (storage in a memory with an asynchronous read port, so
    the head is on ``o.payload`` in the cycle after its push, with ``o.valid``): an entry pushed in
    cycle t can transfer in cycle t + 1, and a push and a pop may coincide. The buffered variant
    (``SyncFIFOBuffered``) would add a cycle of latency and change every engine's timing.

    Ports: ``w_en``, ``w_data`` (push ``w_data`` while ``w_en``), ``o`` (``stream.Signature(shape)``),
    ``level`` (entries held, 0 .. depth).

    The engines never push into a full queue: an item holds a credit from its input transfer (or
    load) until its output transfer, and there are ``depth`` credits; a push into a full queue would
    be dropped.

    Args:
        shape: the entry's shape (an int width or a layout); depth: entries, >= 1.

    Raises:
        ValueError: depth is not a positive integer.
    """

    def __init__(self, *, shape, depth: int):
        from hw.config import check_int

        self._depth = check_int("depth", depth, 1)
        self._shape = shape
        super().__init__({
            "w_en": In(1),
            "w_data": In(shape),
            "o": Out(stream.Signature(shape)),
            "level": Out(range(depth + 1)),
        })

    @property
    def depth(self) -> int:
        return self._depth

    def elaborate(self, platform):
        m = Module()
        # At least two entries: a one-entry SyncFIFO has zero-width pointers, which Yosys writes as
        # `[-1:0]` vectors. The extra entry is never used (the credits keep the level <= depth), so
        # the timing is that of ``depth`` entries.
        storage = max(self._depth, 2)
        m.submodules.fifo = q = fifo.SyncFIFO(width=Shape.cast(self._shape).width, depth=storage)
        m.d.comb += [
            q.w_en.eq(self.w_en),
            q.w_data.eq(self.w_data),
            self.o.valid.eq(q.r_rdy),
            self.o.payload.eq(q.r_data),
            q.r_en.eq(self.o.ready),
            self.level.eq(q.level[:len(self.level)]),
        ]
        return m
