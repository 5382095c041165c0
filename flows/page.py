"""A run as one self-contained HTML page (``report.html``), and a headless-Chromium check of such a page.

A page is a title and a list of sections, each a small frozen dataclass: ``Text`` (paragraphs),
``Table`` (headers and rows of cells), ``Image`` (a PNG), ``ImageGrid`` (labelled PNGs side by side)
and ``KeyValue`` (a list of names and values). ``write_page`` writes them as one HTML file: inline
CSS, every image embedded as a base64 ``data:`` URI, every text HTML-escaped, no script and nothing
loaded from elsewhere, so the file can be mailed or archived on its own. A missing image is a visible
``missing: <path>`` note, not an error.

``report(run_dir)`` writes ``<run_dir>/report.html`` for a search run (``flows/search.py``:
``search_sections``) or for any folder holding ``page_sections.json``, the JSON form of a list of
sections (``sections_to_json`` / ``sections_from_json``) another flow wrote there:

    [{"kind": "text", "caption": "...", "paragraphs": ["...", "..."]},
     {"kind": "table", "caption": "...", "headers": ["a", "b"], "rows": [[1, null], ["x", 2.5]], "fmt": ".3g"},
     {"kind": "image", "caption": "...", "path": "pareto.png"},
     {"kind": "image_grid", "caption": "...", "images": [["label", "a.png"], ["other", "b.png"]]},
     {"kind": "key_value", "caption": "...", "items": {"name": "value", "n": 3}}]

Every kind may also carry ``"note"`` (a paragraph under the caption); image paths are relative to the
run folder (absolute ones are kept). The file may also be ``{"title": "...", "sections": [...]}``.

``check_in_browser`` opens a page in Debian's headless Chromium over the DevTools protocol on a pipe
(``--remote-debugging-pipe``: no network port, no Python package), saves a screenshot and returns the
console errors: uncaught exceptions, ``console.error`` / ``console.assert`` and the browser's own error
log entries (a resource that failed to load, for one).
"""

from __future__ import annotations

import base64
import datetime
import fcntl
import html
import json
import os
import select
import shutil
import signal
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Union

from common.atomic import atomic_write, atomic_write_text
from flows.report import Column, pyplot, save_figure

__all__ = ["Text", "Table", "Image", "ImageGrid", "KeyValue", "Section", "write_page", "render_page",
           "sections_to_json", "sections_from_json", "search_sections", "cosim_section", "report", "check_in_browser",
           "CHROMIUM", "PAGE_SECTIONS"]

#: The browser ``check_in_browser`` runs by default (Debian's package ``chromium``).
CHROMIUM = "/usr/bin/chromium"
#: A run folder's sections in JSON, written by a flow for ``report`` (module doc).
PAGE_SECTIONS = "page_sections.json"

Cell = Union[str, int, float, None]


def _tuple(items: Any) -> tuple:
    return tuple(items) if not isinstance(items, (str, bytes)) else (items,)


@dataclass(frozen=True)
class Text:
    """A caption and paragraphs (a single string is one paragraph)."""

    caption: str
    paragraphs: tuple[str, ...] = ()
    note: str = ""
    kind: ClassVar[str] = "text"

    def __post_init__(self):
        object.__setattr__(self, "paragraphs", tuple(str(p) for p in _tuple(self.paragraphs)))


@dataclass(frozen=True)
class Table:
    """A caption, column headers and rows of cells (str, int, float or None: an empty cell).

    ``fmt`` is a format spec (``format(value, fmt)``, e.g. ``".3g"``) for the numbers (not bools) of
    every cell; text cells are shown as they are, so a caller formats a column its own way by passing text.

    Raises:
        ValueError: a row with another number of cells than ``headers``.
    """

    caption: str
    headers: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    fmt: str = ""
    note: str = ""
    kind: ClassVar[str] = "table"

    def __post_init__(self):
        object.__setattr__(self, "headers", tuple(str(h) for h in _tuple(self.headers)))
        object.__setattr__(self, "rows", tuple(tuple(r) for r in self.rows))
        for i, row in enumerate(self.rows):
            if len(row) != len(self.headers):
                raise ValueError(f"table {self.caption!r}: row {i} has {len(row)} cells, not {len(self.headers)} "
                                 f"(one per header)")

    @classmethod
    def from_columns(cls, caption: str, rows: Iterable[Mapping], columns: Sequence[Column], *,
                     note: str = "") -> Table:
        """The table of ``flows.report`` columns (those with a Markdown ``header``), each value formatted
        by its column's ``fmt``; a missing value is an empty cell."""
        cols = [c for c in columns if c.header is not None]
        body = [[None if (v := c.get(row)) is None else c.fmt(v) for c in cols] for row in rows]
        return cls(caption, tuple(c.header for c in cols), tuple(tuple(r) for r in body), note=note)


@dataclass(frozen=True)
class Image:
    """A caption and one PNG file (a missing file is shown as a note)."""

    caption: str
    path: Path
    note: str = ""
    kind: ClassVar[str] = "image"

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))


@dataclass(frozen=True)
class ImageGrid:
    """A caption and labelled PNG files, shown side by side (wrapping on a narrow window)."""

    caption: str
    images: tuple[tuple[str, Path], ...]
    note: str = ""
    kind: ClassVar[str] = "image_grid"

    def __post_init__(self):
        object.__setattr__(self, "images", tuple((str(label), Path(p)) for label, p in self.images))


@dataclass(frozen=True)
class KeyValue:
    """A caption and names with values (a mapping or (name, value) pairs); a list or mapping value is
    shown as compact JSON."""

    caption: str
    items: tuple[tuple[str, Any], ...]
    note: str = ""
    kind: ClassVar[str] = "key_value"

    def __post_init__(self):
        items = self.items.items() if isinstance(self.items, Mapping) else self.items
        object.__setattr__(self, "items", tuple((str(k), v) for k, v in items))


Section = Union[Text, Table, Image, ImageGrid, KeyValue]
_KINDS: dict[str, type] = {c.kind: c for c in (Text, Table, Image, ImageGrid, KeyValue)}
_SECTION_TYPES = tuple(_KINDS.values())

# ---------------------------------------------------------------------------------------------------------------
# HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0; color: #1d2430;
       background: #fff; line-height: 1.45; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.2em; margin: 0 0 8px; border-bottom: 1px solid #d6dbe3; padding-bottom: 4px; }
section { margin: 28px 0; }
nav ol { columns: 2; margin: 8px 0; padding-left: 22px; }
nav a, nav a:visited { color: #2556a8; text-decoration: none; }
.meta, .note { color: #5a6475; font-size: 0.9em; }
.note { margin: 0 0 10px; }
.missing { color: #a31515; background: #fdecea; border: 1px solid #f2b8b5; padding: 6px 10px; display: inline-block;
           font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #d6dbe3; padding: 4px 8px; text-align: left; vertical-align: top; }
td { white-space: nowrap; }
th { background: #eef1f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #f7f9fc; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 3px 18px; margin: 0; font-size: 0.92em; }
dt { font-weight: 600; }
dd { margin: 0; word-break: break-word; }
img { max-width: 100%; height: auto; border: 1px solid #e3e7ee; }
.grid { display: flex; flex-wrap: wrap; gap: 14px; }
figure { margin: 0; }
figcaption { font-size: 0.9em; color: #5a6475; margin-top: 3px; }
"""


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cell(v: Cell, fmt: str) -> tuple[str, bool]:
    """The text of a table cell and whether it is a number (right-aligned)."""
    if v is None:
        return "", False
    if _is_number(v):
        return format(v, fmt), True
    return str(v), False


def _value(v: Any) -> str:
    """A key-value list's value as text: strings as they are, numbers by ``str``, the rest as compact JSON."""
    if isinstance(v, str):
        return v
    if _is_number(v):
        return str(v)
    return json.dumps(v, default=str, separators=(", ", ": "))


def _img(path: Path, alt: str) -> str:
    """An ``<img>`` with the file inlined as a data URI, or a visible note when it is missing or not an image."""
    try:
        data = path.read_bytes()
    except OSError:
        return f'<p class="missing">missing: {_e(path)}</p>'
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        mime = "image/png"
    elif data.startswith(b"\xff\xd8\xff"):
        mime = "image/jpeg"
    else:
        return f'<p class="missing">not a PNG image: {_e(path)}</p>'
    return f'<img alt="{_e(alt)}" src="data:{mime};base64,{base64.b64encode(data).decode("ascii")}">'


def _section_body(s: Section) -> str:
    if isinstance(s, Text):
        return "\n".join(f"<p>{_e(p)}</p>" for p in s.paragraphs)
    if isinstance(s, Table):
        head = "".join(f"<th>{_e(h)}</th>" for h in s.headers)
        lines = []
        for row in s.rows:
            cells = [_cell(v, s.fmt) for v in row]
            lines.append("<tr>" + "".join(f'<td class="num">{_e(t)}</td>' if num else f"<td>{_e(t)}</td>"
                                          for t, num in cells) + "</tr>")
        return (f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(lines)
                + "\n</tbody></table></div>")
    if isinstance(s, Image):
        return _img(s.path, s.caption)
    if isinstance(s, ImageGrid):
        figs = [f"<figure>{_img(p, label)}<figcaption>{_e(label)}</figcaption></figure>" for label, p in s.images]
        return '<div class="grid">\n' + "\n".join(figs) + "\n</div>"
    if isinstance(s, KeyValue):
        return "<dl>\n" + "\n".join(f"<dt>{_e(k)}</dt><dd>{_e(_value(v))}</dd>" for k, v in s.items) + "\n</dl>"
    raise TypeError(f"not a page section: {s!r}")


def render_page(title: str, sections: Sequence[Section], *, meta: str = "") -> str:
    """The HTML text of a page: the title, ``meta`` (a line under it), a table of contents and the sections.

    Raises:
        TypeError: an item of ``sections`` is not one of the section types.
    """
    bodies = []
    for i, s in enumerate(sections):
        if not isinstance(s, _SECTION_TYPES):
            raise TypeError(f"not a page section: {s!r}")
        note = f'<p class="note">{_e(s.note)}</p>\n' if s.note else ""
        bodies.append(f'<section id="s{i + 1}">\n<h2>{_e(s.caption)}</h2>\n{note}{_section_body(s)}\n</section>')
    toc = "".join(f'<li><a href="#s{i + 1}">{_e(s.caption)}</a></li>' for i, s in enumerate(sections))
    meta_line = f'<p class="meta">{_e(meta)}</p>\n' if meta else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<link rel=\"icon\" href=\"data:,\">\n"  # no favicon request
            f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n<h1>{_e(title)}</h1>\n"
            f"{meta_line}" + (f"<nav><ol>{toc}</ol></nav>\n" if len(sections) > 1 else "")
            + "\n".join(bodies) + "\n</main>\n</body>\n</html>\n")


def write_page(path: str | Path, title: str, sections: Sequence[Section], *, meta: str | None = None) -> Path:
    """Write ``render_page(title, sections)`` to ``path`` atomically; returns the path.

    ``meta`` is the line under the title (default: when the page was written). Images are read now and
    embedded; a missing one is a ``missing: <path>`` note in the page.

    Raises:
        TypeError: an item of ``sections`` is not one of the section types.
    """
    if meta is None:
        meta = f"written {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')} by flows/page.py"
    path = Path(path)
    atomic_write_text(path, render_page(title, sections, meta=meta))
    return path


# ---------------------------------------------------------------------------------------------------------------
# JSON form (module doc)

def _rel(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return path.resolve().relative_to(Path(base).resolve()).as_posix()
        except ValueError:  # outside the folder: kept as it is
            pass
    return str(path)


def sections_to_json(sections: Sequence[Section], *, base: str | Path | None = None) -> list[dict]:
    """The JSON form of ``sections`` (module doc): a list of dicts; image paths inside ``base`` (the run
    folder the JSON goes to) are made relative to it, others are kept as they are.

    Raises:
        TypeError: an item is not one of the section types.
    """
    base = None if base is None else Path(base)
    out = []
    for s in sections:
        if not isinstance(s, _SECTION_TYPES):
            raise TypeError(f"not a page section: {s!r}")
        d: dict[str, Any] = {"kind": s.kind, "caption": s.caption}
        if isinstance(s, Text):
            d["paragraphs"] = list(s.paragraphs)
        elif isinstance(s, Table):
            d.update(headers=list(s.headers), rows=[list(r) for r in s.rows])
            if s.fmt:
                d["fmt"] = s.fmt
        elif isinstance(s, Image):
            d["path"] = _rel(s.path, base)
        elif isinstance(s, ImageGrid):
            d["images"] = [[label, _rel(p, base)] for label, p in s.images]
        else:
            d["items"] = dict(s.items)
        if s.note:
            d["note"] = s.note
        out.append(d)
    return out


def _path(p: Any, base: Path | None, where: str) -> Path:
    if not isinstance(p, str) or not p:
        raise ValueError(f"{where}: an image path must be a non-empty string, not {p!r}")
    path = Path(p)
    return base / path if base is not None and not path.is_absolute() else path


def sections_from_json(data: Any, *, base: str | Path | None = None) -> list[Section]:
    """The sections of their JSON form (``sections_to_json``); relative image paths are taken in ``base``.

    Raises:
        ValueError: not a list of section objects, an unknown kind, a missing or wrong field (the message
            names the section's index and the field).
    """
    base = None if base is None else Path(base)
    if not isinstance(data, list):
        raise ValueError(f"page sections must be a JSON list of section objects, not {type(data).__name__}")
    out: list[Section] = []
    for i, d in enumerate(data):
        where = f"section {i}"
        if not isinstance(d, dict):
            raise ValueError(f"{where}: must be an object with a 'kind', not {d!r}")
        kind = d.get("kind")
        if kind not in _KINDS:
            raise ValueError(f"{where}: unknown kind {kind!r} (allowed: {', '.join(_KINDS)})")
        required = {"text": ("paragraphs",), "table": ("headers", "rows"), "image": ("path",),
                    "image_grid": ("images",), "key_value": ("items",)}[kind]
        allowed = {"kind", "caption", "note", *required} | ({"fmt"} if kind == "table" else set())
        unknown = sorted(set(d) - allowed)
        missing = [k for k in ("caption", *required) if k not in d]
        if missing or unknown:
            raise ValueError(f"{where} ({kind}): " + "; ".join(
                ([f"missing {', '.join(missing)}"] if missing else []) + ([f"unknown {', '.join(unknown)}"]
                                                                        if unknown else [])))
        caption, note = str(d["caption"]), str(d.get("note", ""))
        try:
            if kind == "text":
                paragraphs = d["paragraphs"]
                if not isinstance(paragraphs, (str, list)):
                    raise ValueError("paragraphs must be a string or a list of strings")
                out.append(Text(caption, paragraphs, note=note))
            elif kind == "table":
                rows = d["rows"]
                if not isinstance(d["headers"], list):
                    raise ValueError("headers must be a list")
                if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                    raise ValueError("rows must be a list of lists")
                bad = [c for r in rows for c in r if not (c is None or isinstance(c, (str, int, float)))]
                if bad:
                    raise ValueError(f"a cell must be a string, a number or null, not {bad[0]!r}")
                out.append(Table(caption, d["headers"], rows, fmt=str(d.get("fmt", "")), note=note))
            elif kind == "image":
                out.append(Image(caption, _path(d["path"], base, where), note=note))
            elif kind == "image_grid":
                if not isinstance(d["images"], list) or not all(isinstance(x, list) and len(x) == 2
                                                                 for x in d["images"]):
                    raise ValueError("images must be a list of [label, path] pairs")
                out.append(ImageGrid(caption, [(lab, _path(p, base, where)) for lab, p in d["images"]], note=note))
            else:
                items = d["items"]
                if not isinstance(items, (dict, list)) or (isinstance(items, list) and not all(
                        isinstance(x, list) and len(x) == 2 for x in items)):
                    raise ValueError("items must be an object or a list of [name, value] pairs")
                out.append(KeyValue(caption, items, note=note))
        except ValueError as exc:
            msg = str(exc)
            raise ValueError(msg if msg.startswith(where) else f"{where} ({kind}): {msg}") from None
    return out


# ---------------------------------------------------------------------------------------------------------------
# Search runs

def _fmt(spec: str):
    return lambda v: format(v, spec)


def _baseline_table(summary: dict) -> Table:
    """Full precision, the uniform baselines and the best policy: PSNR, latency, FQR, latency / uniform-8."""
    baselines, best = summary["baselines"], summary.get("best")
    fp = baselines.get("fp", {}).get("psnr")
    u8 = baselines.get("uniform-8", {}).get("latency_cycles")
    rows = [{"policy": name, **b} for name, b in baselines.items()]
    if best:
        rows.append({"policy": f"best (episode {best.get('episode')})", **best})
    for r in rows:
        r["dpsnr"] = r["psnr"] - fp if fp is not None and r.get("psnr") is not None else None
        r["ratio"] = r["latency_cycles"] / u8 if u8 and r.get("latency_cycles") is not None else None
    columns = [Column("policy", header="policy"), Column("psnr", header="PSNR (dB)", fmt=_fmt(".2f")),
               Column("dpsnr", header="vs full precision (dB)", fmt=_fmt("+.2f")),
               Column("latency_ms", header="latency (ms)", fmt=_fmt(".1f")),
               Column("latency_cycles", header="latency (cycles)", fmt=_fmt(",")),
               Column("fqr", header="FQR (bits)", fmt=_fmt(".2f")),
               Column("ratio", header="latency / uniform-8", fmt=_fmt(".3f"))]
    notes = [f"{r['policy']}: {r['note']}" for r in rows if r.get("note")]
    if best:
        notes.append("uniform policies with PSNR >= the best's: "
                     + (", ".join(summary.get("uniform_with_psnr_at_least_best", [])) or "none")
                     + f"; the best is faster than all of them: {'yes' if summary.get('dominates_uniform') else 'no'}")
    else:
        notes.append("no best policy: the search has no episodes")
    if "budget_cycles" in summary:
        notes.append(f"latency budget: {summary['budget_cycles']:,} cycles")
    if "psnr_bound" in summary:
        notes.append(f"PSNR bound: {summary['psnr_bound']:.2f} dB; feasible episodes: "
                     f"{summary.get('feasible_episodes', 'not recorded')}"
                     + (f"; the best is feasible: {'yes' if best['feasible'] else 'no'}"
                        if best and "feasible" in best else ""))
    return Table.from_columns("Baselines and best policy (validation PSNR, latency of an 800x800 frame)", rows,
                              columns, note=". ".join(notes))


def _engine_sections(summary: dict) -> list[Section]:
    """Tables in DRAM: per policy the engines' utilization and the memory statistics (``summary["memory"]``);
    otherwise one paragraph saying the summary has no per-engine figures."""
    mem = summary.get("memory")
    caption = "Latency by engine"
    if not mem or not mem.get("policies"):
        hw = summary.get("settings", {}).get("hw", "?")
        return [Text(caption, f"Not recorded: this run's summary.json has no \"memory\" section (hardware preset "
                              f"{hw!r}), so per-engine utilization, stall share and memory statistics are not "
                              "available; the search recorded only each policy's frame latency (table above).")]
    policies = mem["policies"]
    engines = list(dict.fromkeys(e for p in policies.values() for e in p.get("utilization", {})))
    rows = [{"policy": name, **p} for name, p in policies.items()]
    pct = _fmt(".1%")
    columns = [Column("policy", header="policy"), Column("latency_ms", header="latency (ms)", fmt=_fmt(".1f")),
               Column("bottleneck", header="bottleneck")]
    columns += [Column(lambda r, e=e: r.get("utilization", {}).get(e), header=f"{e} utilization", fmt=pct)
                for e in engines]
    columns += [Column("stall_share", header="stall share", fmt=pct),
                Column("stall_cycles", header="stall (cycles)", fmt=_fmt(",")),
                Column(lambda r: None if r.get("dram_bytes") is None else r["dram_bytes"] / 1e6,
                       header="DRAM (MB)", fmt=_fmt(",.1f")),
                Column("dram_requests", header="DRAM requests", fmt=_fmt(",")),
                Column(lambda r: "/".join(f"{r['row'].get(k, 0):,}" for k in ("hit", "closed", "conflict"))
                       if isinstance(r.get("row"), dict) else None, header="rows hit/closed/conflict"),
                Column("estimate_error", header="search estimate error", fmt=_fmt("+.2%"))]
    out: list[Section] = [Table.from_columns(
        f"{caption} (tables in DRAM; exact memory model on the whole workload)", rows, columns,
        note="utilization: an engine's busy cycles / the frame's cycles (sim/perf.py); busy cycles themselves are "
             "not in summary.json. Stall share: the encoder's cycles stalled waiting for a cache fill from DRAM / the "
             "frame's cycles.")]
    best = policies.get("best")
    if best and best.get("hit_rates"):
        resident = set(best.get("resident_levels", []))
        out.append(Table("Cache hit rate per hash-table level (best policy)", ("level", "hit rate", "resident"),
                         [(str(lv), rate, "yes" if lv in resident else "") for lv, rate in
                          enumerate(best["hit_rates"])], fmt=".4%",
                         note="resident levels are held on chip (resident_bytes)"))
    system = dict(mem.get("memory_system", {}))
    kv = {**system, "workload": mem.get("workload", {}).get("note"), "workload points":
          mem.get("workload", {}).get("points"), "cost model": mem.get("cost_model", {}).get("note")}
    out.append(KeyValue("Memory system and workload", {k: v for k, v in kv.items() if v is not None}))
    return out


def _component_colour(name: str) -> str:
    return {"hash": "tab:blue", "enc": "tab:cyan", "density": "tab:orange", "sh": "tab:green",
            "color": "tab:red"}.get(name.split(".")[0], "tab:grey")


def _bits_chart(bits: Mapping[str, int], path: Path, title: str) -> None:
    """A bar per component (its bits), coloured by the component's group; PNG at ``path``."""
    plt = pyplot()
    names = list(bits)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.26 * len(names) + 1.5), 3.6), dpi=110)
    ax.bar(range(len(names)), [bits[n] for n in names], color=[_component_colour(n) for n in names])
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylabel("bits")
    ax.set_ylim(0, max([8, *bits.values()]) + 0.5)
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


def _policy_bits(run_dir: Path, summary: dict) -> tuple[dict | None, str]:
    """The best policy's bits per component: ``policy.yaml``, else the summary's best; and where from."""
    import yaml

    path = run_dir / "policy.yaml"
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            return None, f"{path} could not be read: {exc}"
        if isinstance(data, dict) and data and all(isinstance(v, int) for v in data.values()):
            return {str(k): v for k, v in data.items()}, str(path)
        return None, f"{path} is not a mapping of component -> bits"
    best = summary.get("best") or {}
    if best.get("bits"):
        return dict(best["bits"]), f"{run_dir / 'summary.json'} (no policy.yaml)"
    return None, "no policy.yaml and no best policy in summary.json"


def _jsonable(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists), for comparing with a JSON record."""
    return json.loads(json.dumps(obj))


def _cosim_records(runs_root: Path) -> list[tuple[Path, dict]]:
    """Every readable ``<runs_root>/cosim-*/summary.json``, by folder name."""
    out = []
    for path in sorted(runs_root.glob("cosim-*/summary.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a broken record is no evidence either way
        if isinstance(rec, dict):
            out.append((path.parent, rec))
    return out


def cosim_section(engines_yaml: str | Path, runs_root: str | Path = "runs", *,
                  caption: str = "Co-simulation of the generated engines") -> Section:
    """For each engine section of ``engines_yaml`` (``hw.params.load_config``): the co-simulation records
    (``<runs_root>/cosim-*/summary.json``) of that engine with exactly its parameters (the record's
    "params" against the section's ``to_dict()``, both as JSON), PASS / FAIL with their counts,
    or "not co-simulated (run: make cosim CONFIG=<engines_yaml>)". A table; a text section when the file
    is missing or not a valid engines file. Unreadable records are skipped.
    """
    from hw.params import ConfigError, load_config

    path, runs_root = Path(engines_yaml), Path(runs_root)
    if not path.exists():
        return Text(caption, f"No engines file {path}: no engines were generated.")
    try:
        engines = load_config(path)
    except ConfigError as exc:
        return Text(caption, f"{path} could not be read: {exc}")
    records = _cosim_records(runs_root)
    rows = []
    for section, params in engines.items():
        want = _jsonable(params.to_dict())
        found = [(d, r) for d, r in records if r.get("engine") == section and r.get("params") == want]
        for d, r in found:
            ok = bool(r.get("passed")) and r.get("mismatches") == 0  # the rule of flows.cosim.summary_lines
            fault = r.get("fault")
            rows.append((section, d.name, "PASS" if ok else "FAIL", r.get("transactions"), r.get("mismatches"),
                         r.get("cycles_rtl"), r.get("cycles_tlm"),
                         f"fault {fault!r} injected: a FAIL is expected" if fault else ""))
        if not found:
            rows.append((section, "", f"not co-simulated (run: make cosim CONFIG={path})", None, None, None, None,
                         ""))
    return Table(caption, ("engine", "co-simulation run", "status", "transactions", "mismatches", "cycles RTL",
                           "cycles TLM", "note"), rows, fmt=",",
                 note=f"Records: {runs_root}/cosim-*/summary.json whose engine and parameters equal the section of "
                      f"{path}. An MLP engine's parameters are its maxima: a record with them co-simulated random "
                      "layer configurations, not necessarily this policy's.")


def _summary_path(run_dir: Path) -> Path:
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    path = run_dir / "summary.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no summary.json in the run folder")
    return path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


def search_sections(run_dir: str | Path, *, renders: Sequence[tuple[str, str | Path]] | None = None,
                    runs_root: str | Path | None = None) -> list[Section]:
    """The sections of a search run's page (``make search``'s folder, ``flows/search.py``).

    Settings; the run (episodes, frame, validation views); baselines and best policy; ``pareto.png``;
    latency by engine (the summary's figures, or a note that it has none); the best policy's bits per
    component (writes ``<run_dir>/bits.png``); ``renders`` (label, PNG path) as a grid when given; the
    co-simulation status of every engine in ``engines.yaml`` (records in ``runs_root``, default the run
    folder's parent).

    Raises:
        FileNotFoundError: no such folder, or no summary.json in it.
        ValueError: summary.json is not valid JSON or not a search summary (names the file and what is missing).
    """
    run_dir = Path(run_dir)
    path = _summary_path(run_dir)
    summary = _read_json(path)
    if not isinstance(summary, dict) or "baselines" not in summary or "episodes" not in summary:
        raise ValueError(f"{path}: not a search summary (expected the keys 'episodes' and 'baselines' that "
                         "flows/search.py writes)")
    runs_root = run_dir.parent if runs_root is None else Path(runs_root)
    try:
        sections: list[Section] = [KeyValue("Settings", summary.get("settings", {}))]
        frame = summary.get("frame", {})
        run = {"episodes": summary["episodes"], "wall seconds": summary.get("wall_seconds"),
               "frame rays": frame.get("rays"), "samples per ray": frame.get("samples_per_ray"),
               "frame samples": frame.get("samples"), "samples from": frame.get("samples_source", "samples per ray"),
               "validation views": summary.get("val_views")}
        sections.append(KeyValue("Run", run))
        sections.append(_baseline_table(summary))
        sections.append(Image("Pareto plot: PSNR against latency", run_dir / "pareto.png"))
        sections += _engine_sections(summary)
        bits, source = _policy_bits(run_dir, summary)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # a summary of another shape
        raise ValueError(f"{path}: not a search summary as flows/search.py writes it ({type(exc).__name__}: "
                         f"{exc})") from None
    if bits is None:
        sections.append(Text("Bits per component of the best policy", source))
    else:
        fqr = (summary.get("best") or {}).get("fqr")
        _bits_chart(bits, run_dir / "bits.png", f"{run_dir.name}: best policy's bits"
                    + (f" (FQR {fqr:.2f})" if isinstance(fqr, (int, float)) else ""))
        sections.append(Image("Bits per component of the best policy", run_dir / "bits.png", note=f"from {source}"))
    if renders:
        sections.append(ImageGrid("Test views: full precision and under the policy", renders))
    sections.append(cosim_section(run_dir / "engines.yaml", runs_root))
    return sections


def report(run_dir: str | Path, *, runs_root: str | Path = "runs",
           renders: Sequence[tuple[str, str | Path]] | None = None) -> Path:
    """Write ``<run_dir>/report.html`` and return its path.

    The sections: ``<run_dir>/page_sections.json`` when there is one (module doc; it may be a list or
    ``{"title": ..., "sections": [...]}``), else those of a search run (summary.json with "episodes" and
    "baselines": ``search_sections``; co-simulation records looked up in ``runs_root``).

    Raises:
        FileNotFoundError: no such folder, or neither page_sections.json nor summary.json in it.
        ValueError: a JSON file that is not valid, a page_sections.json that is not sections, or a
            summary.json of another kind of run (each names the file and what was expected).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    title = run_dir.name
    page_json = run_dir / PAGE_SECTIONS
    if page_json.exists():
        data = _read_json(page_json)
        if isinstance(data, dict) and "sections" in data:
            title = str(data.get("title", title))
            data = data["sections"]
        try:
            sections = sections_from_json(data, base=run_dir)
        except ValueError as exc:
            raise ValueError(f"{page_json}: {exc}") from None
        if renders:
            sections.append(ImageGrid("Test views", renders))
    elif (run_dir / "summary.json").exists():
        summary = _read_json(run_dir / "summary.json")
        if not (isinstance(summary, dict) and "episodes" in summary and "baselines" in summary):
            raise ValueError(f"{run_dir}: cannot make a page: its summary.json is not a search run's (no 'episodes' "
                             f"and 'baselines'), and there is no {PAGE_SECTIONS}")
        title = f"Search {run_dir.name.removeprefix('search-')}"
        sections = search_sections(run_dir, renders=renders, runs_root=runs_root)
    else:
        raise FileNotFoundError(f"{run_dir}: cannot make a page: expected a search run's summary.json or "
                                f"{PAGE_SECTIONS}, found neither")
    return write_page(run_dir / "report.html", title, sections,
                      meta=f"{run_dir} - written {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} by "
                           "flows/page.py")


# ---------------------------------------------------------------------------------------------------------------
# Headless Chromium

class _DevTools:
    """The DevTools protocol over ``--remote-debugging-pipe``: JSON messages ended by a NUL byte, our
    commands on the browser's fd 3, its answers and events on its fd 4."""

    def __init__(self, wfd: int, rfd: int, deadline: float):
        self.wfd, self.rfd, self.deadline = wfd, rfd, deadline
        self.buf = bytearray()
        self.next_id = 0
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            data = data[os.write(self.wfd, data):]
        return self.next_id

    def _read(self, until: float) -> dict | None:
        """The next message, or None when ``until`` passes first.

        Raises:
            RuntimeError: the browser closed the pipe (it exited).
        """
        while (end := self.buf.find(b"\0")) < 0:
            left = until - time.monotonic()
            if left <= 0 or not select.select([self.rfd], [], [], left)[0]:
                return None
            chunk = os.read(self.rfd, 1 << 20)
            if not chunk:
                raise RuntimeError("the browser closed the DevTools pipe (it exited)")
            self.buf += chunk
        msg = json.loads(self.buf[:end])
        del self.buf[:end + 1]
        if "method" in msg:
            self._event(msg)
        return msg

    def _event(self, msg: dict) -> None:
        method, p = msg["method"], msg.get("params", {})
        self.events.append(msg)
        if method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            text = (d.get("exception") or {}).get("description") or d.get("text", "exception")
            where = f" ({d['url']}:{d.get('lineNumber', 0) + 1})" if d.get("url") else ""
            self.errors.append(f"uncaught: {text.splitlines()[0] if text else text}{where}")
        elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            (self.warnings if p["type"] == "warning" else self.errors).append(f"console.{p['type']}: {args}")
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
            e = p["entry"]
            line = f"{e.get('source', 'log')}: {e.get('text', '')}" + (f" ({e['url']})" if e.get("url") else "")
            (self.errors if e["level"] == "error" else self.warnings).append(line)
        elif method in ("Inspector.targetCrashed", "Target.targetCrashed"):
            self.errors.append("the page crashed")

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send a command and wait for its answer (events meanwhile are recorded).

        Raises:
            TimeoutError: no answer before the deadline. RuntimeError: the browser answered an error.
        """
        cid = self.send(method, params, session)
        while True:
            msg = self._read(self.deadline)
            if msg is None:
                raise TimeoutError(f"headless Chromium did not answer {method} in time")
            if msg.get("id") == cid:
                if "error" in msg:
                    raise RuntimeError(f"headless Chromium: {method} failed: {msg['error']}")
                return msg.get("result", {})

    def wait_event(self, method: str, session: str | None = None) -> dict:
        """Wait for the event ``method`` (of ``session``); returns its params.

        Raises:
            TimeoutError: not before the deadline.
        """
        while True:
            msg = self._read(self.deadline)
            if msg is None:
                raise TimeoutError(f"headless Chromium: no {method} in time")
            if msg.get("method") == method and (session is None or msg.get("sessionId") == session):
                return msg.get("params", {})

    def drain(self, seconds: float) -> None:
        """Record the events of the next ``seconds`` (late errors: timers, onload handlers)."""
        until = min(self.deadline, time.monotonic() + seconds)
        while self._read(until) is not None:
            pass


def _launch(browser: str, user_dir: str, log_fd: int) -> tuple[int, int, int]:
    """Start ``browser`` headless in its own session, stdout and stderr to ``log_fd``, with the DevTools pipe
    on its fds 3 (our commands) and 4 (its answers); returns its pid, our write end and our read end."""
    cmd_r, cmd_w = os.pipe()
    ans_r, ans_w = os.pipe()
    # the browser's ends moved above 4 first, so that the dup2s onto 3 and 4 cannot overwrite each other
    hi_r = fcntl.fcntl(cmd_r, fcntl.F_DUPFD_CLOEXEC, 10)
    hi_w = fcntl.fcntl(ans_w, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(cmd_r)
    os.close(ans_w)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage",  # containers have a small /dev/shm
             "--disable-extensions", "--no-default-browser-check", "--hide-scrollbars", "--mute-audio",
             "--remote-debugging-pipe", f"--user-data-dir={user_dir}", "about:blank"]
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0), (os.POSIX_SPAWN_DUP2, log_fd, 1),
               (os.POSIX_SPAWN_DUP2, log_fd, 2), (os.POSIX_SPAWN_DUP2, hi_r, 3), (os.POSIX_SPAWN_DUP2, hi_w, 4)]
    try:
        # posix_spawn, not fork + preexec_fn: safe in a process with threads (torch); every other fd
        # Python opened is close-on-exec, so the browser gets only these
        pid = os.posix_spawn(browser, [browser, *flags], dict(os.environ), file_actions=actions, setsid=True)
    except BaseException:
        os.close(cmd_w)
        os.close(ans_r)
        raise
    finally:
        os.close(hi_r)  # so that our reads end when the browser exits
        os.close(hi_w)
    return pid, cmd_w, ans_r


def _stop(pid: int, grace: float) -> None:
    """Wait up to ``grace`` seconds for the browser to exit, then kill its process group (its own session)."""
    end = time.monotonic() + grace
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() >= end:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            os.waitpid(pid, 0)
            return
        time.sleep(0.05)


def check_in_browser(html_path: str | Path, screenshot_path: str | Path, *, timeout: float = 60,
                     browser: str | None = None, width: int = 1280, max_height: int = 12000) -> dict:
    """Open ``html_path`` (as a file:// URL) in headless Chromium, screenshot it and collect console errors.

    The page is loaded at ``width`` CSS pixels; after its load event, events are recorded for another
    half second, then the whole page (at most ``max_height`` pixels tall) is saved as a PNG at
    ``screenshot_path`` (atomically).

    Returns:
        ``{"console_errors": [...], "console_warnings": [...], "title": <document.title>,
        "screenshot": <path>, "size": [width, height], "url": <file URL>}``; an error is an uncaught
        exception, a ``console.error`` / ``console.assert``, or an error entry of the browser's log.

    Raises:
        FileNotFoundError: no such page, or no browser (``browser``, default ``/usr/bin/chromium`` or
            ``chromium`` on the PATH).
        TimeoutError: the browser did not load and screenshot the page within ``timeout`` seconds.
        RuntimeError: the browser exited or refused a command (the message ends with its log's tail).
    """
    html_path, screenshot_path = Path(html_path).resolve(), Path(screenshot_path)
    if not html_path.is_file():
        raise FileNotFoundError(f"{html_path}: no such page")
    wanted = browser or (CHROMIUM if os.path.exists(CHROMIUM) else "chromium")
    browser = shutil.which(wanted)  # an absolute path (posix_spawn does not search the PATH)
    if browser is None:
        raise FileNotFoundError(f"no browser {wanted!r}: install Chromium with apt-get install chromium")
    url = html_path.as_uri()
    user_dir = tempfile.mkdtemp(prefix="nerfhw-chromium-")
    log = tempfile.TemporaryFile()
    pid = wfd = rfd = None
    done = False
    try:
        pid, wfd, rfd = _launch(browser, user_dir, log.fileno())
        dt = _DevTools(wfd, rfd, time.monotonic() + timeout)
        try:
            target = dt.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = dt.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                dt.call(f"{domain}.enable", session=session)
            dt.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1,
                                                           "mobile": False}, session)
            nav = dt.call("Page.navigate", {"url": url}, session)
            if nav.get("errorText"):
                raise RuntimeError(f"headless Chromium could not open {url}: {nav['errorText']}")
            dt.wait_event("Page.loadEventFired", session)
            dt.drain(0.5)
            metrics = dt.call("Page.getLayoutMetrics", session=session)
            content = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
            height = int(min(max(content.get("height", 900), 1), max_height))
            shot = dt.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                      "clip": {"x": 0, "y": 0, "width": width, "height": height,
                                                               "scale": 1}}, session)
            title = dt.call("Runtime.evaluate", {"expression": "document.title", "returnByValue": True},
                            session).get("result", {}).get("value")
            dt.drain(0.1)
        except RuntimeError as exc:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-8:]
            raise RuntimeError(f"{exc}; browser log: " + " | ".join(tail)) from None
        png = base64.b64decode(shot["data"])
        atomic_write(screenshot_path, lambda tmp: Path(tmp).write_bytes(png))
        try:
            dt.send("Browser.close")
        except OSError:
            pass
        done = True
        return {"console_errors": dt.errors, "console_warnings": dt.warnings, "title": title,
                "screenshot": screenshot_path, "size": [width, height], "url": url}
    finally:
        for fd in (wfd, rfd):
            if fd is not None:
                os.close(fd)  # the browser exits when its command pipe closes
        if pid is not None:
            _stop(pid, 10 if done else 0.5)  # a failed or hung browser is killed at once
        log.close()
        shutil.rmtree(user_dir, ignore_errors=True)
