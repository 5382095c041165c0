"""sim/tlm/top.py without a simulator: TopTLM on a random integer model (no training): its pixels are the
bit-exact reference's, its transfers obey the stream rules and the glue's structure, backpressure reaches the
inputs as the FIFO depths say; load_writes and the top's parameter checks."""

import dataclasses

import numpy as np
import pytest

from hw.mlp_engine.params import MlpEngineParams, MlpLayer
from quant.policy import QuantPolicy
from sim.bitexact import RayBatch, render_int
from sim.mapping import AcceleratorPreset, top_params
from sim.tlm.top import TopTLM, load_writes, pixel_payload, ray_payload, sample_payload

ARCH = {"levels": 4, "log2_table_size": 6, "features": 2, "n_min": 4, "n_max": 16, "hidden": 8, "geo_features": 15,
        "bbox": [[-1.0] * 3, [1.0] * 3]}


def _random_model(seed: int = 0):
    """An ``IntModel`` of random integers in every unit's ranges (the model's arithmetic need not mean anything)."""
    from nerf.layout import model_layout
    from quant.int_export import IntMlp, IntModel
    from sim.mapping import hardware_bits
    from sim.tlm.compositor import pixel_constants
    from sim.tlm.sh_unit import sh_constants

    rng = np.random.default_rng(seed)
    policy = QuantPolicy.uniform(8, ARCH["levels"])
    mlp = MlpEngineParams(rows=8, cols=8, max_in=64, max_out=64, max_layers=3, max_weight_bits=8, max_act_bits=8)
    preset = AcceleratorPreset(name="t", lanes=2, coord_bits=12, feature_bits=8, mlp=mlp)
    top = top_params(preset, ARCH, policy)
    bits = hardware_bits(policy, ARCH)
    layout = model_layout(ARCH)
    enc = top.encoder

    def program(name, first_signed):
        layers, weights, biases = [], [], []
        shapes = layout.mlp(name)
        for i, ly in enumerate(shapes):
            last = i == len(shapes) - 1
            layers.append(MlpLayer(in_size=ly.in_size, out_size=ly.out_size, weight_bits=8, act_bits=8,
                                   act_signed=first_signed if i == 0 else False, relu=not last, out_bits=8, bias=True,
                                   mult=int(rng.integers(1 << 10, 1 << 14)), shift=16))
            weights.append(rng.integers(-127, 128, size=(ly.out_size, ly.in_size)))
            biases.append(rng.integers(-2000, 2000, size=ly.out_size))
        return IntMlp(layers, weights, biases)

    sh_mult, sh_off, sh_shift = sh_constants(0.02, -1.3, 8, top.sh)
    return IntModel(top=top, arch=dict(ARCH), policy=dict(policy), bits=bits, model="random",
                    tables=rng.integers(-128, 128, size=(enc.levels, enc.table_size, enc.features)),
                    requant_mult=rng.integers(1 << 14, 1 << 15, size=top.requant.lanes),
                    requant_offset=rng.integers(-(1 << 30), 1 << 30, size=top.requant.lanes), requant_shift=24,
                    density=program("density", False), density_table=rng.integers(0, 256, size=256),
                    sh_mult=np.array(sh_mult), sh_offset=np.array(sh_off), sh_shift=sh_shift,
                    color=program("color", True), color_table=rng.integers(0, 256, size=256),
                    pixel=pixel_constants(1 / 255, 0.0, 1.0, 1e-3, top.compositor), sigma_step=0.05,
                    color_step=1 / 255, color_low=0.0,
                    bbox=ARCH["bbox"])


def _rays(m, counts, seed=1):
    rng = np.random.default_rng(seed)
    counts = np.asarray(counts, np.int64)
    n = int(counts.sum())
    d = rng.normal(size=(len(counts), 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    from sim.tlm.sh_unit import to_direction_codes

    return RayBatch(coords=rng.integers(0, 1 << m.top.encoder.coord_bits, size=(n, 3)), counts=counts,
                    dirs=to_direction_codes(d, m.top.sh.dir_bits), q=rng.integers(1 << 18, 1 << 22, size=len(counts)))


@pytest.fixture(scope="module")
def model():
    return _random_model()


def test_pixels_are_the_bit_exact_reference_and_transfers_keep_order(model):
    rays = _rays(model, [2, 0, 3, 1, 0, 0, 4])
    rng = np.random.default_rng(4)
    ray_offers = np.cumsum(rng.integers(0, 300, size=7))
    sample_offers = np.cumsum(rng.integers(0, 100, size=10))
    ready = rng.random(20000) < 0.5
    r = TopTLM(model).run(rays, ray_offers, sample_offers, ready)
    want = render_int(model, rays)
    np.testing.assert_array_equal(r.pixels, want.pixels)
    assert r.payloads == [pixel_payload(model.top, px) for px in want.pixels]
    assert (r.ray_accept >= ray_offers).all() and (np.diff(r.ray_accept) > 0).all()
    assert (r.sample_accept >= sample_offers).all() and (np.diff(r.sample_accept) > 0).all()
    assert (np.diff(r.pixel_cycles) > 0).all() and ready[r.pixel_cycles].all()  # pixels leave only when ready
    assert r.cycles == int(r.pixel_cycles[-1]) + 1
    # each sample passes the units in order, and reaches the colour engine only after its ray entered the top
    st = r.stages
    for a, b in zip(("encoder", "requant", "density", "color_in", "color", "join"),
                    ("requant", "density", "color_in", "color", "join", "join")):
        assert (st[a] <= st[b]).all() and (st[a] > r.sample_accept).all()
    ray_of = np.repeat(np.arange(7), rays.counts)
    assert (st["color_in"] > r.ray_accept[ray_of]).all()
    last = np.cumsum(rays.counts)[rays.counts > 0] - 1
    assert (r.pixel_cycles[rays.counts > 0] > st["join"][last]).all()


def test_samples_wait_in_the_pipeline_for_their_ray(model):
    """Samples offered long before their ray: the encoder takes them until every unit up to the SH pairing is
    full, and none reaches the colour engine before the ray's SH codes (SH unit latency 5, the pairing 1)."""
    rays = _rays(model, [30])
    r = TopTLM(model).run(rays, [5000], None, None)
    held = int((r.sample_accept < 5000).sum())
    assert 5 < held < 30
    assert r.stages["color_in"][0] == r.ray_accept[0] + model.top.sh.latency + 1 == 5006
    np.testing.assert_array_equal(r.pixels, render_int(model, rays).pixels)


def test_pixel_backpressure_reaches_the_rays_input(model):
    """Pixels stalled from cycle 0: rays without samples fill the compositor's credits and the ray FIFO, then the
    splitter stops taking rays; they flow again once the pixels are ready."""
    p = model.top
    rays = _rays(model, [0] * 60)
    r = TopTLM(model).run(rays, None, None, np.zeros(2000, bool))
    assert int((r.ray_accept < 2000).sum()) == p.compositor.OUT_FIFO_DEPTH + p.ray_fifo_depth
    assert r.pixel_cycles[0] == 2000 and (np.diff(r.pixel_cycles) == 1).all()


def test_in_payloads_pack_the_documented_fields(model):
    p = model.top
    rays = _rays(model, [1, 0])
    ray_items, sample_items = TopTLM(model).in_payloads(rays)
    d = p.sh.dir_bits
    x, y, z = (int(v) for v in rays.dirs[0])
    want = (x & ((1 << d) - 1)) | (y & ((1 << d) - 1)) << d | (z & ((1 << d) - 1)) << 2 * d
    want |= int(rays.q[0]) << 3 * d | 1 << (3 * d + p.compositor.q_bits)
    assert ray_items[0] == want == ray_payload(p, rays.dirs[0], rays.q[0], 1)
    c = p.encoder.coord_bits
    assert sample_items[0] == sample_payload(p, rays.coords[0]) == sum(int(v) << (k * c)
                                                                        for k, v in enumerate(rays.coords[0]))


def test_load_writes_cover_every_port_with_the_models_words(model):
    p = model.top
    w = load_writes(model)
    assert set(w) == {"encoder_table", "requant_cfg", "requant_consts", "density_cfg", "density_weights",
                      "density_bias", "color_cfg", "color_weights", "color_bias", "sh_cfg", "sh_consts",
                      "density_act_cfg", "density_act_table", "color_act_cfg", "color_act_table", "compositor_cfg"}
    assert len(w["encoder_table"]) == p.encoder.levels * p.encoder.table_size
    assert len(w["requant_consts"]) == p.requant.lanes and len(w["sh_consts"]) == 16
    assert len(w["density_act_table"]) == len(model.density_table)
    assert w["density_cfg"][-1] == {"layers_en": 1, "layers": 2} and w["color_cfg"][-1] == {"layers_en": 1, "layers": 3}
    assert all("en" in word for port, words in w.items() for word in words[:-1] if not port.endswith("_cfg"))
    entry = w["encoder_table"][p.encoder.table_size + 3]  # level 1, index 3: feature 0 in the low bits
    f0, f1 = (int(v) & 0xFF for v in model.tables[1, 3])
    assert (entry["level"], entry["index"], entry["data"]) == (1, 3, f0 | f1 << 8)


def test_the_top_refuses_units_that_do_not_fit_together(model):
    from hw.requant.params import RequantParams

    bad = dataclasses.replace(model.top, requant=RequantParams(lanes=6, in_bits=16, max_out_bits=8))
    with pytest.raises(ValueError, match=r"requant.lanes \(6\) must equal encoder.levels \* encoder.features \(8\); "
                                         r"requant.in_bits \(16\) must hold the encoder's outputs \(20 bits\)"):
        bad.check_top(15)
    with pytest.raises(ValueError, match=r"mlp.max_out \(16\) must hold the density logit and 60 geometry features; "
                                         r"mlp.max_in \(31\) must hold 60 geometry features and 16 SH codes"):
        model.top.check_top(60)
    with pytest.raises(ValueError, match="geo_features must be an integer >= 1, not 0"):
        TopTLM.from_layers(model.top, {"density": model.density.layers, "color": model.color.layers}, 0)
    timing = TopTLM.from_layers(model.top, {"density": model.density.layers, "color": model.color.layers})
    with pytest.raises(ValueError, match="a timing-only TopTLM"):
        timing.run(_rays(model, [1]))
    with pytest.raises(ValueError, match="needs that many dirs and q"):
        TopTLM(model).run(dataclasses.replace(_rays(model, [2, 1]), q=np.array([1])))
