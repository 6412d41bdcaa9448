"""cql.py: the penalty against brute force, the Monte-Carlo returns, the Lagrangian, conservatism
against offline SAC on real (tiny) data, end to end with checkpoint reload, bad input."""

import math
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import cql
from common.datasets import load_dataset
from testdata import REPO, read_summary, run_script

SMALL = ["--hidden-dim", 32, "--critic-layers", 2, "--actor-layers", 2, "--cql-n-actions", 3]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Script runs use one thread: on tiny networks a second one only adds waiting, and on a shared CPU
    two threads per process can wait on each other for seconds at every step."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def small_agent(**kw):
    args = cql.Args(hidden_dim=16, critic_layers=2, actor_layers=2, cql_n_actions=3, **kw)
    return cql.CQL(3, 2, args, -2 * torch.ones(2), 2 * torch.ones(2), "cpu")


def test_logsumexp_matches_a_plain_loop():
    torch.manual_seed(0)
    q_rand, q_curr, q_next = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    lp_curr, lp_next = torch.randn(4, 3), torch.randn(4, 3)
    got = cql.cql_logsumexp(q_rand, q_curr, q_next, lp_curr, lp_next, act_dim=2)
    for b in range(4):
        total = 0.0
        for i in range(3):
            total += math.exp(q_rand[b, i]) / 0.25  # uniform density on [-1, 1]^2 is 1/4
            total += math.exp(q_curr[b, i]) / math.exp(lp_curr[b, i])
            total += math.exp(q_next[b, i]) / math.exp(lp_next[b, i])
        assert got[b].item() == pytest.approx(math.log(total / 9), abs=1e-5)


def test_logsumexp_estimate_converges_to_the_integral():
    # With many samples, the importance-sampled estimate approaches log of the integral of exp Q over
    # [-1, 1]: this fails if the policy's log-density (tanh correction included) is wrong.
    torch.manual_seed(0)
    actor = cql.Actor(1, 1, 16, 2, -torch.ones(1), torch.ones(1))
    with torch.no_grad():
        actor.mean.bias.fill_(0.8)  # a policy far from uniform: the weights matter
        actor.log_std.bias.fill_(-0.5)
        obs, n = torch.zeros(1, 1), 200_000
        a_curr, lp_curr = actor.sample(obs, n)
        a_next, lp_next = actor.sample(obs, n)
        a_rand = torch.rand(1, n, 1) * 2 - 1

    def q(a):
        return (3 * a - 4 * a**2).squeeze(-1).double()

    est = cql.cql_logsumexp(q(a_rand), q(a_curr), q(a_next), lp_curr.double(), lp_next.double(), 1)
    grid = np.linspace(-1, 1, 200_001)
    exact = math.log(np.trapezoid(np.exp(3 * grid - 4 * grid**2), grid))
    assert est.item() == pytest.approx(exact, abs=0.02)


def test_cql_penalty_and_td_loss_match_brute_force():
    """Known Q function, the agent's own samples (same RNG stream): the batched loss equals a loop."""
    agent = small_agent(gamma=0.9)

    class KnownQ(torch.nn.Module):  # Q_1 = s.w1 + a.v1 - |a|^2, Q_2 = 0.5 Q_1 + 1
        def forward(self, obs, act):
            q1 = obs @ torch.tensor([0.3, -0.2, 0.1]) + act @ torch.tensor([0.5, -1.0]) - (act**2).sum(-1)
            return torch.stack([q1, 0.5 * q1 + 1.0])

    agent.critic = agent.critic_target = KnownQ()
    B, N = 5, 3
    g = torch.Generator().manual_seed(1)
    obs, next_obs = torch.randn(B, 3, generator=g), torch.randn(B, 3, generator=g)
    act, rew, done = torch.rand(B, 2, generator=g) * 2 - 1, torch.randn(B, generator=g), torch.tensor([0., 1., 0., 0., 1.])

    torch.manual_seed(7)
    loss, gap = agent.critic_loss(obs, act, rew, next_obs, done)
    torch.manual_seed(7)  # replay the same draws, in the same order as critic_loss
    with torch.no_grad():
        next_a, _ = agent.actor.sample(next_obs)
        rand_a = torch.rand(B, N, 2) * 2 - 1
        curr_a, curr_lp = agent.actor.sample(obs, N)
        nxt_a, nxt_lp = agent.actor.sample(next_obs, N)

    def Q(i, s, a):
        return KnownQ()(s[None], a[None])[i, 0].item()

    td, gaps = 0.0, [0.0, 0.0]
    for i in range(2):
        for b in range(B):
            y = rew[b].item() + 0.9 * (1 - done[b].item()) * min(Q(0, next_obs[b], next_a[b]), Q(1, next_obs[b], next_a[b]))
            td += (Q(i, obs[b], act[b]) - y) ** 2 / B
            terms = []
            for k in range(N):
                terms.append(Q(i, obs[b], rand_a[b, k]) - math.log(0.25))
                terms.append(Q(i, obs[b], curr_a[b, k]) - curr_lp[b, k].item())
                terms.append(Q(i, obs[b], nxt_a[b, k]) - nxt_lp[b, k].item())  # pi(s') actions, evaluated at s
            lse = math.log(sum(math.exp(t) for t in terms) / len(terms))
            gaps[i] += (lse - Q(i, obs[b], act[b])) / B
    torch.testing.assert_close(gap, torch.tensor(gaps), atol=1e-4, rtol=1e-4)
    assert loss.item() == pytest.approx(td + 5.0 * sum(gaps), rel=1e-4)


def test_alpha_zero_is_plain_sac():
    agent = small_agent(cql_alpha=0.0)
    assert not agent.use_cql
    obs, act, rew = torch.randn(6, 3), torch.rand(6, 2) * 2 - 1, torch.randn(6)
    torch.manual_seed(3)
    loss, _ = agent.critic_loss(obs, act, rew, obs, torch.zeros(6))
    torch.manual_seed(3)
    with torch.no_grad():
        y = rew + 0.99 * agent.critic_target(obs, agent.actor.sample(obs)[0]).min(0).values
    assert loss.item() == pytest.approx(((agent.critic(obs, act) - y) ** 2).mean(1).sum().item(), rel=1e-5)


@pytest.mark.parametrize("gap, direction", [(9.0, 1), (1.0, -1)])
def test_lagrangian_moves_alpha_toward_the_target_gap(gap, direction):
    agent = small_agent(cql_lagrange=True, cql_alpha=2.0, cql_target_action_gap=5.0)
    before = agent.cql_alpha().item()
    for _ in range(3):
        loss = agent.cql_alpha_loss(torch.tensor([gap, gap]))
        agent.cql_alpha_optimizer.zero_grad()
        loss.backward()
        agent.cql_alpha_optimizer.step()
    after = agent.cql_alpha().item()
    assert before == pytest.approx(2.0)
    assert (after - before) * direction > 0, (before, after)


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


def test_conservative_q_stays_below_the_data_return_and_offline_sac_does_not(pendulum_expert, tmp_path):
    """Theorem 3.2 made visible on narrow data (a controller with little action noise): offline SAC's Q on
    the dataset's actions runs above the data's Monte-Carlo return (here even above 0, the largest value
    any policy can reach, since Pendulum's rewards are <= 0); CQL's stays at or below it."""
    flags = ["--dataset-id", pendulum_expert, "--no-cuda", "--total-steps", 3000, "--eval-freq", 3000,
             "--eval-episodes", 1, "--batch-size", 64, "--policy-lr", 1e-3, "--q-lr", 1e-3, "--tau", 0.02,
             "--hidden-dim", 64, "--critic-layers", 2, "--actor-layers", 2, "--cql-n-actions", 4, "--save-model"]
    env = dict(os.environ, OMP_NUM_THREADS="1")  # the two runs side by side, one thread each
    procs = {}
    for alpha in (0.0, 10.0):
        cwd = tmp_path / str(alpha)
        cwd.mkdir()
        procs[alpha] = (cwd, subprocess.Popen([sys.executable, str(REPO / "cql.py"), *map(str, flags),
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
    assert q_sac > mc + 5 and q_sac > q_cql + 5, result
    assert q_cql <= mc, result


def test_end_to_end_lagrange_checkpoint_reloads_with_same_actions(pendulum_mixed, run_dir):
    out = run_script("cql.py", "--dataset-id", pendulum_mixed, "--total-steps", 300, "--eval-freq", 150,
                     "--eval-episodes", 2, "--save-model", "--no-cuda", "--cql-lagrange", "--batch-size", 64,
                     *SMALL, cwd=run_dir)
    assert out.returncode == 0, out.stderr
    run, summary = read_summary(run_dir)
    assert summary["steps"] == 300 and len(summary["eval_history"]) == 2
    assert math.isfinite(summary["final_normalized_score"]) and summary["sps"] > 0
    for key in ("critic_loss", "actor_loss", "alpha_loss", "q_data", "q_random", "q_policy", "mc_return",
                "cql_gap", "alpha", "entropy_temperature"):
        assert math.isfinite(summary["final_values"][key]), key
    assert summary["final_values"]["alpha"] != 5.0  # the dual steps moved it
    assert list(run.glob("events.out.tfevents.*"))
    assert "step 300/300" in out.stdout

    ckpt = torch.load(run / "cql.pt", weights_only=True)
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


@pytest.mark.parametrize("flags, message", [
    (["--cql-alpha", "-1"], "--cql-alpha must be >= 0 (got -1.0)"),
    (["--cql-alpha", "nan"], "--cql-alpha must be >= 0 (got nan)"),
    (["--cql-lagrange", "--cql-alpha", "0"], "--cql-lagrange needs a positive starting --cql-alpha"),
    (["--cql-target-action-gap", "0"], "--cql-target-action-gap must be positive (got 0.0)"),
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


@pytest.mark.parametrize("flags, message", [
    (["--cql-lagrange", "--cql-alpha", "0", "--tau", "2"],
     "--tau must be in (0, 1] (got 2.0)\n       --cql-lagrange needs a positive starting --cql-alpha"),
    (["--dataset-id", "nonsense"], "is not a Minari dataset id"),
    (["--cql-n-actions", "abc"], "cql-n-actions"),
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
