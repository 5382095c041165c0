"""``make acaq`` and ``make acaq-table``: A-CAQ learned bitwidths against PTQ and LSQ+ on a trained field.

``acaq_run`` fine-tunes the field of ``make train SCENE= PRESET=`` with A-CAQ (``quant.acaq``, MDL or
MGL) and writes ``runs/acaq-<scene>-<preset>-<mdl|mglP>/``: ``policy.yaml`` (the learned bits, loadable
by ``make quantize POLICY=``, ``make search`` and ``make verilog POLICY=``), ``checkpoint.pt`` (the
fine-tuned quantized model; resumable), ``summary.json``, ``bits.png`` (the learned bits per component,
A-CAQ's Fig. 7) and ``test/`` renders. ``lsq_run`` is the LSQ+ baseline at fixed bits
(``runs/lsq-<scene>-<preset>-<mode>-<B>b/``), ``acaq_table`` the paper's Table 4 rows on one scene
(``runs/acaq-table-<scene>-<preset>/``).

Every row reports, on the test views: PSNR (dB), SSIM, FQR over our components (each hash level one)
and over A-CAQ's 15 (``quant.costs.fqr_acaq``), TBitOps of an 800x800 frame (``quant.costs.bitops``,
the samples per ray measured with the quantized field), storage (``quant.costs.model_bytes``, MB =
10^6 bytes) and the latency of one 800x800 frame on each accelerator preset (``sim.perf.frame_perf``; a
preset with the tables in DRAM costs the samples of the first validation view rendered at 800x800 by the
full-precision field, exactly; a policy the engines cannot run, e.g. a component above their widths,
gets the reason instead of a number).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from flows.report import Column, pyplot, save_figure, write_json, write_table
from flows.runs import cached_workload, scene_name, train_dir

__all__ = ["acaq_run", "lsq_run", "finalise_run", "acaq_table", "matching_bits", "parse_target", "run_folder",
           "frame_samples", "require_finished", "TABLE_COLUMNS", "DEFAULT_ITERATIONS", "TABLE_TARGETS"]

#: Fine-tuning iterations of ``make acaq`` (the paper: 3,000 on a GPU; about 5 minutes of 2 CPU cores
#: for the tiny preset on lego at ~0.45 s per iteration).
DEFAULT_ITERATIONS = 600
#: MGL targets of ``make acaq-table`` in PSNR dB: the paper's 10^-3 (30 dB) and, as its 32 dB target is
#: above our tiny models' full precision, 28 dB.
TABLE_TARGETS = (30.0, 28.0)
#: Frame size of the latency and BitOps figures (H, W).
FRAME = (800, 800)


def parse_target(value: float) -> float:
    """An MGL target -> its MSE: a number in (0, 1) is an MSE, a number >= 1 a PSNR in dB.

    Raises:
        ValueError: not a finite positive number (naming it).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"target must be a PSNR in dB (>= 1) or an MSE in (0, 1), not {value!r}")
    return float(value) if value < 1 else 10.0 ** (-float(value) / 10.0)


def run_folder(kind: str, scene: str, preset: str, mode: str, *, target_mse: float | None = None,
               bits: int | None = None, runs_root="runs", suffix: str = "") -> Path:
    """``runs/acaq-<scene>-<preset>-<mdl|mgl<dB>><suffix>`` or ``runs/lsq-<scene>-<preset>-<mode>-<B>b<suffix>``
    (``suffix``: e.g. a grid's short budget or seed, so that differently-set runs never share a folder)."""
    tag = mode if target_mse is None else f"mgl{-10 * math.log10(target_mse):.4g}"
    name = f"{scene_name(scene)}-{preset}-{tag}"
    return Path(runs_root) / (f"acaq-{name}{suffix}" if kind == "acaq" else f"lsq-{name}-{bits}b{suffix}")


def _field(scene: str, preset: str, runs_root, progress: bool):
    from flows.quantize import TrainedField

    return TrainedField(scene, preset, runs_root=runs_root, progress=progress)


def _workload(field, runs_root, size: int = FRAME[0]) -> np.ndarray:
    """Samples of validation view 0 at size x size rendered by the full-precision field (``cached_workload``,
    kept in the training folder); a smaller size stands for the 800x800 frame (``latency`` scales it)."""
    field.model.clear_quantizers()
    return cached_workload(field, field.split("val"), 0, size,
                           train_dir(field.scene, field.preset, runs_root) / f"workload-val0-{size}.npy")


def frame_samples(points: int, size: int) -> int:
    """Samples of the 800x800 frame when ``points`` were rendered at size x size (at least ``points``)."""
    return max(points, round(points * FRAME[0] * FRAME[1] / size**2))


def require_finished(s: dict) -> dict:
    """``s``, the summary of a resumable fine-tuning, if it finished; else RuntimeError saying how to resume."""
    if not s.get("finished"):
        raise RuntimeError(f"{s.get('out')}: stopped at iteration {s.get('iterations')}; run again to resume")
    return s


def latency(policy, arch, workload: np.ndarray, presets=None, *, size: int = FRAME[0]) -> dict:
    """Frame latency of ``policy`` on each accelerator preset: {name: {latency_ms, cycles, bottleneck} or
    {error}}. ``workload``: the samples of one view rendered at size x size; the 800x800 frame has
    ``len(workload) (800 / size)^2`` of them (exact at size 800; ``sim.perf.frame_perf`` scales a subset)."""
    from hw.params import ConfigError
    from sim.perf import ACCEL_DIR, frame_perf, load_accelerator

    names = presets or sorted(p.stem for p in Path(ACCEL_DIR).glob("*.yaml"))
    out = {}
    for name in names:
        accel = load_accelerator(name)
        try:
            samples = frame_samples(len(workload), size)
            p = frame_perf(accel, arch, policy, samples=samples,
                           workload=workload if accel.memory is not None else None)
        except ConfigError as exc:
            out[name] = {"error": str(exc)}
            continue
        out[name] = {"latency_ms": round(p.latency_ms, 4), "cycles": p.cycles, "bottleneck": p.bottleneck}
    return out


def _row(field, label: str, policy, metrics: dict, workload, fp_metrics: dict | None = None, *,
         size: int = FRAME[0]) -> dict:
    from quant.costs import bitops, fqr_acaq, model_bytes
    from quant.policy import fqr

    arch = field.model.arch
    pixels = field.test_data.height * field.test_data.width
    spr = metrics["samples_evaluated_per_view"] / pixels
    row = {"method": label, "psnr": round(metrics["psnr"], 3), "ssim": round(metrics["ssim"], 4),
           "fqr": round(fqr(policy), 4), "fqr_acaq": round(fqr_acaq(policy, arch), 4),
           "tbitops": round(bitops(policy, arch, samples_per_ray=spr, frame=FRAME) / 1e12, 4),
           "storage_mb": round(model_bytes(policy, arch) / 1e6, 4), "samples_per_ray": round(spr, 3),
           "latency": latency(policy, arch, workload, size=size), "bits": dict(policy)}
    if fp_metrics is not None:
        row["psnr_fp"] = round(fp_metrics["psnr"], 3)
    return row


def _write_engines(out: Path, policy, arch, hw: str = "default") -> str:
    """``engines.yaml`` beside ``policy.yaml`` (the ``hw`` preset's engines sized for the policy, as a
    search writes it), so that ``make verilog POLICY=`` takes the run; or why the engines cannot hold it."""
    from hw.params import ConfigError, save_config
    from sim.mapping import engines_for_policy, load_accelerator

    try:
        engines = engines_for_policy(load_accelerator(hw), arch, policy)
    except ConfigError as exc:
        return f"no engines.yaml: {exc}"
    save_config(out / "engines.yaml", engines)
    return f"engines.yaml ({hw} preset)"


def _bits_figure(summary: dict, path: Path) -> None:
    """Learned bits per component (A-CAQ's Fig. 7), the soft bits beside the hard ones."""
    plt = pyplot()
    names = list(summary["bits"])
    fig, ax = plt.subplots(figsize=(max(8, 0.33 * len(names)), 4))
    x = np.arange(len(names))
    ax.bar(x, [summary["bits"][n] for n in names], color="tab:blue", label="B (hard)")
    ax.plot(x, [summary["soft_bits"][n] for n in names], "k.", label="b (soft)")
    ax.axhline(summary["fqr_acaq"], color="tab:red", ls="--", lw=1, label=f"FQR (A-CAQ 15) {summary['fqr_acaq']:.2f}")
    ax.set_xticks(x, names, rotation=90, fontsize=7)
    ax.set_ylabel("bits")
    ax.set_title(f"A-CAQ {summary['mode'].upper()} learned bits, {scene_name(summary['scene'])} "
                 f"({summary['psnr']:.2f} dB)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def _finetuned(kind: str, scene: str, preset: str, mode: str, *, target_mse, eps: float, bits: int | None,
               iterations: int, runs_root, progress: bool, checkpoint_seconds: float = 60.0,
               handle_signals: bool = True, until: int | None = None, workload_size: int = FRAME[0],
               fp: dict | None = None, out: Path | None = None, label: str | None = None, suffix: str = "",
               **settings) -> dict:
    from quant.acaq import QATSettings, finetune, learned_policy, baseline_policy
    from quant.policy import QuantPolicy

    field = _field(scene, preset, runs_root, progress)
    # the training preset's samples per batch (tiny: 2^15), as training
    default = QATSettings.model_fields["batch_samples"].default
    settings.setdefault("batch_samples", field.settings.get("batch_samples") or default)
    settings = QATSettings(method="acaq" if kind == "acaq" else "lsq+", mode=mode, target=target_mse,
                           eps=eps, bits=bits if bits is not None else 8, iterations=iterations, **settings)
    out = out or run_folder(kind, scene, preset, mode, target_mse=target_mse, bits=bits, runs_root=runs_root,
                            suffix=suffix)
    fp = fp or field.full_precision()  # the table measures the full-precision field once for all its rows
    workload = _workload(field, runs_root, workload_size)
    t0 = time.perf_counter()
    r = finetune(field, settings, out, background=field.settings.get("background", "random"),
                 checkpoint_seconds=checkpoint_seconds, until=until, progress=progress, handle_signals=handle_signals)
    if not r["finished"]:
        return {"finished": False, "iterations": r["iterations"], "interrupted": r["interrupted"], "out": str(out)}
    quantizers = {k.replace("__", "."): q for k, q in field.model.quant.items()}
    if kind == "acaq":
        policy = learned_policy(quantizers, field.levels)
    else:
        policy = (QuantPolicy(settings.policy, field.levels) if settings.policy is not None
                  else baseline_policy(bits, field.levels))
    metrics = field.test_metrics(out_dir=out / "test", progress=progress)
    label = label or (f"A-CAQ {mode.upper()}" if kind == "acaq" else f"LSQ+ {bits}b")
    row = _row(field, label, policy, metrics, workload, fp, size=workload_size)
    summary = {"scene": field.scene, "preset": preset, "kind": kind, "mode": mode, **row,
               "target_mse": target_mse,
               "target_psnr": None if target_mse is None else round(-10 * math.log10(target_mse), 3),
               "l_metric": r["l_metric"], "loss_fp_train": r["loss_fp"], "psnr_train_fp": r["psnr_train_fp"],
               "ssim_fp": round(fp["ssim"], 4), "settings": settings.model_dump(), "iterations": r["iterations"],
               "finetune_seconds": r["seconds"], "wall_seconds": round(time.perf_counter() - t0, 1),
               "test_views": metrics["views"], "checkpoint": str(out / "checkpoint.pt"),
               "history": r["history"], "finished": True}
    if kind == "acaq":
        summary["soft_bits"] = {n: round(q.soft_bits.item(), 4) for n, q in quantizers.items()}
    policy.save(out / "policy.yaml")
    summary["engines"] = _write_engines(out, policy, field.model.arch)
    write_json(out / "summary.json", summary)
    if kind == "acaq":
        _bits_figure(summary, out / "bits.png")
    return summary


def acaq_run(scene: str, preset: str = "tiny", mode: str = "mdl", *, target: float | None = None, eps: float = 1e-3,
             iterations: int = DEFAULT_ITERATIONS, runs_root="runs", progress: bool = True, **kw) -> dict:
    """A-CAQ on a trained field (module doc); returns the summary (``finished`` False if stopped early).

    Args:
        target: MGL only: a PSNR in dB (>= 1) or an MSE (< 1); ``parse_target``.
        eps: the bit penalty's weight, >= 0.

    Raises:
        ValueError / quant.acaq.QATError: mode not mdl/mgl, a target with MDL or none with MGL, eps < 0,
            a target above the full-precision model's training PSNR, a checkpoint of other settings.
        FileNotFoundError: no trained field (the message gives the ``make train`` command).
    """
    check_acaq_args(mode, target, eps)
    return _finetuned("acaq", scene, preset, mode, target_mse=None if target is None else parse_target(target), eps=eps,
                      bits=None, iterations=iterations, runs_root=runs_root, progress=progress, **kw)


def lsq_run(scene: str, preset: str, mode: str, bits: int, *, iterations: int = DEFAULT_ITERATIONS, runs_root="runs",
            progress: bool = True, **kw) -> dict:
    """The LSQ+ baseline at ``bits`` (``quant.acaq.baseline_policy``) with ``mode``'s learning rate."""
    if mode not in ("mdl", "mgl"):
        raise ValueError(f"mode must be mdl or mgl, not {mode!r}")
    return _finetuned("lsq", scene, preset, mode, target_mse=None, eps=1e-3, bits=bits, iterations=iterations,
                      runs_root=runs_root, progress=progress, **kw)


def finalise_run(scene: str, preset: str, policy, out: Path, *, label: str, mode: str = "mgl",
                 iterations: int = DEFAULT_ITERATIONS, runs_root="runs", progress: bool = True, **kw) -> dict:
    """A fixed mixed-precision ``policy`` fine-tuned by LSQ+ with ``mode``'s learning rate for ``iterations``
    (the budget the LSQ+ baselines get) into ``out`` (resumable); the summary as ``lsq_run``'s."""
    return _finetuned("lsq", scene, preset, mode, target_mse=None, eps=1e-3, bits=None, iterations=iterations,
                      runs_root=runs_root, progress=progress, out=Path(out), label=label, policy=dict(policy), **kw)


def check_acaq_args(mode: str, target, eps) -> None:
    """The rules between ``make acaq``'s options, before any work (ValueError naming the option and value)."""
    if mode not in ("mdl", "mgl"):
        raise ValueError(f"mode must be mdl or mgl, not {mode!r}")
    if mode == "mdl" and target is not None:
        raise ValueError(f"target {target!r}: MDL takes no target (its L_metric is the full-precision loss); "
                         "use mode mgl")
    if mode == "mgl" and target is None:
        raise ValueError("mode mgl needs a target: a PSNR in dB (e.g. 30) or an MSE (e.g. 1e-3)")
    if target is not None:
        parse_target(target)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0, not {eps!r}")


def _ptq_row(scene: str, preset: str, bits: int, runs_root, progress: bool, workload_size: int, fp: dict) -> dict:
    from quant.acaq import baseline_policy
    from quant.ptq import ptq

    field = _field(scene, preset, runs_root, progress)
    workload = _workload(field, runs_root, workload_size)
    policy = baseline_policy(bits, field.levels)
    ptq(field.model, field.occupancy, field.train_data, policy, n_samples=field.n_samples)
    metrics = field.test_metrics(progress=progress)
    return _row(field, f"PTQ {bits}b", policy, metrics, workload, fp, size=workload_size)


def _lat(row: dict, preset: str = "default"):
    lat = row.get("latency", {}).get(preset, {})
    return lat.get("latency_ms")


#: Columns of the table: the paper's Table 4 columns plus our FQR and the default accelerator's latency.
TABLE_COLUMNS = [
    Column("group", "group", "objective"),
    Column("method", "method", "method"),
    Column("fqr_acaq", "fqr_acaq", "FQR (15)", lambda v: f"{v:.2f}"),
    Column("fqr", "fqr", "FQR (ours)", lambda v: f"{v:.2f}"),
    Column("psnr", "psnr_db", "PSNR (dB)", lambda v: f"{v:.2f}"),
    Column("ssim", "ssim", "SSIM", lambda v: f"{v:.4f}"),
    Column("tbitops", "tbitops", "TBitOps", lambda v: f"{v:.3f}"),
    Column("storage_mb", "storage_mb", "storage (MB)", lambda v: f"{v:.3f}"),
    Column(_lat, "latency_ms_default", "latency (ms, default)", lambda v: f"{v:.1f}"),
]


def matching_bits(fqr15: float, arch) -> int:
    """The baseline bits B in [2, 16] whose ``baseline_policy`` FQR (15) is nearest ``fqr15`` (ties: more bits).

    The reference code's baselines are labelled by that FQR (uniform 6 / 5 / 4 bits: 7.6 / 6.6 / 5.6),
    which is what A-CAQ's FQR is compared with.
    """
    from quant.acaq import baseline_policy
    from quant.costs import fqr_acaq

    return min(range(16, 1, -1), key=lambda b: abs(fqr_acaq(baseline_policy(b, arch["levels"]), arch) - fqr15))


def acaq_table(scene: str, preset: str = "tiny", *, targets=TABLE_TARGETS, iterations: int = DEFAULT_ITERATIONS,
               runs_root="runs", progress: bool = True, workload_size: int = FRAME[0], **settings) -> dict:
    """A-CAQ's Table 4 rows on one scene: full precision; MDL: PTQ / LSQ+ at 8 bits vs A-CAQ; for each MGL
    target: A-CAQ, then PTQ / LSQ+ at the bits whose FQR (15) is nearest its own (``matching_bits``). Each
    run is a resumable ``acaq_run`` / ``lsq_run`` folder, so a re-run only evaluates. Writes ``table.md``,
    ``table.csv`` and ``table.json`` into ``runs/acaq-table-<scene>-<preset>/``; returns ``{"rows": [...], ...}``.
    ``settings``: further ``quant.acaq.QATSettings`` fields for every fine-tuning (e.g. ``calibration_rays``)."""
    from quant.policy import FULL_PRECISION_BITS, QuantPolicy

    for t in targets:
        parse_target(t)
    out = Path(runs_root) / f"acaq-table-{scene_name(scene)}-{preset}"
    t0 = time.perf_counter()
    field = _field(scene, preset, runs_root, progress)
    fp = field.full_precision()
    arch = field.model.arch
    fp_policy = QuantPolicy.uniform(FULL_PRECISION_BITS, field.levels)
    workload = _workload(field, runs_root, workload_size)
    rows = [{"group": "full precision", **_row(field, "FP (32b)", fp_policy, fp, workload, size=workload_size)}]
    del field
    kw = dict(iterations=iterations, runs_root=runs_root, progress=progress, workload_size=workload_size, fp=fp,
              handle_signals=False, **settings)

    rows.append({"group": "MDL", **_ptq_row(scene, preset, 8, runs_root, progress, workload_size, fp)})
    rows.append({"group": "MDL", **require_finished(lsq_run(scene, preset, "mdl", 8, **kw))})
    rows.append({"group": "MDL", **require_finished(acaq_run(scene, preset, "mdl", **kw))})
    for t in targets:
        group = f"MGL {t:g} dB" if t >= 1 else f"MGL MSE {t:g}"
        a = require_finished(acaq_run(scene, preset, "mgl", target=t, **kw))
        b = matching_bits(a["fqr_acaq"], arch)
        rows.append({"group": group, **_ptq_row(scene, preset, b, runs_root, progress, workload_size, fp)})
        rows.append({"group": group, **require_finished(lsq_run(scene, preset, "mgl", b, **kw))})
        rows.append({"group": group, **a})
    keep = ("group", "method", "psnr", "ssim", "fqr", "fqr_acaq", "tbitops", "storage_mb", "latency", "bits",
            "samples_per_ray", "psnr_fp")
    rows = [{k: r[k] for k in keep if k in r} for r in rows]
    write_table(out, rows, TABLE_COLUMNS)
    result = {"scene": scene, "preset": preset, "targets": list(targets), "iterations": iterations,
              "frame": list(FRAME), "rows": rows, "wall_seconds": round(time.perf_counter() - t0, 1)}
    write_json(out / "table.json", result)
    return result
