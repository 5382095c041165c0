"""flows.page: the self-contained HTML page, its JSON sections, search-run pages and the headless-Chromium check."""

import base64
import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest

from flows.page import (PAGE_SECTIONS, Image, ImageGrid, KeyValue, Table, Text, check_in_browser, cosim_section,
                        render_page, report, search_sections, sections_from_json, sections_to_json, write_page)
from flows.report import Column

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on the PATH (apt-get install chromium)")


def _png(path: Path, colour=(200, 30, 30), size=(6, 4)) -> Path:
    from PIL import Image as PILImage

    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.new("RGB", size, colour).save(path)
    return path


def _external_refs(text: str) -> list[str]:
    """src= / href= / CSS url() values that load something from elsewhere (anything but data: and #anchors)."""
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", text) + re.findall(r"url\(([^)]*)\)", text)
    return [r for r in refs if not (r.startswith("data:") or r.startswith("#"))]


def _section(sections, caption_start: str):
    return next(s for s in sections if s.caption.startswith(caption_start))


# --- write_page -------------------------------------------------------------------------------------------------

def test_page_escapes_every_text(tmp_path):
    evil = '<script>alert("x")</script> & <b>'
    path = write_page(tmp_path / "p.html", evil, [
        Text(evil, [evil, "second"], note=evil),
        Table(evil, [evil], [[evil]]),
        KeyValue(evil, {evil: evil}),
        ImageGrid(evil, [(evil, tmp_path / "none.png")]),
    ], meta=evil)
    text = path.read_text()
    assert "<script" not in text and "<b>" not in text
    assert text.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;") >= 8
    assert text.startswith("<!DOCTYPE html>") and "<title>&lt;script&gt;" in text


def test_images_are_embedded_as_data_uris_and_a_missing_one_is_a_note(tmp_path):
    a, b = _png(tmp_path / "a.png"), _png(tmp_path / "sub" / "b.png", (0, 90, 200))
    missing = tmp_path / "gone" / "missing.png"
    (tmp_path / "not.png").write_text("not an image")
    text = render_page("t", [Image("one", a), ImageGrid("grid", [("left", b), ("right", missing)]),
                             Image("bad", tmp_path / "not.png")])
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', text)
    assert len(srcs) == 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert base64.b64decode(srcs[0].split(",", 1)[1]) == a.read_bytes()
    assert base64.b64decode(srcs[1].split(",", 1)[1]) == b.read_bytes()
    assert f'<p class="missing">missing: {missing}</p>' in text
    assert f"not a PNG image: {tmp_path / 'not.png'}" in text
    assert "<figcaption>left</figcaption>" in text and "<figcaption>right</figcaption>" in text
    assert _external_refs(text) == [] and "<script" not in text


def test_table_cells_formats_and_columns():
    t = Table("t", ["name", "x", "n"], [["a", 1.23456, 3], ["b", None, True]], fmt=".2f")
    text = render_page("p", [t])
    assert "<td>a</td><td class=\"num\">1.23</td><td class=\"num\">3.00</td>" in text
    assert "<td>b</td><td></td><td>True</td>" in text  # None: an empty cell; a bool is not a number
    with pytest.raises(ValueError, match="row 1 has 2 cells, not 3"):
        Table("t", ["a", "b", "c"], [[1, 2, 3], [1, 2]])
    rows = [{"name": "a", "x": 1.23456}, {"name": "b", "x": None}]
    cols = [Column("name", "name", "name"), Column("x", "x_raw", "x (dB)", "{:.1f}".format), Column("x", "csv only")]
    assert Table.from_columns("c", rows, cols) == Table("c", ["name", "x (dB)"], [["a", "1.2"], ["b", None]])


def test_write_page_is_atomic_and_returns_the_path(tmp_path):
    out = tmp_path / "deep" / "page.html"
    assert write_page(out, "t", [Text("a", "one paragraph")]) == out
    assert sorted(p.name for p in out.parent.iterdir()) == ["page.html"]  # no temporary file left
    assert "<p>one paragraph</p>" in out.read_text()
    with pytest.raises(TypeError, match="not a page section"):
        render_page("t", ["text"])


# --- JSON form --------------------------------------------------------------------------------------------------

def test_sections_json_round_trip_with_relative_paths(tmp_path):
    run = tmp_path / "run"
    outside = _png(tmp_path / "outside.png")
    sections = [Text("t", ["a", "b"], note="n"), Table("tab", ["x", "y"], [[1, None], ["s", 2.5]], fmt=".3g"),
                Image("img", _png(run / "plots" / "p.png")), ImageGrid("grid", [("l", run / "q.png"), ("o", outside)]),
                KeyValue("kv", {"a": 1, "b": [1, 2], "c": None, "d": {"e": "f"}})]
    data = json.loads(json.dumps(sections_to_json(sections, base=run)))
    assert data[2] == {"kind": "image", "caption": "img", "path": "plots/p.png"}
    assert data[3]["images"] == [["l", "q.png"], ["o", str(outside)]]
    assert data[1] == {"kind": "table", "caption": "tab", "headers": ["x", "y"], "rows": [[1, None], ["s", 2.5]],
                       "fmt": ".3g"}
    assert sections_from_json(data, base=run) == sections


@pytest.mark.parametrize("data, match", [
    ({"kind": "text"}, "must be a JSON list"),
    ([{"kind": "chart", "caption": "c"}], r"section 0: unknown kind 'chart'"),
    ([{"kind": "text", "caption": "c", "paragraphs": []}, {"kind": "table", "caption": "c", "headers": ["a"]}],
     r"section 1 \(table\): missing rows"),
    ([{"kind": "image", "caption": "c", "path": "a.png", "colour": 1}], r"section 0 \(image\): unknown colour"),
    ([{"kind": "table", "caption": "c", "headers": ["a"], "rows": [[1, 2]]}], r"section 0 \(table\): .*2 cells"),
    ([{"kind": "table", "caption": "c", "headers": ["a"], "rows": [[{"x": 1}]]}], r"a cell must be"),
    ([{"kind": "image_grid", "caption": "c", "images": ["a.png"]}], r"\[label, path\] pairs"),
    (["text"], r"section 0: must be an object"),
])
def test_sections_json_errors_name_the_section(data, match):
    with pytest.raises(ValueError, match=match):
        sections_from_json(data)


# --- search runs ------------------------------------------------------------------------------------------------

def _hash_params():
    from hw.params import ENGINES

    return ENGINES["hash_encoder_axi"](levels=2, log2_table_size=6, n_min=4, n_max=16, level_bits=(4, 6))


def _search_summary(memory: bool = True) -> dict:
    """A summary.json with the keys flows/search.py's ``_summary`` writes (two levels, three components)."""
    bits = {"hash.level00": 4, "hash.level01": 6, "color.out": 8}
    base = {"fp": {"name": "fp", "psnr": 30.0, "latency_cycles": None, "latency_ms": None, "fqr": 32.0,
                   "note": "full precision does not run on the integer engines"}}
    for b in (4, 8):
        base[f"uniform-{b}"] = {"name": f"uniform-{b}", "psnr": 20.0 + b, "fqr": float(b),
                                "latency_cycles": 1000 * b, "latency_ms": 0.005 * b}
    s = {"settings": {"scene": "builtin", "preset": "tiny", "hw": "default" if memory else "onchip",
                      "objective": "latency", "budget": 0.5, "lam": 0.1, "b_min": 4, "b_max": 8, "val_views": 2,
                      "warmup": 3, "seed": 0, "rays": 4096},
         "episodes": 5, "wall_seconds": 12.5, "frame": {"rays": 640000, "samples_per_ray": 4.5, "samples": 2880000},
         "val_views": [0, 7], "baselines": base,
         "best": {"episode": 3, "psnr": 26.5, "latency_cycles": 5000, "latency_ms": 0.025, "fqr": 6.0,
                  "reward": -0.5, "bits": bits},
         "latency_ratio_to_uniform8": 0.625, "psnr_change_vs_fp": -3.5,
         "uniform_with_psnr_at_least_best": ["uniform-8"], "dominates_uniform": True, "budget_cycles": 5200}
    if memory:
        s["settings"]["workload_size"] = 200
        s["frame"].update(samples_source="workload", workload_samples_per_ray=4.5)
        stats = {"cycles": 5000, "latency_ms": 0.025, "search_estimate_cycles": 5000, "estimate_error": 0.0,
                 "bottleneck": "memory", "hit_rates": [0.999, 0.75], "resident_levels": [0], "dram_bytes": 123456789,
                 "dram_requests": 1929012, "row": {"hit": 10, "closed": 1, "conflict": 5}, "stall_cycles": 4000,
                 "stall_share": 0.8, "utilization": {"encoder": 0.97, "density": 0.25, "color": 0.5},
                 "workload": "scaled"}
        s["memory"] = {"memory_system": {"bus_bytes": 16, "line_bytes": 64, "cache_bytes": 2048, "ways": 2,
                                         "resident_bytes": 0, "addr_bits": 32, "dram": "lpddr4",
                                         "dram_timing": {"t_rcd": 4}},
                       "workload": {"view": 0, "pixels": [200, 200], "points": 1000, "frame_samples": 2880000,
                                    "order": "scanline", "note": "validation view rendered"},
                       "cost_model": {"every": 1, "chunk": 4096, "points": 1000, "replays": 2,
                                      "note": "exact memory model"},
                       "policies": {"best": stats, "uniform-8": {**stats, "bottleneck": "color",
                                                                 "utilization": {"encoder": 0.5, "density": 0.6,
                                                                                 "color": 1.0}}}}
    return s


def _search_run(root: Path, memory: bool = True, name: str = "search-demo") -> Path:
    """A search run folder as ``make search`` leaves it (without checkpoint and workload)."""
    import yaml

    from hw.params import ENGINES, save_config

    run = root / name
    run.mkdir(parents=True)
    summary = _search_summary(memory)
    (run / "summary.json").write_text(json.dumps(summary, indent=2))
    (run / "policy.yaml").write_text("# quantization policy\n" + yaml.safe_dump(summary["best"]["bits"]))
    save_config(run / "engines.yaml", {"hash_encoder_axi": _hash_params(),
                                       "mlp_engine": ENGINES["mlp_engine"](max_layers=3)})
    (run / "episodes.csv").write_text("episode,psnr\n0,20.0\n")
    _png(run / "pareto.png", (20, 120, 60), (40, 30))
    return run


def _cosim(root: Path, name: str, engine: str, params: dict, *, passed=True, mismatches=0, fault=None) -> None:
    rec = {"engine": engine, "config": "engines", "params": params, "fault": fault, "transactions": 300,
           "mismatches": mismatches, "cycles_rtl": 1234, "cycles_tlm": 1234, "passed": passed}
    (root / name).mkdir(parents=True)
    (root / name / "summary.json").write_text(json.dumps(rec))


def test_search_sections_of_a_run(tmp_path):
    run = _search_run(tmp_path)
    sections = search_sections(run, renders=[("full precision", _png(tmp_path / "fp.png")),
                                             ("policy", tmp_path / "none.png")])
    assert [s.caption.split(" (")[0] for s in sections] == [
        "Settings", "Run", "Baselines and best policy", "Pareto plot: PSNR against latency", "Latency by engine",
        "Cache hit rate per hash-table level", "Memory system and workload", "Bits per component of the best policy",
        "Test views: full precision and under the policy", "Co-simulation of the generated engines"]
    table = _section(sections, "Baselines")
    assert table.headers == ("policy", "PSNR (dB)", "vs full precision (dB)", "latency (ms)", "latency (cycles)",
                             "FQR (bits)", "latency / uniform-8")
    assert table.rows[0] == ("fp", "30.00", "+0.00", None, None, "32.00", None)
    assert table.rows[-1] == ("best (episode 3)", "26.50", "-3.50", "0.0", "5,000", "6.00", "0.625")
    assert "full precision does not run on the integer engines" in table.note
    engines = _section(sections, "Latency by engine")
    assert engines.headers[3:6] == ("encoder utilization", "density utilization", "color utilization")
    assert engines.rows[0][:7] == ("best", "0.0", "memory", "97.0%", "25.0%", "50.0%", "80.0%")
    assert "123.5" in engines.rows[0] and "10/1/5" in engines.rows[0]
    bits = _section(sections, "Bits per component")
    assert bits.path == run / "bits.png" and bits.path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(run / "policy.yaml") in bits.note


def test_search_without_memory_says_it_has_no_engine_figures(tmp_path):
    run = _search_run(tmp_path, memory=False)
    s = json.loads((run / "summary.json").read_text())  # the quality objective's keys too
    s.pop("budget_cycles")
    s.update(psnr_bound=29.5, feasible_episodes=2)
    s["best"]["feasible"] = False
    (run / "summary.json").write_text(json.dumps(s))
    sections = search_sections(run)
    assert "PSNR bound: 29.50 dB; feasible episodes: 2; the best is feasible: no" in _section(sections,
                                                                                               "Baselines").note
    engines = _section(sections, "Latency by engine")
    assert isinstance(engines, Text) and "no \"memory\" section" in engines.paragraphs[0]
    assert "'onchip'" in engines.paragraphs[0]
    assert not any(s.caption.startswith(("Cache hit", "Memory system")) for s in sections)


def test_cosim_status_matches_parameters_exactly(tmp_path):
    from hw.params import ENGINES

    runs = tmp_path / "runs"
    run = _search_run(runs)
    mlp = ENGINES["mlp_engine"](max_layers=3).to_dict()
    hash_params = _hash_params().to_dict()  # level_bits as a list, as JSON has it; the config's is a tuple
    _cosim(runs, "cosim-a", "hash_encoder_axi", hash_params, passed=True)
    _cosim(runs, "cosim-b", "mlp_engine", {**mlp, "rows": 16})  # other parameters
    renamed = {("level_bit" if k == "level_bits" else k): v for k, v in hash_params.items()}
    _cosim(runs, "cosim-c", "hash_encoder_axi", renamed)  # a key named otherwise
    _cosim(runs, "cosim-d", "hash_encoder", hash_params)  # another engine
    (runs / "cosim-e").mkdir()
    (runs / "cosim-e" / "summary.json").write_text("{broken")  # skipped, not an error
    table = _section(search_sections(run, runs_root=runs), "Co-simulation")
    assert table.rows == (("hash_encoder_axi", "cosim-a", "PASS", 300, 0, 1234, 1234, ""),
                          ("mlp_engine", "", f"not co-simulated (run: make cosim CONFIG={run / 'engines.yaml'})",
                           None, None, None, None, ""))
    _cosim(runs, "cosim-f", "mlp_engine", mlp, passed=False, mismatches=3)
    _cosim(runs, "cosim-g", "mlp_engine", mlp, passed=False, mismatches=1, fault="bit")
    table = _section(search_sections(run, runs_root=runs), "Co-simulation")
    assert [r[:5] for r in table.rows[1:]] == [("mlp_engine", "cosim-f", "FAIL", 300, 3),
                                               ("mlp_engine", "cosim-g", "FAIL", 300, 1)]
    assert "fault 'bit' injected" in table.rows[2][-1]
    text = render_page("t", [table])
    assert "<td>PASS</td>" in text and "<td>FAIL</td>" in text
    assert cosim_section(run / "engines.yaml", runs, caption="c") == dataclasses.replace(table, caption="c")
    missing = cosim_section(run / "none.yaml", runs)
    assert isinstance(missing, Text) and f"No engines file {run / 'none.yaml'}" in missing.paragraphs[0]
    (run / "bad.yaml").write_text("not_an_engine: {}\n")
    bad = cosim_section(run / "bad.yaml", runs)
    assert isinstance(bad, Text) and "unknown section 'not_an_engine'" in bad.paragraphs[0]


def test_report_writes_a_self_contained_page_for_a_search_run(tmp_path):
    run = _search_run(tmp_path / "runs")
    path = report(run, runs_root=tmp_path / "runs")
    assert path == run / "report.html"
    text = path.read_text()
    assert "<title>Search demo</title>" in text and "uniform-8" in text and "not co-simulated" in text
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', text)) == 2  # pareto.png and bits.png
    assert _external_refs(text) == [] and "<script" not in text


def test_report_of_page_sections_json(tmp_path):
    run = tmp_path / "compare-x"
    _png(run / "a.png")
    sections = [Text("About", "a comparison"), Table("t", ["k", "v"], [["a", 1.5]], fmt=".1f"),
                Image("plot", run / "a.png"), Image("gone", run / "gone.png")]
    (run / PAGE_SECTIONS).write_text(json.dumps({"title": "Compare <x>", "sections": sections_to_json(sections,
                                                                                                       base=run)}))
    (run / "summary.json").write_text("{}")  # page_sections.json wins over a summary of another kind
    text = report(run).read_text()
    assert "<title>Compare &lt;x&gt;</title>" in text and '<td class="num">1.5</td>' in text
    assert text.count("data:image/png;base64,") == 1 and f"missing: {run / 'gone.png'}" in text
    (run / PAGE_SECTIONS).write_text(json.dumps(sections_to_json(sections[:1])))  # a plain list: the folder's name
    assert "<title>compare-x</title>" in report(run).read_text()


def test_report_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope")) + ": no such run folder"):
        report(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="expected a search run's summary.json or page_sections.json"):
        report(empty)
    with pytest.raises(FileNotFoundError, match=re.escape(str(empty / "summary.json"))):
        search_sections(empty)
    other = tmp_path / "train-x"
    other.mkdir()
    (other / "summary.json").write_text(json.dumps({"psnr": 30.0}))
    with pytest.raises(ValueError, match=re.escape(str(other)) + ".*not a search run's"):
        report(other)
    (other / "summary.json").write_text("{not json")
    with pytest.raises(ValueError, match=re.escape(str(other / "summary.json")) + ": not valid JSON"):
        report(other)
    broken = _search_run(tmp_path, name="search-broken")
    s = json.loads((broken / "summary.json").read_text())
    s["baselines"] = ["fp"]
    (broken / "summary.json").write_text(json.dumps(s))
    with pytest.raises(ValueError, match="not a search summary as flows/search.py writes it"):
        report(broken)
    (broken / PAGE_SECTIONS).write_text(json.dumps([{"kind": "pie", "caption": "c"}]))
    with pytest.raises(ValueError, match=re.escape(str(broken / PAGE_SECTIONS)) + ": section 0: unknown kind"):
        report(broken)
    assert not (empty / "report.html").exists() and not (other / "report.html").exists()


@pytest.mark.parametrize("name", ["search-builtin-demo", "search-nerf_synthetic_lego_400-tiny-latency-onchip"])
def test_report_of_the_searches_on_this_machine(tmp_path, name):
    """The summaries real searches wrote (when this checkout has them): copied, so runs/ is not written."""
    src = ROOT / "runs" / name
    if not (src / "summary.json").exists():
        pytest.skip(f"no {src}")
    run = tmp_path / name
    run.mkdir()
    for f in ("summary.json", "pareto.png", "policy.yaml", "engines.yaml"):
        if (src / f).exists():
            shutil.copy(src / f, run / f)
    text = report(run, runs_root=ROOT / "runs").read_text()
    assert "Baselines and best policy" in text and "Co-simulation of the generated engines" in text


# --- headless Chromium ------------------------------------------------------------------------------------------

def _blank(png: Path) -> bool:
    from PIL import Image as PILImage

    with PILImage.open(png) as im:
        return all(lo == hi for lo, hi in im.convert("RGB").getextrema())


@needs_chromium
def test_report_renders_in_chromium_without_console_errors(tmp_path):
    run = _search_run(tmp_path / "runs")
    page = report(run, runs_root=tmp_path / "runs", renders=[("full precision", _png(tmp_path / "fp.png"))])
    result = check_in_browser(page, tmp_path / "shot.png", timeout=60)
    assert result["console_errors"] == []
    assert result["title"] == "Search demo" and result["url"] == page.resolve().as_uri()
    assert result["screenshot"] == tmp_path / "shot.png" and not _blank(tmp_path / "shot.png")
    assert result["size"][1] > 900  # the whole page, not only the first screen


@needs_chromium
def test_chromium_check_detects_console_errors(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><title>bad</title></head><body><p>x</p>\n"
                    "<script>console.error('boom', 42)</script>\n<script>undefinedFn()</script>\n</body></html>\n")
    errors = check_in_browser(page, tmp_path / "bad.png", timeout=60)["console_errors"]
    assert any("undefinedFn is not defined" in e and e.startswith("uncaught:") for e in errors), errors
    assert any(e == "console.error: boom 42" for e in errors), errors
    assert (tmp_path / "bad.png").exists()


def test_chromium_check_refuses_a_missing_page_or_browser(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such page"):
        check_in_browser(tmp_path / "none.html", tmp_path / "s.png")
    (tmp_path / "p.html").write_text("<p>x</p>")
    with pytest.raises(FileNotFoundError, match="no browser '/nonexistent/chromium'"):
        check_in_browser(tmp_path / "p.html", tmp_path / "s.png", browser="/nonexistent/chromium")
