"""flows.dhq_area: the table and energy arithmetic on fake synthesis results (no Yosys), bad input, the CLI;
one real synthesis of a tiny fixed-point engine (seconds) that shows the multipliers land on DSP48s."""

import json

import pytest

from flows import dhq_area as dq
from flows.cli import main
from hw import area
from hw.fixed_mv.params import FixedMvParams
from hw.registry import load_config
from sim.tlm import fixed_mv as fmv
from sim.tlm import hadamard as had_tlm
from tests.conftest import CONFIGS


def _fake_area(params, **kwargs):
    """A made-up synthesis result: the Hadamard datapath 1000 LUT, 500 FF, 10 DSP; a baseline 100 LUT per
    data bit, 50 FF per data bit, R * C DSPs at 16 bits and 4 R * C at 32."""
    if params.SECTION == "hadamard":
        fpga = {"lut": 1000, "ff": 500, "dsp": 10, "bram18": 0}
        generic = {"transistors": 200_000, "memory_bits": 1_000}
    else:
        d = params.data_bits
        fpga = {"lut": 100 * d, "ff": 50 * d, "dsp": params.rows * params.cols * (1 if d <= 16 else 4), "bram18": 2}
        generic = {"transistors": 50_000 * d, "memory_bits": 500 * d}
    return {"engine": params.SECTION, "fpga": fpga, "generic": generic}


@pytest.fixture
def fake(monkeypatch):
    calls = []

    def engine_area(params, **kwargs):
        calls.append((params, kwargs))
        return _fake_area(params)

    monkeypatch.setattr(area, "engine_area", engine_area)
    return calls


def test_tables_follow_the_stated_formulas(fake, tmp_path):
    s = dq.dhq_area(["had-small", "had-inr"], runs_root=tmp_path, cache_dir=tmp_path / "area", progress=False)
    assert len(fake) == 2 + 2 * 2 and all(kw["family"] == "xc7" for _, kw in fake)
    small = load_config(CONFIGS / "had-small.yaml")["hadamard"]  # max_act_bits 5: a5 and a4 only
    designs = {(d["preset"], d["bits"]): d for d in s["designs"]}
    assert [b for p, b in designs if p == "had-small"] == ["a5", "a4", "fp16", "fp32"]
    assert [b for p, b in designs if p == "had-inr"] == ["a8", "a4", "fp16", "fp32"]
    h, fp = designs["had-small", "a5"], designs["had-small", "fp32"]
    base = dq.baseline_params(small, 32)
    assert (base.n, base.out_size, base.rows, base.cols, base.clock_mhz, base.data_bits, base.out_bits) == \
        (small.n, small.out_size, small.rows, small.cols, small.clock_mhz, 32, 32)
    assert h["cycles_per_vector"] == had_tlm.vector_cycles(small, 5) == 2 * 5
    assert fp["cycles_per_vector"] == fmv.vector_cycles(base) == 2 and fp["latency_cycles"] == 2 + 6
    assert h["ns_per_vector"] == pytest.approx(10 * 1e3 / 250) and fp["latency_ns"] == pytest.approx(8 * 4.0)
    # energy proxy: (transistors + 6 x memory bits) x cycles; fabric: (LUT + FF) x cycles
    assert h["energy_proxy"] == (200_000 + 6 * 1_000) * 10
    assert fp["energy_proxy"] == (50_000 * 32 + 6 * 500 * 32) * 2
    assert fp["fabric_cycles"] == (3200 + 1600) * 2
    comp = {(c["preset"], c["hadamard"], c["baseline"]): c for c in s["comparisons"]}
    assert len(comp) == 2 * 2 * 2
    c = comp["had-small", "a5", "fp32"]
    assert c["d_lut"] == pytest.approx(100 * (1000 - 3200) / 3200)
    assert c["d_dsp"] == pytest.approx(100 * (10 - 4 * 3 * 8) / (4 * 3 * 8))
    assert c["d_ns_per_vector"] == pytest.approx(100 * (10 - 2) / 2)
    assert c["d_energy_proxy"] == pytest.approx(100 * (h["energy_proxy"] - fp["energy_proxy"]) / fp["energy_proxy"])
    # the files: summary.json round-trips, table.md has both tables, the proxy and the paper's figures
    out = tmp_path / "dhq-area"
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(s))
    table = (out / "table.md").read_text()
    assert "energy proxy (M transistor-cycles / vector)" in table and dq.ENERGY_PROXY in table
    assert "| paper (Zhou et al. 2025) | W8A8 | FP | -98.3 % |  | -98.3 % | -32.7 % | -40.1 % |  |" in table
    assert f"| had-small | a5 | fp32 | {c['d_lut']:+.1f} % |" in table
    assert (out / "designs.csv").read_text().startswith("preset,design,bits,lut,ff,dsp,")


def test_unknown_values_leave_the_change_empty(fake, tmp_path, monkeypatch):
    def no_transistors(params, **kwargs):
        r = _fake_area(params)
        if params.SECTION == "fixed_mv":
            r["generic"]["transistors"], r["fpga"]["dsp"] = None, 0
        return r

    monkeypatch.setattr(area, "engine_area", no_transistors)
    s = dq.dhq_area(["had-small"], bits=[16], runs_root=tmp_path, progress=False)
    for c in s["comparisons"]:
        assert c["d_energy_proxy"] is None and c["d_dsp"] is None and c["d_lut"] is not None
    assert "| had-small | a5 | fp16 |" in (tmp_path / "dhq-area" / "table.md").read_text()


def test_bad_input_is_refused_before_any_synthesis(fake, tmp_path):
    with pytest.raises(ValueError, match=r"unknown Hadamard preset 'had-huge' \(allowed: had-inr, had-rows, had-small, had-wide"):
        dq.dhq_area(["had-small", "had-huge"], runs_root=tmp_path)
    with pytest.raises(ValueError, match=r"unknown Hadamard preset 'fmv-inr16'"):  # a preset, but no hadamard
        dq.dhq_area(["fmv-inr16"], runs_root=tmp_path)
    with pytest.raises(ValueError, match=r"bits must be an integer in \[8, 32\], not 64"):
        dq.dhq_area(["had-small"], bits=[16, 64], runs_root=tmp_path)
    assert fake == [] and not (tmp_path / "dhq-area").exists()


def test_cli(fake, tmp_path, capsys):
    assert main(["--build", str(tmp_path), "--runs", str(tmp_path), "dhq-area", "--presets", "had-small",
                 "--bits", "16"]) == 0
    out = capsys.readouterr().out
    assert "| had-small | a5 | fp16 |" in out and f"summary: {tmp_path / 'dhq-area' / 'summary.json'}" in out
    assert all(kw["cache_dir"] == tmp_path / "area" for _, kw in fake)
    assert main(["--build", str(tmp_path), "--runs", str(tmp_path), "dhq-area", "--presets", "nope"]) == 2
    assert "error: unknown Hadamard preset 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["dhq-area", "--bits", "4"])
    assert "--bits" in capsys.readouterr().err


def test_tiny_baseline_maps_its_multipliers_onto_dsp48s(tmp_path):
    """A real synthesis (seconds): R x C = 2 multipliers of 8 x 8 bits are 2 DSP48E1s, not LUTs."""
    p = FixedMvParams(n=2, out_size=2, data_bits=8, out_bits=8, rows=1, cols=2)
    r = area.engine_area(p, cache_dir=tmp_path)
    assert r["engine"] == "fixed_mv" and r["fpga"]["dsp"] == p.rows * p.cols
    assert r["generic"]["transistors"] > 0 and r["generic"]["memory_bits"] > 0
