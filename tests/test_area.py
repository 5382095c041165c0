"""hw.area: Yosys synthesis statistics of the engines (small MLP engines only: each run is seconds)."""

import dataclasses
import json
import subprocess

import pytest

from hw import area
from hw.params import HadamardParams, MlpEngineParams

# The smallest MLP engine the tests synthesise, and one step up in array size and in widths.
BASE = MlpEngineParams(rows=2, cols=2, max_in=4, max_out=4, max_layers=1, max_weight_bits=2, max_act_bits=2,
                       mult_bits=4)
WIDER_ARRAY = dataclasses.replace(BASE, rows=4, cols=4)
WIDER_WORDS = dataclasses.replace(BASE, max_weight_bits=6, max_act_bits=6)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("area")


@pytest.fixture(scope="module")
def results(cache_dir):
    return {name: area.engine_area(p, cache_dir=cache_dir)
            for name, p in (("base", BASE), ("array", WIDER_ARRAY), ("words", WIDER_WORDS))}


def _no_yosys(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("Yosys was run")

    monkeypatch.setattr(area, "_run_yosys", fail)
    monkeypatch.setattr(area, "_verilog", fail)


def test_result_shape(results):
    r = results["base"]
    assert r["engine"] == r["top"] == "mlp_engine" and r["family"] == "xc7"
    assert r["params"] == BASE.to_dict() and r["yosys"].startswith("Yosys ")
    fpga, generic = r["fpga"], r["generic"]
    assert fpga["lut"] > 0 and fpga["ff"] > 0 and fpga["lut_inputs"] == 6
    # LUTs as Vivado's "Slice LUTs": logic LUTs (and INV, a LUT1) plus 4 per RAM32M/RAM64M of distributed RAM
    types = fpga["cell_types"]
    assert set(types) <= {"LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "INV", "RAM32M", "RAM64M", "CARRY4",
                          "MUXF7", "MUXF8", "FDRE", "FDSE", "DSP48E1", "RAMB18E1", "RAMB36E1"}
    assert fpga["lut"] == (sum(n for t, n in types.items() if t.startswith("LUT") or t == "INV")
                           + 4 * types.get("RAM32M", 0) + 4 * types.get("RAM64M", 0))
    assert fpga["ff"] == sum(fpga["cell_types"].get(t, 0) for t in ("FDRE", "FDSE", "FDCE", "FDPE"))
    assert generic["cells"] > generic["ff"] > 0 and generic["transistors"] > 0
    # weight, bias memories and the output FIFO stay memories in the generic flow
    assert generic["memories"] >= 2 and generic["memory_bits"] >= BASE.weight_depth * BASE.rows * BASE.cols
    json.dumps(r)  # JSON-able


@pytest.mark.parametrize("bigger", ["array", "words"])
def test_area_grows_with_the_engine(results, bigger):
    small, big = results["base"], results[bigger]
    assert big["fpga"]["lut"] > small["fpga"]["lut"]
    assert big["fpga"]["ff"] > small["fpga"]["ff"]
    assert big["generic"]["cells"] > small["generic"]["cells"]
    assert big["generic"]["transistors"] > small["generic"]["transistors"]


def test_second_call_is_cached(results, cache_dir, monkeypatch):
    _no_yosys(monkeypatch)
    assert area.engine_area(BASE, cache_dir=cache_dir) == results["base"]
    # the key covers the parameters and the family: these would run Yosys
    with pytest.raises(AssertionError, match="Yosys was run"):
        area.engine_area(dataclasses.replace(BASE, clock_mhz=100), cache_dir=cache_dir)
    with pytest.raises(AssertionError, match="Yosys was run"):
        area.engine_area(BASE, family="ice40", cache_dir=cache_dir)


def test_unreadable_cache_file_is_a_miss(results, cache_dir, monkeypatch):
    files = cache_dir.glob("mlp_engine-xc7-*.json")
    path = next(p for p in files if json.loads(p.read_text())["params"] == BASE.to_dict())
    saved = path.read_text()
    try:
        path.write_text("{not json")
        _no_yosys(monkeypatch)
        with pytest.raises(AssertionError, match="Yosys was run"):
            area.engine_area(BASE, cache_dir=cache_dir)
    finally:
        path.write_text(saved)


def test_accelerator_area_sums_the_engines(results, cache_dir, monkeypatch):
    _no_yosys(monkeypatch)
    acc = area.accelerator_area({"mlp_engine": BASE}, cache_dir=cache_dir)
    one = results["base"]
    assert acc["engines"]["mlp_engine"] == one
    assert acc["area"] == acc["totals"]["lut"] == one["fpga"]["lut"]
    assert acc["totals"]["transistors"] == one["generic"]["transistors"]
    assert "LUT" in acc["area_units"]

    # two engines: totals add up; an unknown transistor count makes the total unknown
    hadamard = HadamardParams()
    fake = {"mlp_engine": one, "hadamard": json.loads(json.dumps(one))}
    fake["hadamard"]["generic"]["transistors"] = None
    monkeypatch.setattr(area, "engine_area", lambda params, **kw: fake[type(params).SECTION])
    acc = area.accelerator_area({"mlp_engine": BASE, "hadamard": hadamard}, cache_dir=cache_dir)
    for key in ("lut", "ff", "bram18", "dsp"):
        assert acc["totals"][key] == 2 * one["fpga"][key]
    assert acc["totals"]["cells"] == 2 * one["generic"]["cells"]
    assert acc["totals"]["transistors"] is None
    assert acc["area"] == 2 * one["fpga"]["lut"]


@pytest.mark.parametrize("kwargs, option", [
    (dict(family="xc9"), "family"),
    (dict(family=7), "family"),
    (dict(progress="yes"), "progress"),
    (dict(cache_dir=3), "cache_dir"),
    (dict(timeout_s=0), "timeout_s"),
    (dict(timeout_s=True), "timeout_s"),
])
def test_bad_options_raise_naming_the_option(kwargs, option, tmp_path, monkeypatch):
    _no_yosys(monkeypatch)
    kwargs = {"cache_dir": tmp_path, **kwargs}
    with pytest.raises(ValueError, match=rf"^{option} must be"):
        area.engine_area(BASE, **kwargs)
    with pytest.raises(ValueError, match=rf"^{option} must be"):
        area.accelerator_area({"mlp_engine": BASE}, **kwargs)


def test_non_engine_params_raise(tmp_path, monkeypatch):
    _no_yosys(monkeypatch)
    with pytest.raises(ValueError, match=r"^params must be the parameters of an engine"):
        area.engine_area({"rows": 2}, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^engines must be a non-empty mapping"):
        area.accelerator_area({}, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^engines\['mlp_engine'\] must be the parameters of an engine"):
        area.accelerator_area({"mlp_engine": "rows=2"}, cache_dir=tmp_path)
    with pytest.raises(ValueError, match=r"^engines\['hadamard'\] holds mlp_engine parameters"):
        area.accelerator_area({"hadamard": BASE}, cache_dir=tmp_path)


def test_yosys_failure_raises_area_error(tmp_path, monkeypatch):
    monkeypatch.setattr(area, "_verilog", lambda params: "module mlp_engine(input a;\nendmodule\n")
    with pytest.raises(area.AreaError, match="Yosys failed on mlp_engine") as info:
        area.engine_area(BASE, cache_dir=tmp_path)
    assert info.value.returncode not in (0, None)
    assert "ERROR" in info.value.log_tail and "ERROR" in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no cache file, no work folder left behind


def test_yosys_time_limit_raises_area_error(tmp_path, monkeypatch):
    def slow(args, cwd, timeout_s):
        raise subprocess.TimeoutExpired(args, timeout_s)

    monkeypatch.setattr(area, "_verilog", lambda params: "module mlp_engine; endmodule\n")
    monkeypatch.setattr(area, "_run_yosys", slow)
    with pytest.raises(area.AreaError, match="timeout_s = 5"):
        area.engine_area(BASE, cache_dir=tmp_path, timeout_s=5)
    assert list(tmp_path.iterdir()) == []
