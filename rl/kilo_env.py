"""The search space for KiloNeRF (``make search MODEL=kilonerf``): its components, observations and latency.

The episode, the agent, the objectives and their rewards are ``rl.env``'s (``Objectives``); only what the
model changes is here. Components: ``quant.policy.KILONERF_COMPONENTS`` (per layer weights and
activations, each shared by every tiny network). Latency: ``sim.kilo_perf.kilo_frame_perf`` on the
frame's samples (their cells and rays, fixed for the search), memoised by the engines' layer settings,
which are all it depends on. Observations (``rl.env.OBS_FEATURES``): type (1 activation, 2 weight),
index, in/out sizes, parameters (all trained networks' weights of the layer), resolution and dense 0, and
the latency share (the layer's share of its engine's cycles per vector times the engine's busy share of
the frame; components without engine cycles 0).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from common.validate import range_message
from nerf.layout import kilonerf_layers
from quant.policy import KILONERF_COMPONENTS, MAX_BITS, MIN_BITS, KiloPolicy
from rl.env import FIXED_QUALITY, OBJECTIVES, Objectives
from sim.kilo_perf import KILO_ENGINES, KiloFramePerf, kilo_engines, kilo_frame_perf, kilo_layers
from sim.tlm.mlp_engine import layer_cycles

__all__ = ["KiloSearchSpace"]


class KiloSearchSpace(Objectives):
    """Keyword-only. ``arch``: ``KiloNeRF.arch``; ``preset``: the hardware preset; ``cells``, ``rays``: int (N,),
    the frame's evaluated samples (``sim.kilo_perf.kilo_frame_perf``); ``networks``: trained networks (for the
    parameter counts); the rest as ``rl.env.SearchSpace``.

    Raises:
        ValueError: a bad bit range or objective (naming the field, range and value). rl.env.BudgetError: the budget
        is below uniform-b_min's latency.
    """

    policy_type = KiloPolicy

    def __init__(self, *, arch: Mapping, preset, cells, rays, networks: int = 1, b_min: int = 2, b_max: int = 8,
                 objective: str = "latency", budget: float = 0.5, lam: float = 0.1, max_loss: float = 0.5):
        params = kilo_engines(preset, arch)
        top = min(params.max_weight_bits, params.max_act_bits)
        if top < 8:
            raise ValueError(f"the preset's engines must run 8-bit policies (the latency reference), widest is {top}")
        if not MIN_BITS <= b_min <= top:
            raise ValueError(range_message("KiloSearchSpace", "b_min", b_min, MIN_BITS, top) + " (the engines' widest)")
        if not b_min <= b_max <= top:
            raise ValueError(range_message("KiloSearchSpace", "b_max", b_max, b_min, min(top, MAX_BITS)))
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
        self.arch, self.preset, self.params = arch, preset, params
        self.cells, self.rays = np.asarray(cells, np.int64), np.asarray(rays, np.int64)
        self.b_min, self.b_max, self.objective = b_min, b_max, objective
        self.budget, self.lam, self.max_loss, self.networks = budget, lam, max_loss, networks
        self.levels, self.names = 0, [name for name, _ in KILONERF_COMPONENTS]
        self.fixed = dict(FIXED_QUALITY) if objective == "quality" else {}
        self.layers = kilonerf_layers(arch)
        self.latency_sensitive = [n for ly in self.layers.values() for n in (ly.weight, *ly.inputs)]
        self.memo: dict = {}
        self.replays = 0
        self.reference_cycles = self.cycles(KiloPolicy.uniform(8))
        self.check_budget()
        self.static = self._static_features()

    def perf(self, policy: Mapping[str, int]) -> KiloFramePerf:
        """The frame under ``policy``, memoised by the engines' layer settings."""
        layers = kilo_layers(policy, self.arch, self.params)
        key = tuple((x.weight_bits, x.act_bits) for ls in layers.values() for x in ls)
        if key not in self.memo:
            self.memo[key] = kilo_frame_perf(self.preset, self.arch, policy, self.cells, self.rays)
            self.replays += 1
        return self.memo[key]

    def cycles(self, policy: Mapping[str, int]) -> int:
        return self.perf(policy).cycles

    def latency_shares(self, policy: Mapping[str, int]) -> dict[str, float]:
        """Per component: its layer's share of its engine's T, times the engine's busy share of the frame."""
        perf = self.perf(policy)
        layers = kilo_layers(policy, self.arch, self.params)
        shares = dict.fromkeys(self.names, 0.0)
        for engine, names in KILO_ENGINES.items():
            e = perf.engines[engine]
            busy = e.compute / max(perf.cycles, 1)
            for name, x in zip(names, layers[engine]):
                n = layer_cycles(self.params, in_size=x.in_size, out_size=x.out_size, weight_bits=x.weight_bits,
                                 act_bits=x.act_bits)
                for comp in (self.layers[name].weight, *self.layers[name].inputs):
                    shares[comp] = max(shares[comp], n / e.T * busy)
        return shares

    def _static_features(self) -> np.ndarray:
        from rl.ddpg import minmax_normalize

        weights = {ly.weight: ly for ly in self.layers.values()}
        sizes = {n: s for ly in self.layers.values() for n, s in zip(ly.inputs, ly.input_sizes)}
        last = {f"{name}.out": ly.out_size for name, ly in self.layers.items()}
        shares = self.latency_shares(KiloPolicy.uniform(self.b_max))
        rows = []
        for i, name in enumerate(self.names):
            if name in weights:
                ly = weights[name]
                row = [2, i, ly.in_size, ly.out_size, self.networks * ly.in_size * ly.out_size, 0, 0.0]
            else:
                size = sizes.get(name, last.get(name, 1 if name == "density.out" else 3))
                row = [1, i, size, size, 0, 0, 0.0]
            rows.append(row + [shares[name]])
        return minmax_normalize(np.asarray(rows, dtype=np.float64))

    def observation(self, i: int, prev_action: float) -> np.ndarray:
        return np.concatenate([self.static[i], [prev_action]]).astype(np.float32)
