"""Ray sampling, empty-space skipping, early ray termination and volume rendering.

Volume rendering: Mildenhall et al., NeRF, ECCV 2020, eq. 3:
``C = sum_i T_i (1 - exp(-sigma_i delta_i)) c_i + T_N * background``, ``T_i = prod_{j<i} exp(-sigma_j delta_j)``.
Empty-space skipping uses an ``OccupancyGrid`` (Instant-NGP, KiloNeRF); early ray termination stops
marching a ray once its transmittance drops below ``t_min`` (KiloNeRF Sec. 3.3, Instant-NGP).

Whole views: ``render_image`` renders one camera of a scene split, ``evaluate`` scores every k-th
view of a split (PSNR, SSIM) and can write the renders as PNGs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["ray_aabb", "ray_samples", "render_rays", "RenderStats", "render_image", "evaluate", "sample_positions",
           "model_t_min", "T_MIN_DEFAULT"]

#: Early ray termination of whole-view renders: transmittance below which a ray stops (Instant-NGP's 1e-4).
T_MIN_DEFAULT = 1e-4


def model_t_min(model, t_min: float | None = None) -> float:
    """``t_min`` if given, else the model's own threshold (its ``t_min`` attribute: KiloNeRF's 0.01), else 1e-4."""
    return float(t_min if t_min is not None else getattr(model, "t_min", T_MIN_DEFAULT))


def ray_aabb(origins: torch.Tensor, dirs: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor):
    """Slab test. origins, dirs: float (R, 3); returns (t_near (R,), t_far (R,), hit bool (R,))."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t0, t1 = (lo - origins) * inv, (hi - origins) * inv
    t_near = torch.minimum(t0, t1).amax(-1).clamp(min=0.0)
    t_far = torch.maximum(t0, t1).amin(-1)
    return t_near, t_far, t_far > t_near


def ray_samples(origins: torch.Tensor, dirs: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, *, n_samples: int,
                perturb: bool = False, generator: torch.Generator | None = None):
    """Where ``render_rays`` samples: ``n_samples`` equal steps across the box [lo, hi] along each ray, at the
    step midpoints (jittered uniformly within the step when ``perturb``).

    Args:
        origins, dirs: float (R, 3) world units; dirs need not be unit length.

    Returns:
        ``(unit dirs (R, 3), t (R, S) depths, delta (R,) step length, hit bool (R,))``.
    """
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    r = origins.shape[0]
    t_near, t_far, hit = ray_aabb(origins, dirs, lo, hi)
    steps = torch.arange(n_samples, device=origins.device, dtype=origins.dtype)
    u = torch.rand(r, n_samples, device=origins.device, generator=generator) if perturb else torch.full(
        (r, n_samples), 0.5, device=origins.device)
    delta = (t_far - t_near).clamp(min=0.0) / n_samples  # (R,)
    return dirs, t_near[:, None] + (steps[None, :] + u) * delta[:, None], delta, hit


@dataclass
class RenderStats:
    """Work counters of one render call: samples on rays inside the box, and those the field evaluated."""

    rays: int = 0
    samples_in_box: int = 0
    samples_evaluated: int = 0

    def add(self, other: "RenderStats") -> None:
        self.rays += other.rays
        self.samples_in_box += other.samples_in_box
        self.samples_evaluated += other.samples_evaluated


def render_rays(model, origins: torch.Tensor, dirs: torch.Tensor, *, n_samples: int, occupancy=None,
                perturb: bool = False, background: float = 1.0, t_min: float = 0.0, chunks: int = 1,
                generator: torch.Generator | None = None, record: list | None = None):
    """Render rays through the bounding box of ``model``.

    Args:
        origins, dirs: float (R, 3) world units; dirs need not be unit length.
        n_samples: samples per ray across the box (uniform in t, jittered when ``perturb``).
        occupancy: an ``OccupancyGrid``; samples in empty cells are skipped (density 0).
        t_min: early ray termination: after each of ``chunks`` segments along the rays, rays whose
            transmittance is below ``t_min`` are not marched further (0 disables).
        record: a list that receives, per segment, ``(key, points)`` of the samples the field
            evaluated: int64 (n,) ``ray * n_samples + step`` and float (n, 3) world positions
            (``sample_positions``).

    Returns:
        ``(rgb (R, 3), opacity (R,), RenderStats)``.
    """
    dirs, t, delta, hit = ray_samples(origins, dirs, model.bbox[0], model.bbox[1], n_samples=n_samples,
                                      perturb=perturb, generator=generator)
    r = origins.shape[0]
    stats = RenderStats(rays=r, samples_in_box=int(hit.sum()) * n_samples)
    rgb = torch.zeros(r, 3, device=origins.device)
    trans = torch.ones(r, device=origins.device)
    bounds = torch.linspace(0, n_samples, chunks + 1).round().long().tolist()
    alive = hit.clone()
    for a, b in zip(bounds[:-1], bounds[1:]):
        if t_min > 0:
            alive &= trans > t_min
        rays = alive.nonzero().squeeze(1)
        if rays.numel() == 0:
            break
        tt = t[rays, a:b]  # (r', s)
        pts = origins[rays, None, :] + dirs[rays, None, :] * tt[..., None]
        flat = pts.reshape(-1, 3)
        keep = torch.ones(flat.shape[0], dtype=torch.bool, device=flat.device)
        if occupancy is not None:
            keep = occupancy.query(flat)
        sigma = torch.zeros(flat.shape[0], device=flat.device)
        color = torch.zeros(flat.shape[0], 3, device=flat.device)
        idx = keep.nonzero().squeeze(1)
        stats.samples_evaluated += int(idx.numel())
        if record is not None and idx.numel():
            step = torch.arange(a, b, device=flat.device).repeat(rays.numel())
            ray = rays.repeat_interleave(b - a)
            record.append(((ray * n_samples + step)[idx].cpu(), flat[idx].detach().cpu()))
        if idx.numel():
            d = dirs[rays, None, :].expand(-1, b - a, -1).reshape(-1, 3)
            s_k, c_k = model(flat[idx], d[idx])
            sigma = sigma.index_put((idx,), s_k)
            color = color.index_put((idx,), c_k)
        sigma = sigma.reshape(-1, b - a)
        color = color.reshape(-1, b - a, 3)
        alpha = 1.0 - torch.exp(-sigma * delta[rays, None])
        seg_trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-10], dim=1), dim=1)
        w = trans[rays, None] * seg_trans[:, :-1] * alpha
        rgb = rgb.index_add(0, rays, (w[..., None] * color).sum(1))
        trans = trans.index_put((rays,), trans[rays] * seg_trans[:, -1])
    opacity = 1.0 - trans
    rgb = rgb + trans[:, None] * background
    return rgb, opacity, stats


@torch.no_grad()
def render_image(model, occupancy, data, index: int, *, n_samples: int, chunk: int = 8192, device="cpu",
                 t_min: float | None = None):
    """Render view ``index`` of ``data`` (a ``nerf.data`` split: height, width, focal, poses).

    Rays go through ``render_rays`` in chunks of ``chunk`` rays with the occupancy grid and early ray
    termination at transmittance ``t_min`` (default ``model_t_min(model)``). Returns ``(image, stats)``:
    float32 (H, W, 3) numpy in [0, 1]
    and the summed ``RenderStats``.
    """
    from nerf.data import get_rays

    o, d = get_rays(data.height, data.width, data.focal, data.poses[index], **data.intrinsics)
    o, d = torch.from_numpy(np.asarray(o, np.float32)).to(device), torch.from_numpy(np.asarray(d, np.float32)).to(device)
    out, total = [], RenderStats()
    for a in range(0, o.shape[0], chunk):
        rgb, _, stats = render_rays(model, o[a:a + chunk], d[a:a + chunk], n_samples=n_samples,
                                    occupancy=occupancy, t_min=model_t_min(model, t_min), chunks=4)
        out.append(rgb.clamp(0, 1).cpu())
        total.add(stats)
    return torch.cat(out).reshape(data.height, data.width, 3).numpy(), total


@torch.no_grad()
def sample_positions(model, occupancy, data, views, *, n_samples: int, height: int | None = None,
                     width: int | None = None, chunk: int = 8192, with_rays: bool = False):
    """The sample positions the accelerator processes for ``views`` of ``data``: float64 (N, 3) in [0, 1)^3.

    Each view is rendered as ``render_image`` does (``render_rays`` with the occupancy grid and early ray
    termination at the model's ``model_t_min``, 4 segments), at ``height`` x ``width`` pixels (default: the
    split's; another size scales the focal length and principal point with the width and height, so
    the same field of view is sampled more or less densely). Kept are the samples the field evaluates,
    i.e. after empty-space skipping and early ray termination.

    Order (the accelerator's input order): views in the given order; within a view rays in scanline
    order (pixel rows top to bottom, each row left to right); within a ray its samples near to far.
    Positions are normalised by the model's bounding box, ``(p - lo) / (hi - lo)``, clipped below 1
    (``sim.tlm.hash_encoder.to_fixed`` turns them into fixed-point codes). Plain numpy, so ``sim``
    needs no torch. ``with_rays``: also return each sample's ray, int64 (N,), numbered across the views
    (view v's ray r is ``v * height * width + r``, ``r`` in scanline order).
    """
    from nerf.cameras import get_rays

    lo, hi = model.bbox[0].double().cpu(), model.bbox[1].double().cpu()
    h, w = height or data.height, width or data.width
    intr = dict(data.intrinsics)
    sx, sy = w / data.width, h / data.height
    focal = data.focal * sx
    if intr.get("focal_y") is not None:
        intr["focal_y"] = intr["focal_y"] * sy
    if intr.get("cx") is not None:
        intr["cx"] = intr["cx"] * sx
    if intr.get("cy") is not None:
        intr["cy"] = intr["cy"] * sy
    out, ray_ids = [], []
    for v, index in enumerate(views):
        o, d = get_rays(h, w, focal, data.poses[index], **intr)
        o, d = torch.from_numpy(np.asarray(o, np.float32)), torch.from_numpy(np.asarray(d, np.float32))
        keys, pts = [], []
        for a in range(0, o.shape[0], chunk):
            rec: list = []
            render_rays(model, o[a:a + chunk], d[a:a + chunk], n_samples=n_samples, occupancy=occupancy,
                        t_min=model_t_min(model), chunks=4, record=rec)
            for k, p in rec:
                keys.append(k + a * n_samples)
                pts.append(p)
        if not keys:
            continue
        key, p = torch.cat(keys), torch.cat(pts).double()
        order = torch.argsort(key, stable=True)
        out.append(((p[order] - lo) / (hi - lo)).numpy())
        ray_ids.append((key[order] // n_samples).numpy() + v * h * w)
    u = np.clip(np.concatenate(out), 0.0, np.nextafter(1.0, 0.0)) if out else np.zeros((0, 3), np.float64)
    if with_rays:
        return u, (np.concatenate(ray_ids) if ray_ids else np.zeros(0, np.int64))
    return u


def evaluate(model, occupancy, data, *, n_samples: int, every: int = 1, out_dir: Path | None = None,
             progress: bool = True, t_min: float | None = None) -> dict:
    """PSNR (dB) and SSIM over every ``every``-th view of ``data``; with ``out_dir``, ``NNN.png`` per view.
    ``t_min``: early ray termination (``render_image``).

    Returns ``{"psnr", "ssim", "views", "samples_evaluated_per_view", "samples_in_box_per_view"}``
    (means over the views; samples are field evaluations and samples inside the scene box).
    """
    from PIL import Image
    from tqdm import tqdm

    from common.atomic import atomic_write
    from nerf.metrics import psnr, ssim

    model.eval()
    views = list(range(0, len(data.images), every))
    ps, ss, evaluated, in_box = [], [], 0, 0
    for i in tqdm(views, desc="evaluate", unit="view", disable=not progress, leave=False):
        img, stats = render_image(model, occupancy, data, i, n_samples=n_samples, t_min=t_min)
        ps.append(psnr(img, data.images[i]))
        ss.append(ssim(img, data.images[i]))
        evaluated += stats.samples_evaluated
        in_box += stats.samples_in_box
        if out_dir is not None:
            pil = Image.fromarray((img * 255 + 0.5).astype(np.uint8))
            atomic_write(Path(out_dir) / f"{i:03d}.png", lambda tmp: pil.save(tmp, format="png"))
    return {"psnr": float(np.mean(ps)), "ssim": float(np.mean(ss)), "views": len(views),
            "samples_evaluated_per_view": evaluated / len(views), "samples_in_box_per_view": in_box / len(views)}
