"""Parameters of the multiresolution hash-encoding engine: frozen, validated, YAML round-trip.

Imports nothing heavy (no Amaranth): ``sim.tlm.hash_encoder`` and the flows use it without an HDL
toolchain.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import Field

from common.validate import range_message, spec
from hw.config import ConfigError, ParamsMixin
from nerf import grid

__all__ = ["HashEncoderParams", "verilog_header", "verilog_bytes"]


@spec(ConfigError)
class HashEncoderParams(ParamsMixin):
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

    levels: Annotated[int, Field(ge=1, le=32)] = 16
    log2_table_size: Annotated[int, Field(ge=4, le=24)] = 14
    features: Annotated[int, Field(ge=1, le=8)] = 2
    feature_bits: Annotated[int, Field(ge=2, le=16)] = 8
    coord_bits: Annotated[int, Field(ge=4, le=24)] = 16
    n_min: Annotated[int, Field(ge=1, le=1 << 24)] = 16
    n_max: Annotated[int, Field(ge=1, le=1 << 24)] = 512
    lanes: Annotated[int, Field(ge=1, le=32)] = 1

    #: Config-file section, Verilog top module and file stem.
    SECTION = "hash_encoder"
    #: Pipeline registers between the issue register and the interpolated result (see hw.hash_encoder).
    PIPELINE_STAGES = 6

    def __post_init__(self) -> None:
        owner, top = type(self).__name__, 1 << self.coord_bits
        # The ranges of n_min, n_max and lanes depend on the fields before them.
        if self.n_min > top:
            raise ConfigError(range_message(owner, "n_min", self.n_min, 1, top))
        if not self.n_min <= self.n_max <= top:
            raise ConfigError(range_message(owner, "n_max", self.n_max, self.n_min, top))
        if self.levels == 1 and self.n_max != self.n_min:
            raise ConfigError(f"{owner}.n_max must equal n_min ({self.n_min}) when levels is 1, not {self.n_max!r}")
        if self.lanes > self.levels:
            raise ConfigError(range_message(owner, "lanes", self.lanes, 1, self.levels))

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


def verilog_header(params: HashEncoderParams) -> str:
    """The comment lines after the parameter line of ``hash_encoder.v``: timing and output format."""
    p = params
    return (f"// II = {p.groups} cycles/point, latency = {p.groups + p.PIPELINE_STAGES + 1} cycles, "
            f"output: {p.levels * p.features} x signed {p.out_bits} bits\n")


def verilog_bytes(params: HashEncoderParams) -> int:
    """Estimated size of ``hash_encoder.v`` in bytes, before generating it.

    The tables are memories written with an ``initial`` block, one line per entry
    (``    table_lane<j>[<i>] = <w>'h<hex>;``), so they dominate large configurations; the datapath adds
    about 10 kB per level and feature. Calibrated against the presets (``tests/test_verilog.py``):
    within 0.7x to 1.7x of the generated size.
    """
    p = params
    width = p.features * p.feature_bits
    line = 24 + len(str(p.lanes - 1)) + len(str(p.groups * p.table_size - 1)) + len(str(width)) + -(-width // 4)
    return p.levels * p.table_size * line + 10_000 * p.levels * p.features + 20_000
