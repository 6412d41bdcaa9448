"""The loader: transition alignment, terminals vs truncations, Dict observations, scores, errors."""

import os
import time

import gymnasium as gym
import numpy as np
import pytest
import torch

import dict_env  # noqa: F401  (registers TestDictPoint-v0)
import testdata
from common import datasets
from common.datasets import DatasetError, flatten_observation, load_dataset

# (length, how it ends) per episode: ends in terminations and truncations, interleaved.
EPISODES = [(5, "term"), (3, "trunc"), (4, "term"), (6, "trunc"), (2, "term")]


@pytest.fixture(scope="module")
def aligned_id():
    """Observations encode (episode, step): any off-by-one or cross-episode pairing shows."""
    episodes = []
    for e, (T, end) in enumerate(EPISODES):
        steps = np.arange(T + 1)
        obs = np.stack([np.full(T + 1, e), steps, np.full(T + 1, 0.5)], axis=1).astype(np.float64)
        episodes.append(dict(
            observations=obs,
            actions=(steps[:T, None] / 100.0 + e / 10.0).astype(np.float32),
            rewards=(100.0 * e + steps[:T]).astype(np.float64),
            terminations=np.arange(T) == T - 1 if end == "term" else np.zeros(T, bool),
            truncations=np.arange(T) == T - 1 if end == "trunc" else np.zeros(T, bool),
        ))
    space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float64)
    testdata.write_dataset("test/aligned/steps-v0", episodes, "Pendulum-v1", observation_space=space,
                           ref_min_score=-10.0, ref_max_score=30.0)
    return "test/aligned/steps-v0"


def test_transitions_never_cross_episodes(aligned_id):
    data = load_dataset(aligned_id, "cpu", verbose=False)
    assert data.size == sum(T for T, _ in EPISODES)
    assert data.num_episodes == len(EPISODES)
    i = 0
    for e, (T, end) in enumerate(EPISODES):
        assert data.episode_starts[e] == i and data.episode_lengths[e] == T
        for t in range(T):
            assert data.observations[i].tolist() == [e, t, 0.5]
            assert data.next_observations[i].tolist() == [e, t + 1, 0.5]
            assert data.actions[i, 0].item() == pytest.approx(t / 100 + e / 10)
            assert data.rewards[i].item() == 100 * e + t
            last = t == T - 1
            assert data.terminals[i].item() == float(last and end == "term")
            assert data.truncations[i].item() == float(last and end == "trunc")
            i += 1
        assert data.episode_returns[e].item() == pytest.approx(sum(100 * e + t for t in range(T)))
    assert data.observations.dtype == torch.float32 and data.actions.dtype == torch.float32


def test_obs_statistics_and_action_bounds(aligned_id):
    data = load_dataset(aligned_id, "cpu", verbose=False)
    obs = data.observations.double()
    torch.testing.assert_close(data.obs_mean.double(), obs.mean(0), rtol=1e-6, atol=1e-6)
    std = obs.std(0, unbiased=False)
    assert data.obs_std[2].item() == pytest.approx(datasets.OBS_STD_FLOOR)  # a constant feature is floored
    torch.testing.assert_close(data.obs_std[:2].double(), std[:2], rtol=1e-5, atol=1e-6)
    assert data.action_low.tolist() == [-2.0] and data.action_high.tolist() == [2.0]


def test_normalized_score(aligned_id):
    data = load_dataset(aligned_id, "cpu", verbose=False)
    assert data.ref_source == "dataset"
    # 100 * (R - R_random) / (R_expert - R_random) with R_random = -10, R_expert = 30.
    np.testing.assert_allclose(data.normalized_score([-10.0, 30.0, 10.0, 50.0]), [0.0, 100.0, 50.0, 150.0])


def test_d4rl_reference_for_unscored_mujoco_ids(monkeypatch, capsys):
    # Minari's hosted mujoco/* sets carry no reference scores: D4RL's are used and labelled as such.
    episodes, _ = testdata.rollout_pendulum(1, 0.0, seed=0)
    testdata.write_dataset("mujoco/hopper/fake-v0", episodes, "Pendulum-v1")
    data = load_dataset("mujoco/hopper/fake-v0", "cpu", verbose=False)
    assert data.ref_source == "D4RL reference"
    assert (data.ref_min_score, data.ref_max_score) == datasets.D4RL_REFERENCE_SCORES["hopper"]
    assert "D4RL's reference" in capsys.readouterr().out
    testdata.write_dataset("test/unscored/x-v0", episodes, "Pendulum-v1")
    data = load_dataset("test/unscored/x-v0", "cpu", verbose=False)
    assert data.ref_source == "none" and data.normalized_score([1.0]) is None
    assert "raw returns only" in capsys.readouterr().out


def test_dict_observations_flattened_in_sorted_key_order():
    env = gym.make("TestDictPoint-v0")
    episodes = []
    for e in range(3):
        obs, _ = env.reset(seed=e)
        O, A, R, TE, TR = [obs], [], [], [], []
        done = False
        while not done:
            a = np.full(2, 0.1 * (e + 1), np.float32)
            obs, r, te, tr, _ = env.step(a)
            O.append(obs); A.append(a); R.append(r); TE.append(te); TR.append(tr)
            done = te or tr
        stacked = {k: np.stack([o[k] for o in O]) for k in O[0]}
        episodes.append(dict(observations=stacked, actions=np.array(A), rewards=np.array(R),
                             terminations=np.array(TE), truncations=np.array(TR)))
    testdata.write_dataset("test/dictpoint/data-v0", episodes, "TestDictPoint-v0")
    data = load_dataset("test/dictpoint/data-v0", "cpu", verbose=False)
    assert data.obs_dim == 6
    ep0 = episodes[0]["observations"]
    # sorted keys: achieved_goal, desired_goal, observation
    expected = np.concatenate([ep0["achieved_goal"][0], ep0["desired_goal"][0], ep0["observation"][0]])
    np.testing.assert_allclose(data.observations[0].numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(data.next_observations[0].numpy(),
                               flatten_observation({k: v[1] for k, v in ep0.items()}), rtol=1e-6)
    # The evaluation env returns the same flat vector.
    eval_env = data.make_env()
    obs, _ = eval_env.reset(seed=0)
    assert obs.shape == (6,) and eval_env.observation_space.shape == (6,)
    np.testing.assert_allclose(obs, data.observations[0].numpy(), rtol=1e-6)


def test_discrete_action_dataset_is_refused(discrete_dataset):
    with pytest.raises(DatasetError, match=r"action space Discrete\(2\).*continuous Box action space"):
        load_dataset(discrete_dataset, "cpu")


def test_unknown_dataset_id_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(datasets, "_network_reachable", lambda timeout=3.0: False)
    t0 = time.time()
    with pytest.raises(DatasetError) as err:
        load_dataset("mujoco/nosuchenv/medium-v0", "cpu")
    assert time.time() - t0 < 10
    msg = str(err.value)
    assert "'mujoco/nosuchenv/medium-v0' is not on this machine" in msg
    assert "minari download mujoco/nosuchenv/medium-v0" in msg
    assert "python -m common.make_dataset" in msg
    with pytest.raises(DatasetError, match="downloads are off"):
        load_dataset("mujoco/nosuchenv/medium-v0", "cpu", download=False)


def test_a_missing_local_set_names_the_builder_that_makes_it():
    maze = datasets._missing_dataset_message("local/pointmaze-stitch/umaze-whole-v0", "x")
    assert "python -m common.make_maze --kinds umaze-whole" in maze and "minari download" not in maze, maze
    hopper = datasets._damaged_dataset_message("local/hopper/medium-v0", OSError("truncated"))
    assert "python -m common.make_dataset --preset hopper --force" in hopper, hopper


def test_malformed_id():
    with pytest.raises(DatasetError, match="is not a Minari dataset id"):
        load_dataset("hopper-medium", "cpu")


def test_the_tests_never_touch_home_minari():
    import tempfile

    root = os.path.realpath(os.environ["MINARI_DATASETS_PATH"])
    assert root.startswith(os.path.realpath(tempfile.gettempdir()))
    assert not root.startswith(os.path.realpath(os.path.expanduser("~/.minari")))


def test_eval_env_kwargs_change_the_evaluation_env_only(aligned_id):
    data = load_dataset(aligned_id, "cpu", verbose=False)
    data.set_eval_env_kwargs({"g": 12.0, "m": 1.5})  # g: a constructor argument; m: an attribute
    shifted, plain = data.make_eval_env(), data.make_env()
    assert (shifted.unwrapped.g, shifted.unwrapped.m) == (12.0, 1.5)
    assert (plain.unwrapped.g, plain.unwrapped.m) == (10.0, 1.0), "the data's own env must stay unchanged"
    with pytest.raises(DatasetError, match="'mass' is neither an argument of PendulumEnv"):
        data.set_eval_env_kwargs({"mass": 2.0})
    with pytest.raises(DatasetError, match="cannot run with them"):
        data.set_eval_env_kwargs({"m": "heavy"})
    assert data.eval_env_kwargs == {"g": 12.0, "m": 1.5}, "a refused change must leave the last good one"
