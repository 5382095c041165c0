"""Timing of a unit built as a fixed-latency pipeline in front of an output FIFO with input credits (the
activation unit, the requantizer): one vector per cycle, backpressure through the credits.

The RTL: an input transfer takes one of D credits (D = the output FIFO's entries); the vector moves
through registers that never stall and is pushed into the FIFO L - 1 cycles after its input transfer,
visible at the FIFO's output from L cycles after it; its output transfer returns the credit, usable
in the next cycle. ``i.ready`` is ``credits in use < D`` (no combinational path from ``o.ready``), so
at full rate (output always ready) D = L + 1 keeps II = 1.

With vector k offered from ``offer_k``, ``ready[t]`` the output's ready, and terms with a negative index
left out::

    a_k = max(offer_k, a_{k-1} + 1, o_{k-D} + 1)                    input transfer (a credit is free)
    o_k = min{t >= max(a_k + L, o_{k-1} + 1) : ready[t]}            output transfer

Hence the latency of a vector that finds the unit idle and the output ready is L, and N vectors
offered at cycle 0 with the output always ready finish (last output transfer + 1) at ``N + L``.
``credit_schedule`` steps the RTL's state cycle by cycle (``CreditPipeTiming``); the tests check it against these
formulas.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from hw.config import check_int
from sim.tlm.transfers import ReadyPattern, check_offers

__all__ = ["credit_schedule", "CreditPipeTiming", "stream_cycles"]


def credit_schedule(offer_cycles, ready, *, latency: int, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Transfer cycles of N vectors through the pipeline, stepping its state one cycle at a time.

    Args:
        offer_cycles: int (N,), the first cycle vector i may be offered (it is offered from
            ``max(offer_cycles[i], accept[i-1] + 1)`` until accepted).
        ready: bool (R,), the output's ready per cycle; cycles >= R are ready. None: always ready.
        latency: L >= 1, cycles from an input transfer to the first cycle its output is valid.
        depth: D >= 1, the output FIFO's entries (input credits).

    Returns:
        ``(accept_cycles, out_cycles)``, int64 (N,).

    State mirrored from the RTL: the credits in use, and the FIFO's entries with the first cycle each
    is visible (the pipeline registers never stall, so a vector accepted at a is visible from a + L).
    Stretches in which nothing can happen (no offer due, nothing visible) are skipped.
    """
    offers = check_offers(offer_cycles)
    ready_at = ReadyPattern(ready)
    n = len(offers)
    accept = np.full(n, -1, dtype=np.int64)
    out = np.full(n, -1, dtype=np.int64)
    state = CreditPipeTiming(latency, depth)
    nxt = done = 0
    while done < n:
        t = state.t
        o_fire = state.out_valid and ready_at(t)
        in_fire = nxt < n and offers[nxt] <= t and state.in_ready
        state.clock(in_fire, o_fire)
        if in_fire:
            accept[nxt] = t
            nxt += 1
        if o_fire:
            out[done] = t
            done += 1
        if state.empty and nxt < n and offers[nxt] > state.t:
            state.idle_until(int(offers[nxt]))  # idle until the next offer
    return accept, out


class CreditPipeTiming:
    """The pipeline's state (module doc), stepped one cycle at a time: what ``credit_schedule`` runs, and what
    ``sim.tlm.top`` composes with the other units of the accelerator top.

    State: the FIFO's entries (one per credit in use), each with the first cycle it is visible at the
    output. In a cycle, ``in_ready`` and ``out_valid`` depend on the state alone; ``clock(in_fire,
    out_fire)`` is the edge that closes the cycle. Vectors are counted, not named (outputs leave in input
    order).

    Args:
        latency: L >= 1; depth: D >= 1 (module doc).
    """

    def __init__(self, latency: int, depth: int) -> None:
        self.latency = check_int("latency", latency, 1)
        self.depth = check_int("depth", depth, 1)
        self.t = 0  # the current cycle
        self.fifo: deque[int] = deque()  # first cycle each vector in flight is visible at the output

    @property
    def in_ready(self) -> bool:
        """``i.ready``: a credit free."""
        return len(self.fifo) < self.depth

    @property
    def out_valid(self) -> bool:
        """``o.valid``: the FIFO's head is visible."""
        return bool(self.fifo) and self.fifo[0] <= self.t

    @property
    def empty(self) -> bool:
        """No vector in flight."""
        return not self.fifo

    def clock(self, in_fire: bool, out_fire: bool) -> None:
        """The edge closing the current cycle: an input transfer (only while ``in_ready``) and an output
        transfer (only while ``out_valid``)."""
        if in_fire:
            self.fifo.append(self.t + self.latency)
        if out_fire:
            self.fifo.popleft()
        self.t += 1

    def idle_until(self, t: int) -> None:
        """Skip to cycle ``t`` (>= the current one) with no transfer: only while ``empty``."""
        if self.fifo or t < self.t:
            raise ValueError(f"idle_until({t}) from cycle {self.t} with {len(self.fifo)} vectors in flight")
        self.t = t


def stream_cycles(vectors: int, latency: int) -> int:
    """Total cycles (last output transfer + 1) of ``vectors`` vectors all offered at cycle 0 with the
    output always ready: ``vectors + L`` (0 for no vectors)."""
    if check_int("vectors", vectors, 0) == 0:
        return 0
    return vectors + check_int("latency", latency, 1)
