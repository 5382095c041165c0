"""The accelerator mapping: how a radiance field's components run on the engines.

The one place that says which engine runs which part of the model (``nerf.layout.model_layout``),
which policy bitwidths set each engine's run-time settings, what the engines are generated with for a
model, a hardware preset and a policy, and the engines' pipeline latencies as the performance model
needs them. ``sim.perf`` (frame latency), ``rl.env`` (observations, budget), ``flows.search``
(``engines.yaml``) and ``flows.demo`` (co-simulation) all read it; none keeps its own copy.

The accelerator::

    sample points -> hash encoder -> FIFO -> density MLP engine -> FIFO -> colour MLP engine -> renderer

* ``encoder``: one ``hw.hash_encoder`` with the model's levels, table size T, features F and
  resolutions, and the preset's lanes, coordinate bits C and table width (``encoder_params``);
  components ``hash.levelNN`` set the stored width of level NN's table (not the encoder's cycles).
* ``density``, ``color``: two ``hw.mlp_engine`` instances of the preset's array, running the model's
  density and colour MLP (engine name = MLP name). Each layer's weight bits are its ``.weight``
  component's; its activation bits are the widest of its input components (``color.l0`` reads the
  geometry features of ``density.l1.out`` and ``sh.out`` side by side) (``layer_of``, ``mlp_layers``).
* ``density.out``, ``color.l2.out``, ``color.out`` feed the renderer (compositing), no engine cycles.

Pipeline latencies (cycles), from the engines' params, proven equal to the TLMs in ``tests/test_mapping.py``:

* ``ENCODER_EXTRA_LATENCY`` = ``HashEncoderParams.PIPELINE_STAGES + 1`` (output FIFO register): a point
  accepted at cycle a by an idle encoder leaves at ``a + G + ENCODER_EXTRA_LATENCY`` (G = ceil(L / lanes)
  cycles in the issue register, ``sim.tlm.hash_encoder.HashEncoderTLM.schedule``);
* ``MLP_EXTRA_LATENCY`` = ``MlpEngineParams.START_CYCLES + PIPELINE_STAGES``: a vector accepted at a by an
  idle MLP engine leaves at ``a + T + MLP_EXTRA_LATENCY`` (T its issue cycles, ``sim.tlm.mlp_engine``:
  load 1, issue T, pipeline 4, FIFO 1).

Hardware presets (``flows/accel/<name>.yaml``) hold only what the model does not fix: the encoder's
``lanes``, ``coord_bits`` and ``feature_bits``, and the MLP engines' ``MlpEngineParams``. They load
through the project's validation (``common.validate``: ``read_yaml``, ``from_mapping``, ``@spec``), so a
YAML error, an unknown key or a bad value is a ``ConfigError`` naming the file, the field, the allowed
range and the value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import Field, InstanceOf

from common.validate import from_mapping, preset_path, read_yaml, spec
from hw.hash_encoder_axi.params import (AddrBits, BusBytes, CacheBytes, HashEncoderAxiParams, LineBytes, ResidentBytes,
                                        Ways)
from hw.params import ConfigError, HadamardParams, HashEncoderParams, MlpEngineParams
from nerf.layout import ModelLayout, model_layout

__all__ = ["ACCEL_DIR", "ENCODER", "ENCODER_EXTRA_LATENCY", "MLP_EXTRA_LATENCY", "AcceleratorPreset",
           "load_accelerator", "layer_of", "mlp_layers", "mlp_shapes", "encoder_params", "engines_for_policy",
           "check_bits", "check_policy_fits", "MemoryPreset", "encoder_section", "level_bits_of", "RENDERER_COMPONENTS",
           "HW_FULL_BITS", "hardware_bits", "top_params", "DATAPATHS", "check_datapath", "HADAMARD_DEFAULT",
           "hadamard_base", "hadamard_layer_params", "hadamard_layers"]

#: Hardware presets of the accelerator (``make search HW=<name>``).
ACCEL_DIR = Path(__file__).resolve().parents[1] / "flows" / "accel"
#: The hash encoder's engine name (the MLP engines are named after the model's MLPs: density, color).
ENCODER = "encoder"
#: Encoder: a point accepted at cycle a by an idle encoder leaves at a + G + this (module doc).
ENCODER_EXTRA_LATENCY = HashEncoderParams.PIPELINE_STAGES + 1
#: MLP engine: a vector accepted at cycle a by an idle engine leaves at a + T + this (module doc).
MLP_EXTRA_LATENCY = MlpEngineParams.START_CYCLES + MlpEngineParams.PIPELINE_STAGES

# The ranges of the matching HashEncoderParams fields (lanes is further capped at the model's levels).
_Lanes = Annotated[int, Field(ge=1, le=32)]
_CoordBits = Annotated[int, Field(ge=4, le=24)]
_FeatureBits = Annotated[int, Field(ge=2, le=16)]


@spec(ConfigError)
class HashEncoderPreset:
    """The ``hash_encoder`` section of a hardware preset: the encoder fields the model does not fix.

    Fields:
        lanes: parallel (point, level) pipelines, in [1, 32] (capped at the model's levels).
        coord_bits: C, coordinate bits, in [4, 24].
        feature_bits: widest hash-table entry the encoder stores (bits), in [2, 16].
    """

    lanes: _Lanes = 1
    coord_bits: _CoordBits = 16
    feature_bits: _FeatureBits = 8


@spec(ConfigError)
class MemoryPreset:
    """The ``memory`` section of a hardware preset: the hash tables live in external DRAM
    (``hw.hash_encoder_axi``) behind a per-level table cache.

    Fields (``HashEncoderAxiParams``' memory fields, validated by building one):
        bus_bytes: AXI4 data width; line_bytes: cache line (one INCR burst); cache_bytes: bytes of each
        cached level's partition; ways: associativity; resident_bytes: on-chip budget of the resident
        coarse levels; addr_bits: AXI4 address width; dram: a DRAM preset name (``flows/dram/<name>.yaml``).
    """

    bus_bytes: BusBytes = 16
    line_bytes: LineBytes = 64
    cache_bytes: CacheBytes = 4096
    ways: Ways = 2
    resident_bytes: ResidentBytes = 0
    addr_bits: AddrBits = 32
    dram: str = "lpddr4"

    def axi_fields(self) -> dict:
        """The ``HashEncoderAxiParams`` fields of this section (all but ``dram``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "dram"}


@spec(ConfigError)
class AcceleratorPreset:
    """A hardware preset: the engines' generate-time parameters (the model fixes the rest).

    Fields:
        name: preset name.
        lanes, coord_bits, feature_bits: the hash encoder's (``HashEncoderPreset``).
        mlp: the MLP engines' parameters (both engines are generated alike).
        memory: the external-table memory system (``MemoryPreset``), or None: tables on chip
            (``hw.hash_encoder``, table bits do not change latency).
        hadamard: the DHQ Hadamard datapath's array (``HadamardParams``: rows, cols, mult_bits; each
            layer's engine is this resized for it, ``hadamard_layers``), or None: ``HADAMARD_DEFAULT``.
            Only the DHQ frame model (``datapath="hadamard"``) reads it.

    Raises:
        ConfigError: a bad field, naming it, the allowed range and the value.
    """

    name: str
    lanes: _Lanes = 1
    coord_bits: _CoordBits = 16
    feature_bits: _FeatureBits = 8
    mlp: InstanceOf[MlpEngineParams]
    memory: InstanceOf[MemoryPreset] | None = None
    hadamard: InstanceOf[HadamardParams] | None = None

    @property
    def has_memory(self) -> bool:
        """The hash tables are off chip (a ``memory`` section)."""
        return self.memory is not None

    def dram_timing(self):
        """The memory section's DRAM in accelerator cycles (``sim.memory.dram.DramTiming``)."""
        from sim.memory.dram import DramTiming, load_dram

        if self.memory is None:
            raise ConfigError(f"hardware preset {self.name!r} has no memory section (tables on chip)")
        return DramTiming.of(load_dram(self.memory.dram), self.clock_mhz, self.memory.bus_bytes)

    @property
    def clock_mhz(self) -> int:
        """Clock of the whole accelerator (MHz), ``mlp.clock_mhz``."""
        return self.mlp.clock_mhz


_SECTIONS = ("hash_encoder", "mlp_engine", "memory", "hadamard")


def load_accelerator(name_or_path: str | Path) -> AcceleratorPreset:
    """A preset by name (``flows/accel/<name>.yaml``) or path.

    Raises:
        ConfigError: unknown preset (listing the known ones); unreadable file or invalid YAML; not a
            mapping; an unknown section or key; a bad value. The message names the file and the field.
    """
    path = preset_path(name_or_path, ACCEL_DIR, "hardware preset", error=ConfigError)
    data = read_yaml(path, error=ConfigError, what="hardware preset")
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"hardware preset {str(path)!r} must be a mapping with sections {', '.join(_SECTIONS)}, "
                          f"not {data!r}")
    for key in data:
        if key not in _SECTIONS:
            raise ConfigError(f"{path}: unknown section {key!r} (allowed: {', '.join(_SECTIONS)})")
    sections = {key: {} if data.get(key) is None else data[key] for key in _SECTIONS}  # an empty section: defaults
    enc = sections["hash_encoder"]
    preset_fields = {f.name for f in dataclasses.fields(HashEncoderPreset)}
    model_fixed = [f.name for f in dataclasses.fields(HashEncoderParams) if f.name not in preset_fields]
    if isinstance(enc, dict):
        for key in enc:
            if key in model_fixed:
                raise ConfigError(f"{path}: hash_encoder.{key} is not a preset field (allowed: lanes, coord_bits, "
                                  "feature_bits; the model sets the rest)")
    try:
        section = from_mapping(HashEncoderPreset, enc, where="hash_encoder", error=ConfigError)
        mlp = MlpEngineParams.from_dict(sections["mlp_engine"], where="mlp_engine")
        memory = None
        if "memory" in data:
            memory = _memory_section(sections["memory"], section)
        hadamard = HadamardParams.from_dict(sections["hadamard"], where="hadamard") if "hadamard" in data else None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return AcceleratorPreset(name=path.stem, lanes=section.lanes, coord_bits=section.coord_bits,
                             feature_bits=section.feature_bits, mlp=mlp, memory=memory, hadamard=hadamard)


def _memory_section(data, enc: HashEncoderPreset) -> MemoryPreset:
    """The ``memory`` section: its keys and ranges, the DRAM preset, and the cache numbers checked by
    building a ``HashEncoderAxiParams`` (a one-level stand-in model: the model fixes the rest).

    Raises:
        ConfigError: naming ``memory.<field>`` and the value.
    """
    try:
        mem = from_mapping(MemoryPreset, data, where="memory", error=ConfigError)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("MemoryPreset.", "memory.")) from None
    from sim.memory.dram import load_dram

    try:
        load_dram(mem.dram)
    except ConfigError as exc:
        raise ConfigError(f"memory.dram = {mem.dram!r}: {exc}") from None
    try:
        HashEncoderAxiParams(levels=1, log2_table_size=4, features=1, feature_bits=enc.feature_bits,
                             coord_bits=enc.coord_bits, n_min=1, n_max=1, lanes=1, **mem.axi_fields())
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("HashEncoderAxiParams.", "memory.")) from None
    return mem


# --- model -> engines -------------------------------------------------------------------------
def layer_of(arch: Mapping) -> dict[str, tuple[str, int]]:
    """MLP components -> (engine, layer index) whose cycles they set, in the model's layer order.

    A layer's ``.weight`` component and each of its input activation components map to it; hash
    levels and the renderer's inputs (``density.out``, ``color.l2.out``, ``color.out``) are absent.
    """
    out: dict[str, tuple[str, int]] = {}
    for ly in model_layout(arch).layers.values():
        for name in ly.inputs + (ly.weight,):
            out[name] = (ly.mlp, ly.index)
    return out


def check_bits(policy: Mapping[str, int], name: str, limit: int, what: str) -> int:
    """``policy[name]``, if it fits the engines' ``what`` = ``limit`` bits.

    Raises:
        ConfigError: it does not fit (naming the component, its bits and the limit; 32 bits = full
            precision, which the integer engines cannot run).
    """
    bits = policy[name]
    if bits > limit:
        raise ConfigError(f"policy {name} = {bits} bits does not fit the engines' {what} = {limit} bits"
                          + (" (full precision does not run on the integer engines)" if bits == 32 else ""))
    return bits


def mlp_layers(policy: Mapping[str, int], arch: Mapping, mlp: MlpEngineParams) -> dict[str, list[dict]]:
    """Each MLP engine's layer settings under ``policy``: {"density": [...], "color": [...]}.

    Each layer is ``{"in_size", "out_size", "weight_bits", "act_bits"}`` (``sim.tlm.mlp_engine``'s
    timing inputs): sizes from ``nerf.layout``; weight bits its ``.weight`` component's; activation
    bits the widest of its input components.

    Raises:
        ConfigError: a weight or activation wider than the engine's maxima (names the component).
    """
    out: dict[str, list[dict]] = {}
    for ly in model_layout(arch).layers.values():
        w = check_bits(policy, ly.weight, mlp.max_weight_bits, "max_weight_bits")
        a = max(check_bits(policy, n, mlp.max_act_bits, "max_act_bits") for n in ly.inputs)
        out.setdefault(ly.mlp, []).append({"in_size": ly.in_size, "out_size": ly.out_size, "weight_bits": w,
                                           "act_bits": a})
    return out


def mlp_shapes(arch: Mapping) -> dict[str, list[int]]:
    """Each MLP engine's vector sizes ``[in_0, out_0, ..., out_last]``: {"density": [32, 64, 16], ...}."""
    layout = model_layout(arch)
    return {name: layout.sizes(name) for name in layout.mlps}


def level_bits_of(policy: Mapping[str, int], arch: Mapping) -> tuple[int, ...]:
    """Each level's table width from the policy's ``hash.levelNN`` components, in level order."""
    return tuple(int(policy[n]) for n in model_layout(arch).hash_components)


def encoder_params(preset: AcceleratorPreset, arch: Mapping,
                   policy: Mapping[str, int] | None = None) -> HashEncoderParams:
    """The hash encoder this preset generates for a model architecture (``nerf.layout.ARCH_KEYS``):
    the model's levels, table size, features and N_min/N_max; the preset's coordinate bits, table
    width and lanes (at most the levels).

    With a ``memory`` section: a ``HashEncoderAxiParams`` (tables in DRAM) with the section's memory
    system and ``feature_bits`` the preset's maximum; ``level_bits`` the policy's ``hash.levelNN`` bits
    (``level_bits_of``), or every level at ``feature_bits`` without a policy. Without: a
    ``HashEncoderParams`` (tables on chip; ``policy`` is not needed).

    Raises:
        ConfigError: the combination is no valid encoder (e.g. N_max above 2**coord_bits, a level's
            bits above ``feature_bits``, tables the address width cannot reach).
    """
    fields = dict(levels=arch["levels"], log2_table_size=arch["log2_table_size"], features=arch["features"],
                  feature_bits=preset.feature_bits, coord_bits=preset.coord_bits, n_min=arch["n_min"],
                  n_max=arch["n_max"], lanes=min(preset.lanes, arch["levels"]))
    if preset.memory is None:
        return HashEncoderParams(**fields)
    bits = level_bits_of(policy, arch) if policy is not None else ()
    return HashEncoderAxiParams(**fields, level_bits=bits, **preset.memory.axi_fields())


def encoder_section(preset: AcceleratorPreset) -> str:
    """The encoder's config section: ``hash_encoder_axi`` with a memory section, ``hash_encoder`` without."""
    return HashEncoderAxiParams.SECTION if preset.memory is not None else "hash_encoder"


def engines_for_policy(preset: AcceleratorPreset, arch: Mapping, policy: Mapping[str, int]) -> dict:
    """The engines generated for the model and exactly the policy's widths (``engines.yaml``).

    Returns ``{"hash_encoder": HashEncoderParams, "mlp_engine": MlpEngineParams}`` (on-chip tables) or
    ``{"hash_encoder_axi": HashEncoderAxiParams, "mlp_engine": ...}`` (a preset with memory: each level's
    ``level_bits`` from the policy): the encoder of ``encoder_params`` with ``feature_bits`` the widest
    ``hash.levelNN``; the preset's MLP array with ``max_weight_bits`` / ``max_act_bits`` the widest
    weight / layer-input component, ``max_in`` / ``max_out`` the longest layer input / widest layer
    output and ``max_layers`` the deepest MLP.

    Raises:
        ConfigError: a width outside the engines' generate-time ranges (e.g. 32 bits, full precision).
    """
    layout: ModelLayout = model_layout(arch)
    layers = list(layout.layers.values())
    widest = max(policy[n] for n in layout.hash_components)
    if preset.memory is None:
        enc = dataclasses.replace(encoder_params(preset, arch), feature_bits=widest)
    else:
        enc = dataclasses.replace(encoder_params(preset, arch), feature_bits=widest,
                                  level_bits=level_bits_of(policy, arch))
    mlp = dataclasses.replace(preset.mlp,
                              max_weight_bits=max(policy[ly.weight] for ly in layers),
                              max_act_bits=max(policy[n] for ly in layers for n in ly.inputs),
                              max_in=max(ly.in_size for ly in layers), max_out=max(ly.out_size for ly in layers),
                              max_layers=max(len(layout.mlp(m)) for m in layout.mlps))
    return {encoder_section(preset): enc, "mlp_engine": mlp}


def check_policy_fits(policy: Mapping[str, int], engines: Mapping[str, object], *, where: str = "engines") -> None:
    """Check that generated engines (``engines.yaml``: ``{"hash_encoder": ..., "mlp_engine": ...}``) hold a policy.

    Every ``hash.levelNN`` must fit the encoder's ``feature_bits`` (with ``hash_encoder_axi``, equal its
    ``level_bits``: the packed table layout); every MLP weight and layer input the MLP
    engine's ``max_weight_bits`` / ``max_act_bits`` (``mlp_layers``). Only widths are checked: the layer
    sizes do not change which components feed which layer, so a one-wide stand-in model names them.

    Raises:
        ConfigError: no hash encoder (the policy's levels are unknown), or a component wider than the
            engines hold, naming it, its bits, the limit and ``where``.
    """
    encoder = engines.get("hash_encoder", engines.get("hash_encoder_axi"))
    if encoder is None:
        raise ConfigError(f"{where} has no hash_encoder section, so the policy's levels are unknown")
    level_bits = getattr(encoder, "level_bits", ())  # hash_encoder_axi: the tables are packed at these widths
    for name, bits in policy.items():
        if name.startswith("hash.level") and bits > encoder.feature_bits:
            raise ConfigError(f"{name} = {bits} bits does not fit the hash encoder's feature_bits = "
                              f"{encoder.feature_bits} in {where}")
        if name.startswith("hash.level") and level_bits and int(name[len("hash.level"):]) < len(level_bits) \
                and bits != level_bits[int(name[len("hash.level"):])]:
            level = int(name[len("hash.level"):])
            raise ConfigError(f"{name} = {bits} bits is not the width the external tables are packed at, "
                              f"level_bits[{level}] = {level_bits[level]}, in {where}")
    mlp = engines.get("mlp_engine")
    if mlp is not None:
        arch = {"levels": encoder.levels, "features": encoder.features, "hidden": 1, "geo_features": 1}
        try:
            mlp_layers(policy, arch, mlp)
        except ConfigError as exc:
            raise ConfigError(f"{exc} in {where}") from None


# --- the accelerator top ----------------------------------------------------------------------
#: The renderer's inputs that the policy may leave at full precision: the top still needs a width for
#: them, and runs them at this many bits (the units' widest).
RENDERER_COMPONENTS = ("density.out", "color.l2.out", "color.out")
HW_FULL_BITS = 16


def hardware_bits(policy: Mapping[str, int], arch: Mapping) -> dict[str, int]:
    """The width the accelerator top runs each component at: the policy's, except that a renderer input
    (``RENDERER_COMPONENTS``) left at full precision (32) runs at ``HW_FULL_BITS``.

    ``sh.out`` keeps its entry, but the top puts the SH encoding on ``density.l1.out``'s grid (step,
    offset and bits): the colour engine's first layer reads both as one vector with one scale.

    Raises:
        ConfigError: a component the top cannot run at the policy's width (a hash level, an MLP weight or
            an activation at 32 bits or above 16), naming it.
    """
    out = {}
    for name in model_layout(arch).hash_components + [n for n in policy if not n.startswith("hash.")]:
        bits = int(policy[name])
        if name in RENDERER_COMPONENTS and bits == 32:
            bits = HW_FULL_BITS
        if bits > HW_FULL_BITS:
            raise ConfigError(f"policy {name} = {bits} bits: the accelerator top runs at most {HW_FULL_BITS} bits"
                              + (" (full precision does not run on the integer datapath)" if bits == 32 else ""))
        out[name] = bits
    return out


def top_params(preset: AcceleratorPreset, arch: Mapping, policy: Mapping[str, int]):
    """The accelerator top (``hw.top.TopParams``) for a model, a hardware preset and a policy: every unit
    sized by the policy's widths (``hardware_bits``).

    * encoder and mlp: ``engines_for_policy`` of the widths, with the tables on chip (``hw.hash_encoder``),
      the MLP engines' ``max_act_bits`` also covering their outputs (``density.l1.out``, ``color.l2.out``);
    * requant: one lane per encoder output, ``enc.out`` bits out;
    * sh: 16-bit directions, ``density.l1.out`` bits out (the colour engine's grid);
    * density_act / color_act: ``density.l1.out`` -> ``density.out`` and ``color.l2.out`` -> ``color.out``
      tables, exact up to 12 input bits (index_bits = min(bits, 12));
    * compositor: ``density.out`` and ``color.out`` bits, the unit's default precision.

    Raises:
        ConfigError: a policy the top cannot run (``hardware_bits``), or no valid unit for it.
    """
    from hw.activation.params import ActivationParams
    from hw.compositor.params import CompositorParams
    from hw.requant.params import RequantParams
    from hw.sh_unit.params import ShUnitParams
    from hw.top.params import TopParams

    bits = hardware_bits(policy, arch)
    layout = model_layout(arch)
    # the engines of the policy's widths, with the tables on chip; the MLP engines also emit the outputs
    engines = engines_for_policy(dataclasses.replace(preset, memory=None), arch, bits)
    enc = engines["hash_encoder"]
    geo, logits = bits["density.l1.out"], bits["color.l2.out"]
    mlp = engines["mlp_engine"]
    mlp = dataclasses.replace(mlp, max_act_bits=max(mlp.max_act_bits, geo, logits))
    return TopParams(
        preset=preset.name, encoder=enc,
        requant=RequantParams(lanes=layout.encoder_out, in_bits=enc.out_bits, max_out_bits=bits["enc.out"]),
        mlp=mlp, sh=ShUnitParams(dir_bits=16, max_out_bits=geo),
        density_act=ActivationParams(lanes=1, in_bits=geo, out_bits=bits["density.out"], index_bits=min(geo, 12)),
        color_act=ActivationParams(lanes=3, in_bits=logits, out_bits=bits["color.out"], index_bits=min(logits, 12)),
        compositor=CompositorParams(sigma_bits=bits["density.out"], color_bits=bits["color.out"]))


# --- the DHQ Hadamard datapath (quantizer dhq) --------------------------------------------------
#: The MLP layers' datapaths the frame model knows: ``mlp`` (the bit-serial MLP engines, one per MLP) and
#: ``hadamard`` (DHQ: one Hadamard datapath per layer, ``hadamard_layers``).
DATAPATHS = ("mlp", "hadamard")
#: The Hadamard array a preset without a ``hadamard`` section uses: ``flows/configs/had-inr.yaml`` (8 x 16).
HADAMARD_DEFAULT = Path(__file__).resolve().parents[1] / "flows" / "configs" / "had-inr.yaml"
_HADAMARD_MAX_BITS = 16  # HadamardParams' widest weight / activation


def check_datapath(name, what: str = "datapath") -> str:
    """``name`` if it is one of ``DATAPATHS``; else ValueError naming ``what`` and the value."""
    if not isinstance(name, str) or name not in DATAPATHS:
        raise ValueError(f"unknown {what} {name!r} (choices: {', '.join(DATAPATHS)})")
    return name


def hadamard_base(preset: AcceleratorPreset) -> HadamardParams:
    """The preset's Hadamard array: its ``hadamard`` section, else ``HADAMARD_DEFAULT``'s (8 x 16, 16-bit M)."""
    if preset.hadamard is not None:
        return preset.hadamard
    from hw.params import load_config

    return load_config(HADAMARD_DEFAULT)["hadamard"]


def hadamard_layer_params(base: HadamardParams, in_features: int, out_features: int, max_bits: int) -> HadamardParams:
    """``base`` resized for one layer, as ``flows.inr.datapath.layer_params`` (``tests/test_dhq_frame.py`` checks
    they agree): n = ``padded_size(in)`` (the next power of two, at least 2), m = out, C = min(C, n),
    R = min(R, m), weight and activation widths up to ``max_bits``.

    Raises:
        ConfigError: a layer the engine cannot hold (in > 128, out > 256), naming the field.
    """
    n = max(2, 1 << (int(in_features) - 1).bit_length())
    return dataclasses.replace(base, n=n, out_size=out_features, cols=min(base.cols, n),
                               rows=min(base.rows, out_features), weight_bits=max(base.weight_bits, max_bits),
                               max_act_bits=max(base.max_act_bits, max_bits))


def hadamard_layers(policy: Mapping[str, int], arch: Mapping, preset: AcceleratorPreset,
                    rotations: Mapping[str, tuple[bool, bool]] | None = None) -> dict[str, list[dict]]:
    """Each MLP layer's datapath and cycles with DHQ (``quant.hadamard``): {"density": [...], "color": [...]}.

    Every layer gets its own engine, chained in data-flow order (``sim.perf``). By the layer's rotation
    (``quant.hadamard``'s placement table, ``rotations[layer] = (rotate_weight, rotate_act)``, None: both
    everywhere, placement "all"):

    * both: a Hadamard datapath sized for the layer as ``flows.inr.datapath.layer_params`` does (n =
      ``padded_size(in)``, m = out, R = min(R, m), C = min(C, n), from ``hadamard_base(preset)``), run at
      the layer's activation bits a: ``T = ceil(m / R) (n / C) a`` cycles per vector
      (``sim.tlm.hadamard.vector_cycles``), latency ``T + log2 n + 8``;
    * weight only: the same datapath with the input codes transformed unrounded: ``a + log2 n`` bits of u,
      ``T = ceil(m / R) (n / C) (a + log2 n)``;
    * neither: a one-layer bit-serial MLP engine of the preset's array (``preset.mlp``):
      ``T = ceil(out / R) ceil(in / C) w a`` (``sim.tlm.mlp_engine.layer_cycles``), latency T + 6;
    * input only: refused (a second, inverse transform after the requantizer; not built).

    Bits as ``mlp_layers``: w the layer's ``.weight`` component, a the widest of its input components.

    Returns:
        Per MLP, per layer ``{"name", "in_size", "out_size", "weight_bits", "act_bits", "rotate"
        ("both" | "weight" | "none"), "engine" ("hadamard" | "mlp"), "cycles" (T), "latency_extra"
        (cycles from its input transfer to its output, idle, less T)}``, Hadamard layers also ``"n", "m",
        "rows", "cols", "datapath_act_bits"`` (a, or a + log2 n).

    Raises:
        ConfigError: an input-only rotation, a width the datapath cannot run (above 16 bits; a + log2 n
            above 16 for a weight-only layer), a layer wider than it holds (in > 128, out > 256), or a
            width the MLP engine cannot run, naming the layer, component and value.
        ValueError: ``rotations`` names a layer the model does not have.
    """
    from sim.tlm.hadamard import vector_cycles, vector_latency
    from sim.tlm.mlp_engine import layer_cycles

    layout = model_layout(arch)
    rotations = {} if rotations is None else dict(rotations)
    unknown = [n for n in rotations if n not in layout.layers]
    if unknown:
        raise ValueError(f"rotations name no layer of the model: {', '.join(map(repr, unknown))} "
                         f"(layers: {', '.join(layout.layers)})")
    base = hadamard_base(preset)
    out: dict[str, list[dict]] = {}
    for ly in layout.layers.values():
        rot_w, rot_a = rotations.get(ly.name, (True, True))
        entry = {"name": ly.name, "in_size": ly.in_size, "out_size": ly.out_size}
        if rot_a and not rot_w:
            raise ConfigError(f"layer {ly.name} rotates its input only: that needs a second (inverse) transform "
                              "after the requantizer, which the Hadamard datapath does not have")
        if not rot_w:
            w = check_bits(policy, ly.weight, preset.mlp.max_weight_bits, "max_weight_bits")
            a = max(check_bits(policy, n, preset.mlp.max_act_bits, "max_act_bits") for n in ly.inputs)
            t = layer_cycles(preset.mlp, in_size=ly.in_size, out_size=ly.out_size, weight_bits=w, act_bits=a)
            entry.update(weight_bits=w, act_bits=a, rotate="none", engine="mlp", cycles=t,
                         latency_extra=MLP_EXTRA_LATENCY)
        else:
            w = check_bits(policy, ly.weight, _HADAMARD_MAX_BITS, "Hadamard weight_bits")
            a = max(check_bits(policy, n, _HADAMARD_MAX_BITS, "Hadamard max_act_bits") for n in ly.inputs)
            p = hadamard_layer_params(base, ly.in_size, ly.out_size, max(w, a))
            a_eff = a if rot_a else a + p.log2_n
            if a_eff > _HADAMARD_MAX_BITS:
                raise ConfigError(f"layer {ly.name} rotates its weight only: u takes a + log2 n = {a} + {p.log2_n} "
                                  f"= {a_eff} bits, above the Hadamard datapath's {_HADAMARD_MAX_BITS}")
            p = dataclasses.replace(p, max_act_bits=max(p.max_act_bits, a_eff))
            cycles = vector_cycles(p, a_eff)
            t = vector_latency(p, a_eff)
            entry.update(weight_bits=w, act_bits=a, rotate="both" if rot_a else "weight", engine="hadamard",
                         cycles=cycles, latency_extra=t - cycles, n=p.n, m=p.out_size, rows=p.rows, cols=p.cols,
                         datapath_act_bits=a_eff)
        out.setdefault(ly.mlp, []).append(entry)
    return out
