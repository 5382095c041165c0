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
``credit_schedule`` steps the RTL's state cycle by cycle; the tests check it against these formulas.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from hw.config import check_int
from sim.tlm.transfers import ReadyPattern, check_offers

__all__ = ["credit_schedule", "stream_cycles"]


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
    check_int("latency", latency, 1)
    check_int("depth", depth, 1)
    offers = check_offers(offer_cycles)
    ready_at = ReadyPattern(ready)
    n = len(offers)
    accept = np.full(n, -1, dtype=np.int64)
    out = np.full(n, -1, dtype=np.int64)
    fifo: deque[tuple[int, int]] = deque()  # (first cycle visible at the output, vector): one per credit
    nxt = done = 0
    t = 0
    while done < n:
        o_fire = bool(fifo) and fifo[0][0] <= t and ready_at(t)
        in_fire = nxt < n and offers[nxt] <= t and len(fifo) < depth
        # --- closing edge of cycle t ---
        if in_fire:
            accept[nxt] = t
            fifo.append((t + latency, nxt))
            nxt += 1
        if o_fire:
            out[fifo.popleft()[1]] = t
            done += 1
        t += 1
        if not fifo and nxt < n and offers[nxt] > t:
            t = int(offers[nxt])  # idle until the next offer
    return accept, out


def stream_cycles(vectors: int, latency: int) -> int:
    """Total cycles (last output transfer + 1) of ``vectors`` vectors all offered at cycle 0 with the
    output always ready: ``vectors + L`` (0 for no vectors)."""
    if check_int("vectors", vectors, 0) == 0:
        return 0
    return vectors + check_int("latency", latency, 1)
