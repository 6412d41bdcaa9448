"""decision_transformer.py: returns-to-go, windows, causality, padding, end to end, the return knob, bad input."""

import math

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


def test_returns_to_go_on_a_hand_made_episode():
    # Three episodes (3, 2 and 1 steps), rewards negative and positive, worked out by hand.
    rewards = torch.tensor([1.0, 2.0, 3.0, -10.0, -20.0, 5.0])
    rtg = dt.returns_to_go(rewards, torch.tensor([0, 3, 5]), torch.tensor([3, 2, 1]))
    torch.testing.assert_close(rtg, torch.tensor([6.0, 5.0, 3.0, -30.0, -20.0, 5.0]))


def test_returns_to_go_on_a_dataset_against_a_loop(pendulum_mixed):
    data = load_dataset(pendulum_mixed, "cpu", verbose=False)
    rtg = dt.returns_to_go(data.rewards, data.episode_starts, data.episode_lengths).numpy()
    r = data.rewards.numpy().astype(np.float64)
    for e in range(data.num_episodes):
        s, n = int(data.episode_starts[e]), int(data.episode_lengths[e])
        expected = [r[t:s + n].sum() for t in range(s, s + n)]
        np.testing.assert_allclose(rtg[s:s + n], expected, rtol=1e-5, atol=1e-3)
        assert rtg[s] == pytest.approx(float(data.episode_returns[e]), rel=1e-5)  # R_1 is the episode's return


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

    # The loss: the mean over real positions only, whatever the padded predictions and targets are.
    target = torch.rand(3, 6, 2)
    expected = ((out[:, 2:] - target[:, 2:]) ** 2).mean()
    torch.testing.assert_close(dt.action_loss(out, target, mask), expected)
    target2, out3 = target.clone(), out.clone()
    target2[:, :2], out3[:, :2] = 1e3, -1e3
    torch.testing.assert_close(dt.action_loss(out3, target2, mask), expected)


def test_auto_reward_scale():
    # The largest |episode return| lands in [1, 10): Pendulum (negative), D4RL hopper, halfcheetah.
    assert dt.auto_reward_scale(torch.tensor([-1262.0, -150.0])) == pytest.approx(1e-3)
    assert dt.auto_reward_scale(torch.tensor([300.0, 3600.0])) == pytest.approx(1e-3)
    assert dt.auto_reward_scale(torch.tensor([-280.0, 11000.0])) == pytest.approx(1e-4)
    assert dt.auto_reward_scale(torch.tensor([-0.5, 0.2])) == pytest.approx(10.0)


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
