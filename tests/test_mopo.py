"""mopo.py: the Gaussian NLL and the penalty against values worked out by hand; the batched ensemble
against a loop over its members; the model's training (a tiny known linear system recovered, snapshots,
early stopping, elites, divergence); the termination rules read from the envs; rollouts through a
stand-in model that steps the real env, which must reproduce the env's own transitions and terminations;
the model buffer; end to end with checkpoint reload; a short learning check; bad input."""

import math
import os

import gymnasium as gym
import numpy as np
import pytest
import torch

import mopo
from common.datasets import load_dataset
from testdata import read_summary, rollout_pendulum, run_script, write_dataset

# small networks and a short model phase for the script runs
SMALL = ["--hidden-dim", 32, "--model-hidden-dim", 32, "--model-layers", 2, "--ensemble-size", 3, "--num-elites", 2,
         "--model-max-epochs", 3, "--rollout-batch-size", 200, "--rollout-freq", 100]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


# ---------------------------------------------------------------- the exercises, one function at a time

@pytest.mark.exercise("mopo.gaussian_nll")
def test_gaussian_nll_by_hand():
    # one member, one row, two dimensions: y = (1, 0), mu = (0, 0), log sigma^2 = (0, log 4)
    # dim 1: (1 + 0 + log 2 pi) / 2; dim 2: (0 + log 4 + log 2 pi) / 2; the mean of the two
    got = mopo.gaussian_nll(torch.zeros(1, 1, 2), torch.tensor([[[0.0, math.log(4.0)]]]), torch.tensor([[1.0, 0.0]]))
    expected = ((1 + math.log(2 * math.pi)) / 2 + (math.log(4) + math.log(2 * math.pi)) / 2) / 2
    assert got.shape == (1,), f"expected one loss per member, shape (1,), got {tuple(got.shape)}"
    assert got.item() == pytest.approx(expected, abs=1e-6), f"NLL: expected {expected:.6f}, got {got.item():.6f}"


@pytest.mark.exercise("mopo.gaussian_nll")
def test_gaussian_nll_matches_the_normal_density_per_member():
    # three members, each its own mean and variance, the same targets for all: torch's Normal says what
    # -log N is; the loss of member i is its mean over rows and dimensions
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(3, 4, 2, generator=g), torch.randn(3, 4, 2, generator=g)
    target = torch.randn(4, 2, generator=g)
    got = mopo.gaussian_nll(mean, logvar, target)
    expected = -torch.distributions.Normal(mean, (0.5 * logvar).exp()).log_prob(target).mean(dim=(1, 2))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # member-specific targets (N, B, D), as in training on bootstrap rows
    target3 = torch.randn(3, 4, 2, generator=g)
    expected3 = -torch.distributions.Normal(mean, (0.5 * logvar).exp()).log_prob(target3).mean(dim=(1, 2))
    torch.testing.assert_close(mopo.gaussian_nll(mean, logvar, target3), expected3, atol=1e-5, rtol=1e-5)


@pytest.mark.exercise("mopo.penalized_reward")
def test_penalty_by_hand():
    # 3 members, 2 rows, 2 outputs. Row 0: the norms are 5, 1, 0.5 -> u = 5; row 1: 0, 13, 2 -> u = 13
    std = torch.tensor([[[3.0, 4.0], [0.0, 0.0]],
                        [[1.0, 0.0], [5.0, 12.0]],
                        [[0.3, 0.4], [1.2, 1.6]]])
    reward = torch.tensor([1.0, -2.0])
    r_tilde, u = mopo.penalized_reward(reward, std, 0.5)
    assert u.tolist() == pytest.approx([5.0, 13.0]), (
        f"u = max over members of the norm of sigma: expected [5, 13], got {u.tolist()}")
    assert r_tilde.tolist() == pytest.approx([1.0 - 2.5, -2.0 - 6.5]), (
        f"r~ = r - lambda u with lambda 0.5: expected [-1.5, -8.5], got {r_tilde.tolist()}")
    # lambda = 0 leaves the model's reward as it is
    assert mopo.penalized_reward(reward, std, 0.0)[0].tolist() == pytest.approx(reward.tolist())


# ---------------------------------------------------------------- the ensemble and its training

def test_batched_ensemble_equals_a_loop_over_its_members():
    """One baddbmm per layer must compute each member's own MLP, on shared rows and on per-member rows."""
    torch.manual_seed(0)
    model = mopo.EnsembleDynamics(3, 2, hidden_dim=8, layers=3, ensemble_size=4, num_elites=2)
    with torch.no_grad():
        model.input_mean.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0, 0.5]))
        model.input_std.copy_(torch.tensor([1.0, 2.0, 0.5, 1.5, 1.0]))
        model.max_logvar.fill_(0.3)
        model.min_logvar.fill_(-4.0)
    obs, act = torch.randn(6, 3), torch.randn(6, 2)

    def member(i, o, a):
        x = (torch.cat([o, a], -1) - model.input_mean) / model.input_std
        for layer, (w, b) in enumerate(zip(model.weights, model.biases)):
            x = x @ w[i] + b[i, 0]
            if layer < len(model.weights) - 1:
                x = x * torch.sigmoid(x)
        mean, logvar = x[:, :4], x[:, 4:]
        hi, lo = model.max_logvar, model.min_logvar
        logvar = hi - torch.nn.functional.softplus(hi - logvar)
        return mean, lo + torch.nn.functional.softplus(logvar - lo)

    mean, logvar = model(obs, act)
    assert mean.shape == logvar.shape == (4, 6, 4)
    for i in range(4):
        m, lv = member(i, obs, act)
        torch.testing.assert_close(mean[i], m)
        torch.testing.assert_close(logvar[i], lv)
    assert (logvar < 0.3).all() and (logvar > -4.0).all(), "the log-variance must stay inside its learned bounds"
    # member i on its own rows
    obs3, act3 = torch.randn(4, 5, 3), torch.randn(4, 5, 2)
    mean3, _ = model(obs3, act3)
    for i in range(4):
        torch.testing.assert_close(mean3[i], member(i, obs3[i], act3[i])[0])


def linear_system(n, seed, noise=0.05):
    """s' = A s + B a + noise, r = c.s + d a + noise: a tiny known system."""
    g = torch.Generator().manual_seed(seed)
    A, B = torch.tensor([[0.9, 0.2], [-0.1, 0.8]]), torch.tensor([[0.5], [-0.3]])
    c, d = torch.tensor([1.0, -0.5]), -0.5
    obs, act = torch.randn(n, 2, generator=g), torch.rand(n, 1, generator=g) * 2 - 1
    next_obs = obs @ A.T + act @ B.T + noise * torch.randn(n, 2, generator=g)
    rew = obs @ c + d * act[:, 0] + noise * torch.randn(n, generator=g)
    truth = lambda o, a: torch.cat([o @ A.T + a @ B.T - o, (o @ c + d * a[:, 0])[:, None]], -1)  # noqa: E731
    return obs, act, rew, next_obs, truth


def test_the_model_recovers_a_known_linear_system():
    torch.manual_seed(0)
    obs, act, rew, next_obs, truth = linear_system(2000, seed=1, noise=0.05)
    model = mopo.EnsembleDynamics(2, 1, hidden_dim=32, layers=2, ensemble_size=3, num_elites=2)
    result = mopo.train_model(model, obs, act, rew, next_obs, lr=3e-3, batch_size=64, max_epochs=40)
    g = torch.Generator().manual_seed(2)
    o, a = torch.randn(500, 2, generator=g) * 0.8, torch.rand(500, 1, generator=g) * 2 - 1
    with torch.no_grad():
        mean, logvar = model(o, a)
    error = (mean[model.elites] - truth(o, a)).abs().mean().item()
    sigma = (0.5 * logvar[model.elites]).exp().mean().item()
    assert error < 0.02, f"the elites' mean (s' - s, r) should match the linear system within 0.02, off by {error:.4f}"
    assert 0.035 < sigma < 0.075, f"the predicted sigma should be near the noise's 0.05, got {sigma:.4f}"
    assert result["holdout_mse"] < 0.0035, f"held-out MSE should be near the noise variance 0.0025: {result}"
    assert result["holdout_nll"] < -1.2, f"held-out NLL should be near that of N(0, 0.05^2), -1.58: {result}"


def test_training_keeps_each_members_best_snapshot_stops_early_and_ranks_the_elites():
    torch.manual_seed(0)
    obs, act, rew, next_obs, _ = linear_system(600, seed=3, noise=0.3)
    model = mopo.EnsembleDynamics(2, 1, hidden_dim=64, layers=2, ensemble_size=4, num_elites=2)
    history = []
    result = mopo.train_model(model, obs, act, rew, next_obs, lr=1e-2, batch_size=32, patience=2, max_epochs=200,
                              on_epoch=lambda e, m: history.append(m))
    per_epoch = torch.tensor([m["holdout_mse_per_member"] for m in history])  # (epochs, members)
    # replay MOPO's rule: a member's snapshot is replaced when its held-out MSE improves by more than 1%
    best = torch.full((4,), math.inf)
    last_update = 0
    for epoch, mse in enumerate(per_epoch, start=1):
        improved = mse < 0.99 * best
        best = torch.where(improved, mse, best)
        if improved.any():
            last_update = epoch
    assert result["stopped_early"] and result["epochs"] == last_update + 3, (
        f"patience 2: training should stop 3 epochs after the last improvement ({last_update}), "
        f"stopped at {result['epochs']}")
    assert result["holdout_mse_per_member"] == pytest.approx(best.tolist(), rel=1e-5), (
        f"each member must be restored to its best snapshot: held-out MSE {result['holdout_mse_per_member']}, "
        f"best seen {best.tolist()}")
    assert sorted(torch.argsort(best)[:2].tolist()) == result["elites"] == sorted(model.elites.tolist())


def test_a_diverging_model_is_a_clear_error():
    torch.manual_seed(0)
    obs, act, rew, next_obs, _ = linear_system(300, seed=4)
    rew[::10] = float("nan")  # in every member's bootstrap rows
    model = mopo.EnsembleDynamics(2, 1, hidden_dim=8, layers=2, ensemble_size=2, num_elites=1)
    with pytest.raises(mopo.ModelDivergedError, match="diverged: its NLL is not finite at epoch 1"):
        mopo.train_model(model, obs, act, rew, next_obs, max_epochs=5)


# ---------------------------------------------------------------- terminations and rollouts

class EnvStandIn(torch.nn.Module):
    """A "model" that is exactly the env: for each row it finds the recorded env state whose observation
    it is, steps a copy of the env from there, and predicts (s' - s, r) with a vanishing variance."""

    def __init__(self, env_id, states, observations, ensemble_size=3):
        super().__init__()
        self.env = gym.make(env_id).unwrapped
        self.env.reset(seed=0)
        self.states, self.observations = states, observations
        self.ensemble_size = ensemble_size
        self.register_buffer("elites", torch.tensor([0, 2]))

    def forward(self, obs, act):
        out = []
        for o, a in zip(obs.double(), act.double()):
            distance, i = (self.observations - o).abs().max(dim=1).values.min(dim=0)
            assert distance < 1e-3, f"the rollout left the recorded states (distance {distance:.2e})"
            set_state(self.env, self.states[i])
            next_o, r, *_ = self.env.step(a.numpy().astype(np.float32))
            out.append(np.concatenate([next_o - o.numpy(), [r]]))
        mean = torch.tensor(np.array(out), dtype=torch.float32).expand(self.ensemble_size, -1, -1)
        return mean, torch.full_like(mean, -60.0)  # sigma = e^-30


def get_state(env):
    return env.state.copy() if hasattr(env, "state") and not hasattr(env, "data") else (
        env.data.qpos.copy(), env.data.qvel.copy())


def set_state(env, state):
    if isinstance(state, tuple):
        env.set_state(*state)
    else:
        env.state = state.copy()


def linear_policy(env, seed):
    g = torch.Generator().manual_seed(seed)
    W = 0.5 * torch.randn(env.observation_space.shape[0], env.action_space.shape[0], generator=g, dtype=torch.float64)
    high = torch.as_tensor(env.action_space.high)
    return lambda obs: (torch.tanh(obs.double() @ W) * high).float()


def record(env_id, policy, episodes, cap):
    """Episodes of `policy` in the env: states, observations, actions, rewards, terminated flags."""
    env = gym.make(env_id)
    runs = []
    for e in range(episodes):
        obs, _ = env.reset(seed=e)
        run = {"state": [], "obs": [obs], "act": [], "rew": [], "term": []}
        for _ in range(cap):
            run["state"].append(get_state(env.unwrapped))
            a = policy(torch.as_tensor(obs, dtype=torch.float32)[None])[0]
            obs, r, term, trunc, _ = env.step(a.numpy())
            for k, v in (("obs", obs), ("act", a.numpy()), ("rew", r), ("term", term)):
                run[k].append(v)
            if term or trunc:
                break
        runs.append(run)
    env.close()
    return runs


@pytest.mark.parametrize("env_id, cap", [("Pendulum-v1", 30), ("Hopper-v5", 60), ("Walker2d-v5", 60),
                                         ("HalfCheetah-v5", 30)])
def test_rollouts_through_a_stand_in_model_reproduce_the_envs_transitions(env_id, cap):
    """Rollouts of h = 5 from every recorded state, through a model that steps the env itself, must give
    the env's own next observations, rewards and terminations, branch by branch, each ending where the
    env's episode terminated. The env's termination is what the rule is checked against."""
    env = gym.make(env_id)
    policy = linear_policy(env, seed=0)
    is_terminal = mopo.termination_fn(env)
    runs = record(env_id, policy, episodes=3, cap=cap)
    states = [s for run in runs for s in run["state"]]
    observations = torch.tensor(np.array([o for run in runs for o in run["obs"][:-1]]), dtype=torch.float64)
    stand_in = EnvStandIn(env_id, states, observations)
    h, expected, starts = 5, {k: [[] for _ in range(5)] for k in ("obs", "next_obs", "rew", "term")}, []
    for run in runs:
        T, terminated = len(run["act"]), run["term"][-1]
        for t in range(T if terminated else T - h + 1):  # a branch needs h recorded steps or an env termination
            starts.append(run["obs"][t])
            for k in range(h):
                if t + k >= T:
                    break
                for key, value in (("obs", run["obs"][t + k]), ("next_obs", run["obs"][t + k + 1]),
                                   ("rew", run["rew"][t + k]), ("term", run["term"][t + k])):
                    expected[key][k].append(value)
                if run["term"][t + k]:
                    break
    if env_id in ("Hopper-v5", "Walker2d-v5"):
        assert all(run["term"][-1] for run in runs), "test data: every episode should end in a termination"
    out = mopo.rollout(stand_in, policy, torch.tensor(np.array(starts), dtype=torch.float32), h, is_terminal, 1.0)
    n = [len(expected["obs"][k]) for k in range(h)]
    assert out["obs"].shape[0] == sum(n), (
        f"{env_id}: the branches should carry {sum(n)} transitions ({n} per step, terminated ones dropped), "
        f"got {out['obs'].shape[0]}")
    flat = {k: np.array([x for step in v for x in step], dtype=np.float64) for k, v in expected.items()}
    np.testing.assert_allclose(out["obs"].numpy(), flat["obs"], atol=1e-3)
    np.testing.assert_allclose(out["next_obs"].numpy(), flat["next_obs"], atol=1e-3)
    np.testing.assert_allclose(out["model_reward"].numpy(), flat["rew"], atol=1e-3, rtol=1e-4)
    np.testing.assert_allclose(out["reward"].numpy(), flat["rew"], atol=1e-3, rtol=1e-4)  # sigma ~ 0: u ~ 0
    assert out["done"].tolist() == flat["term"].astype(bool).tolist(), (
        f"{env_id}: terminations of the rollout ({int(out['done'].sum())}) differ from the env's "
        f"({int(flat['term'].sum())})")
    assert out["mean_length"] == pytest.approx(sum(n) / len(starts))


def test_true_dynamics_are_pendulums_own_steps():
    """--true-dynamics' stand-in must give the env's next observation and reward for every (s, a): recorded
    steps of a policy, plus states at the speed limit and torques beyond the env's bound (both clipped)."""
    env_id = "Pendulum-v1"
    env = gym.make(env_id, g=9.0)  # a non-default g: the constants must come from the env
    runs = record_in(env, linear_policy(env, seed=1), episodes=3, cap=40)
    obs = [o for run in runs for o in run["obs"][:-1]]
    act = [a for run in runs for a in run["act"]]
    nxt = [o for run in runs for o in run["obs"][1:]]
    rew = [r for run in runs for r in run["rew"]]
    u = env.unwrapped
    for th, th_dot, a in ((0.3, 7.9, 2.0), (-2.5, -7.95, -5.0), (3.1, 0.0, 3.0)):
        u.state = np.array([th, th_dot])
        o = np.array([np.cos(th), np.sin(th), th_dot], dtype=np.float32)
        o2, r, *_ = u.step(np.array([a], dtype=np.float32))
        obs.append(o), act.append(np.array([a], dtype=np.float32)), nxt.append(o2), rew.append(r)
    model = mopo.PendulumDynamics(env, ensemble_size=4)
    mean, logvar = model(torch.tensor(np.array(obs)), torch.tensor(np.array(act)))
    assert mean.shape == (4, len(obs), 4) and bool((logvar < -50).all())
    for i in range(4):  # every member is the env
        np.testing.assert_allclose((torch.tensor(np.array(obs)) + mean[i, :, :3]).numpy(), np.array(nxt), atol=1e-5)
        np.testing.assert_allclose(mean[i, :, 3].numpy(), np.array(rew), atol=1e-4, rtol=1e-5)
    out = mopo.rollout(model, linear_policy(env, seed=1), torch.tensor(np.array(obs[:5])), 3,
                       mopo.never_terminates(env), penalty_coef=5.0)
    assert float(out["penalty"].abs().max()) < 1e-6, "the true dynamics carry no uncertainty: u = 0"


def record_in(env, policy, episodes, cap):
    """record(), in an env made by the caller (with its own constants)."""
    runs = []
    for e in range(episodes):
        obs, _ = env.reset(seed=e)
        run = {"obs": [obs], "act": [], "rew": []}
        for _ in range(cap):
            a = policy(torch.as_tensor(obs, dtype=torch.float32)[None])[0].numpy()
            obs, r, *_ = env.step(a)
            run["obs"].append(obs), run["act"].append(a), run["rew"].append(r)
        runs.append(run)
    return runs


class KnownEnsemble(torch.nn.Module):
    """Member i predicts s' - s = i, r = 10 i, with sigma_i = 0.001 (i + 1) on every output."""

    def __init__(self, elites):
        super().__init__()
        self.ensemble_size = 4
        self.register_buffer("elites", torch.tensor(elites))

    def forward(self, obs, act):
        i = torch.arange(4.0).view(4, 1, 1)
        mean = torch.cat([i.expand(4, obs.shape[0], obs.shape[1]), 10 * i.expand(4, obs.shape[0], 1)], -1)
        return mean, (2 * torch.log(0.001 * (i + 1))).expand_as(mean)


def test_rollouts_sample_a_random_elite_per_row_and_penalise_with_every_member():
    torch.manual_seed(0)
    obs = torch.zeros(2000, 2)
    out = mopo.rollout(KnownEnsemble([1, 2]), lambda o: torch.zeros(o.shape[0], 1), obs, 1,
                       mopo.never_terminates(None), penalty_coef=2.0)
    member = out["model_reward"] / 10
    assert ((member - 1).abs() < 0.01).sum() + ((member - 2).abs() < 0.01).sum() == 2000, (
        "every row's sample should come from an elite (members 1 and 2)")
    assert 900 < ((member - 1).abs() < 0.01).sum() < 1100, "the elite should be drawn uniformly per row"
    torch.testing.assert_close(out["next_obs"] - out["obs"], member[:, None].expand(-1, 2), atol=0.02, rtol=0)
    # u = max over ALL members (member 3 too, not an elite): 0.004 sqrt(3); r~ = r^ - 2 u
    u = 0.004 * math.sqrt(3)
    torch.testing.assert_close(out["penalty"], torch.full((2000,), u))
    torch.testing.assert_close(out["reward"], out["model_reward"] - 2 * u)


def test_rollout_branches_continue_from_their_own_next_states_and_stop_at_termination():
    # s' = s + i (one elite, i = 1): each branch walks 0, 1, 2, ...; it terminates once s'_0 >= 3
    torch.manual_seed(0)
    start = torch.tensor([[0.0, 0.0], [2.0, 0.0], [5.0, 0.0]])
    done_rule = lambda o, a, s2: s2[:, 0] >= 3  # noqa: E731
    out = mopo.rollout(KnownEnsemble([1]), lambda o: torch.zeros(o.shape[0], 1), start, 4, done_rule, 0.0)
    first = out["obs"][:, 0].round().tolist()
    # step 1: all three; step 2: only the first (the others reached 3 and 6); step 3: the first (2 -> 3) ends
    assert first == [0.0, 2.0, 5.0, 1.0, 2.0], f"branch start states per step: got {first}"
    assert out["done"].tolist() == [False, True, True, False, True]
    assert out["mean_length"] == pytest.approx(5 / 3)


def test_termination_rules_read_the_envs_healthy_ranges():
    # Hopper-v5 built with a narrower healthy height: the rule follows the env, not a constant
    env = gym.make("Hopper-v5", healthy_z_range=(1.0, float("inf")))
    done = mopo.termination_fn(env)
    obs = torch.zeros(3, 11)
    obs[:, 0] = torch.tensor([0.9, 1.1, 1.1])  # height
    obs[2, 1] = 0.3  # torso angle beyond the default 0.2
    assert done(obs, None, obs).tolist() == [True, False, True]
    walker = gym.make("Walker2d-v5", healthy_angle_range=(-0.5, 0.5))
    obs = torch.zeros(2, 17)
    obs[:, 0], obs[:, 1] = 1.2, torch.tensor([0.4, 0.6])
    assert mopo.termination_fn(walker)(obs, None, obs).tolist() == [False, True]
    # with the positions included in the observation the height moves one place to the right
    hopper_x = gym.make("Hopper-v5", exclude_current_positions_from_observation=False)
    obs = torch.zeros(2, 12)
    obs[:, 0] = 0.0  # x: not a height
    obs[:, 1] = torch.tensor([1.2, 0.5])
    assert mopo.termination_fn(hopper_x)(obs, None, obs).tolist() == [False, True]
    assert not mopo.termination_fn(gym.make("Hopper-v5", terminate_when_unhealthy=False))(obs, None, obs).any()


def test_an_env_without_a_termination_rule_is_a_clear_error():
    with pytest.raises(mopo.UnknownTerminationError, match="no termination rule for the env MountainCarContinuous-v0"):
        mopo.termination_fn(gym.make("MountainCarContinuous-v0"))


def test_model_buffer_drops_the_oldest_and_samples_only_what_it_holds():
    buffer = mopo.ModelBuffer(5, 1, 1, "cpu")

    def batch(values):
        v = torch.tensor(values, dtype=torch.float32)
        return v[:, None], v[:, None], v, v[:, None], v > 100

    buffer.add(*batch([1, 2, 3]))
    assert buffer.size == 3 and sorted(set(buffer.sample(500)[2].tolist())) == [1, 2, 3]
    buffer.add(*batch([4, 5, 6, 7]))  # 1 and 2 are dropped
    assert buffer.size == 5 and sorted(buffer.rewards.tolist()) == [3, 4, 5, 6, 7]
    buffer.add(*batch(list(range(10, 18))))  # more than it holds: the newest 5
    assert sorted(buffer.rewards.tolist()) == [13, 14, 15, 16, 17]
    drawn = buffer.sample(2000)[2]
    counts = [(drawn == v).sum().item() for v in range(13, 18)]
    assert sum(counts) == 2000 and min(counts) > 300, counts


# ---------------------------------------------------------------- runs of the script

def test_end_to_end_with_model_metrics_and_checkpoint_reload(pendulum_mixed, run_dir):
    out = run_script("mopo.py", "--dataset-id", pendulum_mixed, "--total-steps", 200, "--eval-freq", 100,
                     "--eval-episodes", 2, "--batch-size", 64, "--save-model", "--no-cuda", *SMALL, cwd=run_dir)
    assert out.returncode == 0, out.stderr
    run, summary = read_summary(run_dir)
    assert "model trained: 3 epochs" in out.stdout and "step 200/200" in out.stdout
    model = summary["model"]
    assert model["epochs"] == 3 and len(model["elites"]) == 2 and math.isfinite(model["holdout_nll"])
    values = summary["final_values"]
    for key in ("critic_loss", "actor_loss", "q_real", "q_model", "penalty", "model_reward", "mean_rollout_length"):
        assert math.isfinite(values[key]), key
    # Pendulum never terminates: every branch runs the default h
    h = mopo.Args().rollout_length
    assert values["penalty"] > 0 and values["mean_rollout_length"] == float(h)
    assert values["model_buffer_size"] == 2 * 200 * h  # two rollouts of 200 branches x h by step 200

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    nll = events.Scalars("losses/model_holdout_nll")
    assert [e.step for e in nll] == [1, 2, 3], "one held-out NLL per model epoch"
    assert {"values/penalty", "values/q_real", "values/q_model", "eval/normalized_score"} <= set(events.Tags()["scalars"])

    ckpt = torch.load(run / "mopo.pt", weights_only=True)
    assert ckpt["algorithm"] == "mopo" and "dynamics" in ckpt
    data = load_dataset(pendulum_mixed, "cpu", verbose=False)
    dynamics = mopo.EnsembleDynamics(data.obs_dim, data.act_dim, 32, 2, 3, 2)
    dynamics.load_state_dict(ckpt["dynamics"])
    assert sorted(dynamics.elites.tolist()) == model["elites"]
    eval_dir = run_dir / "eval"
    eval_dir.mkdir()
    out = run_script("mopo.py", "--eval-checkpoint", run / "mopo.pt", "--no-cuda", cwd=eval_dir)
    assert out.returncode == 0, out.stderr
    _, ev = read_summary(eval_dir)
    assert ev["normalized_score"] == pytest.approx(summary["final_normalized_score"], rel=1e-9)


@pytest.mark.learning("mopo")
def test_mopo_learns_to_swing_up_from_random_data(pendulum_random, run_dir):
    """On uniform-random data (normalised score 0 by construction), 3,000 SAC steps on the model's rollouts
    must give a policy far above random: the model fits Pendulum well there, so the rollouts teach it."""
    out = run_script("mopo.py", "--dataset-id", pendulum_random, "--total-steps", 3000, "--eval-freq", 3000,
                     "--eval-episodes", 5, "--no-cuda", "--model-max-epochs", 40, "--model-batch-size", 128,
                     "--rollout-batch-size", 1000, cwd=run_dir)
    assert out.returncode == 0, out.stderr
    _, summary = read_summary(run_dir)
    assert summary["final_normalized_score"] > 50, (
        f"MOPO on random data should end far above random (0), got {summary['final_normalized_score']:.1f}")


@pytest.fixture(scope="module")
def mountain_car_dataset():
    env = gym.make("MountainCarContinuous-v0")
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    O, A, R, TE, TR = [obs], [], [], [], []
    for _ in range(20):
        a = rng.uniform(-1, 1, size=(1,)).astype(np.float32)
        obs, r, te, tr, _ = env.step(a)
        O.append(obs); A.append(a); R.append(r); TE.append(te); TR.append(tr)  # noqa: E702
    TR[-1] = True
    write_dataset("test/mountaincar/random-v0", [dict(observations=np.array(O), actions=np.array(A), rewards=np.array(R),
                  terminations=np.array(TE), truncations=np.array(TR))], "MountainCarContinuous-v0")
    return "test/mountaincar/random-v0"


@pytest.fixture(scope="module")
def pendulum_with_nan(pendulum_refs):
    episodes, _ = rollout_pendulum(2, 0.2, seed=5)
    episodes[0]["rewards"][10] = np.nan
    write_dataset("test/pendulum/nan-v0", episodes, "Pendulum-v1", ref_min_score=pendulum_refs[0],
                  ref_max_score=pendulum_refs[1])
    return "test/pendulum/nan-v0"


def test_an_env_without_termination_rule_stops_the_script_before_training(mountain_car_dataset, run_dir):
    out = run_script("mopo.py", "--dataset-id", mountain_car_dataset, "--no-cuda", cwd=run_dir)
    assert out.returncode != 0
    assert "no termination rule for the env MountainCarContinuous-v0" in out.stderr, out.stderr[-2000:]
    assert "TERMINATION_RULES" in out.stderr and "Traceback" not in out.stderr
    assert "Training the dynamics model" not in out.stdout
    assert not (run_dir / "runs").exists()


@pytest.fixture(scope="module")
def half_cheetah_dataset():
    env = gym.make("HalfCheetah-v5")
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    O, A, R = [obs], [], []
    for _ in range(20):
        a = rng.uniform(-1, 1, size=(6,)).astype(np.float32)
        obs, r, *_ = env.step(a)
        O.append(obs); A.append(a); R.append(r)  # noqa: E702
    write_dataset("test/halfcheetah/random-v0", [dict(observations=np.array(O), actions=np.array(A), rewards=np.array(R),
                  terminations=np.zeros(20, bool), truncations=np.eye(20, dtype=bool)[-1])], "HalfCheetah-v5")
    return "test/halfcheetah/random-v0"


def test_true_dynamics_on_another_env_is_a_clear_error(half_cheetah_dataset, run_dir):
    out = run_script("mopo.py", "--dataset-id", half_cheetah_dataset, "--no-cuda", "--true-dynamics", cwd=run_dir)
    assert out.returncode != 0
    assert "error: --true-dynamics knows Pendulum's equations only, not those of HalfCheetah-v5" in out.stderr, (
        out.stderr[-2000:])
    assert "Traceback" not in out.stderr and not (run_dir / "runs").exists()


def test_a_diverging_model_stops_the_script_with_nothing_written(pendulum_with_nan, run_dir):
    out = run_script("mopo.py", "--dataset-id", pendulum_with_nan, "--no-cuda", *SMALL, cwd=run_dir)
    assert out.returncode != 0
    assert "error: the dynamics model diverged: its NLL is not finite" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert not (run_dir / "runs").exists()


@pytest.mark.parametrize("flags, message", [
    (["--rollout-length", "0"], "--rollout-length (h) must be at least 1 (got 0)"),
    (["--penalty-coef", "-1"], "--penalty-coef (lambda) must be >= 0 (got -1.0)"),
    (["--penalty-coef", "nan"], "--penalty-coef (lambda) must be >= 0 (got nan)"),
    (["--num-elites", "8"], "--num-elites (8) cannot exceed --ensemble-size (7)"),
    (["--real-ratio", "1.5"], "--real-ratio must be in [0, 1] (got 1.5)"),
    (["--real-ratio", "-0.1"], "--real-ratio must be in [0, 1] (got -0.1)"),
    (["--holdout-ratio", "0"], "--holdout-ratio must be in (0, 1) (got 0.0)"),
    (["--model-max-epochs", "0"], "--model-max-epochs must be positive or None (got 0)"),
    (["--ensemble-size", "0"], "--ensemble-size must be positive (got 0)"),
    (["--model-lr", "0"], "--model-lr must be positive (got 0.0)"),
    (["--tau", "0"], "--tau must be in (0, 1] (got 0.0)"),
])
def test_bad_flags_are_a_clear_error(flags, message):
    import tyro

    with pytest.raises(SystemExit) as exit_info:
        mopo.check_args(tyro.cli(mopo.Args, args=flags))
    assert message in str(exit_info.value.code)


def test_bad_flags_stop_the_script_and_write_nothing(pendulum_expert, run_dir):
    out = run_script("mopo.py", "--dataset-id", pendulum_expert, "--no-cuda", "--rollout-length", 0,
                     "--num-elites", 9, cwd=run_dir)
    assert out.returncode != 0
    assert "--rollout-length (h) must be at least 1 (got 0)\n       --num-elites (9) cannot exceed" in out.stderr
    assert not (run_dir / "runs").exists()
