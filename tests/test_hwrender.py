"""Integer export (quant.int_export), the top's bit-exact reference (sim.bitexact) and `make hwrender`, on a quickly
trained field of the built-in scene."""

import json

import numpy as np
import pytest
import torch

from flows.cli import main
from flows.hwrender import host_rays, hwrender, hwrender_dir
from hw.config import ConfigError
from quant.entropy import BitstreamError, from_bytes, to_bytes
from quant.int_export import ExportError, export_int, load_int, save_int
from quant.policy import QuantPolicy
from sim.bitexact import render_int, sample_codes
from sim.mapping import hardware_bits, load_accelerator, top_params
from tests.conftest import quick_preset, train_quick

QUICK = quick_preset(iterations=120, n_samples=32, log2_table_size=12, n_max=64, batch_samples=4096)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_quick(tmp_path_factory.mktemp("runs"), QUICK)


@pytest.fixture(scope="module")
def exported(runs):
    """The quick field, PTQ at 8 bits, and its export."""
    from flows.quantize import TrainedField
    from quant.ptq import ptq

    field = TrainedField("builtin", "quick", runs_root=runs, progress=False)
    policy = QuantPolicy.uniform(8, field.levels)
    bits = hardware_bits(policy, field.model.arch)
    top = top_params(load_accelerator("default"), field.model.arch, policy)
    ptq(field.model, field.occupancy, field.train_data, QuantPolicy(bits, field.levels), n_samples=QUICK.n_samples)
    return field, export_int(field.model, top, policy, bits)


def _view_rays(field, m, rows=6):
    from nerf.cameras import get_rays

    data = field.test_data
    o, d = get_rays(data.height, data.width, data.focal, data.poses[0], **data.intrinsics)
    n = rows * data.width
    o, d = torch.from_numpy(np.asarray(o[:n], np.float32)), torch.from_numpy(np.asarray(d[:n], np.float32))
    return o, d, host_rays(m, field.occupancy, o, d, n_samples=QUICK.n_samples)


def test_integer_pipeline_codes_match_the_fake_quantized_model(exported):
    """Each sample's density and colour codes from the integers equal those of the float model with its fake
    quantizers, up to +-1 on a few: the rounding of biases and multipliers, and for the colour the SH encoding on the
    geometry features' grid (``sim.mapping.hardware_bits``)."""
    from quant.quantizers import to_integer

    field, m = exported
    o, d, rays = _view_rays(field, m, rows=10)
    assert len(rays.coords) > 200
    codes = sample_codes(m, rays)
    ray = np.repeat(np.arange(len(rays.counts)), rays.counts)
    lo, hi = field.model.bbox[0].double(), field.model.bbox[1].double()
    pts = torch.from_numpy(rays.coords / (1 << m.top.encoder.coord_bits)) * (hi - lo) + lo
    dirs = d[ray] / d[ray].norm(dim=-1, keepdim=True)
    with torch.no_grad():
        sigma, rgb = field.model(pts.float(), dirs)
    want_sigma = to_integer(sigma, field.model.quant["density__out"])[0].numpy()
    want_rgb = to_integer(rgb, field.model.quant["color__out"])[0].numpy()
    for got, want, exact in ((codes.sigma, want_sigma, 0.9), (codes.color, want_rgb, 0.6)):
        diff = np.abs(got - want)
        assert (diff == 0).mean() > exact and (diff <= 1).mean() > 0.98, np.bincount(diff.ravel())[:4]
    # a wrong export (the SH unit's offsets dropped) is caught by the same comparison
    broken = sample_codes(type(m)(**{**vars(m), "sh_offset": np.zeros_like(m.sh_offset)}), rays)
    assert (broken.color == want_rgb).mean() < 0.5


def test_render_int_against_the_float_renderer(exported):
    """Pixels of whole rays through the integer top vs the fake-quantized float renderer: nearly equal; rays that
    miss the box or hit only empty cells are the background exactly."""
    from nerf.render import render_rays

    field, m = exported
    o, d, rays = _view_rays(field, m)
    r = render_int(m, rays)
    with torch.no_grad():
        rgb, _, _ = render_rays(field.model, o, d, n_samples=QUICK.n_samples, occupancy=field.occupancy,
                                t_min=1e-4, chunks=4)
    hw = r.pixels / 255.0
    err = np.abs(hw - rgb.clamp(0, 1).numpy())
    assert err.mean() < 0.01 and np.percentile(err, 99) < 0.05, (err.mean(), err.max())
    assert r.contributed.sum() <= len(rays.coords)
    # rays without samples (they miss the box or every cell they cross is empty) show the background
    from sim.bitexact import RayBatch

    two = RayBatch(coords=rays.coords, counts=np.r_[0, rays.counts, 0], dirs=np.r_[rays.dirs[:1], rays.dirs,
                   rays.dirs[:1]], q=np.r_[rays.q[:1], rays.q, rays.q[:1]])
    r2 = render_int(m, two)
    assert (r2.pixels[[0, -1]] == 255).all() and (r2.trans[[0, -1]] == 1 << 16).all()
    assert np.array_equal(r2.pixels[1:-1], r.pixels)


def test_export_file_round_trip_and_refusals(exported, tmp_path):
    field, m = exported
    path = tmp_path / "m.nhwi"
    n = save_int(path, m)
    assert path.stat().st_size == n
    back = load_int(path, expect={"arch": field.model.arch, "model": m.model, "preset": "default"})
    assert np.array_equal(back.tables, m.tables) and back.pixel == m.pixel and back.bits == m.bits
    for a, b in zip(back.color.weights + back.color.biases, m.color.weights + m.color.biases):
        assert np.array_equal(a, b)
    assert back.density.layers == m.density.layers and back.top == m.top
    o, d, rays = _view_rays(field, m, rows=2)
    assert np.array_equal(render_int(back, rays).pixels, render_int(m, rays).pixels)
    blob = path.read_bytes()
    # another model, preset, architecture
    with pytest.raises(ExportError, match="model is '[0-9a-f]{16}', expected '0{16}' \\(an export of another model\\)"):
        load_int(path, expect={"model": "0" * 16})
    with pytest.raises(ExportError, match="preset is 'default', expected 'onchip'.*hardware preset"):
        load_int(path, expect={"preset": "onchip"})
    with pytest.raises(ExportError, match="arch is .*'levels': 16.*expected .*'levels': 8"):
        load_int(path, expect={"arch": {**field.model.arch, "levels": 8}})
    # truncated, corrupted, another kind
    (tmp_path / "cut.nhwi").write_bytes(blob[:-100])
    with pytest.raises(BitstreamError, match="truncated"):
        load_int(tmp_path / "cut.nhwi")
    bad = bytearray(blob)
    bad[len(bad) // 2] ^= 0xFF
    (tmp_path / "flip.nhwi").write_bytes(bytes(bad))
    with pytest.raises(BitstreamError, match="checksum"):
        load_int(tmp_path / "flip.nhwi")
    header, sections = from_bytes(blob)
    (tmp_path / "kind.nhwi").write_bytes(to_bytes("ngp-tables", header, sections))
    with pytest.raises(BitstreamError, match="kind 'nerfhw-int' expected"):
        load_int(tmp_path / "kind.nhwi")
    # a valid container with wrong contents: version, an array out of its unit's range, a missing field
    for change, match in (({"format_version": 2}, "format_version 2 is not supported"),
                          ({"layers": None}, "field 'layers' missing"),
                          ({"top": {**header["top"], "sh": {**header["top"]["sh"], "dir_bits": 99}}}, "dir_bits")):
        (tmp_path / "h.nhwi").write_bytes(to_bytes("nerfhw-int", {**header, **change}, sections))
        with pytest.raises(ExportError, match=match):
            load_int(tmp_path / "h.nhwi")
    tampered = type(m)(**{**vars(m), "color_table": m.color_table + 1000})
    save_int(tmp_path / "range.nhwi", tampered)
    with pytest.raises(ExportError, match="color_table holds .*outside \\[0, 255\\]"):
        load_int(tmp_path / "range.nhwi")
    save_int(tmp_path / "shift.nhwi", type(m)(**{**vars(m), "requant_shift": 999}))
    with pytest.raises(ExportError, match="requant: .*shift must be an integer in \\[0, \\d+\\], not 999"):
        load_int(tmp_path / "shift.nhwi")


def test_policies_the_top_cannot_run_are_refused(exported):
    field, _ = exported
    arch = field.model.arch
    base = QuantPolicy.uniform(8, field.levels)
    with pytest.raises(ConfigError, match="color.l0.weight = 32 bits.*full precision does not run"):
        hardware_bits(base.replace({"color.l0.weight": 32}), arch)
    with pytest.raises(ConfigError, match="hash.level03 = 32 bits"):
        hardware_bits(base.replace({"hash.level03": 32}), arch)
    bits = hardware_bits(base.replace({"density.out": 32, "color.out": 32}), arch)
    assert bits["density.out"] == bits["color.out"] == 16 and bits["enc.out"] == 8
    # export refuses a model whose quantizers are not at the top's widths
    top = top_params(load_accelerator("default"), arch, base.replace({"enc.out": 6}))
    with pytest.raises(ExportError, match="enc.out: the model's quantizer has 8 bits, the top runs 6"):
        export_int(field.model, top, base, hardware_bits(base.replace({"enc.out": 6}), arch))


def test_hwrender_flow_and_cli(runs, tmp_path, capsys):
    s = hwrender("builtin", "quick", "uniform-8", runs_root=runs, views=2, breakdown=True, progress=False)
    out = hwrender_dir("builtin", "quick", "uniform-8", "default", runs)
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(s))
    assert s["views"] == 2 and abs(s["delta_db"]) < 0.3, s["delta_db"]
    assert s["psnr_fq"] == s["psnr_fq_hw"]  # every component of uniform-8 runs at 8 bits on the top
    assert sum(s["breakdown_db"].values()) == pytest.approx(s["delta_db"], abs=2e-3)  # the parts add up
    assert set(s["breakdown_db"]) == {"sh_grid", "datapath", "pixels_8bit", "compositor"}
    assert {p.name for p in (out / "hw").iterdir()} == {f"{r['view']:03d}.png" for r in s["per_view"]}
    assert (out / "table.md").read_text().count("|") > 20 and (out / "model.nhwi").is_file()
    # a policy the top cannot run: refused before any work, naming the component
    bad = tmp_path / "p.yaml"
    QuantPolicy.uniform(8, 16).replace({"color.l1.weight": 32}).save(bad)
    assert main(["--runs", str(runs), "hwrender", "--scene", "builtin", "--preset", "quick", "--policy", str(bad),
                 "--views", "1"]) == 2
    assert "color.l1.weight = 32 bits" in capsys.readouterr().err
    assert not hwrender_dir("builtin", "quick", "p", "default", runs).exists()
