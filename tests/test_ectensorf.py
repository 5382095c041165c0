"""TensoRF-VM training and its compressed bitstreams: ECTensoRF and uniform + zstd round trips are exact."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from flows.cli import main
from flows.compress import compress_flow
from nerf.data import load_scene
from nerf.render import render_image
from nerf.train import TENSORF_PRESETS, CheckpointError, ModelFamilyError, model_from_checkpoint, train
from quant.ectensorf import CompressSettings, PlaneCodec, compress_tensorf, decode_tensorf, encode_tensorf
from quant.entropy import BitstreamError
from quant.plane_zstd import decode_tensorf_uniform, encode_tensorf_uniform
from quant.table_codec import decode_ngp
from tests.conftest import quick_preset, train_quick

SMOKE = TENSORF_PRESETS["smoke"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("runs")
    train("builtin", SMOKE, root / "train-builtin-smoke-tensorf", downscale=4, progress=False)
    yield root
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def field(runs):
    return (runs / "train-builtin-smoke-tensorf" / "checkpoint.pt", load_scene("builtin", "train", downscale=4),
            load_scene("builtin", "test", downscale=4))


def _render(model, occ, data):
    return render_image(model, occ, data, 0, n_samples=SMOKE.n_samples)[0]


def test_ectensorf_round_trip_renders_the_same_pixels(field, tmp_path):
    ckpt, train_data, test = field
    model, occ, _ = model_from_checkpoint(ckpt, family="tensorf")
    codec, log = compress_tensorf(model, occ, train_data, CompressSettings(lam=0.01, iterations=12, recon_iterations=8,
                                                                           batch_rays=256, importance_rays=512),
                                  n_samples=SMOKE.n_samples, progress=False)
    path = tmp_path / "field.nhwb"
    info = encode_tensorf(model, occ, codec, path)
    assert info["bytes"] == path.stat().st_size
    assert set(info["sections"]) >= {"latents.density", "latents.app", "tables.app", "masks", "decoders", "rest"}
    encoded = _render(model, occ, test)
    decoded_model, decoded_occ = decode_tensorf(path)
    assert torch.equal(decoded_occ.occupied, occ.occupied)
    for name, plane in model.plane_override.items():
        assert torch.equal(decoded_model.plane_override[name], plane), name
    assert np.array_equal(_render(decoded_model, decoded_occ, test), encoded)
    # the compressed planes are not the originals: the test compares a lossy model with its decode
    original, _, _ = model_from_checkpoint(ckpt, family="tensorf")
    assert not np.array_equal(_render(original, occ, test), encoded)


@pytest.mark.parametrize("bits", [8, 4])
def test_uniform_zstd_round_trip(field, tmp_path, bits):
    ckpt, _, test = field
    model, occ, _ = model_from_checkpoint(ckpt, family="tensorf")
    info = encode_tensorf_uniform(model, occ, bits, tmp_path / "u.nhwb")
    assert 0 < info["bits_per_feature_parameter"] <= 8
    decoded, docc = decode_tensorf_uniform(tmp_path / "u.nhwb")
    assert np.array_equal(_render(decoded, docc, test), _render(model, occ, test))


def test_masked_latents_cost_no_bits():
    codec = PlaneCodec({"density.plane0": (2, 8, 8), "density.plane1": (2, 8, 8), "density.plane2": (2, 8, 8),
                        "app.plane0": (3, 8, 8), "app.plane1": (3, 8, 8), "app.plane2": (3, 8, 8)}, masks=True)
    with torch.no_grad():
        for p in codec.latents.values():
            p.copy_(torch.randn_like(p) * 5)
        _, bits_all, kept_all = codec.planes(tau=None)
        for p in codec.mask_logits.values():
            p.fill_(-5.0)
        _, bits_none, kept_none = codec.planes(tau=None)
    assert kept_all == 1.0 and kept_none == 0.0
    assert float(bits_all) > 100 and float(bits_none) < 0.01


def test_bad_bitstreams_are_refused(field, tmp_path):
    ckpt, _, _ = field
    model, occ, _ = model_from_checkpoint(ckpt, family="tensorf")
    path = tmp_path / "u.nhwb"
    encode_tensorf_uniform(model, occ, 6, path)
    data = path.read_bytes()
    (tmp_path / "short.nhwb").write_bytes(data[:-100])
    with pytest.raises(BitstreamError, match="truncated"):
        decode_tensorf_uniform(tmp_path / "short.nhwb")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0x10
    (tmp_path / "flip.nhwb").write_bytes(bytes(flipped))
    with pytest.raises(BitstreamError, match="checksum"):
        decode_tensorf_uniform(tmp_path / "flip.nhwb")
    with pytest.raises(BitstreamError, match="tensorf-ectensorf"):
        decode_tensorf(path)
    with pytest.raises(BitstreamError, match="ngp-tables"):
        decode_ngp(path)


def test_lambda_must_be_positive(field, runs, capsys):
    with pytest.raises(ValueError, match="lambda must be a number > 0, not 0"):
        CompressSettings(lam=0)
    with pytest.raises(ValueError, match="lambdas: every lambda must be a number > 0, not -1"):
        compress_flow("builtin", preset="smoke", lambdas=[-1], runs_root=runs)
    with pytest.raises(SystemExit) as exit_:
        main(["--runs", str(runs), "compress", "--preset", "smoke", "--lambdas", "0.01,0"])
    assert exit_.value.code == 2
    assert "argument --lambdas: must be a finite number > 0, not '0'" in capsys.readouterr().err


def test_checkpoint_of_another_shape_or_family(field, tmp_path):
    ckpt, _, _ = field
    out = tmp_path / "other"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(ckpt.read_bytes())
    with pytest.raises(CheckpointError, match="density_components"):
        train("builtin", dataclasses.replace(SMOKE, density_components=6), out, downscale=4, progress=False)
    with pytest.raises(ModelFamilyError, match="is a TensoRF checkpoint, not an Instant-NGP one"):
        model_from_checkpoint(ckpt)


def test_resume_across_an_upsampling_is_exact(tmp_path):
    torch.set_num_threads(1)
    whole = train("builtin", SMOKE, tmp_path / "whole", downscale=4, progress=False, until=30)
    part = train("builtin", SMOKE, tmp_path / "part", downscale=4, progress=False, until=SMOKE.upsample_at[0])
    assert not part["finished"]
    train("builtin", SMOKE, tmp_path / "part", downscale=4, progress=False, until=30)
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)
    assert not whole["finished"] and a["arch"]["grid"] == b["arch"]["grid"] != SMOKE.voxels_init
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


def test_compress_flow_tensorf_writes_table_plot_and_resumes(field, runs):
    s = compress_flow("builtin", preset="smoke", lambdas=(0.01,), bits=(8,), iterations=4, recon_iterations=4,
                      runs_root=runs, progress=False)
    out = runs / "compress-builtin-smoke-tensorf"
    labels = [p["label"] for p in s["points"]]
    assert labels == ["float32", "uniform8-zstd", "ectensorf-lam0.01", "ectensorf-lam0.01-nomask",
                      "ectensorf-lam0.01-noimportance"]
    for p in s["points"][1:]:
        assert p["bytes"] == Path(p["file"]).stat().st_size
    assert (out / "rd.png").stat().st_size > 1000
    assert "ectensorf-lam0.01-nomask" in (out / "rd.md").read_text()
    stamps = {f.name: f.stat().st_mtime_ns for f in (out / "points").glob("*.json")}
    again = compress_flow("builtin", preset="smoke", lambdas=(0.01,), bits=(8,), iterations=4,
                          recon_iterations=4, runs_root=runs, progress=False)
    assert again["points"] == s["points"]
    assert stamps == {f.name: f.stat().st_mtime_ns for f in (out / "points").glob("*.json")}


def test_compress_flow_ngp_codes_tables(tmp_path):
    torch.set_num_threads(1)
    root = train_quick(tmp_path, quick_preset(iterations=30, n_samples=24, log2_table_size=12, n_max=48, levels=4,
                                              batch_samples=2048))
    s = compress_flow("builtin", preset="quick", model="ngp", bits=(8,), runs_root=root, progress=False)
    coded, zstd = s["points"][1], s["points"][2]
    assert coded["method"].startswith("entropy-coded") and zstd["method"].startswith("table codes + zstd")
    assert coded["bytes"] == Path(coded["file"]).stat().st_size
    assert coded["bits_per_table_parameter"] < 8 and coded["psnr"] == zstd["psnr"]
    assert json.loads((root / "compress-builtin-quick-ngp" / "summary.json").read_text())["finished"]


def test_missing_training_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="make train SCENE=builtin PRESET=smoke MODEL=tensorf"):
        compress_flow("builtin", preset="smoke", runs_root=tmp_path)
