"""Deterministic DRAM timing and the AXI4 read responder built on it, shared by the cocotb testbench
(``sim.cosim.tb_hash_encoder_axi``), the TLM (``sim.tlm.hash_encoder_axi``) and the frame model.

The DRAM (``DramTiming``): ``banks`` banks, each with one open row (open-page policy, all banks closed
at cycle 0); byte address ``addr`` is in bank ``(addr // row_bytes) mod banks``, row
``addr // (row_bytes banks)``. An access costs, in accelerator cycles (JEDEC command timing):

* row hit (its row open): ``tCL``;
* bank closed: ``tRCD + tCL`` (activate, read);
* row conflict (another row open): ``tRP + tRCD + tCL`` (precharge, activate, read);

and leaves its row open. Data then streams at ``bytes_per_cycle`` (peak rate in accelerator cycles), so
AXI beats of ``bus_bytes`` come every ``beat_interval = max(1, ceil(bus_bytes / bytes_per_cycle))``
cycles. DRAM bytes of a request are its bytes rounded up to whole bursts (``burst_bytes`` = BL x
device width). One request is in flight at a time (the engine's miss handler is blocking), so tRAS,
tRC, tFAW, bank parallelism and refresh never bind and are not modelled.

The responder (``AxiReadResponder``), request n (n = 0, 1, ... in order):

* ARREADY is high from cycle ``free_n`` until the AR transfer, low otherwise; ``free_0 = ar_delay_0``;
  the AR transfer of a request whose ARVALID rises at cycle v is at ``a = max(v, free_n)``;
* beat 0 is valid at ``r_0 = a + 1 + latency + first_delay_n``, beat i at ``r_i = r_{i-1} +
  beat_interval + gap_{n,i}``; the master holds RREADY high, so each beat transfers in its cycle; RLAST
  on the last beat;
* ``free_{n+1} = r_last + 1 + ar_delay_{n+1}``.

``ar_delay``, ``first_delay`` and ``gap`` are zero, or drawn by ``DelayPattern`` from a seed and the
request number alone, so both sides reproduce them without sharing state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import Field

from common.validate import from_mapping, preset_path, read_yaml, spec
from hw.config import ConfigError

__all__ = ["DRAM_DIR", "DramPreset", "load_dram", "DramTiming", "DramModel", "DelayPattern", "AxiReadResponder",
           "ROW_HIT", "ROW_CLOSED", "ROW_CONFLICT"]

#: DRAM presets (``flows/dram/<name>.yaml``).
DRAM_DIR = Path(__file__).resolve().parents[2] / "flows" / "dram"

ROW_HIT, ROW_CLOSED, ROW_CONFLICT = 0, 1, 2

_Ns = Annotated[float, Field(gt=0.0, le=1000.0)]


@spec(ConfigError)
class DramPreset:
    """A DRAM part's figures, in its own units (ns, GB/s, bytes); every field is required.

    Fields:
        name: preset name; source: where the figures come from (standard, datasheet).
        bandwidth_gbs: peak data rate of the interface, GB/s (1e9 bytes per second), in (0, 10000].
        burst_bytes: bytes of one DRAM burst (BL x interface width), in [1, 4096].
        banks: banks, in [1, 256]; row_bytes: row (page) size in bytes, in [64, 65536].
        t_rcd_ns, t_cl_ns, t_rp_ns: activate-to-read, read latency (CL / RL), precharge, ns.
    """

    name: str
    source: str
    bandwidth_gbs: Annotated[float, Field(gt=0.0, le=10000.0)]
    burst_bytes: Annotated[int, Field(ge=1, le=4096)]
    banks: Annotated[int, Field(ge=1, le=256)]
    row_bytes: Annotated[int, Field(ge=64, le=65536)]
    t_rcd_ns: _Ns
    t_cl_ns: _Ns
    t_rp_ns: _Ns


def load_dram(name_or_path: str | Path) -> DramPreset:
    """A DRAM preset by name (``flows/dram/<name>.yaml``) or path.

    Raises:
        ConfigError: unknown preset (listing the known ones), unreadable or invalid YAML, a missing
            or unknown field, or a bad value; the message names the file and the field.
    """
    path = preset_path(name_or_path, DRAM_DIR, "DRAM preset", error=ConfigError)
    data = read_yaml(path, error=ConfigError, what="DRAM preset")
    if not isinstance(data, dict):
        raise ConfigError(f"DRAM preset {str(path)!r} must be a mapping of fields, not {data!r}")
    data = {"name": path.stem, **data}
    missing = [f for f in DramPreset.__dataclass_fields__ if f not in data]
    if missing:
        raise ConfigError(f"{path}: missing field {missing[0]!r} (a DRAM preset needs all of: "
                          f"{', '.join(DramPreset.__dataclass_fields__)})")
    return from_mapping(DramPreset, data, where=str(path), error=ConfigError)


@dataclass(frozen=True)
class DramTiming:
    """A preset in accelerator cycles (every time rounded up to whole cycles).

    Attributes:
        t_rcd, t_cl, t_rp: cycles; beat_interval: cycles between AXI beats of ``bus_bytes``;
        bytes_per_cycle: peak bytes per accelerator cycle; banks, row_bytes, burst_bytes: as the preset.
    """

    t_rcd: int
    t_cl: int
    t_rp: int
    beat_interval: int
    bytes_per_cycle: float
    banks: int
    row_bytes: int
    burst_bytes: int

    @classmethod
    def of(cls, preset: DramPreset, clock_mhz: float, bus_bytes: int) -> "DramTiming":
        """``preset`` at an accelerator clock of ``clock_mhz`` with an AXI bus of ``bus_bytes``."""
        cyc = lambda ns: max(1, math.ceil(ns * clock_mhz / 1000 - 1e-9))  # noqa: E731
        bpc = preset.bandwidth_gbs * 1000 / clock_mhz
        return cls(t_rcd=cyc(preset.t_rcd_ns), t_cl=cyc(preset.t_cl_ns), t_rp=cyc(preset.t_rp_ns),
                   beat_interval=max(1, math.ceil(bus_bytes / bpc - 1e-9)), bytes_per_cycle=bpc,
                   banks=preset.banks, row_bytes=preset.row_bytes, burst_bytes=preset.burst_bytes)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class DramModel:
    """Open rows of every bank; ``access`` returns an access's latency and row outcome."""

    def __init__(self, timing: DramTiming):
        self.timing = timing
        self.open_row = np.full(timing.banks, -1, dtype=np.int64)
        self.outcomes = [0, 0, 0]  # ROW_HIT, ROW_CLOSED, ROW_CONFLICT counts

    def access(self, addr: int) -> tuple[int, int]:
        """(latency in cycles, outcome) of a read at byte ``addr``; opens its row."""
        t = self.timing
        page = addr // t.row_bytes
        bank, row = page % t.banks, page // t.banks
        was = int(self.open_row[bank])
        if was == row:
            outcome, latency = ROW_HIT, t.t_cl
        elif was < 0:
            outcome, latency = ROW_CLOSED, t.t_rcd + t.t_cl
        else:
            outcome, latency = ROW_CONFLICT, t.t_rp + t.t_rcd + t.t_cl
        self.open_row[bank] = row
        self.outcomes[outcome] += 1
        return latency, outcome


@dataclass(frozen=True)
class DelayPattern:
    """Random extra delays of the responder, a function of (seed, request number) only.

    With probability ``p`` each of: ARREADY held low 1..``ar_max`` more cycles; beat 0 1..``first_max``
    cycles late; each later beat 1..``gap_max`` cycles late. ``seed`` None: no extra delay.
    """

    seed: int | None = None
    p: float = 0.5
    ar_max: int = 4
    first_max: int = 8
    gap_max: int = 3

    def draw(self, n: int, beats: int) -> tuple[int, int, list[int]]:
        """(ar_delay, first_delay, gaps of beats 1..beats-1) of request ``n``."""
        if self.seed is None:
            return 0, 0, [0] * (beats - 1)
        words = [_splitmix64((self.seed << 40) ^ (n << 12) ^ i) for i in range(beats + 1)]
        limit = int(self.p * (1 << 32))
        maxima = [self.ar_max, self.first_max] + [self.gap_max] * (beats - 1)
        out = [(w >> 32) % most + 1 if (w & 0xFFFFFFFF) < limit else 0 for w, most in zip(words, maxima)]
        return out[0], out[1], out[2:]


def _splitmix64(x: int) -> int:
    """SplitMix64's output function (Steele, Lea, Flood, OOPSLA 2014): a cheap, well-mixed 64-bit hash."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


class AxiReadResponder:
    """The responder's timing (module docstring), one request after another.

    Args:
        timing: the DRAM in accelerator cycles; beats: AXI beats per request; delays: extra delays.

    ``free`` is the first cycle ARREADY is high for the next request; ``serve(v, addr)`` returns the
    AR transfer cycle and every beat's cycle of the request whose ARVALID rose at cycle ``v``.
    """

    def __init__(self, timing: DramTiming, beats: int, delays: DelayPattern | None = None):
        self.dram = DramModel(timing)
        self.beats = beats
        self.delays = delays or DelayPattern()
        self.requests = 0
        self._next = self.delays.draw(0, beats)
        self.free = self._next[0]

    def serve(self, v: int, addr: int) -> tuple[int, list[int]]:
        _, first, gaps = self._next
        a = max(v, self.free)
        latency, _ = self.dram.access(addr)
        beat = a + 1 + latency + first
        cycles = [beat]
        for gap in gaps:
            beat += self.dram.timing.beat_interval + gap
            cycles.append(beat)
        self.requests += 1
        self._next = self.delays.draw(self.requests, self.beats)
        self.free = cycles[-1] + 1 + self._next[0]
        return a, cycles
