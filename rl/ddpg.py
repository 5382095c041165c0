"""DDPG agent for HAQ-style mixed-precision quantization search.

The agent of HAQ (Wang et al., "HAQ: Hardware-Aware Automated Quantization with Mixed Precision",
CVPR 2019; reference code github.com/mit-han-lab/haq, ``lib/rl/ddpg.py`` and ``rl_quantize.py``),
written anew with an explicit episode API, its own random generators and a complete checkpoint.

Episode API
-----------
One episode is one quantization policy. The environment walks the components (layers) in order; for
each it builds an observation (``obs_dim`` floats, normalised with ``minmax_normalize`` as HAQ does
with its layer embeddings) and asks ``act(obs)`` for one action in [0, 1] (the environment maps it to
bits). When every component has an action, the environment evaluates the policy and hands the whole
episode to ``end_episode(observations, actions, reward)``::

    agent = DDPG(obs_dim, seed=0)
    for _ in range(episodes):
        obs = env.observations()                        # (components, obs_dim)
        actions = [agent.act(o) for o in obs]           # in component order
        losses = agent.end_episode(obs, actions, env.reward(actions))

``end_episode`` stores one transition per component, ``(obs_i, a_i, R, obs_{i+1}, done_i)``, where
``R`` is the episode's one reward given to every step (HAQ) and ``done`` is true only for the last
component (its ``next_obs`` is its own ``obs``, never read because ``done`` masks it). After the
warm-up it runs ``update()`` once after each stored transition (HAQ's ``n_update = 1``: one update per
step, interleaved with storing as in ``rl_quantize.py``) and returns the mean losses. The agent counts
episodes itself (``agent.episode``, the number of finished episodes), so ``act`` needs no episode
number; one may still be passed and must then equal ``agent.episode``.

Exploration (HAQ)
-----------------
Episodes ``0 .. warmup-1`` take uniform random actions in [0, 1] and run no updates. From episode
``warmup`` on, the action is the actor's output perturbed by a normal truncated to [0, 1] with
``sigma(e) = sigma0 * sigma_decay ** (e - warmup)`` (HAQ's ``init_delta`` 0.5 and ``delta_decay``
0.99), sampled exactly by rejection. (HAQ's loop is off by one: it draws random actions for episodes
``0 .. warmup`` and starts noise at ``0.99 * 0.5``; here the first non-warm-up episode uses ``sigma0``.)

Networks (HAQ, 300-300 hidden)
------------------------------
- Actor ``mu(s)``: ``obs_dim -> 300 -> 300 -> 1``, ReLU, sigmoid output in (0, 1).
- Critic ``Q(s, a)``: HAQ's layout, the action joins at the first layer:
  ``h1 = relu(W_s s + W_a a + b1)``, ``h2 = relu(W_2 h1 + b2)``, ``Q = w_3 . h2 + b3``. (The DDPG paper
  joins the action at the second layer; HAQ's ``Critic`` sums ``fc11(state) + fc12(action)`` before
  the first ReLU, and this follows HAQ. Its two biases are one bias here, which is the same function.)
- Initialisation (DDPG paper, Lillicrap et al. 2016, section 7, the ``init_w = 3e-3`` that HAQ's
  arguments carry): every hidden layer's weights and biases ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``
  (PyTorch's default for ``nn.Linear``; for ``W_a`` the fan-in is 1), the output layers'
  ``U(-init_w, init_w)``, drawn from the agent's torch generator. The targets start as copies.

Update (one call of ``update()``)
---------------------------------
Sample ``batch_size`` transitions from the replay buffer (without replacement, or with replacement
while the buffer holds fewer, as HAQ's keras-rl memory does). HAQ's moving-average baseline: with
``m`` the batch's mean reward, ``b <- m`` at the first update, else ``b <- b + moving_alpha (m - b)``
(``moving_alpha`` 0.5), and the batch's rewards become ``r - b``. Note that this is where HAQ's code
subtracts the baseline (``DDPG.update_policy``): the buffer keeps the raw rewards and the baseline
follows the sampled batches, so every stored reward is judged against the current baseline.
Critic: minimise ``mean((Q(s, a) - y)^2)`` with ``y = (r - b) + discount (1 - done) Q'(s', mu'(s'))``
(``discount`` 1.0). Actor: minimise ``-mean(Q(s, mu(s)))`` with the just-updated critic. Adam, lr 1e-3
(critic) and 1e-4 (actor). Targets: ``theta' <- (1 - tau) theta' + tau theta`` with ``tau`` 0.01.

Replay buffer: HAQ's ``rmsize`` is 128 transitions per component (``args.rmsize * len(quantizable)``),
so ``buffer_size=None`` (the default) means ``128 * len(first episode)``, fixed when the first episode
ends; an int sets it directly. It is a ring: the oldest transition goes first.

Determinism and resume
----------------------
The agent owns one ``numpy.random.Generator`` (uniform warm-up actions, truncated-normal noise, batch
indices) and one ``torch.Generator`` (network initialisation), both seeded from ``seed``; it never
touches the global numpy or torch generators. ``state_dict()`` holds the networks, the target networks,
both optimizers, the replay buffer, the baseline, the episode counter and both generator states (plain
tensors, numbers and strings: ``torch.save`` and the default ``torch.load(weights_only=True)`` work),
so a search interrupted between episodes and resumed with ``load_state_dict`` acts and learns
bit-identically to one that was never interrupted (same machine and thread count). Everything is
float32 on the CPU.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import Field
from torch import nn

from common.validate import spec

__all__ = [
    "HAQ_RMSIZE_PER_STEP",
    "DDPG",
    "Actor",
    "Critic",
    "minmax_normalize",
    "truncated_normal",
    "DDPGArgs",
]

#: HAQ's ``rmsize``: replay-buffer transitions per component (``buffer_size=None``).
HAQ_RMSIZE_PER_STEP = 128
_FORMAT = "rl.ddpg/1"
# Constructor fields a checkpoint must match (``seed`` is not one: the generator states are restored).
_CONFIG_FIELDS = (
    "obs_dim",
    "hidden",
    "lr_actor",
    "lr_critic",
    "tau",
    "discount",
    "batch_size",
    "buffer_size",
    "warmup",
    "sigma0",
    "sigma_decay",
    "init_w",
    "moving_alpha",
)


# --- helpers -------------------------------------------------------------------------------------
def minmax_normalize(matrix: Any) -> np.ndarray:
    """Scale each feature column of a (components, features) matrix to [0, 1], as HAQ does.

    Column ``j`` becomes ``(x - min_j) / (max_j - min_j)``, computed in float64 and returned as a new
    float32 array (the column minimum maps to exactly 0, the maximum to exactly 1). A constant column
    becomes all zeros (HAQ leaves it unchanged; zeros keep every observation in [0, 1]).

    Raises:
        ValueError: ``matrix`` is not a 2-D array of real numbers with at least one row and column, or
            holds NaN or infinity (the message gives the shape or the first bad position).
    """
    try:
        m = np.asarray(matrix)
    except Exception as exc:  # ragged nested lists and the like
        raise ValueError(f"minmax_normalize: matrix must be a 2-D array of numbers ({exc})") from None
    if m.dtype == np.bool_ or not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
        raise ValueError(f"minmax_normalize: matrix must hold real numbers, not dtype {m.dtype}")
    if m.ndim != 2 or m.shape[0] < 1 or m.shape[1] < 1:
        raise ValueError(f"minmax_normalize: matrix must be 2-D (components, features), not shape {m.shape}")
    m = m.astype(np.float64)
    bad = np.argwhere(~np.isfinite(m))
    if len(bad):
        i, j = (int(v) for v in bad[0])
        raise ValueError(f"minmax_normalize: matrix[{i}, {j}] must be finite, not {m[i, j]!r}")
    lo = m.min(axis=0)
    span = m.max(axis=0) - lo
    out = np.zeros_like(m)
    varying = span > 0
    out[:, varying] = (m[:, varying] - lo[varying]) / span[varying]
    return out.astype(np.float32)


def truncated_normal(rng: np.random.Generator, mean: float, sigma: float, low: float = 0.0, high: float = 1.0) -> float:
    """One sample of ``N(mean, sigma^2)`` truncated to ``[low, high]``, exactly, by rejection.

    ``mean`` must lie in ``[low, high]`` (the actor's sigmoid output does), so at least a third of the
    draws are accepted while ``sigma <= high - low``. ``sigma == 0`` returns ``mean`` and draws nothing.
    """
    if not low < high:
        raise ValueError(f"truncated_normal: need low < high, not [{low!r}, {high!r}]")
    if not low <= mean <= high:
        raise ValueError(f"truncated_normal: mean must be in [{low}, {high}], not {mean!r}")
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"truncated_normal: sigma must be a finite number >= 0, not {sigma!r}")
    if sigma == 0:
        return float(mean)
    while True:
        x = float(rng.normal(mean, sigma))
        if low <= x <= high:
            return x


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


_PositiveInt = Annotated[int, Field(ge=1)]
_Rate = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]  # in (0, 1]
_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


@spec(ValueError)
class DDPGArgs:
    """The agent's constructor arguments with their ranges (see ``DDPG``); messages name them
    ``DDPG.<argument>``, e.g. ``DDPG.tau must be a finite number in (0, 1], not 0``."""

    obs_dim: _PositiveInt
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    hidden: _PositiveInt = 300
    lr_actor: _Positive = 1e-4
    lr_critic: _Positive = 1e-3
    tau: _Rate = 0.01
    discount: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 1.0
    batch_size: _PositiveInt = 64
    buffer_size: _PositiveInt | None = None
    warmup: Annotated[int, Field(ge=0)] = 20
    sigma0: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.5
    sigma_decay: _Rate = 0.99
    init_w: _Positive = 3e-3
    moving_alpha: _Rate = 0.5


DDPGArgs.__name__ = DDPGArgs.__qualname__ = "DDPG"  # the messages name the agent the user built


def _plain(value: Any) -> Any:
    """NumPy scalars as Python numbers (the strict checks take ``np.int64(3)`` as the int it is)."""
    if isinstance(value, (np.integer, np.floating)) and not isinstance(value, np.bool_):
        return value.item()
    return value


# --- networks ------------------------------------------------------------------------------------
def _linear(n_in: int, n_out: int, gen: torch.Generator, bound: float | None = None, bias: bool = True) -> nn.Linear:
    """An ``nn.Linear`` initialised ``U(-bound, bound)`` (default ``1/sqrt(n_in)``) from ``gen`` only."""
    layer = torch.nn.utils.skip_init(nn.Linear, n_in, n_out, bias=bias, dtype=torch.float32)  # no global RNG
    b = 1.0 / math.sqrt(n_in) if bound is None else bound
    with torch.no_grad():
        layer.weight.uniform_(-b, b, generator=gen)
        if layer.bias is not None:
            layer.bias.uniform_(-b, b, generator=gen)
    return layer


class Actor(nn.Module):
    """``mu(s)``: ``obs_dim -> hidden -> hidden -> 1``, ReLU, sigmoid; (B, obs_dim) -> (B, 1) in (0, 1)."""

    def __init__(self, obs_dim: int, hidden: int, init_w: float, gen: torch.Generator) -> None:
        super().__init__()
        self.fc1 = _linear(obs_dim, hidden, gen)
        self.fc2 = _linear(hidden, hidden, gen)
        self.fc3 = _linear(hidden, 1, gen, init_w)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc1(s))
        h = torch.relu(self.fc2(h))
        return torch.sigmoid(self.fc3(h))


class Critic(nn.Module):
    """``Q(s, a)`` with HAQ's layout: ``relu(W_s s + W_a a + b1) -> relu(hidden) -> 1``; (B, 1) out."""

    def __init__(self, obs_dim: int, hidden: int, init_w: float, gen: torch.Generator) -> None:
        super().__init__()
        self.fc_state = _linear(obs_dim, hidden, gen)
        self.fc_action = _linear(1, hidden, gen, bias=False)
        self.fc2 = _linear(hidden, hidden, gen)
        self.fc3 = _linear(hidden, 1, gen, init_w)

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc_state(s) + self.fc_action(a))
        h = torch.relu(self.fc2(h))
        return self.fc3(h)


# --- the agent -----------------------------------------------------------------------------------
class DDPG:
    """HAQ's DDPG agent: one action in [0, 1] per component, one reward per episode (module doc).

    Args (keyword-only after ``obs_dim``; HAQ's defaults):
        obs_dim: observation length, >= 1.
        seed: seeds the agent's numpy and torch generators, an int in [0, 2**63 - 1].
        hidden: width of both hidden layers of actor and critic (HAQ 300).
        lr_actor, lr_critic: Adam learning rates (HAQ 1e-4, 1e-3), > 0.
        tau: soft target-update rate in (0, 1] (HAQ 0.01).
        discount: in [0, 1] (HAQ 1.0).
        batch_size: transitions per update, >= 1 (HAQ 64).
        buffer_size: replay-buffer capacity in transitions, >= 1, or None for HAQ's 128 per component
            (``128 * len(first episode)``).
        warmup: episodes of uniform random actions before learning starts, >= 0 (HAQ 20).
        sigma0, sigma_decay: truncated-normal noise ``sigma0 * sigma_decay ** (episode - warmup)``;
            sigma0 >= 0 (HAQ 0.5), sigma_decay in (0, 1] (HAQ 0.99).
        init_w: output layers start ``U(-init_w, init_w)``, > 0 (HAQ 3e-3).
        moving_alpha: step of the moving-average reward baseline, in (0, 1] (HAQ 0.5).

    Raises:
        ValueError: an argument is out of range or of the wrong type; the message names it and its value,
            e.g. ``DDPG.tau must be a finite number in (0, 1], not 0``.
    """

    def __init__(
        self,
        obs_dim: int,
        *,
        seed: int = 0,
        hidden: int = 300,
        lr_actor: float = 1e-4,
        lr_critic: float = 1e-3,
        tau: float = 0.01,
        discount: float = 1.0,
        batch_size: int = 64,
        buffer_size: int | None = None,
        warmup: int = 20,
        sigma0: float = 0.5,
        sigma_decay: float = 0.99,
        init_w: float = 3e-3,
        moving_alpha: float = 0.5,
    ) -> None:
        args = DDPGArgs(**{k: _plain(v) for k, v in dict(
            obs_dim=obs_dim, seed=seed, hidden=hidden, lr_actor=lr_actor, lr_critic=lr_critic, tau=tau,
            discount=discount, batch_size=batch_size, buffer_size=buffer_size, warmup=warmup, sigma0=sigma0,
            sigma_decay=sigma_decay, init_w=init_w, moving_alpha=moving_alpha).items()})
        for name, value in dataclasses.asdict(args).items():
            setattr(self, name, value)

        self._rng = np.random.default_rng(self.seed)
        self._torch_gen = torch.Generator(device="cpu")
        self._torch_gen.manual_seed(self.seed)

        self.actor = Actor(self.obs_dim, self.hidden, self.init_w, self._torch_gen)
        self.critic = Critic(self.obs_dim, self.hidden, self.init_w, self._torch_gen)
        self.actor_target = copy.deepcopy(self.actor)
        self.critic_target = copy.deepcopy(self.critic)
        for p in (*self.actor_target.parameters(), *self.critic_target.parameters()):
            p.requires_grad_(False)
        self.actor_optim = torch.optim.Adam(self.actor.parameters(), lr=self.lr_actor)
        self.critic_optim = torch.optim.Adam(self.critic.parameters(), lr=self.lr_critic)

        self._episode = 0
        self._moving_average: float | None = None
        self._capacity: int | None = self.buffer_size
        self._size = 0
        self._pos = 0
        self._obs = self._act = self._rew = self._next = self._done = None
        if self._capacity is not None:
            self._allocate(self._capacity)

    # --- read-only state ----------------------------------------------------------------------
    @property
    def episode(self) -> int:
        """Finished episodes; the index of the episode ``act`` is choosing actions for."""
        return self._episode

    @property
    def moving_average(self) -> float | None:
        """The reward baseline ``b`` (None before the first update)."""
        return self._moving_average

    @property
    def buffer_capacity(self) -> int | None:
        """Replay-buffer capacity (None until the first episode when ``buffer_size`` is None)."""
        return self._capacity

    def __len__(self) -> int:
        """Transitions in the replay buffer."""
        return self._size

    def sigma(self, episode: int) -> float | None:
        """The exploration sigma of ``episode``: ``sigma0 * sigma_decay ** (episode - warmup)``; None
        for a warm-up episode (uniform actions)."""
        if not _is_int(episode) or episode < 0:
            raise ValueError(f"episode must be an integer >= 0, not {episode!r}")
        if episode < self.warmup:
            return None
        return self.sigma0 * self.sigma_decay ** (episode - self.warmup)

    # --- acting -------------------------------------------------------------------------------
    def _check_obs(self, obs: Any, what: str = "obs") -> np.ndarray:
        try:
            x = np.asarray(obs, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what} must be {self.obs_dim} real numbers ({exc})") from None
        if x.shape != (self.obs_dim,):
            raise ValueError(f"{what} must have shape ({self.obs_dim},), not {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{what} must be finite, not {obs!r}")
        return x.astype(np.float32)

    def greedy(self, obs: Any) -> float:
        """The actor's output ``mu(obs)`` in [0, 1], without noise; draws no random numbers."""
        x = self._check_obs(obs)
        with torch.no_grad():
            return float(self.actor(torch.from_numpy(x)[None])[0, 0])

    def act(self, obs: Any, episode: int | None = None, *, greedy: bool = False) -> float:
        """The action in [0, 1] for one component of the current episode ``self.episode``.

        Warm-up episodes: uniform in [0, 1]. Later: ``mu(obs)`` plus truncated-normal noise with
        ``sigma(self.episode)``. ``greedy=True``: ``mu(obs)`` (no noise, no random numbers used). The
        value is rounded to float32, exactly as it is stored in the replay buffer.

        Raises:
            ValueError: ``obs`` is not ``obs_dim`` finite numbers; ``episode`` is given and is not
                ``self.episode``.
        """
        if episode is not None and (not _is_int(episode) or episode != self._episode):
            raise ValueError(f"episode {episode!r} does not match the agent's episode counter {self._episode}")
        x = self._check_obs(obs)
        if greedy or self._episode >= self.warmup:
            with torch.no_grad():
                mean = float(self.actor(torch.from_numpy(x)[None])[0, 0])
            if greedy:
                return mean
            a = truncated_normal(self._rng, mean, self.sigma(self._episode))
        else:
            a = float(self._rng.uniform(0.0, 1.0))
        return float(np.float32(a))

    # --- learning -----------------------------------------------------------------------------
    def _allocate(self, capacity: int) -> None:
        self._capacity = capacity
        self._obs = np.zeros((capacity, self.obs_dim), np.float32)
        self._act = np.zeros((capacity, 1), np.float32)
        self._rew = np.zeros(capacity, np.float32)
        self._next = np.zeros((capacity, self.obs_dim), np.float32)
        self._done = np.zeros(capacity, np.float32)

    def _store(self, obs: np.ndarray, action: float, reward: float, next_obs: np.ndarray, done: bool) -> None:
        i = self._pos
        self._obs[i] = obs
        self._act[i, 0] = action
        self._rew[i] = reward
        self._next[i] = next_obs
        self._done[i] = float(done)
        self._pos = (i + 1) % self._capacity
        self._size = min(self._size + 1, self._capacity)

    def end_episode(self, observations: Any, actions: Sequence[float], reward: float) -> dict[str, Any]:
        """Finish the current episode: store its transitions and, after the warm-up, learn.

        Args:
            observations: (T, obs_dim), the observation of each component in the order acted on.
            actions: T actions in [0, 1], the ones ``act`` returned.
            reward: the episode's one finite reward, given to every transition (HAQ).

        Returns:
            ``{"episode": the finished episode's index, "updates": number of updates run (T after the
            warm-up, else 0), "critic_loss": mean critic loss, "actor_loss": mean actor loss (NaN when
            no update ran), "baseline": the moving-average baseline after them (None before any)}``.

        Raises:
            ValueError: shapes do not match (T >= 1), an action is outside [0, 1], an observation or the
                reward is not finite. Nothing is stored then.
        """
        obs = np.asarray(observations, dtype=np.float64) if not isinstance(observations, np.ndarray) else observations
        if obs.ndim != 2 or obs.shape[0] < 1 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"observations must have shape (T >= 1, {self.obs_dim}), not {obs.shape}")
        obs = np.stack([self._check_obs(o, f"observations[{i}]") for i, o in enumerate(obs)])
        steps = obs.shape[0]
        try:
            acts = np.asarray(actions, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"actions must be {steps} numbers in [0, 1] ({exc})") from None
        if acts.shape != (steps,):
            raise ValueError(f"actions must have shape ({steps},) like observations, not {acts.shape}")
        bad = np.flatnonzero(~((acts >= 0.0) & (acts <= 1.0)))
        if len(bad):
            raise ValueError(f"actions[{bad[0]}] must be in [0, 1], not {float(acts[bad[0]])!r}")
        if not _is_real(reward) or not math.isfinite(float(reward)):
            raise ValueError(f"reward must be a finite number, not {reward!r}")
        if self._capacity is None:
            self._allocate(HAQ_RMSIZE_PER_STEP * steps)

        learn = self._episode >= self.warmup
        critic_losses: list[float] = []
        actor_losses: list[float] = []
        for i in range(steps):
            last = i == steps - 1
            self._store(obs[i], float(acts[i]), float(reward), obs[i] if last else obs[i + 1], last)
            if learn:
                c, a = self.update()
                critic_losses.append(c)
                actor_losses.append(a)
        finished = self._episode
        self._episode += 1
        return {
            "episode": finished,
            "updates": len(critic_losses),
            "critic_loss": float(np.mean(critic_losses)) if critic_losses else math.nan,
            "actor_loss": float(np.mean(actor_losses)) if actor_losses else math.nan,
            "baseline": self._moving_average,
        }

    def update(self) -> tuple[float, float]:
        """One DDPG update from a sampled batch (module doc); returns ``(critic_loss, actor_loss)``.

        ``end_episode`` calls it; call it directly only for extra updates. Raises RuntimeError while the
        replay buffer is empty.
        """
        if self._size == 0:
            raise RuntimeError("DDPG.update: the replay buffer is empty")
        idx = self._rng.choice(self._size, size=self.batch_size, replace=self._size < self.batch_size)
        s = torch.from_numpy(self._obs[idx])
        a = torch.from_numpy(self._act[idx])
        r = self._rew[idx]
        s2 = torch.from_numpy(self._next[idx])
        not_done = torch.from_numpy(1.0 - self._done[idx])[:, None]

        batch_mean = float(np.mean(r, dtype=np.float64))
        if self._moving_average is None:
            self._moving_average = batch_mean
        else:
            self._moving_average += self.moving_alpha * (batch_mean - self._moving_average)
        r_t = (torch.from_numpy(r) - self._moving_average)[:, None]

        with torch.no_grad():
            q_next = self.critic_target(s2, self.actor_target(s2))
            y = r_t + self.discount * not_done * q_next
        critic_loss = torch.mean((self.critic(s, a) - y) ** 2)
        self.critic_optim.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_optim.step()

        actor_loss = -torch.mean(self.critic(s, self.actor(s)))
        self.actor_optim.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_optim.step()
        self.critic_optim.zero_grad(set_to_none=True)  # drop the critic gradients the actor loss left

        self._soft_update(self.actor_target, self.actor)
        self._soft_update(self.critic_target, self.critic)
        return float(critic_loss.detach()), float(actor_loss.detach())

    def _soft_update(self, target: nn.Module, online: nn.Module) -> None:
        """``target <- target * (1 - tau) + online * tau``, parameter by parameter, in float32."""
        with torch.no_grad():
            for t, o in zip(target.parameters(), online.parameters(), strict=True):
                t.copy_(t * (1.0 - self.tau) + o * self.tau)

    # --- checkpoint ---------------------------------------------------------------------------
    def _config(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _CONFIG_FIELDS}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume bit-identically (module doc); a deep copy, safe to keep."""
        n = self._size
        buffer = {
            "capacity": self._capacity,
            "size": n,
            "pos": self._pos,
            "obs": torch.from_numpy(self._obs[:n].copy()) if n else torch.zeros(0, self.obs_dim),
            "action": torch.from_numpy(self._act[:n].copy()) if n else torch.zeros(0, 1),
            "reward": torch.from_numpy(self._rew[:n].copy()) if n else torch.zeros(0),
            "next_obs": torch.from_numpy(self._next[:n].copy()) if n else torch.zeros(0, self.obs_dim),
            "done": torch.from_numpy(self._done[:n].copy()) if n else torch.zeros(0),
        }
        return copy.deepcopy(
            {
                "format": _FORMAT,
                "config": self._config(),
                "episode": self._episode,
                "moving_average": self._moving_average,
                "actor": self.actor.state_dict(),
                "critic": self.critic.state_dict(),
                "actor_target": self.actor_target.state_dict(),
                "critic_target": self.critic_target.state_dict(),
                "actor_optim": self.actor_optim.state_dict(),
                "critic_optim": self.critic_optim.state_dict(),
                "buffer": buffer,
                "numpy_rng": self._rng.bit_generator.state,
                "torch_rng": self._torch_gen.get_state(),
            }
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict()``. The agent must have been built with the same arguments (``seed``
        aside: the generator states are restored).

        Raises:
            ValueError: not a DDPG state dict of this format, or a constructor argument differs (the
                message names it with both values).
        """
        if not isinstance(state, dict) or state.get("format") != _FORMAT:
            raise ValueError(f"not a DDPG checkpoint of format {_FORMAT!r}")
        config = state["config"]
        for name in _CONFIG_FIELDS:
            if config.get(name) != getattr(self, name):
                raise ValueError(
                    f"checkpoint has DDPG.{name} = {config.get(name)!r}, this agent {getattr(self, name)!r}"
                )
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.actor_target.load_state_dict(state["actor_target"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.actor_optim.load_state_dict(state["actor_optim"])
        self.critic_optim.load_state_dict(state["critic_optim"])
        buf = state["buffer"]
        self._capacity, self._size, self._pos = buf["capacity"], int(buf["size"]), int(buf["pos"])
        if self._capacity is None:
            self._obs = self._act = self._rew = self._next = self._done = None
        else:
            self._allocate(int(buf["capacity"]))
            n = self._size
            self._obs[:n] = buf["obs"].numpy()
            self._act[:n] = buf["action"].numpy()
            self._rew[:n] = buf["reward"].numpy()
            self._next[:n] = buf["next_obs"].numpy()
            self._done[:n] = buf["done"].numpy()
        self._episode = int(state["episode"])
        ma = state["moving_average"]
        self._moving_average = None if ma is None else float(ma)
        self._rng.bit_generator.state = state["numpy_rng"]
        self._torch_gen.set_state(state["torch_rng"])
