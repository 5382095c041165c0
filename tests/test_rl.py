"""Tests of rl.ddpg: HAQ's DDPG agent (exploration, updates, baseline, checkpoint/resume, learning)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from rl.ddpg import DDPG, HAQ_RMSIZE_PER_STEP, minmax_normalize, truncated_normal


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: the machine is shared, and small matmuls only lose from more."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _truncnorm_std(mu: float, sigma: float, low: float = 0.0, high: float = 1.0) -> float:
    """Standard deviation of N(mu, sigma^2) truncated to [low, high] (closed form)."""
    a, b = (low - mu) / sigma, (high - mu) / sigma
    pdf = lambda x: math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    z = cdf(b) - cdf(a)
    mean_shift = (pdf(a) - pdf(b)) / z
    var = sigma**2 * (1 + (a * pdf(a) - b * pdf(b)) / z - mean_shift**2)
    return math.sqrt(var)


def _truncnorm_mean(mu: float, sigma: float, low: float = 0.0, high: float = 1.0) -> float:
    a, b = (low - mu) / sigma, (high - mu) / sigma
    pdf = lambda x: math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)  # noqa: E731
    cdf = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    return mu + sigma * (pdf(a) - pdf(b)) / (cdf(b) - cdf(a))


# --- argument validation -------------------------------------------------------------------------
@pytest.mark.parametrize(
    "field, value",
    [
        ("obs_dim", 0),
        ("obs_dim", True),
        ("obs_dim", 2.0),
        ("seed", -1),
        ("seed", "1"),
        ("hidden", 0),
        ("lr_actor", 0.0),
        ("lr_actor", -1e-4),
        ("lr_critic", float("nan")),
        ("tau", 0.0),
        ("tau", 1.5),
        ("discount", -0.1),
        ("discount", 1.01),
        ("batch_size", 0),
        ("batch_size", 64.0),
        ("buffer_size", 0),
        ("warmup", -1),
        ("sigma0", -0.5),
        ("sigma0", float("inf")),
        ("sigma_decay", 0.0),
        ("sigma_decay", 1.01),
        ("init_w", 0.0),
        ("moving_alpha", 0.0),
        ("moving_alpha", 2.0),
    ],
)
def test_constructor_rejects_bad_arguments_naming_field_and_value(field, value):
    kwargs = {"obs_dim": 3, field: value}
    obs_dim = kwargs.pop("obs_dim")
    with pytest.raises(ValueError) as info:
        DDPG(obs_dim, **kwargs)
    msg = str(info.value)
    assert f"DDPG.{field}" in msg
    assert msg.endswith(f"not {value!r}")


def test_constructor_keyword_only_and_edge_values_accepted():
    with pytest.raises(TypeError):
        DDPG(3, 0)  # seed is keyword-only
    with pytest.raises(ValueError, match=r"^DDPG\.tau must be a finite number in \(0, 1\], not 0$"):
        DDPG(3, tau=0)
    with pytest.raises(ValueError, match=r"^DDPG\.warmup must be an integer >= 0, not -1$"):
        DDPG(3, warmup=-1)
    agent = DDPG(1, seed=0, hidden=4, tau=1.0, discount=0.0, warmup=0, sigma0=0.0, sigma_decay=1.0,
                 batch_size=1, buffer_size=1, moving_alpha=1.0)
    assert (agent.tau, agent.discount, agent.warmup, agent.buffer_capacity) == (1.0, 0.0, 0, 1)


def test_act_and_end_episode_validate_inputs():
    agent = DDPG(2, hidden=8, warmup=1)
    with pytest.raises(ValueError, match=r"obs must have shape \(2,\), not \(3,\)"):
        agent.act([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="obs must be finite"):
        agent.act([0.1, float("nan")])
    with pytest.raises(ValueError, match="episode 1 does not match the agent's episode counter 0"):
        agent.act([0.1, 0.2], 1)
    obs = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"observations must have shape \(T >= 1, 2\), not \(3, 3\)"):
        agent.end_episode(np.zeros((3, 3)), [0.5] * 3, 1.0)
    with pytest.raises(ValueError, match=r"actions must have shape \(3,\)"):
        agent.end_episode(obs, [0.5] * 2, 1.0)
    with pytest.raises(ValueError, match=r"actions\[1\] must be in \[0, 1\], not 1.5"):
        agent.end_episode(obs, [0.5, 1.5, 0.5], 1.0)
    with pytest.raises(ValueError, match="reward must be a finite number, not nan"):
        agent.end_episode(obs, [0.5] * 3, float("nan"))
    assert len(agent) == 0 and agent.episode == 0  # nothing stored by the failed calls
    with pytest.raises(RuntimeError, match="replay buffer is empty"):
        agent.update()


# --- minmax_normalize ----------------------------------------------------------------------------
def test_minmax_normalize_columns_and_constant_column():
    m = np.array([[1.0, 5.0, 7.0], [3.0, 5.0, -1.0], [2.0, 5.0, 3.0]])
    out = minmax_normalize(m)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.5, 0.0, 0.5]], np.float32))
    np.testing.assert_array_equal(m[:, 0], [1.0, 3.0, 2.0])  # input untouched
    np.testing.assert_array_equal(minmax_normalize([[4, 2]]), [[0.0, 0.0]])  # one component: all constant


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (np.zeros(3), "must be 2-D"),
        (np.zeros((0, 2)), "must be 2-D"),
        ([[1.0, float("nan")]], r"matrix\[0, 1\] must be finite"),
        ([["a", "b"]], "must hold real numbers"),
    ],
)
def test_minmax_normalize_rejects(bad, fragment):
    with pytest.raises(ValueError, match=fragment):
        minmax_normalize(bad)


# --- exploration ---------------------------------------------------------------------------------
def test_warmup_actions_uniform_in_unit_interval_and_deterministic_per_seed():
    def warmup_actions(seed):
        agent = DDPG(4, seed=seed, warmup=20)
        rng = np.random.default_rng(99)  # observations vary; uniform actions must not care
        return np.array([agent.act(rng.random(4)) for _ in range(4000)])

    a = warmup_actions(0)
    assert np.all((a >= 0.0) & (a <= 1.0))
    np.testing.assert_array_equal(a, warmup_actions(0))
    assert not np.array_equal(a, warmup_actions(1))
    # Uniform on [0, 1]: mean 1/2 (s.e. 0.0046), std sqrt(1/12) = 0.2887, ten equal bins of 400 (s.d. 19).
    assert abs(a.mean() - 0.5) < 0.02
    assert abs(a.std() - math.sqrt(1 / 12)) < 0.01
    counts = np.histogram(a, bins=10, range=(0.0, 1.0))[0]
    assert counts.min() > 320 and counts.max() < 480


def test_warmup_episodes_random_then_actor_with_noise():
    agent = DDPG(2, seed=0, hidden=16, warmup=2)
    obs = np.array([[0.0, 1.0], [1.0, 0.0]])
    for e in range(2):
        acts = [agent.act(o) for o in obs]
        losses = agent.end_episode(obs, acts, -1.0)
        assert losses["updates"] == 0 and math.isnan(losses["critic_loss"]) and losses["baseline"] is None
    # From episode `warmup` on, the action is mu(obs) + truncated noise and learning runs once per step.
    acts = [agent.act(o) for o in obs]
    losses = agent.end_episode(obs, acts, -0.5)
    assert losses["episode"] == 2 and losses["updates"] == 2
    assert math.isfinite(losses["critic_loss"]) and math.isfinite(losses["actor_loss"])
    assert agent.episode == 3 and len(agent) == 6


def test_sigma_schedule_values():
    agent = DDPG(3, warmup=20)
    assert all(agent.sigma(e) is None for e in range(20))
    assert agent.sigma(20) == 0.5
    assert agent.sigma(21) == 0.5 * 0.99
    assert agent.sigma(120) == pytest.approx(0.18301617063661475, rel=1e-15)  # 0.5 * 0.99 ** 100
    custom = DDPG(3, warmup=0, sigma0=0.25, sigma_decay=0.5)
    assert [custom.sigma(e) for e in range(4)] == [0.25, 0.125, 0.0625, 0.03125]
    with pytest.raises(ValueError, match="episode must be an integer >= 0, not -1"):
        agent.sigma(-1)


@pytest.mark.parametrize("mu, sigma", [(0.5, 0.5), (0.1, 0.3), (0.9, 0.05), (0.0, 0.2), (1.0, 1.0)])
def test_truncated_normal_within_bounds_and_matches_moments(mu, sigma):
    rng = np.random.default_rng(7)
    x = np.array([truncated_normal(rng, mu, sigma) for _ in range(20000)])
    assert np.all((x >= 0.0) & (x <= 1.0))
    # 20000 samples: standard errors about std/141 (mean) and std/200 (std); allow 4-5 of them.
    std = _truncnorm_std(mu, sigma)
    assert abs(x.mean() - _truncnorm_mean(mu, sigma)) < 4 * std / 141
    assert abs(x.std() - std) < 0.03 * std


def test_truncated_normal_edge_cases():
    rng = np.random.default_rng(0)
    state = copy.deepcopy(rng.bit_generator.state)
    assert truncated_normal(rng, 0.3, 0.0) == 0.3
    assert rng.bit_generator.state == state  # sigma 0 draws nothing
    with pytest.raises(ValueError, match="mean must be in"):
        truncated_normal(rng, 1.2, 0.1)
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        truncated_normal(rng, 0.5, -0.1)


def test_act_noise_spread_follows_sigma_schedule():
    """After the warm-up, act() samples mu(obs) plus truncated noise whose spread decays per episode."""
    agent = DDPG(1, seed=3, hidden=32, warmup=1)
    obs = np.array([[1.0]])
    stds = []
    for target_episode in (1, 60, 200):
        while agent.episode < target_episode:
            agent.end_episode(obs, [agent.act(obs[0])], -0.1)
        mu = agent.act(obs[0], greedy=True)
        sigma = agent.sigma(agent.episode)
        x = np.array([agent.act(obs[0]) for _ in range(4000)])
        assert np.all((x >= 0.0) & (x <= 1.0))
        expected = _truncnorm_std(mu, sigma)
        assert abs(x.std() - expected) < 0.06 * expected, (target_episode, mu, sigma, x.std(), expected)
        assert abs(x.mean() - _truncnorm_mean(mu, sigma)) < 5 * expected / math.sqrt(len(x))
        stds.append(x.std())
    assert stds[0] > stds[1] > stds[2]
    assert stds[2] < 0.1  # sigma(200) = 0.5 * 0.99 ** 199 = 0.068


def test_global_random_generators_untouched():
    torch_state = torch.random.get_rng_state()
    np_state = np.random.get_state()
    agent = DDPG(2, seed=5, hidden=16, warmup=1)
    obs = np.eye(2)
    for _ in range(3):
        agent.end_episode(obs, [agent.act(o) for o in obs], -0.3)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    np_after = np.random.get_state()
    assert np_after[0] == np_state[0] and np.array_equal(np_after[1], np_state[1]) and np_after[2:] == np_state[2:]


# --- networks and updates ------------------------------------------------------------------------
def test_network_shapes_and_init():
    agent = DDPG(5, hidden=300)
    assert [tuple(p.shape) for p in agent.actor.parameters()] == [(300, 5), (300,), (300, 300), (300,), (1, 300), (1,)]
    assert tuple(agent.critic.fc_state.weight.shape) == (300, 5)
    assert tuple(agent.critic.fc_action.weight.shape) == (300, 1)
    assert tuple(agent.critic.fc2.weight.shape) == (300, 300)
    assert tuple(agent.critic.fc3.weight.shape) == (1, 300)
    for net in (agent.actor, agent.critic):
        assert all(p.dtype == torch.float32 for p in net.parameters())
        assert net.fc3.weight.abs().max() <= 3e-3 and net.fc3.bias.abs().max() <= 3e-3
        assert net.fc3.weight.abs().max() > 2.5e-3  # uniform over the whole range, not zero
        bound = 1 / math.sqrt(300)
        assert net.fc2.weight.abs().max() <= bound and net.fc2.weight.abs().max() > 0.9 * bound
    # Targets start as exact copies; an untrained actor outputs sigmoid(~0) = 0.5.
    for online, target in ((agent.actor, agent.actor_target), (agent.critic, agent.critic_target)):
        assert all(torch.equal(a, b) for a, b in zip(online.parameters(), target.parameters()))
    assert abs(agent.act(np.ones(5), greedy=True) - 0.5) < 0.01
    # Same seed, same networks; another seed, other networks.
    again, other = DDPG(5, seed=0), DDPG(5, seed=1)
    assert torch.equal(again.actor.fc1.weight, agent.actor.fc1.weight)
    assert not torch.equal(other.actor.fc1.weight, agent.actor.fc1.weight)


def test_soft_target_update_is_exact():
    agent = DDPG(3, hidden=16, batch_size=4, warmup=1)
    obs = np.eye(3)
    agent.end_episode(obs, [agent.act(o) for o in obs], -0.7)  # warm-up: stored, not learned
    old = {name: [p.detach().clone() for p in getattr(agent, name).parameters()]
           for name in ("actor", "critic", "actor_target", "critic_target")}
    agent.update()
    tau = 0.01
    for online, target in (("actor", "actor_target"), ("critic", "critic_target")):
        for p_old, p_new, t_old, t_new in zip(old[online], getattr(agent, online).parameters(), old[target],
                                               getattr(agent, target).parameters()):
            assert not torch.equal(p_new, p_old)  # the online network did learn
            assert torch.equal(t_new, t_old * (1 - tau) + p_new * tau)  # bit-exact float32
            ref = t_old.double() * (1 - tau) + p_new.double() * tau
            assert torch.allclose(t_new.double(), ref, rtol=0, atol=1e-7)
            assert not torch.equal(t_new, p_new)  # a soft update, not a copy


def test_moving_average_baseline_by_hand():
    """batch_size == buffer_size == 4: every batch is the whole buffer, so its mean is known by hand."""
    agent = DDPG(2, hidden=8, warmup=2, batch_size=4, buffer_size=4)
    obs = np.array([[0.0, 1.0], [1.0, 0.0]])
    rewards = [-1.0, -0.5, -0.25, 0.5]
    baselines = []
    for r in rewards:
        baselines.append(agent.end_episode(obs, [agent.act(o) for o in obs], r)["baseline"])
    # Episodes 0, 1 (warm-up): no update, no baseline.
    # Episode 2: buffer [R2, R0, R1, R1] -> mean -0.5625 = first baseline; [R2, R2, R1, R1] -> mean -0.375,
    #            b = -0.5625 + 0.5 (-0.375 + 0.5625) = -0.46875.
    # Episode 3: [R2, R2, R3, R1] -> mean -0.125, b = -0.46875 + 0.5 (-0.125 + 0.46875) = -0.296875;
    #            [R2, R2, R3, R3] -> mean 0.125, b = -0.296875 + 0.5 (0.125 + 0.296875) = -0.0859375.
    assert baselines == [None, None, -0.46875, -0.0859375]
    assert agent.moving_average == -0.0859375
    # The buffer keeps the raw rewards (HAQ subtracts the baseline from each sampled batch).
    assert sorted(agent.state_dict()["buffer"]["reward"].tolist()) == [-0.25, -0.25, 0.5, 0.5]


def test_critic_target_uses_baseline_and_bootstrap():
    """First update after a warm-up: critic loss = mean((Q(s,a) - (r - b + (1-done) Q'(s', mu'(s'))))^2)."""
    agent = DDPG(2, hidden=8, warmup=2, batch_size=4, buffer_size=4)
    obs = np.array([[0.0, 1.0], [1.0, 0.0]])
    for r in (-1.0, -0.5):
        agent.end_episode(obs, [agent.act(o) for o in obs], r)
    critic, critic_t, actor_t = (copy.deepcopy(m) for m in (agent.critic, agent.critic_target, agent.actor_target))
    buf = agent.state_dict()["buffer"]
    b = (-1.0 - 1.0 - 0.5 - 0.5) / 4
    with torch.no_grad():
        y = (buf["reward"] - b)[:, None] + (1 - buf["done"])[:, None] * critic_t(buf["next_obs"], actor_t(buf["next_obs"]))
        expected = float(torch.mean((critic(buf["obs"], buf["action"]) - y) ** 2))
    critic_loss, _ = agent.update()
    assert agent.moving_average == b
    assert critic_loss == pytest.approx(expected, rel=1e-5)
    # done is set on the last step of each episode only; its next_obs is its own obs.
    assert buf["done"].tolist() == [0.0, 1.0, 0.0, 1.0]
    assert torch.equal(buf["next_obs"][0], buf["obs"][1]) and torch.equal(buf["next_obs"][1], buf["obs"][1])


def test_replay_buffer_default_size_is_haq_rmsize_per_component():
    agent = DDPG(2, hidden=8, warmup=100)
    assert agent.buffer_capacity is None
    obs = np.tile(np.eye(2), (3, 1))[:5]
    for e in range(30):
        agent.end_episode(obs, [0.5] * 5, float(e))
    assert HAQ_RMSIZE_PER_STEP == 128 and agent.buffer_capacity == 128 * 5 and len(agent) == 150
    ring = DDPG(2, hidden=8, warmup=100, buffer_size=7)
    for e in range(5):
        ring.end_episode(obs[:3], [0.5] * 3, float(e))
    assert len(ring) == 7  # the oldest transitions are overwritten
    assert sorted(ring.state_dict()["buffer"]["reward"].tolist()) == [2.0, 3.0, 3.0, 3.0, 4.0, 4.0, 4.0]


# --- checkpoint / resume -------------------------------------------------------------------------
_TARGETS = np.array([0.2, 0.8, 0.35])
_OBS = np.eye(3)


def _run_episodes(agent: DDPG, n: int) -> list[float]:
    actions = []
    for _ in range(n):
        acts = [agent.act(o, agent.episode) for o in _OBS]
        agent.end_episode(_OBS, acts, -float(np.sum((np.array(acts) - _TARGETS) ** 2)))
        actions += acts
    return actions


def _assert_same_state(a: DDPG, b: DDPG) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    for net in ("actor", "critic", "actor_target", "critic_target"):
        assert sa[net].keys() == sb[net].keys()
        for k in sa[net]:
            assert torch.equal(sa[net][k], sb[net][k]), (net, k)
    for opt in ("actor_optim", "critic_optim"):
        assert sa[opt]["param_groups"] == sb[opt]["param_groups"]
        for i, st in sa[opt]["state"].items():
            for k, v in st.items():
                assert torch.equal(v, sb[opt]["state"][i][k]), (opt, i, k)
    for k, v in sa["buffer"].items():
        assert torch.equal(v, sb["buffer"][k]) if isinstance(v, torch.Tensor) else v == sb["buffer"][k]
    assert (sa["episode"], sa["moving_average"], sa["numpy_rng"]) == (sb["episode"], sb["moving_average"], sb["numpy_rng"])
    assert torch.equal(sa["torch_rng"], sb["torch_rng"])


@pytest.mark.parametrize("split", [2, 5])
def test_resume_from_checkpoint_is_bit_identical(tmp_path, split):
    kwargs = dict(warmup=3, batch_size=16)
    straight = DDPG(3, seed=11, **kwargs)
    actions_straight = _run_episodes(straight, 8)

    first = DDPG(3, seed=11, **kwargs)
    actions = _run_episodes(first, split)
    torch.save(first.state_dict(), tmp_path / "agent.pt")
    del first
    resumed = DDPG(3, seed=12345, **kwargs)  # another seed: everything must come from the checkpoint
    resumed.load_state_dict(torch.load(tmp_path / "agent.pt"))  # default weights_only=True
    actions += _run_episodes(resumed, 8 - split)

    assert actions == actions_straight
    assert len(set(actions_straight[9:])) == len(actions_straight[9:])  # noisy actor actions, all distinct
    _assert_same_state(straight, resumed)
    assert resumed.moving_average is not None and resumed.episode == 8


def test_load_state_dict_rejects_other_configuration():
    state = DDPG(3, hidden=8).state_dict()
    with pytest.raises(ValueError, match=r"checkpoint has DDPG.tau = 0.01, this agent 0.02"):
        DDPG(3, hidden=8, tau=0.02).load_state_dict(state)
    with pytest.raises(ValueError, match="not a DDPG checkpoint"):
        DDPG(3, hidden=8).load_state_dict({"actor": {}})


def test_state_dict_is_a_snapshot():
    agent = DDPG(3, hidden=8, warmup=1, batch_size=4)
    _run_episodes(agent, 1)
    snap = agent.state_dict()
    w = snap["actor"]["fc1.weight"].clone()
    _run_episodes(agent, 2)
    assert torch.equal(snap["actor"]["fc1.weight"], w)
    assert not torch.equal(agent.actor.fc1.weight, w)


# --- learning ------------------------------------------------------------------------------------
def _greedy_error(agent: DDPG) -> float:
    return float(np.max(np.abs(np.array([agent.act(o, greedy=True) for o in _OBS]) - _TARGETS)))


def test_learns_toy_targets_with_haq_defaults():
    """3 components, obs = one-hot index, reward = -sum((a_i - t_i)^2), HAQ's hyperparameters.

    Untrained, the actor outputs sigmoid(~0) = 0.5 for every step: error 0.3 on targets 0.2 and 0.8.
    Tolerance 0.08: below half the smallest gap between targets (0.15), so each component must get its
    own action; over seeds 0..11 the greatest error after 400 episodes was 0.05 (0.02-0.05), so 0.08
    leaves room for floating-point differences between machines without letting a non-learner pass.
    """
    tol = 0.08
    agent = DDPG(3, seed=0)
    assert _greedy_error(agent) > 0.25  # untrained fails
    _run_episodes(agent, 20)
    assert _greedy_error(agent) > 0.25  # warm-up alone (no updates) fails too
    _run_episodes(agent, 380)
    assert _greedy_error(agent) < tol


def test_numpy_scalars_are_accepted_as_the_numbers_they_are():
    agent = DDPG(np.int64(3), seed=np.int32(2), hidden=4, tau=np.float32(0.5), warmup=np.int64(0))
    assert (agent.obs_dim, agent.seed, agent.warmup) == (3, 2, 0) and type(agent.obs_dim) is int
    assert agent.tau == 0.5 and type(agent.tau) is float
    with pytest.raises(ValueError, match=r"^DDPG\.warmup must be an integer >= 0, not np.True_$"):
        DDPG(3, warmup=np.bool_(True))
