"""``make quantize`` and ``make sweep``: evaluate quantization policies on a trained field (PTQ).

A policy is applied to the trained checkpoint of ``runs/train-<scene>-<preset>/``, calibrated by
min-max on training rays (``quant.ptq``), and rendered on the test views; the costs come from
``quant.costs``. Results: ``runs/quantize-<scene>-<preset>-<policy>/summary.json`` and, for the sweep,
``runs/sweep-<scene>-<preset>/`` (``sweep.json``, ``table.md``, ``table.csv``, ``psnr_vs_fqr.png``).

``make quantize QUANTIZER=dhq`` quantizes the MLP layers by DHQ instead (``quant.dhq_field``: Hadamard
rotation placed by ``PLACEMENT``, the DHQ quantizers calibrated by ``CALIBRATION``), in
``runs/quantize-<scene>-<preset>-<policy>-dhq-<placement>-<calibration>/``. The summary's ``frame`` is
the latency of one 800x800 frame at the full-precision field's samples per ray on the test views
(``sim.perf.frame_perf``, a hardware preset with the tables on chip, default ``onchip``): the bit-serial
MLP engines for uniform, one Hadamard datapath per rotated layer for DHQ (``datapath="hadamard"``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nerf.field
from flows.report import Column, pyplot, save_figure, write_json, write_table
from flows.runs import scene_name, train_command, train_dir

__all__ = ["scene_name", "train_dir", "resolve_policy", "TrainedField", "quantize", "sweep", "SWEEP_BITS",
           "SWEEP_COLUMNS", "FRAME_RAYS", "run_name", "frame_latency"]

#: Rays of the frame whose latency ``quantize`` reports: 800 x 800 (as ``make search``).
FRAME_RAYS = 800 * 800
#: A DHQ layer's rotation in the summary: (rotate_weight, rotate_act) <-> name.
ROTATIONS = {"both": (True, True), "weight": (True, False), "input": (False, True), "none": (False, False)}
ROTATION_NAMES = {v: k for k, v in ROTATIONS.items()}

#: Bitwidths of the uniform PTQ sweep.
SWEEP_BITS = (16, 12, 10, 8, 6, 4)


def resolve_policy(spec: str, levels: int | None):
    """``uniform-<B>``, ``fp`` (32 bits everywhere) or a policy YAML file -> ``(name, QuantPolicy)``.

    ``levels`` None checks ``spec`` before the model is known: a file's own ``hash.levelNN`` entries
    give its levels, and the forms are built for one level.

    Raises:
        quant.policy.PolicyError: a bad policy file or bitwidth (naming the file / field and value).
        FileNotFoundError: ``spec`` is neither a known form nor an existing file.
    """
    from quant.policy import FULL_PRECISION_BITS, QuantPolicy, check_bits

    if spec == "fp":
        return "fp", QuantPolicy.uniform(FULL_PRECISION_BITS, levels or 1)
    m = re.fullmatch(r"uniform-(\S+)", spec)
    if m:
        bits = int(m.group(1)) if m.group(1).isdigit() else m.group(1)
        return f"uniform-{bits}", QuantPolicy.uniform(check_bits(bits, f"bits of policy {spec!r}"), levels or 1)
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"policy {spec!r}: not 'uniform-<bits>', 'fp', nor an existing YAML file")
    return path.stem, QuantPolicy.load(path, levels)


class TrainedField(nerf.field.TrainedField):
    """The field of ``make train SCENE=<scene> PRESET=<preset>`` (``nerf.field.TrainedField``), scored under policies.

    Raises:
        FileNotFoundError: no checkpoint (the message gives the ``make train`` command that makes one).
    """

    def __init__(self, scene: str, preset: str = "tiny", *, runs_root="runs", progress: bool = True):
        super().__init__(train_dir(scene, preset, runs_root) / "checkpoint.pt", scene,
                         command=train_command(scene, preset))
        self.preset = preset
        self.progress = progress
        self._fp = None

    def evaluate(self, policy, *, out_dir: Path | None = None, rays: int = 16384, seed: int = 0,
                 options: dict | None = None) -> dict:
        """PTQ under ``policy`` (full precision when every component is 32 bits), then test-view metrics.

        ``options``: ``quant.dhq_field.check_options``'s dict (None: uniform); with DHQ the result also has
        ``rotations``: layer -> (rotate_weight, rotate_act). The field is left as it was (no quantizer).
        """
        from quant.ptq import calibrate_field, ptq

        if options is None or options["quantizer"] == "uniform":
            ptq(self.model, self.occupancy, self.train_data, policy, n_samples=self.n_samples, rays=rays, seed=seed)
            try:
                return self.test_metrics(out_dir=out_dir, progress=self.progress)
            finally:
                self.model.clear_quantizers()
        from quant.dhq_field import capture_layer_inputs, dhq_installed, field_rotations

        inputs = None
        if options["placement"] == "rule":  # the full-precision layer inputs of the calibration rays
            inputs = capture_layer_inputs(self.model, self.occupancy, self.train_data, rays=rays,
                                          n_samples=self.n_samples, seed=seed)
        rotations = field_rotations(self.model, options["placement"], policy=policy, layer_inputs=inputs,
                                    calibration=options["calibration"])
        with dhq_installed(self.model, policy, rotations, calibration=options["calibration"]):
            calibrate_field(self.model, self.occupancy, self.train_data, rays=rays, n_samples=self.n_samples,
                            seed=seed)
            return {**self.test_metrics(out_dir=out_dir, progress=self.progress), "rotations": rotations}

    def full_precision(self) -> dict:
        """Test metrics of the unquantized field (computed once)."""
        if self._fp is None:
            from quant.policy import FULL_PRECISION_BITS, QuantPolicy

            self._fp = self.evaluate(QuantPolicy.uniform(FULL_PRECISION_BITS, self.levels))
        return self._fp

    def summary(self, name: str, policy, *, out_dir: Path | None = None, rays: int = 16384, seed: int = 0,
                options: dict | None = None) -> dict:
        """The ``make quantize`` summary of one policy (see ``quantize``); ``options`` as ``evaluate``."""
        from quant.costs import FRAME, bitops, model_bytes
        from quant.policy import FULL_PRECISION_BITS, QuantPolicy, fqr

        fp = self.full_precision()
        all_fp = all(b == FULL_PRECISION_BITS for b in policy.values())
        uniform = options is None or options["quantizer"] == "uniform"
        q = fp if all_fp and out_dir is None and uniform else self.evaluate(policy, out_dir=out_dir, rays=rays,
                                                                              seed=seed, options=options)
        arch = self.model.arch
        pixels = self.test_data.height * self.test_data.width
        spr = q["samples_evaluated_per_view"] / pixels
        fp_policy = QuantPolicy.uniform(FULL_PRECISION_BITS, self.levels)
        extra = dict(options or {})
        if not uniform:
            extra["rotations"] = {n: ROTATION_NAMES[rot] for n, rot in q["rotations"].items()}
        return {**extra,
            "scene": self.scene, "preset": self.preset, "policy": name, "bits": dict(policy),
            "psnr_fp": round(fp["psnr"], 3), "psnr_q": round(q["psnr"], 3),
            "ssim_fp": round(fp["ssim"], 4), "ssim_q": round(q["ssim"], 4),
            "fqr": round(fqr(policy), 4),
            "bitops": bitops(policy, arch, samples_per_ray=spr),
            "bitops_fp": bitops(fp_policy, arch, samples_per_ray=fp["samples_evaluated_per_view"] / pixels),
            "bitops_frame": list(FRAME),
            "samples_per_ray": round(spr, 3),
            "model_bytes": model_bytes(policy, arch), "model_bytes_fp": model_bytes(fp_policy, arch),
            "test_views": q["views"], "calibration_rays": rays, "seed": seed,
            "checkpoint": str(self.checkpoint),
        }


def run_name(scene: str, preset: str, name: str, options: dict) -> str:
    """The run folder's name: ``quantize-<scene>-<preset>-<policy>``, ``-dhq-<placement>-<calibration>`` added
    for DHQ (so that a DHQ run does not overwrite the uniform one)."""
    tail = "" if options["quantizer"] == "uniform" else f"-dhq-{options['placement']}-{options['calibration']}"
    return f"quantize-{scene_name(scene)}-{preset}-{name}{tail}"


def frame_latency(hw: str, arch: dict, policy, samples_per_ray: float, options: dict, rotations=None) -> dict:
    """One 800x800 frame under ``policy`` (``sim.perf.frame_perf``) on hardware preset ``hw``: the MLP engines
    (uniform) or the Hadamard datapaths placed by ``rotations`` (DHQ).

    Returns:
        ``{"hw", "datapath", "rays", "samples", "cycles", "latency_ms", "bottleneck", "cycles_per_sample":
        {engine: cycles}}``, and with DHQ ``"layers"``: layer -> {rotate, engine, cycles}; or, when the engines
        cannot run the policy (e.g. full precision, a preset with the tables in DRAM), ``{"hw", "datapath",
        "note"}`` with the reason.
    """
    from hw.params import ConfigError
    from sim.perf import frame_perf, load_accelerator

    accel = load_accelerator(hw)
    dhq = options["quantizer"] == "dhq"
    datapath = "hadamard" if dhq else "mlp"
    samples = int(round(samples_per_ray * FRAME_RAYS))
    head = {"hw": accel.name, "datapath": datapath}
    try:
        p = frame_perf(accel, arch, policy, samples=samples, datapath=datapath, rotations=rotations if dhq else None)
    except ConfigError as exc:
        return {**head, "note": str(exc)}
    out = {**head, "rays": FRAME_RAYS, "samples": samples, "cycles": p.cycles, "latency_ms": round(p.latency_ms, 4),
           "bottleneck": p.bottleneck, "cycles_per_sample": {k: v["cycles_per_sample"] for k, v in p.engines.items()}}
    if dhq:
        out["layers"] = {ly["name"]: {k: ly[k] for k in ("rotate", "engine", "cycles")}
                         for name in ("density", "color") for ly in p.engines[name]["layers"]}
    return out


def quantize(scene: str, preset: str, policy_spec: str, *, runs_root="runs", rays: int = 16384, seed: int = 0,
             progress: bool = True, quantizer: str = "uniform", placement: str | None = None,
             calibration: str | None = None, hw: str = "onchip") -> dict:
    """Evaluate one policy; writes and returns ``runs/<run_name>/summary.json`` (``run_name``).

    The summary has psnr_fp and psnr_q (dB, mean over the test views), fqr (bits), bitops (one
    800x800 frame, BitOps), model_bytes (bytes), the quantizer (and DHQ's placement, calibration and
    rotations), ``frame`` (``frame_latency``) and details (SSIM, samples per ray, ...).

    Args:
        quantizer: the MLPs' quantizer, "uniform" (default) or "dhq" (``quant.dhq_field``);
        placement, calibration: DHQ's rotation placement ("all" default, "paper", "rule") and its quantizers'
            calibration ("min-max" default, "mse", "percentile"); None for uniform.
        hw: the hardware preset of the frame latency (default "onchip").

    Raises:
        ValueError: an unknown quantizer, placement or calibration, or a placement / calibration with the
            uniform quantizer (before any work). hw.params.ConfigError: an unknown hardware preset.
    """
    from quant.dhq_field import check_options
    from sim.perf import load_accelerator

    options = check_options(quantizer, placement, calibration)
    load_accelerator(hw)  # a bad preset name fails before any work
    field = TrainedField(scene, preset, runs_root=runs_root, progress=progress)
    name, policy = resolve_policy(policy_spec, field.levels)
    out = Path(runs_root) / run_name(scene, preset, name, options)
    s = field.summary(name, policy, out_dir=out / "test", rays=rays, seed=seed, options=options)
    fp = field.full_precision()
    spr_fp = fp["samples_evaluated_per_view"] / (field.test_data.height * field.test_data.width)
    rotations = {n: ROTATIONS[r] for n, r in s["rotations"].items()} if "rotations" in s else None
    s["frame"] = frame_latency(hw, field.model.arch, policy, spr_fp, options, rotations)
    policy.save(out / "policy.yaml")
    write_json(out / "summary.json", s)
    return s


#: The sweep table: Markdown (formatted) and CSV (raw values) columns.
SWEEP_COLUMNS = (
    Column("policy", "policy", "policy"),
    Column("fqr", "fqr", "FQR (bits)", "{:.2f}".format),
    Column("psnr_q", "psnr_q", "PSNR (dB)", "{:.2f}".format),
    Column("delta_psnr", "delta_psnr", "dPSNR vs FP (dB)", "{:+.3f}".format),
    Column("ssim_q", "ssim_q", "SSIM", "{:.4f}".format),
    Column("bitops", "bitops", "BitOps / 800x800 frame (T)", lambda v: f"{v / 1e12:.3f}"),
    Column("model_bytes", "model_bytes", "model (KiB)", lambda v: f"{v / 1024:.1f}"),
)


def _plot(rows: list[dict], path: Path, title: str) -> None:
    """PSNR against FQR of the uniform rows, with the full-precision PSNR as a line."""
    plt = pyplot()
    q = [r for r in rows if r["policy"] != "fp"]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.axhline(rows[0]["psnr_fp"], color="grey", linestyle="--", label=f"full precision {rows[0]['psnr_fp']:.2f} dB")
    ax.plot([r["fqr"] for r in q], [r["psnr_q"] for r in q], "o-", label="uniform PTQ (min-max)")
    for r in q:
        ax.annotate(f"{r['policy'].split('-')[-1]} b", (r["fqr"], r["psnr_q"]), textcoords="offset points",
                    xytext=(4, -10), fontsize=8)
    ax.set_xlabel("FQR (mean bits per component)")
    ax.set_ylabel("test PSNR (dB)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def sweep(scene: str, preset: str, *, bits=SWEEP_BITS, runs_root="runs", rays: int = 16384, seed: int = 0,
          progress: bool = True) -> dict:
    """Uniform PTQ at each of ``bits``; writes ``runs/sweep-<scene>-<preset>/`` (resumable: done points are kept).

    Returns the ``sweep.json`` content: ``{"scene", "preset", "rows": [fp row, uniform rows...]}``, each
    row a ``quantize`` summary plus ``delta_psnr`` (psnr_q - psnr_fp, dB).
    """
    from tqdm import tqdm

    from quant.policy import FULL_PRECISION_BITS, QuantPolicy

    out = Path(runs_root) / f"sweep-{scene_name(scene)}-{preset}"
    state_path = out / "sweep.json"
    field = TrainedField(scene, preset, runs_root=runs_root, progress=False)
    key = {"scene": scene, "preset": preset, "calibration_rays": rays, "seed": seed,
           "checkpoint_mtime_ns": field.checkpoint.stat().st_mtime_ns}
    done = {}
    if state_path.is_file():  # resume: keep the rows computed with the same settings and checkpoint
        prior = json.loads(state_path.read_text())
        if all(prior.get(k) == v for k, v in key.items()):
            done = {r["policy"]: r for r in prior["rows"]}
    specs = [("fp", FULL_PRECISION_BITS)] + [(f"uniform-{b}", b) for b in bits]
    rows = []
    for name, b in tqdm(specs, desc="sweep", unit="policy", disable=not progress):
        if name not in done:
            s = field.summary(name, QuantPolicy.uniform(b, field.levels), rays=rays, seed=seed)
            s["delta_psnr"] = round(s["psnr_q"] - s["psnr_fp"], 3)
            done[name] = s
        rows.append(done[name])
        state = {**key, "rows": rows}
        write_json(state_path, state)
    write_table(out, rows, SWEEP_COLUMNS)
    _plot(rows, out / "psnr_vs_fqr.png", f"{scene_name(scene)} ({preset}): uniform PTQ")
    return state
