"""KiloNeRF's frame model: visit order, loads, and each engine's cycles equal to the TLM with cell switches."""

import numpy as np
import pytest

from hw.params import ConfigError
from quant.policy import KiloPolicy
from sim.kilo_perf import (KILO_ENGINES, cell_bytes, cell_visits, kilo_engines, kilo_frame_perf, kilo_layers,
                           load_cycles)
from sim.mapping import load_accelerator
from sim.tlm.mlp_engine import MlpCellsTLM, MlpEngineTLM, cell_words

ARCH = {"model": "kilonerf", "grid": [3, 4, 2], "hidden": 32, "pos_freqs": 10, "dir_freqs": 4}


def test_visits_group_each_ray_batch_by_cell_in_ascending_order():
    cells = np.array([5, 2, 5, 7, 2, 2, 9, 1])
    rays = np.array([0, 0, 1, 1, 2, 3, 3, 4])
    cell, counts = cell_visits(cells, rays, batch_rays=2)  # batches: rays 0-1, 2-3, 4
    assert cell.tolist() == [2, 5, 7, 2, 9, 1] and counts.tolist() == [1, 2, 1, 2, 1, 1]
    cell, counts = cell_visits(cells, rays, batch_rays=100)
    assert cell.tolist() == [1, 2, 5, 7, 9] and counts.tolist() == [1, 3, 2, 1, 1]
    with pytest.raises(ValueError, match="batch_rays must be a positive integer, not 0"):
        cell_visits(cells, rays, batch_rays=0)


def test_layers_follow_the_policy_and_full_precision_does_not_run():
    params = kilo_engines(load_accelerator("default"), ARCH)
    assert params.weight_banks == 2 and params.max_in >= 63 and params.max_layers >= 3
    policy = KiloPolicy.uniform(8).replace({"density.l1.weight": 4, "dir.out": 6, "density.l2.out": 5})
    layers = kilo_layers(policy, ARCH, params)
    d, c = layers["density"], layers["color"]
    assert [(x.in_size, x.out_size) for x in d] == [(63, 32), (32, 32), (32, 33)]
    assert [(x.in_size, x.out_size) for x in c] == [(59, 32), (32, 3)]
    assert d[1].weight_bits == 4 and c[0].act_bits == 6 and d[2].out_bits == 5
    params.check_layers(d)
    params.check_layers(c)
    with pytest.raises(ConfigError, match="full precision does not run"):
        kilo_layers(KiloPolicy.uniform(32), ARCH, params)


@pytest.mark.parametrize("preset", ["default", "onchip"])
def test_each_engine_equals_the_tlm_over_cell_switches(preset):
    rng = np.random.default_rng(3)
    accel = load_accelerator(preset)
    params = kilo_engines(accel, ARCH)
    layers = kilo_layers(KiloPolicy.uniform(8).replace({"color.l0.weight": 3}), ARCH, params)
    cells = rng.integers(0, 24, 400)
    rays = np.sort(rng.integers(0, 60, 400))
    visit_cells, counts = cell_visits(cells, rays, batch_rays=16)
    assert (counts == 1).any() and (counts > 3).any()  # short visits (switch-bound) and long ones
    perf = kilo_frame_perf(accel, ARCH, KiloPolicy.uniform(8).replace({"color.l0.weight": 3}), cells, rays,
                           batch_rays=16)
    assert perf.visits == len(counts) and perf.samples == 400
    for name in KILO_ENGINES:
        ls = layers[name]
        tlm_cells = [MlpEngineTLM(params, ls, [np.zeros((x.out_size, x.in_size), np.int64) for x in ls],
                                  [np.zeros(x.out_size, np.int64) for x in ls]) for _ in range(24)]
        e = perf.engines[name]
        steps = MlpCellsTLM(params, tlm_cells).schedule(visit_cells, counts, load_cycles=e.load)
        assert int(steps.out.max()) + 1 == e.cycles  # the frame model's engine cycles are the TLM's
        assert e.compute == 400 * e.T and e.switch > 0 and e.load >= e.words == cell_words(params, ls)
        assert e.dram_bytes == len(counts) * e.cell_bytes == len(counts) * cell_bytes(params, ls)
    assert perf.cycles > max(e.cycles for e in perf.engines.values())


def test_one_long_visit_hides_nothing_and_many_short_ones_wait_for_weights():
    accel = load_accelerator("default")
    params = kilo_engines(accel, ARCH)
    policy = KiloPolicy.uniform(8)
    one = kilo_frame_perf(accel, ARCH, policy, np.zeros(200, np.int64), np.arange(200))
    many = kilo_frame_perf(accel, ARCH, policy, np.arange(200) % 24, np.arange(200), batch_rays=1)
    d1, dn = one.engines["density"], many.engines["density"]
    assert one.visits == 1 and many.visits == 200
    assert d1.switch == d1.load + 2  # only the first load (loader ahead: +2)
    assert dn.switch >= 199 * (dn.load + 2 - dn.T) > 0  # every load longer than one vector's compute
    dram = accel.dram_timing()
    assert dn.load == load_cycles(params, kilo_layers(policy, ARCH, params)["density"], dram,
                                  accel.memory.bus_bytes)
