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
* ``quality`` (minimise latency subject to PSNR >= PSNR_fp - max_loss):
  ``r = -log2(latency / latency(uniform-8)) - mu max(0, PSNR_fp - max_loss - PSNR)``, mu = ``QUALITY_MU``
  per dB. Inside the feasible region the penalty is 0 and the reward rises with every cycle saved, so the
  agent keeps pushing latency down; outside it the penalty grows linearly with the PSNR deficit, so a
  policy 1 dB short is worth a halving of latency less and the agent is pulled back towards the
  boundary from either side. A hinge (0 inside) rather than a barrier keeps the reward finite and
  its slope non-zero everywhere but on the boundary. Feasibility then ranks the episodes
  (``flows.search``): the best is the fastest feasible one. Two differences from the other objectives,
  both so that a tight PSNR bound is reachable at all: the exp (density) output, which feeds the
  renderer and costs no engine cycle, is not searched but kept at ``FIXED_QUALITY`` (32 bits; the PTQ
  and LSQ+ baselines keep it 24 bits wider than the rest, A-CAQ learns 27 on lego; at 8 bits it alone
  costs lego 1.2 dB), and the first ``b_max - b_min + 1`` episodes play the uniform policies from
  b_max down (``seed_bits``) instead of random actions, so that the replay buffer holds feasible
  policies before the agent learns (random bits in [2, 8] on 30 components almost never are).

Latency: ``sim.perf.frame_perf`` for a preset with the tables on chip. A preset with a ``memory``
section (tables in DRAM, ``hw.hash_encoder_axi``) needs the scene's ``workload`` (sample positions in
accelerator order, ``nerf.render.sample_positions``): on construction ``sim.memory.frame.level_stats``
replays every level's cache at every width in [b_min, max(b_max, 8)] once (on every ``every``-th
chunk of ``CHUNK`` points when ``every`` > 1: ``memory_frame_perf``'s chunk-subset estimate), and each
policy is costed by ``policy_perf`` (DRAM replay and schedule only), memoised by what the latency
depends on (each level's bits and each MLP engine's T), so ``enforce_budget``'s many trials and
repeated policies cost one replay each. Hash levels then have engine cycles: they are searched for
latency (``latency_sensitive``) and their ``latency_share`` is their share of the encoder's busy
cycles (issue cycles split evenly, stall cycles in proportion to the level's misses) over the frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Literal, get_args

import numpy as np
from pydantic import Field, InstanceOf

from common.validate import range_message, spec
from nerf import grid
from nerf.layout import model_layout
from quant.policy import MAX_BITS, MIN_BITS, QuantPolicy, component_names
from sim.mapping import ENCODER, AcceleratorPreset, check_datapath, encoder_params, layer_of, level_bits_of, mlp_layers
from sim.perf import FramePerf, frame_perf, memory_result, mlp_cycles, workload_codes
from sim.tlm.mlp_engine import layer_cycles

__all__ = ["OBS_FEATURES", "SearchSpace", "Objectives", "SearchSettings", "BudgetError", "action_to_bits", "OBJECTIVES",
           "CHUNK", "QUALITY_MU"]

#: Points per chunk of the chunk-subset estimate (``SearchSpace.every``; ``memory_frame_perf``'s ``chunk``).
#: Measured on lego (tiny) validation view 0 at 400x400 (712,529 points, scanline order), every = 3,
#: cycle error against the exact model: chunk 16384: -2.04 % (uniform-4), -0.06 % (uniform-8);
#: chunk 4096: +0.47 %, +0.008 %; chunk 1024: +1.05 %, +0.014 %. Bands of a few rows sample a real
#: view's inhomogeneity better than bands of tens of rows, and far smaller chunks add boundary error.
CHUNK = 4096

OBS_FEATURES = ("type", "index", "in_size", "out_size", "params", "resolution", "dense", "latency_share",
                "prev_action")
Objective = Literal["latency", "tradeoff", "quality"]
OBJECTIVES: tuple[str, ...] = get_args(Objective)

# The ranges shared by the search's arguments and the search space.
Bits = Annotated[int, Field(ge=MIN_BITS, le=MAX_BITS)]
#: Latency budget, a fraction of the uniform-8 latency: finite and > 0.
Budget = Annotated[float, Field(gt=0, allow_inf_nan=False)]
#: Trade-off weight lam (dB-equivalent per halving of latency / 10): finite and >= 0.
Lam = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: Quality objective: the PSNR loss allowed against full precision, dB, finite and > 0.
MaxLoss = Annotated[float, Field(gt=0, allow_inf_nan=False)]
#: Quality objective: reward per dB of PSNR deficit, in halvings of latency (module doc). At 1, a
#: policy 1 dB below the bound must be twice as fast to tie with one on it; on lego PTQ at 4 bits
#: loses about 5 dB for less than a halving of latency, so the bound dominates far from it.
QUALITY_MU = 1.0
#: Quality objective: components not searched, and their bits (module doc).
FIXED_QUALITY = {"density.out": 32}


class BudgetError(ValueError):
    """No policy within [b_min, b_max] meets the latency budget; the message gives the lowest reachable."""


def action_to_bits(action: float, b_min: int, b_max: int) -> int:
    """HAQ's mapping of an action in [0, 1] to an integer bitwidth in [b_min, b_max]."""
    return int(min(max(round(b_min - 0.5 + float(action) * (b_max - b_min + 1)), b_min), b_max))


@spec(ValueError)
class SearchSettings:
    """A search's arguments (``flows.search.search``), checked before any work starts.

    Fields:
        episodes: episodes to run in all, >= 1; warmup: random-action episodes, >= 0.
        objective: "latency", "tradeoff" or "quality"; budget: latency budget, a finite fraction > 0 of
            the uniform-8 latency; lam: the trade-off weight, finite and >= 0; max_loss: the quality
            objective's allowed PSNR loss against full precision, dB, finite and > 0.
        b_min, b_max: the bit range, 2 <= b_min <= b_max <= 32 (``SearchSpace`` caps b_max at the engines').
        val_views: validation views scored, >= 1; rays: rays per PTQ batch, >= 1; seed: >= 0.
        workload_size: tables in DRAM: pixels per side of the workload view (``flows.search``), in [1, 4096].

    Raises:
        ValueError: naming the field, the allowed range and the value (``SearchSettings.budget must
            be a finite number > 0, not inf``).
    """

    episodes: Annotated[int, Field(ge=1)] = 60
    warmup: Annotated[int, Field(ge=0)] = 20
    objective: Objective = "latency"
    budget: Budget = 0.5
    lam: Lam = 0.1
    max_loss: MaxLoss = 0.5
    b_min: Bits = 2
    b_max: Bits = 8
    val_views: Annotated[int, Field(ge=1)] = 4
    rays: Annotated[int, Field(ge=1)] = 8192
    seed: Annotated[int, Field(ge=0)] = 0
    workload_size: Annotated[int, Field(ge=1, le=4096)] = 800

    def __post_init__(self) -> None:
        if self.b_max < self.b_min:
            raise ValueError(range_message("SearchSettings", "b_max", self.b_max, self.b_min, MAX_BITS))


class Objectives:
    """What every search space shares: the budget, budget enforcement and the three objectives' rewards
    (module doc). A space provides ``objective``, ``budget``, ``lam``, ``max_loss``, ``b_min``, ``b_max``,
    ``levels``, ``latency_sensitive``, ``reference_cycles``, ``cycles(policy)`` and ``policy_type``
    (``QuantPolicy`` or ``KiloPolicy``)."""

    policy_type = QuantPolicy

    def check_budget(self) -> None:
        """Latency objective: the budget must be reachable in [b_min, b_max].

        Raises:
            BudgetError: it is below uniform-b_min's latency (given, also as a fraction of uniform-8's).
        """
        if self.objective != "latency":
            return
        lowest = self.cycles(self.policy_type.uniform(self.b_min, self.levels))
        if lowest > self.target_cycles:
            raise BudgetError(
                f"budget {self.budget} x uniform-8 latency = {self.target_cycles} cycles is below the lowest "
                f"latency reachable with bits in [{self.b_min}, {self.b_max}]: {lowest} cycles "
                f"(uniform-{self.b_min}, {lowest / self.reference_cycles:.3f} x uniform-8)")

    @property
    def target_cycles(self) -> int:
        return int(math.floor(self.budget * self.reference_cycles))

    def enforce_budget(self, policy):
        """Lower bits until the latency meets the budget (latency objective); unchanged otherwise.

        Greedy: one bit off the latency-sensitive component whose decrement gives the fewest cycles,
        repeatedly (also when it saves none: tables in DRAM make latency non-monotone in bits)."""
        if self.objective != "latency":
            return policy
        bits = dict(policy)
        current = self.cycles(bits)
        while current > self.target_cycles:
            # the decrement to the fewest cycles; with tables in DRAM latency is not monotone in a level's
            # bits (line packing moves addresses across DRAM rows), so when no decrement saves cycles the
            # least costly one is taken: bits only go down, and uniform-b_min meets the budget
            best, best_cycles = None, None
            for name in self.latency_sensitive:
                if bits[name] > self.b_min:
                    trial = self.cycles({**bits, name: bits[name] - 1})
                    if best_cycles is None or trial < best_cycles:
                        best, best_cycles = name, trial
            if best is None:  # every latency-sensitive component at b_min: the feasibility check rules it out
                raise BudgetError(f"cannot reach {self.target_cycles} cycles from {current}")
            bits[best] -= 1
            current = best_cycles
        return self.policy_type(bits, self.levels)

    def seed_bits(self, episode: int) -> int | None:
        """Quality objective: the uniform bits episode ``episode`` plays (b_max, b_max - 1, ... b_min), else None."""
        if self.objective != "quality" or episode > self.b_max - self.b_min:
            return None
        return self.b_max - episode

    def feasible(self, psnr: float, psnr_fp: float) -> bool:
        """Quality objective: PSNR (dB) >= psnr_fp - max_loss; every policy is feasible for the others."""
        return self.objective != "quality" or psnr >= psnr_fp - self.max_loss

    def reward(self, psnr: float, psnr_fp: float, cycles: int) -> float:
        """The episode's reward (module doc: one formula per objective); PSNR in dB, latency in cycles."""
        if self.objective == "quality":
            deficit = max(0.0, psnr_fp - self.max_loss - psnr)
            return float(-math.log2(cycles / self.reference_cycles) - QUALITY_MU * deficit)
        r = 0.1 * (psnr - psnr_fp)
        if self.objective == "tradeoff":
            r -= self.lam * math.log2(cycles / self.reference_cycles)
        return float(r)


@spec(ValueError)
class SearchSpace(Objectives):
    """Components, their observations and the latency side of the search for one model and preset.

    Fields:
        arch: the model's architecture dict (``nerf.layout.ARCH_KEYS``); preset: the hardware preset.
        samples: field evaluations per frame (from the scene's measured samples per ray), >= 1.
        b_min, b_max: the bit range, 2 <= b_min <= b_max <= the engines' widest (weights, activations,
            hash-table entries); the engines must run 8 bits (the latency reference).
        objective: "latency", "tradeoff" or "quality"; budget: latency budget, a finite fraction > 0 of
            uniform-8's (latency objective); lam: the trade-off weight, finite and >= 0; max_loss: the
            quality objective's allowed PSNR loss, dB, finite and > 0.
        workload: a preset with memory only, and required there: the frame's sample positions in
            accelerator order (float (N, 3) in [0, 1)^3 or fixed-point codes), N <= ``samples`` (a
            smaller workload stands for the frame, costs scaled to ``samples``).
        every: >= 1; > 1 costs policies on every ``every``-th chunk of ``CHUNK`` workload points (an
            estimate, module doc), scaled to ``samples``.
        datapath, rotations: the MLP layers' datapath (``sim.perf.frame_perf``): "mlp" (default) or
            "hadamard" (DHQ, tables on chip only) with its layers' rotations (None: every layer both).

    Derived (set on construction): ``levels``, ``names`` (the policy's components), ``reference_cycles``
    (uniform-8), ``latency_sensitive`` (components with engine cycles), ``static`` (observations);
    with memory ``stats`` (``level_stats``), ``points`` (workload points costed), ``memo`` (key ->
    ``MemoryFramePerf``) and ``replays`` (``policy_perf`` calls made).

    Raises:
        ValueError: a bad field (naming it, the allowed range and the value).
        BudgetError: the budget is below the lowest latency reachable in [b_min, b_max].
    """

    arch: InstanceOf[Mapping]
    preset: InstanceOf[AcceleratorPreset]
    samples: Annotated[int, Field(ge=1)]
    b_min: Bits = 2
    b_max: Bits = 8
    objective: Objective = "latency"
    budget: Budget = 0.5
    lam: Lam = 0.1
    max_loss: MaxLoss = 0.5
    workload: object = None
    every: Annotated[int, Field(ge=1)] = 1
    datapath: str = "mlp"
    rotations: object = None

    def _set(self, **values) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)  # derived attributes of a frozen spec

    def __post_init__(self) -> None:
        top = min(self.preset.mlp.max_weight_bits, self.preset.mlp.max_act_bits, self.preset.feature_bits)
        if top < 8:
            raise ValueError(f"the preset's engines must run 8-bit policies (the latency reference), widest is {top}")
        if self.b_min > top:
            raise ValueError(range_message("SearchSpace", "b_min", self.b_min, MIN_BITS, top)
                             + " (the engines' widest)")
        if not self.b_min <= self.b_max <= top:
            raise ValueError(range_message("SearchSpace", "b_max", self.b_max, self.b_min, top)
                             + " (b_min to the engines' widest)")
        check_datapath(self.datapath)
        if self.datapath == "hadamard" and self.preset.memory is not None:
            raise ValueError(f"hardware preset {self.preset.name!r} keeps the hash tables in DRAM; the Hadamard "
                             "datapath (DHQ) is modelled with the tables on chip: use the on-chip preset 'onchip'")
        levels = self.arch["levels"]
        self._set(levels=levels, names=component_names(levels), stats=None, memo={}, replays=0, points=0,
                  fixed=dict(FIXED_QUALITY) if self.objective == "quality" else {})
        layers = layer_of(self.arch)
        if self.preset.memory is not None:
            self._memory_setup()
            hashed = set(model_layout(self.arch).hash_components)
            self._set(latency_sensitive=[n for n in self.names if n in layers or n in hashed])
        else:
            if self.workload is not None:
                raise ValueError(f"hardware preset {self.preset.name!r} keeps the hash tables on chip; a workload "
                                 "changes nothing")
            self._set(latency_sensitive=[n for n in self.names if n in layers])
        self._set(reference_cycles=self.cycles(QuantPolicy.uniform(8, levels)))
        self.check_budget()
        self._set(static=self._static_features())

    # --- latency -------------------------------------------------------------------------------
    def _memory_setup(self) -> None:
        from sim.memory.frame import _subsample, level_stats

        if self.workload is None:
            raise ValueError(f"hardware preset {self.preset.name!r} keeps the hash tables in DRAM: the search space "
                             "needs the scene's workload (nerf.render.sample_positions)")
        enc = encoder_params(self.preset, self.arch)
        codes = workload_codes(self.workload, enc.coord_bits)
        total = len(codes)
        if len(codes) == 0 or len(codes) > self.samples:
            raise ValueError(f"the workload must hold 1 to samples = {self.samples} points, not {len(codes)}")
        if self.every > 1:
            codes = codes[_subsample(len(codes), self.every, CHUNK)]
        widths = range(self.b_min, max(self.b_max, 8) + 1)
        self._set(stats=level_stats(enc, codes, widths), points=len(codes), dram=self.preset.dram_timing(),
                  workload_points=total)

    def perf(self, policy: Mapping[str, int]) -> FramePerf:
        """The frame under ``policy`` (``sim.perf.FramePerf``); with memory from the memoised replay."""
        if self.stats is None:
            if self.datapath == "hadamard":
                return frame_perf(self.preset, self.arch, policy, samples=self.samples, datapath="hadamard",
                                  rotations=self.rotations)
            return frame_perf(self.preset, self.arch, policy, samples=self.samples)
        from sim.memory.frame import policy_perf

        mlp_T = mlp_cycles(self.preset, self.arch, policy)
        key = (level_bits_of(policy, self.arch), tuple(mlp_T.values()))
        m = self.memo.get(key)
        if m is None:
            for name in model_layout(self.arch).hash_components:
                if not self.b_min <= policy[name] <= max(self.b_max, 8):
                    raise ValueError(f"policy {name} = {policy[name]} bits is outside the search's widths "
                                     f"[{self.b_min}, {max(self.b_max, 8)}]")
            m = policy_perf(self.stats, key[0], dram=self.dram, mlp_T=mlp_T)
            self.memo[key] = m
            self._set(replays=self.replays + 1)
        return memory_result(self.preset, self.arch, policy, m, samples=self.samples, points=self.points,
                             every=self.every)

    def cycles(self, policy: Mapping[str, int]) -> int:
        return self.perf(policy).cycles

    def latency_shares(self, policy: Mapping[str, int]) -> dict[str, float]:
        """Share of frame latency per component: its layer's share of its engine's cycles per sample,
        times that engine's utilization (1 for the bottleneck); hash levels split the encoder's
        utilization evenly (tables on chip) or, tables in DRAM, share the encoder's busy cycles: its
        issue cycles evenly, its stall cycles in proportion to each level's misses, over the frame's
        cycles; components with no engine cycles get 0. With the Hadamard datapath (one engine per layer)
        a layer's share is its own engine's utilization."""
        perf = self.perf(policy)
        shares = dict.fromkeys(self.names, 0.0)
        if self.datapath == "hadamard":
            for name, (engine, i) in layer_of(self.arch).items():
                shares[name] = perf.engines[engine]["layers"][i]["utilization"]
        else:
            layers = mlp_layers(policy, self.arch, self.preset.mlp)
            for name, (engine, i) in layer_of(self.arch).items():
                ly = layers[engine][i]
                n = layer_cycles(self.preset.mlp, **ly)
                shares[name] = n / perf.engines[engine]["cycles_per_sample"] * perf.engines[engine]["utilization"]
        hashed = model_layout(self.arch).hash_components
        if perf.dram:
            enc, cycles = perf.engines[ENCODER], max(perf.cycles, 1)
            misses = sum(lv["misses"] for lv in perf.levels) or 1
            for name, lv in zip(hashed, perf.levels):
                shares[name] = (enc["issue_cycles"] / self.levels + enc["stall_cycles"] * lv["misses"] / misses) / cycles
            return shares
        for name in hashed:
            shares[name] = perf.engines[ENCODER]["utilization"] / self.levels
        return shares

    # --- observations ----------------------------------------------------------------------------
    def _static_features(self) -> np.ndarray:
        arch, f = self.arch, self.arch["features"]
        res = grid.level_resolutions(arch["n_min"], arch["n_max"], self.levels)
        table = 1 << arch["log2_table_size"]
        layout = model_layout(arch)
        hash_levels = dict(zip(layout.hash_components, range(self.levels)))
        weights = {ly.weight: ly for ly in layout.layers.values()}
        shares = self.latency_shares(QuantPolicy.uniform(self.b_max, self.levels))
        rows = []
        for i, name in enumerate(self.names):
            if name in hash_levels:
                lv = hash_levels[name]
                dense = grid.is_dense(res[lv], table)
                entries = min(table, (res[lv] + 1) ** 3)
                row = [0, i, 8 * f, f, entries * f, res[lv], float(dense)]  # 8 corners x F read per sample
            elif name in weights:
                ly = weights[name]
                row = [2, i, ly.in_size, ly.out_size, ly.in_size * ly.out_size, 0, 0.0]
            else:  # an activation: its vector length per sample (renderer inputs included)
                size = layout.activations[name]
                row = [1, i, size, size, 0, 0, 0.0]
            rows.append(row + [shares[name]])
        from rl.ddpg import minmax_normalize

        return minmax_normalize(np.asarray(rows, dtype=np.float64))

    def observation(self, i: int, prev_action: float) -> np.ndarray:
        """float32 (len(OBS_FEATURES),): component i's normalised static features and the previous action."""
        return np.concatenate([self.static[i], [prev_action]]).astype(np.float32)
