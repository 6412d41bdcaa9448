"""awac.py: each exercise on hand values; the critic step against a brute-force loss with target critics
that differ from the online ones, the Polyak step, the actor step's direction; the online phase's
buffer and env runner against a stub env; end to end offline and offline-to-online with checkpoint
reload; learning beats BC; bad input."""

import copy
import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn as nn

import awac
from common.datasets import OfflineDataset, load_dataset
from testdata import read_summary, rollout_pendulum, run_script, write_dataset

# Small networks keep the end-to-end runs fast; the defaults are measured in docs/awac.md, not here.
SMALL = ["--hidden-dim", 32, "--actor-layers", 2, "--critic-layers", 2]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    # On a busy 2-core machine two intra-op threads can be many times slower than one.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_agent(obs_dim=3, act_dim=1, **overrides):
    args = awac.Args(**{"hidden_dim": 16, "actor_layers": 2, "critic_layers": 2, **overrides})
    return awac.AWAC(obs_dim, act_dim, args, -2.0 * torch.ones(act_dim), 2.0 * torch.ones(act_dim), "cpu")


class StubActor:
    """sample(s) returns a known action per state, different from the mean forward(s) returns."""

    def sample(self, obs):
        return obs[:, :1] * 0.5

    def __call__(self, obs):
        return obs[:, :1] * 0.0 + 7.0


class StubTwinQ:
    """Q_1(s, a) = s_0 + a_0 and Q_2(s, a) = s_0 + 2 a_0, recording the actions it is asked about."""

    def __init__(self):
        self.seen = []

    def __call__(self, obs, actions):
        self.seen.append(actions.clone())
        return obs[:, 0] + actions[:, 0], obs[:, 0] + 2.0 * actions[:, 0]


# ---------------------------------------------------------------- the exercises, one function at a time

@pytest.mark.exercise("awac.critic_target")
def test_critic_target_by_hand():
    # s' = (s'_0, .): a' = s'_0 / 2, Q_hat_1 = s'_0 + a' = 1.5 s'_0, Q_hat_2 = s'_0 + 2 a' = 2 s'_0
    next_obs = torch.tensor([[2.0, 0.0, 0.0], [-2.0, 0.0, 0.0], [4.0, 0.0, 0.0]])
    rewards, terminals = torch.tensor([1.0, 1.0, -1.0]), torch.tensor([0.0, 0.0, 1.0])
    with torch.no_grad():
        got = awac.critic_target(StubActor(), StubTwinQ(), rewards, next_obs, terminals, 0.9)
    # min(3, 4) = 3: 1 + 0.9 * 3 = 3.7; min(-3, -4) = -4: 1 - 3.6 = -2.6; terminated: y = r = -1
    expected = [3.7, -2.6, -1.0]
    assert tuple(got.shape) == (3,), f"critic target: expected one target per transition, shape (3,), got {tuple(got.shape)}"
    assert got.tolist() == pytest.approx(expected, abs=1e-5), (
        f"critic target: expected r + gamma (1 - d) min(Q_hat_1, Q_hat_2)(s', a') = {expected}, got {got.tolist()}")


@pytest.mark.exercise("awac.critic_target")
def test_critic_target_bootstraps_from_an_action_sampled_from_the_policy():
    # The policy's mean would be 7 for every state; the critics must be asked about a' = actor.sample(s').
    q = StubTwinQ()
    next_obs = torch.tensor([[2.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    with torch.no_grad():
        awac.critic_target(StubActor(), q, torch.zeros(2), next_obs, torch.zeros(2), 0.99)
    assert q.seen, "critic target: the target critics were never called"
    assert q.seen[-1][:, 0].tolist() == pytest.approx([1.0, -0.5]), (
        f"critic target: Q_hat(s', a') should be evaluated at a' = actor.sample(s') = [1.0, -0.5], got "
        f"{q.seen[-1][:, 0].tolist()} (the mean action actor(s') is not a sample)")


@pytest.mark.exercise("awac.awac_weights")
def test_awac_weights_by_hand():
    advantage = torch.tensor([-1.0, 0.0, 0.5, 3.0])
    got = awac.awac_weights(advantage, 0.5, 100.0)
    # exp(A / 0.5) = e^-2, 1, e^1, e^6 = 403 -> clipped to 100
    expected = [math.exp(-2.0), 1.0, math.e, 100.0]
    assert got.tolist() == pytest.approx(expected, rel=1e-5), (
        f"AWAC weights for A = {advantage.tolist()}, lambda 0.5, clip 100: expected min(exp(A / lambda), 100) "
        f"= {[round(e, 4) for e in expected]}, got {got.tolist()}")
    got = awac.awac_weights(torch.tensor([2.0]), 4.0, 1.2).item()
    assert got == pytest.approx(1.2), f"AWAC weight for A = 2, lambda 4, clip 1.2: exp(0.5) = 1.65 clipped to 1.2, got {got:.4g}"


@pytest.mark.exercise("awac.awac_actor_loss")
def test_awac_actor_loss_by_hand_and_its_gradient():
    weights, log_prob = torch.tensor([2.0, 0.5]), torch.tensor([-1.0, -4.0], requires_grad=True)
    loss = awac.awac_actor_loss(weights, log_prob)
    # -(2 * -1 + 0.5 * -4) / 2 = 2
    assert loss.item() == pytest.approx(2.0), f"AWAC actor loss: for w = (2, 0.5), log pi = (-1, -4) expected 2, got {loss.item():.4g}"
    loss.backward()
    # minimising it raises log pi, each action in proportion to its weight: d loss / d log pi_i = -w_i / B
    assert log_prob.grad.tolist() == pytest.approx([-1.0, -0.25]), (
        f"AWAC actor loss: its gradient with respect to log pi should be -w / B = [-1, -0.25], got {log_prob.grad.tolist()}")


# ---------------------------------------------------------------- the networks and the update

def test_actor_log_prob_is_the_gaussian_density_and_samples_stay_in_the_box():
    torch.manual_seed(0)
    actor = awac.Actor(3, 2, 16, 2, -torch.ones(2), 3 * torch.ones(2))
    with torch.no_grad():
        actor.log_std.copy_(torch.tensor([-0.5, 0.3]))
    obs, actions = torch.randn(5, 3), torch.rand(5, 2) * 4 - 1
    mean = actor(obs)
    assert (mean >= -1).all() and (mean <= 3).all()  # tanh-bounded to the action box
    expected = torch.distributions.Normal(mean, actor.log_std.exp()).log_prob(actions).sum(-1)
    torch.testing.assert_close(actor.log_prob(obs, actions), expected)
    samples = actor.sample(torch.randn(4000, 3))
    assert (samples >= -1).all() and (samples <= 3).all(), "samples are clipped to the action box"
    with torch.no_grad():  # a mean in the middle of a wide box: the samples' spread is sigma
        actor.net[-1].weight.zero_()
        actor.net[-1].bias.zero_()
        actor.log_std.fill_(math.log(0.1))
    samples = actor.sample(torch.randn(4000, 3))
    assert samples.mean(0).tolist() == pytest.approx([1.0, 1.0], abs=0.01)
    assert samples.std(0).tolist() == pytest.approx([0.1, 0.1], rel=0.05)


def copy_with(module: nn.Module, params: list) -> nn.Module:
    """A copy of `module` holding the given parameter values."""
    clone = copy.deepcopy(module)
    with torch.no_grad():
        for p, value in zip(clone.parameters(), params):
            p.copy_(value)
    return clone


def test_critic_step_matches_brute_force_with_distinct_target_critics():
    torch.manual_seed(0)
    model = small_agent(gamma=0.9)
    with torch.no_grad():  # target critics that differ from the online ones
        for p in model.qf_target.parameters():
            p.add_(0.3 * torch.randn_like(p))
    obs, actions = torch.randn(8, 3), torch.rand(8, 1) * 4 - 2
    rewards, next_obs, terminals = torch.randn(8), torch.randn(8, 3), torch.tensor([0.0, 1.0] * 4)
    qf_before = [p.clone() for p in model.qf.parameters()]
    torch.manual_seed(1)
    loss, _ = model.update_critic(obs, actions, rewards, next_obs, terminals)

    torch.manual_seed(1)  # the same a' ~ pi(.|s') as the update drew
    with torch.no_grad():
        next_actions = model.actor.sample(next_obs)
        y = rewards + 0.9 * (1 - terminals) * torch.min(*model.qf_target(next_obs, next_actions))
        online = copy_with(model.qf, qf_before)
        y_online = rewards + 0.9 * (1 - terminals) * torch.min(*online(next_obs, next_actions))
        q1, q2 = online(obs, actions)
    expected = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
    torch.testing.assert_close(loss, expected)
    wrong = ((q1 - y_online) ** 2).mean() + ((q2 - y_online) ** 2).mean()
    assert abs(expected.item() - wrong.item()) > 1e-3  # the test can tell target from online critics
    assert any(not torch.equal(a, b) for a, b in zip(model.qf.parameters(), qf_before)), "the critics took a step"


def test_update_moves_the_targets_by_polyak_averaging_toward_the_updated_critics():
    torch.manual_seed(0)
    model = small_agent(tau=0.25)
    with torch.no_grad():
        for p in model.qf_target.parameters():
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in model.qf_target.parameters()]
    batch = (torch.randn(8, 3), torch.rand(8, 1) * 4 - 2, torch.randn(8), torch.randn(8, 3), torch.zeros(8))
    model.update(*batch)
    for target, old, online in zip(model.qf_target.parameters(), before, model.qf.parameters()):
        # theta_hat <- (1 - tau) theta_hat + tau theta, with theta after this step's update
        torch.testing.assert_close(target, 0.75 * old + 0.25 * online)


class FixedQ(nn.Module):
    """A stand-in critic: Q(s, a) = a_0 (and a second head 1 above, so the min matters)."""

    def forward(self, obs, actions):
        return actions[:, 0], actions[:, 0] + 1.0


def test_actor_steps_move_the_policy_toward_actions_with_higher_advantage():
    # One state, dataset actions spread over [-2, 2], Q(s, a) = a. Behaviour cloning would learn the mean
    # action 0; the advantage weights exp((a - Q(s, a~)) / lambda) pull the mean well above it.
    torch.manual_seed(0)
    model = small_agent(awac_lambda=1.0, learning_rate=3e-3)
    model.qf = FixedQ()
    obs, actions = torch.zeros(256, 3), torch.linspace(-2, 2, 256)[:, None]
    for _ in range(150):
        model.update_actor(obs, actions)
    mean = model.actor(obs[:1]).item()
    assert mean > 0.8, f"after 150 actor steps the mean action should move toward a = 2 (Q = a), got {mean:.3f}"


class CrossingTwinQ(nn.Module):
    """Q_1(s, a) = w_1 a_0 and Q_2(s, a) = w_2 a_0 + 1 with w_1 = 2, w_2 = 1 as parameters: Q_1 is the smaller
    for a_0 < 1 and Q_2 for a_0 > 1, so the twins' min is neither head alone; a gradient reaching w shows."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([2.0, 1.0]))

    def forward(self, obs, actions):
        return self.w[0] * actions[:, 0], self.w[1] * actions[:, 0] + 1.0


def test_actor_step_matches_brute_force_with_constant_weights_from_the_twins_min_at_a_sampled_action():
    # A(s, a) = min_j Q_j(s, a) - min_j Q_j(s, a~), a~ ~ pi(.|s) (one sample, not the mean), and the weights
    # w = min(exp(A / lambda), clip) are constants of L_pi = -E[w log pi(a|s)]: no gradient reaches the
    # critics or, through a~, the actor. Planted bugs, each caught here: A from Q_1 alone; the weights
    # computed with gradients flowing; V(s) at the mean action mu(s) instead of a sample.
    torch.manual_seed(0)
    model = small_agent(awac_lambda=2.0, exp_adv_max=100.0)
    model.qf = CrossingTwinQ()
    model.actor_optimizer = torch.optim.SGD(model.actor.parameters(), lr=1.0)  # the step is minus the gradient
    offset = torch.tensor([[1.5], [-1.0], [0.5], [2.0]])
    # a~ depends on the actor's parameters, as a reparameterised sample does, yet differs from mu(s)
    model.actor.sample = lambda o: model.actor(o) + offset
    obs, actions = torch.randn(4, 3), torch.tensor([[1.8], [-0.5], [0.2], [1.2]])
    before = [p.detach().clone() for p in model.actor.parameters()]
    with torch.no_grad():
        a_tilde = model.actor(obs) + offset
        q_min = lambda a: torch.minimum(2.0 * a[:, 0], a[:, 0] + 1.0)  # noqa: E731
        expected_adv = q_min(actions) - q_min(a_tilde)
        expected_w = torch.exp(expected_adv / 2.0).clamp(max=100.0)
    probe = copy.deepcopy(model.actor)
    (-(expected_w * probe.log_prob(obs, actions)).mean()).backward()
    _, advantage, weights = model.update_actor(obs, actions)
    assert torch.allclose(advantage, expected_adv, atol=1e-5), (
        f"AWAC advantage: expected min_j Q_j(s, a) - min_j Q_j(s, a~) at a sampled a~ = {expected_adv.tolist()}, "
        f"got {advantage.tolist()} (one head alone, or V(s) at the mean action?)")
    assert torch.allclose(weights, expected_w, rtol=1e-5), f"AWAC weights: expected {expected_w.tolist()}, got {weights.tolist()}"
    assert model.qf.w.grad is None or not model.qf.w.grad.any(), \
        "AWAC actor step: a gradient reached the critics: the weights must be constants"
    for p0, p, ref in zip(before, model.actor.parameters(), probe.parameters()):
        assert torch.allclose(p0 - p.detach(), ref.grad, atol=1e-5), \
            "AWAC actor step: the actor's gradient differs from that of -mean(w log pi) with w held constant"


# ---------------------------------------------------------------- the online phase: buffer and runner

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


def test_online_transitions_are_stored_as_the_loader_stores_data():
    data = tiny_dataset()
    buffer = awac.ReplayBuffer(data, online_capacity=6)
    env = StubEnv()
    runner = awac.OnlineRunner(env, buffer, seed=5)
    finished = [runner.step(FixedSampleActor()) for _ in range(5)]

    # episode 0: three steps, truncated; episode 1: two steps, terminated
    assert finished == [None, None, 6.0, None, 3.0], f"episode returns 1+2+3 and 1+2 at their last steps, got {finished}"
    assert env.reset_seeds == [5, None, None], "seeded once from --seed, then the episodes continue its stream"
    assert [float(a[0]) for a in env.actions] == [0.5] * 5, "the env gets actor.sample(s), not the mean action"
    assert buffer.size == data.size + 5
    new = slice(data.size, data.size + 5)
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
    got = buffer.rewards[new].tolist()
    assert got == [1.0, 2.0, 3.0, 1.0, 2.0], f"online rewards stored raw, as the env gave them (1, 2, 3, 1, 2): got {got}"
    got = buffer.actions[new, 0].tolist()
    assert got == [0.5] * 5, f"the stored actions are the executed samples, 0.5 each: got {got}"
    # the offline part is the normalised data, untouched
    torch.testing.assert_close(buffer.observations[: data.size], data.normalize_obs(data.observations))
    torch.testing.assert_close(buffer.next_observations[: data.size], data.normalize_obs(data.next_observations))


def test_batches_come_only_from_the_transitions_stored_so_far():
    torch.manual_seed(0)
    data = tiny_dataset(n=4)
    buffer = awac.ReplayBuffer(data, online_capacity=100)
    buffer.add(np.array([1.0, 2.0, 3.0]), np.array([0.25]), 7.0, np.array([1.0, 2.0, 3.0]), False)
    rewards = buffer.sample(4000)[2]
    # 5 stored transitions with rewards 1, 2, 3, 4 (offline) and 7 (online), each drawn about 800 times;
    # the rows not yet filled hold reward 0
    counts = {r: int((rewards == r).sum()) for r in (1.0, 2.0, 3.0, 4.0, 7.0)}
    assert sum(counts.values()) == 4000, f"batches drew empty rows beyond the 5 stored transitions: {counts}"
    assert all(600 < c < 1000 for c in counts.values()), f"draws should be uniform over the 5 transitions: {counts}"
    for _ in range(99):
        buffer.add(np.zeros(3), np.zeros(1), 0.0, np.zeros(3), False)
    with pytest.raises(RuntimeError, match="full"):
        buffer.add(np.zeros(3), np.zeros(1), 0.0, np.zeros(3), False)


# ---------------------------------------------------------------- end to end

def test_end_to_end_checkpoint_reloads_with_same_actions(pendulum_expert, run_dir):
    out = run_script("awac.py", "--dataset-id", pendulum_expert, "--total-steps", 300, "--eval-freq", 150,
                     "--eval-episodes", 2, "--save-model", "--no-cuda", *SMALL, cwd=run_dir)
    assert out.returncode == 0, out.stderr
    run, summary = read_summary(run_dir)
    assert summary["steps"] == 300 and [h[0] for h in summary["eval_history"]] == [150, 300]
    assert math.isfinite(summary["final_normalized_score"]) and summary["sps"] > 0
    # without --online-steps: the usual summary plus "online_steps": 0
    assert summary["online_steps"] == 0
    assert not {"offline_steps", "online_episode_returns", "offline_final_normalized_score"} & set(summary)
    assert list(run.glob("events.out.tfevents.*"))
    assert "step 300/300" in out.stdout and "Online fine-tuning" not in out.stdout

    ckpt = torch.load(run / "awac.pt", weights_only=True)
    assert ckpt["algorithm"] == "awac" and ckpt["step"] == 300
    data = load_dataset(pendulum_expert, "cpu", verbose=False)
    actor = awac.Actor(data.obs_dim, data.act_dim, ckpt["args"]["hidden_dim"], ckpt["args"]["actor_layers"],
                       data.action_low, data.action_high)
    actor.load_state_dict(ckpt["actor"])
    torch.testing.assert_close(ckpt["obs_mean"], data.obs_mean)
    returns, scores = awac.evaluate(actor, data, ckpt["eval_seeds"], "cpu")
    np.testing.assert_allclose(returns, summary["final_returns"], rtol=1e-6)
    assert np.isfinite(scores).all()

    eval_dir = run_dir / "eval"
    eval_dir.mkdir()
    out = run_script("awac.py", "--eval-checkpoint", run / "awac.pt", "--no-cuda", cwd=eval_dir)
    assert out.returncode == 0, out.stderr
    _, ev = read_summary(eval_dir)
    assert ev["normalized_score"] == pytest.approx(summary["final_normalized_score"], rel=1e-9)


def test_offline_then_online_end_to_end(pendulum_expert, run_dir):
    # 200 offline steps, then 200 online iterations: Pendulum's episodes last 200 steps, so exactly one
    # online episode ends, at step 400. Evaluations every 100 steps across both phases.
    out = run_script("awac.py", "--dataset-id", pendulum_expert, "--total-steps", 200, "--online-steps", 200,
                     "--eval-freq", 100, "--eval-episodes", 2, "--no-cuda", *SMALL, cwd=run_dir)
    assert out.returncode == 0, out.stderr
    run, summary = read_summary(run_dir)
    assert summary["steps"] == 400 and summary["offline_steps"] == 200 and summary["online_steps"] == 200
    steps = [h[0] for h in summary["eval_history"]]
    assert steps == [100, 200, 300, 400], steps
    assert summary["offline_final_normalized_score"] == summary["eval_history"][1][2]
    assert summary["final_normalized_score"] == summary["eval_history"][-1][2]
    [(step, ret)] = summary["online_episode_returns"]
    assert step == 400 and -2000 < ret <= 0, summary["online_episode_returns"]
    assert "Online fine-tuning from step 201" in out.stdout

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    online = events.Scalars("charts/online_episodic_return")
    assert [(e.step, e.value) for e in online] == [(400, pytest.approx(ret))]
    env_steps = {e.step: e.value for e in events.Scalars("charts/env_steps")}
    assert env_steps[200] == 0 and env_steps[400] == 200, env_steps


@pytest.mark.learning("awac")
def test_awac_beats_bc_on_mixed_data(pendulum_mixed, run_dir):
    # Half the episodes are uniform-random, half a noisy controller. BC clones the mixture (bc.py on
    # this data: 34 final, 46 best over 10k steps, docs/iql.md); AWAC's weights must keep the
    # controller's actions (measured, this exact run: 88.8; with the weights near 1 (--awac-lambda 1e6),
    # i.e. Gaussian BC with these networks: 13.6; docs/figures/data/awac_lambda.json, docs/awac.md).
    # Two hidden layers instead of three: a third less compute, the same score here.
    out = run_script("awac.py", "--dataset-id", pendulum_mixed, "--total-steps", 3000, "--eval-freq", 3000,
                     "--eval-episodes", 10, "--actor-layers", 2, "--critic-layers", 2, "--no-cuda", cwd=run_dir)
    assert out.returncode == 0, out.stderr
    _, summary = read_summary(run_dir)
    assert summary["final_normalized_score"] > 55, (
        f"AWAC should beat BC (34) clearly on the mixed data after 3000 steps: expected a normalised score "
        f"above 55, got {summary['final_normalized_score']:.1f}")


# ---------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def dataset_without_env(pendulum_refs):
    """Pendulum episodes stored without an env spec: nothing to evaluate in or fine-tune online."""
    episodes, _ = rollout_pendulum(2, 0.2, seed=4)
    env = gym.make("Pendulum-v1")
    with warnings.catch_warnings():  # Minari warns that the dataset has no env spec: that is the point
        warnings.simplefilter("ignore")
        write_dataset("test/pendulum/noenv-v0", episodes, None, observation_space=env.observation_space,
                      action_space=env.action_space, ref_min_score=pendulum_refs[0], ref_max_score=pendulum_refs[1])
    return "test/pendulum/noenv-v0"


def test_a_dataset_whose_env_cannot_be_made_is_a_clear_error(dataset_without_env, run_dir):
    out = run_script("awac.py", "--dataset-id", dataset_without_env, "--online-steps", 100, "--no-cuda", cwd=run_dir)
    assert out.returncode != 0
    assert f"cannot make the environment of '{dataset_without_env}'" in out.stderr, out.stderr[-2000:]
    assert "env spec" in out.stderr and "Traceback" not in out.stderr
    assert not (run_dir / "runs").exists()


@pytest.mark.parametrize("overrides, message", [
    (dict(online_steps=-1), "--online-steps must be non-negative (got -1)"),
    (dict(awac_lambda=0.0), "--awac-lambda must be positive (got 0.0)"),
    (dict(exp_adv_max=-1.0), "--exp-adv-max must be positive (got -1.0)"),
    (dict(learning_rate=0.0), "--learning-rate must be positive (got 0.0)"),
    (dict(critic_layers=0), "--critic-layers must be positive (got 0)"),
    (dict(hidden_dim=-3), "--hidden-dim must be positive (got -3)"),
    (dict(gamma=1.0), "--gamma must be in [0, 1) (got 1.0)"),
    (dict(tau=0.0), "--tau must be in (0, 1] (got 0.0)"),
    (dict(batch_size=0), "--batch-size must be positive (got 0)"),
])
def test_bad_flags_are_a_clear_error(overrides, message):
    with pytest.raises(SystemExit) as exit_info:
        awac.check_args(awac.Args(**overrides))
    assert message in str(exit_info.value), str(exit_info.value)


def test_good_flags_pass_the_checks():
    awac.check_args(awac.Args(online_steps=0))
    awac.check_args(awac.Args(online_steps=5, awac_lambda=0.1, gamma=0.0, tau=1.0))


@pytest.mark.parametrize("flags, message", [
    (["--online-steps", "-1"], "--online-steps must be non-negative (got -1)"),
    (["--dataset-id", "nonsense"], "is not a Minari dataset id"),
])
def test_bad_input_stops_the_script_and_writes_nothing(flags, message, pendulum_expert, run_dir):
    out = run_script("awac.py", "--dataset-id", pendulum_expert, "--no-cuda", *flags, cwd=run_dir)
    assert out.returncode != 0
    assert message in out.stderr + out.stdout
    assert not (run_dir / "runs").exists()


def test_discrete_dataset_is_refused(discrete_dataset, run_dir):
    out = run_script("awac.py", "--dataset-id", discrete_dataset, "--no-cuda", cwd=run_dir)
    assert out.returncode != 0
    assert "action space Discrete(2)" in out.stderr and "continuous Box action space" in out.stderr
    assert not (run_dir / "runs").exists()
