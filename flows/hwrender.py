"""``make hwrender``: test views rendered through the accelerator's own integer arithmetic.

For a trained Instant-NGP field, a policy and a hardware preset: PTQ at the top's widths
(``sim.mapping.hardware_bits``), the integer export (``quant.int_export``, written as ``model.nhwi``
and read back through its checking loader), then every test view (training's test stride) rendered
three ways:

* ``fake-quant``: the float renderer (``nerf.render``) with the policy's fake quantizers, what the
  search measured;
* ``fake-quant (hw widths)``: the same at the top's widths (a renderer input left at 32 bits runs at 16);
* ``hardware``: ``sim.bitexact.render_int`` from the exported integers, rays prepared by the host
  (``host_rays``: the occupancy grid's empty-space skipping, fixed-point positions and directions, q).

Results in ``runs/hwrender-<scene>-<preset>-<policy>-<hw>/``: ``summary.json``, ``table.md``, the
hardware renders ``hw/NNN.png`` and ``diff/NNN.png`` (|hardware - fake-quant| x 10).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np

from flows.report import write_json
from flows.runs import scene_name

__all__ = ["host_rays", "hwrender", "hwrender_dir", "render_view_int", "composite_float", "BREAKDOWN"]

#: ``--breakdown``: the hardware's PSNR difference to fake-quant split into parts that add up to it (dB).
BREAKDOWN = {
    "sh_grid": "fake-quant with sh.out on density.l1.out's grid, minus fake-quant: the SH unit's grid",
    "datapath": "the hardware's sample codes composited in float64, minus the above: requantization, biases, "
                "fixed-point positions and directions, activation tables",
    "pixels_8bit": "the same rounded to 8-bit pixels, minus the float composite",
    "compositor": "the hardware, minus the above: the compositor's fixed-point transmittance and early termination",
}


def hwrender_dir(scene: str, preset: str, policy_name: str, hw: str, runs_root="runs") -> Path:
    return Path(runs_root) / f"hwrender-{scene_name(scene)}-{preset}-{policy_name}-{Path(hw).stem}"


def host_rays(m, occupancy, origins, dirs, *, n_samples: int):
    """The host's side of the top: rays of a view as a ``sim.bitexact.RayBatch``.

    Samples where ``nerf.render.render_rays`` places them (``nerf.render.ray_samples``: ``n_samples``
    midpoints across the model's box), kept where the occupancy grid is occupied (empty-space skipping;
    early ray termination is the compositor's); positions normalised by the box as ``InstantNGP.normalize``
    and converted by ``sim.tlm.hash_encoder.to_fixed``; directions by ``sim.tlm.sh_unit.to_direction_codes``;
    q by ``sim.tlm.compositor.depth_step``.

    Args:
        m: the ``IntModel``; occupancy: the field's ``OccupancyGrid``.
        origins, dirs: float32 torch tensors (R, 3), world units (dirs need not be unit length).
    """
    import torch

    from nerf.render import ray_samples
    from sim.bitexact import RayBatch
    from sim.tlm.compositor import depth_step
    from sim.tlm.hash_encoder import to_fixed
    from sim.tlm.sh_unit import to_direction_codes

    lo, hi = torch.tensor(m.bbox[0], dtype=torch.float32), torch.tensor(m.bbox[1], dtype=torch.float32)
    with torch.no_grad():
        d, t, delta, hit = ray_samples(origins, dirs, lo, hi, n_samples=n_samples)
        pts = origins[:, None, :] + d[:, None, :] * t[..., None]  # (R, S, 3)
        keep = occupancy.query(pts.reshape(-1, 3)).reshape(t.shape) & hit[:, None]
        u = ((pts[keep] - lo) / (hi - lo)).clamp(0.0, 1.0 - 1e-6)
    top = m.top
    return RayBatch(coords=to_fixed(u.double().numpy(), top.encoder.coord_bits),
                    counts=keep.sum(1).numpy().astype(np.int64),
                    dirs=to_direction_codes(d.double().numpy(), top.sh.dir_bits),
                    q=depth_step(delta.double().numpy(), m.sigma_step, top.compositor))


def render_view_int(m, occupancy, data, index: int, *, n_samples: int, encoder=None, chunk: int = 4096,
                    float_composite: bool = False):
    """View ``index`` of ``data`` through the top: ``(image float32 (H, W, 3) in [0, 1], stats dict)``.

    ``float_composite``: also return the same samples' codes composited in float64 (``composite_float``),
    without and with 8-bit pixel rounding: ``(image, stats, float image, float image rounded)``.
    """
    import torch

    from nerf.cameras import get_rays
    from sim.bitexact import sample_codes
    from sim.tlm.compositor import composite_reference

    o, d = get_rays(data.height, data.width, data.focal, data.poses[index], **data.intrinsics)
    o, d = torch.from_numpy(np.asarray(o, np.float32)), torch.from_numpy(np.asarray(d, np.float32))
    pixels, floats, samples, contributed = [], [], 0, 0
    for a in range(0, o.shape[0], chunk):
        rays = host_rays(m, occupancy, o[a:a + chunk], d[a:a + chunk], n_samples=n_samples)
        codes = sample_codes(m, rays, encoder)
        r = composite_reference(codes.sigma, codes.color, rays.counts, rays.q, m.pixel, m.top.compositor)
        pixels.append(r.pixels)
        if float_composite:
            floats.append(composite_float(m, rays, codes))
        samples += len(rays.coords)
        contributed += int(r.contributed.sum())
    full = (1 << m.top.compositor.pixel_bits) - 1
    shape = (data.height, data.width, 3)
    img = (np.concatenate(pixels).astype(np.float32) / full).reshape(shape)
    stats = {"samples": samples, "contributed": contributed}
    if not float_composite:
        return img, stats
    flt = np.concatenate(floats).reshape(shape)
    return img, stats, flt.astype(np.float32), (np.rint(flt * full) / full).astype(np.float32)


def composite_float(m, rays, codes) -> np.ndarray:
    """The samples' density and colour codes composited in float64 (exact exp, no early termination, the
    background), float64 (R, 3) in [0, 1]: the compositor's own share of the hardware's difference."""
    c = m.top.compositor
    delta = rays.q / 2.0 ** c.depth_frac / m.sigma_step
    ray = np.repeat(np.arange(len(rays.counts)), rays.counts)
    tau = codes.sigma * m.sigma_step * delta[ray]
    col = codes.color * m.color_step + m.color_low
    start = np.r_[0, np.cumsum(rays.counts)[:-1]]
    csum = np.r_[0, np.cumsum(tau)]
    before = csum[:-1] - csum[start][ray]
    w = np.exp(-before) - np.exp(-(before + tau))
    rgb = np.zeros((len(rays.counts), 3))
    np.add.at(rgb, ray, w[:, None] * col)
    t_end = np.exp(-(csum[start + rays.counts] - csum[start]))
    return np.clip(rgb + t_end[:, None] * m.background, 0.0, 1.0)


def _full_precision(quantizers, names, on: bool) -> None:
    """Pass ``names``' quantizers through (the policy's 32-bit components the top runs narrower), or not."""
    for name in names:
        quantizers[name].enabled = not on


def _qat_model(field, checkpoint: Path):
    """Load a fine-tuning checkpoint (``quant.acaq``, kind ``nerfhw-qat``, LSQ+ ``FakeQuantizer`` s) into the
    field's model: its weights, tables and trained quantizers; a component its policy leaves at 32 bits that the
    top runs narrower gets a min-max quantizer calibrated alone. Returns ``(policy, top widths, quantizers)``.

    Raises:
        ValueError: not a fine-tuning checkpoint of this field's architecture, or not LSQ+ (A-CAQ's learned-
            bitwidth quantizers are no ``FakeQuantizer``), naming the field.
        hw.config.ConfigError: its policy is one the top cannot run (``sim.mapping.hardware_bits``), before
            the model is changed.
    """
    import torch
    from torch import nn

    from quant.policy import QuantPolicy, scheme_of
    from quant.ptq import apply_policy, calibrate_field
    from quant.quantizers import FakeQuantizer
    from sim.mapping import hardware_bits

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if not isinstance(ckpt, dict) or ckpt.get("kind") != "nerfhw-qat":
        raise ValueError(f"--checkpoint {checkpoint}: not a fine-tuning checkpoint of nerfhw (kind nerfhw-qat)")
    if ckpt["settings"].get("method") != "lsq+" or ckpt["settings"].get("policy") is None:
        raise ValueError(f"--checkpoint {checkpoint}: method {ckpt['settings'].get('method')!r} with policy "
                         f"{'given' if ckpt['settings'].get('policy') else 'none'}: only an LSQ+ fine-tuning of a "
                         "policy (make compare's final-* runs) has fixed quantizers to export")
    for key, value in field.model.arch.items():
        if ckpt["arch"].get(key) != value:
            raise ValueError(f"--checkpoint {checkpoint}: architecture field {key!r} is {ckpt['arch'].get(key)!r}, "
                             f"the trained field's is {value!r}")
    policy = QuantPolicy(ckpt["settings"]["policy"], field.levels)
    bits = hardware_bits(policy, field.model.arch)
    quantizers = apply_policy(field.model, policy)
    field.model.load_state_dict(ckpt["model"])
    added = nn.ModuleDict()
    for name, b in bits.items():
        if name not in quantizers:
            q = FakeQuantizer(scheme_of(name), b, name=name)
            field.model.install_quantizer(name, q)
            quantizers[name] = added[name.replace(".", "__")] = q
    if len(added):
        calibrate_field(field.model, field.occupancy, field.train_data, n_samples=field.n_samples, observers=added)
    return policy, bits, quantizers


def hwrender(scene: str, preset: str, policy_spec: str | None, *, hw: str = "default", runs_root="runs",
             views: int | None = None, checkpoint: str | Path | None = None, breakdown: bool = False,
             progress: bool = True) -> dict:
    """Export the policy's integers and render the test views three ways (module doc); returns the summary.

    Args:
        policy_spec: ``uniform-<B>`` or a policy YAML (PTQ of the trained field); None with ``checkpoint``.
        views: render only the first ``views`` test views of training's stride (default all of them).
        checkpoint: a QAT-finalised field instead of PTQ: an LSQ+ fine-tuning checkpoint (``make compare``'s
            ``runs/final-*/checkpoint.pt``) of the trained field, with its own policy.
        breakdown: also attribute the hardware's difference to its parts (``BREAKDOWN``): two more renders
            per view, the fake-quant one with ``sh.out`` on ``density.l1.out``'s grid (the SH unit's), and the
            hardware's sample codes composited in float64 with and without 8-bit pixels.

    Raises:
        hw.config.ConfigError: a policy the top cannot run or a bad hardware preset (before any work).
        FileNotFoundError: no trained field / policy file.
    """
    from PIL import Image
    from tqdm import tqdm

    from common.atomic import atomic_write, atomic_write_text
    from flows.quantize import TrainedField, resolve_policy
    from nerf.metrics import psnr, ssim
    from nerf.render import render_image
    from nerf.train import test_stride
    from quant.int_export import export_int, load_int, save_int
    from quant.policy import QuantPolicy
    from quant.ptq import ptq
    from sim.mapping import hardware_bits, load_accelerator, top_params
    from sim.tlm.hash_encoder import HashEncoderTLM

    if (policy_spec is None) == (checkpoint is None):
        raise ValueError("give a policy (PTQ) or a fine-tuning checkpoint (QAT-finalised), not both or neither")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"--checkpoint {checkpoint}: no such file")
    if policy_spec is not None:  # a bad spec or a policy the top cannot run fails before the field loads
        _, early = resolve_policy(policy_spec, None)
        levels = sum(1 for n in early if n.startswith("hash.level"))
        hardware_bits(early, {"levels": levels, "features": 1, "hidden": 1, "geo_features": 1})
    accel = load_accelerator(hw)
    field = TrainedField(scene, preset, runs_root=runs_root, progress=progress)
    arch = field.model.arch
    t0 = time.perf_counter()
    if checkpoint is None:
        name, policy = resolve_policy(policy_spec, field.levels)
        name = Path(policy_spec).parent.name if name == "policy" else name  # runs/<run>/policy.yaml: the run's name
        bits = hardware_bits(policy, arch)
        quantizers = ptq(field.model, field.occupancy, field.train_data, QuantPolicy(bits, field.levels),
                         n_samples=field.n_samples)
    else:
        policy, bits, quantizers = _qat_model(field, Path(checkpoint))
        name = f"qat-{Path(checkpoint).parent.name}"
    top = top_params(accel, arch, policy)
    out = hwrender_dir(scene, preset, name, hw, runs_root)
    im = export_int(field.model, top, policy, bits)
    size = save_int(out / "model.nhwi", im)
    im = load_int(out / "model.nhwi", expect={"arch": arch, "model": im.model, "preset": accel.name})
    t_export = time.perf_counter() - t0
    data = field.test_data
    every = test_stride(field.settings["test_every"], len(data.images))
    indices = list(range(0, len(data.images), every))[:views]
    encoder = HashEncoderTLM(top.encoder, im.tables)
    widened = [n for n in bits if policy[n] != bits[n]]
    rows, times = [], []
    for i in tqdm(indices, desc="hwrender", unit="view", disable=not progress):
        _full_precision(quantizers, widened, True)
        fq, _ = render_image(field.model, field.occupancy, data, i, n_samples=field.n_samples)
        _full_precision(quantizers, widened, False)
        fq_hw, _ = render_image(field.model, field.occupancy, data, i, n_samples=field.n_samples)
        t = time.perf_counter()
        out_int = render_view_int(im, field.occupancy, data, i, n_samples=field.n_samples, encoder=encoder,
                                  float_composite=breakdown)
        times.append(time.perf_counter() - t)
        img, stats = out_int[:2]
        gt = data.images[i]
        rows.append({"view": i, "psnr_fq": psnr(fq, gt), "psnr_fq_hw": psnr(fq_hw, gt), "psnr_hw": psnr(img, gt),
                     "ssim_fq": ssim(fq, gt), "ssim_hw": ssim(img, gt),
                     "max_abs_diff": float(np.abs(img - fq_hw).max()), **stats})
        if breakdown:
            sh = quantizers["sh.out"]
            field.model.install_quantizer("sh.out", copy.deepcopy(quantizers["density.l1.out"]))
            _full_precision(quantizers, widened, True)
            fq_sh, _ = render_image(field.model, field.occupancy, data, i, n_samples=field.n_samples)
            _full_precision(quantizers, widened, False)
            field.model.install_quantizer("sh.out", sh)
            rows[-1].update(psnr_fq_sh_grid=psnr(fq_sh, gt), psnr_hw_float=psnr(out_int[2], gt),
                            psnr_hw_float_pixels=psnr(out_int[3], gt))
        for folder, pic in (("hw", img), ("diff", np.clip(np.abs(img - fq) * 10, 0, 1))):
            pil = Image.fromarray((pic * 255 + 0.5).astype(np.uint8))
            atomic_write(out / folder / f"{i:03d}.png", lambda tmp, pil=pil: pil.save(tmp, format="png"))
    field.model.clear_quantizers()
    mean = {k: float(np.mean([r[k] for r in rows])) for k in ("psnr_fq", "psnr_fq_hw", "psnr_hw", "ssim_fq",
                                                                "ssim_hw")}
    summary = {
        "scene": field.scene, "preset": preset, "policy": name, "hw": accel.name, "views": len(rows),
        "quantization": "PTQ" if checkpoint is None else f"LSQ+ ({checkpoint})",
        "size": [data.height, data.width], "bits_policy": dict(policy), "bits_hardware": bits,
        **{k: round(v, 4) for k, v in mean.items()},
        "delta_db": round(mean["psnr_hw"] - mean["psnr_fq"], 4),
        "delta_db_hw_widths": round(mean["psnr_hw"] - mean["psnr_fq_hw"], 4),
        "export_bytes": size, "export_seconds": round(t_export, 2),
        "seconds_per_view": round(float(np.median(times)), 3),
        "samples_per_view": float(np.mean([r["samples"] for r in rows])),
        "contributed_per_view": float(np.mean([r["contributed"] for r in rows])),
        "steps": {n: float(q.scale.detach()) for n, q in quantizers.items()},  # each component's grid step
        "top": top.to_dict(), "per_view": rows,
    }
    if breakdown:
        m = {k: float(np.mean([r[k] for r in rows])) for k in ("psnr_fq_sh_grid", "psnr_hw_float",
                                                               "psnr_hw_float_pixels")}
        summary["breakdown_db"] = {
            "sh_grid": round(m["psnr_fq_sh_grid"] - mean["psnr_fq"], 4),
            "datapath": round(m["psnr_hw_float"] - m["psnr_fq_sh_grid"], 4),
            "pixels_8bit": round(m["psnr_hw_float_pixels"] - m["psnr_hw_float"], 4),
            "compositor": round(mean["psnr_hw"] - m["psnr_hw_float_pixels"], 4)}
    write_json(out / "summary.json", summary)
    atomic_write_text(out / "table.md", "\n".join(table_lines(summary)) + "\n")
    return summary


def table_lines(s: dict) -> list[str]:
    """The summary as a Markdown table (one row), and the breakdown's when there is one."""
    lines = ["| scene | policy | hw | views | fake-quant PSNR | fake-quant at hw widths | hardware PSNR | "
            "hardware - fake-quant dB | SSIM fq / hw | s/view |",
            "|---|---|---|---|---|---|---|---|---|---|",
            f"| {Path(s['scene']).name} | {s['policy']} | {s['hw']} | {s['views']} | {s['psnr_fq']:.3f} | "
            f"{s['psnr_fq_hw']:.3f} | {s['psnr_hw']:.3f} | {s['delta_db']:+.3f} | {s['ssim_fq']:.4f} / "
            f"{s['ssim_hw']:.4f} | {s['seconds_per_view']:.2f} |"]
    if "breakdown_db" in s:
        lines += ["", "| part | dB | what |", "|---|---|---|"]
        lines += [f"| {k} | {v:+.3f} | {BREAKDOWN[k]} |" for k, v in s["breakdown_db"].items()]
    return lines
