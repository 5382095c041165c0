"""The quantization-search environment: observations, action -> bits, budget enforcement, rewards.

One episode chooses the bits of every component of ``quant.policy.component_names(L)`` in that order
(HAQ, Wang et al. CVPR 2019, Sec. 3: one step per layer; here one per component, hash-table levels and
MLP weights and activations alike).

Observation of component i (``OBS_FEATURES``; the first eight are static and min-max normalised over
the components, HAQ Sec. 3.1):

    type           0 hash-table level, 1 activation, 2 weight
    index          position in the component order
    in_size        elements per sample entering the tensor's consumer (weights: layer input size;
                   activations: their vector length; hash levels: 8 corners x F)
    out_size       layer output size (weights), vector length (activations), F (hash levels)
    params         stored parameters (table entries x F, weight elements; 0 for activations)
    resolution     N_l of a hash level (0 otherwise)
    dense          1 for a dense hash level, 0 otherwise
    latency_share  the component's share of frame latency under uniform b_max (``latency_shares``)
    prev_action    the action taken for component i - 1 (0 for the first), already in [0, 1]

Action a in [0, 1] -> bits ``round(b_min - 0.5 + a (b_max - b_min + 1))`` clamped to [b_min, b_max]
(HAQ's mapping, equal-width bins).

Objectives (reward r of an episode, given to each of its transitions by the agent):

* ``latency`` (HAQ's resource-constrained mode): the chosen policy is first pushed under
  ``budget x latency(uniform-8)`` by ``enforce_budget`` (one bit off the component whose decrement
  saves the most cycles, repeatedly); ``r = 0.1 (PSNR - PSNR_fp)`` (HAQ: 0.1 x accuracy change).
* ``tradeoff``: no constraint; ``r = 0.1 (PSNR - PSNR_fp) - lam log2(latency / latency(uniform-8))``,
  so with the default lam = 0.1 halving the latency is worth 1 dB of PSNR.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from nerf import grid
from quant.policy import QuantPolicy, component_names
from sim.perf import AcceleratorPreset, encoder_params, frame_perf, mlp_layers
from sim.tlm.mlp_engine import layer_cycles

__all__ = ["OBS_FEATURES", "SearchSpace", "BudgetError", "action_to_bits", "OBJECTIVES"]

OBS_FEATURES = ("type", "index", "in_size", "out_size", "params", "resolution", "dense", "latency_share",
                "prev_action")
OBJECTIVES = ("latency", "tradeoff")

# MLP components -> (engine, layer index) whose cycles they set; activations feed the named layer.
_LAYER_OF = {
    "enc.out": ("density", 0), "density.l0.weight": ("density", 0),
    "density.l1.act_in": ("density", 1), "density.l1.weight": ("density", 1),
    "density.l1.out": ("color", 0), "sh.out": ("color", 0), "color.l0.weight": ("color", 0),
    "color.l1.act_in": ("color", 1), "color.l1.weight": ("color", 1),
    "color.l2.act_in": ("color", 2), "color.l2.weight": ("color", 2),
}


class BudgetError(ValueError):
    """No policy within [b_min, b_max] meets the latency budget; the message gives the lowest reachable."""


def action_to_bits(action: float, b_min: int, b_max: int) -> int:
    """HAQ's mapping of an action in [0, 1] to an integer bitwidth in [b_min, b_max]."""
    return int(min(max(round(b_min - 0.5 + float(action) * (b_max - b_min + 1)), b_min), b_max))


@dataclass
class SearchSpace:
    """Components, their observations and the latency side of the search for one model and preset.

    Args:
        arch: the model's architecture dict; preset: the hardware preset.
        samples: field evaluations per frame (from the scene's measured samples per ray).
        b_min, b_max: the bit range, within [2, min(engine maxima)].
        objective: "latency" or "tradeoff"; budget: latency budget as a fraction of uniform-8's
            (latency objective); lam: the trade-off weight.

    Raises:
        ValueError: a bad range, objective or budget (naming it and the value).
        BudgetError: the budget is below the lowest latency reachable in [b_min, b_max].
    """

    arch: Mapping
    preset: AcceleratorPreset
    samples: int
    b_min: int = 2
    b_max: int = 8
    objective: str = "latency"
    budget: float = 0.5
    lam: float = 0.1

    def __post_init__(self) -> None:
        top = min(self.preset.mlp.max_weight_bits, self.preset.mlp.max_act_bits, self.preset.feature_bits)
        if not (isinstance(self.b_min, int) and isinstance(self.b_max, int) and 2 <= self.b_min <= self.b_max <= top):
            raise ValueError(f"bit range [b_min, b_max] must satisfy 2 <= b_min <= b_max <= {top} (the engines' "
                             f"widest), not [{self.b_min}, {self.b_max}]")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, not {self.objective!r}")
        if self.objective == "latency" and not (isinstance(self.budget, (int, float)) and 0 < self.budget):
            raise ValueError(f"budget must be a number > 0 (a fraction of the uniform-8 latency), not {self.budget!r}")
        self.levels = self.arch["levels"]
        self.names = component_names(self.levels)
        self.reference_cycles = self.cycles(QuantPolicy.uniform(8, self.levels)) if 8 <= top else None
        if self.reference_cycles is None:
            raise ValueError(f"the preset's engines must run 8-bit policies (the latency reference), widest is {top}")
        self.latency_sensitive = [n for n in self.names if n in _LAYER_OF]
        if self.objective == "latency":
            lowest = self.cycles(QuantPolicy.uniform(self.b_min, self.levels))
            if lowest > self.target_cycles:
                raise BudgetError(
                    f"budget {self.budget} x uniform-8 latency = {self.target_cycles} cycles is below the lowest "
                    f"latency reachable with bits in [{self.b_min}, {self.b_max}]: {lowest} cycles "
                    f"(uniform-{self.b_min}, {lowest / self.reference_cycles:.3f} x uniform-8)")
        self.static = self._static_features()

    # --- latency -------------------------------------------------------------------------------
    def cycles(self, policy: Mapping[str, int]) -> int:
        return frame_perf(self.preset, self.arch, policy, samples=self.samples).cycles

    @property
    def target_cycles(self) -> int:
        return int(math.floor(self.budget * self.reference_cycles))

    def latency_shares(self, policy: Mapping[str, int]) -> dict[str, float]:
        """Share of frame latency per component: its layer's share of its engine's cycles per sample,
        times that engine's utilization (1 for the bottleneck); hash levels split the encoder's
        utilization evenly; components with no engine cycles get 0."""
        perf = frame_perf(self.preset, self.arch, policy, samples=max(self.samples, 1))
        layers = mlp_layers(policy, self.arch, self.preset.mlp)
        shares = dict.fromkeys(self.names, 0.0)
        for name, (engine, i) in _LAYER_OF.items():
            ly = layers[engine][i]
            n = layer_cycles(self.preset.mlp, **ly)
            shares[name] = n / perf.engines[engine]["cycles_per_sample"] * perf.engines[engine]["utilization"]
        for lv in range(self.levels):
            shares[f"hash.level{lv:02d}"] = perf.engines["encoder"]["utilization"] / self.levels
        return shares

    def enforce_budget(self, policy: QuantPolicy) -> QuantPolicy:
        """Lower bits until the latency meets the budget (latency objective); unchanged otherwise."""
        if self.objective != "latency":
            return policy
        bits = dict(policy)
        current = self.cycles(bits)
        while current > self.target_cycles:
            best, best_cycles = None, current
            for name in self.latency_sensitive:
                if bits[name] > self.b_min:
                    trial = self.cycles({**bits, name: bits[name] - 1})
                    if trial < best_cycles:
                        best, best_cycles = name, trial
            if best is None:  # cannot happen after the feasibility check, kept as a guard
                raise BudgetError(f"cannot reach {self.target_cycles} cycles from {current}")
            bits[best] -= 1
            current = best_cycles
        return QuantPolicy(bits, self.levels)

    def reward(self, psnr: float, psnr_fp: float, cycles: int) -> float:
        r = 0.1 * (psnr - psnr_fp)
        if self.objective == "tradeoff":
            r -= self.lam * math.log2(cycles / self.reference_cycles)
        return float(r)

    # --- observations ----------------------------------------------------------------------------
    def _static_features(self) -> np.ndarray:
        arch, f = self.arch, self.arch["features"]
        res = grid.level_resolutions(arch["n_min"], arch["n_max"], self.levels)
        table = 1 << arch["log2_table_size"]
        enc_p = encoder_params(self.preset, arch)
        ref = QuantPolicy.uniform(self.b_max, self.levels)
        layers = mlp_layers(ref, arch, self.preset.mlp)
        shares = self.latency_shares(ref)
        rows = []
        for i, name in enumerate(self.names):
            if name.startswith("hash.level"):
                lv = int(name[-2:])
                dense = grid.is_dense(res[lv], table)
                entries = min(table, (res[lv] + 1) ** 3)
                row = [0, i, 8 * f, f, entries * f, res[lv], float(dense)]
            elif name in _LAYER_OF:
                engine, li = _LAYER_OF[name]
                ly = layers[engine][li]
                if name.endswith(".weight"):
                    row = [2, i, ly["in_size"], ly["out_size"], ly["in_size"] * ly["out_size"], 0, 0.0]
                else:
                    size = {"enc.out": enc_p.levels * f, "density.l1.out": 1 + arch["geo_features"], "sh.out": 16}.get(
                        name, ly["in_size"])
                    row = [1, i, size, size, 0, 0, 0.0]
            else:  # density.out, color.l2.out, color.out: no engine layer consumes them
                size = 1 if name == "density.out" else 3
                row = [1, i, size, size, 0, 0, 0.0]
            rows.append(row + [shares[name]])
        from rl.ddpg import minmax_normalize

        return minmax_normalize(np.asarray(rows, dtype=np.float64))

    def observation(self, i: int, prev_action: float) -> np.ndarray:
        """float32 (len(OBS_FEATURES),): component i's normalised static features and the previous action."""
        return np.concatenate([self.static[i], [prev_action]]).astype(np.float32)
