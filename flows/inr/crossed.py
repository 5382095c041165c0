"""The crossed INR table over several images: which rotation placement and calibration win at each B.

Reads the ``summary.json`` of every image's run (``runs/<root>/inr-<image>/``, written by ``make inr``
with crossed settings, ``flows.inr.methods``) and writes ``<root>/crossed.{json,md,png}``:

* every setting's PSNR (dB) averaged over the images, at each B (W8A8 ... W3A3), the best of each B in
  bold; only settings and bitwidths that every image has are averaged;
* the answer per B and training (PTQ / QAT): the best uniform setting (rotation ``none``) against the
  best DHQ setting placed ``all`` or ``paper`` (which always rotate) and the best ``rule`` setting
  (which rotates only where that lowers the quantization error, possibly nowhere, and is then
  uniform): mean PSNR, the difference to uniform, how many tensors (weights and layer inputs) it
  rotates on average, and on how many images it beats uniform (each image's own best of each group);
* ``crossed.png``: mean PSNR against B of those three, PTQ and QAT.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from flows.inr.settings import run_dir
from flows.inr.summary import setting_rows
from flows.report import Column, markdown_table, write_json

__all__ = ["DEFAULT_IMAGES", "crossed_table"]

#: The four pictures of the first table, then two more from the same wheel (``nerf.images``).
DEFAULT_IMAGES = ("camera", "astronaut", "coffee", "chelsea", "rocket", "coins")


def _load(root: Path, image: str) -> dict:
    path = run_dir(image, root) / "summary.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"no results for image {image!r}: {path} is missing (run `make inr-cross` or "
                         f"`python -m flows.cli --runs {root} inr --image {image} ...` first)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None


def _psnr(summary: dict) -> dict[tuple[str, int], float]:
    return {(m, r["bits"]): r[m]["psnr"] for r in summary["rows"] for m in summary["methods"] if m in r}


def _best(methods: dict, psnr, bits: int, rotations: tuple[str, ...], training: str) -> str | None:
    group = [m for m, st in methods.items() if st["rotation"] in rotations and st["training"] == training
             and psnr(m, bits) is not None]
    return max(group, key=lambda m: psnr(m, bits)) if group else None


#: The groups compared: uniform, DHQ placed where it always rotates, and DHQ's per-tensor rule (which
#: may rotate nothing, and is then uniform).
GROUPS = {"uniform": ("none",), "dhq": ("all", "paper"), "rule": ("rule",)}


class _Rotations:
    """The tensors a setting rotated on an image at B: from its cell, else recomputed on the FP model
    (``flows.inr.cells.layer_rotations``; cells of older runs do not record it)."""

    def __init__(self, root: Path, summaries: dict):
        self.root, self.summaries, self._inputs = root, summaries, {}

    def _model(self, image: str):
        if image not in self._inputs:
            from flows.inr.fit import ImageData, fp_model
            from flows.inr.settings import InrSettings

            cfg = InrSettings(**self.summaries[image]["settings"])
            data = ImageData(cfg)
            self._inputs[image] = (cfg, data, fp_model(cfg, data, run_dir(image, self.root), False)[0])
        return self._inputs[image]

    def count(self, image: str, method: str, bits: int) -> int:
        row = next(r for r in self.summaries[image]["rows"] if r["bits"] == bits)
        rotated = row[method].get("rotated")
        if rotated is None:
            from flows.inr.cells import layer_rotations

            cfg, data, model = self._model(image)
            rotated = layer_rotations(model, method, bits, cfg, data.coords)
        return sum(map(sum, rotated))


def _answers(methods: dict, mean, per_image: dict, bits: Sequence[int], rotations: _Rotations) -> list[dict]:
    tensors = 2 * len(next(iter(rotations.summaries.values()))["model"]["layers"])
    rows = []
    for b in bits:
        for training in ("ptq", "qat"):
            best = {g: _best(methods, mean, b, rots, training) for g, rots in GROUPS.items()}
            if best["uniform"] is None:
                continue
            row = {"bits": b, "training": training, "uniform": best["uniform"],
                   "uniform_psnr": mean(best["uniform"], b)}
            for g in ("dhq", "rule"):
                if best[g] is None:
                    continue
                wins = 0
                for p in per_image.values():
                    own = {k: _best(methods, lambda m, bb: p.get((m, bb)), b, GROUPS[k], training)
                           for k in ("uniform", g)}
                    wins += p[(own[g], b)] > p[(own["uniform"], b)]
                counts = [rotations.count(image, best[g], b) for image in per_image]
                row |= {g: best[g], f"{g}_psnr": mean(best[g], b),
                        f"{g}_delta": round(mean(best[g], b) - mean(best["uniform"], b), 3),
                        f"{g}_rotated": f"{sum(counts) / len(counts):.1f} / {tensors}",
                        f"{g}_wins": f"{wins} / {len(per_image)}"}
            rows.append(row)
    return rows


def _group_columns(g: str, name: str) -> tuple[Column, ...]:
    return (Column(g, header=f"best {name}"), Column(f"{g}_psnr", header="dB", fmt="{:.2f}".format),
            Column(f"{g}_delta", header="vs uniform", fmt="{:+.2f}".format),
            Column(f"{g}_rotated", header="tensors rotated"), Column(f"{g}_wins", header="images won"))


ANSWER_COLUMNS = (Column("bits", header="B"), Column("training", header="training"),
                  Column("uniform", header="best uniform"),
                  Column("uniform_psnr", header="dB", fmt="{:.2f}".format),
                  *_group_columns("dhq", "DHQ (all / paper)"), *_group_columns("rule", "DHQ rule"))


def _plot(answers: list[dict], bits: Sequence[int], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from common.atomic import atomic_write

    fig, ax = plt.subplots(figsize=(6, 4))
    names = {"uniform": "uniform", "dhq": "DHQ all / paper", "rule": "DHQ rule"}
    for training, style in (("ptq", "--"), ("qat", "-")):
        for kind, colour in (("uniform", "tab:blue"), ("dhq", "tab:red"), ("rule", "tab:green")):
            pts = sorted((r["bits"], r[f"{kind}_psnr"]) for r in answers
                         if r["training"] == training and f"{kind}_psnr" in r)
            if pts:
                ax.plot(*zip(*pts), style, color=colour, marker="o", label=f"best {names[kind]}, {training.upper()}")
    ax.set_xlabel("bits B (weights and activations, WBAB)")
    ax.set_ylabel("mean PSNR (dB)")
    ax.set_xticks(sorted(bits))
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)


def crossed_table(images: Sequence[str] = DEFAULT_IMAGES, *, root: str | Path = "runs/inr-cross") -> dict:
    """Aggregate the images' crossed runs (module doc); writes ``crossed.json``, ``crossed.md``, ``crossed.png``.

    Args:
        images: ``nerf.images.IMAGES`` names, each with a finished or partial run under ``root``.
        root: the runs folder the image runs were written to (``python -m flows.cli --runs <root> inr``).

    Returns:
        ``{"images", "bits", "settings": [{method, rotation, calibration, granularity, training, <B>: mean
        PSNR dB}], "answers": [{bits, training, uniform, uniform_psnr, and for g in dhq, rule: g, g_psnr,
        g_delta, g_rotated (mean count of rotated weights and inputs / all of them), g_wins}],
        "per_image": {image: {"fp": dB, "psnr": {"<method>@<B>": dB}}}}``.

    Raises:
        ValueError: no images, an unknown image, a missing or unreadable summary (naming it), or no
            setting and bitwidth that all images share.
    """
    from nerf.images import IMAGES

    if not images:
        raise ValueError("images: give at least one image")
    for image in images:
        if image not in IMAGES:
            raise ValueError(f"unknown image {image!r} (choices: {', '.join(sorted(IMAGES))})")
    root = Path(root)
    summaries = {image: _load(root, image) for image in images}
    per_image = {image: _psnr(s) for image, s in summaries.items()}
    first = summaries[images[0]]
    methods = {m: st for m, st in first["methods"].items()
               if all(m in s["methods"] for s in summaries.values())}
    bits = sorted({b for (_, b) in per_image[images[0]]}, reverse=True)
    bits = [b for b in bits if all(any(bb == b for (_, bb) in p) for p in per_image.values())]
    full = {m: st for m, st in methods.items() if all((m, b) in p for p in per_image.values() for b in bits)}
    if not full or not bits:
        raise ValueError(f"the runs of {', '.join(images)} share no finished setting and bitwidth")

    def mean(m, b):
        vals = [p.get((m, b)) for p in per_image.values()]
        return None if None in vals else round(sum(vals) / len(vals), 3)

    rows, columns = setting_rows(full, mean, bits)
    answers = _answers(full, mean, per_image, bits, _Rotations(root, summaries))
    fp = {image: s["fp"]["psnr"] for image, s in summaries.items()}
    size = {image: s["size"] for image, s in summaries.items()}
    result = {"images": list(images), "size": size, "fp": fp, "bits": bits,
              "settings": [{k: r[k] for k in ("method", "rotation", "calibration", "granularity", "training")}
                           | {str(b): r[b] for b in bits} for r in rows],
              "answers": answers,
              "finetune_steps": first["settings"]["finetune_steps"],
              "per_image": {image: {"fp": fp[image], "psnr": {f"{m}@{b}": v for (m, b), v in p.items()}}
                            for image, p in per_image.items()}}
    head = (f"Images: {', '.join(f'{i} (FP {fp[i]:.2f} dB)' for i in images)}; "
            f"QAT: {first['settings']['finetune_steps']} LSQ+ steps for every setting.\n\n")
    md = (head + "Mean PSNR over the images (dB), the best of each bitwidth in bold:\n\n"
          + markdown_table(rows, columns)
          + "\nBest uniform against best DHQ setting, per bitwidth and training (mean over the images; "
            "wins: each image's own best):\n\n" + markdown_table(answers, ANSWER_COLUMNS))
    write_json(root / "crossed.json", result)
    from common.atomic import atomic_write_text

    atomic_write_text(root / "crossed.md", md)
    _plot(answers, bits, root / "crossed.png", f"SIREN INRs, {len(images)} images: best uniform vs best DHQ")
    return result
