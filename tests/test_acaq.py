"""A-CAQ fine-tuning (quant.acaq) and its flow (flows.acaq): bits move, runs resume, bad input is refused."""

import json
import math
import shutil

import pytest
import torch

from flows.acaq import acaq_run, check_acaq_args, lsq_run, parse_target
from quant.acaq import (QATError, QATSettings, baseline_policy, bit_grads, bit_penalty_weights, finetune,
                        mse_of_psnr)
from quant.costs import acaq_weights, fqr_acaq
from quant.lbq import LBQuantizer
from quant.policy import QuantPolicy, component_names
from tests.conftest import acaq_arch, quick_preset, train_quick

QUICK = quick_preset(iterations=30, n_samples=24, log2_table_size=10, n_max=32, levels=4, batch_samples=2048)
# a lenient MGL target (10 dB: the 30-iteration field reaches 12 dB on training batches) and a fast bit
# learning rate, so that 30 iterations move the bits
# calibration and L_fp rays, and samples per batch (as the quick training), enough for a 25 x 25 scene
SMALL = dict(calibration_rays=2048, loss_rays=2048, batch_samples=2048)
ARGS = dict(iterations=30, lr_bits=0.1, progress=False, workload_size=16, handle_signals=False, **SMALL)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_quick(tmp_path_factory.mktemp("runs"), QUICK)


def test_mgl_lowers_the_bits_and_writes_everything(runs):
    s = acaq_run("builtin", "quick", "mgl", target=10.0, runs_root=runs, **ARGS)
    out = runs / "acaq-builtin-quick-mgl10"
    for f in ("policy.yaml", "engines.yaml", "summary.json", "bits.png", "checkpoint.pt"):
        assert (out / f).is_file(), f
    assert json.loads((out / "summary.json").read_text()) == s
    assert math.isfinite(s["psnr"]) and s["psnr"] > 5
    eight = [n for n in s["bits"] if n != "density.out"]  # every component but the exp output starts at 8
    assert sum(s["bits"][n] for n in eight) / len(eight) < 8
    assert s["bits"]["density.out"] < 32
    assert dict(QuantPolicy.load(out / "policy.yaml", 4)) == s["bits"]
    assert s["fqr_acaq"] == pytest.approx(fqr_acaq(s["bits"], _arch(runs)), abs=1e-4)
    assert {"default", "onchip", "small"} <= s["latency"].keys()
    assert s["history"][-1]["step"] == 30 and s["target_psnr"] == 10.0


def _arch(runs):
    return torch.load(runs / "train-builtin-quick" / "checkpoint.pt", weights_only=False)["arch"]


def test_a_killed_run_resumes_to_the_uninterrupted_result(runs, tmp_path):
    from flows.quantize import TrainedField

    settings = QATSettings(method="acaq", mode="mdl", iterations=24, lr_bits=0.1, **SMALL)

    def run(out, **kw):
        field = TrainedField("builtin", "quick", runs_root=runs, progress=False)
        return field, finetune(field, settings, out, progress=False, handle_signals=False, **kw)

    field_a, straight = run(tmp_path / "a")
    _, stopped = run(tmp_path / "b", until=13)
    assert not stopped["finished"] and stopped["iterations"] == 13
    field_b, resumed = run(tmp_path / "b")
    assert resumed["history"] == straight["history"] and resumed["iterations"] == 24
    a, b = field_a.model.state_dict(), field_b.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if isinstance(a[k], torch.Tensor))


def test_lsq_plus_keeps_its_bits(runs):
    s = lsq_run("builtin", "quick", "mdl", 6, runs_root=runs, **ARGS)
    assert s["bits"] == dict(baseline_policy(6, 4)) and math.isfinite(s["psnr"])
    assert (runs / "lsq-builtin-quick-mdl-6b" / "policy.yaml").is_file()


def test_bad_input_is_refused_naming_the_value(runs, tmp_path):
    with pytest.raises(ValueError, match="mode must be mdl or mgl, not 'mbl'"):
        check_acaq_args("mbl", None, 1e-3)
    with pytest.raises(ValueError, match="eps must be a finite number >= 0, not -0.1"):
        check_acaq_args("mdl", None, -0.1)
    with pytest.raises(ValueError, match="mode mgl needs a target"):
        check_acaq_args("mgl", None, 1e-3)
    with pytest.raises(ValueError, match="MDL takes no target"):
        check_acaq_args("mdl", 30.0, 1e-3)
    with pytest.raises(ValueError, match="a PSNR in dB"):
        parse_target(-3.0)
    # a target better than the full-precision model: refused before any fine-tuning
    with pytest.raises(QATError, match=r"target 60.00 dB .* is above the full-precision model's training PSNR"):
        acaq_run("builtin", "quick", "mgl", target=60.0, runs_root=runs, **ARGS)
    assert not (runs / "acaq-builtin-quick-mgl60" / "checkpoint.pt").exists()


def test_a_checkpoint_of_other_settings_or_architecture_is_refused(runs):
    from flows.quantize import TrainedField

    field = TrainedField("builtin", "quick", runs_root=runs, progress=False)
    out = runs / "acaq-other"
    settings = QATSettings(method="acaq", mode="mdl", iterations=3)
    finetune(field, settings, out, progress=False, handle_signals=False)
    with pytest.raises(QATError, match="was started with iterations = 3, not 4"):
        finetune(field, settings.model_copy(update={"iterations": 4}), out, progress=False)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    ckpt["arch"]["levels"] = 16
    torch.save(ckpt, out / "checkpoint.pt")
    with pytest.raises(QATError, match="architecture field 'levels' is 16, the trained field's is 4"):
        finetune(field, settings, out, progress=False)


def test_bit_gradient_is_the_chain_rule_of_l_bit():
    # one backward of L_nerf, then bit_grads, equals autograd through L_bit itself
    torch.manual_seed(0)
    x = torch.randn(500)
    qs = [LBQuantizer("asymmetric", 6.0), LBQuantizer("symmetric", 5.0)]
    for q in qs:
        q.observe(x)
        q.freeze()
    w, eps, l_metric = torch.tensor([0.3, 0.7]), 1e-2, 0.5
    target = torch.randn(500)

    def l_nerf():
        return ((qs[0](x) + qs[1](x) * 0.5 - target) ** 2).mean()

    bits = [q.soft_bits for q in qs]
    loss = l_nerf()
    rounded = [b + (b.round() - b).detach() for b in bits]  # round_ste
    l_bit = torch.sqrt((loss - l_metric).abs()) + eps * sum(wi * r for wi, r in zip(w, rounded))
    expected = torch.autograd.grad(l_bit, bits)
    loss = l_nerf()
    loss.backward()
    bit_grads(bits, w, loss.item(), l_metric, eps)
    for b, e in zip(bits, expected):
        assert float(b.grad) == pytest.approx(float(e), rel=1e-5)


def test_penalty_and_fqr_count_the_table_as_one_component_as_a_caq():
    arch = acaq_arch()
    w = acaq_weights(arch)
    assert sum(w.values()) == pytest.approx(15)
    assert sum(v for n, v in w.items() if n.startswith("hash.")) == pytest.approx(1)
    # the reference code's baseline scripts label uniform 6 / 5 / 4 bits (exp at 30 / 29 / 28) FQR 7.6 / 6.6 / 5.6
    for bits, label in ((6, 7.6), (5, 6.6), (4, 5.6)):
        assert fqr_acaq(baseline_policy(bits, 16), arch) == pytest.approx(label)
    p = bit_penalty_weights(arch)
    assert sum(p.values()) == pytest.approx(1)
    assert p["density.out"] / p["enc.out"] == pytest.approx(2.0)
    assert p["color.l1.weight"] / p["enc.out"] == pytest.approx(1.3)
    table = sum(v for n, v in p.items() if n.startswith("hash."))
    assert table / p["enc.out"] == pytest.approx(1.3)
    assert list(p) == component_names(16)


def test_table_has_the_paper_rows_with_baselines_at_matching_fqr(runs):
    from flows.acaq import acaq_table, matching_bits

    kw = {k: v for k, v in ARGS.items() if k != "handle_signals"}
    shutil.copytree(runs / "train-builtin-quick", runs / "table" / "train-builtin-quick")
    t = acaq_table("builtin", "quick", targets=(11.0, 10.0), runs_root=runs / "table", **kw)
    out = runs / "table" / "acaq-table-builtin-quick"
    assert json.loads((out / "table.json").read_text()) == t and (out / "table.md").is_file()
    assert [(r["group"], r["method"].split()[0]) for r in t["rows"]] == [
        ("full precision", "FP"), ("MDL", "PTQ"), ("MDL", "LSQ+"), ("MDL", "A-CAQ"),
        ("MGL 11 dB", "PTQ"), ("MGL 11 dB", "LSQ+"), ("MGL 11 dB", "A-CAQ"),
        ("MGL 10 dB", "PTQ"), ("MGL 10 dB", "LSQ+"), ("MGL 10 dB", "A-CAQ")]
    for i in (4, 7):  # each MGL baseline at the bits whose FQR (15) is nearest A-CAQ's
        b = matching_bits(t["rows"][i + 2]["fqr_acaq"], _arch(runs))
        assert t["rows"][i]["method"] == f"PTQ {b}b" and t["rows"][i + 1]["method"] == f"LSQ+ {b}b"
    assert all(r["psnr_fp"] == t["rows"][0]["psnr"] for r in t["rows"][1:])


def test_baselines_match_a_caqs_fqr_by_their_own_fqr():
    from flows.acaq import matching_bits

    arch = acaq_arch()
    assert [matching_bits(f, arch) for f in (6.63, 6.03, 8.38, 7.1, 1.0)] == [5, 4, 7, 6, 2]


def test_mse_and_psnr_targets():
    assert parse_target(30) == pytest.approx(1e-3) and parse_target(1e-3) == 1e-3
    assert mse_of_psnr(32) == pytest.approx(10 ** -3.2)
