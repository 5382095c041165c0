"""``inr()``: the ``make inr`` run, from the settings to the written results (``flows.inr``'s doc)."""

from __future__ import annotations

import time

from flows.inr.cells import run_cell
from flows.inr.fit import ImageData, fp_model
from flows.inr.plots import from_png, plot_histograms, plot_reconstructions, recon_path, to_png
from flows.inr.resume import done_cells, todo
from flows.inr.methods import LEGACY, Setting, setting_of
from flows.inr.settings import ABLATIONS, DEFAULT_BITS, InrSettings, parse_bits, run_dir
from flows.inr.stats import layer_statistics
from flows.inr.summary import build_summary, label, write_summary

__all__ = ["inr"]


def _shown(methods: dict[str, Setting], cells: dict, low: int) -> list[str]:
    """The methods of ``reconstructions.png``: all when at most four, else the best PTQ and QAT setting of
    uniform and of DHQ at the lowest B."""
    if len(methods) <= 4:
        return list(methods)
    shown = []
    for rotates in (False, True):
        for trained in (False, True):
            group = [m for m, st in methods.items() if st.rotates == rotates and st.trained == trained]
            if group:
                shown.append(max(group, key=lambda m: cells[f"{m}@{low}"]["psnr"]))
    return shown


def _figures(out, data, model, stats, fp: dict, fp_rec, bits, cells: dict, image: str, methods) -> None:
    """``histograms.png`` and ``reconstructions.png`` (ground truth, FP, the methods of ``_shown`` at the lowest B)."""
    plot_histograms(model, data.coords, stats, out / "histograms.png",
                    f"{image}: per-layer weights and activations before / after the Hadamard rotation (FP model)")
    low = min(bits)
    plot_reconstructions([("ground truth", data.image), (f"FP {fp['psnr']:.2f} dB", fp_rec)]
                         + [(f"{label(m)} {low}b {cells[f'{m}@{low}']['psnr']:.2f} dB",
                             from_png(recon_path(out, m, low))) for m in _shown(methods, cells, low)],
                         out / "reconstructions.png")


def _known(methods: dict[str, Setting], cells: dict) -> tuple[dict[str, Setting], bool]:
    """The run's methods plus those of cells kept from earlier runs (so that none is dropped), and whether
    any ablation is among them."""
    known = dict(methods)
    abl = False
    for key in cells:
        m = key.rpartition("@")[0]
        if m in ABLATIONS:
            abl = True
        elif m not in known:
            known[m] = setting_of(m)
    return known, abl


def inr(image: str = "camera", *, bits=DEFAULT_BITS, runs_root="runs", progress: bool = True,
        methods: dict[str, Setting] | None = None, ablations: bool | None = None, **settings) -> dict:
    """Run the experiment (``flows.inr``'s doc); writes ``runs/inr-<image>/`` and returns the summary.

    Args:
        image: a ``nerf.siren.IMAGES`` name.
        bits: the rows, ``parse_bits`` input (a "8,6,4,3" string or ints in [2, 16]).
        runs_root: the results folder; progress: tqdm bars.
        methods: the quantization settings, name -> ``flows.inr.methods.Setting`` (``methods.cross``);
            default the first table's four (``LEGACY``).
        ablations: run the one-side ablations (default: only with the default methods).
        settings: ``InrSettings`` fields (size, width, hidden_layers, steps, lr, finetune_steps,
            finetune_lr, scale_lr, seed, coord_bits).

    Resumes: the FP checkpoint is reused when its training settings match (and refused, with the field
    named, when they do not); cells of a previous ``summary.json`` with the same settings are reused,
    cells of other fine-tuning settings are recomputed.

    Raises:
        ValueError: an unknown image or setting, bad bits, a checkpoint of other settings.
    """
    from tqdm import tqdm

    from flows.inr.datapath import datapath_section

    t_start = time.perf_counter()
    cfg = InrSettings(image=image, **settings)
    bits = parse_bits(bits)
    out = run_dir(image, runs_root)
    data = ImageData(cfg)
    model, training = fp_model(cfg, data, out, progress)
    fp, fp_rec = data.metrics(model)
    stats = layer_statistics(model, data.coords)
    if ablations is None:
        ablations = methods is None
    methods = dict(LEGACY if methods is None else methods)
    cells = done_cells(out, cfg, log=tqdm.write)
    known, kept_ablations = _known(methods, cells)
    sections = {"datapath": datapath_section(model.shape, bits, data.height * data.width)}

    def summary(finished: bool) -> dict:
        return build_summary(cfg, data, model, training, fp, bits, cells, stats,
                             wall_seconds=time.perf_counter() - t_start, finished=finished, sections=sections,
                             methods=known, ablations=ablations or kept_ablations)

    names = [*methods, *(ABLATIONS if ablations else ())]
    for method, b in tqdm(todo(bits, cells, names), desc=f"inr {image}", unit="cell", disable=not progress):
        cells[f"{method}@{b}"], rec = run_cell(model, method, b, cfg, data, progress)
        to_png(rec, recon_path(out, method, b))
        write_summary(out, summary(False))  # resumable after every cell

    _figures(out, data, model, stats, fp, fp_rec, bits, cells, image, methods)
    s = summary(True)
    write_summary(out, s)
    return s
