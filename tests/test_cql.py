"""cql.py: each exercise against values worked out by hand or by brute force; the critic's loss, the max
backup, the Polyak step and the Lagrangian's step through the agent, with target critics that differ
from the online ones; logging that leaves training alone; the Monte-Carlo returns; the online phase's
buffer and env runner against a stub env; an empirical conservatism check against offline SAC on real
(tiny) data; end to end offline and offline-to-online with checkpoint reload; bad input."""

import math
import os
import subprocess
import sys
import warnings
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

import cql
from common.datasets import OfflineDataset, load_dataset
from testdata import ROOT, read_summary, rollout_pendulum, run_script, write_dataset

SMALL = ["--hidden-dim", 32, "--critic-layers", 2, "--actor-layers", 2, "--cql-n-actions", 3]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Script runs use one thread: on tiny networks a second one only adds waiting, and on a shared CPU
    two threads per process can wait on each other for seconds at every step."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def small_agent(**kw):
    args = cql.Args(**{"hidden_dim": 16, "critic_layers": 2, "actor_layers": 2, "cql_n_actions": 3, **kw})
    return cql.CQL(3, 2, args, -2 * torch.ones(2), 2 * torch.ones(2), "cpu")


# ---------------------------------------------------------------- the exercises, one function at a time

@pytest.mark.exercise("cql.tanh_gaussian_log_prob")
def test_tanh_gaussian_density_integrates_to_one():
    # pi(a|s) is a density on (-1, 1): its integral is 1. Fails without the tanh correction, with its
    # sign flipped, or with a wrong Gaussian term. A fine grid in u, a = tanh(u), da = (1 - tanh(u)^2) du.
    u = torch.linspace(-40, 40, 400_001, dtype=torch.float64).unsqueeze(-1)
    da_du = 1 - torch.tanh(u[:, 0]) ** 2
    for mean, log_std in ((0.0, 0.0), (0.8, -0.5), (-1.5, 0.7)):
        logp = cql.tanh_gaussian_log_prob(u, torch.full_like(u, mean), torch.full_like(u, log_std))
        assert logp.shape == da_du.shape, f"log pi: expected shape {tuple(da_du.shape)} (summed over the last dim), got {tuple(logp.shape)}"
        total = torch.trapezoid(logp.exp() * da_du, u[:, 0]).item()
        assert total == pytest.approx(1.0, abs=1e-3), (
            f"tanh-Gaussian (mu {mean}, log sigma {log_std}): the density over a in (-1, 1) should integrate "
            f"to 1, got {total:.4f}")


@pytest.mark.exercise("cql.tanh_gaussian_log_prob")
def test_tanh_gaussian_log_prob_sums_over_dimensions_and_stays_exact_for_large_u():
    # u = 12, mu = 0, sigma = 1: log N = -72 - log(2 pi)/2, log(1 - tanh^2 12) = -2 (12 - log 2) + O(e^-24),
    # so log pi = -72 - 0.918939 + 22.613706 = -50.305233. In float32, 1 - tanh(12)^2 rounds to 0.
    u = torch.tensor([[12.0], [-12.0]])
    got = cql.tanh_gaussian_log_prob(u, torch.zeros(2, 1), torch.zeros(2, 1))
    expected = -72.0 - 0.5 * math.log(2 * math.pi) + 2 * (12 - math.log(2))
    assert torch.isfinite(got).all(), f"log pi at u = +-12 must be finite in float32, got {got.tolist()}"
    assert got.tolist() == pytest.approx([expected, expected], abs=1e-3), (
        f"log pi at u = +-12, mu 0, sigma 1: expected {expected:.4f} both, got {got.tolist()}")
    # independent dimensions: log pi of (u1, u2) is the sum of the one-dimensional ones
    mean, log_std, u2 = torch.tensor([0.3, -1.0]), torch.tensor([-0.2, 0.5]), torch.tensor([0.7, -2.0])
    joint = cql.tanh_gaussian_log_prob(u2, mean, log_std).item()
    parts = sum(cql.tanh_gaussian_log_prob(u2[j:j + 1], mean[j:j + 1], log_std[j:j + 1]).item() for j in range(2))
    assert joint == pytest.approx(parts, abs=1e-5), f"log pi of 2 dimensions: expected the sum {parts:.5f}, got {joint:.5f}"


@pytest.mark.exercise("cql.cql_logsumexp")
def test_logsumexp_matches_a_plain_loop():
    torch.manual_seed(0)
    q_rand, q_curr, q_next = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    lp_curr, lp_next = torch.randn(4, 3), torch.randn(4, 3)
    got = cql.cql_logsumexp(q_rand, q_curr, q_next, lp_curr, lp_next, act_dim=2)
    assert got.shape == (4,), f"expected one estimate per state, shape (4,), got {tuple(got.shape)}"
    for b in range(4):
        total = 0.0
        for i in range(3):
            total += math.exp(q_rand[b, i]) / 0.25  # uniform density on [-1, 1]^2 is 1/4
            total += math.exp(q_curr[b, i]) / math.exp(lp_curr[b, i])
            total += math.exp(q_next[b, i]) / math.exp(lp_next[b, i])
        expected = math.log(total / 9)
        assert got[b].item() == pytest.approx(expected, abs=1e-5), (
            f"state {b}: expected log of the mean of exp(Q)/mu over the 9 samples = {expected:.5f}, got {got[b].item():.5f}")


@pytest.mark.exercise("cql.cql_logsumexp")
def test_logsumexp_estimate_converges_to_the_integral():
    # With many samples the estimate approaches log int_{-1}^{1} exp Q(a) da. The policy samples and
    # their densities come from torch.distributions here (a tanh-Gaussian far from uniform).
    g = torch.Generator().manual_seed(0)
    n, mean, std = 200_000, 0.8, math.exp(-0.5)

    def policy_samples():
        u = (mean + std * torch.randn(1, n, generator=g)).double()
        log_pi = torch.distributions.Normal(mean, std).log_prob(u) - torch.log1p(-torch.tanh(u) ** 2)
        return torch.tanh(u), log_pi

    (a_curr, lp_curr), (a_next, lp_next) = policy_samples(), policy_samples()
    a_rand = (torch.rand(1, n, generator=g) * 2 - 1).double()

    def q(a):
        return 3 * a - 4 * a**2

    est = cql.cql_logsumexp(q(a_rand), q(a_curr), q(a_next), lp_curr, lp_next, 1).item()
    grid = np.linspace(-1, 1, 200_001)
    exact = math.log(np.trapezoid(np.exp(3 * grid - 4 * grid**2), grid))
    assert est == pytest.approx(exact, abs=0.02), (
        f"with 3 x 200k samples the estimate should be near log int exp Q da = {exact:.4f}, got {est:.4f}")


@pytest.mark.exercise("cql.cql_penalty")
def test_cql_penalty_by_hand():
    lse = torch.tensor([[1.0, 2.0], [0.0, 4.0]])
    q_data = torch.tensor([[0.5, 1.0], [1.0, 1.0]])
    got = cql.cql_penalty(lse, q_data)
    # critic 1: mean(1 - 0.5, 2 - 1) = 0.75; critic 2: mean(0 - 1, 4 - 1) = 1.0
    assert got.tolist() == pytest.approx([0.75, 1.0]), f"gap per critic: expected [0.75, 1.0], got {got.tolist()}"


@pytest.mark.exercise("cql.td_target")
def test_td_target_by_hand():
    rew, done = torch.tensor([1.0, 2.0, -1.0]), torch.tensor([0.0, 1.0, 0.0])
    next_q = torch.tensor([[3.0, 5.0, -2.0], [4.0, 1.0, -6.0]])  # Qbar_1, Qbar_2 at (s', a')
    got = cql.td_target(rew, done, next_q, 0.5)
    # min over the twins [3, 1, -6]; the second transition terminated: no bootstrap
    expected = [1 + 0.5 * 3, 2.0, -1 + 0.5 * -6]
    assert got.tolist() == pytest.approx(expected), f"TD targets: expected {expected}, got {got.tolist()}"


@pytest.mark.exercise("cql.actor_loss")
def test_actor_loss_by_hand():
    log_pi = torch.tensor([-1.0, 2.0], requires_grad=True)
    q_pi = torch.tensor([[3.0, 0.0], [1.0, 4.0]], requires_grad=True)
    got = cql.actor_loss(log_pi, q_pi, torch.tensor(0.5))
    # min over the twins [1, 0]: mean(0.5 * -1 - 1, 0.5 * 2 - 0) = -0.25
    assert got.item() == pytest.approx(-0.25), f"actor loss: expected -0.25, got {got.item():.4g}"
    got.backward()
    assert log_pi.grad.tolist() == pytest.approx([0.25, 0.25]), (
        f"d L / d log pi: expected beta / B = 0.25 each, got {log_pi.grad.tolist()}")
    assert q_pi.grad.flatten().tolist() == pytest.approx([0.0, -0.5, -0.5, 0.0]), (
        f"d L / d Q: expected -1/B on the smaller twin of each state and 0 on the other, got {q_pi.grad.tolist()}")


@pytest.mark.exercise("cql.cql_alpha_loss")
@pytest.mark.parametrize("gaps, expected", [([9.0, 7.0], -6.0), ([1.0, 3.0], 6.0)])
def test_cql_alpha_loss_by_hand(gaps, expected):
    # alpha = 2, tau = 5: L = -alpha (mean gap - tau), and its gradient in log alpha is the same number
    log_alpha = torch.tensor(math.log(2.0), requires_grad=True)
    loss = cql.cql_alpha_loss(log_alpha, torch.tensor(gaps), 5.0)
    assert loss.item() == pytest.approx(expected), f"gaps {gaps}, tau 5, alpha 2: expected L = {expected}, got {loss.item():.4g}"
    loss.backward()
    assert log_alpha.grad.item() == pytest.approx(expected), (
        f"gaps {gaps}: expected d L / d log alpha = {expected}, got {log_alpha.grad.item():.4g}")
    # one Adam step of size lr: alpha rises when the gap is above tau, falls when below
    torch.optim.Adam([log_alpha], lr=0.1).step()
    direction = "rise" if expected < 0 else "fall"
    assert log_alpha.item() == pytest.approx(math.log(2.0) - 0.1 * math.copysign(1, expected), abs=1e-6), (
        f"gaps {gaps} against tau 5: log alpha should {direction} by the learning rate 0.1, went from "
        f"{math.log(2.0):.4f} to {log_alpha.item():.4f}")


# ---------------------------------------------------------------- the agent: losses, targets, steps

class KnownQ(torch.nn.Module):
    """Twin critics with a known formula: Q_i(s, a) = s.w_i + a.v_i - |a|^2 + e_i."""

    def __init__(self, w, v, e):
        super().__init__()
        self.w, self.v, self.e = torch.tensor(w), torch.tensor(v), torch.tensor(e)

    def forward(self, obs, act):  # (2, M), like cql.TwinQ
        return (obs @ self.w.T + act @ self.v.T - (act**2).sum(-1, keepdim=True) + self.e).T


ONLINE = dict(w=[[0.3, -0.2, 0.1], [0.1, 0.4, -0.3]], v=[[0.5, -1.0], [-0.2, 0.8]], e=[0.0, 1.0])
# the target twins rank actions in opposite orders, so a max over actions and the min over the twins
# give different results taken in different orders
TARGET = dict(w=[[-0.4, 0.6, 0.2], [-0.3, 0.5, 0.3]], v=[[-1.5, 0.5], [1.5, -0.5]], e=[2.0, 2.0])


def Q(net, i, s, a):
    return net(s[None], a[None])[i, 0].item()


def batch(B=5):
    g = torch.Generator().manual_seed(1)
    obs, next_obs = torch.randn(B, 3, generator=g), torch.randn(B, 3, generator=g)
    act, rew = torch.rand(B, 2, generator=g) * 2 - 1, torch.randn(B, generator=g)
    return obs, act, rew, next_obs, torch.tensor([0., 1., 0., 0., 1.])[:B]


def test_critic_loss_matches_brute_force_with_distinct_target_critics():
    """Known online and target critics that differ, the agent's own samples (same RNG stream): the
    batched loss equals a loop. Fails if the TD target reads the online critic."""
    agent = small_agent(gamma=0.9)
    agent.critic, agent.critic_target = KnownQ(**ONLINE), KnownQ(**TARGET)
    obs, act, rew, next_obs, done = batch()
    B, N = 5, 3

    torch.manual_seed(7)
    loss, gap = agent.critic_loss(obs, act, rew, next_obs, done)
    torch.manual_seed(7)  # replay the same draws, in the same order as critic_loss
    with torch.no_grad():
        next_a, _ = agent.actor.sample(next_obs)
        rand_a = torch.rand(B, N, 2) * 2 - 1
        curr_a, curr_lp = agent.actor.sample(obs, N)
        nxt_a, nxt_lp = agent.actor.sample(next_obs, N)

    on, tg = agent.critic, agent.critic_target
    td, gaps = 0.0, [0.0, 0.0]
    for i in range(2):
        for b in range(B):
            y = rew[b].item() + 0.9 * (1 - done[b].item()) * min(Q(tg, 0, next_obs[b], next_a[b]), Q(tg, 1, next_obs[b], next_a[b]))
            td += (Q(on, i, obs[b], act[b]) - y) ** 2 / B
            terms = []
            for k in range(N):
                terms.append(Q(on, i, obs[b], rand_a[b, k]) - math.log(0.25))
                terms.append(Q(on, i, obs[b], curr_a[b, k]) - curr_lp[b, k].item())
                terms.append(Q(on, i, obs[b], nxt_a[b, k]) - nxt_lp[b, k].item())  # pi(s') actions, evaluated at s
            lse = math.log(sum(math.exp(t) for t in terms) / len(terms))
            gaps[i] += (lse - Q(on, i, obs[b], act[b])) / B
    torch.testing.assert_close(gap, torch.tensor(gaps), atol=1e-4, rtol=1e-4)
    assert loss.item() == pytest.approx(td + 5.0 * sum(gaps), rel=1e-4), (
        f"critic loss: expected L_TD + 5 sum_i gap_i = {td + 5.0 * sum(gaps):.5f} (target from the target critics), "
        f"got {loss.item():.5f}")


@pytest.mark.parametrize("backup_entropy", [False, True])
def test_alpha_zero_is_sac_and_backup_entropy_adds_the_soft_value(backup_entropy):
    agent = small_agent(cql_alpha=0.0, gamma=0.9, backup_entropy=backup_entropy)
    assert not agent.use_cql
    agent.critic, agent.critic_target = KnownQ(**ONLINE), KnownQ(**TARGET)
    with torch.no_grad():
        agent.log_beta.fill_(0.3)
    obs, act, rew, next_obs, done = batch()
    torch.manual_seed(3)
    loss, _ = agent.critic_loss(obs, act, rew, next_obs, done)
    torch.manual_seed(3)
    with torch.no_grad():
        next_a, next_lp = agent.actor.sample(next_obs)
    td = 0.0
    for b in range(5):
        v = min(Q(agent.critic_target, 0, next_obs[b], next_a[b]), Q(agent.critic_target, 1, next_obs[b], next_a[b]))
        if backup_entropy:
            v -= math.exp(0.3) * next_lp[b].item()  # y = r + gamma (1 - d) (min_i Qbar_i - beta log pi)
        y = rew[b].item() + 0.9 * (1 - done[b].item()) * v
        td += sum((Q(agent.critic, i, obs[b], act[b]) - y) ** 2 for i in range(2)) / 5
    assert loss.item() == pytest.approx(td, rel=1e-5), (
        f"alpha 0, backup entropy {backup_entropy}: expected the TD loss alone, {td:.5f}, got {loss.item():.5f}")


def test_max_target_backup_matches_brute_force():
    # y = r + gamma (1 - d) min_i max_k Qbar_i(s', a'_k), K = --cql-n-actions actions a'_k ~ pi(.|s')
    agent = small_agent(cql_alpha=0.0, gamma=0.9, cql_max_target_backup=True, cql_n_actions=4)
    agent.critic, agent.critic_target = KnownQ(**ONLINE), KnownQ(**TARGET)
    obs, act, rew, next_obs, _ = batch()
    done = torch.tensor([0., 0., 0., 0., 1.])  # the orders must differ where the target bootstraps
    torch.manual_seed(5)
    loss, _ = agent.critic_loss(obs, act, rew, next_obs, done)
    torch.manual_seed(5)
    with torch.no_grad():
        next_a, _ = agent.actor.sample(next_obs, 4)
    td, orders_differ = 0.0, False
    for b in range(5):
        table = [[Q(agent.critic_target, i, next_obs[b], next_a[b, k]) for k in range(4)] for i in range(2)]
        min_of_max = min(max(row) for row in table)
        orders_differ |= done[b].item() == 0 and abs(min_of_max - max(min(col) for col in zip(*table))) > 1e-3
        y = rew[b].item() + 0.9 * (1 - done[b].item()) * min_of_max
        td += sum((Q(agent.critic, i, obs[b], act[b]) - y) ** 2 for i in range(2)) / 5
    assert orders_differ, "test data: min-of-max and max-of-min should differ somewhere, or this test tells nothing"
    assert loss.item() == pytest.approx(td, rel=1e-5), (
        f"max backup: expected the TD loss with y from min_i max_k Qbar_i(s', a'_k), {td:.5f}, got {loss.item():.5f}")


def test_update_scales_the_stored_actions_to_the_unit_box():
    """Batches come as stored, in the env's units (the box here is [-2, 2]^2); the critics must see a / 2,
    where the actor's samples and the uniform proposal live. Fails if the update hands the stored actions
    to the critics unscaled."""
    agent = small_agent()
    obs, act, rew, next_obs, done = batch()
    torch.manual_seed(3)
    expected, _ = agent.critic_loss(obs, act, rew, next_obs, done)  # act already in [-1, 1]
    torch.manual_seed(3)
    metrics = agent.update(obs, 2.0 * act, rew, next_obs, done)
    assert metrics["critic_loss"].item() == pytest.approx(expected.item(), rel=1e-6), (
        "update: the critics should see the stored actions scaled to [-1, 1]^d: expected the critic loss "
        f"{expected.item():.6f} of the scaled batch, got {metrics['critic_loss'].item():.6f}")


def test_polyak_update_moves_the_target_toward_the_updated_critic():
    agent = small_agent(tau=0.1)
    with torch.no_grad():  # a target that differs from the online critic
        for p in agent.critic_target.parameters():
            p.add_(torch.randn_like(p))
    before = [p.clone() for p in agent.critic_target.parameters()]
    obs, act, rew, next_obs, done = batch()
    agent.update(obs, act, rew, next_obs, done)
    for p_old, p_target, p in zip(before, agent.critic_target.parameters(), agent.critic.parameters()):
        assert not torch.equal(p_target, p)
        torch.testing.assert_close(p_target, 0.9 * p_old + 0.1 * p, msg=lambda m: (
            "Polyak: expected Qbar <- 0.9 Qbar + 0.1 Q, with Q the critic after its step. " + m))


@pytest.mark.parametrize("between, direction", [(0.5, "rises"), (1.5, "falls")])
def test_lagrange_step_compares_the_gap_in_the_papers_convention(between, direction):
    """--cql-target-action-gap is read as the paper's code reads it, logsumexp over the 3N samples without
    -log(3N): our gap + log(3N). A target tau = gap + 0.5 log(3N) is below that gap (alpha rises); a
    target gap + 1.5 log(3N) is above it (alpha falls). One Adam step moves log alpha by its rate."""
    agent = small_agent(cql_lagrange=True, cql_alpha=2.0, cql_alpha_lr=0.1)
    obs, act, rew, next_obs, done = batch()
    torch.manual_seed(11)
    _, gap = agent.critic_loss(obs, act, rew, next_obs, done)
    log_3n = math.log(9)
    agent.args.cql_target_action_gap = gap.mean().item() + between * log_3n
    torch.manual_seed(11)  # the update draws the same samples first
    metrics = agent.update(obs, 2.0 * act, rew, next_obs, done)  # the same actions in the env's units, [-2, 2]
    expected_loss = -2.0 * (1 - between) * log_3n  # -alpha (gap + log 3N - tau)
    assert metrics["alpha_loss"].item() == pytest.approx(expected_loss, rel=1e-4), (
        f"dual loss: expected -alpha (gap + log 3N - tau) = {expected_loss:.4f}, got {metrics['alpha_loss'].item():.4f}")
    step = 0.1 if direction == "rises" else -0.1
    assert agent.log_cql_alpha.item() == pytest.approx(math.log(2.0) + step, abs=1e-5), (
        f"tau = gap + {between} log(3N): log alpha should move by {step:+} from {math.log(2.0):.4f}, "
        f"got {agent.log_cql_alpha.item():.4f}")


def test_logging_never_changes_training(pendulum_mixed, tmp_path):
    """The probe behind values/* draws its samples from its own generator: runs that log and evaluate
    at different steps end with the same parameters."""
    params = []
    for eval_freq in (25, 100):
        cwd = tmp_path / str(eval_freq)
        cwd.mkdir()
        out = run_script("cql.py", "--dataset-id", pendulum_mixed, "--total-steps", 100, "--eval-freq", eval_freq,
                         "--eval-episodes", 1, "--batch-size", 32, "--save-model", "--no-cuda", *SMALL, cwd=cwd)
        assert out.returncode == 0, out.stderr
        run, summary = read_summary(cwd)
        params.append(torch.load(run / "cql.pt", weights_only=True))
    for key in ("actor", "critic", "critic_target"):
        for name, tensor in params[0][key].items():
            assert torch.equal(tensor, params[1][key][name]), (
                f"{key}.{name}: evaluating every 25 steps instead of every 100 changed the trained parameters")
    assert torch.equal(params[0]["log_beta"], params[1]["log_beta"])


def test_monte_carlo_returns_by_hand():
    # Episode 0 terminates: G = r_t + gamma G_{t+1}, G_T = 0. Episode 1 is truncated: its tail is the
    # mean reward of its last min(T, 1/(1-gamma)) = 2 steps, continued forever.
    gamma = 0.5
    data = SimpleNamespace(
        rewards=torch.tensor([1.0, 2.0, 3.0, -1.0, -2.0, -4.0]),
        truncations=torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 1.0]),
        episode_starts=torch.tensor([0, 3]), episode_lengths=torch.tensor([3, 3]),
    )
    g = cql.discounted_returns(data, gamma).tolist()
    assert g[:3] == pytest.approx([1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3])
    tail = (-2.0 - 4.0) / 2 / (1 - gamma)  # = -6
    assert g[5] == pytest.approx(-4 + 0.5 * tail)
    assert g[4] == pytest.approx(-2 + 0.5 * g[5])
    assert g[3] == pytest.approx(-1 + 0.5 * g[4])


# ---------------------------------------------------------------- the online phase: buffer and runner

def tiny_dataset(n=4) -> OfflineDataset:
    """n transitions with distinct rows (rewards 1..n), obs mean (1, 2, 3), std (2, 4, 8), actions in [-2, 2]."""
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
        truncated = self.episode == 0 and self.t == 3
        terminated = self.episode > 0 and self.t == 2
        return obs, float(self.t), terminated, truncated, {}


class FixedActor:
    """explore() = 1.5 (a sample, in the env's units), act() = -0.9 (the mean): the runner must explore."""

    def explore(self, obs):
        return torch.full((obs.shape[0], 1), 1.5)

    def act(self, obs):
        return torch.full((obs.shape[0], 1), -0.9)


def test_online_transitions_are_stored_as_the_loader_stores_data():
    data = tiny_dataset()
    buffer = cql.ReplayBuffer(data, online_capacity=6)
    env = StubEnv()
    runner = cql.OnlineRunner(env, buffer, seed=5)
    finished = [runner.step(FixedActor()) for _ in range(5)]

    # episode 0: three steps, truncated; episode 1: two steps, terminated
    assert finished == [None, None, 6.0, None, 3.0], f"episode returns 1+2+3 and 1+2 at their last steps, got {finished}"
    assert env.reset_seeds == [5, None, None], "seeded once from --seed, then the episodes continue its stream"
    assert [float(a[0]) for a in env.actions] == [1.5] * 5, "the env gets actor.explore(s), not the mean action"
    assert buffer.size == data.size + 5
    new = slice(data.size, data.size + 5)
    raw_obs = torch.tensor([[0, 0, 0], [0, 1, 11.5], [0, 2, 21.5], [1, 0, 0], [1, 1, 11.5]])
    raw_next = torch.tensor([[0, 1, 11.5], [0, 2, 21.5], [0, 3, 31.5], [1, 1, 11.5], [1, 2, 21.5]])
    mean, std = data.obs_mean, data.obs_std
    # observations normalised with the dataset's statistics, as the loader's are
    torch.testing.assert_close(buffer.observations[new], (raw_obs - mean) / std)
    # the truncated step keeps its own next observation (0, 3, 31.5), not the next episode's first
    torch.testing.assert_close(buffer.next_observations[new], (raw_next - mean) / std)
    # d = 1 only where the episode terminated: the truncation at step 3 bootstraps
    assert buffer.terminals[new].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0], (
        f"terminal flags of the online transitions: expected 1 only at the termination, got {buffer.terminals[new].tolist()}")
    assert buffer.rewards[new].tolist() == [1.0, 2.0, 3.0, 1.0, 2.0]
    # actions in the env's units, as the dataset's are (the training loop scales both to [-1, 1] alike)
    assert buffer.actions[new, 0].tolist() == [1.5] * 5
    torch.testing.assert_close(buffer.actions[: data.size], data.actions)
    torch.testing.assert_close(buffer.observations[: data.size], data.normalize_obs(data.observations))
    torch.testing.assert_close(buffer.next_observations[: data.size], data.normalize_obs(data.next_observations))


def test_batches_come_only_from_the_transitions_stored_so_far():
    torch.manual_seed(0)
    buffer = cql.ReplayBuffer(tiny_dataset(n=4), online_capacity=100)
    buffer.add(np.array([1.0, 2.0, 3.0]), np.array([0.25]), 7.0, np.array([1.0, 2.0, 3.0]), False)
    rewards = buffer.sample(4000)[2]
    counts = {r: int((rewards == r).sum()) for r in (1.0, 2.0, 3.0, 4.0, 7.0)}
    assert sum(counts.values()) == 4000, f"batches drew empty rows beyond the 5 stored transitions: {counts}"
    assert all(600 < c < 1000 for c in counts.values()), f"draws should be uniform over the 5 transitions: {counts}"


def test_explore_samples_the_policy_in_the_envs_units():
    # A policy with mu(s) = 1, sigma(s) = e^-1 in every state, in an action box [-2, 2]: the sampled
    # actions are a = 2 tanh(u), u ~ N(1, e^-2), whose mean 2 E[tanh u] is worked out on a fine grid.
    actor = cql.Actor(3, 1, 16, 2, -2 * torch.ones(1), 2 * torch.ones(1))
    with torch.no_grad():
        for head, bias in ((actor.mean, 1.0), (actor.log_std, -1.0)):
            head.weight.zero_()
            head.bias.fill_(bias)
    torch.manual_seed(0)
    with torch.no_grad():
        a = actor.explore(torch.randn(20_000, 3))[:, 0]
    u = np.linspace(1 - 8 * math.exp(-1), 1 + 8 * math.exp(-1), 100_001)
    density = np.exp(-0.5 * ((u - 1) / math.exp(-1)) ** 2) / (math.exp(-1) * math.sqrt(2 * math.pi))
    expected = 2 * np.trapezoid(np.tanh(u) * density, u)  # about 1.48
    assert a.abs().max() <= 2.0, f"explore: actions must stay in the box [-2, 2], got max |a| {a.abs().max():.3f}"
    assert a.mean().item() == pytest.approx(expected, abs=0.01), (
        f"explore: mu 1, sigma e^-1, box [-2, 2]: the mean sampled action should be 2 E[tanh u] = {expected:.3f}, "
        f"got {a.mean().item():.3f}")
    assert a.std().item() > 0.1, f"explore must sample from pi, not return the mean action: std {a.std().item():.4f}"


# ---------------------------------------------------------------- runs of the script

def dataset_q_and_mc(run, dataset_id):
    """Mean Q (of the twins) on every (s, a) of the dataset, from the checkpoint; mean MC return."""
    ckpt = torch.load(run / "cql.pt", weights_only=True)
    a = ckpt["args"]
    data = load_dataset(dataset_id, "cpu", verbose=False)
    critic = cql.TwinQ(data.obs_dim + data.act_dim, a["hidden_dim"], a["critic_layers"])
    critic.load_state_dict(ckpt["critic"])
    actor = cql.Actor(data.obs_dim, data.act_dim, a["hidden_dim"], a["actor_layers"], data.action_low, data.action_high)
    with torch.no_grad():
        act = (data.actions - actor.action_bias) / actor.action_scale
        q = critic(data.normalize_obs(data.observations), act).mean().item()
    return q, cql.discounted_returns(data, a["gamma"]).mean().item()


@pytest.mark.learning("cql")
def test_conservative_q_stays_near_and_below_the_data_return_and_offline_sac_does_not(pendulum_expert, tmp_path):
    """An empirical conservatism check on narrow data (a controller with little action noise), not
    Theorem 3.2: the theorem bounds E_{a~pi} Q(s,a) by the learned policy's value V^pi(s), whereas this
    compares Q at the dataset's actions with the data's Monte-Carlo return. Offline SAC's Q there runs
    above the return (here even above 0, the largest value any policy can reach, since Pendulum's
    rewards are <= 0); CQL's stays at or below it, yet close to it: a critic far below (a sign or a
    target bug once gave -3525 against a return of -11.6) fails too."""
    flags = ["--dataset-id", pendulum_expert, "--no-cuda", "--total-steps", 3000, "--eval-freq", 3000,
             "--eval-episodes", 1, "--batch-size", 64, "--policy-lr", 1e-3, "--q-lr", 1e-3, "--tau", 0.02,
             "--hidden-dim", 64, "--critic-layers", 2, "--actor-layers", 2, "--cql-n-actions", 4, "--save-model"]
    env = dict(os.environ, OMP_NUM_THREADS="1")  # the two runs side by side, one thread each
    procs = {}
    for alpha in (0.0, 10.0):
        cwd = tmp_path / str(alpha)
        cwd.mkdir()
        procs[alpha] = (cwd, subprocess.Popen([sys.executable, str(ROOT / "cql.py"), *map(str, flags),
                                               "--cql-alpha", str(alpha)], cwd=cwd, env=env,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    result = {}
    for alpha, (cwd, p) in procs.items():
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        run, _ = read_summary(cwd)
        result[alpha] = dataset_q_and_mc(run, pendulum_expert)
    (q_sac, mc), (q_cql, mc2) = result[0.0], result[10.0]
    assert mc == pytest.approx(mc2)
    assert q_sac > mc + 5 and q_sac > q_cql + 5, (
        f"offline SAC's mean Q on the data's actions ({q_sac:.1f}) should exceed the data's return ({mc:.1f}) "
        f"and CQL's Q ({q_cql:.1f}) by more than 5")
    assert q_cql <= mc, f"CQL's mean Q on the data's actions ({q_cql:.1f}) should be at or below the data's return ({mc:.1f})"
    assert q_cql >= mc - 10, (
        f"CQL's mean Q on the data's actions ({q_cql:.1f}) should stay within 10 of the data's return ({mc:.1f}): "
        f"conservative, not collapsed")


@pytest.mark.parametrize("target_gap, direction", [(-50.0, "rises"), (50.0, "falls")])
def test_end_to_end_lagrange_moves_alpha_toward_the_target_and_checkpoint_reloads(
        pendulum_mixed, run_dir, target_gap, direction):
    out = run_script("cql.py", "--dataset-id", pendulum_mixed, "--total-steps", 300, "--eval-freq", 150,
                     "--eval-episodes", 2, "--save-model", "--no-cuda", "--cql-lagrange", "--batch-size", 64,
                     "--cql-target-action-gap", target_gap, *SMALL, cwd=run_dir)
    assert out.returncode == 0, out.stderr
    run, summary = read_summary(run_dir)
    values = summary["final_values"]
    for key in ("critic_loss", "actor_loss", "alpha_loss", "q_data", "q_random", "q_policy", "mc_return",
                "cql_gap", "alpha", "entropy_temperature"):
        assert math.isfinite(values[key]), key
    # the gap is far from either target, so alpha moves the same way at every one of the 300 dual steps
    if direction == "rises":
        assert values["cql_gap"] > target_gap and values["alpha"] > 5.0, (
            f"gap {values['cql_gap']:.2f} above the target {target_gap}: alpha should rise from 5, got {values['alpha']:.4f}")
    else:
        assert values["cql_gap"] < target_gap and values["alpha"] < 5.0, (
            f"gap {values['cql_gap']:.2f} below the target {target_gap}: alpha should fall from 5, got {values['alpha']:.4f}")
    if direction == "falls":
        return  # one run checks the rest
    assert summary["steps"] == 300 and len(summary["eval_history"]) == 2
    # without --online-steps: the usual summary plus "online_steps": 0
    assert summary["online_steps"] == 0
    assert not {"offline_steps", "online_episode_returns", "offline_final_normalized_score"} & set(summary)
    assert "Online fine-tuning" not in out.stdout
    assert math.isfinite(summary["final_normalized_score"]) and summary["sps"] > 0
    assert list(run.glob("events.out.tfevents.*"))
    assert "step 300/300" in out.stdout

    ckpt = torch.load(run / "cql.pt", weights_only=True)
    assert ckpt["algorithm"] == "cql"
    data = load_dataset(pendulum_mixed, "cpu", verbose=False)
    actor = cql.Actor(data.obs_dim, data.act_dim, 32, 2, data.action_low, data.action_high)
    actor.load_state_dict(ckpt["actor"])
    torch.testing.assert_close(ckpt["obs_mean"], data.obs_mean)
    returns, scores = cql.evaluate(actor.act, data, ckpt["eval_seeds"], "cpu")
    np.testing.assert_allclose(returns, summary["final_returns"], rtol=1e-6)
    assert np.isfinite(scores).all()

    eval_dir = run_dir / "eval"
    eval_dir.mkdir()
    out = run_script("cql.py", "--eval-checkpoint", run / "cql.pt", "--no-cuda", cwd=eval_dir)
    assert out.returncode == 0, out.stderr
    _, ev = read_summary(eval_dir)
    assert ev["normalized_score"] == pytest.approx(summary["final_normalized_score"], rel=1e-9)


def test_offline_sac_end_to_end(pendulum_mixed, run_dir):
    out = run_script("cql.py", "--dataset-id", pendulum_mixed, "--total-steps", 200, "--eval-freq", 200,
                     "--eval-episodes", 1, "--no-cuda", "--cql-alpha", 0, "--batch-size", 64, *SMALL, cwd=run_dir)
    assert out.returncode == 0, out.stderr
    assert "offline SAC (alpha = 0)" in out.stdout
    _, summary = read_summary(run_dir)
    assert summary["final_values"]["alpha"] == 0.0
    assert all(math.isfinite(v) for v in summary["final_values"].values())


def test_offline_then_online_end_to_end(pendulum_expert, run_dir):
    # 150 offline steps, then 200 online iterations: Pendulum's episodes last 200 steps (a truncation),
    # so exactly one online episode ends, at step 350. Evaluations every 100 steps across both phases,
    # at the end of the offline phase and at the last step.
    out = run_script("cql.py", "--dataset-id", pendulum_expert, "--total-steps", 150, "--online-steps", 200,
                     "--eval-freq", 100, "--eval-episodes", 1, "--batch-size", 32, "--no-cuda", *SMALL, cwd=run_dir)
    assert out.returncode == 0, out.stderr
    run, summary = read_summary(run_dir)
    assert summary["steps"] == 350 and summary["offline_steps"] == 150 and summary["online_steps"] == 200
    steps = [h[0] for h in summary["eval_history"]]
    assert steps == [100, 150, 200, 300, 350], (
        f"one evaluation schedule through both phases: expected [100, 150, 200, 300, 350], got {steps}")
    assert summary["offline_final_normalized_score"] == summary["eval_history"][1][2]
    assert summary["final_normalized_score"] == summary["eval_history"][-1][2]
    [(step, ret)] = summary["online_episode_returns"]
    assert step == 350 and -2000 < ret <= 0, f"one online episode of 200 steps ending at step 350: {summary['online_episode_returns']}"
    assert "Online fine-tuning from step 151" in out.stdout

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    online = events.Scalars("charts/online_episodic_return")
    assert [(e.step, e.value) for e in online] == [(350, pytest.approx(ret))]
    env_steps = {e.step: e.value for e in events.Scalars("charts/env_steps")}
    assert env_steps[150] == 0 and env_steps[350] == 200, env_steps


@pytest.fixture(scope="module")
def dataset_without_env(pendulum_refs):
    """Pendulum episodes stored without an env spec: nothing to evaluate in or fine-tune online."""
    episodes, _ = rollout_pendulum(2, 0.2, seed=4)
    env = gym.make("Pendulum-v1")
    with warnings.catch_warnings():  # Minari warns that the dataset has no env spec: that is the point
        warnings.simplefilter("ignore")
        write_dataset("test/pendulum/noenv-cql-v0", episodes, None, observation_space=env.observation_space,
                      action_space=env.action_space, ref_min_score=pendulum_refs[0], ref_max_score=pendulum_refs[1])
    return "test/pendulum/noenv-cql-v0"


def test_a_dataset_whose_env_cannot_be_made_is_a_clear_error(dataset_without_env, run_dir):
    out = run_script("cql.py", "--dataset-id", dataset_without_env, "--online-steps", 100, "--no-cuda", cwd=run_dir)
    assert out.returncode != 0
    assert f"cannot make the environment of '{dataset_without_env}'" in out.stderr, out.stderr[-2000:]
    assert "env spec" in out.stderr and "Traceback" not in out.stderr
    assert not (run_dir / "runs").exists()


@pytest.mark.parametrize("flags, message", [
    (["--online-steps", "-1"], "--online-steps must be non-negative (got -1)"),
    (["--cql-alpha", "-1"], "--cql-alpha must be >= 0 (got -1.0)"),
    (["--cql-alpha", "nan"], "--cql-alpha must be >= 0 (got nan)"),
    (["--cql-lagrange", "--cql-alpha", "0"], "--cql-lagrange needs a positive starting --cql-alpha"),
    (["--cql-target-action-gap", "inf"], "--cql-target-action-gap must be a finite number (got inf)"),
    (["--cql-max-target-backup", "--backup-entropy"], "--cql-max-target-backup takes no --backup-entropy"),
    (["--cql-n-actions", "0"], "--cql-n-actions must be positive (got 0)"),
    (["--cql-alpha-lr", "0"], "--cql-alpha-lr must be positive (got 0.0)"),
    (["--tau", "0"], "--tau must be in (0, 1] (got 0.0)"),
    (["--gamma", "1"], "--gamma must be in [0, 1) (got 1.0)"),
    (["--critic-layers", "0"], "--critic-layers must be positive (got 0)"),
    (["--batch-size", "0"], "--batch-size must be positive (got 0)"),
])
def test_bad_flags_are_a_clear_error(flags, message):
    # In-process (a subprocess per case costs seconds of imports); the script run below checks that
    # the same errors stop the script before anything is written.
    import tyro

    with pytest.raises(SystemExit) as exit_info:
        cql.check_args(tyro.cli(cql.Args, args=flags))
    assert message in str(exit_info.value.code)


def test_any_finite_target_gap_is_accepted():
    import tyro

    for gap in ("0.8", "0", "-3"):  # CORL's AntMaze target is 0.8, below log(3N)
        cql.check_args(tyro.cli(cql.Args, args=["--cql-lagrange", "--cql-target-action-gap", gap]))


@pytest.mark.parametrize("flags, message", [
    (["--cql-lagrange", "--cql-alpha", "0", "--tau", "2"],
     "--tau must be in (0, 1] (got 2.0)\n       --cql-lagrange needs a positive starting --cql-alpha"),
    (["--dataset-id", "nonsense"], "is not a Minari dataset id"),
    (["--cql-n-actions", "abc"], "cql-n-actions"),
    (["--online-steps", "-5"], "--online-steps must be non-negative (got -5)"),
])
def test_bad_input_stops_the_script_and_writes_nothing(flags, message, pendulum_expert, run_dir):
    out = run_script("cql.py", "--dataset-id", pendulum_expert, "--no-cuda", *flags, cwd=run_dir)
    assert out.returncode != 0
    assert message in out.stderr + out.stdout
    assert not (run_dir / "runs").exists()


def test_discrete_dataset_is_refused(discrete_dataset, run_dir):
    out = run_script("cql.py", "--dataset-id", discrete_dataset, "--no-cuda", cwd=run_dir)
    assert out.returncode != 0
    assert "continuous Box action space" in out.stderr
    assert not (run_dir / "runs").exists()
