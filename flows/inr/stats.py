"""Per-layer distribution statistics of a SIREN's weights and activations, before and after the rotation."""

from __future__ import annotations

__all__ = ["moments", "rotated_tensors", "layer_statistics", "spread"]


def moments(x) -> dict:
    """Distribution statistics of a tensor (all elements): std, max|x|, max|x| / std, Pearson kurtosis."""
    v = x.detach().double().flatten()
    mu, sd = v.mean(), v.std(unbiased=False)
    kurt = float(((v - mu) ** 4).mean() / sd**4) if sd > 0 else float("nan")
    absmax = float(v.abs().max())
    return {"std": round(float(sd), 6), "absmax": round(absmax, 6),
            "absmax_over_std": round(absmax / float(sd), 3) if sd > 0 else None,
            "kurtosis": round(kurt, 3)}


def rotated_tensors(model, coords) -> list[dict]:
    """Per layer: the weight and input activation before and after the Hadamard rotation (FP model).

    Returns ``[{"layer", "in", "out", "n", "weight": (W (out, in), pad(W) H (out, n)), "act": (x (N, in),
    pad(x) H (N, n))}]`` (float32 tensors, detached).
    """
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
    """Per layer of a ``Siren``: ``moments`` of weight and activation before and after the rotation.

    Returns ``[{"layer", "in", "out", "n", "weight": {"before": {...}, "after": {...}}, "act": {...}}]``;
    activations are the layer inputs on ``coords`` (N, 2) with the FP model. DHQ's claim (Zhou et al.
    2025, sec. 3) is that "after" has a similar, bell-shaped distribution (kurtosis near 3) in every layer.
    """
    stats = []
    for t in rotated_tensors(model, coords):
        stats.append({k: t[k] for k in ("layer", "in", "out", "n")}
                     | {kind: {"before": moments(t[kind][0]), "after": moments(t[kind][1])}
                        for kind in ("weight", "act")})
    return stats


def spread(stats: list[dict]) -> dict:
    """How different the layers are: min/max kurtosis over layers, before and after the rotation (NaN skipped)."""
    out = {}
    for kind in ("weight", "act"):
        for when in ("before", "after"):
            k = [s[kind][when]["kurtosis"] for s in stats if s[kind][when]["kurtosis"] == s[kind][when]["kurtosis"]]
            out[f"{kind}_kurtosis_{when}"] = [min(k), max(k)] if k else None
    return out
