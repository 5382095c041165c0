"""ECTensoRF: neural compression of TensoRF-VM feature planes into a real bitstream.

Pham et al., "Neural NeRF Compression" (ICML 2024), applied to a frozen pre-trained TensoRF (their
two-stage setting). Each feature plane P (1, R, H, W) of ``nerf.tensorf.feature_planes`` is replaced
by ``D(m * z)`` cropped to H x W, where

- ``z`` is a latent code (1, k R, ceil(H/4), ceil(W/4)) initialised to zero and quantized by rounding
  (straight-through in training, additive uniform noise for the rate term: Ballé et al. 2017); ``k`` is
  ``CompressSettings.latent_multiplier`` per kind (default 2: measured on lego, the density planes lose 6 dB
  when merely downsampled by 2, so a quarter-resolution latent needs more channels than the plane),
- ``D`` is the decoder: two stride-2 transposed convolutions (kernel 4, padding 1: exactly x2 each,
  k R -> k R -> R channels) with SELU between them; one decoder per plane kind (density, appearance),
  shared by the kind's three planes; stored as 8-bit codes with a float32 step per input channel,
- ``m`` is a learned binary mask per latent (spike and slab: a masked latent is 0 and costs no bits),
  sampled with the straight-through Gumbel-softmax (binary concrete; Jang et al. 2017, Maddison et al.
  2017) at a temperature annealed exponentially from 10 to 0.1,
- the rate is ``-log2 p(z)`` of the unmasked latents under a learned factorized prior per kind
  (``quant.entropy.FactorizedPrior``: Ballé et al. 2018, App. 6.1) plus the masks' binary entropy.

Loss (their eq. for the two-stage setting): ``render MSE + beta * importance-weighted plane MSE +
lambda * rate / (feature parameters)``, after ``recon_iterations`` steps without the rendering term (our
schedule: those steps cost ~1/3 of a rendering step), the importance of a plane texel being the sum of the rendering
weights (NeRF eq. 3's ``T_i alpha_i``) of the training samples that interpolate it, times their
bilinear coefficients (as in VQRF / Re:TensoRF).

The bitstream (``quant.entropy`` container, kind ``tensorf-ectensorf``) holds the range-coded latents,
the range-coded masks, the entropy models as integer frequency tables, the decoders (8-bit), the lines, the
basis matrix and the appearance MLP (those three as float16 through zstd: the file's model is the float16
one, and so is every render of the compressed model), and the occupancy grid's bits (zstd). ``decode_tensorf`` rebuilds
the field from the file alone; ``tests/test_ectensorf.py`` checks that it renders the same pixels.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import zstandard
from torch import nn

from quant.entropy import FactorizedPrior, decode_bits, encode_bits, pack_channels, read_bitstream, \
    unpack_channels, write_bitstream

__all__ = ["CompressSettings", "PlaneCodec", "compress_tensorf", "encode_tensorf", "decode_tensorf",
           "plane_importance", "round_rest_fp16", "model_from_header", "pack_fp16", "unpack_fp16", "pack_int8",
           "unpack_int8", "pack_occupancy", "KIND", "KINDS"]

KIND = "tensorf-ectensorf"
KINDS = ("density", "app")


@dataclass(frozen=True)
class CompressSettings:
    """ECTensoRF training settings. Units: iterations, rays per batch; ``lam`` weighs bits per feature parameter."""

    lam: float
    iterations: int = 500  # with the rendering loss
    recon_iterations: int = 2000  # before them: plane reconstruction + rate only (no rendering; ~3x cheaper)
    batch_rays: int = 2048
    lr_latent: float = 0.1
    lr_decoder: float = 2e-3
    lr_prior: float = 1e-2
    beta: float = 1.0  # weight of the importance-weighted plane reconstruction loss
    masks: bool = True
    importance: bool = True
    tau_start: float = 10.0
    tau_end: float = 0.1
    mask_init: float = 2.0  # initial mask logit (sigmoid 0.88: most latents start unmasked)
    latent_multiplier: tuple[int, int] = (2, 2)  # latent channels per plane channel: density, appearance
    importance_rays: int = 16384
    seed: int = 0

    def __post_init__(self):
        if not (isinstance(self.lam, (int, float)) and math.isfinite(self.lam) and self.lam > 0):
            raise ValueError(f"lambda must be a number > 0, not {self.lam!r}")
        if int(self.iterations) < 1:
            raise ValueError(f"iterations must be >= 1, not {self.iterations!r}")
        if int(self.recon_iterations) < 0:
            raise ValueError(f"recon_iterations must be >= 0, not {self.recon_iterations!r}")


def latent_shapes(planes: dict, latent_channels: dict) -> dict[str, tuple[int, int, int]]:
    """Plane name -> latent shape (channels of its kind, ceil(H / 4), ceil(W / 4))."""
    return {n: (int(latent_channels[n.split(".")[0]]), -(-h // 4), -(-w // 4)) for n, (c, h, w) in planes.items()}


def plane_channels(planes: dict) -> dict[str, int]:
    """Kind -> the channels R of its planes."""
    return {kind: next(s[0] for k, s in planes.items() if k.startswith(kind + ".")) for kind in KINDS}


def _decoder(latent: int, channels: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(latent, latent, 4, stride=2, padding=1), nn.SELU(),
                         nn.ConvTranspose2d(latent, channels, 4, stride=2, padding=1))


class PlaneCodec(nn.Module):
    """Latents, masks, decoders and entropy models of a TensoRF's feature planes (module doc).

    Args:
        planes: name -> (channels, height, width) (``nerf.tensorf.feature_planes``).
        masks: learn binary masks (False: every latent is coded; the "without masks" ablation).
        latent_multiplier: latent channels per plane channel of (density, appearance): a kind's latents have
            ``multiplier * R`` channels; the decoder's second convolution maps them back to R.
    """

    def __init__(self, planes: dict[str, tuple[int, int, int]], *, masks: bool = True, mask_init: float = 2.0,
                 latent_multiplier: tuple[int, int] = (1, 1)):
        super().__init__()
        self.shapes = dict(planes)
        self.use_masks = masks
        chans = plane_channels(planes)
        self.latent_channels = {kind: int(k) * chans[kind] for kind, k in zip(KINDS, latent_multiplier)}
        self.latent_shapes = latent_shapes(planes, self.latent_channels)
        self.latents = nn.ParameterDict({k.replace(".", "_"): nn.Parameter(torch.zeros(1, *s))
                                         for k, s in self.latent_shapes.items()})
        self.mask_logits = nn.ParameterDict({k.replace(".", "_"): nn.Parameter(torch.full((1, *s), float(mask_init)))
                                             for k, s in self.latent_shapes.items()})
        self.decoders = nn.ModuleDict({kind: _decoder(self.latent_channels[kind], c) for kind, c in chans.items()})
        self.priors = nn.ModuleDict({kind: FactorizedPrior(self.latent_channels[kind]) for kind in chans})

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "_")

    def mask(self, name: str, tau: float | None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Float (1, C, h, w) in {0, 1}: hard straight-through Gumbel sample at temperature ``tau`` (training)
        or the deterministic mask ``logit > 0`` (``tau`` None)."""
        logit = self.mask_logits[self._key(name)]
        if not self.use_masks:
            return torch.ones_like(logit)
        if tau is None:
            return (logit > 0).float()
        u = torch.rand(logit.shape, generator=generator).clamp(1e-6, 1 - 1e-6)
        soft = torch.sigmoid((logit + torch.log(u) - torch.log1p(-u)) / tau)  # binary concrete
        hard = (soft > 0.5).float()
        return hard + soft - soft.detach()

    def planes(self, *, tau: float | None, generator=None):
        """Decode every plane. Returns (name -> plane float (1, C, H, W), rate bits (tensor), mask share).

        Training (``tau`` set): straight-through rounding into the decoder, uniform noise for the rate.
        """
        out, bits, kept, total = {}, torch.zeros(()), torch.zeros(()), 0
        for name, (_, h, w) in self.shapes.items():
            kind = name.split(".")[0]
            c = self.latent_channels[kind]
            z = self.latents[self._key(name)]
            m = self.mask(name, tau, generator)
            zq = z + (torch.round(z) - z).detach()
            plane = self.decoders[kind](m * zq)[:, :, :h, :w]
            out[name] = plane
            noisy = z + (torch.rand(z.shape, generator=generator) - 0.5) if tau is not None else torch.round(z)
            bits = bits + self.priors[kind].bits(noisy[0].reshape(c, -1), mask=m[0].reshape(c, -1))
            kept = kept + m.sum()
            total += m.numel()
        share = kept / total
        if self.use_masks:  # the masks' own cost: binary entropy of the kept share, per latent
            p = share.clamp(1e-6, 1 - 1e-6)
            bits = bits + total * -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))
        return out, bits, float(share.detach())


def _ray_weights(model, occupancy, origins, dirs, *, n_samples: int):
    """Rendering weights of the samples the field evaluates: (points float (n, 3), weights float (n,))."""
    from nerf.render import model_t_min, ray_aabb, render_rays

    rec: list = []
    render_rays(model, origins, dirs, n_samples=n_samples, occupancy=occupancy, t_min=model_t_min(model), chunks=4,
                record=rec)
    if not rec:
        return torch.zeros(0, 3), torch.zeros(0)
    key = torch.cat([k for k, _ in rec])
    pts = torch.cat([p for _, p in rec])
    unit = dirs / dirs.norm(dim=-1, keepdim=True)
    t_near, t_far, _ = ray_aabb(origins, unit, model.bbox[0], model.bbox[1])
    delta = (t_far - t_near).clamp(min=0) / n_samples
    ray, step = key // n_samples, key % n_samples
    alpha = torch.zeros(origins.shape[0], n_samples)
    alpha[ray, step] = 1.0 - torch.exp(-model.density(pts)[0] * delta[ray])
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha + 1e-10], dim=1), dim=1)[:, :-1]
    return pts, (trans * alpha)[ray, step]


@torch.no_grad()
def plane_importance(model, occupancy, data, *, rays: int, n_samples: int, seed: int = 0, chunk: int = 4096):
    """Importance of every feature-plane texel: name -> float (H, W), normalised to mean 1.

    The sum over ``rays`` random training rays of each evaluated sample's rendering weight times its
    bilinear interpolation coefficient at the texel (the adjoint of ``grid_sample``).
    """
    from nerf.data import RayBatcher
    from nerf.tensorf import MAT_MODE, feature_planes

    shapes = feature_planes(model.arch)
    acc = {m: torch.zeros(1, 1, *shapes[f"density.plane{m}"][1:]) for m in range(3)}
    origins, dirs, _ = RayBatcher(data, rays, seed=seed).next_batch()
    for a in range(0, rays, chunk):
        o = torch.from_numpy(np.ascontiguousarray(origins[a:a + chunk]))
        d = torch.from_numpy(np.ascontiguousarray(dirs[a:a + chunk]))
        pts, w = _ray_weights(model, occupancy, o, d, n_samples=n_samples)
        xyz = model.normalize(pts)
        for m, (i, j) in enumerate(MAT_MODE):
            with torch.enable_grad():
                probe = torch.zeros_like(acc[m], requires_grad=True)
                s = F.grid_sample(probe, xyz[:, [i, j]].view(1, -1, 1, 2), align_corners=True).view(-1)
                (s * w).sum().backward()
            acc[m] += probe.grad
    out = {}
    for name in shapes:
        imp = acc[int(name[-1])][0, 0]
        out[name] = imp / imp.mean().clamp(min=1e-12)
    return out


def round_rest_fp16(model) -> None:
    """Lines, basis and MLP as the file stores them (float16)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "_planes." not in name:
                p.copy_(p.half().float())


def compress_tensorf(model, occupancy, data, settings: CompressSettings, *, n_samples: int, progress: bool = True,
                     state: dict | None = None, on_checkpoint=None, stop=None):
    """Learn latents, masks, decoders and entropy models for the planes of a frozen ``model``.

    Args:
        model, occupancy: a trained ``nerf.tensorf.TensoRF`` and its grid. The model is frozen and its lines,
            basis and MLP are rounded to float16 in place (as the file stores them); the codec's planes are
            installed as ``model.plane_override`` only while training.
        data: a training split (``nerf.data``) for the rendering loss and the importance.
        state: a dict from ``on_checkpoint`` to resume from.
        on_checkpoint: called with a state dict every 60 s of wall time and when ``stop()`` turns true.
        stop: a callable; when it returns true, training checkpoints and returns None.

    Returns:
        ``(codec, log)`` with ``log`` the per-iteration means of the last 100 steps (render MSE, rate bits),
        or None when stopped.
    """
    from tqdm import tqdm

    from nerf.data import RayBatcher, training_batch
    from nerf.render import render_rays
    from nerf.tensorf import feature_planes

    s = settings
    torch.manual_seed(s.seed)
    for p in model.parameters():
        p.requires_grad_(False)
    round_rest_fp16(model)
    shapes = feature_planes(model.arch)
    params = sum(math.prod(v) for v in shapes.values())
    targets = {name: model.plane(name).detach().clone() for name in shapes}
    codec = PlaneCodec(shapes, masks=s.masks, mask_init=s.mask_init, latent_multiplier=tuple(s.latent_multiplier))
    optim = torch.optim.Adam([
        {"params": [*codec.latents.parameters(), *codec.mask_logits.parameters()], "lr": s.lr_latent},
        {"params": codec.decoders.parameters(), "lr": s.lr_decoder},
        {"params": codec.priors.parameters(), "lr": s.lr_prior}])
    gen = torch.Generator().manual_seed(s.seed)
    batcher = RayBatcher(data, s.batch_rays, seed=s.seed)
    step, importance, seconds = 0, None, 0.0
    if state is not None:
        codec.load_state_dict(state["codec"])
        optim.load_state_dict(state["optim"])
        gen.set_state(state["generator"])
        batcher.rng.bit_generator.state = state["batcher"]
        step, importance, seconds = state["step"], state["importance"], state["seconds"]
    start = time.perf_counter() - seconds
    if state is None:
        start = time.perf_counter()
    if importance is None:
        importance = (plane_importance(model, occupancy, data, rays=s.importance_rays, n_samples=n_samples,
                                       seed=s.seed) if s.importance else
                      {name: torch.ones(shapes[name][1:]) for name in shapes})

    def snapshot():
        return {"codec": codec.state_dict(), "optim": optim.state_dict(), "generator": gen.get_state(),
                "batcher": batcher.rng.bit_generator.state, "step": step, "importance": importance,
                "seconds": time.perf_counter() - start,
                "settings": dataclasses.asdict(s)}

    total = s.recon_iterations + s.iterations
    bar = tqdm(total=total, initial=step, desc=f"ECTensoRF lambda={s.lam:g}", unit="it", disable=not progress)
    last, log = time.monotonic(), []
    try:
        while step < total:
            if stop is not None and stop():
                if on_checkpoint is not None:
                    on_checkpoint(snapshot())
                return None
            tau = s.tau_start * (s.tau_end / s.tau_start) ** (step / max(1, total - 1))
            planes, bits, share = codec.planes(tau=tau, generator=gen)
            render = torch.zeros(())
            if step >= s.recon_iterations:
                model.plane_override = planes
                o, d, target, bg = training_batch(batcher, s.batch_rays, "random", gen)
                rgb, _, _ = render_rays(model, o, d, n_samples=n_samples, occupancy=occupancy, perturb=True,
                                        generator=gen, background=bg)
                render = torch.mean((rgb - target) ** 2)
            recon = sum((importance[n] * (planes[n][0] - targets[n][0]) ** 2).mean() for n in shapes) / len(shapes)
            loss = render + s.beta * recon + s.lam * bits / params
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            step += 1
            log.append((float(render.detach()), float(bits.detach())))
            bar.update(1)
            if step % 10 == 0:
                mse, rate = log[-1]
                shown = {"psnr": f"{-10 * math.log10(max(mse, 1e-10)):.2f}"} if step > s.recon_iterations else {}
                bar.set_postfix(**shown, bpp=f"{rate / params:.3f}", kept=f"{share:.2f}")
            if on_checkpoint is not None and time.monotonic() - last >= 60:
                on_checkpoint(snapshot())
                last = time.monotonic()
    finally:
        model.plane_override = {}
        bar.close()
    tail = log[-100:]
    return codec, {"train_seconds": round(time.perf_counter() - start, 1),
                   "render_mse": float(np.mean([a for a, _ in tail])),
                   "rate_bits_estimate": float(np.mean([b for _, b in tail])), "feature_parameters": params}


@torch.no_grad()
def _decoded_planes(shapes, lshapes, decoders, latents: dict, masks: dict) -> dict[str, torch.Tensor]:
    out = {}
    for name, (c, h, w) in shapes.items():
        z = torch.from_numpy(latents[name].astype(np.float32)).view(1, *lshapes[name])
        m = torch.from_numpy(masks[name].astype(np.float32)).view_as(z)
        out[name] = decoders[name.split(".")[0]](m * z)[:, :, :h, :w].contiguous()
    return out


def pack_fp16(tensors: dict[str, torch.Tensor]) -> tuple[bytes, list]:
    """Tensors as float16, through zstd: (bytes, index [[name, shape], ...] for the header)."""
    index, chunks = [], []
    for name, t in tensors.items():
        a = t.detach().half().numpy()
        index.append([name, list(a.shape)])
        chunks.append(a.tobytes())
    return zstandard.ZstdCompressor(level=19).compress(b"".join(chunks)), index


def pack_occupancy(occupancy) -> bytes:
    """The occupancy grid's ``occupied`` flags, ``np.packbits`` then zstd (res^3 bits before zstd)."""
    return zstandard.ZstdCompressor(level=19).compress(np.packbits(occupancy.occupied.numpy()).tobytes())


def pack_int8(tensors: dict[str, torch.Tensor]) -> tuple[bytes, list]:
    """Weights (2+ dims) as symmetric 8-bit codes with one float32 step per slice of dim 0 (step = max |w| / 127),
    vectors (biases) as float16; all through zstd. Returns (bytes, index for the header)."""
    index, chunks = [], []
    for name, t in tensors.items():
        w = t.detach().float()
        if w.dim() >= 2:
            step = (w.abs().reshape(w.shape[0], -1).amax(1) / 127).clamp(min=1e-12)
            codes = torch.round(w / step.view(-1, *[1] * (w.dim() - 1))).clamp(-127, 127).to(torch.int8)
            chunks += [step.numpy().astype("<f4").tobytes(), codes.numpy().tobytes()]
            index.append([name, list(w.shape), "int8"])
        else:
            chunks.append(w.half().numpy().tobytes())
            index.append([name, list(w.shape), "float16"])
    return zstandard.ZstdCompressor(level=19).compress(b"".join(chunks)), index


def unpack_int8(data: bytes, index) -> dict[str, torch.Tensor]:
    """The inverse of ``pack_int8``: name -> float32 tensor (codes x step, the same float operations)."""
    data = zstandard.ZstdDecompressor().decompress(data)
    out, at = {}, 0
    for name, shape, fmt in index:
        n = math.prod(shape)
        if fmt == "int8":
            step = torch.from_numpy(np.frombuffer(data[at:at + 4 * shape[0]], "<f4").copy())
            at += 4 * shape[0]
            codes = torch.from_numpy(np.frombuffer(data[at:at + n], np.int8).reshape(shape).copy())
            at += n
            out[name] = codes.float() * step.view(-1, *[1] * (len(shape) - 1))
        else:
            half = np.frombuffer(data[at:at + 2 * n], np.float16).reshape(shape)
            out[name] = torch.from_numpy(half.astype(np.float32))
            at += 2 * n
    if at != len(data):
        raise ValueError(f"int8 section holds {len(data)} bytes, its index {at}")
    return out


def unpack_fp16(data: bytes, index) -> dict[str, torch.Tensor]:
    """The inverse of ``pack_fp16``: name -> float32 tensor."""
    data = zstandard.ZstdDecompressor().decompress(data)
    out, at = {}, 0
    for name, shape in index:
        n = math.prod(shape) * 2
        out[name] = torch.from_numpy(np.frombuffer(data[at:at + n], np.float16).reshape(shape).astype(np.float32))
        at += n
    if at != len(data):
        raise ValueError(f"float16 section holds {len(data)} bytes, its index {at}")
    return out


@torch.no_grad()
def encode_tensorf(model, occupancy, codec: PlaneCodec, path) -> dict:
    """Write the compressed field to ``path`` and install its decoded planes in ``model``.

    Decoders are rounded to their stored 8-bit codes (``pack_int8``) before the planes are decoded, so ``model`` (with
    ``plane_override`` set) is then exactly the model ``decode_tensorf(path)`` rebuilds.

    Returns:
        ``{"bytes": file size, "sections": name -> bytes, "kept_latents", "latents",
        "bits_per_feature_parameter": 8 * (latent + mask + table bytes) / feature parameters}``.
    """
    from nerf.tensorf import feature_planes

    shapes = feature_planes(model.arch)
    round_rest_fp16(model)
    dec_bytes, dec_index = pack_int8({f"{k}.{n}": p for k in KINDS for n, p in codec.decoders[k].named_parameters()})
    for name, t in unpack_int8(dec_bytes, dec_index).items():  # the decoder as the file stores it
        kind, rest_name = name.split(".", 1)
        codec.decoders[kind].get_parameter(rest_name).copy_(t)
    latents = {n: torch.round(codec.latents[codec._key(n)]).to(torch.int64).numpy().reshape(-1) for n in shapes}
    masks = {n: codec.mask(n, None).to(torch.bool).numpy().reshape(-1) for n in shapes}
    sections, header = {}, {"arch": model.arch, "planes": {n: list(s) for n, s in shapes.items()},
                            "masks": bool(codec.use_masks), "latent_channels": codec.latent_channels}
    for kind in KINDS:
        names = [n for n in shapes if n.startswith(kind + ".")]
        c = codec.latent_channels[kind]
        per_channel = [np.concatenate([latents[n].reshape(c, -1)[ch][masks[n].reshape(c, -1)[ch]] for n in names])
                       for ch in range(c)]
        data, meta = pack_channels(per_channel, codec.priors[kind])
        sections[f"latents.{kind}"] = data
        sections[f"tables.{kind}"] = meta.pop("tables")  # the entropy model, as integer frequency tables
        header[f"latents.{kind}"] = meta
    if codec.use_masks:
        sections["masks"] = encode_bits(np.concatenate([masks[n] for n in shapes]))
    rest = {n: p for n, p in model.named_parameters() if "_planes." not in n}
    rest_bytes, rest_index = pack_fp16(rest)
    sections["decoders"], header["decoders"] = dec_bytes, dec_index
    sections["rest"], header["rest"] = rest_bytes, rest_index
    sections["occupancy"] = pack_occupancy(occupancy)
    header["occupancy"] = {"res": occupancy.res, "threshold": occupancy.threshold}
    size = write_bitstream(path, KIND, header, sections)
    model.plane_override = _decoded_planes(shapes, codec.latent_shapes, codec.decoders, latents,
                                           masks if codec.use_masks else {n: np.ones_like(masks[n]) for n in shapes})
    params = sum(math.prod(v) for v in shapes.values())
    coded = sum(len(v) for k, v in sections.items() if k.startswith(("latents.", "tables.")) or k == "masks")
    return {"bytes": size, "sections": {k: len(v) for k, v in sections.items()},
            "kept_latents": int(sum(m.sum() for m in masks.values())),
            "latents": int(sum(m.size for m in masks.values())),
            "bits_per_feature_parameter": 8 * coded / params, "feature_parameters": params}


@torch.no_grad()
def decode_tensorf(path):
    """Rebuild ``(model, occupancy)`` from a ``tensorf-ectensorf`` bitstream alone.

    Raises:
        quant.entropy.BitstreamError: not such a file, truncated, corrupted (checksum) or another kind.
    """
    header, sections = read_bitstream(path, KIND)
    shapes = {n: tuple(s) for n, s in header["planes"].items()}
    model, occ = model_from_header(header, sections)
    lchans = {kind: int(header["latent_channels"][kind]) for kind in KINDS}
    lshapes = latent_shapes(shapes, lchans)
    decoders = nn.ModuleDict({kind: _decoder(lchans[kind], c) for kind, c in plane_channels(shapes).items()})
    dec = unpack_int8(sections["decoders"], header["decoders"])
    for name, p in decoders.named_parameters():
        p.copy_(dec[name])
    sizes = {n: math.prod(s) for n, s in lshapes.items()}
    if header["masks"]:
        bits = decode_bits(sections["masks"], sum(sizes.values()))
        masks, at = {}, 0
        for n in shapes:
            masks[n] = bits[at:at + sizes[n]].astype(bool)
            at += sizes[n]
    else:
        masks = {n: np.ones(sizes[n], bool) for n in shapes}
    latents = {}
    for kind in KINDS:
        names = [n for n in shapes if n.startswith(kind + ".")]
        c = lchans[kind]
        meta = {**header[f"latents.{kind}"], "tables": sections[f"tables.{kind}"]}
        per_channel = unpack_channels(sections[f"latents.{kind}"], meta)
        cursor = [0] * c
        for n in names:
            z = np.zeros((c, sizes[n] // c), np.int64)
            m = masks[n].reshape(c, -1)
            for ch in range(c):
                k = int(m[ch].sum())
                z[ch, m[ch]] = per_channel[ch][cursor[ch]:cursor[ch] + k]
                cursor[ch] += k
            latents[n] = z.reshape(-1)
    model.plane_override = _decoded_planes(shapes, lshapes, decoders, latents, masks)
    return model, occ


def model_from_header(header: dict, sections: dict):
    """The TensoRF of a file's ``arch`` with its float16 ``rest`` loaded (planes left to the caller), and the
    occupancy grid of its ``occupancy`` bits."""
    from nerf.occupancy import OccupancyGrid
    from nerf.tensorf import TensoRF

    model = TensoRF(**dict(header["arch"]))
    own = dict(model.named_parameters())
    for n, t in unpack_fp16(sections["rest"], header["rest"]).items():
        own[n].copy_(t)
    meta = header["occupancy"]
    occ = OccupancyGrid(model.bbox, threshold=meta["threshold"], res=meta["res"])
    raw = zstandard.ZstdDecompressor().decompress(sections["occupancy"])
    flags = np.unpackbits(np.frombuffer(raw, np.uint8))[:occ.res ** 3].astype(bool)
    occ.occupied = torch.from_numpy(flags.copy())
    return model, occ
