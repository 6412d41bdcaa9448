"""bc.py: end to end, checkpoint reload, learning beats random, filtered BC, bad input."""

import math

import numpy as np
import pytest
import torch

import bc
from common.datasets import load_dataset
from testdata import read_summary, run_script


def test_end_to_end_checkpoint_reloads_with_same_actions(pendulum_expert, run_dir):
    out = run_script("bc.py", "--dataset-id", pendulum_expert, "--total-steps", 300, "--eval-freq", 150,
                     "--eval-episodes", 2, "--save-model", "--no-cuda", cwd=run_dir)
    assert out.returncode == 0, out.stderr
    run, summary = read_summary(run_dir)
    assert summary["steps"] == 300 and len(summary["eval_history"]) == 2
    assert math.isfinite(summary["final_normalized_score"]) and summary["sps"] > 0
    assert list(run.glob("events.out.tfevents.*"))
    assert "step 300/300" in out.stdout

    ckpt = torch.load(run / "bc.pt", weights_only=True)
    data = load_dataset(pendulum_expert, "cpu", verbose=False)
    actor = bc.Actor(data.obs_dim, data.act_dim, ckpt["args"]["hidden_dim"], data.action_low, data.action_high)
    actor.load_state_dict(ckpt["actor"])
    torch.testing.assert_close(ckpt["obs_mean"], data.obs_mean)
    # The reloaded policy, evaluated on the checkpoint's seeds, scores exactly what training reported.
    returns, scores = bc.evaluate(actor, data, ckpt["eval_seeds"], "cpu")
    np.testing.assert_allclose(returns, summary["final_returns"], rtol=1e-6)
    assert np.isfinite(scores).all()

    # --eval-checkpoint gives the same score as at the end of training.
    eval_dir = run_dir / "eval"
    eval_dir.mkdir()
    out = run_script("bc.py", "--eval-checkpoint", run / "bc.pt", "--no-cuda", cwd=eval_dir)
    assert out.returncode == 0, out.stderr
    _, ev = read_summary(eval_dir)
    assert ev["normalized_score"] == pytest.approx(summary["final_normalized_score"], rel=1e-9)

    # --eval-env-kwargs: with no torque at all the returns are the passive pendulum's, whatever the policy.
    shift_dir = run_dir / "shift"
    shift_dir.mkdir()
    out = run_script("bc.py", "--eval-checkpoint", run / "bc.pt", "--eval-env-kwargs", '{"max_torque": 0.0}',
                     "--no-cuda", cwd=shift_dir)
    assert out.returncode == 0, out.stderr
    _, shifted = read_summary(shift_dir)
    data.set_eval_env_kwargs({"max_torque": 0.0})
    passive, _ = bc.evaluate(lambda obs: torch.zeros(len(obs), 1), data, ckpt["eval_seeds"], "cpu")
    np.testing.assert_allclose(shifted["returns"], passive, rtol=1e-6)
    assert shifted["return_mean"] != pytest.approx(ev["return_mean"]), "the shifted env gave the unshifted returns"


def test_same_seed_same_results(pendulum_expert, tmp_path):
    results = []
    for i in range(2):
        (tmp_path / str(i)).mkdir()
        out = run_script("bc.py", "--dataset-id", pendulum_expert, "--total-steps", 200, "--eval-freq", 100,
                         "--eval-episodes", 2, "--no-cuda", "--seed", 3, cwd=tmp_path / str(i))
        assert out.returncode == 0, out.stderr
        results.append(read_summary(tmp_path / str(i))[1])
    assert results[0]["eval_history"] == results[1]["eval_history"]
    assert results[0]["final_returns"] == results[1]["final_returns"]


def test_capture_video_writes_evaluation_videos(pendulum_expert, run_dir):
    out = run_script("bc.py", "--dataset-id", pendulum_expert, "--total-steps", 100, "--eval-freq", 100,
                     "--eval-episodes", 2, "--no-cuda", "--capture-video", cwd=run_dir)
    assert out.returncode == 0, out.stderr
    run, _ = read_summary(run_dir)
    videos = list((run / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000  # one episode of the first env


@pytest.mark.exercise("bc.bc_loss")
def test_bc_loss_on_hand_values():
    pred = torch.tensor([[1.0, 0.0], [0.5, -1.0]])
    target = torch.tensor([[0.0, 0.0], [0.5, 1.0]])
    # squared errors 1, 0, 0, 4: their mean over batch and action dimensions is 5 / 4
    got = float(bc.bc_loss(pred, target))
    assert got == pytest.approx(1.25), f"BC loss: for errors (1, 0) and (0, -2) expected 1.25, got {got:.4g}"
    got = float(bc.bc_loss(target, target))
    assert got == pytest.approx(0.0), f"BC loss: for pi(s) = a expected 0, got {got:.4g}"
    pred = torch.zeros(3, 1, requires_grad=True)
    bc.bc_loss(pred, torch.ones(3, 1)).backward()
    assert pred.grad is not None and (pred.grad < 0).all(), \
        "BC loss: its gradient must pull pi(s) towards the dataset's action a"


def test_actor_squashes_scales_and_shifts_into_asymmetric_bounds():
    low, high = torch.tensor([-1.0, 0.0]), torch.tensor([3.0, 0.5])
    actor = bc.Actor(2, 2, 8, low, high)
    with torch.no_grad():
        actor.net[-1].weight.zero_()
        actor.net[-1].bias.copy_(torch.tensor([0.5, -2.0]))
    out = actor(torch.randn(4, 2))
    # tanh(u) * (high - low) / 2 + (high + low) / 2, for the pre-activations u = (0.5, -2)
    expected = torch.tanh(torch.tensor([0.5, -2.0])) * (high - low) / 2 + (high + low) / 2
    torch.testing.assert_close(out, expected.expand(4, 2))
    with torch.no_grad():  # huge pre-activations land inside the bounds, at the edges
        actor.net[-1].bias.copy_(torch.tensor([50.0, -50.0]))
    out = actor(torch.randn(4, 2))
    torch.testing.assert_close(out, torch.tensor([3.0, 0.0]).expand(4, 2))


@pytest.mark.learning("bc")
def test_bc_learns_to_beat_random(pendulum_expert, run_dir):
    # The controller's data is normalised to 100, the random policy to 0: BC must get clearly above.
    out = run_script("bc.py", "--dataset-id", pendulum_expert, "--total-steps", 2000, "--eval-freq", 2000,
                     "--eval-episodes", 10, "--no-cuda", cwd=run_dir)
    assert out.returncode == 0, out.stderr
    _, summary = read_summary(run_dir)
    assert summary["final_normalized_score"] > 60, summary


def test_filtered_bc_keeps_exactly_the_top_episodes(pendulum_mixed):
    data = load_dataset(pendulum_mixed, "cpu", verbose=False)
    returns = data.episode_returns.numpy()
    for fraction in (0.1, 0.5, 1.0):
        keep = bc.top_episode_transitions(data, fraction).numpy()
        k = math.ceil(fraction * data.num_episodes)
        top = set(np.argsort(-returns, kind="stable")[:k].tolist())
        starts, lengths = data.episode_starts.numpy(), data.episode_lengths.numpy()
        expected = np.concatenate([np.arange(starts[e], starts[e] + lengths[e]) for e in sorted(top)])
        assert sorted(keep.tolist()) == expected.tolist()
        kept_returns = returns[sorted(top)]
        assert kept_returns.min() >= np.delete(returns, sorted(top)).max(initial=-np.inf)


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "0"], "--batch-size must be positive (got 0)"),
    (["--batch-size", "-5"], "--batch-size must be positive (got -5)"),
    (["--top-fraction", "0"], "--top-fraction must be in (0, 1] (got 0.0)"),
    (["--top-fraction", "1.5"], "--top-fraction must be in (0, 1] (got 1.5)"),
    (["--dataset-id", "mujoco/nosuchenv/medium-v0"], "'mujoco/nosuchenv/medium-v0' is not on this machine"),
    (["--dataset-id", "nonsense"], "is not a Minari dataset id"),
    (["--batch-size", "abc"], "batch-size"),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(flags, message, pendulum_expert, run_dir):
    out = run_script("bc.py", "--dataset-id", pendulum_expert, "--no-cuda", *flags, cwd=run_dir)
    assert out.returncode != 0
    assert message in out.stderr + out.stdout
    assert not (run_dir / "runs").exists()


def test_discrete_dataset_is_refused(discrete_dataset, run_dir):
    out = run_script("bc.py", "--dataset-id", discrete_dataset, "--no-cuda", cwd=run_dir)
    assert out.returncode != 0
    assert "action space Discrete(2)" in out.stderr and "continuous Box action space" in out.stderr
    assert not (run_dir / "runs").exists()
