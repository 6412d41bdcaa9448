"""iql.py: the loss terms on hand values, V learning the expectile, end to end, learning, bad input."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import iql
from common.datasets import load_dataset
from testdata import read_summary, run_script


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
    return iql.IQL(obs_dim, act_dim, args, -2.0 * torch.ones(act_dim), 2.0 * torch.ones(act_dim))


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


def test_expectile_loss_matches_the_formula_on_hand_values():
    u = torch.tensor([-2.0, -0.5, 0.0, 1.0, 3.0])
    # |0.7 - 1(u<0)| u^2 = 0.3*4, 0.3*0.25, 0.7*0, 0.7*1, 0.7*9; mean of the five
    assert iql.expectile_loss(u, 0.7).item() == pytest.approx((1.2 + 0.075 + 0.0 + 0.7 + 6.3) / 5)
    # Asymmetric: with tau = 0.9 an error of +1 (Q above V) costs 9 times one of -1.
    assert iql.expectile_loss(torch.tensor([1.0]), 0.9).item() == pytest.approx(0.9)
    assert iql.expectile_loss(torch.tensor([-1.0]), 0.9).item() == pytest.approx(0.1)
    assert iql.expectile_loss(torch.tensor([-1.0]), 0.1).item() == pytest.approx(0.9)
    # tau = 0.5 is half the squared error: plain mean regression.
    u = torch.randn(100)
    torch.testing.assert_close(iql.expectile_loss(u, 0.5), 0.5 * (u**2).mean())


class FixedQ(nn.Module):
    """A stand-in target critic: Q(s, a) = a[0] (and a larger second head, so the min matters)."""

    def forward(self, obs, actions):
        return actions[:, 0], actions[:, 0] + 1.0


@pytest.mark.parametrize("tau", [0.9, 0.7, 0.5])
def test_v_learns_the_expectile_of_q_over_dataset_actions(tau):
    # Three states (one-hot); in each, Q(s, a) over the dataset's actions has a different distribution.
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n = 300
    qs = [rng.exponential(1.0, n), rng.uniform(-1.0, 1.0, n), np.where(rng.random(n) < 0.2, 5.0, 0.0)]
    obs = torch.eye(3).repeat_interleave(n, dim=0)
    actions = torch.tensor(np.concatenate(qs), dtype=torch.float32)[:, None]
    model = make_iql(obs_dim=3, act_dim=1, expectile=tau, hidden_dim=32)
    model.qf_target = FixedQ()
    opt = torch.optim.Adam(model.vf.parameters(), lr=3e-3)
    zeros = torch.zeros(3 * n)
    for _ in range(600):  # the total loss's gradient w.r.t. V's parameters is that of L_V alone
        loss, _ = model.losses(obs, actions, zeros, obs, zeros)
        opt.zero_grad()
        loss.backward()
        opt.step()
    v = model.vf(torch.eye(3)).detach().numpy()
    for s in range(3):
        expected = numerical_expectile(qs[s], tau)
        swapped = numerical_expectile(qs[s], 1 - tau)
        assert v[s] == pytest.approx(expected, abs=0.03), (s, v[s], expected)
        if tau != 0.5:  # a swapped tau or a flipped sign lands on the (1 - tau)-expectile, far away
            assert abs(expected - swapped) > 0.3
    if tau == 0.5:
        np.testing.assert_allclose(v, [q.mean() for q in qs], atol=0.03)


def test_td_target_bootstraps_from_v_next_and_stops_only_at_terminations():
    r, next_v = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0, 30.0])
    terminals = torch.tensor([0.0, 1.0, 0.0])
    torch.testing.assert_close(iql.td_target(r, terminals, next_v, 0.9), torch.tensor([10.0, 2.0, 30.0]))


def test_q_loss_uses_v_of_next_obs_and_the_terminal_mask(pendulum_expert):
    torch.manual_seed(0)
    data = load_dataset(pendulum_expert, "cpu", verbose=False)
    # The last transition of every episode is a truncation (time limit), never a termination.
    last = data.episode_starts + data.episode_lengths - 1
    assert data.truncations[last].eq(1).all() and data.terminals.eq(0).all()
    model = make_iql(discount=0.9)
    idx = torch.cat([last[:4], last[:4] - 7])
    s, a, r = data.normalize_obs(data.observations[idx]), data.actions[idx], data.rewards[idx]
    s2 = data.normalize_obs(data.next_observations[idx])
    terminals = torch.tensor([1.0, 0.0] * 4)  # pretend half of them terminated
    _, metrics = model.losses(s, a, r, s2, terminals)
    with torch.no_grad():
        q1, q2 = model.qf(s, a)
        y = r + 0.9 * (1 - terminals) * model.vf(s2)  # V(s'), masked where done = 1
        y_wrong = r + 0.9 * (1 - terminals) * model.vf(s)
    expected = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
    torch.testing.assert_close(metrics["losses/q_loss"], expected)
    assert not torch.allclose(expected, ((q1 - y_wrong) ** 2).mean() + ((q2 - y_wrong) ** 2).mean())


def test_awr_weights_are_clipped_at_max_weight():
    adv = torch.tensor([-1.0, 0.0, 1.0, 2.0, 100.0])
    w = iql.awr_weights(adv, 3.0, 100.0)
    torch.testing.assert_close(w, torch.tensor([math.exp(-3), 1.0, math.exp(3), 100.0, 100.0]))
    # Through the loss: advantages far above log(100)/beta give weight 100 and a clipped fraction of 1.
    model = make_iql(obs_dim=3, act_dim=1)
    model.qf_target = FixedQ()
    obs, actions = torch.zeros(8, 3), torch.full((8, 1), 1.9)
    with torch.no_grad():
        model.vf.net[-1].bias.fill_(-1000.0)
    _, m = model.losses(obs, actions, torch.zeros(8), obs, torch.zeros(8))
    assert m["values/awr_weight_max"].item() == 100.0 and m["values/awr_weight_mean"].item() == 100.0
    assert m["values/awr_weight_clipped_frac"].item() == 1.0
    expected = -(100.0 * model.actor.log_prob(obs, actions)).mean()
    torch.testing.assert_close(m["losses/actor_loss"], expected)


def test_awr_moves_the_policy_towards_actions_with_higher_advantage():
    # One state, dataset actions uniform on [-2, 2], Q(s, a) = a. BC would learn the mean action 0;
    # AWR weights each action by exp(beta (a - V)), a weighted mean near 2 - 1/beta = 1.67.
    torch.manual_seed(0)
    model = make_iql(obs_dim=3, act_dim=1, hidden_dim=32)
    model.qf_target = FixedQ()
    obs, actions = torch.zeros(256, 3), torch.linspace(-2, 2, 256)[:, None]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    zeros = torch.zeros(256)
    for _ in range(250):
        loss, _ = model.losses(obs, actions, zeros, obs, zeros)
        opt.zero_grad()
        loss.backward()
        opt.step()
    mean = model.actor(obs[:1]).item()
    assert 1.4 < mean < 1.9, mean


def test_gaussian_log_prob_matches_torch_normal():
    torch.manual_seed(0)
    actor = iql.Actor(3, 2, 16, -torch.ones(2), 3 * torch.ones(2))
    with torch.no_grad():
        actor.log_std.copy_(torch.tensor([-0.5, 0.3]))
    obs, actions = torch.randn(5, 3), torch.rand(5, 2) * 4 - 1
    mean = actor(obs)
    assert (mean >= -1).all() and (mean <= 3).all()  # tanh-bounded to the action box
    expected = torch.distributions.Normal(mean, actor.log_std.exp()).log_prob(actions).sum(-1)
    torch.testing.assert_close(actor.log_prob(obs, actions), expected)


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
    data = load_dataset(pendulum_expert, "cpu", verbose=False)
    spread = float(data.episode_returns.max() - data.episode_returns.min())
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


def test_iql_beats_bc_on_mixed_data(pendulum_mixed, run_dir):
    # Half the episodes are uniform-random, half a noisy controller. BC clones the mixture (bc.py on
    # this data: 34 final, 46 best over 10k steps); IQL's advantage weights must pick out the
    # controller's actions (measured: 75-91 after 3k steps with --expectile 0.5, 0.7, 0.9).
    out = run_script("iql.py", "--dataset-id", pendulum_mixed, "--total-steps", 3000, "--eval-freq", 3000,
                     "--eval-episodes", 10, "--no-cuda", cwd=run_dir)
    assert out.returncode == 0, out.stderr
    _, summary = read_summary(run_dir)
    assert summary["final_normalized_score"] > 55, summary


@pytest.mark.parametrize("flags, message", [
    (["--expectile", "1.0"], "--expectile must be in (0, 1) (got 1.0)"),
    (["--expectile", "0"], "--expectile must be in (0, 1) (got 0.0)"),
    (["--beta", "-1"], "--beta must be non-negative (got -1.0)"),
    (["--max-weight", "0"], "--max-weight must be positive (got 0.0)"),
    (["--tau", "0"], "--tau must be in (0, 1] (got 0.0)"),
    (["--discount", "1.5"], "--discount must be in [0, 1] (got 1.5)"),
    (["--batch-size", "0"], "--batch-size must be positive (got 0)"),
    (["--reward-scale", "mujoco"], "reward-scale"),
    (["--dataset-id", "nonsense"], "is not a Minari dataset id"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(flags, message, pendulum_expert, run_dir):
    out = run_script("iql.py", "--dataset-id", pendulum_expert, "--no-cuda", *flags, cwd=run_dir)
    assert out.returncode != 0
    assert message in out.stderr + out.stdout
    assert not (run_dir / "runs").exists()
