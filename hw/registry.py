"""The engine registry: one record per engine, which export, co-simulation, the CLI and the config loader
loop over.

Adding an engine means one ``Engine`` entry here plus the engine's own files: ``hw/<engine>/``
(``params.py`` with the parameter type, ``verilog_header`` and ``verilog_bytes``; ``rtl.py`` with the
Amaranth component), ``sim/tlm/<engine>.py`` (its model), ``sim/cosim/tb_<engine>.py`` (its cocotb
testbench) and ``sim/cosim/workload_<engine>.py`` (its random workload, co-simulation job and summary
lines). Everything but the parameter type is named by an import string (``module:attribute``) and
loaded on first use, so importing the registry imports no Amaranth, cocotb or torch.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.atomic import atomic_write_text
from common.validate import read_yaml
from hw.config import ConfigError

__all__ = ["Engine", "ENGINES", "engine_of", "load_config", "save_config", "read_params_line"]


def _load(ref: str):
    module, _, attr = ref.partition(":")
    obj = importlib.import_module(module)
    return getattr(obj, attr) if attr else obj


@dataclass(frozen=True)
class Engine:
    """One engine.

    Attributes:
        section: config-file section, Verilog top module name and file stem (``<section>.v``).
        params: the parameter type (``common.validate.spec`` dataclass with ``to_dict``/``from_dict``).
        component: ``module:Class`` of the Amaranth component, built as ``Class(params=params)``.
        header: ``module:function``, ``function(params) -> str``: the Verilog comment lines after the
            parameter line (timing, widths).
        size: ``module:function``, ``function(params) -> int``: estimated bytes of the Verilog text.
        tlm: ``module:Class`` of the transaction-level model.
        testbench: the cocotb test module.
        workload: ``module:function``, ``function(params, *, points, vectors, phases, shapes) -> dict``:
            the workload part of a co-simulation job (validated; the engine takes what it needs).
        summary: ``module:function``, ``function(summary) -> list[str]``: the engine-specific lines of
            a printed co-simulation summary.
    """

    section: str
    params: type
    component: str
    header: str
    size: str
    tlm: str
    testbench: str
    workload: str
    summary: str

    def load(self, field: str):
        """The object named by the import string in ``field`` (imports its module)."""
        return _load(getattr(self, field))


def _record(params: type, component: str) -> Engine:
    """The record of an engine laid out as the module docstring says (section = ``params.SECTION``)."""
    name = params.SECTION
    return Engine(section=name, params=params, component=f"hw.{name}.rtl:{component}",
                  header=f"hw.{name}.params:verilog_header", size=f"hw.{name}.params:verilog_bytes",
                  tlm=f"sim.tlm.{name}:{params.__name__.removesuffix('Params')}TLM", testbench=f"sim.cosim.tb_{name}",
                  workload=f"sim.cosim.workload_{name}:job_workload", summary=f"sim.cosim.workload_{name}:summary_lines")


def _engines() -> dict[str, Engine]:
    from hw.activation.params import ActivationParams
    from hw.compositor.params import CompositorParams
    from hw.fixed_mv.params import FixedMvParams
    from hw.hadamard.params import HadamardParams
    from hw.hash_encoder.params import HashEncoderParams
    from hw.hash_encoder_axi.params import HashEncoderAxiParams
    from hw.mlp_engine.params import MlpEngineParams
    from hw.requant.params import RequantParams
    from hw.sh_unit.params import ShUnitParams

    records = [
        _record(HashEncoderParams, "HashEncoder"),
        _record(MlpEngineParams, "MlpEngine"),
        _record(HadamardParams, "HadamardEngine"),
        _record(HashEncoderAxiParams, "HashEncoderAxi"),
        _record(ShUnitParams, "ShUnit"),
        _record(ActivationParams, "ActivationUnit"),
        _record(RequantParams, "Requantizer"),
        _record(CompositorParams, "Compositor"),
        _record(FixedMvParams, "FixedMatVec"),
    ]
    return {e.section: e for e in records}


#: Section name -> engine, in the order the engines were added.
ENGINES: dict[str, Engine] = _engines()


def engine_of(params) -> Engine:
    """The engine whose parameter type ``params`` is.

    Raises:
        TypeError: not the parameters of a registered engine.
    """
    for engine in ENGINES.values():
        if type(params) is engine.params:
            return engine
    raise TypeError(f"no engine for parameters {params!r}")


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a hardware preset YAML file: a mapping of engine sections (``ENGINES``) to parameters.

    Returns:
        ``{section: params}`` for the sections present, in file order.

    Raises:
        ConfigError: unreadable file, not YAML, unknown section or key, or an invalid value; the
            message names the file.
    """
    path = Path(path)
    raw = read_yaml(path, error=ConfigError, what="config")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"config {str(path)!r} must be a mapping with at least one of: {', '.join(ENGINES)}")
    out: dict[str, Any] = {}
    for section, body in raw.items():
        if section not in ENGINES:
            raise ConfigError(f"unknown section {section!r} in {str(path)!r} (allowed: {', '.join(ENGINES)})")
        try:
            out[section] = ENGINES[section].params.from_dict(body, where=section)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return out


def save_config(path: str | os.PathLike, sections: dict[str, Any]) -> None:
    """Write ``{section: params}`` as YAML, atomically (temporary file + rename)."""
    import yaml

    text = yaml.safe_dump({name: p.to_dict() for name, p in sections.items()}, sort_keys=False)
    atomic_write_text(path, text)


def read_params_line(path: str | os.PathLike) -> tuple[str, dict[str, str]] | None:
    """The section and the ``key=value`` pairs of a generated Verilog file's first line
    (``hw.config.params_line``), values as text; None if the file does not start with one."""
    with open(path, errors="replace") as f:
        first = f.readline().rstrip("\n")
    head, sep, rest = first.partition(" generated by nerfhw: ")
    if not sep or not head.startswith("// "):
        return None
    # split before each ``key=``, so that list values (``level_bits=[6, 3, 2, 2]``) stay whole
    pairs = dict(item.split("=", 1) for item in re.split(r", (?=\w+=)", rest) if "=" in item)
    return head[3:], pairs
