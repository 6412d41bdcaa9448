"""iql.py: each exercise on hand values, V learning the expectile, AWR, the order of the three updates
and the target update, the reward scale, the policy's log-std range; the online phase's buffer (scaled
rewards), runner and sampled actions against a stub env; end to end offline and offline-to-online,
learning, bad input."""

import copy
import math
import warnings
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

import iql
from common.datasets import DatasetError, OfflineDataset, load_dataset
from testdata import read_summary, rollout_pendulum, run_script, write_dataset


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    # On a busy 2-core machine two intra-op threads can be 20x slower than one (measured: 230 vs 8
    # ms a step); one thread here and in the scripts the tests start.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_iql(obs_dim=3, act_dim=1, **overrides):
    args = iql.Args(**overrides)
    return iql.IQL(obs_dim, act_dim, args, -2.0 * torch.ones(act_dim), 2.0 * torch.ones(act_dim), "cpu")


def reference_expectile_loss(u: torch.Tensor, tau: float) -> torch.Tensor:
    """L2^tau(u) = |tau - 1(u < 0)| u^2, averaged: stands in for iql.expectile_loss in the checks of the
    other exercises, so that each exercise is checked on its own."""
    return ((tau - (u < 0).float()).abs() * u**2).mean()


def numerical_expectile(x: np.ndarray, tau: float) -> float:
    """The m with tau E[(x - m)_+] = (1 - tau) E[(m - x)_+] (first-order condition of L2^tau), by bisection."""
    lo, hi = float(x.min()), float(x.max())
    for _ in range(100):
        m = (lo + hi) / 2
        if tau * np.maximum(x - m, 0).mean() > (1 - tau) * np.maximum(m - x, 0).mean():
            lo = m
        else:
            hi = m
    return (lo + hi) / 2


class StateFunction(nn.Module):
    """A stand-in network whose output is a fixed function of the observation: f(s) = scale * s[:, 0]."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, obs):
        return self.scale * obs[:, 0]


class ConstantTwinQ(nn.Module):
    """A stand-in pair of target critics that returns (value, value + 1) whatever (s, a)."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, obs, actions):
        q = torch.full((obs.shape[0],), self.value)
        return q, q + 1.0


# ---- exercise iql.expectile_loss ----

@pytest.mark.exercise("iql.expectile_loss")
def test_expectile_loss_on_hand_values():
    for u, tau, expected in [(-1.0, 0.9, 0.1), (1.0, 0.9, 0.9), (-1.0, 0.1, 0.9), (2.0, 0.7, 2.8), (-2.0, 0.7, 1.2)]:
        got = float(iql.expectile_loss(torch.tensor([u]), tau))
        assert got == pytest.approx(expected), \
            f"expectile loss: for u = {u}, tau = {tau} expected {expected} (|tau - 1(u < 0)| u^2), got {got:.4g}"
    u = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0])
    # 0.3 * 4, 0.3 * 0.25, 0.7 * 0, 0.7 * 1, 0.7 * 9, then the mean of the five
    got = float(iql.expectile_loss(u, 0.7))
    assert got == pytest.approx(1.655), \
        f"expectile loss: for u = (-2, -0.5, 0, 1, 3), tau = 0.7 expected their mean 1.655, got {got:.4g}"
    u = torch.linspace(-3.0, 2.0, 11)
    got, expected = float(iql.expectile_loss(u, 0.5)), float(0.5 * (u**2).mean())
    assert got == pytest.approx(expected), \
        f"expectile loss: tau = 0.5 must be half the mean squared error, expected {expected:.4g}, got {got:.4g}"


# ---- exercise iql.value_loss ----

@pytest.mark.exercise("iql.value_loss")
def test_value_loss_on_hand_values(monkeypatch):
    monkeypatch.setattr(iql, "expectile_loss", reference_expectile_loss)
    q_hat = torch.tensor([3.0, 0.0])
    v = torch.tensor([1.0, 1.0], requires_grad=True)
    # u = Q_hat - V = (2, -1): (0.9 * 4 + 0.1 * 1) / 2
    loss = iql.value_loss(q_hat, v, 0.9)
    got = float(loss.detach())
    assert got == pytest.approx(1.85), (
        f"value loss: for Q_hat = (3, 0), V = (1, 1), tau = 0.9 expected 1.85 (u = Q_hat - V = (2, -1)), "
        f"got {got:.4g}" + (" (that is u = V - Q_hat)" if got == pytest.approx(0.65) else ""))
    loss.backward()
    # dL/dV = -2 |tau - 1(u < 0)| u / B: V below Q_hat is pulled up hard, V above it pushed down softly
    assert v.grad is not None, "value loss: no gradient reaches V(s)"
    torch.testing.assert_close(v.grad, torch.tensor([-1.8, 0.1]),
                               msg=lambda m: f"value loss: gradient with respect to V expected (-1.8, 0.1); {m}")


@pytest.mark.exercise("iql.value_loss")
@pytest.mark.parametrize("tau", [0.9, 0.5])
def test_v_learns_the_expectile_of_q_over_dataset_actions(tau, monkeypatch):
    # Three states (one-hot); in each, Q_hat(s, a) over the dataset's actions has a different distribution.
    monkeypatch.setattr(iql, "expectile_loss", reference_expectile_loss)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 200
    qs = [rng.exponential(1.0, n), rng.uniform(-1.0, 1.0, n), np.where(rng.random(n) < 0.2, 5.0, 0.0)]
    obs = torch.eye(3).repeat_interleave(n, dim=0)
    q_hat = torch.tensor(np.concatenate(qs), dtype=torch.float32)
    model = make_iql(obs_dim=3, act_dim=1, expectile=tau, hidden_dim=32, learning_rate=3e-3)
    for _ in range(500):
        model.update_v(obs, q_hat)
    v = model.vf(torch.eye(3)).detach().numpy()
    for s in range(3):
        expected = numerical_expectile(qs[s], tau)
        assert v[s] == pytest.approx(expected, abs=0.05), (
            f"value loss: V trained on it must reach the {tau}-expectile of Q over the data's actions in "
            f"state {s}: expected {expected:.3f}, got {v[s]:.3f} (the {1 - tau:.1f}-expectile is "
            f"{numerical_expectile(qs[s], 1 - tau):.3f})")


# ---- exercise iql.q_loss ----

@pytest.mark.exercise("iql.q_loss")
def test_q_loss_on_hand_values():
    q1, q2 = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])
    r, next_v = torch.tensor([1.0, 1.0]), torch.tensor([10.0, 10.0])
    d = torch.tensor([0.0, 1.0])
    # y = r + 0.9 (1 - d) V(s') = (10, 1); Q1's errors 9, 1 and Q2's 10, 1: (81 + 1) / 2 + (100 + 1) / 2
    got = float(iql.q_loss(q1, q2, r, d, next_v, 0.9))
    assert got == pytest.approx(91.5), (
        f"Q loss: for Q1 = (1, 2), Q2 = (0, 0), r = (1, 1), d = (0, 1), V(s') = (10, 10), gamma = 0.9 expected "
        f"91.5 (targets y = (10, 1), the two critics' mean squared errors summed), got {got:.4g}")
    one = dict(q1=torch.zeros(1), q2=torch.zeros(1), rewards=torch.tensor([1.0]), next_v=torch.tensor([10.0]),
               gamma=0.9)
    got = float(iql.q_loss(terminals=torch.tensor([1.0]), **one))
    assert got == pytest.approx(2.0), \
        f"Q loss: at a termination (d = 1) the target is r alone: for r = 1, Q1 = Q2 = 0 expected 2, got {got:.4g}"
    got = float(iql.q_loss(terminals=torch.tensor([0.0]), **one))
    assert got == pytest.approx(200.0), (
        f"Q loss: without a termination (d = 0, a time-limit end included) the target is r + gamma V(s') = 10: "
        f"for Q1 = Q2 = 0 expected 200, got {got:.4g}")


@pytest.mark.exercise("iql.q_loss")
def test_q_step_bootstraps_from_v_at_next_state_and_stops_only_at_terminations():
    # V(s) = 10 s_0 and the target critics give 1000 everywhere: a target built from Q_hat, from V(s) or
    # without the mask lands far from the right one. s_0 = 1 at s, 2 at s', so V(s) = 10, V(s') = 20.
    torch.manual_seed(0)
    model = make_iql(obs_dim=2, act_dim=1, gamma=0.5)
    model.vf, model.qf_target = StateFunction(10.0), ConstantTwinQ(1000.0)
    obs = torch.tensor([[1.0, 0.0]] * 4)
    next_obs = torch.tensor([[2.0, 0.0]] * 4)
    actions = torch.tensor([[0.5], [-0.5], [1.0], [0.0]])
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0])
    # the last transition ends its episode at the time limit: truncated, so d = 0 and it bootstraps
    terminals = torch.tensor([0.0, 1.0, 0.0, 0.0])
    with torch.no_grad():
        q1, q2 = model.qf(obs, actions)
    loss, _ = model.update_q(obs, actions, rewards, next_obs, terminals)
    y = torch.tensor([1.0 + 0.5 * 20, 2.0, 3.0 + 0.5 * 20, 4.0 + 0.5 * 20])
    expected = float(((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean())
    assert float(loss) == pytest.approx(expected, rel=1e-5), (
        f"Q step: with y = r + gamma (1 - d) V(s') = (11, 2, 13, 14) expected loss {expected:.4g}, got "
        f"{float(loss):.4g}")


# ---- exercise iql.awr_actor_loss ----

@pytest.mark.exercise("iql.awr_actor_loss")
def test_awr_actor_loss_on_hand_values():
    advantage = torch.tensor([0.0, math.log(2.0) / 3.0, 10.0])
    log_prob = torch.tensor([-1.0, -2.0, -3.0], requires_grad=True)
    # weights exp(3 A) = (1, 2, e^30), clipped at 100: -(1 * -1 + 2 * -2 + 100 * -3) / 3
    loss = iql.awr_actor_loss(advantage, log_prob, 3.0, 100.0)
    got = float(loss.detach())
    assert got == pytest.approx(305.0 / 3.0), (
        f"AWR loss: for A = (0, ln 2 / 3, 10), log pi = (-1, -2, -3), beta = 3 expected 101.7 (weights "
        f"exp(beta A) = (1, 2, e^30) clipped at 100 to (1, 2, 100), the mean of -w log pi), got {got:.4g}")
    loss.backward()
    torch.testing.assert_close(log_prob.grad, torch.tensor([-1.0, -2.0, -100.0]) / 3.0, msg=lambda m: (
        f"AWR loss: its gradient with respect to log pi must be -w / B = -(1, 2, 100) / 3; {m}"))
    got = float(iql.awr_actor_loss(torch.tensor([5.0, -5.0]), torch.tensor([-1.0, -3.0]), 0.0, 100.0))
    assert got == pytest.approx(2.0), \
        f"AWR loss: with beta = 0 every weight is 1 (behaviour cloning): expected -mean(log pi) = 2, got {got:.4g}"


@pytest.mark.exercise("iql.awr_actor_loss")
def test_awr_moves_the_policy_towards_actions_with_higher_advantage():
    # One state, dataset actions uniform on [-2, 2], Q_hat(s, a) = a and V(s) = 2, so A = a - 2 <= 0 and
    # no weight is clipped. BC would learn the mean action 0; AWR the mean weighted by exp(3 (a - 2)),
    # near 2 - 1/3 = 1.67.
    torch.manual_seed(0)
    model = make_iql(obs_dim=3, act_dim=1, hidden_dim=32, learning_rate=3e-3, total_steps=10**6)
    obs, actions = torch.zeros(256, 3), torch.linspace(-2, 2, 256)[:, None]
    advantage = actions[:, 0] - 2.0
    for _ in range(250):
        model.update_actor(obs, actions, advantage)
    mean = model.actor(obs[:1]).item()
    assert 1.45 < mean < 1.85, (f"AWR: with Q_hat(s, a) = a, V(s) = 2, beta = 3 the policy's mean action must "
                                f"move to the weighted mean of the data's actions, about 1.67; got {mean:.3f}")


# ---- the rest of the update (no exercise) ----

def test_polyak_update_moves_the_target_towards_the_online_network():
    online = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    target = [torch.tensor([5.0, -2.0]), torch.tensor([[0.0]])]
    iql.polyak_update(target, online, 0.25)
    # theta_hat <- 0.75 theta_hat + 0.25 theta
    expected = "expected 0.75 x target + 0.25 x online = (4, -1) and 0.75"
    torch.testing.assert_close(target[0], torch.tensor([4.0, -1.0]), msg=lambda m: f"Polyak update: {expected}; {m}")
    torch.testing.assert_close(target[1], torch.tensor([[0.75]]), msg=lambda m: f"Polyak update: {expected}; {m}")
    torch.testing.assert_close(online[0], torch.tensor([1.0, 2.0]), msg="the online network must not move")
    torch.testing.assert_close(online[1], torch.tensor([[3.0]]), msg="the online network must not move")


def test_update_runs_v_then_q_and_its_target_then_pi():
    torch.manual_seed(0)
    model = make_iql(obs_dim=3, act_dim=2, hidden_dim=16, gamma=0.9, tau=0.1, expectile=0.8, learning_rate=1e-2)
    with torch.no_grad():  # target critics that differ from the online ones
        for p in model.qf_target.parameters():
            p.add_(0.5 * torch.randn_like(p))
    before = copy.deepcopy({"vf": model.vf, "qf": model.qf, "qf_target": model.qf_target, "actor": model.actor})
    obs, next_obs, actions = torch.randn(32, 3), torch.randn(32, 3), torch.rand(32, 2) * 4 - 2
    rewards, terminals = torch.randn(32), (torch.rand(32) < 0.3).float()
    metrics = model.update(obs, actions, rewards, next_obs, terminals)

    with torch.no_grad():
        q_hat = torch.min(*before["qf_target"](obs, actions))  # the targets before this step's Polyak update
        # 1. V's loss on the old V
        expected_v = reference_expectile_loss(q_hat - before["vf"](obs), 0.8)
        # 2. Q's loss on the old Q, the target from the V after its step
        q1, q2 = before["qf"](obs, actions)
        y = rewards + 0.9 * (1 - terminals) * model.vf(next_obs)
        expected_q = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
        # 4. pi's loss on the old pi, the advantage from the values of step 1
        w = torch.exp(3.0 * (q_hat - before["vf"](obs))).clamp(max=100.0)
        expected_pi = -(w * before["actor"].log_prob(obs, actions)).mean()
    torch.testing.assert_close(metrics["losses/value_loss"], expected_v, msg=lambda m: (
        f"V's step: its loss must be L_V of V before the step against Q_hat of the target critics; {m}"))
    torch.testing.assert_close(metrics["losses/q_loss"], expected_q, msg=lambda m: (
        f"Q's step: its target must use V(s') after V's step, its loss the critics before theirs; {m}"))
    torch.testing.assert_close(metrics["losses/actor_loss"], expected_pi, msg=lambda m: (
        f"pi's step: its advantage must be Q_hat (before the Polyak step) minus V before V's step; {m}"))
    # 3. theta_hat <- (1 - tau) theta_hat + tau theta, with the critics after their step
    for old, new, online in zip(before["qf_target"].parameters(), model.qf_target.parameters(),
                                model.qf.parameters()):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * online, msg=lambda m: (
            f"target update: expected 0.9 x the old target + 0.1 x the critics after their step (tau = 0.1); {m}"))
    for net in ("vf", "qf", "actor"):
        moved = [not torch.equal(a, b) for a, b in zip(before[net].parameters(), getattr(model, net).parameters())]
        assert any(moved), f"update: the network {net} did not take a step"


def test_actor_learning_rate_follows_a_cosine_to_zero():
    model = make_iql(total_steps=4)
    obs, actions = torch.zeros(8, 3), torch.zeros(8, 1)
    lrs = []
    for _ in range(4):
        lrs.append(model.actor_optimizer.param_groups[0]["lr"])
        model.update(obs, actions, torch.zeros(8), obs, torch.zeros(8))
    lrs.append(model.actor_optimizer.param_groups[0]["lr"])
    # lr_t = 3e-4 (1 + cos(pi t / 4)) / 2
    np.testing.assert_allclose(lrs, [3e-4 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(5)], atol=1e-12)
    assert model.v_optimizer.param_groups[0]["lr"] == model.q_optimizer.param_groups[0]["lr"] == 3e-4


def test_reward_scale_uses_the_time_limit_not_the_longest_episode():
    # Episodes of 13-54 steps (random Hopper) in an env with a 1000-step limit: T = 1000, as the paper's x1000.
    data = SimpleNamespace(episode_returns=torch.tensor([10.0, 30.0, 50.0]),
                           episode_lengths=torch.tensor([13, 54, 30]), max_episode_steps=1000, num_episodes=3)
    scale, shift = iql.reward_scaling(data, "locomotion")
    assert (scale, shift) == (pytest.approx(1000 / 40), 0.0), \
        f"reward scale: expected T / (max return - min return) = 1000 / 40 = 25, got {scale:.4g}"
    data.max_episode_steps = None  # an env without a time limit: the longest episode stands in for T
    scale, _ = iql.reward_scaling(data, "locomotion")
    assert scale == pytest.approx(54 / 40), f"reward scale without a time limit: expected 54 / 40, got {scale:.4g}"
    assert iql.reward_scaling(data, "antmaze") == (1.0, -1.0) and iql.reward_scaling(data, "none") == (1.0, 0.0)
    data.episode_returns = torch.tensor([7.0, 7.0, 7.0])
    with pytest.raises(DatasetError, match="different returns"):
        iql.reward_scaling(data, "locomotion")


def test_gaussian_log_prob_matches_torch_normal_with_log_std_clipped_to_paper_range():
    torch.manual_seed(0)
    actor = iql.Actor(3, 3, 16, -torch.ones(3), 3 * torch.ones(3))
    obs, actions = torch.randn(5, 3), torch.rand(5, 3) * 4 - 1
    mean = actor(obs)
    assert (mean >= -1).all() and (mean <= 3).all()  # tanh-bounded to the action box
    with torch.no_grad():  # -8 is clipped to -5 (the paper's learner.py), 3 to 2
        actor.log_std.copy_(torch.tensor([-8.0, 0.3, 3.0]))
    std = torch.tensor([-5.0, 0.3, 2.0]).exp()
    expected = torch.distributions.Normal(mean, std).log_prob(actions).sum(-1)
    torch.testing.assert_close(actor.log_prob(obs, actions), expected, msg=lambda m: (
        f"log pi(a|s) must be the Gaussian's with log sigma clipped to [-5, 2]; {m}"))


# ---- the online phase (--online-steps): sampled actions, the buffer, the runner, the learning rate ----

def test_sampled_actions_spread_by_sigma_and_stay_in_the_box():
    torch.manual_seed(0)
    actor = iql.Actor(3, 2, 16, -torch.ones(2), 3 * torch.ones(2))
    with torch.no_grad():  # mean in the middle of the box (1, 1), sigma 0.1
        actor.net[-1].weight.zero_()
        actor.net[-1].bias.zero_()
        actor.log_std.fill_(math.log(0.1))
    samples = actor.sample(torch.randn(4000, 3))
    assert samples.mean(0).tolist() == pytest.approx([1.0, 1.0], abs=0.01), "samples must be centred on mu(s)"
    assert samples.std(0).tolist() == pytest.approx([0.1, 0.1], rel=0.05), "samples must spread by sigma"
    with torch.no_grad():  # log sigma -8 is clipped to -5, as in log_prob
        actor.log_std.fill_(-8.0)
    samples = actor.sample(torch.randn(4000, 3))
    assert samples.std(0).tolist() == pytest.approx([math.exp(-5)] * 2, rel=0.05), \
        f"log sigma -8 must be clipped to -5 (sigma 0.0067), got a spread of {samples.std(0).tolist()}"
    with torch.no_grad():  # sigma e^1 = 2.7: many samples would fall outside [-1, 3]
        actor.log_std.fill_(1.0)
    samples = actor.sample(torch.randn(4000, 3))
    assert (samples >= -1).all() and (samples <= 3).all(), "samples must be clipped to the action box [-1, 3]"


def test_the_deterministic_actor_explores_with_small_clipped_noise():
    torch.manual_seed(0)
    actor = iql.Actor(3, 1, 16, -2 * torch.ones(1), 2 * torch.ones(1), deterministic=True)
    with torch.no_grad():
        actor.net[-1].weight.zero_()
        actor.net[-1].bias.zero_()
        samples = actor.sample(torch.randn(4000, 3))
    # N(0, 0.03^2) in units of half the box (2): standard deviation 0.06 around mu(s) = 0
    assert float(samples.mean()) == pytest.approx(0.0, abs=0.005), "exploration noise must be centred on mu(s)"
    got = float(samples.std())
    assert got == pytest.approx(0.06, rel=0.05), \
        f"deterministic actor: noise 0.03 x half the box (2) should spread the actions by 0.06, got {got:.4f}"


def tiny_dataset(n=4) -> OfflineDataset:
    """An OfflineDataset of n transitions with distinct rows (rewards 1..n), obs mean (1, 2, 3), std (2, 4, 8)."""
    obs = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
    return OfflineDataset(
        dataset_id="test/stub/tiny-v0", observations=obs, actions=torch.arange(n, dtype=torch.float32)[:, None],
        rewards=torch.arange(1, n + 1, dtype=torch.float32), next_observations=obs + 100.0,
        terminals=torch.zeros(n), truncations=torch.zeros(n), episode_starts=torch.tensor([0]),
        episode_lengths=torch.tensor([n]), episode_returns=torch.tensor([0.0]),
        obs_mean=torch.tensor([1.0, 2.0, 3.0]), obs_std=torch.tensor([2.0, 4.0, 8.0]),
        action_low=-torch.ones(1), action_high=torch.ones(1), ref_min_score=None, ref_max_score=None,
        ref_source="none", max_episode_steps=None, make_env=lambda **_: StubEnv(),
    )


class StubEnv(gym.Env):
    """Observation (episode, t, 10 t + a); reward = t. Episode 0 is truncated after 3 steps, every later
    one terminates after 2. Records the actions it receives and the resets."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.episode, self.actions, self.reset_seeds = -1, [], []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        self.reset_seeds.append(seed)
        return np.array([self.episode, 0.0, 0.0], np.float32), {}

    def step(self, action):
        self.actions.append(np.array(action))
        self.t += 1
        obs = np.array([self.episode, self.t, 10.0 * self.t + float(action[0])], np.float32)
        truncated = self.episode == 0 and self.t == 3
        terminated = self.episode > 0 and self.t == 2
        return obs, float(self.t), terminated, truncated, {}


class FixedSampleActor:
    """sample() = 0.5 in every state, the mean forward() = -0.9: the runner must act with a sample."""

    def sample(self, obs):
        return torch.full((obs.shape[0], 1), 0.5)

    def __call__(self, obs):
        return torch.full((obs.shape[0], 1), -0.9)


def test_online_transitions_are_stored_as_the_loader_stores_data_with_rewards_scaled():
    data = tiny_dataset()
    # r' = 0.5 r - 1, the preprocessing the offline rewards get, must reach the online ones too
    buffer = iql.ReplayBuffer(data, online_capacity=6, reward_scale=0.5, reward_shift=-1.0)
    env = StubEnv()
    runner = iql.OnlineRunner(env, buffer, seed=5)
    finished = [runner.step(FixedSampleActor()) for _ in range(5)]

    # episode 0: three steps, truncated; episode 1: two steps, terminated. Returns are the env's, unscaled.
    assert finished == [None, None, 6.0, None, 3.0], \
        f"the runner should return the raw episode returns 1+2+3 and 1+2 at their last steps, got {finished}"
    assert env.reset_seeds == [5, None, None], "the env is seeded once from --seed, then continues its stream"
    assert [float(a[0]) for a in env.actions] == [0.5] * 5, "the env must get actor.sample(s), not the mean action"
    assert buffer.size == data.size + 5
    new = slice(data.size, data.size + 5)
    got = buffer.rewards[new].tolist()
    assert got == [-0.5, 0.0, 0.5, -0.5, 0.0], (
        f"online rewards 1, 2, 3, 1, 2 must be stored scaled as the data's, 0.5 r - 1 = (-0.5, 0, 0.5, -0.5, 0); "
        f"got {got}")
    got = buffer.rewards[: data.size].tolist()
    assert got == [-0.5, 0.0, 0.5, 1.0], f"offline rewards 1..4 must be stored as 0.5 r - 1, got {got}"
    raw_obs = torch.tensor([[0, 0, 0], [0, 1, 10.5], [0, 2, 20.5], [1, 0, 0], [1, 1, 10.5]])
    raw_next = torch.tensor([[0, 1, 10.5], [0, 2, 20.5], [0, 3, 30.5], [1, 1, 10.5], [1, 2, 20.5]])
    mean, std = data.obs_mean, data.obs_std
    torch.testing.assert_close(buffer.observations[new], (raw_obs - mean) / std, msg=lambda m: (
        f"online observations must be normalised with the dataset's statistics; {m}"))
    # the truncated step keeps its own next observation (0, 3, 30.5), not the next episode's first
    torch.testing.assert_close(buffer.next_observations[new], (raw_next - mean) / std, msg=lambda m: (
        f"next observations: a truncated step keeps its own last observation; {m}"))
    got = buffer.terminals[new].tolist()
    assert got == [0.0, 0.0, 0.0, 0.0, 1.0], \
        f"d = 1 only at the termination (step 5); the truncation at step 3 bootstraps: got {got}"
    torch.testing.assert_close(buffer.observations[: data.size], data.normalize_obs(data.observations))


def test_batches_come_only_from_the_transitions_stored_so_far():
    torch.manual_seed(0)
    buffer = iql.ReplayBuffer(tiny_dataset(n=4), online_capacity=100)
    buffer.add(np.array([1.0, 2.0, 3.0]), np.array([0.25]), 7.0, np.array([1.0, 2.0, 3.0]), False)
    rewards = buffer.sample(4000)[2]
    # 5 stored transitions with rewards 1, 2, 3, 4 (offline) and 7 (online); rows not yet filled hold 0
    counts = {r: int((rewards == r).sum()) for r in (1.0, 2.0, 3.0, 4.0, 7.0)}
    assert sum(counts.values()) == 4000, f"batches drew empty rows beyond the 5 stored transitions: {counts}"
    assert all(600 < c < 1000 for c in counts.values()), f"draws should be uniform over the 5 transitions: {counts}"


@pytest.mark.parametrize("online_steps, schedule, offline_lrs", [
    (0, "auto", [3e-4 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(1, 5)]),  # offline run: cosine to 0
    (10, "auto", [3e-4] * 4),      # fine-tuning run: the paper's fine-tuning config, no decay at all
    (10, "constant", [3e-4] * 4),
    (10, "cosine", [3e-4 * (1 + math.cos(math.pi * t / 4)) / 2 for t in range(1, 5)]),
])
def test_actor_learning_rate_schedule_offline_and_online(online_steps, schedule, offline_lrs):
    """--actor-lr-schedule auto follows the paper's code: a cosine to 0 in an offline run, a constant rate
    through both phases of a fine-tuning run. Fails if a fine-tuning run decays the actor's rate offline."""
    model = make_iql(total_steps=4, online_steps=online_steps, actor_lr_schedule=schedule)
    obs, actions = torch.zeros(8, 3), torch.zeros(8, 1)
    lrs = []
    for _ in range(4):
        model.update(obs, actions, torch.zeros(8), obs, torch.zeros(8))
        lrs.append(model.actor_optimizer.param_groups[0]["lr"])
    np.testing.assert_allclose(lrs, offline_lrs, atol=1e-12, err_msg=(
        f"--online-steps {online_steps}, --actor-lr-schedule {schedule}: the actor's rate after each offline step"))
    if online_steps == 0:
        return
    model.start_online(3e-4)
    online = []
    for _ in range(3):
        model.update(obs, actions, torch.zeros(8), obs, torch.zeros(8))
        online.append(model.actor_optimizer.param_groups[0]["lr"])
    assert online == [3e-4] * 3, f"online, the actor's learning rate must stay at --learning-rate 3e-4, got {online}"


def test_online_phase_holds_the_actor_learning_rate_constant():
    model = make_iql(total_steps=4, online_steps=3, actor_lr_schedule="cosine")
    obs, actions = torch.zeros(8, 3), torch.zeros(8, 1)
    for _ in range(4):  # the offline cosine ends at 0
        model.update(obs, actions, torch.zeros(8), obs, torch.zeros(8))
    assert model.actor_optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    model.start_online(3e-4)
    lrs = []
    for _ in range(3):
        model.update(obs, actions, torch.zeros(8), obs, torch.zeros(8))
        lrs.append(model.actor_optimizer.param_groups[0]["lr"])
    assert lrs == [3e-4] * 3, f"online, the actor's learning rate must stay at --learning-rate 3e-4, got {lrs}"


# ---- the script ----

def test_end_to_end_checkpoint_reloads_with_same_actions(pendulum_expert, run_dir):
    out = run_script("iql.py", "--dataset-id", pendulum_expert, "--total-steps", 300, "--eval-freq", 150,
                     "--eval-episodes", 2, "--save-model", "--no-cuda", cwd=run_dir)
    assert out.returncode == 0, out.stderr
    run, summary = read_summary(run_dir)
    assert summary["steps"] == 300 and len(summary["eval_history"]) == 2
    assert math.isfinite(summary["final_normalized_score"]) and summary["sps"] > 0
    assert list(run.glob("events.out.tfevents.*"))
    assert "step 300/300" in out.stdout and "Rewards (locomotion)" in out.stdout

    ckpt = torch.load(run / "iql.pt", weights_only=True)
    assert ckpt["algorithm"] == "iql"
    data = load_dataset(pendulum_expert, "cpu", verbose=False)
    spread = float(data.episode_returns.max() - data.episode_returns.min())
    assert data.max_episode_steps == 200  # Pendulum-v1's time limit
    assert ckpt["reward_scale"] == pytest.approx(200 / spread) and summary["reward_scale"] == ckpt["reward_scale"]
    actor = iql.Actor(data.obs_dim, data.act_dim, ckpt["args"]["hidden_dim"], data.action_low, data.action_high)
    actor.load_state_dict(ckpt["actor"])
    torch.testing.assert_close(ckpt["obs_mean"], data.obs_mean)
    returns, scores = iql.evaluate(actor, data, ckpt["eval_seeds"], "cpu")
    np.testing.assert_allclose(returns, summary["final_returns"], rtol=1e-6)
    assert np.isfinite(scores).all()

    eval_dir = run_dir / "eval"
    eval_dir.mkdir()
    out = run_script("iql.py", "--eval-checkpoint", run / "iql.pt", "--no-cuda", cwd=eval_dir)
    assert out.returncode == 0, out.stderr
    _, ev = read_summary(eval_dir)
    assert ev["normalized_score"] == pytest.approx(summary["final_normalized_score"], rel=1e-9)


def test_deterministic_actor_and_antmaze_scaling_run(pendulum_expert, run_dir):
    out = run_script("iql.py", "--dataset-id", pendulum_expert, "--total-steps", 200, "--eval-freq", 200,
                     "--eval-episodes", 1, "--deterministic-actor", "--reward-scale", "antmaze", "--no-cuda",
                     cwd=run_dir)
    assert out.returncode == 0, out.stderr
    _, summary = read_summary(run_dir)
    assert summary["reward_shift"] == -1.0 and summary["reward_scale"] == 1.0
    assert math.isfinite(summary["final_normalized_score"])


def test_offline_then_online_end_to_end(pendulum_expert, run_dir):
    # 250 offline steps, then 200 online iterations: Pendulum's episodes last 200 steps, so exactly one
    # online episode ends, at step 450. Evaluations every 150 steps across both phases, at the switch
    # (250, not a multiple of 150) and at the end.
    out = run_script("iql.py", "--dataset-id", pendulum_expert, "--total-steps", 250, "--online-steps", 200,
                     "--eval-freq", 150, "--eval-episodes", 2, "--no-cuda", cwd=run_dir)
    assert out.returncode == 0, out.stderr
    run, summary = read_summary(run_dir)
    assert summary["steps"] == 450 and summary["offline_steps"] == 250 and summary["online_steps"] == 200
    steps = [h[0] for h in summary["eval_history"]]
    assert steps == [150, 250, 300, 450], \
        f"evaluations every 150 steps over both phases, at the switch (250) and at the end, got {steps}"
    assert summary["offline_final_normalized_score"] == summary["eval_history"][1][2]
    assert summary["final_normalized_score"] == summary["eval_history"][-1][2]
    [(step, ret)] = summary["online_episode_returns"]
    assert step == 450 and -2000 < ret <= 0, summary["online_episode_returns"]
    assert "Online fine-tuning from step 251" in out.stdout

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    online = events.Scalars("charts/online_episodic_return")
    assert [(e.step, e.value) for e in online] == [(450, pytest.approx(ret))]
    env_steps = {e.step: e.value for e in events.Scalars("charts/env_steps")}
    assert env_steps[250] == 0 and env_steps[450] == 200, env_steps
    lrs = {e.step: e.value for e in events.Scalars("charts/actor_lr")}
    assert lrs[250] == pytest.approx(3e-4) and lrs[450] == pytest.approx(3e-4), \
        f"the actor's lr in a fine-tuning run (--actor-lr-schedule auto): 3e-4 throughout, as the paper's fine-tuning config; got {lrs}"

    # the offline phase is exactly an offline-only run of 250 steps with the same (constant) schedule
    offline_dir = run_dir / "offline"
    offline_dir.mkdir()
    out = run_script("iql.py", "--dataset-id", pendulum_expert, "--total-steps", 250, "--eval-freq", 150,
                     "--eval-episodes", 2, "--actor-lr-schedule", "constant", "--no-cuda", cwd=offline_dir)
    assert out.returncode == 0, out.stderr
    _, offline = read_summary(offline_dir)
    assert offline["online_steps"] == 0
    assert not {"offline_steps", "online_episode_returns", "offline_final_normalized_score"} & set(offline)
    assert offline["eval_history"] == summary["eval_history"][:2], (
        "the first 250 steps of an --online-steps run must be those of the offline-only run: "
        f"{offline['eval_history']} vs {summary['eval_history'][:2]}")


@pytest.mark.learning("iql")
def test_iql_beats_bc_on_mixed_data(pendulum_mixed, run_dir):
    # Half the episodes are uniform-random, half a noisy controller. BC clones the mixture (bc.py on
    # this data: 34 final, 46 best over 10k steps); IQL's advantage weights must pick out the
    # controller's actions (measured: 75-91 after 3k steps with --expectile 0.5, 0.7, 0.9).
    out = run_script("iql.py", "--dataset-id", pendulum_mixed, "--total-steps", 3000, "--eval-freq", 3000,
                     "--eval-episodes", 10, "--no-cuda", cwd=run_dir)
    assert out.returncode == 0, out.stderr
    _, summary = read_summary(run_dir)
    assert summary["final_normalized_score"] > 55, summary


def test_checkpoint_of_another_script_is_refused(tmp_path, run_dir):
    path = tmp_path / "bc.pt"
    torch.save({"algorithm": "bc", "actor": {}, "args": {}, "obs_mean": torch.zeros(3), "obs_std": torch.ones(3),
                "eval_seeds": [1]}, path)
    out = run_script("iql.py", "--eval-checkpoint", path, "--no-cuda", cwd=run_dir)
    assert out.returncode != 0
    assert "is a checkpoint of bc.py, not of iql.py" in out.stderr
    assert not (run_dir / "runs").exists()


@pytest.mark.parametrize("flags, message", [
    (["--expectile", "1.0"], "--expectile must be in (0, 1) (got 1.0)"),
    (["--expectile", "0"], "--expectile must be in (0, 1) (got 0.0)"),
    (["--beta", "-1"], "--beta must be non-negative (got -1.0)"),
    (["--max-weight", "0"], "--max-weight must be positive (got 0.0)"),
    (["--tau", "0"], "--tau must be in (0, 1] (got 0.0)"),
    (["--gamma", "1.0"], "--gamma must be in [0, 1) (got 1.0)"),
    (["--learning-rate", "0"], "--learning-rate must be positive (got 0.0)"),
    (["--batch-size", "0"], "--batch-size must be positive (got 0)"),
    (["--online-steps", "-1"], "--online-steps must be non-negative (got -1)"),
    (["--reward-scale", "mujoco"], "reward-scale"),
    (["--dataset-id", "nonsense"], "is not a Minari dataset id"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(flags, message, pendulum_expert, run_dir):
    out = run_script("iql.py", "--dataset-id", pendulum_expert, "--no-cuda", *flags, cwd=run_dir)
    assert out.returncode != 0
    assert message in out.stderr + out.stdout
    assert not (run_dir / "runs").exists()


@pytest.fixture(scope="module")
def dataset_without_env(pendulum_refs):
    """Pendulum episodes stored without an env spec: nothing to evaluate in or fine-tune online."""
    episodes, _ = rollout_pendulum(2, 0.2, seed=4)
    env = gym.make("Pendulum-v1")
    with warnings.catch_warnings():  # Minari warns that the dataset has no env spec: that is the point
        warnings.simplefilter("ignore")
        write_dataset("test/pendulum/noenv-iql-v0", episodes, None, observation_space=env.observation_space,
                      action_space=env.action_space, ref_min_score=pendulum_refs[0], ref_max_score=pendulum_refs[1])
    return "test/pendulum/noenv-iql-v0"


def test_a_dataset_whose_env_cannot_be_made_is_a_clear_error(dataset_without_env, run_dir):
    out = run_script("iql.py", "--dataset-id", dataset_without_env, "--online-steps", 100, "--no-cuda", cwd=run_dir)
    assert out.returncode != 0
    assert f"cannot make the environment of '{dataset_without_env}'" in out.stderr, out.stderr[-2000:]
    assert "env spec" in out.stderr and "Traceback" not in out.stderr
    assert not (run_dir / "runs").exists()
