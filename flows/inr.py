"""``make inr``: DHQ vs uniform quantization of a SIREN image INR (weights AND activations).

A SIREN (``nerf.siren``) is fitted to one scikit-image picture at full precision (FP), then every
linear layer's weight and input activation is quantized to B bits, for each B, by four methods:

============ ======= ===================================================================================
method       rotate  how
============ ======= ===================================================================================
uniform      no      min-max PTQ: ``quant.quantizers.calibrate`` on the image's coordinates
lsq+         no      QAT from the FP model: min-max init of the steps (= the uniform PTQ), then
                     ``finetune_steps`` full-batch Adam steps on the weights, biases and the learnable
                     steps (LSQ / LSQ+ straight-through gradients of ``FakeQuantizer``)
dhq          yes     Hadamard rotation (``quant.hadamard.DHQLinear``) + the same min-max PTQ
dhq+lsq+     yes     Hadamard rotation + the same QAT budget
============ ======= ===================================================================================

Ablations, min-max PTQ only: ``uniform-w`` / ``dhq-w`` quantize only the weights, ``uniform-a`` /
``dhq-a`` only the activations (the other side stays FP), to show which side the rotation helps or
hurts. The ``datapath`` section (``flows.inr_datapath``) gives every layer's cycles per vector on the
Hadamard datapath at each B, from its TLM.

All quantizers are symmetric narrow-range per tensor, as the Hadamard datapath runs them. The first
layer's input, the pixel coordinates, is quantized at ``coord_bits`` (default 16) whatever B is: in
hardware it is an exact fixed-point pixel address, and at B bits each axis would take only 2^B - 1
values, off the pixel grid (measured on camera at 256 px: with 8-bit coordinates the 8-bit
activations-only PTQ gives 26.92 dB instead of 31.42), which would measure the coordinates, not the
methods. Min-max suits the U-shaped sine activations (max/std about 1.4); the rotation makes them
Gaussian (max/std 4-5), which costs DHQ's min-max PTQ accuracy (``layer_stats``). The LSQ+
steps start from min-max calibration, not LSQ+'s ``max(|mu - 3 sigma|, |mu + 3 sigma|) / 2^(B-1)``:
measured on camera (128 px, 4 and 3 bits) that init starts 1-3 dB lower and ends no better after
fine-tuning, for either method; min-max also makes each QAT start from its PTQ result, so the QAT
columns show exactly what the training adds. Each step has its own Adam learning rate,
``scale_lr`` times its initial value (the steps of different layers differ by orders of magnitude).

Results in ``runs/inr-<image>/``: ``fp.pt`` (the FP model, atomic; reused when the training settings
match, refused with a clear error when they do not), ``summary.json`` (settings, FP metrics, every
(bits, method) cell with PSNR (dB), SSIM, deltas vs FP and wall seconds, per-layer distribution
statistics before and after the rotation; rewritten after every cell, so an interrupted run resumes
and a finished one reuses its cells), ``table.md`` / ``table.csv`` (PSNR per bits and method),
``histograms.png``, ``reconstructions.png`` and ``recon/<method>-<B>b.png``.

``build_summary`` makes the summary dict and ``write_summary`` writes it (and the tables), so that a
caller can add sections (e.g. the datapath's cycles per vector) in between.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import json
import pickle
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.atomic import atomic_write, atomic_write_text

__all__ = ["METHODS", "ABLATIONS", "DEFAULT_BITS", "MIN_BITS", "MAX_BITS", "InrSettings", "parse_bits", "run_dir", "inr",
           "build_summary", "write_summary", "layer_statistics", "table"]

#: The quantization methods, in table order: name -> (rotate, fine-tune).
METHODS: dict[str, tuple[bool, bool]] = {"uniform": (False, False), "lsq+": (False, True), "dhq": (True, False),
                                         "dhq+lsq+": (True, True)}
#: Ablations (min-max PTQ, one side quantized, the other at full precision): name -> (rotate, weights, acts).
ABLATIONS: dict[str, tuple[bool, bool, bool]] = {"uniform-w": (False, True, False), "dhq-w": (True, True, False),
                                                 "uniform-a": (False, False, True), "dhq-a": (True, False, True)}
_LABELS = {"fp": "FP", "uniform-w": "uniform W only", "dhq-w": "DHQ W only", "uniform-a": "uniform A only",
           "dhq-a": "DHQ A only", "uniform": "uniform PTQ", "lsq+": "LSQ+ QAT", "dhq": "DHQ PTQ", "dhq+lsq+": "DHQ + LSQ+ QAT"}
DEFAULT_BITS = (8, 6, 4, 3)
#: The bitwidths the experiment accepts (the Hadamard datapath's range).
MIN_BITS, MAX_BITS = 2, 16


def _positive(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{what} must be a positive number, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class InrSettings:
    """Everything a run depends on (validated; keyword-only). Units: pixels, Adam steps, seconds.

    Defaults measured on this project's 2-core CPU: camera at 256 px, width 64, 500 FP steps reach
    about 31.5 dB; ``make inr IMAGE=camera BITS=8,6,4,3`` then takes about 4 minutes.
    """

    image: str = "camera"
    size: int = 256  # longer side after anti-aliased downscaling (pixels)
    width: int = 64
    hidden_layers: int = 3
    steps: int = 500  # FP full-batch Adam steps
    lr: float = 1e-3  # FP learning rate
    finetune_steps: int = 50  # QAT full-batch Adam steps per (bits, lsq+ method)
    finetune_lr: float = 1e-4  # QAT learning rate of weights and biases
    scale_lr: float = 1e-2  # QAT learning rate of each step, relative to its initial value
    seed: int = 0
    coord_bits: int = 16  # the first layer's input (pixel coordinates), whatever B is

    def __post_init__(self) -> None:
        from nerf.siren import IMAGES, check_int

        if self.image not in IMAGES:
            raise ValueError(f"unknown image {self.image!r} (choices: {', '.join(sorted(IMAGES))})")
        check_int(self.size, "size", 8)
        check_int(self.width, "width", 2, 128)
        if self.width & (self.width - 1):
            raise ValueError(f"width must be a power of two (the Hadamard datapath's sizes), not {self.width}")
        check_int(self.hidden_layers, "hidden_layers", 0, 16)
        check_int(self.steps, "steps", 0)
        check_int(self.finetune_steps, "finetune_steps", 0)
        check_int(self.seed, "seed", 0)
        check_int(self.coord_bits, "coord_bits", 2, 32)
        for name in ("lr", "finetune_lr", "scale_lr"):
            _positive(getattr(self, name), name)

    _FP_FIELDS = ("image", "size", "width", "hidden_layers", "steps", "lr", "seed")

    def fp_key(self) -> dict:
        """The settings the FP checkpoint depends on."""
        return {k: getattr(self, k) for k in self._FP_FIELDS}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def parse_bits(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"8,6,4,3"`` (or a sequence of ints) -> ``(8, 6, 4, 3)``: distinct ints in [2, 16], order kept.

    Raises:
        ValueError: an entry that is not an integer, outside [2, 16], or repeated (naming it), or none.
    """
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    bits = []
    for item in items:
        if isinstance(item, str):
            try:
                value = int(item)
            except ValueError:
                raise ValueError(f"bits must be comma-separated integers in [{MIN_BITS}, {MAX_BITS}], "
                                 f"not {item!r} (in {text!r})") from None
        else:
            value = item
        if isinstance(value, bool) or not isinstance(value, int) or not MIN_BITS <= value <= MAX_BITS:
            raise ValueError(f"bits must be integers in [{MIN_BITS}, {MAX_BITS}], not {value!r}")
        if value in bits:
            raise ValueError(f"bits {value} is listed twice")
        bits.append(value)
    if not bits:
        raise ValueError("bits: give at least one bitwidth")
    return tuple(bits)


def run_dir(image: str, runs_root="runs") -> Path:
    """``runs/inr-<image>``."""
    return Path(runs_root) / f"inr-{image}"


# --- data and the FP model ------------------------------------------------------------------------

class _Data:
    """The image (H, W, C) float32 in [0, 1], its coordinates (H*W, 2) and targets (H*W, C) as tensors."""

    def __init__(self, settings: InrSettings):
        import torch

        from nerf.siren import image_coordinates, load_image

        self.image = load_image(settings.image, size=settings.size)
        self.height, self.width, self.channels = self.image.shape
        self.coords = image_coordinates(self.height, self.width)
        self.target = torch.from_numpy(self.image).reshape(-1, self.channels)

    def metrics(self, model) -> tuple[dict, np.ndarray]:
        """``({"psnr": dB, "ssim": ...}, reconstruction (H, W, C))`` of ``model`` on the whole image."""
        from nerf.metrics import psnr, ssim
        from nerf.siren import predict_image

        rec = predict_image(model, self.coords, self.height, self.width)
        return {"psnr": round(psnr(rec, self.image), 3), "ssim": round(ssim(rec, self.image), 4)}, rec


def _fp_model(settings: InrSettings, data: _Data, out: Path, progress: bool):
    """Load ``out/fp.pt`` if it matches ``settings.fp_key()``, else train and save it. -> (model, training info)."""
    import torch

    from nerf.siren import Siren, fit

    path = out / "fp.pt"
    key = settings.fp_key()
    if path.is_file():
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=False)
        except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
            raise ValueError(f"cannot read checkpoint {str(path)!r}: {exc}; delete it to retrain") from exc
        old = ckpt.get("settings", {}) if isinstance(ckpt, dict) else {}
        for k, v in key.items():
            if old.get(k) != v:
                raise ValueError(f"{path} was trained with {k}={old.get(k)!r}, this run asks for {k}={v!r}: "
                                 f"delete {out} to retrain, or write the run elsewhere (--runs)")
        model = Siren(**ckpt["arch_args"])
        model.load_state_dict(ckpt["model"])
        model.eval()
        return model, {**ckpt["training"], "reused": True}
    torch.manual_seed(settings.seed)
    model = Siren(width=settings.width, hidden_layers=settings.hidden_layers, channels=data.channels)
    model, history = fit(model, data.coords, data.target, steps=settings.steps, lr=settings.lr, seed=settings.seed,
                         progress=progress, desc=f"fit {settings.image}")
    training = {"steps": settings.steps, "lr": settings.lr, "seconds": round(history["seconds"], 2),
                "final_loss_psnr": round(history["final_psnr"], 3),
                "history": {"step": history["step"], "psnr": history["psnr"]}}
    arch_args = {"width": settings.width, "hidden_layers": settings.hidden_layers, "channels": data.channels}
    state = {"settings": key, "arch_args": arch_args, "model": model.state_dict(), "training": training}
    atomic_write(path, lambda tmp: torch.save(state, tmp))
    return model, {**training, "reused": False}


# --- the quantized models -------------------------------------------------------------------------

def _quantize(model, method: str, bits: int, settings: InrSettings, data: _Data, progress: bool):
    """A quantized copy of ``model`` by ``method`` at ``bits`` (weights and activations); see the module doc."""
    import torch

    from nerf.siren import fit
    from quant.hadamard import dhq_layers, dhq_wrap, layer_parameters, quantizer_parameters
    from quant.quantizers import calibrate

    if method in ABLATIONS:
        rotate, weights, acts = ABLATIONS[method]
        train = False
    else:
        (rotate, train), weights, acts = METHODS[method], True, True
    q = copy.deepcopy(model)
    dhq_wrap(q, rotate=rotate, weight_bits=bits if weights else None, act_bits=bits if acts else None)
    if acts:  # the coordinates are the network's input, an exact fixed-point pixel address in hardware
        next(iter(dhq_layers(q).values())).act_quantizer.bits = settings.coord_bits
    q.eval()
    with torch.no_grad(), calibrate(q):  # min-max PTQ on the image's coordinates
        q(data.coords)
    if train and settings.finetune_steps:
        scales = quantizer_parameters(q)
        floors = [float(s.detach()) * 1e-3 for s in scales]
        groups = [{"params": layer_parameters(q), "lr": settings.finetune_lr}]
        groups += [{"params": [s], "lr": settings.scale_lr * float(s.detach())} for s in scales]

        def keep_positive():  # a step must stay > 0; Adam could push a tiny one through zero
            with torch.no_grad():
                for s, floor in zip(scales, floors):
                    s.clamp_(min=floor)

        fit(q, data.coords, data.target, steps=settings.finetune_steps, params=groups, seed=settings.seed,
            progress=progress, desc=f"{method} {bits}b", after_step=keep_positive, keep_best=True)
    return q


def _moments(x) -> dict:
    """Distribution statistics of a tensor (all elements): std, max|x|, max|x| / std, Pearson kurtosis."""
    v = x.detach().double().flatten()
    mu, sd = v.mean(), v.std(unbiased=False)
    kurt = float(((v - mu) ** 4).mean() / sd**4) if sd > 0 else float("nan")
    absmax = float(v.abs().max())
    return {"std": round(float(sd), 6), "absmax": round(absmax, 6),
            "absmax_over_std": round(absmax / float(sd), 3) if sd > 0 else None,
            "kurtosis": round(kurt, 3)}


def _rotated_tensors(model, coords) -> list[dict]:
    """Per layer: the weight and input activation before and after the Hadamard rotation (FP model)."""
    from quant.hadamard import DHQLinear

    inputs = model.hidden_inputs(coords)
    tensors = []
    for i, (layer, x) in enumerate(zip(model.layers, inputs)):
        rot = DHQLinear(layer, rotate=True)
        tensors.append({"layer": f"layers.{i}", "in": layer.in_features, "out": layer.out_features, "n": rot.n,
                        "weight": (layer.weight.detach(), rot.rotated_weight),
                        "act": (x, rot.rotate_input(x).detach())})
    return tensors


def layer_statistics(model, coords) -> list[dict]:
    """Per layer of a ``Siren``: ``_moments`` of weight and activation before and after the rotation.

    Returns ``[{"layer", "in", "out", "n", "weight": {"before": {...}, "after": {...}}, "act": {...}}]``;
    activations are the layer inputs on ``coords`` (N, 2) with the FP model. DHQ's claim (Zhou et al.
    2025, sec. 3) is that "after" has a similar, bell-shaped distribution (kurtosis near 3) in every layer.
    """
    stats = []
    for t in _rotated_tensors(model, coords):
        stats.append({k: t[k] for k in ("layer", "in", "out", "n")}
                     | {kind: {"before": _moments(t[kind][0]), "after": _moments(t[kind][1])}
                        for kind in ("weight", "act")})
    return stats


def _spread(stats: list[dict]) -> dict:
    """How different the layers are: min/max kurtosis over layers, before and after the rotation."""
    out = {}
    for kind in ("weight", "act"):
        for when in ("before", "after"):
            k = [s[kind][when]["kurtosis"] for s in stats if s[kind][when]["kurtosis"] == s[kind][when]["kurtosis"]]
            out[f"{kind}_kurtosis_{when}"] = [min(k), max(k)] if k else None
    return out


# --- outputs --------------------------------------------------------------------------------------

def build_summary(settings: InrSettings, data, model, training: dict, fp: dict, bits: Sequence[int],
                  cells: Mapping[str, dict], stats: list[dict], *, wall_seconds: float | None = None,
                  finished: bool = False, sections: Mapping[str, object] | None = None) -> dict:
    """The ``summary.json`` dict (no I/O).

    Args:
        settings, data (``_Data``: image shape), model (the FP ``Siren``), training (``_fp_model``'s info),
        fp (FP metrics), bits (the rows), cells (``"<method>@<B>"`` -> cell dict: psnr dB, ssim, seconds),
        stats (``layer_statistics``), wall_seconds (this call's wall time), finished.
        sections: extra top-level sections merged in last (e.g. ``{"datapath": {...}}``).

    Returns:
        ``{"image", "size" [H, W], "channels", "settings", "model", "training", "fp", "methods", "bits",
        "rows": [{"bits", "fp_psnr", <method>: {"psnr", "ssim", "delta_psnr", "delta_ssim", "seconds"}}],
        "layer_stats", "layer_spread", "wall_seconds", "finished"}``; a method of a row is missing until done.
    """
    from quant.hadamard import padded_size

    rows = []
    for b in bits:
        row = {"bits": b, "fp_psnr": fp["psnr"]}
        for m in (*METHODS, *ABLATIONS):
            c = cells.get(f"{m}@{b}")
            if c is not None:
                row[m] = {**c, "delta_psnr": round(c["psnr"] - fp["psnr"], 3),
                          "delta_ssim": round(c["ssim"] - fp["ssim"], 4)}
        rows.append(row)
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
        "layer_spread": _spread(stats),
        "wall_seconds": None if wall_seconds is None else round(wall_seconds, 1),
        "finished": finished,
    }
    summary.update(sections or {})
    return summary


def table(summary: Mapping) -> tuple[str, str]:
    """(markdown, csv) of PSNR (dB) per bits (rows) and method (columns: FP, then ``METHODS``)."""
    cols = ["fp", *METHODS]
    md = ["| bits | " + " | ".join(f"{_LABELS[c]} (dB)" for c in cols) + " |", "|---|" + "---|" * len(cols)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["bits", *(f"psnr_{c}" for c in cols)])
    for r in summary["rows"]:
        vals = [r["fp_psnr"]] + [r[m]["psnr"] if m in r else None for m in METHODS]
        md.append(f"| {r['bits']} | " + " | ".join("" if v is None else f"{v:.2f}" for v in vals) + " |")
        w.writerow([r["bits"], *("" if v is None else v for v in vals)])
    abl = [m for m in ABLATIONS if any(m in r for r in summary["rows"])]
    if abl:
        md += ["", "| bits | " + " | ".join(f"{_LABELS[c]} (dB)" for c in abl) + " |", "|---|" + "---|" * len(abl)]
        for r in summary["rows"]:
            md.append(f"| {r['bits']} | " + " | ".join(f"{r[m]['psnr']:.2f}" if m in r else "" for m in abl) + " |")
    dp = summary.get("datapath")
    if dp:
        bits = list(dp["per_bits"])
        md += ["", f"Hadamard datapath cycles per vector (T), {dp['array']['rows']} x {dp['array']['cols']} array "
                   f"({dp['preset']}), from sim.tlm.hadamard:", "",
               "| layer | n x m | " + " | ".join(f"a={a}" for a in bits) + " |", "|---|---|" + "---|" * len(bits)]
        for k, layer in enumerate(dp["layers"]):
            md.append(f"| {k} | {layer['n']} x {layer['m']} | "
                      + " | ".join(str(layer["per_bits"][a]["cycles_per_vector"]) for a in bits) + " |")
        md.append("| image, layer by layer (ms at %d MHz) | | " % dp["array"]["clock_mhz"]
                  + " | ".join(f"{dp['per_bits'][a]['layer_by_layer_ms']:.1f}" for a in bits) + " |")
    return "\n".join(md) + "\n", buf.getvalue()


def write_summary(out: str | Path, summary: Mapping) -> None:
    """Write ``summary.json``, ``table.md`` and ``table.csv`` into ``out`` (atomically)."""
    out = Path(out)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    md, table_csv = table(summary)
    atomic_write_text(out / "table.md", md)
    atomic_write_text(out / "table.csv", table_csv)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_histograms(model, coords, stats: list[dict], path: Path, title: str) -> None:
    """Rows = layers; columns = weights before / after the rotation, activations before / after."""
    plt = _pyplot()
    tensors = _rotated_tensors(model, coords)
    fig, axes = plt.subplots(len(tensors), 4, figsize=(13, 2.1 * len(tensors)), dpi=100, squeeze=False)
    for r, (t, s) in enumerate(zip(tensors, stats)):
        for c, (kind, when) in enumerate((("weight", 0), ("weight", 1), ("act", 0), ("act", 1))):
            ax = axes[r][c]
            v = t[kind][when].flatten().numpy()
            ax.hist(v, bins=80, color="tab:blue" if when == 0 else "tab:orange", density=True)
            st = s[kind]["before" if when == 0 else "after"]
            ax.set_title(f"{t['layer']} {kind} {'before' if when == 0 else 'after H'}: kurt {st['kurtosis']:.2f}, "
                         f"max/std {st['absmax_over_std']}", fontsize=7)
            ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def _to_png(img: np.ndarray, path: Path) -> None:
    from PIL import Image

    a = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    pil = Image.fromarray(a[:, :, 0] if a.shape[2] == 1 else a)
    atomic_write(path, lambda tmp: pil.save(tmp, format="png"))


def _from_png(path: Path) -> np.ndarray:
    from PIL import Image

    a = np.asarray(Image.open(path), dtype=np.float32) / 255.0
    return a[:, :, None] if a.ndim == 2 else a


def plot_reconstructions(images: list[tuple[str, np.ndarray]], path: Path) -> None:
    """One row of labelled images (H, W, C) in [0, 1]."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(images), figsize=(2.6 * len(images), 2.9), dpi=100, squeeze=False)
    for ax, (label, img) in zip(axes[0], images):
        ax.imshow(img[:, :, 0] if img.shape[2] == 1 else img, cmap="gray", vmin=0, vmax=1)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def _recon_path(out: Path, method: str, bits: int) -> Path:
    return out / "recon" / f"{method}-{bits}b.png"


# --- the flow -------------------------------------------------------------------------------------

def inr(image: str = "camera", *, bits=DEFAULT_BITS, runs_root="runs", progress: bool = True,
        **settings) -> dict:
    """Run the experiment (module doc); writes ``runs/inr-<image>/`` and returns the summary.

    Args:
        image: a ``nerf.siren.IMAGES`` name.
        bits: the rows, ``parse_bits`` input (a "8,6,4,3" string or ints in [2, 16]).
        runs_root: the results folder; progress: tqdm bars.
        settings: ``InrSettings`` fields (size, width, hidden_layers, steps, lr, finetune_steps,
            finetune_lr, scale_lr, seed).

    Resumes: the FP checkpoint is reused when its training settings match (and refused, with the field
    named, when they do not); cells of a previous ``summary.json`` with the same settings are reused,
    cells of other fine-tuning settings are recomputed.

    Raises:
        ValueError: an unknown image or setting, bad bits, a checkpoint of other settings.
    """
    import torch
    from tqdm import tqdm

    t_start = time.perf_counter()
    unknown = set(settings) - {f.name for f in dataclasses.fields(InrSettings)}
    if unknown:
        raise ValueError(f"unknown setting(s) {', '.join(sorted(unknown))}")
    cfg = InrSettings(image=image, **settings)
    bits = parse_bits(bits)
    out = run_dir(image, runs_root)
    data = _Data(cfg)
    model, training = _fp_model(cfg, data, out, progress)
    fp, fp_rec = data.metrics(model)
    stats = layer_statistics(model, data.coords)

    cells: dict[str, dict] = {}
    prior_path = out / "summary.json"
    if prior_path.is_file():
        try:
            prior = json.loads(prior_path.read_text())
        except (OSError, json.JSONDecodeError):
            prior = {}
        if prior.get("settings") == cfg.to_dict():
            for r in prior.get("rows", []):
                for m in (*METHODS, *ABLATIONS):
                    if m in r and _recon_path(out, m, r["bits"]).is_file():
                        cells[f"{m}@{r['bits']}"] = {k: r[m][k] for k in ("psnr", "ssim", "seconds")}
        elif prior.get("settings"):
            changed = [k for k, v in cfg.to_dict().items() if prior["settings"].get(k) != v]
            tqdm.write(f"{prior_path}: computed with other settings ({', '.join(changed)}): recomputing its rows")

    from flows.inr_datapath import datapath_section

    sections = {"datapath": datapath_section(model.shape, bits, data.height * data.width)}

    def summary(finished: bool) -> dict:
        return build_summary(cfg, data, model, training, fp, bits, cells, stats,
                             wall_seconds=time.perf_counter() - t_start, finished=finished, sections=sections)

    todo = [(m, b) for b in bits for m in (*METHODS, *ABLATIONS) if f"{m}@{b}" not in cells]
    for method, b in tqdm(todo, desc=f"inr {image}", unit="cell", disable=not progress):
        torch.manual_seed(cfg.seed)
        t0 = time.perf_counter()
        q = _quantize(model, method, b, cfg, data, progress)
        metrics, rec = data.metrics(q)
        cells[f"{method}@{b}"] = {**metrics, "seconds": round(time.perf_counter() - t0, 2)}
        _to_png(rec, _recon_path(out, method, b))
        write_summary(out, summary(False))  # resumable after every cell

    plot_histograms(model, data.coords, stats, out / "histograms.png",
                    f"{image}: per-layer weights and activations before / after the Hadamard rotation (FP model)")
    low = min(bits)
    plot_reconstructions([("ground truth", data.image), (f"FP {fp['psnr']:.2f} dB", fp_rec)]
                         + [(f"{_LABELS[m]} {low}b {cells[f'{m}@{low}']['psnr']:.2f} dB",
                             _from_png(_recon_path(out, m, low))) for m in METHODS],
                         out / "reconstructions.png")
    s = summary(True)
    write_summary(out, s)
    return s
