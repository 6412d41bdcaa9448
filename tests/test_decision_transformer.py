"""decision_transformer.py: returns-to-go, windows, the token layout, causality, padding, the loss, the
evaluation rollout against a stub env, end to end, the return knob, bad input."""

import math
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

import decision_transformer as dt
from common.datasets import load_dataset
from testdata import read_summary, run_script


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """One thread in these tests and in the scripts they start: the tiny models here gain nothing from
    two, and on a CPU shared with other jobs two threads waiting on each other ran about 5x slower."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# A model small enough for the tests: the code paths are the same at any size.
SMALL = ["--embed-dim", 32, "--n-layers", 2, "--n-heads", 2, "--context-len", 5, "--batch-size", 16]


def small_model(context_len=6, dropout=0.0, seed=0):
    torch.manual_seed(seed)
    model = dt.DecisionTransformer(3, 2, 32, 2, 2, context_len, 50, dropout, -2 * torch.ones(2), 2 * torch.ones(2))
    return model.eval()


def random_tokens(B, K, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, K, 1, generator=g), torch.randn(B, K, 3, generator=g), torch.rand(B, K, 2, generator=g),
            torch.randint(0, 50, (B, K), generator=g), torch.ones(B, K, dtype=torch.bool))


@pytest.mark.exercise("decision_transformer.returns_to_go")
def test_returns_to_go_on_a_hand_made_episode():
    # Three episodes (3, 2 and 1 steps), rewards negative and positive, worked out by hand.
    rewards = torch.tensor([1.0, 2.0, 3.0, -10.0, -20.0, 5.0])
    rtg = dt.returns_to_go(rewards, torch.tensor([0, 3, 5]), torch.tensor([3, 2, 1]))
    expected = torch.tensor([6.0, 5.0, 3.0, -30.0, -20.0, 5.0])
    assert rtg.shape == (6,) and torch.allclose(rtg.float(), expected), (
        f"returns-to-go: rewards [1, 2, 3 | -10, -20 | 5] in episodes of 3, 2 and 1 steps should give "
        f"{expected.tolist()} (R_t sums r from t to its episode's end), got {rtg.tolist()}")


@pytest.mark.exercise("decision_transformer.returns_to_go")
def test_returns_to_go_on_a_dataset_against_a_loop(pendulum_mixed):
    data = load_dataset(pendulum_mixed, "cpu", verbose=False)
    rtg = dt.returns_to_go(data.rewards, data.episode_starts, data.episode_lengths).numpy()
    r = data.rewards.numpy().astype(np.float64)
    for e in range(data.num_episodes):
        s, n = int(data.episode_starts[e]), int(data.episode_lengths[e])
        expected = [r[t:s + n].sum() for t in range(s, s + n)]
        np.testing.assert_allclose(rtg[s:s + n], expected, rtol=1e-5, atol=1e-3,
                                   err_msg=f"returns-to-go of episode {e} differ from a plain loop's")
        assert rtg[s] == pytest.approx(float(data.episode_returns[e]), rel=1e-5), (
            f"R_1 of episode {e} should be its return {float(data.episode_returns[e]):.2f}, got {rtg[s]:.2f}")


def test_windows_stay_in_their_episode_and_are_left_padded():
    # Two episodes of 4 and 3 steps; states encode (episode, t) so any crossing shows.
    starts, lengths = torch.tensor([0, 4]), torch.tensor([4, 3])
    start_of = torch.repeat_interleave(starts, lengths)
    timesteps = torch.arange(7) - start_of
    states = torch.stack([torch.tensor([0, 0, 0, 0, 1, 1, 1.0]), timesteps.float(), torch.ones(7)], 1)
    actions = timesteps.float()[:, None] / 10
    rtg = torch.arange(7.0)
    R, s, a, ts, mask = dt.sample_windows(torch.tensor([1, 3, 4, 6]), 3, start_of, rtg, states, actions, timesteps)
    assert mask.tolist() == [[False, True, True], [True, True, True], [False, False, True], [True, True, True]]
    assert ts.tolist() == [[0, 0, 1], [1, 2, 3], [0, 0, 0], [0, 1, 2]]
    assert s[:, :, 0].tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 1], [1, 1, 1]]  # episode ids, 0 at padding
    assert R[..., 0].tolist() == [[0, 0, 1], [1, 2, 3], [0, 0, 4], [4, 5, 6]]
    assert (s[~mask] == 0).all() and (a[~mask] == 0).all()


@pytest.mark.exercise("decision_transformer.interleave_tokens")
def test_interleave_tokens_lays_out_R_s_a_per_timestep_each_plus_its_timestep():
    # Two windows of K = 2 steps, H = 1: R embeddings 1x, states 2x, actions 3x, timesteps 0.1 * (t + 1)
    # plus 0.5 in window 1, so every token says what it is, which step and which window.
    step = torch.tensor([1.0, 2.0])[None, :, None] + torch.tensor([0.0, 10.0])[:, None, None]  # (2, 2, 1)
    time = 0.1 * torch.tensor([1.0, 2.0])[None, :, None] + torch.tensor([0.0, 0.5])[:, None, None]
    tokens = dt.interleave_tokens(step, 2 * step, 3 * step, time)
    expected = torch.tensor([[1.1, 2.1, 3.1, 2.2, 4.2, 6.2],         # R_1 s_1 a_1 R_2 s_2 a_2
                             [11.6, 22.6, 33.6, 12.7, 24.7, 36.7]])
    assert tokens.shape == (2, 6, 1), (
        f"token sequence: expected shape (B, 3K, H) = (2, 6, 1), got {tuple(tokens.shape)}")
    assert torch.allclose(tokens[..., 0], expected), (
        f"token sequence: expected (R_1, s_1, a_1, R_2, s_2, a_2) per window, each token plus its timestep's "
        f"embedding, i.e. {expected.tolist()}; got {tokens[..., 0].tolist()}")


def test_causality_later_tokens_do_not_change_earlier_predictions():
    model = small_model()
    R, s, a, ts, mask = random_tokens(4, 6)
    base = model(R, s, a, ts, mask)
    for t in range(6):
        # Change a_t and everything after it: the predictions at positions <= t must not move.
        R2, s2, a2 = R.clone(), s.clone(), a.clone()
        R2[:, t + 1:] += 5.0
        s2[:, t + 1:] -= 3.0
        a2[:, t:] = -a2[:, t:]
        out = model(R2, s2, a2, ts, mask)
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], rtol=0, atol=1e-6)
        if t < 5:  # and the test can fail: the later predictions do move
            assert (out[:, t + 1:] - base[:, t + 1:]).abs().max() > 1e-3
    # The prediction at t reads R_t and s_t (the tokens before it)
    R3 = R.clone()
    R3[:, 2] += 5.0
    assert (model(R3, s, a, ts, mask)[:, 2] - base[:, 2]).abs().max() > 1e-3


def test_last_block_on_state_rows_matches_the_full_block():
    # The model runs its last block on the state tokens only; the same model with every block on every
    # token, then the state tokens taken, must predict the same actions (padding and two heads included).
    model = small_model(context_len=6)
    R, s, a, ts, mask = random_tokens(3, 6)
    mask[0, :2] = False
    with torch.no_grad():
        x = model.embed_ln(dt.interleave_tokens(model.embed_return(R), model.embed_state(s),
                                                model.embed_action(a), model.embed_timestep(ts)))
        real = mask.repeat_interleave(3, dim=1)
        attn_mask = (model.causal & (real[:, None, :] | torch.eye(18, dtype=torch.bool)))[:, None]
        for block in model.blocks:
            x = block(x, attn_mask)
        full = torch.tanh(model.predict_action(model.ln_f(x)[:, 1::3])) * model.action_scale + model.action_bias
        got = model(R, s, a, ts, mask)
    assert got.shape == full.shape == (3, 6, 2), f"expected predictions of shape (3, 6, 2), got {tuple(got.shape)}"
    assert torch.allclose(got, full, atol=1e-6), (
        f"the last block on the state tokens only should predict what the full block predicts at the state "
        f"tokens; largest difference {(got - full).abs().max():.3g}")


def test_padding_changes_neither_the_outputs_at_real_positions_nor_the_loss():
    model = small_model(context_len=6)
    R, s, a, ts, mask = random_tokens(3, 6)
    mask[:, :2] = False  # two padded positions at the start of each window
    out = model(R, s, a, ts, mask)
    # Garbage at the padded positions: the real outputs do not move.
    R2, s2, a2, ts2 = R.clone(), s.clone(), a.clone(), ts.clone()
    R2[:, :2], s2[:, :2], a2[:, :2], ts2[:, :2] = 100.0, -50.0, 7.0, 49
    out2 = model(R2, s2, a2, ts2, mask)
    torch.testing.assert_close(out2[:, 2:], out[:, 2:], rtol=0, atol=1e-6)
    # The padded window gives what the 4 real steps give on their own, without padding.
    short = model(R[:, 2:], s[:, 2:], a[:, 2:], ts[:, 2:], mask[:, 2:])
    torch.testing.assert_close(short, out[:, 2:], rtol=0, atol=1e-5)
    # Without the mask the padding leaks in (so the check above can fail).
    leaky = model(R2, s2, a2, ts2, torch.ones_like(mask))
    assert (leaky[:, 2:] - out[:, 2:]).abs().max() > 1e-3


@pytest.mark.exercise("decision_transformer.action_loss")
def test_action_loss_is_the_mean_over_real_positions_only():
    # Window 0: a padded position (huge error, must not count), then errors (0, 2) and (1, 1);
    # window 1: two padded positions, then the error (3, 0). Squared errors averaged over the action
    # dimensions: 2, 1 and 4.5; their mean over the 3 real positions: 2.5.
    pred = torch.tensor([[[9.0, 9.0], [1.0, 2.0], [0.0, 0.0]], [[7.0, 7.0], [5.0, 5.0], [3.0, 0.0]]])
    actions = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = torch.tensor([[False, True, True], [False, False, True]])
    got = float(dt.action_loss(pred, actions, mask))
    assert got == pytest.approx(2.5), (
        f"action loss: expected 2.5, the squared error averaged over action dimensions and over the 3 real "
        f"positions (padding weighs nothing; not a mean of per-window means, 3.0), got {got:.4g}")


def test_auto_reward_scale():
    # The largest |episode return| lands in [1, 10): Pendulum (negative), D4RL hopper, halfcheetah
    # medium-expert (its medium set, best return below 10,000, gets 1e-3).
    assert dt.auto_reward_scale(torch.tensor([-1262.0, -150.0])) == pytest.approx(1e-3)
    assert dt.auto_reward_scale(torch.tensor([300.0, 3600.0])) == pytest.approx(1e-3)
    assert dt.auto_reward_scale(torch.tensor([-280.0, 11000.0])) == pytest.approx(1e-4)
    assert dt.auto_reward_scale(torch.tensor([-0.5, 0.2])) == pytest.approx(10.0)


@pytest.mark.exercise("decision_transformer.update_context")
def test_update_context_decrements_R_advances_t_and_appends():
    # Two envs, K = 3, obs_dim = act_dim = 1. Env 0 is at its first step (two empty slots), env 1 at t = 5.
    context = (torch.tensor([[0.0, 0.0, 1.0], [4.0, 3.0, 2.0]])[..., None],          # R
               torch.tensor([[0.0, 0.0, 10.0], [18.0, 19.0, 20.0]])[..., None],      # s (normalised)
               torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.2, 0.0]])[..., None],          # a (placeholder last)
               torch.tensor([[0, 0, 0], [3, 4, 5]]),                                 # t
               torch.tensor([[False, False, True], [True, True, True]]))             # mask
    R, s, a, t, mask = dt.update_context(context, torch.tensor([[0.3], [-0.3]]), torch.tensor([10.0, -20.0]),
                                         torch.tensor([[11.0], [21.0]]), 0.1)
    want_mask = torch.tensor([[False, True, True], [True, True, True]])
    assert mask.tolist() == want_mask.tolist(), (
        f"mask: expected the slots shifted left and a True appended, {want_mask.tolist()}, got {mask.tolist()}")
    real = want_mask
    checks = [  # (name, got, expected, what it means)
        ("R", R[..., 0], [[0.0, 1.0, 0.0], [3.0, 2.0, 4.0]], "R_{t+1} = R_t - reward_scale * r_t: 1 - 0.1 * 10 = 0, "
         "2 - 0.1 * (-20) = 4"),
        ("s", s[..., 0], [[0.0, 10.0, 11.0], [19.0, 20.0, 21.0]], "s_{t+1} appended"),
        ("t", t, [[0, 0, 1], [4, 5, 6]], "t + 1 appended"),
    ]
    for name, got, expected, meaning in checks:
        got, expected = got.double(), torch.tensor(expected, dtype=torch.float64)
        assert torch.allclose(got[real], expected[real], atol=1e-6), (
            f"context {name} at the filled slots: expected {expected.tolist()} ({meaning}), got {got.tolist()}")
    # a_t replaces the placeholder of step t, which then moves one slot left
    assert torch.allclose(a[:, :2, 0][real[:, :2]], torch.tensor([0.3, 0.2, -0.3])), (
        f"context a: expected a_t (0.3 and -0.3) in the slot of step t, now the second last, got {a[..., 0].tolist()}")


class StubEnv(gym.Env):
    """Observation (t, k) at step t, reward r_t = k * (t + 1), episodes of 3 + 2k steps, where k is the
    seed of the first reset. Records (k, t, action) for every step."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, log):
        self.log = log

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:  # the vector env's automatic reset passes no seed: k stays
            self.k = seed
        self.t = 0
        return np.array([self.t, self.k], np.float32), {}

    def step(self, action):
        self.log.append((self.k, self.t, float(action[0])))
        reward = float(self.k * (self.t + 1))
        self.t += 1
        return np.array([self.t, self.k], np.float32), reward, self.t == 3 + 2 * self.k, False, {}


def stub_data(log):
    """What `evaluate` reads of a dataset, around StubEnv; observations normalised by mean (1, -1), std (2, 4)."""
    mean, std = torch.tensor([1.0, -1.0]), torch.tensor([2.0, 4.0])
    return SimpleNamespace(obs_dim=2, act_dim=1, make_eval_env=lambda render_mode=None: StubEnv(log),
                           normalize_obs=lambda obs: (obs - mean) / std, normalized_score=lambda returns: None)


class RecordingModel(torch.nn.Module):
    """Stands in for the transformer: records the context it is fed, and answers env e's call number c
    (from 1) with the action 0.1 * e + 0.01 * c."""

    def __init__(self, context_len):
        super().__init__()
        self.context_len, self.fed = context_len, []

    def forward(self, R, s, a, t, mask):
        self.fed.append([x.clone() for x in (R, s, a, t, mask)])
        n, K = t.shape
        return (0.1 * torch.arange(n)[:, None, None] + 0.01 * len(self.fed)).expand(n, K, 1)


@pytest.mark.exercise("decision_transformer.update_context")
def test_evaluate_feeds_the_model_each_step_what_the_paper_says():
    # Two stub envs (k = 1: 5 steps, rewards 1..5; k = 2: 7 steps, rewards 2, 4, ..., 14), K = 3, the
    # asked return G = 100 at scale 0.01. At step i the window holds steps p = i-2 .. i (those >= 0):
    # R_p = 0.01 * (G - sum_{q<p} r_q), s_p normalised, a_p the model's own earlier answers, timestep p.
    K, G, scale, seeds = 3, 100.0, 0.01, [1, 2]
    model = RecordingModel(K)
    returns, scores = dt.evaluate(model, stub_data([]), seeds, "cpu", target_return=G, reward_scale=scale)
    assert returns.tolist() == [15.0, 56.0], f"episode returns: expected [15, 56], got {returns.tolist()}"
    assert scores is None
    assert len(model.fed) == 7, f"expected one model call per step of the longest episode (7), got {len(model.fed)}"
    for i, (R, s, a, t, mask) in enumerate(model.fed):
        for e, k in enumerate(seeds):
            if i >= 3 + 2 * k:
                continue  # env e's episode is over: what it is fed no longer counts
            where = f"step {i}, env {e}"
            steps = [i - (K - 1) + j for j in range(K)]  # the step of each slot, oldest first
            want_mask = [p >= 0 for p in steps]
            assert mask[e].tolist() == want_mask, (
                f"{where}: mask expected {want_mask} (only slots holding a step of this episode are real), "
                f"got {mask[e].tolist()}")
            for j, p in enumerate(steps):
                if p < 0:
                    continue
                want_R = scale * (G - sum(k * (q + 1) for q in range(p)))
                assert float(R[e, j, 0]) == pytest.approx(want_R, abs=1e-5), (
                    f"{where}: return-to-go of step {p} expected {want_R:.4f} (R_1 = {scale} * {G}, then "
                    f"R_(t+1) = R_t - {scale} * r_t), got {float(R[e, j, 0]):.4f}")
                assert int(t[e, j]) == p, f"{where}: timestep of step {p} expected {p}, got {int(t[e, j])}"
                want_s = [(p - 1.0) / 2.0, (k + 1.0) / 4.0]
                assert s[e, j].tolist() == pytest.approx(want_s), (
                    f"{where}: state of step {p} expected the normalised observation {want_s}, got {s[e, j].tolist()}")
                if p < i:
                    want_a = 0.1 * e + 0.01 * (p + 1)
                    assert float(a[e, j, 0]) == pytest.approx(want_a, abs=1e-6), (
                        f"{where}: action of step {p} expected {want_a:.2f}, the one taken then, "
                        f"got {float(a[e, j, 0]):.4f}")


def test_the_asked_return_changes_the_actions():
    # The real (untrained) model, on the stub env: asking for another return must change what it does.
    log = []
    torch.manual_seed(0)
    model = dt.DecisionTransformer(2, 1, 32, 2, 2, 3, 20, 0.0, -torch.ones(1), torch.ones(1)).eval()
    taken = {}
    for G in (-500.0, 500.0):
        log.clear()
        dt.evaluate(model, stub_data(log), [1], "cpu", target_return=G, reward_scale=0.01)
        taken[G] = np.array([action for _, _, action in log])
    assert len(taken[G]) == 5
    gap = np.abs(taken[500.0] - taken[-500.0])
    assert gap.min() > 1e-4, f"asking for 500 or -500 should change every action; the gaps were {gap.tolist()}"


def test_batched_evaluation_equals_one_episode_at_a_time(pendulum_expert):
    data = load_dataset(pendulum_expert, "cpu", verbose=False)
    model = dt.DecisionTransformer(3, 1, 32, 1, 1, 4, 200, 0.0, data.action_low, data.action_high).eval()
    seeds = dt.evaluation_seeds(0, 0, 2)
    batched, scores = dt.evaluate(model, data, seeds, "cpu", target_return=-150.0, reward_scale=1e-3)
    alone = [dt.evaluate(model, data, [s], "cpu", target_return=-150.0, reward_scale=1e-3)[0][0] for s in seeds]
    np.testing.assert_allclose(batched, alone, rtol=1e-4)
    assert scores.shape == (2,) and np.isfinite(scores).all()


def test_end_to_end_checkpoint_reloads_with_same_returns(pendulum_expert, run_dir):
    out = run_script("decision_transformer.py", "--dataset-id", pendulum_expert, *SMALL, "--total-steps", 60,
                     "--eval-freq", 30, "--eval-episodes", 2, "--target-returns", -120, -600, "--save-model",
                     "--no-cuda", cwd=run_dir)
    assert out.returncode == 0, out.stderr
    run, summary = read_summary(run_dir)
    assert summary["steps"] == 60 and len(summary["eval_history"]) == 2
    assert math.isfinite(summary["final_normalized_score"]) and summary["sps"] > 0
    assert summary["target_returns"] == [-120.0, -600.0] and set(summary["final_per_target"]) == {"-120", "-600"}
    assert summary["final_per_target"]["-120"]["returns"] == summary["final_returns"]
    data = load_dataset(pendulum_expert, "cpu", verbose=False)
    assert summary["reward_scale"] == pytest.approx(dt.auto_reward_scale(data.episode_returns))
    assert list(run.glob("events.out.tfevents.*"))
    assert "step 60/60" in out.stdout

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = EventAccumulator(str(run)).Reload().Tags()["scalars"]
    for tag in ("losses/action_loss", "charts/SPS", "eval/episodic_return", "eval/normalized_score",
                "eval/target_-120/episodic_return", "eval/target_-600/normalized_score"):
        assert tag in tags, tags

    ckpt = torch.load(run / "decision_transformer.pt", weights_only=True)
    model = dt.make_model(ckpt["args"], data, ckpt["max_ep_len"])
    model.load_state_dict(ckpt["model"])
    model.eval()
    torch.testing.assert_close(ckpt["obs_mean"], data.obs_mean)
    # The reloaded model, on the checkpoint's seeds, scores exactly what training reported.
    returns, _ = dt.evaluate(model, data, ckpt["eval_seeds"], "cpu", target_return=-120.0,
                             reward_scale=ckpt["reward_scale"], bf16=dt.use_bf16("cpu", ckpt["args"]["bf16"]))
    np.testing.assert_allclose(returns, summary["final_returns"], rtol=1e-6)

    # --eval-checkpoint gives the same score as at the end of training, and asks for other returns on demand.
    eval_dir = run_dir / "eval"
    eval_dir.mkdir()
    out = run_script("decision_transformer.py", "--eval-checkpoint", run / "decision_transformer.pt", "--no-cuda",
                     cwd=eval_dir)
    assert out.returncode == 0, out.stderr
    _, ev = read_summary(eval_dir)
    assert ev["normalized_score"] == pytest.approx(summary["final_normalized_score"], rel=1e-9)
    assert ev["per_target"]["-600"]["returns"] == summary["final_per_target"]["-600"]["returns"]


def test_default_targets_come_from_the_dataset(pendulum_mixed, run_dir):
    out = run_script("decision_transformer.py", "--dataset-id", pendulum_mixed, *SMALL, "--total-steps", 2,
                     "--eval-episodes", 1, "--no-cuda", cwd=run_dir)
    assert out.returncode == 0, out.stderr
    _, summary = read_summary(run_dir)
    data = load_dataset(pendulum_mixed, "cpu", verbose=False)
    best, median = float(data.episode_returns.max()), float(data.episode_returns.median())
    assert summary["target_returns"] == [round(best, 1), round(median, 1)]


@pytest.mark.learning("decision_transformer")
def test_dt_fits_the_controllers_actions(pendulum_expert):
    # A short learning check that can fail: on the controller's data (actions a deterministic function
    # of the state plus noise of std 0.2, so an MSE floor of 0.04), the training loss must fall far
    # below the actions' variance, which is what a model that ignores its inputs gets.
    data = load_dataset(pendulum_expert, "cpu", verbose=False)
    start_of = torch.repeat_interleave(data.episode_starts, data.episode_lengths)
    timesteps = torch.arange(data.size) - start_of
    rtg = dt.returns_to_go(data.rewards, data.episode_starts, data.episode_lengths) * 1e-2
    obs = data.normalize_obs(data.observations)
    torch.manual_seed(0)
    model = dt.DecisionTransformer(3, 1, 32, 1, 1, 5, 200, 0.0, data.action_low, data.action_high)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    losses = []
    for _ in range(400):
        R, s, a, ts, mask = dt.sample_windows(torch.randint(0, data.size, (64,)), 5, start_of, rtg, obs,
                                              data.actions, timesteps)
        loss = dt.action_loss(model(R, s, a, ts, mask), a, mask)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimizer.step()
        losses.append(loss.item())
    variance = float(data.actions.var())
    assert np.mean(losses[:10]) > 0.8 * variance  # it starts knowing nothing...
    # ...and learns (0.39 x the variance when written; about 0.1 x after 1500 steps, too long for a test)
    assert np.mean(losses[-50:]) < 0.5 * variance, (np.mean(losses[-50:]), variance)


# check_args reports every bad flag at once: one run checks several (each run costs seconds of imports).
@pytest.mark.parametrize("flags, messages", [
    (["--batch-size", "0", "--context-len", "0", "--dropout", "1.0", "--warmup-steps", "-1", "--grad-clip", "0"],
     ["--batch-size must be positive (got 0)", "--context-len must be positive (got 0)",
      "--dropout must be in [0, 1) (got 1.0)", "--warmup-steps must be >= 0 (got -1)",
      "--grad-clip must be positive (got 0.0)"]),
    (["--embed-dim", "30", "--n-heads", "4", "--reward-scale", "-0.001", "--target-returns", "-100", "nan"],
     ["--embed-dim (30) must be a multiple of --n-heads (4)", "--reward-scale must be positive (got -0.001)",
      "--target-returns needs one or more finite returns"]),
    (["--reward-scale", "0"], ["--reward-scale must be positive (got 0.0)"]),
    (["--target-returns", "abc"], ["target-returns"]),
    (["--eval-checkpoint", "nosuch.pt"], ["--eval-checkpoint: no such file 'nosuch.pt'"]),
    (["--dataset-id", "mujoco/nosuchenv/medium-v0"], ["'mujoco/nosuchenv/medium-v0' is not on this machine"]),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(flags, messages, pendulum_expert, run_dir):
    out = run_script("decision_transformer.py", "--dataset-id", pendulum_expert, "--no-cuda", *flags, cwd=run_dir)
    assert out.returncode != 0
    for message in messages:
        assert message in out.stderr + out.stdout
    assert not (run_dir / "runs").exists()


def test_discrete_dataset_is_refused(discrete_dataset, run_dir):
    out = run_script("decision_transformer.py", "--dataset-id", discrete_dataset, "--no-cuda", cwd=run_dir)
    assert out.returncode != 0
    assert "action space Discrete(2)" in out.stderr and "continuous Box action space" in out.stderr
    assert not (run_dir / "runs").exists()
