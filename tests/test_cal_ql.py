"""cal_ql.py: the calibrated bound by hand (where it binds and where it does not); the critic's loss
against a brute-force loop, with target critics that differ from the online ones; the Monte-Carlo
returns over several episodes, terminated and truncated, in both tail conventions; the online phase's
buffer (its offline/online batch mixing) and its runner (an episode stored when it ends, with its
returns) against a stub env; the update's scaling of the actions; end to end offline and online with a
checkpoint reload; a short learning check (beats random on mixed data); bad input."""

import math
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

import cal_ql
from common.datasets import OfflineDataset, load_dataset
from testdata import read_summary, run_script

SMALL = ["--hidden-dim", 32, "--critic-layers", 2, "--actor-layers", 2, "--cql-n-actions", 3]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def small_agent(**kw):
    args = cal_ql.Args(**{"hidden_dim": 16, "critic_layers": 2, "actor_layers": 2, "cql_n_actions": 3, **kw})
    return cal_ql.CalQL(3, 2, args, -2 * torch.ones(2), 2 * torch.ones(2), "cpu")


# ---------------------------------------------------------------- the exercise: the calibrated bound

@pytest.mark.exercise("cal_ql.calibrated_q")
def test_calibrated_q_by_hand_binds_in_one_state_and_not_in_the_other():
    # Two states: V^mu = -5 in state 0, where every policy value lies above it (the bound does not bind);
    # V^mu = 2 in state 1, where the bound lifts the values below 2 and leaves the one above.
    q_pi = torch.tensor([[[-1.0, 0.0], [1.0, 3.0]],     # critic 1: state 0, state 1; K = 2 samples each
                         [[-4.0, 0.5], [-2.0, 2.5]]], requires_grad=True)  # critic 2
    v_mu = torch.tensor([-5.0, 2.0])
    got = cal_ql.calibrated_q(q_pi, v_mu)
    assert got.shape == (2, 2, 2), f"expected (2 critics, B 2, K 2), got {tuple(got.shape)}"
    expected = [[[-1.0, 0.0], [2.0, 3.0]], [[-4.0, 0.5], [2.0, 2.5]]]
    assert got.tolist() == expected, f"max(Q, V^mu) per state: expected {expected}, got {got.tolist()}"
    got.sum().backward()
    # where the bound lifts a value, the value is a constant: no gradient reaches that Q
    assert q_pi.grad.tolist() == [[[1.0, 1.0], [0.0, 1.0]], [[1.0, 1.0], [0.0, 1.0]]], (
        f"d max(Q, V) / dQ: 1 where Q is above the bound, 0 where the bound lifted it; got {q_pi.grad.tolist()}")


# ---------------------------------------------------------------- the critic's loss against a loop

class KnownQ(torch.nn.Module):
    """Twin critics with a known formula: Q_i(s, a) = s.w_i + a.v_i - |a|^2 + e_i."""

    def __init__(self, w, v, e):
        super().__init__()
        self.w, self.v, self.e = torch.tensor(w), torch.tensor(v), torch.tensor(e)

    def forward(self, obs, act):
        return (obs @ self.w.T + act @ self.v.T - (act**2).sum(-1, keepdim=True) + self.e).T


ONLINE = dict(w=[[0.3, -0.2, 0.1], [0.1, 0.4, -0.3]], v=[[0.5, -1.0], [-0.2, 0.8]], e=[0.0, 1.0])
TARGET = dict(w=[[-0.4, 0.6, 0.2], [-0.3, 0.5, 0.3]], v=[[-1.5, 0.5], [1.5, -0.5]], e=[2.0, 2.0])


def Q(net, i, s, a):
    return net(s[None], a[None])[i, 0].item()


def batch(B=5):
    g = torch.Generator().manual_seed(1)
    obs, next_obs = torch.randn(B, 3, generator=g), torch.randn(B, 3, generator=g)
    act, rew = torch.rand(B, 2, generator=g) * 2 - 1, torch.randn(B, generator=g)
    return obs, act, rew, next_obs, torch.tensor([0., 1., 0., 0., 1.])[:B]


def brute_force_loss(agent, obs, act, rew, next_obs, done, v_mu, seed, gamma=0.9, alpha=5.0):
    """The critic's loss by a plain loop over critics, states and samples, replaying the agent's draws."""
    B, N = obs.shape[0], agent.args.cql_n_actions
    torch.manual_seed(seed)  # the same draws, in the same order as critic_loss
    with torch.no_grad():
        next_a, _ = agent.actor.sample(next_obs)
        rand_a = torch.rand(B, N, 2) * 2 - 1
        curr_a, curr_lp = agent.actor.sample(obs, N)
        nxt_a, nxt_lp = agent.actor.sample(next_obs, N)
    on, tg = agent.critic, agent.critic_target
    td, gaps, lifted, total = 0.0, [0.0, 0.0], 0, 0
    for i in range(2):
        for b in range(B):
            y = rew[b].item() + gamma * (1 - done[b].item()) * min(Q(tg, 0, next_obs[b], next_a[b]),
                                                                   Q(tg, 1, next_obs[b], next_a[b]))
            td += (Q(on, i, obs[b], act[b]) - y) ** 2 / B
            v = v_mu[b].item()
            terms = []
            for k in range(N):
                terms.append(Q(on, i, obs[b], rand_a[b, k]) - math.log(0.25))  # uniform: never bounded
                for a, lp in ((curr_a[b, k], curr_lp[b, k]), (nxt_a[b, k], nxt_lp[b, k])):
                    q = Q(on, i, obs[b], a)  # pi(s) and pi(s') samples, both evaluated at s
                    lifted, total = lifted + (q < v), total + 1
                    terms.append(max(q, v) - lp.item())  # Cal-QL: max(Q(s, a), V^mu(s))
            lse = math.log(sum(math.exp(t) for t in terms) / len(terms))
            gaps[i] += (lse - Q(on, i, obs[b], act[b])) / B
    return td + alpha * sum(gaps), gaps, lifted / total


def test_critic_loss_matches_brute_force_where_the_bound_binds_and_where_it_does_not():
    """Known online and target critics that differ; V^mu far below every value in some states, above
    some values in others. Fails if the bound is dropped, applied to the uniform samples or to Q at the
    dataset's action, taken as a min, or if the TD target reads the online critic."""
    agent = small_agent(gamma=0.9)
    agent.critic, agent.critic_target = KnownQ(**ONLINE), KnownQ(**TARGET)
    obs, act, rew, next_obs, done = batch()
    v_mu = torch.tensor([-50.0, 1.0, 0.5, -50.0, 2.0])  # states 0 and 3: never binds; 1, 2, 4: binds on some
    torch.manual_seed(7)
    loss, gap, bound_rate = agent.critic_loss(obs, act, rew, next_obs, done, v_mu)
    expected, gaps, rate = brute_force_loss(agent, obs, act, rew, next_obs, done, v_mu, seed=7)
    assert 0.1 < rate < 0.9, f"test data: the bound should lift some values and not others, lifted {rate:.2f}"
    torch.testing.assert_close(gap, torch.tensor(gaps), atol=1e-4, rtol=1e-4)
    assert loss.item() == pytest.approx(expected, rel=1e-4), (
        f"critic loss: expected L_TD + 5 sum_i gap_i with max(Q, V^mu) on the policy's samples = {expected:.5f}, "
        f"got {loss.item():.5f}")
    assert bound_rate.item() == pytest.approx(rate), (
        f"bound_rate: the fraction of policy-sample values below V^mu, expected {rate:.4f}, got {bound_rate.item():.4f}")

    # a bound below every value changes nothing: the loss is CQL's
    torch.manual_seed(7)
    loss_free, _, rate_free = agent.critic_loss(obs, act, rew, next_obs, done, torch.full((5,), -1e3))
    cql_loss, _, _ = brute_force_loss(agent, obs, act, rew, next_obs, done, torch.full((5,), -1e3), seed=7)
    assert rate_free.item() == 0.0 and loss_free.item() == pytest.approx(cql_loss, rel=1e-4)
    assert loss_free.item() < loss.item(), "lifting the pushed-down values can only raise the penalty"


def test_update_scales_the_stored_actions_to_the_unit_box():
    """Batches come in the env's units (the box here is [-2, 2]^2); the critics must see a / 2. Fails if
    the update hands the stored actions to the critics unscaled."""
    agent = small_agent()
    obs, act, rew, next_obs, done = batch()
    v_mu = torch.zeros(5)
    torch.manual_seed(3)
    expected, _, _ = agent.critic_loss(obs, act, rew, next_obs, done, v_mu)  # act already in [-1, 1]
    torch.manual_seed(3)
    metrics = agent.update(obs, 2.0 * act, rew, next_obs, done, v_mu)  # the same actions, in the env's units
    assert metrics["critic_loss"].item() == pytest.approx(expected.item(), rel=1e-6), (
        "update: the critics should see the stored actions scaled to [-1, 1]^d: expected the critic loss "
        f"{expected.item():.6f} of the scaled batch, got {metrics['critic_loss'].item():.6f}")


# ---------------------------------------------------------------- the reference value V^mu

def test_monte_carlo_returns_by_hand_over_terminated_and_truncated_episodes():
    # gamma 0.5. Episode 0 (3 steps) terminates, episode 1 (2 steps) is truncated, episode 2 (3 steps)
    # is truncated. Window 1/(1-gamma) = 2 steps for the mean-reward tail.
    gamma = 0.5
    data = SimpleNamespace(
        rewards=torch.tensor([1.0, 2.0, 4.0, -2.0, -4.0, 3.0, 0.0, 6.0]),
        truncations=torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0]),
        episode_starts=torch.tensor([0, 3, 5]), episode_lengths=torch.tensor([3, 2, 3]),
    )
    terminated = [1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 4.0]
    zero = cal_ql.discounted_returns(data, gamma, "zero").tolist()
    # tail dropped: G after the last step is 0, as for a termination
    assert zero == pytest.approx(terminated + [-2 + 0.5 * -4, -4.0] + [3 + 0.5 * 0 + 0.25 * 6, 0 + 0.5 * 6, 6.0]), zero
    mean = cal_ql.discounted_returns(data, gamma, "mean-reward").tolist()
    tail1 = (-2 - 4) / 2 / (1 - gamma)  # -6: mean of the last 2 rewards, continued forever
    tail2 = (0 + 6) / 2 / (1 - gamma)   # 6
    g1 = [-2 + 0.5 * (-4 + 0.5 * tail1), -4 + 0.5 * tail1]
    g2_last = 6 + 0.5 * tail2
    g2 = [3 + 0.5 * (0 + 0.5 * g2_last), 0 + 0.5 * g2_last, g2_last]
    assert mean == pytest.approx(terminated + g1 + g2), (
        f"mean-reward tail: expected {terminated + g1 + g2}, got {mean}")


def test_the_default_reference_follows_the_authors_code():
    assert cal_ql.Args().mc_truncated_tail == "zero" and cal_ql.Args().mixing_ratio == 0.5


# ---------------------------------------------------------------- the online phase: buffer and runner

def tiny_dataset(n=4) -> OfflineDataset:
    obs = torch.arange(n * 3, dtype=torch.float32).reshape(n, 3)
    return OfflineDataset(
        dataset_id="test/stub/tiny-v0", observations=obs, actions=torch.linspace(-2, 2, n)[:, None],
        rewards=torch.arange(1, n + 1, dtype=torch.float32), next_observations=obs + 100.0,
        terminals=torch.zeros(n), truncations=torch.zeros(n), episode_starts=torch.tensor([0]),
        episode_lengths=torch.tensor([n]), episode_returns=torch.tensor([0.0]),
        obs_mean=torch.tensor([1.0, 2.0, 3.0]), obs_std=torch.tensor([2.0, 4.0, 8.0]),
        action_low=-2 * torch.ones(1), action_high=2 * torch.ones(1), ref_min_score=None, ref_max_score=None,
        ref_source="none", max_episode_steps=None, make_env=lambda **_: StubEnv(),
    )


class StubEnv(gym.Env):
    """Observation (episode, t, 10 t + a); reward = t. Episode 0 is truncated after 3 steps, every later
    one terminates after 2."""

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


class FixedActor:
    def explore(self, obs):
        return torch.full((obs.shape[0], 1), 1.5)


@pytest.mark.parametrize("tail", ["zero", "mean-reward"])
def test_an_online_episode_joins_the_buffer_when_it_ends_with_its_returns(tail):
    data = tiny_dataset()
    buffer = cal_ql.ReplayBuffer(data, 6, torch.zeros(4), mixing_ratio=0.5)
    env = StubEnv()
    runner = cal_ql.OnlineRunner(env, buffer, seed=5, gamma=0.5, tail=tail)
    sizes, finished = [], []
    for _ in range(5):
        finished.append(runner.step(FixedActor()))
        sizes.append(buffer.size - data.size)
    assert finished == [None, None, 6.0, None, 3.0]
    assert sizes == [0, 0, 3, 3, 5], f"rows stored after each step: an episode enters whole when it ends, got {sizes}"
    assert env.reset_seeds == [5, None, None]
    new = slice(data.size, data.size + 5)
    # episode 0, rewards 1 2 3, truncated: tail 0, or the mean of its last 2 rewards over (1 - gamma)
    tail0 = 0.0 if tail == "zero" else (2 + 3) / 2 / 0.5
    g0 = [1 + 0.5 * 2 + 0.25 * 3 + 0.125 * tail0, 2 + 0.5 * 3 + 0.25 * tail0, 3 + 0.5 * tail0]
    g1 = [1 + 0.5 * 2, 2.0]  # episode 1 terminated: exact whatever the tail
    assert buffer.mc_returns[new].tolist() == pytest.approx(g0 + g1), buffer.mc_returns[new].tolist()
    assert buffer.terminals[new].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]
    assert buffer.rewards[new].tolist() == [1.0, 2.0, 3.0, 1.0, 2.0]
    raw_next = torch.tensor([[0, 1, 11.5], [0, 2, 21.5], [0, 3, 31.5], [1, 1, 11.5], [1, 2, 21.5]])
    torch.testing.assert_close(buffer.next_observations[new], (raw_next - data.obs_mean) / data.obs_std)
    assert buffer.actions[new, 0].tolist() == [1.5] * 5


def test_batches_are_all_offline_until_online_rows_exist_then_mixed_by_the_ratio():
    torch.manual_seed(0)
    data = tiny_dataset(n=4)
    buffer = cal_ql.ReplayBuffer(data, 100, torch.arange(4.0), mixing_ratio=0.75)
    rewards = buffer.sample(400)[2]
    assert set(rewards.tolist()) <= {1.0, 2.0, 3.0, 4.0}, "before any online row, every row is offline"
    for _ in range(2):
        buffer.add(np.zeros(3), np.array([0.25]), 7.0, np.zeros(3), False, -9.0)
    obs, act, rew, next_obs, done, mc = buffer.sample(400)
    online = rew == 7.0
    # int(400 * 0.75) = 300 offline rows, 100 online ones, and their V^mu come with them
    assert int(online.sum()) == 100, f"mixing ratio 0.75: expected 100 online rows out of 400, got {int(online.sum())}"
    assert (mc[online] == -9.0).all() and (mc[~online] == rew[~online] - 1).all()
    uniform = cal_ql.ReplayBuffer(data, 100, torch.zeros(4), mixing_ratio=-1.0)
    uniform.add(np.zeros(3), np.array([0.25]), 7.0, np.zeros(3), False, 0.0)
    share = (uniform.sample(5000)[2] == 7.0).float().mean().item()
    assert share == pytest.approx(0.2, abs=0.03), f"-1: uniform over the 5 stored rows, online share {share:.3f}"


# ---------------------------------------------------------------- runs of the script

def test_offline_then_online_end_to_end_and_checkpoint_reload(pendulum_expert, run_dir):
    # 150 offline steps, then 250 online: Pendulum's first online episode (200 steps) joins the buffer
    # at step 350, so the last 50 steps train on mixed batches.
    out = run_script("cal_ql.py", "--dataset-id", pendulum_expert, "--total-steps", 150, "--online-steps", 250,
                     "--eval-freq", 200, "--eval-episodes", 2, "--batch-size", 32, "--save-model", "--no-cuda",
                     *SMALL, cwd=run_dir)
    assert out.returncode == 0, out.stderr
    run, summary = read_summary(run_dir)
    assert summary["algorithm"] == "cal_ql" and summary["steps"] == 400 and summary["offline_steps"] == 150
    assert [h[0] for h in summary["eval_history"]] == [150, 200, 400]
    [(step, ret)] = summary["online_episode_returns"]
    assert step == 350 and -2000 < ret <= 0
    values = summary["final_values"]
    for key in ("critic_loss", "actor_loss", "q_data", "q_random", "q_policy", "mc_return", "cql_gap",
                "bound_rate", "alpha", "entropy_temperature"):
        assert math.isfinite(values[key]), key
    assert 0.0 <= values["bound_rate"] <= 1.0

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    assert "values/bound_rate" in events.Tags()["scalars"]
    assert {e.step: e.value for e in events.Scalars("charts/env_steps")}[400] == 250

    ckpt = torch.load(run / "cal_ql.pt", weights_only=True)
    assert ckpt["algorithm"] == "cal_ql"
    data = load_dataset(pendulum_expert, "cpu", verbose=False)
    actor = cal_ql.Actor(data.obs_dim, data.act_dim, 32, 2, data.action_low, data.action_high)
    actor.load_state_dict(ckpt["actor"])
    returns, _ = cal_ql.evaluate(actor.act, data, ckpt["eval_seeds"], "cpu")
    np.testing.assert_allclose(returns, summary["final_returns"], rtol=1e-6)
    eval_dir = run_dir / "eval"
    eval_dir.mkdir()
    out = run_script("cal_ql.py", "--eval-checkpoint", run / "cal_ql.pt", "--no-cuda", cwd=eval_dir)
    assert out.returncode == 0, out.stderr
    _, ev = read_summary(eval_dir)
    assert ev["normalized_score"] == pytest.approx(summary["final_normalized_score"], rel=1e-9)


@pytest.mark.learning("cal_ql")
def test_cal_ql_beats_random_on_mixed_data(pendulum_mixed, run_dir):
    """2,000 steps on data of mixed quality (half uniform-random episodes, half a noisy controller;
    score 0 = random, 100 = the controller): the policy must beat random clearly."""
    out = run_script("cal_ql.py", "--dataset-id", pendulum_mixed, "--no-cuda", "--total-steps", 2000,
                     "--eval-freq", 2000, "--eval-episodes", 5, "--batch-size", 64, "--cql-n-actions", 4,
                     "--cql-alpha", 10, cwd=run_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    _, summary = read_summary(run_dir)
    print(summary["eval_history"], summary["final_values"])
    assert summary["final_normalized_score"] > 10, (
        f"Cal-QL should beat random clearly (controller 100, random 0), got {summary['final_normalized_score']:.1f}")


@pytest.mark.parametrize("flags, message", [
    (["--mixing-ratio", "1.5"], "--mixing-ratio must be in [0, 1], or -1 for uniform draws (got 1.5)"),
    (["--mixing-ratio", "-0.5"], "--mixing-ratio must be in [0, 1], or -1 for uniform draws (got -0.5)"),
    (["--online-steps", "-1"], "--online-steps must be non-negative (got -1)"),
    (["--cql-alpha", "-1"], "--cql-alpha must be >= 0 (got -1.0)"),
    (["--cql-n-actions", "0"], "--cql-n-actions must be positive (got 0)"),
    (["--gamma", "1"], "--gamma must be in [0, 1) (got 1.0)"),
])
def test_bad_flags_are_a_clear_error(flags, message):
    import tyro

    with pytest.raises(SystemExit) as exit_info:
        cal_ql.check_args(tyro.cli(cal_ql.Args, args=flags))
    assert message in str(exit_info.value.code)


@pytest.mark.parametrize("flags, message", [
    (["--mixing-ratio", "2"], "--mixing-ratio must be in [0, 1]"),
])
def test_bad_input_stops_the_script_and_writes_nothing(flags, message, pendulum_expert, run_dir):
    out = run_script("cal_ql.py", "--dataset-id", pendulum_expert, "--no-cuda", *flags, cwd=run_dir)
    assert out.returncode != 0
    assert message in out.stderr + out.stdout
    assert not (run_dir / "runs").exists()
