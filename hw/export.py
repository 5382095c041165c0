"""Verilog export of the engines: deterministic (``emit_src=False``), stable module names, a parameter
header; refused before generation when the text would not fit in memory.

Loops over ``hw.registry.ENGINES``: the engine of a params object is found by its type.
"""

from __future__ import annotations

import functools
from pathlib import Path

from common.atomic import atomic_write_text
from hw.config import ConfigError, params_line
from hw.registry import ENGINES, engine_of

__all__ = ["engine_verilog", "write_verilog", "verilog_size", "check_size", "MAX_VERILOG_BYTES", "TOP_NAMES"]

#: Largest Verilog text export will generate: 512 MiB. Conversion needs about 30 times the text in memory
#: and time in proportion (measured: an 18.8 MB hash encoder, 16 levels of 2^15 entries, peaked at 588 MB
#: and took 144 s), so 512 MiB of text is about 16 GB and an hour: beyond that, refuse up front.
MAX_VERILOG_BYTES = 512 << 20

#: Params type -> top-level Verilog module name (also the config section name and the file stem).
TOP_NAMES = {engine.params: name for name, engine in ENGINES.items()}


def verilog_size(params) -> int:
    """Estimated bytes of the engine's Verilog text (the engine's ``verilog_bytes``), without generating it."""
    return int(engine_of(params).load("size")(params))


def check_size(params, limit: int = MAX_VERILOG_BYTES) -> int:
    """The estimated size, if within ``limit``.

    Raises:
        ConfigError: ``<section> with <params> would be about N MB of Verilog (limit L MB): ...``.
    """
    size = verilog_size(params)
    if size > limit:
        engine = engine_of(params)
        raise ConfigError(f"{engine.section} with {params.to_dict()} would be about {size / 1e6:,.0f} MB of Verilog "
                          f"(limit {limit / 1e6:,.0f} MB), too large to generate in memory; make it smaller "
                          "(for the hash encoder: fewer levels or a smaller log2_table_size)")
    return size


def engine_verilog(params, *, limit: int = MAX_VERILOG_BYTES) -> str:
    """Verilog text of the engine that ``params`` describes, module ``<section>``, with a parameter header.

    The first line is ``hw.config.params_line`` (``hw.registry.read_params_line`` reads it back), then
    the engine's ``verilog_header``.

    Raises:
        TypeError: not the parameters of a registered engine.
        ConfigError: the text would exceed ``limit`` bytes (``check_size``); nothing is generated.
    """
    engine = engine_of(params)
    check_size(params, limit)
    header = params_line(engine.section, params) + "\n" + engine.load("header")(params)
    return header + _convert(params)


@functools.lru_cache(maxsize=16)
def _convert(params) -> str:
    # Deterministic (emit_src=False), so one conversion per parameter set serves export, lint and
    # co-simulation in one process; the memory-system engine takes tens of seconds to elaborate.
    from amaranth.back import verilog

    engine = engine_of(params)
    return verilog.convert(engine.load("component")(params=params), name=engine.section, emit_src=False)


def write_verilog(params, out_dir: str | Path, *, limit: int = MAX_VERILOG_BYTES) -> Path:
    """Write ``<out_dir>/<section>.v`` atomically; returns its path. Raises as ``engine_verilog``."""
    path = Path(out_dir) / f"{engine_of(params).section}.v"
    atomic_write_text(path, engine_verilog(params, limit=limit))
    return path


def _section_verilog(section: str):
    def convert(params) -> str:
        if type(params) is not ENGINES[section].params:
            raise TypeError(f"params must be a {ENGINES[section].params.__name__}, not {params!r}")
        return engine_verilog(params)

    convert.__name__ = f"{section}_verilog"
    convert.__doc__ = f"Verilog text of the {section} engine (``engine_verilog`` for its params only)."
    return convert


# <section>_verilog(params) for every registered engine.
globals().update({f"{name}_verilog": _section_verilog(name) for name in ENGINES})
__all__ += [f"{name}_verilog" for name in ENGINES]
