"""The ``make inr`` results: the ``summary.json`` dict, its tables, and writing both."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from flows.inr.methods import LEGACY, Setting
from flows.inr.settings import ABLATIONS, LABELS, InrSettings
from flows.inr.stats import spread
from flows.report import Column, csv_text, markdown_table, write_json

__all__ = ["build_summary", "table", "write_summary", "label", "psnr_columns", "setting_rows"]


def _rows(bits: Sequence[int], cells: Mapping[str, dict], fp: dict, names: Sequence[str]) -> list[dict]:
    """One row per B: ``{"bits", "fp_psnr", <method>: cell + delta_psnr / delta_ssim vs FP}`` (done cells only)."""
    rows = []
    for b in bits:
        row = {"bits": b, "fp_psnr": fp["psnr"]}
        for m in names:
            c = cells.get(f"{m}@{b}")
            if c is not None:
                row[m] = {**c, "delta_psnr": round(c["psnr"] - fp["psnr"], 3),
                          "delta_ssim": round(c["ssim"] - fp["ssim"], 4)}
        rows.append(row)
    return rows


def build_summary(settings: InrSettings, data, model, training: dict, fp: dict, bits: Sequence[int],
                  cells: Mapping[str, dict], stats: list[dict], *, wall_seconds: float | None = None,
                  finished: bool = False, sections: Mapping[str, object] | None = None,
                  methods: Mapping[str, Setting] = LEGACY, ablations: bool = True) -> dict:
    """The ``summary.json`` dict (no I/O).

    Args:
        settings, data (``ImageData``: image shape), model (the FP ``Siren``), training (``fp_model``'s info),
        fp (FP metrics), bits (the rows), cells (``"<method>@<B>"`` -> cell dict: psnr dB, ssim, seconds),
        stats (``layer_statistics``), wall_seconds (this call's wall time), finished.
        sections: extra top-level sections merged in last (e.g. ``{"datapath": {...}}``).
        methods: the settings of the run, name -> ``flows.inr.methods.Setting`` (default the first table's four).
        ablations: whether the run has the one-side ablations.

    Returns:
        ``{"image", "size" [H, W], "channels", "settings", "model", "training", "fp", "methods", "bits",
        "rows": [{"bits", "fp_psnr", <method>: {"psnr", "ssim", "delta_psnr", "delta_ssim", "seconds"}}],
        "layer_stats", "layer_spread", "wall_seconds", "finished"}``; a method of a row is missing until done.
    """
    from quant.calibration import DEFAULT_PERCENTILE
    from quant.hadamard import padded_size

    rows = _rows(bits, cells, fp, [*methods, *(ABLATIONS if ablations else ())])
    summary = {
        "image": settings.image,
        "size": [data.height, data.width],
        "channels": data.channels,
        "settings": settings.to_dict(),
        "model": {"kind": "siren", "omega_0": model.omega_0, "width": settings.width,
                  "hidden_layers": settings.hidden_layers, "layers": model.shape,
                  "padded_in": [padded_size(i) for i, _ in model.shape],
                  "parameters": model.parameter_count()},
        "training": {k: v for k, v in training.items() if k != "history"},
        "fp": fp,
        "methods": {m: {"rotation": st.rotation, "calibration": st.calibration, "granularity": st.granularity,
                        "training": st.training, "label": label(m),
                        "finetune_steps": settings.finetune_steps if st.trained else 0,
                        "seconds": round(sum(r[m]["seconds"] for r in rows if m in r), 2)}
                    for m, st in methods.items()},
        "quantized": "every linear layer's weight and input activation at B bits, symmetric narrow range, per "
                     f"tensor (per output channel for the weights of the per-channel settings), except the first "
                     f"layer's input (the pixel coordinates) at coord_bits = {settings.coord_bits}; percentile "
                     f"calibration at the {DEFAULT_PERCENTILE}th percentile",
        "ablations": {m: {"rotate": r, "weights": w, "activations": a, "method": "min-max PTQ; the other side FP"}
                      for m, (r, w, a) in ABLATIONS.items()} if ablations else {},
        "bits": list(bits),
        "rows": rows,
        "layer_stats": stats,
        "layer_spread": spread(stats),
        "wall_seconds": None if wall_seconds is None else round(wall_seconds, 1),
        "finished": finished,
    }
    summary.update(sections or {})
    return summary


def label(method: str) -> str:
    """A method's column label: the first table's names, else its setting's (``Setting.label``)."""
    from flows.inr.methods import setting_of

    return LABELS.get(method) or setting_of(method).label


def _psnr(method: str, csv: bool = True) -> Column:
    return Column(lambda r: r[method]["psnr"] if method in r else None, f"psnr_{method}" if csv else None,
                  f"{label(method)} (dB)", "{:.2f}".format)


def psnr_columns(methods) -> tuple[Column, ...]:
    """The PSNR table's columns: bits, FP, then every method of ``methods`` (names), dB."""
    return (Column("bits", "bits", "bits"), Column("fp_psnr", "psnr_fp", "FP (dB)", "{:.2f}".format),
            *(_psnr(m) for m in methods))


#: The first table's PSNR columns: bits, FP, then the four legacy methods (dB).
PSNR_COLUMNS = psnr_columns(LEGACY)


def _datapath_markdown(dp: Mapping) -> str:
    """Cycles per vector of every layer at each activation width, and the image's time layer by layer."""
    bits = list(dp["per_bits"])
    columns = [Column("layer", header="layer"), Column("nm", header="n x m")]
    columns += [Column(a, header=f"a={a}") for a in bits]
    rows = [{"layer": k, "nm": f"{layer['n']} x {layer['m']}",
             **{a: layer["per_bits"][a]["cycles_per_vector"] for a in bits}} for k, layer in enumerate(dp["layers"])]
    rows.append({"layer": f"image, layer by layer (ms at {dp['array']['clock_mhz']} MHz)", "nm": "",
                 **{a: f"{dp['per_bits'][a]['layer_by_layer_ms']:.1f}" for a in bits}})
    return (f"Hadamard datapath cycles per vector (T), {dp['array']['rows']} x {dp['array']['cols']} array "
            f"({dp['preset']}), from sim.tlm.hadamard:\n\n" + markdown_table(rows, columns))


SETTING_COLUMNS = (Column("rotation", header="rotation"), Column("calibration", header="calibration"),
                   Column("granularity", header="weight steps"), Column("training", header="training"))


def setting_rows(methods: Mapping[str, Mapping], psnr: Callable[[str, int], float | None],
                 bits: Sequence[int]) -> tuple[list[dict], Column, ...]:
    """One row per setting (its fields, then the PSNR at each B from ``psnr(method, bits)``), and the
    columns; the best PSNR of each B is in bold."""
    rows = [{"method": m, **{k: st[k] for k in ("rotation", "calibration", "granularity", "training")},
             **{b: psnr(m, b) for b in bits}} for m, st in methods.items()]
    best = {b: max((r[b] for r in rows if r[b] is not None), default=None) for b in bits}

    def fmt(b):
        return lambda v: f"**{v:.2f}**" if v == best[b] else f"{v:.2f}"

    return rows, (*SETTING_COLUMNS, *(Column(b, header=f"W{b}A{b} (dB)", fmt=fmt(b)) for b in bits))


def _long_markdown(summary: Mapping) -> str:
    """The PSNR of every setting (rows) at every B (columns), the best of each B in bold."""
    by_bits = {r["bits"]: r for r in summary["rows"]}
    rows, columns = setting_rows(summary["methods"], lambda m, b: by_bits[b].get(m, {}).get("psnr"),
                                 summary["bits"])
    return (f"FP {summary['fp']['psnr']:.2f} dB; PSNR (dB) of every setting, the best of each bitwidth in bold:\n\n"
            + markdown_table(rows, columns))


def table(summary: Mapping) -> tuple[str, str]:
    """(markdown, csv) of PSNR (dB) per bits (rows) and method (columns: FP, then the run's methods).

    The Markdown adds the ablations' PSNR (those present) and, with a ``datapath`` section, its cycles.
    """
    rows = summary["rows"]
    columns = psnr_columns(summary["methods"])
    wide = set(summary["methods"]) <= set(LEGACY)
    parts = [markdown_table(rows, columns) if wide else _long_markdown(summary)]
    abl = [m for m in ABLATIONS if any(m in r for r in rows)]
    if abl:
        parts.append(markdown_table(rows, [Column("bits", header="bits"), *(_psnr(m, csv=False) for m in abl)]))
    if summary.get("datapath"):
        parts.append(_datapath_markdown(summary["datapath"]))
    return "\n".join(parts), csv_text(rows, columns)


def write_summary(out: str | Path, summary: Mapping) -> None:
    """Write ``summary.json``, ``table.md`` and ``table.csv`` into ``out`` (atomically)."""
    from flows.report import write_table

    out = Path(out)
    write_json(out / "summary.json", summary)
    md, _ = table(summary)
    write_table(out, summary["rows"], psnr_columns(summary["methods"]), markdown=md)
