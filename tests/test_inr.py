"""SIREN image INR (nerf.siren) and the `make inr` flow (flows.inr) on tiny images."""

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from flows.cli import build_parser, main
from flows.inr import ABLATIONS, METHODS, inr, parse_bits, table, write_summary
from nerf.siren import IMAGES, Siren, fit, image_coordinates, load_image, predict_image

TINY = dict(size=16, steps=80, finetune_steps=3, width=16, hidden_layers=1)


def test_siren_shapes_and_init():
    torch.manual_seed(0)
    m = Siren(width=64, hidden_layers=3, channels=3)
    assert m.shape == [[2, 64], [64, 64], [64, 64], [64, 64], [64, 3]]
    assert m(torch.rand(10, 2) * 2 - 1).shape == (10, 3)
    first = m.layers[0].weight.detach()
    assert float(first.abs().max()) <= 1 / 2 and float(first.abs().max()) > 0.45  # U(-1/in, 1/in), in = 2
    bound = math.sqrt(6 / 64) / 30
    for layer in m.layers[1:]:
        assert float(layer.weight.detach().abs().max()) <= bound and float(layer.weight.detach().abs().max()) > 0.9 * bound
    assert len(m.hidden_inputs(torch.zeros(5, 2))) == 5


@pytest.mark.parametrize("kwargs,message", [(dict(width=96), "power of two .*not 96"),
                                            (dict(width=256), "width must be an integer in \\[2, 128\\], not 256"),
                                            (dict(channels=0), "channels must be an integer in \\[1, 4\\], not 0"),
                                            (dict(omega_0=0), "SirenArch.omega_0 must be a finite number > 0, not 0"),
                                            (dict(hidden_layers=True), "SirenArch.hidden_layers must be an integer in "
                                                                       "\\[0, 16\\], not True")])
def test_siren_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Siren(**kwargs)


def test_image_registry():
    assert {"camera", "astronaut", "coffee", "chelsea"} <= set(IMAGES)
    gray, rgb = load_image("camera", size=32), load_image("chelsea", size=40)
    assert gray.shape == (32, 32, 1) and gray.dtype == np.float32
    assert rgb.shape[2] == 3 and max(rgb.shape[:2]) == 40 and rgb.shape[:2] == (27, 40)  # 300 x 451, aspect kept
    assert 0 <= gray.min() and gray.max() <= 1
    with pytest.raises(ValueError, match="unknown image 'lena' \\(choices: .*astronaut.*camera.*chelsea.*coffee"):
        load_image("lena")
    coords = image_coordinates(3, 4)
    assert coords.shape == (12, 2) and float(coords.min()) == -1 and float(coords.max()) == 1
    torch.testing.assert_close(coords[1], torch.tensor([-1 / 3, -1.0]))  # (x, y), row-major


def test_fit_improves_psnr():
    from nerf.metrics import psnr

    img = load_image("camera", size=16)
    coords, target = image_coordinates(16, 16), torch.from_numpy(img.reshape(-1, 1))
    torch.manual_seed(0)
    model = Siren(width=32, hidden_layers=1)
    before = psnr(predict_image(model, coords, 16, 16), img)
    model, history = fit(model, coords, target, steps=60, progress=False)
    after = psnr(predict_image(model, coords, 16, 16), img)
    assert after > before + 10 and after > 25, (before, after)
    assert history["step"][0] == 0 and history["psnr"][-1] > history["psnr"][0]
    # seeded and deterministic
    torch.manual_seed(0)
    again, _ = fit(Siren(width=32, hidden_layers=1), coords, target, steps=60, progress=False)
    torch.testing.assert_close(again.layers[0].weight, model.layers[0].weight)


def test_parse_bits():
    assert parse_bits("8, 6,4,3") == (8, 6, 4, 3) and parse_bits([4]) == (4,)
    for bad, message in (("8,x", "not 'x'"), ("8,17", "not 17"), ("1", "not 1"), ("4,4", "4 is listed twice"),
                         ("", "not ''")):
        with pytest.raises(ValueError, match=message):
            parse_bits(bad)


def test_flow_writes_results_and_resumes(tmp_path, capsys):
    s = inr("camera", bits="4,3", runs_root=tmp_path, progress=False, **TINY)
    out = tmp_path / "inr-camera"
    for name in ("fp.pt", "summary.json", "table.md", "table.csv", "histograms.png", "reconstructions.png"):
        assert (out / name).is_file(), name
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(s))
    assert s["finished"] and s["image"] == "camera" and s["size"] == [16, 16] and s["channels"] == 1
    assert s["model"]["layers"] == [[2, 16], [16, 16], [16, 1]] and s["model"]["padded_in"] == [2, 16, 16]
    assert s["training"]["steps"] == 80 and s["training"]["seconds"] > 0 and not s["training"]["reused"]
    assert set(s["fp"]) == {"psnr", "ssim"} and s["fp"]["psnr"] > 15
    assert [r["bits"] for r in s["rows"]] == [4, 3]
    for r in s["rows"]:
        for m in METHODS:
            assert set(r[m]) == {"psnr", "ssim", "seconds", "delta_psnr", "delta_ssim", "rotated"}
            assert r[m]["rotated"] == [[m.startswith("dhq")] * 2] * 3
            assert r[m]["delta_psnr"] == pytest.approx(r[m]["psnr"] - s["fp"]["psnr"], abs=1e-3)
        # QAT starts from the PTQ model and keeps its best iterate: never worse than PTQ
        assert r["lsq+"]["psnr"] >= r["uniform"]["psnr"] - 1e-6 and r["dhq+lsq+"]["psnr"] >= r["dhq"]["psnr"] - 1e-6
    assert [st["layer"] for st in s["layer_stats"]] == ["layers.0", "layers.1", "layers.2"]
    assert set(s["layer_stats"][1]["act"]) == {"before", "after"}
    assert "kurtosis" in s["layer_stats"][1]["weight"]["after"]
    md = (out / "table.md").read_text().splitlines()
    assert md[0] == "| bits | FP (dB) | uniform PTQ (dB) | LSQ+ QAT (dB) | DHQ PTQ (dB) | DHQ + LSQ+ QAT (dB) |"
    assert md[2].startswith("| 4 | ") and md[4] == ""
    assert md[5] == "| bits | uniform W only (dB) | DHQ W only (dB) | uniform A only (dB) | DHQ A only (dB) |"
    for r in s["rows"]:
        for m in ABLATIONS:
            assert set(r[m]) == {"psnr", "ssim", "seconds", "delta_psnr", "delta_ssim", "rotated"}
    # the datapath section: T = ceil(m / R) * (n / C) * a on the had-inr array (R = 8, C = 16, capped)
    dp = s["datapath"]
    assert [(x["n"], x["m"], x["rows"], x["cols"]) for x in dp["layers"]] == [(2, 16, 8, 2), (16, 16, 8, 16),
                                                                              (16, 1, 1, 16)]
    for x in dp["layers"]:
        for a in (4, 3):
            cell = x["per_bits"][str(a)]
            assert cell["cycles_per_vector"] == cell["measured_ii"] == -(-x["m"] // x["rows"]) * x["n"] // x["cols"] * a
            assert cell["image_cycles"] == 256 * cell["cycles_per_vector"] + x["n"].bit_length() - 1 + 9
    assert dp["per_bits"]["4"]["layer_by_layer_cycles"] == sum(x["per_bits"]["4"]["image_cycles"] for x in dp["layers"])
    assert dp["scaling"]["n"] == [2, 4, 8, 16, 32, 64, 128]
    assert dp["scaling"]["cycles_per_vector"]["4"] == [8 * 4 * max(1, n // 16) for n in dp["scaling"]["n"]]
    assert any(line.startswith("| 1 | 16 x 16 | 8 | 6 |") for line in md)
    assert (out / "table.csv").read_text().splitlines()[0] == \
        "bits,psnr_fp,psnr_uniform,psnr_lsq+,psnr_dhq,psnr_dhq+lsq+"

    # a rerun reuses the checkpoint and every cell (same numbers, nothing recomputed)
    fp_mtime = (out / "fp.pt").stat().st_mtime_ns
    again = inr("camera", bits="4,3", runs_root=tmp_path, progress=False, **TINY)
    assert (out / "fp.pt").stat().st_mtime_ns == fp_mtime and again["training"]["reused"]
    assert again["rows"] == s["rows"]
    # a new bitwidth only adds its row; other fine-tuning settings recompute the cells, same FP model
    more = inr("camera", bits="4,3,8", runs_root=tmp_path, progress=False, **TINY)
    assert more["rows"][:2] == s["rows"] and more["rows"][2]["bits"] == 8
    # write_summary writes what it is given, tables included
    write_summary(tmp_path / "x", {**again, "note": 1})
    assert json.loads((tmp_path / "x" / "summary.json").read_text())["note"] == 1
    assert (tmp_path / "x" / "table.md").read_text() == table(again)[0]
    # a different FP setting is refused, naming the field
    with pytest.raises(ValueError, match="trained with steps=80, this run asks for steps=81"):
        inr("camera", bits="4", runs_root=tmp_path, progress=False, **{**TINY, "steps": 81})


def test_cli_inr(tmp_path, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["inr", "--help"])
    assert "--finetune-steps" in capsys.readouterr().out
    for argv, message in ((["--bits", "8,1"], "argument --bits: must be comma-separated integers in [2, 16], not '1'"),
                          (["--bits", "8,six"], "not 'six'"),
                          (["--image", "lena"], "argument --image: invalid choice: 'lena' (choose from")):
        with pytest.raises(SystemExit) as exc:
            main(["--runs", str(tmp_path), "inr", *argv])
        assert exc.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("kwargs, message", [
    (dict(size=4), "InrSettings.size must be an integer >= 8, not 4"),
    (dict(width=96), "InrSettings.width must be a power of two (the Hadamard datapath's sizes), not 96"),
    (dict(width=256), "InrSettings.width must be an integer in [2, 128], not 256"),
    (dict(steps=0), "InrSettings.steps must be an integer >= 1, not 0"),
    (dict(lr=float("nan")), "InrSettings.lr must be a finite number > 0, not nan"),
    (dict(coord_bits=True), "InrSettings.coord_bits must be an integer in [2, 32], not True"),
    (dict(image="lena"), "unknown image 'lena' (choices: astronaut, brick, camera"),
    (dict(bogus=1), "unknown key 'bogus' in InrSettings (allowed: image, size, width"),
])
def test_inr_settings_name_field_range_and_value(kwargs, message, tmp_path):
    from flows.inr import InrSettings

    with pytest.raises(ValueError) as info:
        InrSettings(**kwargs)
    assert str(info.value).startswith(message)
    with pytest.raises(ValueError):  # the flow refuses them before any work: no run folder
        inr(bits="4", runs_root=tmp_path, progress=False, **kwargs)
    assert not any(tmp_path.iterdir())


@given(st.dictionaries(st.sampled_from(["image", "size", "width", "hidden_layers", "steps", "lr", "finetune_steps",
                                        "seed", "coord_bits", "bogus"]),
                       st.one_of(st.integers(-3, 300), st.booleans(), st.floats(), st.text(max_size=4), st.none()),
                       max_size=6))
def test_any_settings_give_settings_or_a_value_error(data):
    from flows.inr import InrSettings

    try:
        s = InrSettings(**data)
    except ValueError as exc:
        assert str(exc)
    else:
        assert s.width & (s.width - 1) == 0 and s.size >= 8 and s.steps >= 1


def test_crossed_settings_their_names_and_the_crossed_table(tmp_path, capsys):
    from flows.inr.crossed import crossed_table
    from flows.inr.methods import LEGACY, cross, setting_of

    methods = cross(("none", "paper", "rule"), ("min-max", "mse"), ("tensor", "channel"), ("ptq",))
    assert len(methods) == 12 and "dhq-paper_mse_ch" in methods and "uniform" in methods
    assert set(LEGACY) == {"uniform", "lsq+", "dhq", "dhq+lsq+"} and setting_of("dhq-rule+lsq+_pct").training == "qat"
    assert setting_of("dhq-paper_mse_ch").label == "DHQ paper, MSE, per-channel"
    with pytest.raises(ValueError, match="unknown calibration 'max' \\(choices: min-max, mse, percentile\\)"):
        cross(calibrations="max")
    with pytest.raises(ValueError, match="rotation 'all' is listed twice"):
        cross(rotations="all,all")
    with pytest.raises(ValueError, match="no quantization setting is named 'dhq-top'"):
        setting_of("dhq-top")
    for image in ("camera", "coins"):
        s = inr(image, bits="4", runs_root=tmp_path, progress=False, methods=methods, **TINY)
        assert list(s["methods"]) == list(methods) and not s["ablations"]
        r = s["rows"][0]
        assert r["dhq-paper"]["rotated"] == [[True, False], [False, False], [True, True]]
        # per-channel min-max steps cannot be worse than per-tensor ones on the weights alone; PTQ of both
        # sides still differs, so only check that each setting produced a PSNR
        assert all(r[m]["psnr"] > 0 for m in methods)
    # QAT cells are added to the same run, the PTQ cells kept
    s = inr("camera", bits="4", runs_root=tmp_path, progress=False, methods=cross(("none",), training="qat"), **TINY)
    assert set(s["methods"]) == {*methods, "lsq+"}
    assert (tmp_path / "inr-camera" / "table.md").read_text().startswith("FP ")
    t = crossed_table(["camera", "coins"], root=tmp_path)
    assert t["bits"] == [4] and len(t["settings"]) == 12  # lsq+ is not in every image's run
    ptq = next(a for a in t["answers"] if a["training"] == "ptq")
    best_u = max((x for x in t["settings"] if x["rotation"] == "none"), key=lambda x: x["4"])
    assert ptq["uniform"] == best_u["method"] and ptq["uniform_psnr"] == best_u["4"]
    assert ptq["dhq_delta"] == pytest.approx(ptq["dhq_psnr"] - ptq["uniform_psnr"], abs=2e-3)
    assert ptq["dhq"].startswith("dhq-paper") and ptq["rule"].startswith("dhq-rule")
    for name in ("crossed.json", "crossed.md", "crossed.png"):
        assert (tmp_path / name).is_file()
    main(["--runs", str(tmp_path), "inr-table", "--images", "camera,coins"])
    assert "Best uniform against best DHQ setting" in capsys.readouterr().out
    with pytest.raises(ValueError, match="no results for image 'chelsea'"):
        crossed_table(["camera", "chelsea"], root=tmp_path)
    with pytest.raises(SystemExit):
        main(["--runs", str(tmp_path), "inr", "--rotations", "none,sideways"])
    assert "unknown rotation 'sideways' (choices: none, all, paper, rule)" in capsys.readouterr().err
