"""nerf.render.sample_positions: the accelerator's workload of a scene, in the stated order and range."""

from types import SimpleNamespace

import numpy as np
import torch

from nerf.cameras import get_rays
from nerf.render import ray_aabb, render_image, sample_positions


class _Empty:
    """A field of zero density: no ray terminates early, every sample in the box is evaluated."""

    bbox = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])

    def __call__(self, x, d):
        return torch.zeros(len(x)), torch.zeros(len(x), 3)


class _HalfSpace:
    """An occupancy grid whose occupied cells are x > 0."""

    def query(self, pts):
        return pts[:, 0] > 0


def _data():
    pose = np.eye(4)
    pose[:3, 3] = [0.1, -0.2, 3.0]  # looking down -z at the box
    return SimpleNamespace(height=3, width=4, focal=3.0, poses=np.stack([pose, pose]), intrinsics={})


def _expected(data, n):
    """Every pixel in scanline order, each ray's samples near to far, normalised by the box."""
    o, d = get_rays(data.height, data.width, data.focal, data.poses[0])
    o, d = torch.from_numpy(o).double(), torch.from_numpy(d).double()
    d = d / d.norm(dim=-1, keepdim=True)
    lo, hi = _Empty.bbox.double()
    t0, t1, hit = ray_aabb(o, d, lo, hi)
    t = t0[:, None] + (torch.arange(n)[None, :] + 0.5) * ((t1 - t0) / n)[:, None]
    pts = (o[:, None] + d[:, None] * t[..., None])[hit]
    return ((pts - lo) / (hi - lo)).reshape(-1, 3).numpy()


def test_workload_is_every_evaluated_sample_in_scanline_ray_major_order():
    data = _data()
    u = sample_positions(_Empty(), None, data, [0], n_samples=5, chunk=5)  # chunks split rows: offsets matter
    assert u.dtype == np.float64 and u.shape[1] == 3 and len(u) > 0
    np.testing.assert_allclose(u, _expected(data, 5), atol=1e-6)
    assert (u >= 0).all() and (u < 1).all()
    # two views: one after the other
    two = sample_positions(_Empty(), None, data, [0, 1], n_samples=5)
    np.testing.assert_array_equal(two, np.concatenate([u, u]))


def test_workload_skips_empty_space_and_counts_as_the_renderer():
    data = _data()
    u = sample_positions(_Empty(), _HalfSpace(), data, [0], n_samples=6)
    full = _expected(data, 6)
    np.testing.assert_allclose(u, full[full[:, 0] > 0.5], atol=1e-6)  # x > 0 in world = u > 0.5
    _, stats = render_image(_Empty(), _HalfSpace(), data, 0, n_samples=6)
    assert len(u) == stats.samples_evaluated


def test_workload_at_another_size_samples_the_same_view_more_densely():
    data = _data()
    small = sample_positions(_Empty(), None, data, [0], n_samples=4)
    big = sample_positions(_Empty(), None, data, [0], n_samples=4, height=6, width=8)
    assert len(big) > 3 * len(small)
    # the same field of view: the focal length scaled with the size
    scaled = SimpleNamespace(**{**vars(data), "height": 6, "width": 8, "focal": 6.0})
    np.testing.assert_allclose(big, _expected(scaled, 4), atol=1e-6)
