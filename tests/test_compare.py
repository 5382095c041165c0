"""The comparison (flows.compare): fronts and equal-PSNR ratios, bad input, and one small grid end to end."""

import json

import pytest

from flows.compare import Budget, CompareError, compare, equal_psnr, pareto_front
from tests.conftest import quick_preset, train_quick

QUICK = quick_preset(iterations=30, n_samples=24, log2_table_size=10, n_max=32, levels=4, batch_samples=2048)


def test_pareto_front_drops_points_that_are_slower_and_worse():
    pts = [(30.0, 100.0), (29.0, 120.0), (28.0, 50.0), (31.0, 200.0), (27.0, 60.0)]
    assert pareto_front(pts) == [(28.0, 50.0), (30.0, 100.0), (31.0, 200.0)]
    assert pareto_front([]) == []


def test_equal_psnr_interpolates_bounds_and_refuses_to_extrapolate_upwards():
    front = [(28.0, 50.0), (30.0, 100.0)]
    assert equal_psnr(front, 29.0) == (75.0, "interpolated")
    assert equal_psnr(front, 30.0) == (100.0, "interpolated")
    assert equal_psnr(front, 27.0) == (50.0, "bound")  # our fastest point is already better
    assert equal_psnr(front, 30.5) == (None, "none")
    assert equal_psnr([], 29.0) == (None, "none")


@pytest.mark.parametrize("kwargs, message", [
    ({"budget": "huge"}, "budget must be one of full, short, smoke, not 'huge'"),
    ({"hw": "nosuchpreset"}, "hw 'nosuchpreset'"),
    ({"seed": -1}, r"seeds must be integers >= 0, not -1"),
])
def test_bad_options_are_refused_before_any_work(tmp_path, kwargs, message):
    with pytest.raises(CompareError, match=message):
        compare("builtin", "tiny", runs_root=tmp_path, progress=False, **kwargs)
    assert not any(tmp_path.iterdir())


def test_no_trained_field_names_the_command(tmp_path):
    with pytest.raises(CompareError, match=r"run `make train SCENE=builtin PRESET=tiny` first"):
        compare("builtin", "tiny", runs_root=tmp_path, progress=False)


TINY = Budget("test", iterations=2, episodes=3, warmup=2, val_views=1, search_rays=512, finalise=2, bits=(8, 3),
              mgl_target=8.0, workload_size=16, qat_rays=512, area=False)  # synthesis: test_array_area


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return train_quick(tmp_path_factory.mktemp("runs"), QUICK)


def test_compare_runs_every_method_and_writes_table_plot_ratios_and_page(runs, tmp_path):
    s = compare("builtin", "quick", hw="onchip", budget=TINY, runs_root=runs, build_root=tmp_path, cpus=2,
                progress=False)
    out = runs / "compare-builtin-quick-onchip-test"
    for f in ("table.md", "table.csv", "summary.json", "pareto.png", "report.html", "page_sections.json"):
        assert (out / f).is_file(), f
    assert json.loads((out / "summary.json").read_text())["ratios"] == s["ratios"]
    assert s["failed_cells"] == {}
    groups = [r["group"] for r in s["rows"]]
    assert groups[:3] == ["full precision", "PTQ", "PTQ"] and groups.count("LSQ+") == 2
    assert groups.count("A-CAQ") == 2 and groups.count("ours (MDL)") == 2 and groups.count("ours (MGL)") == 2
    for r in s["rows"][1:]:  # every policy costed on the preset (area: not in this budget)
        assert r["latency_ms"] > 0 and r["area"] is None and r["cost_efficiency"] is None
    assert {x["acaq"] for x in s["ratios"]} == {"A-CAQ MDL", "A-CAQ MGL"}
    for x in s["ratios"]:
        if x["latency_ratio"] is not None:
            assert x["latency_ratio"] == pytest.approx(x["acaq_latency_ms"] / x["ours_latency_ms"], rel=1e-3)
    assert set(s["picks"]) == {"mdl", "mgl"} and sum(bool(r.get("pick")) for r in s["rows"]) >= 1
    assert s["proxy_rank_correlation"]["n"] == 4
    # the finalised policies are the searches' best distinct ones, fine-tuned at fixed bits
    for r in s["rows"]:
        if r["group"].startswith("ours"):
            final = json.loads((runs.joinpath(r["run"]) / "summary.json").read_text())
            assert final["bits"] == r["bits"] and final["settings"]["policy"] == r["bits"]
    # a second run keeps every finished cell and gives the same table
    again = compare("builtin", "quick", hw="onchip", budget=TINY, runs_root=runs, build_root=tmp_path, cpus=2,
                    progress=False)
    assert again["rows"] == s["rows"] and again["cells_seconds"] == s["cells_seconds"]


def test_array_area_extrapolates_a_regular_array_exactly(monkeypatch):
    import hw.array_area as aa
    from hw.params import MlpEngineParams

    def fake(params, **_):  # a regular array: fixed + per row + per column + per element
        r, c = params.rows, params.cols
        return {"fpga": {"lut": 100 + 7 * r + 3 * c + 40 * r * c, "ff": 50 + 9 * r * c, "bram18": 2, "dsp": r},
                "generic": {"cells": 1000 + 300 * r * c}}

    monkeypatch.setattr(aa, "engine_area", fake)
    a = aa.array_area(MlpEngineParams(rows=64, cols=32), family="xc7")
    assert a["fpga"] == {"lut": 100 + 7 * 64 + 3 * 32 + 40 * 64 * 32, "ff": 50 + 9 * 64 * 32, "bram18": None,
                         "dsp": 64}
    assert a["generic"]["cells"] == 1000 + 300 * 64 * 32 and a["method"] == "bilinear"
    with pytest.raises(ValueError, match="MLP engine parameters"):
        aa.array_area({"rows": 4})
