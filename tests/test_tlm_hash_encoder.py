import math
import re

import numpy as np
import pytest

from hw.params import HashEncoderParams
from sim.cosim.workload_hash_encoder import random_traffic
from sim.tlm.hash_encoder import HashEncoderTLM, pack_features, to_fixed, unpack_features

PRIMES = (1, 2654435761, 805459861)

CASES = {
    "mixed": HashEncoderParams(levels=4, log2_table_size=8, features=2, feature_bits=8, coord_bits=10,
                               n_min=2, n_max=16, lanes=1),
    "lanes": HashEncoderParams(levels=6, log2_table_size=9, features=2, feature_bits=8, coord_bits=12,
                               n_min=4, n_max=64, lanes=4),
    "ngp": HashEncoderParams(levels=16, log2_table_size=14, features=2, feature_bits=12, coord_bits=16,
                             n_min=16, n_max=512, lanes=2),
    "wide": HashEncoderParams(levels=3, log2_table_size=7, features=4, feature_bits=16, coord_bits=24,
                              n_min=3, n_max=20, lanes=3),  # exact sums exceed int64: Python ints
}


def reference_encoding(points, tables, p: HashEncoderParams):
    """Plain float64 Instant-NGP encoding (Mueller et al. 2022, eqs. 2-4), written independently.

    Returns (indices (N, L, 8), features (N, L, F)) for float points in [0, 1)^3.
    """
    T = 1 << p.log2_table_size
    b = math.exp((math.log(p.n_max) - math.log(p.n_min)) / (p.levels - 1)) if p.levels > 1 else 1.0
    n = len(points)
    idx = np.zeros((n, p.levels, 8), dtype=np.int64)
    feats = np.zeros((n, p.levels, p.features))
    for l in range(p.levels):
        res = math.floor(p.n_min * b**l + 1e-6)
        for i, x in enumerate(points):
            pos = [x[d] * res for d in range(3)]
            cell = [math.floor(v) for v in pos]
            frac = [v - c for v, c in zip(pos, cell)]
            for c in range(8):
                o = [(c >> d) & 1 for d in range(3)]
                v = [cell[d] + o[d] for d in range(3)]
                if (res + 1) ** 3 <= T:
                    j = v[0] + (res + 1) * v[1] + (res + 1) ** 2 * v[2]
                else:
                    j = ((v[0] * PRIMES[0]) ^ (v[1] * PRIMES[1]) ^ (v[2] * PRIMES[2])) % T
                w = 1.0
                for d in range(3):
                    w *= frac[d] if o[d] else 1.0 - frac[d]
                idx[i, l, c] = j
                feats[i, l] += w * tables[l, j]
    return idx, feats


@pytest.mark.parametrize("name", CASES)
def test_matches_float_reference_within_one_step(name):
    p = CASES[name]
    traffic = random_traffic(p, 300, seed=7)
    codes = traffic.coords
    points = codes / float(1 << p.coord_bits)  # exactly the quantized points
    model = HashEncoderTLM(p, traffic.tables)
    ref_idx, ref = reference_encoding(points, traffic.tables, p)
    assert np.array_equal(model.indices(codes), ref_idx)
    got = model.encode(codes).astype(np.float64) / (1 << p.coord_bits)
    err = ref - got
    # Documented format: floor(trilinear * 2^C) -> error in [0, 2^-C) table units (float64 slack).
    step = 2.0 ** -p.coord_bits
    slack = 1e-9 * (1 << p.feature_bits)
    assert err.min() >= -slack and err.max() < step + slack
    assert err.max() > 0  # the rounding is really there (not a trivially exact case)


def test_to_fixed_quantizes_and_rejects_outside_unit_cube():
    assert to_fixed([[0.0, 0.5, 0.999999]], 4).tolist() == [[0, 8, 15]]
    with pytest.raises(ValueError, match=re.escape("point 1: coordinate y = 1.0 is outside [0, 1)")):
        to_fixed([[0.1, 0.2, 0.3], [0.5, 1.0, 0.0]], 8)
    with pytest.raises(ValueError, match=re.escape("point 0: coordinate x = -0.25 is outside [0, 1)")):
        to_fixed([[-0.25, 0, 0]], 8)
    with pytest.raises(ValueError, match="coordinate z = nan is outside"):
        to_fixed([[0, 0, float("nan")]], 8)


def test_tlm_rejects_codes_outside_unit_cube_and_bad_tables():
    p = CASES["mixed"]
    tables = np.zeros((p.levels, p.table_size, p.features), dtype=np.int64)
    model = HashEncoderTLM(p, tables)
    with pytest.raises(ValueError, match=re.escape("point 0: coordinate z = 1024 / 2**10 is outside [0, 1)")):
        model.encode(np.array([[0, 0, 1024]]))
    with pytest.raises(ValueError, match=re.escape("point 1: coordinate x = -1 / 2**10 is outside [0, 1)")):
        model.run(np.array([[0, 0, 0], [-1, 0, 0]]))
    with pytest.raises(ValueError, match=r"tables must have shape \(levels, table_size, features\) = \(4, 256, 2\)"):
        HashEncoderTLM(p, tables[:3])
    bad = tables.copy()
    bad[2, 17, 1] = 128
    with pytest.raises(ValueError, match=re.escape("tables[2, 17, 1] = 128 is outside the signed 8-bit range [-128, 127]")):
        HashEncoderTLM(p, bad)


def test_pack_round_trip():
    vals = [-5, 0, 7, -8, 3]
    assert unpack_features(pack_features(vals, 4), 5, 4) == vals


def _model(p):
    return HashEncoderTLM(p, np.zeros((p.levels, p.table_size, p.features), dtype=np.int64))


@pytest.mark.parametrize("name", ["mixed", "lanes", "wide"])
def test_initiation_interval_is_level_groups(name):
    p = CASES[name]
    acc, out = _model(p).schedule(np.zeros(50, dtype=np.int64))
    assert np.all(np.diff(acc) == p.groups)  # II = ceil(L / lanes) cycles per point
    assert np.all(np.diff(out) == p.groups)
    assert acc[0] == 0
    assert out[0] - acc[0] == p.groups + p.PIPELINE_STAGES + 1  # documented latency


def test_backpressure_stops_input_after_fifo_depth_credits():
    p = CASES["lanes"]
    stall = 200
    acc, out = _model(p).schedule(np.zeros(20, dtype=np.int64), np.zeros(stall, dtype=bool))
    assert (acc < stall).sum() == p.fifo_depth  # only as many points as credits enter
    assert out.min() == stall  # first output transfer the moment ready rises
    assert np.all(np.diff(out) >= 1) and np.all(np.diff(acc) >= p.groups)


def test_input_gaps_are_respected_and_order_kept():
    p = CASES["mixed"]
    offers = np.array([0, 100, 100, 250])
    acc, out = _model(p).schedule(offers)
    assert acc.tolist() == [0, 100, 104, 250]
    assert np.all(np.diff(out) > 0)


def test_single_output_stall_cycle_delays_exactly_one_output():
    p = CASES["wide"]  # G = 1: one output per cycle at full rate
    base_acc, base_out = _model(p).schedule(np.zeros(5, dtype=np.int64))
    ready = np.ones(64, dtype=bool)
    ready[base_out[2]] = False
    _, out = _model(p).schedule(np.zeros(5, dtype=np.int64), ready)
    assert out[:2].tolist() == base_out[:2].tolist()
    assert out[2] == base_out[2] + 1


def test_run_reports_total_cycles():
    p = CASES["mixed"]
    traffic = random_traffic(p, 64, seed=3)
    res = HashEncoderTLM(p, traffic.tables).run(traffic.coords, traffic.offer_cycles, traffic.ready)
    assert res.cycles == res.out_cycles.max() + 1
    assert res.payloads[5] == pack_features(res.features[5].ravel(), p.out_bits)
    assert np.all(res.accept_cycles >= traffic.offer_cycles)
