"""RTL pieces every engine shares (Amaranth 0.5): index shapes, adder trees, configuration-word
layouts, the stream output queue, and the fixed-point output helpers of the matrix-vector engines
(``named``, ``round_half_even``, ``rounding_masks``, ``clamp``, ``queue``; used by ``hw.hadamard`` and
``hw.fixed_mv``).

Imports Amaranth; the params modules and ``hw.registry`` never import this module.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Shape, Signal, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["index_range", "adder_tree", "config_layout", "StreamQueue", "named", "round_half_even", "clamp",
           "config_reg", "rounding_masks", "queue"]


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


# --- fixed-point output helpers (each adds to a module ``m``; the signal names they create are part of
# the engines' Verilog, so keep them stable) --------------------------------------------------------------
def named(m: Module, expr, name: str) -> Signal:
    """A named combinational copy of ``expr`` (for an expression with several readers: built once)."""
    sig = Signal(expr.shape(), name=name)
    m.d.comb += sig.eq(expr)
    return sig


def round_half_even(m: Module, prod, shift, guard, sticky, tag: str) -> Signal:
    """``rne(prod, shift)`` = q + (g & (s | q_0)): q = prod >> shift (arithmetic), g the guard bit (bit
    shift - 1 of prod, selected by the mask ``guard``), s the OR of the bits below it (mask ``sticky``),
    q_0 the low bit of q; both masks are 0 for shift 0 (``rounding_masks`` registers them)."""
    q = named(m, prod >> shift, f"{tag}_q")
    low = prod.as_unsigned()[:len(guard)]
    return named(m, q + ((low & guard).any() & ((low & sticky).any() | q[0])), f"{tag}_rne")


def clamp(m: Module, y, limit, neg_limit, bits: int, tag: str) -> Signal:
    """The low ``bits`` bits of y clamped to [neg_limit, limit] (the comparisons use all of y): the
    two's-complement code when the limits fit in ``bits`` signed bits."""
    return named(m, Mux(y > limit, limit.as_unsigned()[:bits],
                        Mux(y < neg_limit, neg_limit.as_unsigned()[:bits], y[:bits])), f"{tag}_code")


def config_reg(m: Module, en, name: str, shape, init, value) -> Signal:
    """A register loaded with ``value`` while ``en`` (a configuration write), ``init`` at reset."""
    reg = Signal(shape, name=name, init=init)
    with m.If(en):
        m.d.sync += reg.eq(value)
    return reg


def rounding_masks(m: Module, en, shift, width: int, tag: str) -> tuple[Signal, Signal]:
    """Registers of the masks ``round_half_even`` needs for a ``width``-bit product: guard bit ``shift - 1``
    and the sticky bits below it, from the ``shift`` being written while ``en`` (0 at reset), so that the
    datapath decodes no shift."""
    guard = config_reg(m, en, f"{tag}_guard_mask", width - 1, 0, Cat(*[shift == b + 1 for b in range(width - 1)]))
    sticky = config_reg(m, en, f"{tag}_sticky_mask", width - 1, 0, Cat(*[shift > b + 1 for b in range(width - 1)]))
    return guard, sticky


def queue(m: Module, name: str, width, depth: int, push, value, pop):
    """A ``StreamQueue`` of ``depth`` entries as submodule ``name``; push and pop may coincide.

    Returns:
        ``(head, level)``: the head entry and the entries held.
    """
    q = StreamQueue(shape=width, depth=depth)
    m.submodules[name] = q
    m.d.comb += [q.w_en.eq(push), q.w_data.eq(value), q.o.ready.eq(pop)]
    return q.o.payload, q.level
