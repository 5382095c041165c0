"""DHQ as the quantizer of the radiance field's MLPs (quant.dhq_field) in `make quantize` and `make search`."""

import json

import pytest
import torch
from torch import nn

from flows.quantize import quantize
from flows.search import search
from nerf.model import InstantNGP
from quant.dhq_field import (check_options, dhq_bits, dhq_installed, field_rotations, install_dhq, taken_over)
from quant.hadamard import DHQLinear
from quant.policy import QuantPolicy, component_names
from sim.perf import frame_perf, load_accelerator
from tests.conftest import quick_preset, train_quick

QUICK = quick_preset(iterations=30, n_samples=24, log2_table_size=10, n_max=32, levels=4, batch_samples=2048)
LAYERS = ["density.l0", "density.l1", "color.l0", "color.l1", "color.l2"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_quick(tmp_path_factory.mktemp("runs"), QUICK)


def small_field():
    torch.manual_seed(0)
    return InstantNGP(levels=4, log2_table_size=10, n_max=32)


@pytest.mark.parametrize("args, message", [
    (("fancy",), r"unknown quantizer 'fancy' \(choices: uniform, dhq\)"),
    (("dhq", "middle"), r"unknown placement 'middle' \(choices: all, paper, rule\)"),
    (("dhq", "all", "max"), r"unknown calibration 'max' \(choices: min-max, mse, percentile\)"),
    (("uniform", "paper"), r"placement 'paper' is an option of quantizer 'dhq', not 'uniform'"),
    (("uniform", None, "mse"), r"calibration 'mse' is an option of quantizer 'dhq'"),
])
def test_bad_quantizer_options_are_named(args, message):
    with pytest.raises(ValueError, match=message):
        check_options(*args)


def test_options_defaults():
    assert check_options("uniform") == {"quantizer": "uniform"}
    assert check_options("dhq") == {"quantizer": "dhq", "placement": "all", "calibration": "min-max"}


def test_placements_on_the_two_mlps():
    model = small_field()
    assert field_rotations(model, "all") == dict.fromkeys(LAYERS, (True, True))
    assert field_rotations(model, "paper") == {"density.l0": (True, False), "density.l1": (True, True),
                                               "color.l0": (True, False), "color.l1": (False, False),
                                               "color.l2": (True, True)}
    with pytest.raises(ValueError, match="placement 'rule' needs the policy's bits"):
        field_rotations(model, "rule")


def test_policy_components_map_onto_the_dhq_layers():
    """Weights -> weight quantizer; a layer's act_in -> its rotated input's quantizer; the first layers' inputs
    requantized at the widest of their input streams, which keep their uniform quantizers."""
    model = small_field()
    policy = QuantPolicy.uniform(8, 4).replace({"enc.out": 7, "density.l1.out": 5, "sh.out": 6,
                                                "color.l1.act_in": 4, "color.l1.weight": 3})
    rot = field_rotations(model, "all")
    assert dhq_bits(policy, model.arch, rot) == {"density.l0": (8, 7), "density.l1": (8, 8), "color.l0": (8, 6),
                                                 "color.l1": (3, 4), "color.l2": (8, 8)}
    installed = install_dhq(model, policy, rot)
    gone = {f"{n}.weight" for n in LAYERS} | {"density.l1.act_in", "color.l1.act_in", "color.l2.act_in"}
    assert set(taken_over(model.arch, rot)) == gone
    assert set(installed["quantizers"]) == set(component_names(4)) - gone
    assert len(model.quant) == len(installed["quantizers"])
    layer = model.color_l1
    assert isinstance(layer, DHQLinear) and layer.rotate and layer.weight_quantizer.bits == 3
    assert layer.act_quantizer.bits == 4 and layer.act_quantizer.scheme == "symmetric"


def test_paper_keeps_the_uniform_path_where_nothing_is_rotated_and_restores_the_field():
    model = small_field()
    pts, dirs = torch.rand(64, 3) * 2 - 1, nn.functional.normalize(torch.randn(64, 3), dim=-1)
    with torch.no_grad():
        ref = model(pts, dirs)
    originals = {n: getattr(model, n.replace(".", "_")) for n in LAYERS}
    rot = field_rotations(model, "paper")
    with dhq_installed(model, QuantPolicy.uniform(6, 4), rot) as installed:
        assert set(installed["layers"]) == {"density.l0", "density.l1", "color.l0", "color.l2"}
        assert type(model.color_l1) is nn.Linear  # neither rotated: the uniform weight and act_in quantizers
        assert {"color.l1.weight", "color.l1.act_in", "enc.out", "sh.out"} <= set(installed["quantizers"])
        assert not {"density.l1.act_in", "color.l2.act_in"} & set(installed["quantizers"])
        assert not model.density_l0.act_quantizer.active  # weight only: enc.out's codes go in unrounded
    assert all(getattr(model, n.replace(".", "_")) is m for n, m in originals.items()) and len(model.quant) == 0
    with torch.no_grad():
        out = model(pts, dirs)
    assert all(torch.equal(a, b) for a, b in zip(out, ref))


def test_dhq_changes_the_fields_output_as_the_bits_shrink():
    """On the field itself: at 16 bits DHQ is close to full precision; at 4 bits it differs from full precision
    and from uniform PTQ, calibrated on the same samples."""
    from quant.ptq import apply_policy
    from quant.quantizers import calibrate

    model = small_field()
    torch.manual_seed(1)
    pts, dirs = torch.rand(512, 3) * 2 - 1, nn.functional.normalize(torch.randn(512, 3), dim=-1)

    def run():
        with torch.no_grad():
            with calibrate(model):
                model(pts, dirs)
            return torch.cat([t.reshape(len(pts), -1) for t in model(pts, dirs)], dim=1)

    ref = run()
    rot = field_rotations(model, "all")
    with dhq_installed(model, QuantPolicy.uniform(16, 4), rot):
        d16 = run()
    with dhq_installed(model, QuantPolicy.uniform(4, 4), rot):
        d4 = run()
    apply_policy(model, QuantPolicy.uniform(4, 4))
    u4 = run()
    model.clear_quantizers()
    err = lambda x: float((x - ref).abs().mean())
    assert err(d16) < 1e-3 * err(d4) and err(d4) > 0 and not torch.equal(d4, u4)


def test_quantize_with_dhq_records_the_quantizer_and_the_hadamard_latency(runs):
    u = quantize("builtin", "quick", "uniform-8", runs_root=runs, rays=1024, progress=False)
    d = quantize("builtin", "quick", "uniform-8", runs_root=runs, rays=1024, progress=False, quantizer="dhq")
    assert u["quantizer"] == "uniform" and "placement" not in u and u["frame"]["datapath"] == "mlp"
    assert (d["quantizer"], d["placement"], d["calibration"]) == ("dhq", "all", "min-max")
    assert d["rotations"] == dict.fromkeys(LAYERS, "both") and d["frame"]["datapath"] == "hadamard"
    saved = json.loads((runs / "quantize-builtin-quick-uniform-8-dhq-all-min-max" / "summary.json").read_text())
    assert saved == d and (runs / "quantize-builtin-quick-uniform-8" / "summary.json").is_file()
    assert d["psnr_fp"] == u["psnr_fp"]  # (the 30-iteration field is barely trained: PSNRs say little here)
    arch = InstantNGP(levels=4, log2_table_size=10, n_min=QUICK.n_min, n_max=QUICK.n_max).arch
    pol = QuantPolicy.uniform(8, 4)
    assert d["frame"]["cycles"] == frame_perf(load_accelerator("onchip"), arch, pol, samples=d["frame"]["samples"],
                                              datapath="hadamard").cycles
    assert u["frame"]["cycles"] == frame_perf(load_accelerator("onchip"), arch, pol,
                                              samples=u["frame"]["samples"]).cycles
    d16 = quantize("builtin", "quick", "uniform-16", runs_root=runs, rays=1024, progress=False, quantizer="dhq",
                   placement="rule", calibration="mse")
    assert abs(d16["psnr_q"] - d16["psnr_fp"]) < 0.1 and d16["calibration"] == "mse"
    assert set(d16["rotations"].values()) <= {"both", "weight", "input", "none"}
    assert (runs / "quantize-builtin-quick-uniform-16-dhq-rule-mse" / "summary.json").is_file()
    with pytest.raises(ValueError, match="unknown placement 'middle'"):
        quantize("builtin", "quick", "uniform-8", runs_root=runs, quantizer="dhq", placement="middle")


def test_search_with_dhq_costs_policies_on_the_hadamard_datapath(runs):
    args = dict(episodes=2, warmup=2, val_views=1, rays=1024, progress=False, hw="onchip", budget=0.8)
    s = search("builtin", "quick", runs_root=runs, quantizer="dhq", placement="paper", **args)
    out = runs / "search-builtin-quick-dhq-paper-min-max-latency"
    assert json.loads((out / "summary.json").read_text()) == s
    assert s["settings"]["quantizer"] == "dhq" and s["settings"]["placement"] == "paper"
    arch = InstantNGP(levels=4, log2_table_size=10, n_min=QUICK.n_min, n_max=QUICK.n_max).arch
    best = QuantPolicy.load(out / "policy.yaml", 4)
    rot = field_rotations(InstantNGP(**{k: v for k, v in arch.items() if k != "bbox"}), "paper")
    assert frame_perf(load_accelerator("onchip"), arch, best, samples=s["frame"]["samples"], datapath="hadamard",
                      rotations=rot).cycles == s["best"]["latency_cycles"]
    with pytest.raises(ValueError, match="keeps the hash tables in DRAM"):
        search("builtin", "quick", runs_root=runs, quantizer="dhq", **{**args, "hw": "default"})
    with pytest.raises(ValueError, match="placement 'rule' decides each rotation"):
        search("builtin", "quick", runs_root=runs, quantizer="dhq", placement="rule", **args)
