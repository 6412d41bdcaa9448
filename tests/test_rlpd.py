"""rlpd.py: the subset target by hand (the exercise); the random subset; the critic's loss by brute force with
target critics that differ from the online ones; the batched ensemble against a loop of plain critics, and
its LayerNorm; the actor's ensemble mean; the update's step counts and Polyak step; symmetric sampling (half
of every batch offline, half online, and the online rows reach every critic step); the online runner
against a stub env; a run end to end with checkpoint reload; a short learning check; bad input."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import rlpd
from common.datasets import OfflineDataset, load_dataset
from testdata import read_summary, rollout_pendulum, run_script, write_dataset


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def small_agent(obs_dim=3, act_dim=2, **kw):
    args = rlpd.Args(**{"hidden_dim": 16, "critic_layers": 2, "actor_layers": 2, "ensemble_size": 6, **kw})
    return rlpd.RLPD(obs_dim, act_dim, args, -2 * torch.ones(act_dim), 2 * torch.ones(act_dim), "cpu")


# ---------------------------------------------------------------- the exercise: the subset target

@pytest.mark.exercise("rlpd.td_target")
def test_td_target_by_hand():
    rew, done = torch.tensor([1.0, 2.0, -1.0]), torch.tensor([0.0, 1.0, 0.0])
    # the subset's two target critics at (s', a'): the min is [3, 1, -6]
    next_q = torch.tensor([[3.0, 5.0, -2.0], [4.0, 1.0, -6.0]])
    next_log_pi = torch.tensor([0.5, 7.0, -1.0])
    got = rlpd.td_target(rew, done, next_q, next_log_pi, torch.tensor(0.2), 0.5)
    # y = r + gamma (1 - d) (min - beta log pi); the second transition terminated: y = r, no entropy term either
    expected = [1 + 0.5 * (3 - 0.2 * 0.5), 2.0, -1 + 0.5 * (-6 - 0.2 * -1.0)]
    assert got.shape == (3,), f"one target per transition, shape (3,), got {tuple(got.shape)}"
    assert got.tolist() == pytest.approx(expected), (
        f"y = r + gamma (1 - d) (min_i Qbar_i - beta log pi): expected {expected}, got {got.tolist()}")
    # beta = 0 (no --backup-entropy): the plain min backup
    got = rlpd.td_target(rew, done, next_q, next_log_pi, torch.tensor(0.0), 0.5)
    assert got.tolist() == pytest.approx([2.5, 2.0, -4.0]), f"beta 0: expected [2.5, 2.0, -4.0], got {got.tolist()}"


@pytest.mark.exercise("rlpd.td_target")
def test_td_target_takes_the_min_over_any_subset_size_like_a_loop():
    g = torch.Generator().manual_seed(0)
    for m in (1, 3):
        rew, next_q, lp = torch.randn(6, generator=g), torch.randn(m, 6, generator=g), torch.randn(6, generator=g)
        done = torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0])
        got = rlpd.td_target(rew, done, next_q, lp, torch.tensor(0.7), 0.9)
        for b in range(6):
            v = min(next_q[i, b].item() for i in range(m)) - 0.7 * lp[b].item()
            y = rew[b].item() + (0.0 if done[b] else 0.9 * v)
            assert got[b].item() == pytest.approx(y, abs=1e-5), f"subset of {m}, row {b}: expected {y:.5f}, got {got[b]:.5f}"


# ---------------------------------------------------------------- the ensemble

def plain_q(net: rlpd.EnsembleQ, i: int, obs, act):
    """Critic i of the ensemble as a plain MLP: Linear -> LayerNorm(gain g_i, bias c_i) -> ReLU, then Linear."""
    x = torch.cat([obs, act], -1)
    layers = len(net.weights)
    for k in range(layers):
        x = x @ net.weights[k][i] + net.biases[k][i, 0]
        if k < layers - 1:
            if net.layer_norm:
                x = F.layer_norm(x, x.shape[-1:], net.norm_weights[k][i, 0], net.norm_biases[k][i, 0], eps=1e-6)
            x = F.relu(x)
    return x[..., 0]


def scrambled(net: rlpd.EnsembleQ, scale=0.5, seed=0):
    """The same net with every parameter (LayerNorm gains and biases too) moved at random, per critic."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return net


def test_the_batched_ensemble_is_n_separate_critics_with_their_own_layer_norm():
    torch.manual_seed(0)
    net = scrambled(rlpd.EnsembleQ(5, 8, 2, n=4))
    obs, act = torch.randn(7, 3), torch.randn(7, 2)
    got = net(obs, act)
    assert got.shape == (4, 7)
    for i in range(4):
        torch.testing.assert_close(got[i], plain_q(net, i, obs, act), msg=lambda m: f"critic {i}: " + m)
    # a subset evaluates only the listed critics, in their order
    members = torch.tensor([3, 1])
    torch.testing.assert_close(net(obs, act, members), torch.stack([plain_q(net, 3, obs, act), plain_q(net, 1, obs, act)]))


@pytest.mark.parametrize("layer_norm", [True, False])
def test_layer_norm_makes_each_critic_blind_to_the_scale_of_its_first_layer(layer_norm):
    """With LayerNorm after the first layer, multiplying that layer's weights and bias by 7 changes no
    Q-value (LayerNorm divides the 7 out); without it every Q-value moves. Fails if LayerNorm is missing
    (or sits after the ReLU with a bias, or normalises over the critics instead of the hidden units)."""
    torch.manual_seed(1)
    net = scrambled(rlpd.EnsembleQ(5, 16, 2, n=3, layer_norm=layer_norm), seed=1)
    assert (len(net.norm_weights) == 2) == layer_norm
    obs, act = torch.randn(20, 3), torch.randn(20, 2)
    before = net(obs, act)
    with torch.no_grad():
        net.weights[0].mul_(7.0)
        net.biases[0].mul_(7.0)
    after = net(obs, act)
    if layer_norm:
        torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4, msg=lambda m: (
            "with LayerNorm the first layer's scale must cancel out. " + m))
    else:
        assert (after - before).abs().max() > 0.1


def test_default_critics_have_layer_norm_and_ten_members():
    args = rlpd.Args()
    assert args.layer_norm and args.ensemble_size == 10 and args.subset_size == 2
    agent = rlpd.RLPD(3, 1, args, -torch.ones(1), torch.ones(1), "cpu")
    assert len(agent.critic.norm_weights) == args.critic_layers
    assert agent.critic(torch.randn(4, 3), torch.randn(4, 1)).shape == (10, 4)


def test_random_subset_draws_distinct_critics_with_every_pair_equally_likely():
    torch.manual_seed(0)
    counts = {}
    for _ in range(5000):
        s = rlpd.random_subset(5, 2, "cpu").tolist()
        assert len(set(s)) == 2 and all(0 <= i < 5 for i in s), f"two distinct critics of 5, got {s}"
        pair = tuple(sorted(s))
        counts[pair] = counts.get(pair, 0) + 1
    assert len(counts) == 10 and all(400 < c < 600 for c in counts.values()), (
        f"each of the 10 pairs of 5 critics should come up about 500 times in 5000 draws: {counts}")


# ---------------------------------------------------------------- the losses through the agent

def batch(B=6, act_dim=2):
    g = torch.Generator().manual_seed(1)
    obs, next_obs = torch.randn(B, 3, generator=g), torch.randn(B, 3, generator=g)
    act, rew = torch.rand(B, act_dim, generator=g) * 2 - 1, torch.randn(B, generator=g)
    return obs, act, rew, next_obs, torch.tensor([0., 1., 0., 0., 1., 0.])[:B]


@pytest.mark.parametrize("backup_entropy", [True, False])
def test_critic_loss_matches_brute_force_with_a_random_subset_of_distinct_target_critics(backup_entropy):
    """The agent's own draws replayed (a' ~ pi(.|s'), then the subset): L_Q = mean over the N critics and the
    batch of (Q_i(s,a) - y)^2 with y from the TARGET critics of the subset only. Fails if the target reads
    the online critics, takes the min over all N (or over the first two), drops the entropy term or the
    termination mask."""
    agent = small_agent(gamma=0.9, backup_entropy=backup_entropy, subset_size=2)
    scrambled(agent.critic, seed=2)
    scrambled(agent.critic_target, scale=1.0, seed=3)
    with torch.no_grad():
        agent.log_beta.fill_(math.log(0.8))
    obs, act, rew, next_obs, done = batch()
    torch.manual_seed(7)
    loss, q, target = agent.critic_loss(obs, act, rew, next_obs, done)
    torch.manual_seed(7)  # the same draws, in the same order
    with torch.no_grad():
        next_a, next_lp = agent.actor.sample(next_obs)
        subset = torch.randperm(6)[:2].tolist()
    tg, on = agent.critic_target, agent.critic
    all_next = [plain_q(tg, i, next_obs, next_a) for i in range(6)]
    subset_min = torch.stack([all_next[i] for i in subset]).min(0).values
    assert (subset_min - torch.stack(all_next).min(0).values).abs().max() > 1e-3, \
        "test data: the subset's min should differ from the min over all critics somewhere"
    total = 0.0
    for b in range(6):
        v = subset_min[b].item() - (0.8 * next_lp[b].item() if backup_entropy else 0.0)
        y = rew[b].item() + (0.0 if done[b] else 0.9 * v)
        assert target[b].item() == pytest.approx(y, abs=1e-4), f"row {b}: target {target[b].item():.5f}, expected {y:.5f}"
        for i in range(6):
            total += (plain_q(on, i, obs[b:b + 1], act[b:b + 1]).item() - y) ** 2 / 36
    assert loss.item() == pytest.approx(total, rel=1e-4), f"L_Q: expected {total:.5f}, got {loss.item():.5f}"


def test_actor_loss_uses_the_ensemble_mean_by_hand():
    log_pi = torch.tensor([-1.0, 2.0], requires_grad=True)
    q_pi = torch.tensor([[3.0, 0.0], [1.0, 4.0], [2.0, 2.0]], requires_grad=True)  # 3 critics, 2 states
    got = rlpd.actor_loss(log_pi, q_pi, torch.tensor(0.5))
    # means over the critics [2, 2]: mean(0.5 * -1 - 2, 0.5 * 2 - 2) = -1.75 (the min, [1, 0], would give -1.25)
    assert got.item() == pytest.approx(-1.75), f"actor loss with the ensemble mean: expected -1.75, got {got.item():.4g}"
    got.backward()
    assert q_pi.grad.flatten().tolist() == pytest.approx([-1 / 6] * 6), (
        f"d L / d Q_i: expected -1/(N B) = -1/6 for every critic, got {q_pi.grad.tolist()}")


@pytest.mark.parametrize("log_pi, direction", [(0.3, "falls"), (1.5, "rises")])
def test_temperature_rises_only_when_the_entropy_is_below_its_target(log_pi, direction):
    # Hbar = -1: log pi = 0.3 is an entropy of -0.3, above Hbar (beta falls); log pi = 1.5, entropy -1.5, below
    log_beta = torch.tensor(0.0, requires_grad=True)
    rlpd.temperature_loss(log_beta, torch.full((4,), log_pi), -1.0).backward()
    # d L / d log beta = -beta (log pi + Hbar), beta = 1
    assert log_beta.grad.item() == pytest.approx(-(log_pi - 1.0))
    assert (log_beta.grad.item() < 0) == (direction == "rises")


def test_update_runs_utd_critic_steps_then_one_actor_step():
    agent = small_agent(utd=3)
    obs, act, rew, next_obs, done = (x.expand(3, *x.shape).clone() for x in batch())
    agent.update(obs, act, rew, next_obs, done, n_offline=3)
    steps = lambda opt: int(next(iter(opt.state.values()))["step"])  # noqa: E731
    assert steps(agent.critic_optimizer) == 3, "--utd 3: three critic steps per env step"
    assert steps(agent.actor_optimizer) == 1 and steps(agent.beta_optimizer) == 1, "one actor and temperature step"


def test_polyak_update_moves_the_target_toward_the_updated_critic():
    agent = small_agent(tau=0.1, utd=1)
    scrambled(agent.critic_target, seed=4)
    before = [p.clone() for p in agent.critic_target.parameters()]
    obs, act, rew, next_obs, done = (x[None] for x in batch())
    agent.update(obs, act, rew, next_obs, done, n_offline=3)
    for p_old, p_target, p in zip(before, agent.critic_target.parameters(), agent.critic.parameters()):
        assert not torch.equal(p_target, p)
        torch.testing.assert_close(p_target, 0.9 * p_old + 0.1 * p, msg=lambda m: (
            "Polyak: expected Qbar <- 0.9 Qbar + 0.1 Q, with Q the critic after its step. " + m))


# ---------------------------------------------------------------- symmetric sampling and the online phase

def tiny_dataset(n=100) -> OfflineDataset:
    """n transitions; reward of row k = k (so a reward below n marks an offline row); obs mean 0, std 1."""
    obs = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
    return OfflineDataset(
        dataset_id="test/stub/tiny-v0", observations=obs, actions=torch.linspace(-2, 2, n)[:, None],
        rewards=torch.arange(n, dtype=torch.float32), next_observations=obs + 1.0,
        terminals=torch.zeros(n), truncations=torch.zeros(n), episode_starts=torch.tensor([0]),
        episode_lengths=torch.tensor([n]), episode_returns=torch.tensor([0.0]),
        obs_mean=torch.zeros(3), obs_std=torch.ones(3),
        action_low=-2 * torch.ones(1), action_high=2 * torch.ones(1), ref_min_score=None, ref_max_score=None,
        ref_source="none", max_episode_steps=None, make_env=lambda **_: StubEnv(),
    )


def with_online_rows(buffer, k, start=1000):
    for j in range(k):  # online rows: reward 1000 + j, observation (-1, -1, -1) marks them
        buffer.add(-np.ones(3), np.array([0.5]), start + j, -np.ones(3), False)
    return buffer


def test_symmetric_batches_are_exactly_half_offline_and_half_online():
    torch.manual_seed(0)
    buffer = with_online_rows(rlpd.ReplayBuffer(tiny_dataset(100), online_capacity=50), 10)
    obs, act, rew, next_obs, done = buffer.sample_symmetric(8, 4, n_batches=2000)
    assert rew.shape == (2000, 8) and obs.shape == (2000, 8, 3) and act.shape == (2000, 8, 1)
    offline, online = rew[:, :4], rew[:, 4:]
    assert bool((offline < 100).all()), "the first n_offline rows of each batch come from the offline data"
    assert bool((online >= 1000).all()), "the other rows come from the online transitions stored so far"
    # uniform within each part: every online row about 800 times, every offline row about 80
    online_counts = torch.bincount(online.flatten().long() - 1000, minlength=10)
    offline_counts = torch.bincount(offline.flatten().long(), minlength=100)
    assert online_counts.numel() == 10 and bool(((online_counts > 650) & (online_counts < 950)).all()), online_counts
    assert bool(((offline_counts > 40) & (offline_counts < 125)).all()), offline_counts
    # rows stay whole: each row's observation, reward and next observation are one transition
    assert bool(((obs[:, 4:] == -1).all(-1) == (rew[:, 4:] >= 1000)).all())
    torch.testing.assert_close(next_obs[:, :4], obs[:, :4] + 1.0)


def test_a_batch_needs_an_online_row_unless_it_is_all_offline():
    buffer = rlpd.ReplayBuffer(tiny_dataset(10), online_capacity=5)
    with pytest.raises(RuntimeError, match="no online transition"):
        buffer.sample_symmetric(4, 2, 1)
    assert bool((buffer.sample_symmetric(4, 4, 3)[2] < 10).all()), "offline ratio 1: only offline rows"


class SpyCritic(torch.nn.Module):
    """Wraps the ensemble; records the observations of every call with gradients on (the critic's loss)."""

    def __init__(self, net):
        super().__init__()
        self.net, self.seen = net, []

    def forward(self, obs, act, members=None):
        if torch.is_grad_enabled():
            self.seen.append(obs.detach().clone())
        return self.net(obs, act, members)


def test_online_rows_reach_every_critic_step():
    """What the update trains on: each of the --utd critic steps gets its own batch, and in each, the
    online rows make up half (fails if the update reuses one batch, or drops the online half)."""
    torch.manual_seed(0)
    buffer = with_online_rows(rlpd.ReplayBuffer(tiny_dataset(100), online_capacity=20), 10)
    agent = small_agent(act_dim=1, utd=4)
    agent.critic = SpyCritic(agent.critic)
    agent.critic_optimizer = torch.optim.Adam(agent.critic.parameters(), lr=1e-3)
    obs, act, rew, next_obs, done = buffer.sample_symmetric(8, 4, n_batches=4)
    agent.update(obs, act / 2, rew, next_obs, done, n_offline=4)
    critic_calls = agent.critic.seen[:4]  # then the actor's call
    assert len(agent.critic.seen) == 5, f"4 critic steps and 1 actor step should call the critic 5 times, got {len(agent.critic.seen)}"
    for g, seen in enumerate(critic_calls):
        torch.testing.assert_close(seen, obs[g], msg=lambda m: f"critic step {g} should train on batch {g}. " + m)
        online = (seen == -1).all(-1)
        assert int(online.sum()) == 4, f"critic step {g}: 4 of the 8 rows should be online, got {int(online.sum())}"


class StubEnv(gym.Env):
    """Observation (episode, t, 10 t + a); reward = t. Episode 0 is truncated after 3 steps, every later
    one terminates after 2. Records the actions it receives and the resets."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)

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
        return obs, float(self.t), self.episode > 0 and self.t == 2, self.episode == 0 and self.t == 3, {}


def test_runner_stores_truncations_as_bootstrapping_and_terminations_as_terminal():
    data = tiny_dataset(4)
    buffer = rlpd.ReplayBuffer(data, online_capacity=6)
    env = StubEnv()
    runner = rlpd.OnlineRunner(env, buffer, seed=5)
    warm_up = rlpd.UniformPolicy(-2 * torch.ones(1), 2 * torch.ones(1), seed=0)
    finished = [runner.step(warm_up) for _ in range(5)]
    assert finished == [None, None, 6.0, None, 3.0], f"returns 1+2+3 (truncated) and 1+2 (terminated): {finished}"
    assert env.reset_seeds == [5, None, None], "seeded once from --seed, then the episodes continue its stream"
    new = slice(4, 9)
    assert buffer.terminals[new].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0], (
        f"d = 1 only at the termination, the truncation bootstraps: {buffer.terminals[new].tolist()}")
    # the truncated step keeps its own next observation (episode 0, t 3), not the next episode's first
    assert buffer.next_observations[6, :2].tolist() == [0.0, 3.0]
    actions = [float(a[0]) for a in env.actions]
    assert buffer.actions[new, 0].tolist() == pytest.approx(actions), "the executed actions, in the env's units"
    assert all(-2 <= a <= 2 for a in actions) and len(set(actions)) == 5, f"uniform warm-up actions: {actions}"


def test_warm_up_actions_are_uniform_in_the_box():
    policy = rlpd.UniformPolicy(torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 1.0]), seed=0)
    a = policy.explore(torch.zeros(20_000, 3))
    assert a.shape == (20_000, 2)
    assert bool((a[:, 0].abs() <= 2).all() and (a[:, 1] >= 0).all() and (a[:, 1] <= 1).all())
    assert a.mean(0).tolist() == pytest.approx([0.0, 0.5], abs=0.03)
    assert a.std(0).tolist() == pytest.approx([4 / math.sqrt(12), 1 / math.sqrt(12)], rel=0.03)


# ---------------------------------------------------------------- runs of the script

SMALL = ["--hidden-dim", 32, "--ensemble-size", 4, "--batch-size", 32, "--no-cuda"]


def test_end_to_end_summary_and_checkpoint_reload(pendulum_expert, run_dir):
    # 300 env steps: 100 random, then 200 with 2 critic steps each; Pendulum's episodes are truncated at 200
    # steps, so one online episode ends, at step 200. Evaluations at 0 (the untrained policy), 150 and 300.
    out = run_script("rlpd.py", "--dataset-id", pendulum_expert, "--total-steps", 300, "--learning-starts", 100,
                     "--utd", 2, "--eval-freq", 150, "--eval-episodes", 2, "--save-model", *SMALL, cwd=run_dir)
    assert out.returncode == 0, out.stderr
    run, summary = read_summary(run_dir)
    assert summary["algorithm"] == "rlpd" and summary["steps"] == 300
    assert summary["offline_steps"] == 0 and summary["online_steps"] == 300 and summary["gradient_steps"] == 400
    assert [h[0] for h in summary["eval_history"]] == [0, 150, 300]
    assert summary["offline_final_normalized_score"] == summary["eval_history"][0][2], "the switch is at step 0"
    [(step, ret)] = summary["online_episode_returns"]
    assert step == 200 and -2000 < ret <= 0
    values = summary["final_values"]
    for key in ("critic_loss", "actor_loss", "entropy", "entropy_temperature", "q", "q_target", "q_ensemble_std",
                "q_offline", "q_online"):
        assert math.isfinite(values[key]), key
    assert math.isfinite(summary["final_normalized_score"]) and summary["sps"] > 0
    assert "env step 300/300" in out.stdout

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    assert [e.step for e in events.Scalars("charts/online_episodic_return")] == [200]
    assert [e.step for e in events.Scalars("eval/normalized_score")] == [0, 150, 300]
    assert {e.step: e.value for e in events.Scalars("charts/gradient_steps")}[300] == 400

    ckpt = torch.load(run / "rlpd.pt", weights_only=True)
    assert ckpt["algorithm"] == "rlpd" and ckpt["step"] == 300
    data = load_dataset(pendulum_expert, "cpu", verbose=False)
    critic = rlpd.EnsembleQ(data.obs_dim + data.act_dim, 32, 2, 4)
    critic.load_state_dict(ckpt["critic"])
    actor = rlpd.Actor(data.obs_dim, data.act_dim, 32, 2, data.action_low, data.action_high)
    actor.load_state_dict(ckpt["actor"])
    returns, _ = rlpd.evaluate(actor.act, data, ckpt["eval_seeds"], "cpu")
    np.testing.assert_allclose(returns, summary["final_returns"], rtol=1e-6)

    eval_dir = run_dir / "eval"
    eval_dir.mkdir()
    out = run_script("rlpd.py", "--eval-checkpoint", run / "rlpd.pt", "--no-cuda", cwd=eval_dir)
    assert out.returncode == 0, out.stderr
    _, ev = read_summary(eval_dir)
    assert ev["normalized_score"] == pytest.approx(summary["final_normalized_score"], rel=1e-9)


@pytest.mark.learning("rlpd")
def test_rlpd_learns_to_swing_up_within_three_episodes(pendulum_mixed, run_dir):
    """600 env steps (3 Pendulum episodes: 100 random steps, then the policy with 10 critic steps per env
    step), half of every batch from the mixed data (half random episodes, half a noisy controller). The
    untrained policy (the evaluation at step 0) scores about 8, bc.py on this data 34 after 10k steps
    (docs/iql.md); RLPD must score above 60. It scored 79.5 (start states of the first evaluation of seed 1)."""
    out = run_script("rlpd.py", "--dataset-id", pendulum_mixed, "--total-steps", 600, "--learning-starts", 100,
                     "--eval-freq", 600, "--eval-episodes", 10, "--no-cuda", cwd=run_dir)
    assert out.returncode == 0, out.stderr
    _, summary = read_summary(run_dir)
    start, final = summary["eval_history"][0][2], summary["final_normalized_score"]
    assert final > 60 and final > start + 40, (
        f"RLPD after 600 env steps: expected a normalised score above 60 (and 40 above the untrained policy's "
        f"{start:.1f}), got {final:.1f}")


@pytest.fixture(scope="module")
def dataset_without_env(pendulum_refs):
    import warnings

    episodes, _ = rollout_pendulum(2, 0.2, seed=4)
    env = gym.make("Pendulum-v1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        write_dataset("test/pendulum/noenv-rlpd-v0", episodes, None, observation_space=env.observation_space,
                      action_space=env.action_space, ref_min_score=pendulum_refs[0], ref_max_score=pendulum_refs[1])
    return "test/pendulum/noenv-rlpd-v0"


def test_a_dataset_whose_env_cannot_be_made_is_a_clear_error(dataset_without_env, run_dir):
    out = run_script("rlpd.py", "--dataset-id", dataset_without_env, "--no-cuda", cwd=run_dir)
    assert out.returncode != 0
    assert f"cannot make the environment of '{dataset_without_env}'" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and not (run_dir / "runs").exists()


@pytest.mark.parametrize("flags, message", [
    (["--utd", "0"], "--utd must be at least 1 gradient step per env step (got 0)"),
    (["--ensemble-size", "1"], "--subset-size (2) cannot exceed --ensemble-size (1)"),
    (["--subset-size", "0"], "--subset-size must be positive (got 0)"),
    (["--ensemble-size", "0"], "--ensemble-size must be positive (got 0)"),
    (["--offline-ratio", "1.5"], "--offline-ratio must be in [0, 1] (got 1.5)"),
    (["--batch-size", "255"], "--batch-size (255) times --offline-ratio (0.5) must be a whole number"),
    (["--learning-starts", "2000"], "--learning-starts must be in [0, --total-steps) = [0, 2000) (got 2000)"),
    (["--learning-starts", "-1"], "--learning-starts must be in [0, --total-steps)"),
    (["--init-temperature", "0"], "--init-temperature must be positive (got 0.0)"),
    (["--target-entropy", "nan"], "--target-entropy must be a finite number (got nan)"),
    (["--q-lr", "0"], "--q-lr must be positive (got 0.0)"),
    (["--tau", "0"], "--tau must be in (0, 1] (got 0.0)"),
    (["--total-steps", "0"], "--total-steps must be positive (got 0)"),
])
def test_bad_flags_are_a_clear_error(flags, message):
    import tyro

    with pytest.raises(SystemExit) as exit_info:
        rlpd.check_args(tyro.cli(rlpd.Args, args=flags))
    assert message in str(exit_info.value.code)
    assert "\n" not in str(exit_info.value.code), "one error, one line"


def test_good_flags_pass_the_checks():
    import tyro

    for flags in ([], ["--offline-ratio", "0"], ["--offline-ratio", "1"], ["--utd", "20", "--learning-starts", "0"],
                  ["--ensemble-size", "2"], ["--no-layer-norm", "--no-backup-entropy"]):
        rlpd.check_args(tyro.cli(rlpd.Args, args=flags))


@pytest.mark.parametrize("flags, message", [
    (["--utd", "0", "--ensemble-size", "1"],
     "--utd must be at least 1 gradient step per env step (got 0)\n       --subset-size (2) cannot exceed"),
    (["--dataset-id", "nonsense"], "is not a Minari dataset id"),
])
def test_bad_input_stops_the_script_and_writes_nothing(flags, message, pendulum_expert, run_dir):
    out = run_script("rlpd.py", "--dataset-id", pendulum_expert, "--no-cuda", *flags, cwd=run_dir)
    assert out.returncode != 0
    assert message in out.stderr + out.stdout, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and not (run_dir / "runs").exists()


def test_discrete_dataset_is_refused(discrete_dataset, run_dir):
    out = run_script("rlpd.py", "--dataset-id", discrete_dataset, "--no-cuda", cwd=run_dir)
    assert out.returncode != 0
    assert "continuous Box action space" in out.stderr
    assert not (run_dir / "runs").exists()
