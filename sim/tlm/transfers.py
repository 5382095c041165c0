"""What every TLM shares: when inputs are offered and when the output is ready, how vectors are packed
into stream payloads, and range checks of arrays.

Cycle 0 is the first cycle of a run; a transfer "at cycle t" means valid and ready were both high
when cycle t's closing rising edge sampled them (see each engine's TLM).
"""

from __future__ import annotations

import numpy as np

__all__ = ["check_offers", "ReadyPattern", "pack_vector", "unpack_vector", "check_range", "config_word"]


def check_offers(offer_cycles, count: int | None = None, what: str = "vectors") -> np.ndarray:
    """The first cycle each input may be offered, as int64 (N,).

    Args:
        offer_cycles: int sequence (N,) of non-negative cycles, or None for all zeros (a source that
            is always valid; needs ``count``).
        count: the number of inputs N, checked against ``offer_cycles`` when given.
        what: the inputs' name for the error message ("vectors", "points").

    Raises:
        ValueError: not 1-D, a negative cycle, or the wrong length (naming both lengths).
    """
    if offer_cycles is None:
        return np.zeros(count or 0, dtype=np.int64)
    offers = np.asarray(offer_cycles, dtype=np.int64)
    if offers.ndim != 1 or (offers < 0).any():
        raise ValueError("offer_cycles must be a 1-D array of non-negative cycles")
    if count is not None and len(offers) != count:
        raise ValueError(f"offer_cycles has {len(offers)} entries for {count} {what}")
    return offers


class ReadyPattern:
    """The output's ready per cycle: ``ready[t]`` for t < len(ready), ready after; None: always ready.

    ``pattern(t)`` -> bool.
    """

    def __init__(self, ready=None):
        self._ready = None if ready is None else np.asarray(ready, dtype=bool)
        self._len = 0 if self._ready is None else len(self._ready)

    def __call__(self, t: int) -> bool:
        return t >= self._len or bool(self._ready[t])


def pack_vector(values, bits: int) -> int:
    """Stream payload of a vector: element i as ``value mod 2^bits`` at bits [i*bits, (i+1)*bits).

    Signed values are thus sign-extended to ``bits`` (the engine's ``max_act_bits``).
    """
    mask = (1 << bits) - 1
    out = 0
    for i, v in enumerate(values):
        out |= (int(v) & mask) << (i * bits)
    return out


def unpack_vector(payload: int, count: int, bits: int, *, signed: bool) -> list[int]:
    """Inverse of ``pack_vector`` for ``count`` elements, read as two's complement if ``signed``."""
    mask = (1 << bits) - 1
    out = []
    for i in range(count):
        v = (payload >> (i * bits)) & mask
        out.append(v - (1 << bits) if signed and v >> (bits - 1) else v)
    return out


def check_range(a: np.ndarray, lo: int, hi: int, name: str, what: str) -> None:
    """Raise ``ValueError`` naming the first element of ``a`` outside [lo, hi]: ``name[i, j] = v is outside
    the <what> range [lo, hi]``."""
    bad = (a < lo) | (a > hi)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        where = ", ".join(map(str, pos))
        raise ValueError(f"{name}[{where}] = {int(a[pos])} is outside the {what} range [{lo}, {hi}]")


def config_word(params, layer) -> int:
    """The ``cfg.data`` word of a run-time setting (an MLP layer, a Hadamard configuration): the fields
    of ``params.config_fields`` (``(name, bits)`` from bit 0 up, ``hw.common.config_layout``), read
    from ``layer``'s attributes of the same names.

    Raises:
        ValueError: a field that does not fit its width, naming it.
    """
    word, pos = 0, 0
    for name, bits in params.config_fields:
        value = int(getattr(layer, name))
        if not 0 <= value < (1 << bits):
            raise ValueError(f"{type(layer).__name__} field {name} = {value} does not fit in {bits} bits")
        word |= value << pos
        pos += bits
    return word
