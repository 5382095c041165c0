"""``make kilo-compare``: Instant-NGP against KiloNeRF on one scene and accelerator preset.

Rows per model: full precision, uniform PTQ at ``bits``, and the searched policies: for Instant-NGP the
MDL pick of ``make compare``, for KiloNeRF the best policy of every ``make search MODEL=kilonerf`` run of
the scene and preset (``runs/search-<scene>-<preset>-kilonerf-<objective>/policy.yaml``), applied by PTQ.
Columns: PSNR / SSIM on the test views, frame latency (800 x 800) split
into compute (the bottleneck engine's busy cycles), weight switching (KiloNeRF: cycles waiting for the
next cell's bank) and memory stalls (Instant-NGP: hash-table DRAM stalls; KiloNeRF: the DRAM-bound part
of the switching), model bytes and area (generic cells of the two MLP engines, ``hw.array_area``).

Instant-NGP's rows are read from ``runs/compare-<scene>-<preset>-<hw>/summary.json`` (run ``make compare``
first). KiloNeRF's are measured here from ``runs/kilonerf-<scene>-<preset>/``: PTQ calibrated on training
rays (``quant.ptq.ptq``) and scored on the same test views as its summary; latency from
``sim.kilo_perf.kilo_frame_perf`` on the samples of test view 0 rendered at 800 x 800 by the
full-precision KiloNeRF (the same samples for every policy, as ``make compare`` does for Instant-NGP).
Writes ``runs/kilo-compare-<scene>-<preset>-<hw>/``: ``summary.json``, ``table.md``, ``table.csv``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


from flows.runs import scene_name

__all__ = ["kilo_compare", "model_bytes_kilo"]

FRAME = 800


def _columns():
    from flows.report import Column

    num = lambda f: (lambda v: f.format(v))  # noqa: E731
    return [Column("model", "model", "model"), Column("policy", "policy", "policy"),
            Column("psnr", "psnr_db", "PSNR (dB)", num("{:.2f}")), Column("ssim", "ssim", "SSIM", num("{:.4f}")),
            Column("latency_ms", "latency_ms", "latency (ms)", num("{:,.1f}")),
            Column("compute_ms", "compute_ms", "compute (ms)", num("{:,.1f}")),
            Column("switch_ms", "switch_ms", "weight switching (ms)", num("{:,.1f}")),
            Column("memory_stall_ms", "memory_stall_ms", "memory stalls (ms)", num("{:,.1f}")),
            Column("model_bytes", "model_bytes", "model bytes", num("{:,}")),
            Column("area_cells", "area_cells", "area (MLP cells)", num("{:,}")),
            Column("visits", "cell_visits", "cell visits", num("{:,}"))]


def model_bytes_kilo(policy, arch, networks: int) -> int:
    """Bytes of ``networks`` tiny networks: each weight at its layer's ``.weight`` bits, biases at 32 bits."""
    from nerf.layout import kilonerf_layers

    bits = 0
    for ly in kilonerf_layers(arch).values():
        bits += ly.in_size * ly.out_size * policy[ly.weight] + ly.out_size * 32
    return networks * -(-bits // 8)


def _ngp_rows(compare_dir: Path) -> list[dict]:
    path = compare_dir / "summary.json"
    if not path.exists():
        raise FileNotFoundError(f"no {path}: run `make compare` for this scene, preset and HW first")
    s = json.loads(path.read_text())
    pick = s["picks"]["mdl"]["method"]
    out = []
    for r in s["rows"]:
        if r["method"] not in ("FP (32b)", "PTQ 8b", pick):
            continue
        label = {"FP (32b)": "full precision", "PTQ 8b": "PTQ uniform 8"}.get(r["method"], f"searched ({pick})")
        row = {"model": "Instant-NGP", "policy": label, "psnr": r["psnr"], "ssim": r["ssim"],
               "model_bytes": round(r["storage_mb"] * 1e6), "area_cells": r.get("area")}
        if r.get("latency_ms") is not None:
            busy = r["engines"][r["bottleneck"]]["busy_cycles"]
            ms = r["latency_ms"] / r["cycles"]
            row.update(latency_ms=r["latency_ms"], compute_ms=round(busy * ms, 1), switch_ms=0.0,
                       memory_stall_ms=round(r["stall_share"] * r["latency_ms"], 1))
        out.append(row)
    return out


def kilo_compare(scene: str, preset: str, *, hw: str = "default", bits=(8, 6, 4), runs_root="runs",
                 area: bool = True, progress: bool = True) -> dict:
    """The comparison (module doc). Returns the summary (also ``summary.json``).

    Raises:
        FileNotFoundError: no finished KiloNeRF or no ``make compare`` summary (naming the command).
        ValueError: a bit width outside [2, 16] (named).
    """
    import torch

    from common.atomic import atomic_write_text
    from flows.compare import mlp_area
    from flows.kilonerf import kilo_dir
    from flows.report import markdown_table, write_csv
    from flows.runs import open_field
    from nerf.kilo_train import load_kilonerf
    from nerf.kilonerf import frame_cells
    from nerf.render import evaluate
    from nerf.train import test_stride
    from quant.policy import KiloPolicy
    from quant.ptq import ptq
    from sim.kilo_perf import kilo_engines_for_policy, kilo_frame_perf
    from sim.mapping import load_accelerator

    for b in bits:
        if isinstance(b, bool) or not isinstance(b, int) or not 2 <= b <= 16:
            raise ValueError(f"bits must be integers in [2, 16], not {b!r}")
    accel = load_accelerator(hw)
    kdir = kilo_dir(scene, preset, runs_root)
    if not (kdir / "summary.json").exists():
        raise FileNotFoundError(f"no finished KiloNeRF in {kdir}: run `make kilonerf SCENE={scene} PRESET={preset}`")
    ngp = _ngp_rows(Path(runs_root) / f"compare-{scene_name(scene)}-{preset}-{hw}")
    t0 = time.monotonic()
    ksum = json.loads((kdir / "summary.json").read_text())
    model, occ, ckpt = load_kilonerf(kdir / "checkpoint.pt")
    teacher = open_field(scene, preset, runs_root)
    n_samples = teacher.n_samples
    every = test_stride(teacher.settings["test_every"], len(teacher.test_data.images))
    cells, rays = frame_cells(model, occ, teacher.test_data, 0, n_samples=n_samples, size=FRAME)
    networks = int(ksum["networks_trained"])
    rows = [{"model": "KiloNeRF", "policy": "full precision", "psnr": ksum["psnr_test"], "ssim": ksum["ssim_test"],
             "model_bytes": model_bytes_kilo(KiloPolicy.uniform(32), model.arch, networks)}]
    policies = [(f"PTQ uniform {b}", KiloPolicy.uniform(b)) for b in bits]
    for run in sorted(Path(runs_root).glob(f"search-{scene_name(scene)}-{preset}-kilonerf-*/policy.yaml")):
        policies.append((f"searched ({run.parent.name.rsplit('-kilonerf-', 1)[1]})", KiloPolicy.load(run)))
    for label, policy in policies:
        with torch.no_grad():
            ptq(model, occ, teacher.train_data, policy, n_samples=n_samples)
            m = evaluate(model, occ, teacher.test_data, n_samples=n_samples, every=every, progress=progress)
        model.clear_quantizers()
        perf = kilo_frame_perf(accel, model.arch, policy, cells, rays)
        ms = perf.latency_ms / max(perf.cycles, 1)
        e = perf.engines[perf.bottleneck]
        row = {"model": "KiloNeRF", "policy": label, "psnr": round(m["psnr"], 3),
               "ssim": round(m["ssim"], 4), "latency_ms": round(perf.latency_ms, 1),
               "compute_ms": round(e.compute * ms, 1), "switch_ms": round(e.switch * ms, 1),
               "memory_stall_ms": round(e.memory_stall * ms, 1),
               "model_bytes": model_bytes_kilo(policy, model.arch, networks), "visits": perf.visits,
               "perf": perf.to_dict()}
        if area:
            mlp = kilo_engines_for_policy(accel, model.arch, policy)
            row["area_cells"] = mlp_area(mlp, "xc7", Path("build/area"))["cells"]
        rows.append(row)
    table = ngp + rows
    out = Path(runs_root) / f"kilo-compare-{scene_name(scene)}-{preset}-{hw}"
    keep = ("grid", "networks", "networks_trained", "psnr_test", "teacher_psnr_test", "train_seconds_total")
    summary = {"scene": scene, "preset": preset, "hw": hw, "frame": [FRAME, FRAME],
               "frame_samples_kilonerf": int(len(cells)), "kilonerf": {k: ksum[k] for k in keep},
               "rows": table, "wall_seconds": round(time.monotonic() - t0, 1)}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(out / "table.md", markdown_table(table, _columns()))
    write_csv(out / "table.csv", table, _columns())
    return summary
