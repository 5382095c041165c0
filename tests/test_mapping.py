"""The model layout (nerf.layout) and the accelerator mapping (sim.mapping): one definition each, equal to
the model, the policy's components and the TLMs."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, strategies as st

from hw.params import ConfigError, HashEncoderParams, MlpEngineParams, MlpLayer
from nerf.layout import model_layout
from quant.policy import QuantPolicy, component_names
from sim.mapping import (ENCODER_EXTRA_LATENCY, MLP_EXTRA_LATENCY, AcceleratorPreset, encoder_params,
                         engines_for_policy, layer_of, load_accelerator, mlp_layers, mlp_shapes)
from sim.tlm.hash_encoder import HashEncoderTLM
from sim.tlm.mlp_engine import MlpEngineTLM, vector_cycles
from tests.conftest import acaq_arch

ODD_ARCH = {"levels": 5, "log2_table_size": 9, "features": 3, "n_min": 4, "n_max": 40, "hidden": 24,
            "geo_features": 7, "bbox": [[-1.0] * 3, [1.0] * 3]}


def test_acaq_layout_is_the_papers():
    layout = model_layout(acaq_arch())
    assert {n: (ly.in_size, ly.out_size) for n, ly in layout.layers.items()} == {
        "density.l0": (32, 64), "density.l1": (64, 16), "color.l0": (31, 64), "color.l1": (64, 64), "color.l2": (64, 3)}
    assert layout.layers["color.l0"].inputs == ("density.l1.out", "sh.out")
    assert layout.layers["color.l0"].input_sizes == (15, 16)
    assert all(sum(ly.input_sizes) == ly.in_size for ly in layout.layers.values())
    assert mlp_shapes(acaq_arch()) == {"density": [32, 64, 16], "color": [31, 64, 64, 3]}


@pytest.mark.parametrize("arch", [acaq_arch(), ODD_ARCH])
def test_layout_names_exactly_the_policy_components(arch):
    layout = model_layout(arch)
    names = layout.hash_components + layout.weight_components + list(layout.activations)
    assert sorted(names) == sorted(component_names(arch["levels"])) and len(set(names)) == len(names)
    inputs = [n for ly in layout.layers.values() for n in ly.inputs]
    assert set(inputs) <= set(layout.activations)


@pytest.mark.parametrize("arch", [acaq_arch(), ODD_ARCH])
def test_the_model_is_built_from_the_layout(arch):
    import torch

    from nerf.model import InstantNGP
    from quant.costs import parameter_counts

    model = InstantNGP(**{k: v for k, v in arch.items()})
    for name, ly in model_layout(arch).layers.items():
        assert getattr(model, name.replace(".", "_")).weight.shape == (ly.out_size, ly.in_size)
    sigma, rgb = model(torch.rand(5, 3), torch.nn.functional.normalize(torch.randn(5, 3), dim=-1))
    assert sigma.shape == (5,) and rgb.shape == (5, 3)
    counts = parameter_counts(arch)  # quant.costs reads the same layout
    for name, ly in model_layout(arch).layers.items():
        assert counts[ly.weight] == getattr(model, name.replace(".", "_")).weight.numel()


def test_layer_of_maps_every_engine_component_to_the_layer_it_feeds():
    table = layer_of(ODD_ARCH)
    assert table["sh.out"] == table["density.l1.out"] == table["color.l0.weight"] == ("color", 0)
    assert table["enc.out"] == ("density", 0) and table["color.l2.act_in"] == ("color", 2)
    assert not {"density.out", "color.l2.out", "color.out", "hash.level00"} & table.keys()


def test_mlp_layers_take_bits_from_the_policy():
    mlp = MlpEngineParams(max_weight_bits=8, max_act_bits=8)
    pol = QuantPolicy.uniform(4, 5).replace({"sh.out": 7, "density.l1.out": 5, "color.l1.weight": 3})
    layers = mlp_layers(pol, ODD_ARCH, mlp)
    assert layers["color"][0] == {"in_size": 7 + 16, "out_size": 24, "weight_bits": 4, "act_bits": 7}
    assert layers["color"][1]["weight_bits"] == 3 and layers["density"][1]["out_size"] == 8
    with pytest.raises(ConfigError, match="policy sh.out = 9 bits does not fit the engines' max_act_bits = 8"):
        mlp_layers(pol.replace({"sh.out": 9}), ODD_ARCH, mlp)


def test_engines_for_policy_are_sized_for_the_model_and_the_widest_bits():
    preset = load_accelerator("onchip")
    pol = QuantPolicy.uniform(5, 5).replace({"hash.level03": 7, "color.l1.act_in": 6, "density.l0.weight": 3,
                                             "color.out": 12})
    engines = engines_for_policy(preset, ODD_ARCH, pol)
    enc, mlp = engines["hash_encoder"], engines["mlp_engine"]
    assert enc == dataclasses.replace(encoder_params(preset, ODD_ARCH), feature_bits=7)
    assert (enc.levels, enc.log2_table_size, enc.features, enc.n_min, enc.n_max) == (5, 9, 3, 4, 40)
    # color.out (12 bits) feeds the renderer, not an engine layer
    assert (mlp.max_weight_bits, mlp.max_act_bits, mlp.max_in, mlp.max_out, mlp.max_layers) == (5, 6, 24, 24, 3)
    assert (mlp.rows, mlp.cols) == (preset.mlp.rows, preset.mlp.cols)


@pytest.mark.parametrize("levels,lanes", [(1, 1), (4, 1), (4, 4), (5, 2), (16, 4)])
def test_encoder_latency_constant_is_the_tlms(levels, lanes):
    p = HashEncoderParams(levels=levels, log2_table_size=6, features=1, feature_bits=4, coord_bits=8, n_min=2,
                          n_max=2 if levels == 1 else 9, lanes=lanes)
    tlm = HashEncoderTLM(p, np.zeros((levels, p.table_size, 1), dtype=np.int64))
    accept, out = tlm.schedule(np.zeros(6, dtype=np.int64))  # all points waiting, output always ready
    np.testing.assert_array_equal(accept, np.arange(6) * p.groups)
    np.testing.assert_array_equal(out, accept + p.groups + ENCODER_EXTRA_LATENCY)
    assert ENCODER_EXTRA_LATENCY == HashEncoderParams.PIPELINE_STAGES + 1 == 7


@pytest.mark.parametrize("rows,cols,bits", [(4, 4, (2, 3)), (8, 2, (5, 4)), (3, 5, (8, 8))])
def test_mlp_latency_constant_is_the_tlms(rows, cols, bits):
    p = MlpEngineParams(rows=rows, cols=cols, max_in=32, max_out=32, max_layers=2, max_weight_bits=8,
                        max_act_bits=8, mult_bits=8)
    wb, ab = bits
    layers = [MlpLayer(in_size=13, out_size=9, weight_bits=wb, act_bits=ab, act_signed=True, relu=True,
                       out_bits=ab, mult=1, shift=0),
              MlpLayer(in_size=9, out_size=5, weight_bits=wb, act_bits=ab, act_signed=False, relu=False,
                       out_bits=8, mult=1, shift=0)]
    tlm = MlpEngineTLM(p, layers, [np.zeros((9, 13), dtype=np.int64), np.zeros((5, 9), dtype=np.int64)])
    offers = np.array([0, 1000], dtype=np.int64)  # each vector meets an idle engine
    accept, out = tlm.schedule(offers)
    np.testing.assert_array_equal(out - accept, vector_cycles(p, layers) + MLP_EXTRA_LATENCY)
    assert MLP_EXTRA_LATENCY == MlpEngineParams.START_CYCLES + MlpEngineParams.PIPELINE_STAGES == 6


# --- hardware presets through common.validate ------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("hash_encoder: [1, 2\n", r"hardware preset '.*p.yaml' is not valid YAML"),
    ("- 1\n- 2\n", r"hardware preset '.*p.yaml' must be a mapping with sections hash_encoder, mlp_engine, memory, "
                    r"hadamard, not \[1, 2\]"),
    ("dram: {}\n", r"p.yaml: unknown section 'dram' \(allowed: hash_encoder, mlp_engine, memory, hadamard\)"),
    ("memory:\n  cache: 4096\n", r"p.yaml: unknown key 'cache' in memory \(allowed: bus_bytes, line_bytes, "
                                   r"cache_bytes, ways, resident_bytes, addr_bits, dram\)"),
    ("memory:\n  ways: 16\n", r"p.yaml: memory.ways must be an integer in \[1, 8\], not 16$"),
    ("memory:\n  ways: 3\n", r"p.yaml: memory.ways must be a power of two, not 3$"),
    ("memory:\n  cache_bytes: 3000\n", r"p.yaml: memory.cache_bytes = 3000 must be a power-of-two multiple of "
                                         r"ways x line_bytes = 128$"),
    ("memory:\n  line_bytes: 8\n", r"p.yaml: memory.line_bytes = 8 is not a multiple of the bus width "
                                     r"bus_bytes = 16$"),
    ("memory:\n  dram: ddr9\n", r"p.yaml: memory.dram = 'ddr9': unknown DRAM preset 'ddr9' \(known: hbm2, lpddr4\)"),
    ("memory: 7\n", r"p.yaml: memory must be a mapping of parameters, not 7"),
    ("hash_encoder:\n  lanes: 0\n", r"p.yaml: HashEncoderPreset.lanes must be an integer in \[1, 32\], not 0$"),
    ("hash_encoder:\n  coord_bits: 16.5\n", r"p.yaml: HashEncoderPreset.coord_bits must be an integer in \[4, 24\], "
                                            r"not 16.5$"),
    ("hash_encoder:\n  lane: 2\n", r"p.yaml: unknown key 'lane' in hash_encoder \(allowed: lanes, coord_bits, "
                                   r"feature_bits\)"),
    ("hash_encoder:\n  log2_table_size: 12\n", r"p.yaml: hash_encoder.log2_table_size is not a preset field .*the "
                                               r"model sets the rest"),
    ("hash_encoder: 4\n", r"p.yaml: hash_encoder must be a mapping of parameters, not 4"),
    ("mlp_engine: 0\n", r"p.yaml: mlp_engine must be a mapping of parameters, not 0"),
    ("mlp_engine:\n  clock_mhz: true\n", r"p.yaml: MlpEngineParams.clock_mhz must be an integer in \[1, 2000\], "
                                         r"not True"),
])
def test_bad_presets_name_file_field_range_and_value(tmp_path, text, message):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_accelerator(path)


def test_presets_on_disk_load_and_the_spec_refuses_bad_fields():
    for name in ("default", "small", "onchip"):
        preset = load_accelerator(name)
        assert isinstance(preset, AcceleratorPreset) and preset.name == name
    default, onchip = load_accelerator("default"), load_accelerator("onchip")
    assert default.memory is not None and onchip.memory is None  # the default keeps its tables in DRAM
    assert dataclasses.replace(default, name="onchip", memory=None) == onchip  # ... else the same accelerator
    assert (default.memory.dram, default.memory.line_bytes, default.memory.bus_bytes, default.memory.ways) == (
        "lpddr4", 64, 16, 2)
    with pytest.raises(ConfigError, match=r"AcceleratorPreset.feature_bits must be an integer in \[2, 16\], not 1"):
        AcceleratorPreset(name="x", feature_bits=1, mlp=MlpEngineParams())
    with pytest.raises(ConfigError, match=r"AcceleratorPreset.mlp must be MlpEngineParams"):
        AcceleratorPreset(name="x", mlp={"rows": 4})


def test_memory_preset_maps_the_policys_level_bits_onto_the_external_table_encoder():
    from hw.hash_encoder_axi.params import HashEncoderAxiParams

    preset = load_accelerator("default")
    pol = QuantPolicy.uniform(5, 5).replace({"hash.level00": 2, "hash.level03": 7, "hash.level04": 3})
    enc = encoder_params(preset, ODD_ARCH, pol)
    assert isinstance(enc, HashEncoderAxiParams)
    assert enc.level_bits == (2, 5, 5, 7, 3) and enc.feature_bits == preset.feature_bits == 16
    assert (enc.cache_bytes, enc.resident_bytes, enc.line_bytes) == (preset.memory.cache_bytes,
                                                                     preset.memory.resident_bytes, 64)
    assert encoder_params(preset, ODD_ARCH).level_bits == ()  # no policy: every level at feature_bits
    engines = engines_for_policy(preset, ODD_ARCH, pol)
    assert set(engines) == {"hash_encoder_axi", "mlp_engine"}
    axi = engines["hash_encoder_axi"]
    assert axi.level_bits == (2, 5, 5, 7, 3) and axi.feature_bits == 7
    # without memory: the on-chip encoder, level bits do not enter it
    assert type(encoder_params(load_accelerator("onchip"), ODD_ARCH, pol)) is HashEncoderParams
    assert set(engines_for_policy(load_accelerator("onchip"), ODD_ARCH, pol)) == {"hash_encoder", "mlp_engine"}


_values = st.one_of(st.integers(-3, 70), st.booleans(), st.floats(allow_nan=True), st.text(max_size=4), st.none(),
                    st.lists(st.integers(), max_size=2))
_sections = st.dictionaries(st.sampled_from(["lanes", "coord_bits", "feature_bits", "levels", "rows", "cols",
                                             "clock_mhz", "x"]), _values, max_size=4)


@given(st.one_of(_values, st.dictionaries(st.sampled_from(["hash_encoder", "mlp_engine", "memory", "other"]),
                                          st.one_of(_sections, _values), max_size=3)))
def test_any_preset_file_gives_a_preset_or_a_config_error(tmp_path_factory, data):
    import yaml

    path = tmp_path_factory.mktemp("fuzz") / "p.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        load_accelerator(path)
    except ConfigError as exc:
        assert str(exc)


def test_policy_fits_external_table_engines_only_at_their_packed_widths():
    from sim.mapping import check_policy_fits

    preset = load_accelerator("default")
    pol = QuantPolicy.uniform(5, 5).replace({"hash.level01": 3})
    engines = engines_for_policy(preset, ODD_ARCH, pol)
    check_policy_fits(pol, engines)
    with pytest.raises(ConfigError, match=r"hash.level01 = 4 bits is not the width the external tables are packed "
                                          r"at, level_bits\[1\] = 3"):
        check_policy_fits(pol.replace({"hash.level01": 4}), engines)
