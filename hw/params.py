"""Parameter types of the engines: frozen, validated, YAML round-trip.

Imports nothing heavy (no Amaranth, no torch) so that ``sim/tlm`` and the flows can use it without an
HDL toolchain. Validation follows amaranth-soc: every keyword is checked before anything is derived,
and each error names the field, the allowed range and the value given.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nerf import grid
from nerf.atomic import atomic_write_text

__all__ = ["HashEncoderParams", "ConfigError", "load_config", "save_config", "ENGINES"]


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the field and the value."""


def _check_int(owner: str, name: str, value: Any, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ConfigError(f"{owner}.{name} must be an integer in [{lo}, {hi}], not {value!r}")


@dataclass(frozen=True, kw_only=True)
class HashEncoderParams:
    """Parameters of the multiresolution hash-encoding engine (``hw.hash_encoder.HashEncoder``).

    Fields:
        levels: L, number of resolution levels, in [1, 32].
        log2_table_size: k, each level's table holds T = 2**k entries, k in [4, 24].
        features: F, features per table entry, in [1, 8].
        feature_bits: width of one table feature (signed two's complement), in [2, 16].
        coord_bits: C, input coordinates are unsigned fixed point X / 2**C in [0, 1), C in [4, 24].
        n_min: N_min, coarsest resolution (cells per axis), in [1, 2**coord_bits].
        n_max: N_max, finest resolution, in [n_min, 2**coord_bits]; equal to n_min when levels is 1.
        lanes: parallel (point, level) pipelines, in [1, levels]. Lane j serves levels j, j + lanes, ...

    Raises:
        ConfigError: naming the field, the allowed range and the value.
    """

    levels: int = 16
    log2_table_size: int = 14
    features: int = 2
    feature_bits: int = 8
    coord_bits: int = 16
    n_min: int = 16
    n_max: int = 512
    lanes: int = 1

    #: Pipeline registers between the issue register and the interpolated result (see hw.hash_encoder).
    PIPELINE_STAGES = 6

    def __post_init__(self) -> None:
        owner = type(self).__name__
        _check_int(owner, "levels", self.levels, 1, 32)
        _check_int(owner, "log2_table_size", self.log2_table_size, 4, 24)
        _check_int(owner, "features", self.features, 1, 8)
        _check_int(owner, "feature_bits", self.feature_bits, 2, 16)
        _check_int(owner, "coord_bits", self.coord_bits, 4, 24)
        _check_int(owner, "n_min", self.n_min, 1, 1 << self.coord_bits)
        _check_int(owner, "n_max", self.n_max, self.n_min, 1 << self.coord_bits)
        if self.levels == 1 and self.n_max != self.n_min:
            raise ConfigError(
                f"{owner}.n_max must equal n_min ({self.n_min}) when levels is 1, not {self.n_max!r}"
            )
        _check_int(owner, "lanes", self.lanes, 1, self.levels)

    # --- derived geometry -------------------------------------------------------------------
    @property
    def table_size(self) -> int:
        """T, entries per level table."""
        return 1 << self.log2_table_size

    @property
    def resolutions(self) -> tuple[int, ...]:
        """N_l per level (``nerf.grid.level_resolutions``: floor of N_min * b^l)."""
        return grid.level_resolutions(self.n_min, self.n_max, self.levels)

    @property
    def dense(self) -> tuple[bool, ...]:
        """Per level: True when the level is indexed densely, False when hashed."""
        return tuple(grid.is_dense(r, self.table_size) for r in self.resolutions)

    @property
    def groups(self) -> int:
        """G = ceil(L / lanes): cycles one point occupies the issue stage, i.e. the II in cycles per point."""
        return math.ceil(self.levels / self.lanes)

    @property
    def out_bits(self) -> int:
        """Width of one output feature: signed, ``feature_bits + coord_bits`` bits, ``coord_bits`` of them fractional."""
        return self.feature_bits + self.coord_bits

    @property
    def cell_bits(self) -> int:
        """Width of the integer part (cell coordinate) of a scaled position: holds 0..N_max."""
        return max(1, self.n_max.bit_length())

    @property
    def fifo_depth(self) -> int:
        """Output FIFO entries (and input credits).

        A point holds a credit from its input transfer at cycle a until its output transfer, at the
        earliest a + G + PIPELINE_STAGES + 1; this depth keeps II = G under no backpressure.
        """
        return (self.groups + self.PIPELINE_STAGES + 1) // self.groups + 1

    # --- dict / YAML ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "hash_encoder") -> "HashEncoderParams":
        """Build from a mapping; unknown keys raise ``ConfigError`` naming the key and ``where``."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a mapping of parameters, not {data!r}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in allowed:
                raise ConfigError(f"unknown key {key!r} in {where} (allowed: {', '.join(allowed)})")
        return cls(**data)


#: Config-file section name -> params type. Later engines add their sections here.
ENGINES: dict[str, type] = {"hash_encoder": HashEncoderParams}


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read a hardware preset YAML file.

    The file is a mapping of engine section names (see ``ENGINES``) to parameter mappings.

    Returns:
        ``{section: params}`` for the sections present.

    Raises:
        ConfigError: unreadable file, unknown section or key, or an invalid value; the message names
            the file.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read config {str(path)!r}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"config {str(path)!r} must be a mapping with at least one of: {', '.join(ENGINES)}")
    out: dict[str, Any] = {}
    for section, body in raw.items():
        if section not in ENGINES:
            raise ConfigError(f"unknown section {section!r} in {str(path)!r} (allowed: {', '.join(ENGINES)})")
        try:
            out[section] = ENGINES[section].from_dict(body, where=section)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return out


def save_config(path: str | os.PathLike, sections: dict[str, Any]) -> None:
    """Write ``{section: params}`` as YAML, atomically (temporary file + rename)."""
    text = yaml.safe_dump({name: p.to_dict() for name, p in sections.items()}, sort_keys=False)
    atomic_write_text(path, text)
