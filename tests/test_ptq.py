"""PTQ on a trained field, the policy costs (FQR, BitOps, bytes) and the quantize / sweep flows."""

import json
import math

import pytest
import torch

from flows.quantize import TrainedField, quantize, resolve_policy, sweep
from nerf.model import InstantNGP
from quant.costs import bitops, model_bytes, parameter_counts
from quant.policy import PolicyError, QuantPolicy, component_names
from quant.ptq import apply_policy
from tests.conftest import acaq_arch, quick_preset, train_quick

QUICK = quick_preset(iterations=80, n_samples=32, log2_table_size=12, n_max=64, batch_samples=4096)
ACAQ = acaq_arch()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_quick(tmp_path_factory.mktemp("runs"), QUICK)


def test_bitops_of_uniform_8_matches_a_caq_formula_by_hand():
    s = 10.0
    interp = 3 * 32 * 32 + 16 * 2 * (12 * 32 * 32 + 8 * 32 * 8)
    density = 32 * 64 * 8 * 8 + 64 * 16 * 8 * 8
    color = 15 * 64 * 8 * 8 + 64 * 64 * 8 * 8 + 64 * 3 * 8 * 8
    render = 8 * s * (s - 1) / 2 + s * 8 * 8
    want = 800 * 800 * (s * (interp + density + color) + render)
    assert bitops(QuantPolicy.uniform(8, 16), ACAQ, samples_per_ray=s) == pytest.approx(want, rel=1e-12)


def test_bitops_follow_each_component_and_the_sample_count():
    base = QuantPolicy.uniform(8, 16)
    b0 = bitops(base, ACAQ, samples_per_ray=12.0)
    for name in component_names(16):
        if name in ("sh.out", "color.l2.out"):  # not multiplication operands in A-CAQ's count
            assert bitops(base.replace({name: 4}), ACAQ, samples_per_ray=12.0) == b0
        else:
            assert bitops(base.replace({name: 4}), ACAQ, samples_per_ray=12.0) < b0, name
    assert bitops(base, ACAQ, samples_per_ray=6.0) < b0
    with pytest.raises(ValueError, match="samples_per_ray must be a finite number >= 0, not -1"):
        bitops(base, ACAQ, samples_per_ray=-1)
    with pytest.raises(PolicyError, match="does not match a 8-level model"):
        bitops(base, {**ACAQ, "levels": 8}, samples_per_ray=1.0)


def test_model_bytes_count_the_stored_parameters():
    model = InstantNGP(**ACAQ)
    weights = sum(p.numel() for n, p in model.named_parameters() if n.endswith("weight"))
    counts = parameter_counts(ACAQ)
    assert sum(v for k, v in counts.items() if k.endswith("weight")) == weights
    # dense levels store (N + 1)^3 rows, hashed levels T rows
    res = model.encoding.resolutions
    assert [counts[f"hash.level{i:02d}"] for i in range(16)] == [
        2 * ((n + 1) ** 3 if dense else 1 << 15) for n, dense in zip(res, model.encoding.dense)]
    total = sum(counts.values())
    assert model_bytes(QuantPolicy.uniform(32, 16), ACAQ) == 4 * total
    assert model_bytes(QuantPolicy.uniform(8, 16), ACAQ) == total + 8 * 30
    assert model_bytes(QuantPolicy.uniform(4, 16), ACAQ) == math.ceil(total / 2) + 8 * 30


def test_apply_policy_installs_one_quantizer_per_quantized_component():
    model = InstantNGP(levels=4, log2_table_size=10, n_max=32)
    policy = QuantPolicy.uniform(8, 4).replace({"color.out": 32, "hash.level02": 5})
    qs = apply_policy(model, policy)
    assert set(qs) == set(component_names(4)) - {"color.out"}
    assert qs["hash.level02"].bits == 5 and qs["density.l0.weight"].scheme == "symmetric"
    assert len(model.quant) == len(qs)
    apply_policy(model, QuantPolicy.uniform(32, 4))
    assert len(model.quant) == 0


def test_resolve_policy_forms_and_errors(tmp_path):
    assert resolve_policy("uniform-6", 4)[1] == QuantPolicy.uniform(6, 4)
    assert resolve_policy("fp", 4)[0] == "fp"
    with pytest.raises(ValueError, match=r"bits of policy 'uniform-1' must be an integer in \[2, 32\], not 1"):
        resolve_policy("uniform-1", 4)
    with pytest.raises(FileNotFoundError, match="policy 'nope.yaml': not 'uniform-<bits>'"):
        resolve_policy("nope.yaml", 4)
    QuantPolicy.uniform(7, 4).save(tmp_path / "p.yaml")
    assert resolve_policy(str(tmp_path / "p.yaml"), 4) == ("p", QuantPolicy.uniform(7, 4))


def test_missing_checkpoint_says_which_command_makes_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"run `make train SCENE=builtin PRESET=tiny` first"):
        TrainedField("builtin", "tiny", runs_root=tmp_path)


def test_16_bit_ptq_is_within_0_1_db_of_full_precision(runs):
    s16 = quantize("builtin", "quick", "uniform-16", runs_root=runs, rays=2048, progress=False)
    assert {"psnr_fp", "psnr_q", "fqr", "bitops", "model_bytes"} <= s16.keys()
    assert abs(s16["psnr_q"] - s16["psnr_fp"]) < 0.1
    assert s16["fqr"] == 16 and s16["model_bytes"] < s16["model_bytes_fp"]
    saved = json.loads((runs / "quantize-builtin-quick-uniform-16" / "summary.json").read_text())
    assert saved == s16
    assert QuantPolicy.load(runs / "quantize-builtin-quick-uniform-16" / "policy.yaml", 16) == QuantPolicy.uniform(16, 16)
    s2 = quantize("builtin", "quick", "uniform-2", runs_root=runs, rays=2048, progress=False)
    assert s2["psnr_q"] != s2["psnr_fp"] and s2["bitops"] < s16["bitops"] and s2["model_bytes"] < s16["model_bytes"]


def test_ptq_render_error_grows_as_bits_shrink(runs):
    from nerf.train import render_image
    from quant.ptq import ptq

    field = TrainedField("builtin", "quick", runs_root=runs, progress=False)
    view = lambda: render_image(field.model, field.occupancy, field.test_data, 0, n_samples=QUICK.n_samples)[0]
    fp = view()
    err = {}
    for b in (16, 8, 4, 2):
        ptq(field.model, field.occupancy, field.train_data, QuantPolicy.uniform(b, 16), n_samples=QUICK.n_samples,
            rays=2048)
        err[b] = float(abs(view() - fp).mean())
    field.model.clear_quantizers()
    assert torch.equal(torch.from_numpy(view()), torch.from_numpy(fp))  # clearing restores full precision
    assert err[16] < 1e-4 < err[8] < err[4] < err[2], err


def test_sweep_writes_table_and_plot_and_resumes(runs, monkeypatch):
    s = sweep("builtin", "quick", bits=(8, 3), runs_root=runs, rays=2048, progress=False)
    assert [r["policy"] for r in s["rows"]] == ["fp", "uniform-8", "uniform-3"]
    out = runs / "sweep-builtin-quick"
    assert (out / "psnr_vs_fqr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "table.md").read_text().count("\n") == 2 + 3
    assert (out / "table.csv").read_text().splitlines()[0] == "policy,fqr,psnr_q,delta_psnr,ssim_q,bitops,model_bytes"
    # a second call recomputes nothing: every row is kept from sweep.json
    monkeypatch.setattr(TrainedField, "evaluate", lambda *a, **k: pytest.fail("recomputed a finished row"))
    assert sweep("builtin", "quick", bits=(8, 3), runs_root=runs, rays=2048, progress=False)["rows"] == s["rows"]
