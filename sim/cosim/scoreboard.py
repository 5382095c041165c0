"""Scoreboard: compares observed stream transfers with the TLM's predictions (no simulator needed).

In the style of cocotb's matrix_multiplier example: a monitor pushes each transfer, the scoreboard
checks it against the model's prediction in order, and ``finish`` reports anything never seen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["Mismatch", "Scoreboard", "inject_fault"]


@dataclass(frozen=True)
class Mismatch:
    """One disagreement. ``kind`` is "cycle", "payload", "missing" or "unexpected"."""

    stream: str
    index: int
    kind: str
    expected: int | None
    actual: int | None

    def to_dict(self) -> dict:
        return asdict(self)


class Scoreboard:
    """Checks transfers ``(cycle, payload)`` of one stream against an expected list, in order.

    Args:
        stream: a name for messages ("i", "o").
        expected: ``[(cycle, payload), ...]`` predicted by the model.
    """

    def __init__(self, stream: str, expected: list[tuple[int, int]]):
        self.stream = stream
        self.expected = list(expected)
        self.seen = 0
        self.mismatches: list[Mismatch] = []

    def check(self, cycle: int, payload: int) -> None:
        """Compare the next observed transfer; each wrong cycle or payload adds one ``Mismatch``."""
        i = self.seen
        self.seen += 1
        if i >= len(self.expected):
            self.mismatches.append(Mismatch(self.stream, i, "unexpected", None, payload))
            return
        exp_cycle, exp_payload = self.expected[i]
        if cycle != exp_cycle:
            self.mismatches.append(Mismatch(self.stream, i, "cycle", exp_cycle, cycle))
        if payload != exp_payload:
            self.mismatches.append(Mismatch(self.stream, i, "payload", exp_payload, payload))

    def finish(self) -> list[Mismatch]:
        """Record every expected transfer never observed; returns all mismatches."""
        for i in range(self.seen, len(self.expected)):
            self.mismatches.append(Mismatch(self.stream, i, "missing", self.expected[i][1], None))
        self.seen = max(self.seen, len(self.expected))
        return self.mismatches


def inject_fault(expected: list[tuple[int, int]], fault: str | None) -> list[tuple[int, int]]:
    """A deliberately wrong model, to show the scoreboard catches it.

    ``"cycle"``: the middle transfer (index ``len // 2``) predicted one cycle late. ``"bit"``: bit 0 of
    its payload flipped. ``None`` or ``""``: ``expected`` unchanged.
    """
    if not fault:
        return expected
    out = list(expected)
    i = len(out) // 2
    cycle, payload = out[i]
    if fault == "cycle":
        out[i] = (cycle + 1, payload)
    elif fault == "bit":
        out[i] = (cycle, payload ^ 1)
    else:
        raise ValueError(f"fault must be 'cycle' or 'bit', not {fault!r}")
    return out
