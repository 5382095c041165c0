import numpy as np
import pytest
import torch

from hw.params import HashEncoderParams
from nerf.encoding import HashGrid
from nerf.model import InstantNGP, trunc_exp
from nerf.occupancy import OccupancyGrid
from nerf.render import ray_aabb, render_rays
from nerf.sh import sh_encode
from quant.policy import component_names
from sim.tlm.hash_encoder import HashEncoderTLM


# coord_bits + log2(n_max) <= 24 keeps x * N exact in float32 (see HashGrid's docstring).
@pytest.mark.parametrize("log2_table_size, n_min, n_max, coord_bits", [(8, 2, 16, 16), (12, 16, 256, 16),
                                                                       (14, 16, 512, 15)])
def test_torch_encoding_and_hardware_model_read_the_same_entries(log2_table_size, n_min, n_max, coord_bits):
    levels = 16
    params = HashEncoderParams(levels=levels, log2_table_size=log2_table_size, features=2, feature_bits=8,
                               coord_bits=coord_bits, n_min=n_min, n_max=n_max, lanes=1)
    enc = HashGrid(levels=levels, log2_table_size=log2_table_size, features=2, n_min=n_min, n_max=n_max)
    assert enc.resolutions == params.resolutions and enc.dense == params.dense
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 1 << coord_bits, size=(2000, 3))
    codes[0], codes[1] = 0, (1 << coord_bits) - 1
    tlm = HashEncoderTLM(params, np.zeros((levels, 1 << log2_table_size, 2), dtype=np.int64))
    hw_idx = tlm.indices(codes)
    # Points exactly representable in float32 so both sides see the same cells.
    torch_idx, _ = enc.corner_indices(torch.from_numpy(codes / float(1 << coord_bits)).float())
    assert np.array_equal(torch_idx.numpy(), hw_idx)
    if log2_table_size != 12:
        assert any(params.dense) and not all(params.dense)  # both index kinds exercised


def test_encoding_interpolates_trilinearly_and_is_continuous():
    enc = HashGrid(levels=2, log2_table_size=10, features=2, n_min=4, n_max=8)
    with torch.no_grad():
        enc.table.normal_()
    x = torch.rand(64, 3)
    eps = 1e-4
    assert torch.allclose(enc(x), enc(x + eps), atol=1e-2)
    # At a grid vertex the feature equals the stored entry.
    v = torch.tensor([[1 / 4, 2 / 4, 3 / 4]])
    idx, frac = enc.corner_indices(v)
    assert torch.allclose(frac[0, 0], torch.zeros(3))
    assert torch.allclose(enc(v)[0, :2], enc.table[0, idx[0, 0, 0]])


def test_trunc_exp_gradient_is_clamped():
    x = torch.tensor([0.0, 20.0], requires_grad=True)
    trunc_exp(x).sum().backward()
    assert torch.allclose(x.grad, torch.exp(torch.tensor([0.0, 15.0])))


def test_sh_degree4_is_orthonormal_on_the_sphere():
    d = torch.nn.functional.normalize(torch.randn(200000, 3, dtype=torch.float64), dim=-1)
    y = sh_encode(d)
    gram = (y.T @ y) / d.shape[0] * 4 * np.pi
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=0.03)


def test_model_shapes_parameters_and_hook_points():
    m = InstantNGP(levels=16, log2_table_size=10, n_max=64)
    pts = torch.rand(10, 3) * 3 - 1.5
    dirs = torch.nn.functional.normalize(torch.randn(10, 3), dim=-1)
    sigma, rgb = m(pts, dirs)
    assert sigma.shape == (10,) and rgb.shape == (10, 3) and (sigma > 0).all()
    assert m.parameter_count() == 16 * 1024 * 2 + 32 * 64 + 64 * 16 + 31 * 64 + 64 * 64 + 64 * 3
    seen = []

    class Spy(torch.nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, x):
            seen.append(self.name)
            return x

    for name in component_names(16):
        m.install_quantizer(name, Spy(name))
    m(pts, dirs)
    assert sorted(set(seen)) == sorted(component_names(16))  # every policy component has a hook


def test_ray_aabb_and_empty_space_rendering():
    lo, hi = torch.full((3,), -1.0), torch.full((3,), 1.0)
    o = torch.tensor([[0.0, 0.0, 5.0], [5.0, 5.0, 5.0]])
    d = torch.tensor([[0.0, 0.0, -1.0], [0.0, 0.0, -1.0]])
    t0, t1, hit = ray_aabb(o, d, lo, hi)
    assert hit.tolist() == [True, False] and t0[0] == pytest.approx(4.0) and t1[0] == pytest.approx(6.0)

    class Empty(torch.nn.Module):
        bbox = torch.stack([lo, hi])

        def forward(self, p, v):
            return torch.zeros(p.shape[0]), torch.zeros(p.shape[0], 3)

    rgb, opacity, stats = render_rays(Empty(), o, d, n_samples=16, background=1.0)
    assert torch.allclose(rgb, torch.ones(2, 3)) and torch.allclose(opacity, torch.zeros(2))
    assert stats.samples_in_box == 16


def test_occupancy_skips_empty_cells_and_early_termination_stops_rays():
    class Slab(torch.nn.Module):
        bbox = torch.tensor([[-1.0] * 3, [1.0] * 3])

        def forward(self, p, v):
            return self.density(p)[0], torch.ones(p.shape[0], 3) * 0.5

        def density(self, p):
            return (p[:, 2].abs() < 0.2).float() * 200.0, None

    model = Slab()
    occ = OccupancyGrid(model.bbox, res=16, threshold=0.01)
    occ.update(lambda p: model.density(p)[0])
    assert 0.1 < occ.fraction < 0.4
    o = torch.tensor([[0.1, 0.2, 5.0]]).repeat(8, 1)
    d = torch.tensor([[0.0, 0.0, -1.0]]).repeat(8, 1)
    full, _, s_full = render_rays(model, o, d, n_samples=64)
    skip, _, s_skip = render_rays(model, o, d, n_samples=64, occupancy=occ, t_min=1e-4, chunks=4)
    assert torch.allclose(full, skip, atol=1e-3)
    assert s_skip.samples_evaluated < s_full.samples_evaluated / 3


def test_occupancy_threshold_is_one_percent_opacity_on_the_longest_step():
    # Instant-NGP's NERF_MIN_OPTICAL_THICKNESS: a cell is empty when density x step < 0.01; the step is
    # the longest render_rays takes (box diagonal / n_samples), so 0.01 * 64 / (2 sqrt 3) here
    bbox = torch.tensor([[-1.0] * 3, [1.0] * 3])
    occ = OccupancyGrid.for_steps(bbox, 64, res=4)
    step = 2 * 3 ** 0.5 / 64
    assert occ.threshold == pytest.approx(0.01 / step)
    # a faint fog (half the threshold: 0.5 % opacity per step) everywhere and one dense cell: the mean is
    # above the threshold, so the fog is empty space; the old 0.01-per-world-unit threshold kept it
    fog = 0.5 * occ.threshold
    occ.update(lambda p: torch.where((p > 0.5).all(dim=-1), torch.tensor(1000.0), torch.tensor(fog)))
    assert occ.fraction == pytest.approx(1 / 64)
    assert bool(occ.query(torch.tensor([[0.75, 0.75, 0.75]]))) and not bool(occ.query(torch.zeros(1, 3)))
    assert float((occ.density > 0.01).float().mean()) == 1.0
