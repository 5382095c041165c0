"""The frame model with DHQ's Hadamard datapaths (sim.perf.frame_perf(datapath="hadamard"),
sim.mapping.hadamard_layers)."""

import math

import numpy as np
import pytest

from hw.params import ConfigError, HadamardConfig, HadamardParams, load_config
from quant.policy import QuantPolicy
from sim.mapping import HADAMARD_DEFAULT, encoder_params, hadamard_base, hadamard_layer_params, hadamard_layers
from sim.perf import ENCODER_EXTRA_LATENCY, frame_perf, load_accelerator, mlp_cycles
from sim.tlm.hadamard import HadamardTLM, vector_latency

# a small Instant-NGP: 4 levels (8 encoder outputs), hidden 16, 7 geometry features
ARCH = {"levels": 4, "log2_table_size": 10, "features": 2, "n_min": 16, "n_max": 32, "hidden": 16,
        "geo_features": 7, "bbox": [[-1.5] * 3, [1.5] * 3]}
# (in, out) of density.l0, density.l1, color.l0, color.l1, color.l2
SHAPES = {"density": [(8, 16), (16, 8)], "color": [(7 + 16, 16), (16, 16), (16, 3)]}
ONCHIP = load_accelerator("onchip")


def closed_form(a: int, samples: int, preset=ONCHIP) -> int:
    """Frame cycles by hand: every layer on its own Hadamard datapath (n = next power of two, R = min(8, m),
    C = min(16, n) of had-inr.yaml), T = ceil(m / R) (n / C) a, each leaving T + log2 n + 8 after its offer,
    one FIFO cycle before every engine."""
    g = math.ceil(ARCH["levels"] / min(preset.lanes, ARCH["levels"]))
    slope, out = g, g + ENCODER_EXTRA_LATENCY
    for layers in SHAPES.values():
        for i, o in layers:
            n = max(2, 1 << (i - 1).bit_length())
            r, c = min(8, o), min(16, n)
            t = math.ceil(o / r) * (n // c) * a
            slope, out = max(slope, t), out + 1 + t + int(math.log2(n)) + 8
    return (samples - 1) * slope + out + 1


@pytest.mark.parametrize("a", [2, 5, 8])
@pytest.mark.parametrize("samples", [1, 7, 100_000])
def test_dhq_frame_cycles_equal_the_closed_forms(a, samples):
    p = frame_perf(ONCHIP, ARCH, QuantPolicy.uniform(a, 4), samples=samples, datapath="hadamard")
    assert p.cycles == closed_form(a, samples)
    assert p.to_dict()["datapath"] == "hadamard"
    layers = [ly for name in ("density", "color") for ly in p.engines[name]["layers"]]
    assert [ly["cycles"] for ly in layers] == [2 * a, 1 * a, 4 * a, 2 * a, 1 * a]
    assert p.engines["density"]["cycles_per_sample"] == 2 * a and p.engines["color"]["cycles_per_sample"] == 4 * a
    assert mlp_cycles(ONCHIP, ARCH, QuantPolicy.uniform(a, 4), datapath="hadamard") == {"density": 2 * a,
                                                                                       "color": 4 * a}


def test_dhq_frame_cycles_grow_linearly_in_the_activation_bits():
    bits = range(2, 9)
    cycles = [frame_perf(ONCHIP, ARCH, QuantPolicy.uniform(a, 4), samples=10_000, datapath="hadamard").cycles
              for a in bits]
    steps = np.diff(cycles)
    assert len(set(steps.tolist())) == 1 and steps[0] > 0  # affine in a: T = RT CT a for every layer
    # a weight-only rotated layer runs at a + log2 n bits of u
    rot = {"density.l0": (True, False)}
    ly = hadamard_layers(QuantPolicy.uniform(6, 4), ARCH, ONCHIP, rot)["density"][0]
    assert (ly["rotate"], ly["datapath_act_bits"], ly["cycles"]) == ("weight", 6 + 3, 2 * 9)


def test_the_stage_formula_is_the_hadamard_tlms_timing():
    """Offers k s + b into an idle engine leave at k max(s, T) + b + T + log2 n + 8 (sim.perf's stage), also
    through a chain of two engines (the second offered one cycle after the first's output)."""
    p1 = HadamardParams(n=32, out_size=16, rows=8, cols=16, max_act_bits=8)
    p2 = HadamardParams(n=16, out_size=8, rows=8, cols=8, max_act_bits=8)
    rng = np.random.default_rng(1)
    a, n = 5, 24
    t1, t2 = 2 * 2 * a, 1 * 2 * a
    for s in (1, t1 - 3, t1, t1 + 4):
        offers = np.arange(n) * s + 3
        e1 = HadamardTLM(p1, HadamardConfig(act_bits=a), np.zeros((16, 32), dtype=np.int64))
        o1 = e1.run(rng.integers(-128, 128, size=(n, 32)), offer_cycles=offers).out_cycles
        np.testing.assert_array_equal(o1, np.arange(n) * max(s, t1) + 3 + vector_latency(p1, a))
        e2 = HadamardTLM(p2, HadamardConfig(act_bits=a), np.zeros((8, 16), dtype=np.int64))
        o2 = e2.run(rng.integers(-128, 128, size=(n, 16)), offer_cycles=o1 + 1).out_cycles
        np.testing.assert_array_equal(o2, np.arange(n) * max(s, t1, t2) + 3 + vector_latency(p1, a) + 1
                                      + vector_latency(p2, a))


def test_unrotated_layers_run_on_the_mlp_engine_and_input_only_is_refused():
    from sim.tlm.mlp_engine import layer_cycles

    pol = QuantPolicy.uniform(6, 4)
    rot = {"color.l1": (False, False)}
    ly = hadamard_layers(pol, ARCH, ONCHIP, rot)["color"][1]
    assert ly["engine"] == "mlp" and ly["latency_extra"] == 6
    assert ly["cycles"] == layer_cycles(ONCHIP.mlp, in_size=16, out_size=16, weight_bits=6, act_bits=6)
    with pytest.raises(ConfigError, match="layer color.l2 rotates its input only"):
        frame_perf(ONCHIP, ARCH, pol, samples=5, datapath="hadamard", rotations={"color.l2": (False, True)})
    with pytest.raises(ConfigError, match=r"density.l0 rotates its weight only: u takes a \+ log2 n = 16 \+ 3"):
        frame_perf(ONCHIP, ARCH, QuantPolicy.uniform(16, 4), samples=5, datapath="hadamard",
                   rotations={"density.l0": (True, False)})
    with pytest.raises(ValueError, match="rotations name no layer of the model: 'density.l7'"):
        hadamard_layers(pol, ARCH, ONCHIP, {"density.l7": (True, True)})


def test_bad_datapaths_and_settings_are_refused():
    pol = QuantPolicy.uniform(8, 4)
    with pytest.raises(ValueError, match=r"unknown datapath 'systolic' \(choices: mlp, hadamard\)"):
        frame_perf(ONCHIP, ARCH, pol, samples=5, datapath="systolic")
    with pytest.raises(ValueError, match=r"unknown datapath 'Hadamard'"):
        mlp_cycles(ONCHIP, ARCH, pol, datapath="Hadamard")
    with pytest.raises(ValueError, match="need datapath 'hadamard', not 'mlp'"):
        frame_perf(ONCHIP, ARCH, pol, samples=5, rotations={"density.l0": (True, True)})
    with pytest.raises(ConfigError, match="keeps the hash tables in DRAM"):
        frame_perf(load_accelerator("default"), ARCH, pol, samples=5, datapath="hadamard")
    with pytest.raises(ConfigError, match="accelerator top"):
        frame_perf(ONCHIP, ARCH, pol, samples=5, datapath="hadamard", rays=np.array([5]))
    with pytest.raises(ConfigError, match="full precision does not run"):
        frame_perf(ONCHIP, ARCH, QuantPolicy.uniform(32, 4), samples=5, datapath="hadamard")


def test_the_uniform_path_is_unchanged_by_the_datapath_argument():
    pol = QuantPolicy.uniform(6, 4).replace({"color.l1.weight": 3})
    assert frame_perf(ONCHIP, ARCH, pol, samples=999, datapath="mlp").to_dict() == \
        frame_perf(ONCHIP, ARCH, pol, samples=999).to_dict()
    assert "datapath" not in frame_perf(ONCHIP, ARCH, pol, samples=999).to_dict()


def test_the_array_comes_from_the_presets_hadamard_section_or_had_inr(tmp_path):
    assert hadamard_base(ONCHIP) == load_config(HADAMARD_DEFAULT)["hadamard"]
    text = (load_accelerator("onchip") and open(HADAMARD_DEFAULT.parents[1] / "accel" / "onchip.yaml").read())
    (tmp_path / "had.yaml").write_text(text + "hadamard:\n  rows: 4\n  cols: 4\n")
    preset = load_accelerator(tmp_path / "had.yaml")
    assert (preset.hadamard.rows, preset.hadamard.cols) == (4, 4)
    ly = hadamard_layers(QuantPolicy.uniform(8, 4), ARCH, preset)["color"][1]  # 16 -> 16: 4 x 4 tiles
    assert (ly["rows"], ly["cols"], ly["cycles"]) == (4, 4, 4 * 4 * 8)
    (tmp_path / "bad.yaml").write_text(text + "hadamard:\n  rows: 4\n  lanes: 2\n")
    with pytest.raises(ConfigError, match="lanes"):
        load_accelerator(tmp_path / "bad.yaml")


def test_layer_params_agree_with_the_inr_flow():
    from flows.inr.datapath import layer_params

    base = hadamard_base(ONCHIP)
    for i, o in [(2, 1), (3, 64), (31, 64), (64, 3), (100, 256)]:
        for bits in (4, 8, 12):
            assert hadamard_layer_params(base, i, o, bits) == layer_params(base, i, o, bits)
    assert encoder_params(ONCHIP, ARCH).groups == 1
