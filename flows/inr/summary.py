"""The ``make inr`` results: the ``summary.json`` dict, its tables, and writing both."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from flows.inr.settings import ABLATIONS, LABELS, METHODS, InrSettings
from flows.inr.stats import spread
from flows.report import Column, csv_text, markdown_table, write_json

__all__ = ["build_summary", "table", "write_summary"]


def _rows(bits: Sequence[int], cells: Mapping[str, dict], fp: dict) -> list[dict]:
    """One row per B: ``{"bits", "fp_psnr", <method>: cell + delta_psnr / delta_ssim vs FP}`` (done cells only)."""
    rows = []
    for b in bits:
        row = {"bits": b, "fp_psnr": fp["psnr"]}
        for m in (*METHODS, *ABLATIONS):
            c = cells.get(f"{m}@{b}")
            if c is not None:
                row[m] = {**c, "delta_psnr": round(c["psnr"] - fp["psnr"], 3),
                          "delta_ssim": round(c["ssim"] - fp["ssim"], 4)}
        rows.append(row)
    return rows


def build_summary(settings: InrSettings, data, model, training: dict, fp: dict, bits: Sequence[int],
                  cells: Mapping[str, dict], stats: list[dict], *, wall_seconds: float | None = None,
                  finished: bool = False, sections: Mapping[str, object] | None = None) -> dict:
    """The ``summary.json`` dict (no I/O).

    Args:
        settings, data (``ImageData``: image shape), model (the FP ``Siren``), training (``fp_model``'s info),
        fp (FP metrics), bits (the rows), cells (``"<method>@<B>"`` -> cell dict: psnr dB, ssim, seconds),
        stats (``layer_statistics``), wall_seconds (this call's wall time), finished.
        sections: extra top-level sections merged in last (e.g. ``{"datapath": {...}}``).

    Returns:
        ``{"image", "size" [H, W], "channels", "settings", "model", "training", "fp", "methods", "bits",
        "rows": [{"bits", "fp_psnr", <method>: {"psnr", "ssim", "delta_psnr", "delta_ssim", "seconds"}}],
        "layer_stats", "layer_spread", "wall_seconds", "finished"}``; a method of a row is missing until done.
    """
    from quant.hadamard import padded_size

    rows = _rows(bits, cells, fp)
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
        "methods": {m: {"rotate": r, "finetune_steps": settings.finetune_steps if t else 0,
                        "init": "min-max (quant.quantizers.calibrate)",
                        "seconds": round(sum(r[m]["seconds"] for r in rows if m in r), 2)}
                    for m, (r, t) in METHODS.items()},
        "quantized": "every linear layer's weight and input activation at B bits, symmetric narrow range, per "
                     f"tensor, except the first layer's input (the pixel coordinates) at coord_bits = "
                     f"{settings.coord_bits}",
        "ablations": {m: {"rotate": r, "weights": w, "activations": a, "method": "min-max PTQ; the other side FP"}
                      for m, (r, w, a) in ABLATIONS.items()},
        "bits": list(bits),
        "rows": rows,
        "layer_stats": stats,
        "layer_spread": spread(stats),
        "wall_seconds": None if wall_seconds is None else round(wall_seconds, 1),
        "finished": finished,
    }
    summary.update(sections or {})
    return summary


def _psnr(method: str, csv: bool = True) -> Column:
    return Column(lambda r: r[method]["psnr"] if method in r else None, f"psnr_{method}" if csv else None,
                  f"{LABELS[method]} (dB)", "{:.2f}".format)


#: The PSNR table: bits, FP, then every method (dB).
PSNR_COLUMNS = (Column("bits", "bits", "bits"), Column("fp_psnr", "psnr_fp", "FP (dB)", "{:.2f}".format),
                *(_psnr(m) for m in METHODS))


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


def table(summary: Mapping) -> tuple[str, str]:
    """(markdown, csv) of PSNR (dB) per bits (rows) and method (columns: FP, then ``METHODS``).

    The Markdown adds the ablations' PSNR (those present) and, with a ``datapath`` section, its cycles.
    """
    rows = summary["rows"]
    parts = [markdown_table(rows, PSNR_COLUMNS)]
    abl = [m for m in ABLATIONS if any(m in r for r in rows)]
    if abl:
        parts.append(markdown_table(rows, [Column("bits", header="bits"), *(_psnr(m, csv=False) for m in abl)]))
    if summary.get("datapath"):
        parts.append(_datapath_markdown(summary["datapath"]))
    return "\n".join(parts), csv_text(rows, PSNR_COLUMNS)


def write_summary(out: str | Path, summary: Mapping) -> None:
    """Write ``summary.json``, ``table.md`` and ``table.csv`` into ``out`` (atomically)."""
    from flows.report import write_table

    out = Path(out)
    write_json(out / "summary.json", summary)
    md, _ = table(summary)
    write_table(out, summary["rows"], PSNR_COLUMNS, markdown=md)
