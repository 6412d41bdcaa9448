"""combo.py: the conservative term by hand (which samples are pushed down, which up) and against a brute
force over the critic's own inputs; the TD target on the mixed batch; the model, termination rules and
rollouts identical to mopo.py's (tested there) and the importance-sampled logsumexp identical to cql.py's;
end to end with checkpoint reload; a short learning check; bad input."""

import ast
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import combo
from testdata import ROOT, read_summary, rollout_pendulum, run_script, write_dataset

# small networks and a short model phase for the script runs
SMALL = ["--hidden-dim", 32, "--model-hidden-dim", 32, "--model-layers", 2, "--ensemble-size", 3, "--num-elites", 2,
         "--model-max-epochs", 3, "--rollout-batch-size", 200, "--rollout-freq", 100]

# mopo.py's model, termination rules and rollouts, which combo.py carries unchanged
FROM_MOPO = ("gaussian_nll", "soft_clamp", "EnsembleDynamics", "ModelDivergedError", "_holdout_errors", "train_model",
             "penalized_reward", "UnknownTerminationError", "never_terminates", "hopper_termination",
             "walker2d_termination", "TERMINATION_RULES", "termination_fn", "rollout", "ModelBuffer")
# cql.py's pieces of the conservative term
FROM_CQL = ("cql_logsumexp", "TwinQ", "polyak_update", "temperature_loss")


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _top_level(path) -> dict:
    """name -> ast.dump of every top-level function, class and assignment (comments do not count)."""
    out = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out[node.name] = ast.dump(node)
        elif isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = ast.dump(node)
    return out


@pytest.mark.parametrize("source, names", [("mopo.py", FROM_MOPO), ("cql.py", FROM_CQL)])
def test_the_shared_pieces_are_identical_to_their_source(source, names):
    ours, theirs = _top_level(ROOT / "combo.py"), _top_level(ROOT / source)
    missing = [n for n in names if n not in ours or n not in theirs]
    assert not missing, f"{missing} missing from combo.py or {source}"
    differ = [n for n in names if ours[n] != theirs[n]]
    assert not differ, f"{differ} in combo.py differ from {source}'s: copy them again, verbatim"


# ---------------------------------------------------------------- the conservative term

@pytest.mark.exercise("combo.combo_regularizer")
def test_combo_regularizer_by_hand():
    # three states of the model's rollouts (pushed down), two pairs of the dataset (pushed up): the two
    # means run over different samples. Critic 1: (1 + 2 + 6) / 3 - (4 + 0) / 2 = 1; critic 2: 0 - (-1) = 1
    lse_rho = torch.tensor([[1.0, 2.0, 6.0], [0.0, -3.0, 3.0]])
    q_data = torch.tensor([[4.0, 0.0], [-2.0, 0.0]])
    gap = combo.combo_regularizer(lse_rho, q_data)
    assert gap.shape == (2,), f"one gap per critic, shape (2,), got {tuple(gap.shape)}"
    assert gap.tolist() == pytest.approx([3.0 - 2.0, 0.0 - (-1.0)]), (
        f"gap_i = mean of lse over the model's states minus mean Q on the data's pairs: expected [1, 1], "
        f"got {gap.tolist()}")
    # the gradient: each model state's lse pushed down by 1/3, each data pair's Q pushed up by 1/2
    lse_rho.requires_grad_(True)
    q_data.requires_grad_(True)
    combo.combo_regularizer(lse_rho, q_data).sum().backward()
    torch.testing.assert_close(lse_rho.grad, torch.full((2, 3), 1 / 3), msg="lse at the model's states enters with +1/B_rho")
    torch.testing.assert_close(q_data.grad, torch.full((2, 2), -0.5), msg="Q at the data's pairs enters with -1/B_D")


class Recorder(torch.nn.Module):
    """Wraps a critic and records the inputs and outputs of each call."""

    def __init__(self, critic):
        super().__init__()
        self.critic, self.calls = critic, []

    def forward(self, obs, act):
        q = self.critic(obs, act)
        self.calls.append((obs.detach().clone(), act.detach().clone(), q.detach().clone()))
        return q


def make_agent(push_down="model", alpha=2.0, n_actions=3, backup_entropy=False):
    torch.manual_seed(0)
    args = combo.Args(hidden_dim=16, cql_alpha=alpha, cql_n_actions=n_actions, push_down_states=push_down,
                      backup_entropy=backup_entropy)
    agent = combo.COMBO(3, 2, args, torch.tensor([-2.0, -1.0]), torch.tensor([2.0, 1.0]), "cpu")
    with torch.no_grad():  # target critics unlike the online ones, so that reading the wrong one shows
        for p in agent.critic_target.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return agent


def batch(n_real=4, n_model=5):
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(n_real + n_model, 3, generator=g)
    obs[n_real:] += 10.0  # the model's states lie far from the data's: a mix-up shows
    act = torch.rand(n_real + n_model, 2, generator=g) * 2 - 1
    rew, next_obs = torch.randn(n_real + n_model, generator=g), torch.randn(n_real + n_model, 3, generator=g)
    done = (torch.arange(n_real + n_model) % 3 == 0).float()
    return obs, act, rew, next_obs, done, n_real


def tanh_gaussian_density(actor, obs, a):
    """log pi(a|s) by the change of variables, from a = tanh(u): an independent check of the actor's."""
    mean, log_std = actor(obs)
    u = torch.atanh(a.clamp(-1 + 1e-6, 1 - 1e-6))
    normal = torch.distributions.Normal(mean.unsqueeze(1), log_std.exp().unsqueeze(1))
    return (normal.log_prob(u) - torch.log1p(-a.pow(2))).sum(-1)


@pytest.mark.exercise("combo.combo_regularizer")
@pytest.mark.parametrize("push_down", ["model", "mix"])
def test_the_model_states_are_pushed_down_and_the_data_pairs_up(push_down):
    """Brute force over the critic's own inputs: the sampled actions are evaluated at rho's states (the
    batch's model rows, or all rows with mix), each weighted by its proposal's density, and the gap is
    their mean logsumexp minus Q at the batch's REAL pairs."""
    agent = make_agent(push_down)
    obs, act, rew, next_obs, done, n_real = batch()
    N, d = agent.args.cql_n_actions, 2
    agent.critic = Recorder(agent.critic)
    loss, gap = agent.critic_loss(obs, act, rew, next_obs, done, n_real)
    td_call, sample_call = agent.critic.calls  # Q on the batch, then Q at the sampled actions
    torch.testing.assert_close(td_call[0], obs)
    rho = slice(n_real, None) if push_down == "model" else slice(None)
    rho_obs, rho_next = obs[rho], next_obs[rho]
    B = rho_obs.shape[0]
    assert sample_call[0].shape[0] == B * 3 * N, (
        f"{3 * N} sampled actions at each of rho's {B} states ({push_down} rows of the batch) expected, "
        f"got {sample_call[0].shape[0]} rows")
    s, a, q = sample_call[0].view(B, 3 * N, 3), sample_call[1].view(B, 3 * N, d), sample_call[2].view(2, B, 3 * N)
    torch.testing.assert_close(s, rho_obs.unsqueeze(1).expand(-1, 3 * N, -1), msg=(
        "the sampled actions must be evaluated at rho's states: the batch's model rows (the paper), or all with mix"))
    assert (a[:, :N].abs() <= 1).all()
    # log mu(a): uniform on [-1, 1]^2 for the first N, pi(.|s) for the next N, pi(.|s') for the last N
    with torch.no_grad():
        log_mu = torch.cat([torch.full((B, N), -d * math.log(2.0)), tanh_gaussian_density(agent.actor, rho_obs, a[:, N:2 * N]),
                            tanh_gaussian_density(agent.actor, rho_next, a[:, 2 * N:])], dim=1)
        lse = torch.stack([torch.tensor([math.log(sum(math.exp(q[i, j, k] - log_mu[j, k]) for k in range(3 * N)) / (3 * N))
                                         for j in range(B)]) for i in range(2)])
        q_real = agent.critic.critic(obs[:n_real], act[:n_real])
    expected = lse.mean(dim=1) - q_real.mean(dim=1)
    torch.testing.assert_close(gap, expected, atol=1e-4, rtol=1e-4, msg=(
        f"gap_i = mean over rho's states of log mean_k exp(Q_i(s,a_k) - log mu(a_k)) minus mean Q_i over the "
        f"batch's {n_real} real pairs: expected {expected.tolist()}, got {gap.tolist()}"))
    # the loss is the TD loss plus alpha times the summed gaps
    agent2 = make_agent(push_down, alpha=0.0)
    torch.manual_seed(5)
    td_only, zero = agent2.critic_loss(obs, act, rew, next_obs, done, n_real)
    assert zero.tolist() == [0.0, 0.0]
    torch.manual_seed(5)
    loss, gap = agent.critic_loss(obs, act, rew, next_obs, done, n_real)
    torch.testing.assert_close(loss, td_only + 2.0 * gap.sum(), atol=1e-4, rtol=1e-5)


def test_the_td_target_bootstraps_from_the_target_critics_on_the_whole_mixed_batch():
    """alpha = 0: L = sum_i mean over ALL rows (real and model) of (Q_i(s,a) - (r + gamma (1-d) min_j Qbar_j(s',a')))^2."""
    for backup_entropy in (False, True):
        agent = make_agent(alpha=0.0, backup_entropy=backup_entropy)
        with torch.no_grad():
            agent.log_beta.fill_(math.log(0.3))
        obs, act, rew, next_obs, done, n_real = batch()
        torch.manual_seed(3)
        loss, _ = agent.critic_loss(obs, act, rew, next_obs, done, n_real)
        torch.manual_seed(3)
        with torch.no_grad():
            a2, log_pi2 = agent.actor.sample(next_obs)
            next_v = agent.critic_target(next_obs, a2) - (0.3 * log_pi2 if backup_entropy else 0.0)
            y = rew + 0.99 * (1 - done) * next_v.min(dim=0).values
            expected = (agent.critic(obs, act) - y).pow(2).mean(dim=1).sum()
        torch.testing.assert_close(loss, expected, msg=f"backup_entropy={backup_entropy}")


def test_an_update_lowers_q_at_the_model_states_relative_to_the_data():
    """Many updates with a large alpha on a fixed batch whose rewards are all zero: Q at the model's states
    (under uniform actions) must end below Q on the data's pairs. With alpha = 0 nothing separates them."""
    def gap_after(alpha):
        agent = make_agent(alpha=alpha)
        obs, act, rew, next_obs, done, n_real = batch()
        rew = torch.zeros_like(rew)
        for _ in range(150):
            agent.update(obs, act, rew, next_obs, done, n_real)
        with torch.no_grad():
            q_data = agent.critic(obs[:n_real], act[:n_real]).mean()
            q_model = agent.critic(obs[n_real:].repeat(20, 1), torch.rand(20 * (obs.shape[0] - n_real), 2) * 2 - 1).mean()
        return (q_data - q_model).item()

    assert gap_after(5.0) > 1.0 + gap_after(0.0), "the conservative term must push Q at the model's states below the data's"


# ---------------------------------------------------------------- runs of the script

def test_end_to_end_with_metrics_and_checkpoint_reload(pendulum_mixed, run_dir):
    out = run_script("combo.py", "--dataset-id", pendulum_mixed, "--total-steps", 200, "--eval-freq", 100,
                     "--eval-episodes", 2, "--batch-size", 64, "--save-model", "--no-cuda", *SMALL, cwd=run_dir)
    assert out.returncode == 0, out.stderr
    run, summary = read_summary(run_dir)
    assert "model trained: 3 epochs" in out.stdout and "step 200/200" in out.stdout
    assert "32 real + 32 model transitions per batch" in out.stdout
    model = summary["model"]
    assert model["epochs"] == 3 and len(model["elites"]) == 2 and math.isfinite(model["holdout_nll"])
    values = summary["final_values"]
    for key in ("critic_loss", "actor_loss", "combo_gap", "q_real", "q_model", "q_model_random", "model_uncertainty",
                "model_reward"):
        assert math.isfinite(values[key]), key
    assert values["mean_rollout_length"] == 5.0 and values["model_buffer_size"] == 2 * 200 * 5

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    assert {"losses/combo_gap", "losses/model_holdout_nll", "values/q_real", "values/q_model",
            "values/model_uncertainty", "eval/normalized_score", "charts/SPS"} <= set(events.Tags()["scalars"])

    ckpt = torch.load(run / "combo.pt", weights_only=True)
    assert ckpt["algorithm"] == "combo" and "dynamics" in ckpt
    eval_dir = run_dir / "eval"
    eval_dir.mkdir()
    out = run_script("combo.py", "--eval-checkpoint", run / "combo.pt", "--no-cuda", cwd=eval_dir)
    assert out.returncode == 0, out.stderr
    _, ev = read_summary(eval_dir)
    assert ev["normalized_score"] == pytest.approx(summary["final_normalized_score"], rel=1e-9)


@pytest.mark.learning("combo")
def test_combo_learns_from_mixed_data(pendulum_mixed, run_dir):
    """Half the episodes uniform-random, half a noisy controller (normalised score 0 = random). 2,000 COMBO
    steps must end far above random (measured: 44 at seed 1; bc.py on this data: 34 final over 10k steps).
    On the uniform-random data alone COMBO stays near 0 after 2,000 steps: the model's states the policy
    wants are exactly the ones the push-down lowers."""
    out = run_script("combo.py", "--dataset-id", pendulum_mixed, "--total-steps", 2000, "--eval-freq", 2000,
                     "--eval-episodes", 5, "--no-cuda", "--model-hidden-dim", 64, "--model-layers", 3,
                     "--model-max-epochs", 20, "--rollout-batch-size", 500, cwd=run_dir, timeout=1800)
    assert out.returncode == 0, out.stderr
    _, summary = read_summary(run_dir)
    assert summary["final_normalized_score"] > 20, (
        f"COMBO on mixed data should end far above random (0), got {summary['final_normalized_score']:.1f}")


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
    write_dataset("test/mountaincar/combo-v0", [dict(observations=np.array(O), actions=np.array(A), rewards=np.array(R),
                  terminations=np.array(TE), truncations=np.array(TR))], "MountainCarContinuous-v0")
    return "test/mountaincar/combo-v0"


@pytest.fixture(scope="module")
def pendulum_with_nan(pendulum_refs):
    episodes, _ = rollout_pendulum(2, 0.2, seed=5)
    episodes[0]["rewards"][10] = np.nan
    write_dataset("test/pendulum/combo-nan-v0", episodes, "Pendulum-v1", ref_min_score=pendulum_refs[0],
                  ref_max_score=pendulum_refs[1])
    return "test/pendulum/combo-nan-v0"


def test_an_env_without_termination_rule_stops_the_script_before_training(mountain_car_dataset, run_dir):
    out = run_script("combo.py", "--dataset-id", mountain_car_dataset, "--no-cuda", cwd=run_dir)
    assert out.returncode != 0
    assert "no termination rule for the env MountainCarContinuous-v0" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "Training the dynamics model" not in out.stdout
    assert not (run_dir / "runs").exists()


def test_a_diverging_model_stops_the_script_with_nothing_written(pendulum_with_nan, run_dir):
    out = run_script("combo.py", "--dataset-id", pendulum_with_nan, "--no-cuda", *SMALL, cwd=run_dir)
    assert out.returncode != 0
    assert "error: the dynamics model diverged: its NLL is not finite" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert not (run_dir / "runs").exists()


@pytest.mark.parametrize("flags, message", [
    (["--cql-alpha", "-1"], "--cql-alpha must be >= 0 (got -1.0)"),
    (["--cql-alpha", "nan"], "--cql-alpha must be >= 0 (got nan)"),
    (["--cql-n-actions", "0"], "--cql-n-actions must be positive (got 0)"),
    (["--rollout-length", "0"], "--rollout-length (h) must be at least 1 (got 0)"),
    (["--num-elites", "8"], "--num-elites (8) cannot exceed --ensemble-size (7)"),
    (["--real-ratio", "1.5"], "--real-ratio must be in [0, 1] (got 1.5)"),
    (["--real-ratio", "-0.1"], "--real-ratio must be in [0, 1] (got -0.1)"),
    (["--real-ratio", "0"], "--real-ratio 0.0 leaves no real transition in a batch of 256"),
    (["--real-ratio", "1"], "--real-ratio 1.0 leaves no model transition in a batch of 256 to push down"),
    (["--holdout-ratio", "0"], "--holdout-ratio must be in (0, 1) (got 0.0)"),
    (["--model-max-epochs", "0"], "--model-max-epochs must be positive or None (got 0)"),
    (["--ensemble-size", "0"], "--ensemble-size must be positive (got 0)"),
    (["--model-lr", "0"], "--model-lr must be positive (got 0.0)"),
    (["--tau", "0"], "--tau must be in (0, 1] (got 0.0)"),
])
def test_bad_flags_are_a_clear_error(flags, message):
    import tyro

    with pytest.raises(SystemExit) as exit_info:
        combo.check_args(tyro.cli(combo.Args, args=flags))
    assert message in str(exit_info.value.code)


def test_all_real_data_is_allowed_when_every_state_is_pushed_down():
    import tyro

    combo.check_args(tyro.cli(combo.Args, args=["--real-ratio", "1", "--push-down-states", "mix"]))  # no exit


def test_bad_flags_stop_the_script_and_write_nothing(pendulum_expert, run_dir):
    out = run_script("combo.py", "--dataset-id", pendulum_expert, "--no-cuda", "--cql-alpha", -1,
                     "--num-elites", 9, cwd=run_dir)
    assert out.returncode != 0
    assert "--cql-alpha must be >= 0 (got -1.0)\n       --num-elites (9) cannot exceed" in out.stderr
    assert not (run_dir / "runs").exists()
