"""``make compress``: rate-distortion of compressed radiance fields with real bitstreams.

``runs/compress-<scene>-<preset>-<model>/`` holds one bitstream per point (``bitstreams/``), one JSON per
point (``points/``, written when the point is finished, so a re-run skips it), ``rd.md`` (the table),
``rd.png`` (PSNR against file size) and ``summary.json``. Every PSNR / SSIM is measured on the model
decoded from its file alone. Points:

- TensoRF (``model="tensorf"``): float32 parameters (uncompressed), uniform ``bits`` quantization of the
  planes through zstd (``quant.plane_zstd``), ECTensoRF at each lambda (``quant.ectensorf``), and at
  ``ablation_lambda`` ECTensoRF without masks and without importance weights.
- Instant-NGP (``model="ngp"``): float32 parameters, and per policy (uniform ``bits`` and any policy
  files) the PTQ-quantized model with its hash-table codes range-coded under a learned entropy model
  (``quant.table_codec``), beside the same codes through zstd.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import time
from pathlib import Path

import numpy as np

from common.atomic import atomic_write_text, clean_stale
from flows.runs import scene_name, train_command, train_dir

__all__ = ["compress_flow", "compress_dir", "DEFAULT_LAMBDAS", "MODELS"]

MODELS = ("tensorf", "ngp")
DEFAULT_LAMBDAS = (0.003, 0.01, 0.03, 0.1)
DEFAULT_BITS = (8, 6, 4)


def compress_dir(scene: str, preset: str, model: str, runs_root="runs") -> Path:
    return Path(runs_root) / f"compress-{scene_name(scene)}-{preset}-{model}"


def check_lambdas(lambdas) -> tuple[float, ...]:
    """Raises ValueError naming the value when a lambda is not a finite number > 0."""
    out = []
    for lam in lambdas:
        if not (isinstance(lam, (int, float)) and math.isfinite(lam) and lam > 0):
            raise ValueError(f"lambdas: every lambda must be a number > 0, not {lam!r}")
        out.append(float(lam))
    if not out:
        raise ValueError("lambdas: give at least one lambda")
    return tuple(out)


def _evaluate(model, occ, test, n_samples: int, every: int) -> dict:
    from nerf.render import evaluate

    m = evaluate(model, occ, test, n_samples=n_samples, every=every, progress=False)
    return {"psnr": round(m["psnr"], 3), "ssim": round(m["ssim"], 4), "views": m["views"]}


def compress_flow(scene: str, *, model: str = "tensorf", preset: str = "tiny", lambdas=DEFAULT_LAMBDAS,
                  bits=DEFAULT_BITS, ablation_lambda: float | None = None, iterations: int | None = None,
                  recon_iterations: int | None = None,
                  policies=(), runs_root="runs", progress: bool = True, seed: int = 0,
                  handle_signals: bool = True) -> dict:
    """Run (or resume) the rate-distortion study; returns the summary (also ``summary.json``).

    Args:
        model: "tensorf" or "ngp"; the field of ``make train SCENE=<scene> PRESET=<preset> [MODEL=tensorf]``.
        lambdas: ECTensoRF's rate weights (> 0; per bit per feature parameter). bits: baseline bitwidths.
        ablation_lambda: lambda of the ablations (default: the median lambda); iterations: ECTensoRF steps.
        policies: policy YAML files (Instant-NGP) coded beside the uniform ones.

    Raises:
        ValueError: unknown model, a lambda <= 0, bits outside 2..8 (each named).
        FileNotFoundError: no finished training run (the message names the ``make train`` command).
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, not {model!r}")
    lambdas = check_lambdas(lambdas)
    for b in bits:
        if not (isinstance(b, int) and 2 <= b <= 8):
            raise ValueError(f"bits: every bitwidth must be an integer in 2..8, not {b!r}")
    if iterations is not None and (not isinstance(iterations, int) or iterations < 1):
        raise ValueError(f"iterations must be an integer >= 1, not {iterations!r}")
    if recon_iterations is not None and (not isinstance(recon_iterations, int) or recon_iterations < 0):
        raise ValueError(f"recon_iterations must be an integer >= 0, not {recon_iterations!r}")
    ckpt = train_dir(scene, preset, runs_root, model=model) / "checkpoint.pt"
    summary_path = ckpt.parent / "summary.json"
    if not summary_path.exists():
        raise FileNotFoundError(f"no finished {model} training run in {ckpt.parent}: run "
                                f"`{train_command(scene, preset, model=model)}` first")
    policy_files = [Path(p) for p in policies]
    for p in policy_files:
        if not p.exists():
            raise FileNotFoundError(f"policies: no such policy file {str(p)!r}")
    out = compress_dir(scene, preset, model, runs_root)
    (out / "points").mkdir(parents=True, exist_ok=True)
    (out / "bitstreams").mkdir(parents=True, exist_ok=True)
    if model == "tensorf":
        steps = {k: v for k, v in (("iterations", iterations), ("recon_iterations", recon_iterations)) if v is not None}
        points = _tensorf_points(scene, ckpt, out, lambdas, bits, ablation_lambda, steps, progress, seed,
                                 handle_signals)
    else:
        points = _ngp_points(scene, ckpt, out, bits, policy_files, progress, seed)
    if points is None:
        return {"finished": False, "interrupted": True}
    summary = {"scene": scene, "preset": preset, "model": model, "points": points, "finished": True,
               "trained": json.loads(summary_path.read_text())}
    _write_table(out, summary)
    _plot(out, summary)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _round_trip(path: Path, encode, decode):
    """``encode(path)`` then ``decode(path)``, each timed: (encode's info, decode's result, the point's fields
    ``encode_seconds``, ``decode_seconds``, ``file``)."""
    t0 = time.perf_counter()
    info = encode(path)
    enc = time.perf_counter() - t0
    t0 = time.perf_counter()
    decoded = decode(path)
    dec = time.perf_counter() - t0
    return info, decoded, {"encode_seconds": round(enc, 3), "decode_seconds": round(dec, 3), "file": str(path)}


def _cached(out: Path, label: str, make) -> dict | None:
    path = out / "points" / f"{label}.json"
    if path.exists():
        return json.loads(path.read_text())
    point = make()
    if point is None:
        return None
    point["label"] = label
    text = json.dumps(point, indent=2) + "\n"
    atomic_write_text(path, text)
    return json.loads(text)  # as a resumed run reads it back


def _tensorf_points(scene, ckpt, out, lambdas, bits, ablation_lambda, steps, progress, seed, handle_signals):
    import torch

    from common.atomic import atomic_write
    from common.signals import deferred_signals
    from nerf.data import load_scene
    from nerf.train import model_from_checkpoint, test_stride
    from quant.ectensorf import CompressSettings, compress_tensorf, decode_tensorf, encode_tensorf
    from quant.plane_zstd import decode_tensorf_uniform, encode_tensorf_uniform

    _, _, meta = model_from_checkpoint(ckpt, family="tensorf")
    n_samples, ds = meta["preset"]["n_samples"], meta["preset"]["downscale"]
    train_data = load_scene(scene, "train", downscale=ds)
    test = load_scene(scene, "test", downscale=ds)
    every = test_stride(meta["preset"]["test_every"], len(test.images))

    def fresh():
        return model_from_checkpoint(ckpt, family="tensorf")[:2]

    def float_point():
        m, occ = fresh()
        return {"method": "float32 (uncompressed)", "bytes": 4 * m.parameter_count(),
                "feature_parameters": m.feature_parameter_count(), "bits_per_feature_parameter": 32.0,
                **_evaluate(m, occ, test, n_samples, every)}

    points = [_cached(out, "float32", float_point)]

    def uniform_point(b):
        def make():
            m, occ = fresh()
            info, (dm, docc), files = _round_trip(out / "bitstreams" / f"uniform{b}-zstd.nhwb",
                                                  lambda path: encode_tensorf_uniform(m, occ, b, path),
                                                  decode_tensorf_uniform)
            return {"method": f"uniform {b}-bit + zstd", "bits": b, **info, **files,
                    **_evaluate(dm, docc, test, n_samples, every)}
        return make

    for b in bits:
        points.append(_cached(out, f"uniform{b}-zstd", uniform_point(b)))

    mid = sorted(lambdas)[len(lambdas) // 2] if ablation_lambda is None else float(ablation_lambda)
    runs = [(f"ectensorf-lam{lam:g}", "ECTensoRF", lam, {}) for lam in lambdas]
    runs += [(f"ectensorf-lam{mid:g}-nomask", "ECTensoRF without masks", mid, {"masks": False}),
             (f"ectensorf-lam{mid:g}-noimportance", "ECTensoRF without importance", mid, {"importance": False})]
    with deferred_signals(handle_signals) as caught:
        for label, method, lam, extra in runs:
            settings = CompressSettings(lam=lam, seed=seed, **extra, **steps)
            state_path = out / "points" / f"{label}.state.pt"
            clean_stale(state_path)

            def save(state, state_path=state_path):
                atomic_write(state_path, lambda tmp: torch.save(state, tmp))

            def make(settings=settings, method=method, label=label, state_path=state_path, save=save):
                m, occ = fresh()
                state = torch.load(state_path, weights_only=False) if state_path.exists() else None
                res = compress_tensorf(m, occ, train_data, settings, n_samples=n_samples, progress=progress,
                                       state=state, on_checkpoint=save, stop=lambda: bool(caught))
                if res is None:
                    return None
                codec, log = res
                info, (dm, docc), files = _round_trip(out / "bitstreams" / f"{label}.nhwb",
                                                      lambda path: encode_tensorf(m, occ, codec, path), decode_tensorf)
                state_path.unlink(missing_ok=True)
                return {"method": method, "lambda": settings.lam, "settings": dataclasses.asdict(settings), **info,
                        **log, **files, **_evaluate(dm, docc, test, n_samples, every)}

            point = _cached(out, label, make)
            if point is None:
                return None
            points.append(point)
    return points


def _ngp_points(scene, ckpt, out, bits, policy_files, progress, seed):
    from nerf.data import load_scene
    from nerf.train import model_from_checkpoint, test_stride
    from quant.policy import QuantPolicy
    from quant.ptq import ptq
    from quant.table_codec import decode_ngp, encode_ngp

    _, _, meta = model_from_checkpoint(ckpt)
    n_samples, ds = meta["preset"]["n_samples"], meta["preset"]["downscale"]
    train_data = load_scene(scene, "train", downscale=ds)
    test = load_scene(scene, "test", downscale=ds)
    every = test_stride(meta["preset"]["test_every"], len(test.images))
    levels = meta["arch"]["levels"]

    def float_point():
        m, occ, _ = model_from_checkpoint(ckpt)
        tables = sum(p.numel() for p in m.encoding.parameters())
        return {"method": "float32 (uncompressed)", "bytes": 4 * m.parameter_count(), "table_parameters": tables,
                "bits_per_table_parameter": 32.0, **_evaluate(m, occ, test, n_samples, every)}

    points = [_cached(out, "float32", float_point)]
    named = [(f"uniform{b}", QuantPolicy.uniform(b, levels)) for b in bits]
    named += [(f"policy-{p.parent.name}-{p.stem}", QuantPolicy.load(p, levels)) for p in policy_files]
    for label, policy in named:
        def make(policy=policy, label=label):
            m, occ, _ = model_from_checkpoint(ckpt)
            ptq(m, occ, train_data, policy, n_samples=n_samples, seed=seed)
            info, (dm, docc), files = _round_trip(out / "bitstreams" / f"{label}.nhwb",
                                                  lambda path: encode_ngp(m, occ, policy, path), decode_ngp)
            return {"method": "entropy-coded tables (learned prior)", "policy": label, "bytes": info["file_bytes"],
                    "bits_per_table_parameter": info["bits_per_parameter"],
                    "policy_bits_per_table_parameter": info["policy_bits_per_parameter"], "codec": info,
                    **files, **_evaluate(dm, docc, test, n_samples, every)}

        point = _cached(out, label, make)
        info = point["codec"]
        # the same file with each level's codes through zstd in place of the range coder (sizes measured
        # by encode_ngp on the same codes; that file itself is not written)
        zstd_point = {**{k: point[k] for k in ("policy", "psnr", "ssim", "views")},
                      "label": f"{label}-zstd", "method": "table codes + zstd (bit-packed)",
                      "bytes": info["file_bytes"] + (info["zstd_bits"] - info["coded_bits"]) // 8,
                      "bits_per_table_parameter": info["zstd_bits_per_parameter"]}
        points += [point, zstd_point]
    return points


def _write_table(out: Path, summary: dict) -> None:
    rows = summary["points"]
    per = "feature" if summary["model"] == "tensorf" else "table"
    lines = [f"# Rate-distortion: {summary['model']} on {scene_name(summary['scene'])} ({summary['preset']})", "",
             f"| point | method | file bytes | bits per {per} parameter | PSNR dB | SSIM | encode s | decode s |",
             "|---|---|---|---|---|---|---|---|"]
    for p in rows:
        bpp = p.get(f"bits_per_{per}_parameter")
        enc = p.get("encode_seconds")
        if "train_seconds" in p:
            enc = f"{p['train_seconds']:.0f} + {p['encode_seconds']:.2f}"
        lines.append(f"| {p['label']} | {p['method']} | {p['bytes']:,} | "
                     f"{'' if bpp is None else f'{bpp:.3f}'} | {p['psnr']:.2f} | {p['ssim']:.4f} | "
                     f"{'' if enc is None else enc} | {p.get('decode_seconds', '')} |")
        if "zstd_bytes" in p:
            lines[-1] += f" zstd of the same codes: {p['zstd_bytes']:,} bytes"
    lines += ["", "File bytes are the bitstream files' sizes; PSNR / SSIM are of the model decoded from its file. "
              "ECTensoRF's encode time is training + entropy coding."]
    atomic_write_text(out / "rd.md", "\n".join(lines) + "\n")


def _plot(out: Path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from common.atomic import atomic_write

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    groups: dict[str, list] = {}
    for p in summary["points"]:  # one series per method, the uniform bitwidths joined into one
        groups.setdefault(re.sub(r"\b\d+-bit\b", "B-bit", p["method"]), []).append(p)
    for method, pts in groups.items():
        pts = sorted(pts, key=lambda q: q["bytes"])
        kb = [q["bytes"] / 1024 for q in pts]
        for ax, key in zip(axes, ("psnr", "ssim")):
            ax.plot(kb, [q[key] for q in pts], "o-", label=method)
    for ax, key in zip(axes, ("PSNR (dB)", "SSIM")):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("file size (KiB)")
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{summary['model']} on {scene_name(summary['scene'])}: rate-distortion")
    fig.tight_layout()
    atomic_write(out / "rd.png", lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
