import numpy as np

from nerf import grid


def test_hash_primes_are_instant_ngp():
    assert grid.HASH_PRIMES == (1, 2654435761, 805459861)


def test_corner_order_x_is_bit_zero():
    assert grid.CORNER_OFFSETS.tolist()[:4] == [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]]
    assert grid.CORNER_OFFSETS.tolist()[7] == [1, 1, 1]


def test_spatial_hash_matches_python_ints_for_large_coordinates():
    rng = np.random.default_rng(0)
    xyz = rng.integers(0, 1 << 24, size=(500, 3))
    for k in (4, 14, 19, 24):
        got = grid.spatial_hash(xyz[:, 0], xyz[:, 1], xyz[:, 2], k)
        want = [((x * 1) ^ (y * 2654435761) ^ (z * 805459861)) % (1 << k) for x, y, z in xyz.tolist()]
        assert got.tolist() == want
        assert grid.spatial_hash(*map(int, xyz[0]), k) == want[0]


def test_dense_index_is_row_major_and_in_range():
    res = 4
    cells = np.array([[x, y, z] for z in range(res) for y in range(res) for x in range(res)])
    idx = grid.corner_indices(cells, res, 7)  # 5^3 = 125 <= 128: dense
    assert idx[:, 0].tolist() == [x + 5 * y + 25 * z for x, y, z in cells.tolist()]
    assert idx.max() == 124 and idx.min() == 0
    full = grid.corner_indices(np.array([[0, 0, 0]]), res, 7)[0]
    assert full.tolist() == [0, 1, 5, 6, 25, 26, 30, 31]


def test_level_resolutions_single_level_and_growth():
    assert grid.level_resolutions(8, 8, 1) == (8,)
    assert grid.growth_factor(8, 8, 1) == 1.0
    assert grid.level_resolutions(16, 2048, 16)[-1] == 2048
