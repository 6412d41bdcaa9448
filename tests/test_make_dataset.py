"""common/make_dataset.py: the pendulum-tiny suite built end to end into temporary dataset roots
(never ~/.minari), then checked for content, reference scores, episode order, seeds, determinism,
reuse, bad input and interrupted builds."""

import dataclasses
import json
import os
import re

import gymnasium as gym
import minari
import numpy as np
import pytest
import torch

from common import make_dataset as md

IDS = {k: f"local/pendulum-tiny/{k}-v0" for k in md.KINDS}
ENV_VAR = "MINARI_DATASETS_PATH"


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A dataset root of this module's own, restored afterwards."""
    old = os.environ.get(ENV_VAR)
    path = tmp_path_factory.mktemp("minari-make-dataset")
    os.environ[ENV_VAR] = str(path)
    yield path
    if old is None:
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = old


@pytest.fixture(scope="module")
def built(root):
    return md.build_suite("pendulum-tiny", seed=0)


def _result(ds) -> dict:
    desc = ds.storage.metadata["description"]
    return json.loads(re.search(r"^build-result: (\{.*\})$", desc, flags=re.M).group(1))


def _fake_episodes(n=2):
    space = gym.make("Pendulum-v1").action_space
    rng = np.random.default_rng(0)
    return md.rollouts("Pendulum-v1", lambda o: rng.uniform(space.low, space.high, (len(o), 1)), 2, 0, episodes=n)


def test_all_five_load_with_reference_scores(built, root):
    assert built == [IDS[k] for k in md.KINDS]
    assert sorted(minari.list_local_datasets()) == sorted(IDS.values())
    refs = set()
    for ds_id in built:
        ds = minari.load_dataset(ds_id)
        meta = ds.storage.metadata
        assert meta["ref_min_score"] < meta["ref_max_score"]
        refs.add((meta["ref_min_score"], meta["ref_max_score"]))
        assert "Stable-Baselines3" in meta["description"] and "seed 0" in meta["description"]
        ep = ds[0]
        assert ep.observations.dtype == np.float32 and ep.actions.dtype == np.float32
        assert ep.observations.shape == (len(ep.rewards) + 1, 3)
        env = ds.recover_environment(eval_env=True)
        assert env.spec.id == "Pendulum-v1"
        env.close()
    assert len(refs) == 1  # one suite, one pair of reference scores
    assert not [p for p in os.listdir(root) if p.startswith(".")]  # no staging leftovers


def test_medium_expert_is_medium_then_expert(built):
    med, exp, me = (minari.load_dataset(IDS[k]) for k in ("medium", "expert", "medium-expert"))
    assert me.total_episodes == med.total_episodes + exp.total_episodes
    assert me.total_steps == med.total_steps + exp.total_steps
    for a, b in zip(me.iterate_episodes(), [*med.iterate_episodes(), *exp.iterate_episodes()]):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)


def test_medium_replay_is_the_training_stream_in_order(built):
    ds = minari.load_dataset(IDS["medium-replay"])
    cutoff = _result(ds)["medium_step"]
    episodes = list(ds.iterate_episodes())
    lengths = [len(e.rewards) for e in episodes]
    # only whole episodes: every one runs to Pendulum's time limit, and they end by the medium step
    assert lengths == [200] * len(episodes) and ds.total_steps == (cutoff // 200) * 200
    assert all(e.truncations[-1] and not e.truncations[:-1].any() and not e.terminations.any() for e in episodes)
    seeds = [m.get("seed") for m in ds.storage.get_episode_metadata(range(len(episodes)))]
    assert seeds[0] == 0 and all(s is None for s in seeds[1:])
    # replaying the actions in one env seeded like SB3's training env reproduces every episode, in order
    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    for e in episodes:
        np.testing.assert_allclose(obs, e.observations[0], rtol=0, atol=1e-6)
        for t, a in enumerate(e.actions):
            obs, r, *_ = env.step(a)
            np.testing.assert_allclose(obs, e.observations[t + 1], rtol=0, atol=1e-6)
            assert r == pytest.approx(e.rewards[t], rel=1e-6)
        obs, _ = env.reset()


def test_collection_seeds_are_recorded_and_true(built):
    ds = minari.load_dataset(IDS["medium"])
    seeds = [m["seed"] for m in ds.storage.get_episode_metadata(range(ds.total_episodes))]
    assert seeds == [md._seed_base(0, 2) + k for k in range(ds.total_episodes)]
    env = gym.make("Pendulum-v1")
    for seed, e in zip(seeds, ds.iterate_episodes()):
        obs, _ = env.reset(seed=int(seed))
        np.testing.assert_array_equal(obs, e.observations[0])
        for t, a in enumerate(e.actions):
            obs, *_ = env.step(a)
            np.testing.assert_array_equal(obs, e.observations[t + 1])


def test_same_seed_same_data(built, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "again"))
    np.random.seed(123)
    torch.manual_seed(123)
    before = np.random.get_state()[1].copy(), torch.get_rng_state().clone(), torch.get_num_threads()
    assert md.build_suite("pendulum-tiny", seed=0) == built
    # a script calling ensure_dataset keeps its random streams and thread count
    assert (np.random.get_state()[1] == before[0]).all() and torch.equal(torch.get_rng_state(), before[1])
    assert torch.get_num_threads() == before[2]
    again = {k: list(minari.load_dataset(IDS[k]).iterate_episodes()) for k in md.KINDS}
    meta2 = {k: minari.load_dataset(IDS[k]).storage.metadata for k in md.KINDS}
    monkeypatch.undo()
    for k in md.KINDS:
        first = minari.load_dataset(IDS[k])
        assert first.storage.metadata["ref_max_score"] == meta2[k]["ref_max_score"]
        assert first.storage.metadata["description"] == meta2[k]["description"]
        assert len(again[k]) == first.total_episodes
        for a, b in zip(first.iterate_episodes(), again[k]):
            for f in ("observations", "actions", "rewards", "terminations", "truncations"):
                np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


def test_existing_datasets_are_reused(built, root, capsys):
    stamp = {p: p.stat().st_mtime_ns for p in root.rglob("*.hdf5")}
    assert md.build_suite("pendulum-tiny", seed=0) == built
    assert capsys.readouterr().out.count("reusing existing") == 5
    assert stamp == {p: p.stat().st_mtime_ns for p in root.rglob("*.hdf5")}
    md.ensure_dataset(IDS["medium"])  # present: nothing to do
    md.ensure_dataset("mujoco/hopper/medium-v0")  # not a preset's: nothing to do
    assert capsys.readouterr().out == ""


def test_mixing_settings_in_one_suite_is_refused(built, root, tmp_path, capsys):
    # a missing kind next to datasets built with other settings would give the suite two behaviour policies
    (root / IDS["random"]).rename(tmp_path / "random-v0")
    try:
        with pytest.raises(SystemExit) as exc:
            md.main(["--preset", "pendulum-tiny", "--sac-steps", "1100"])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "built with other settings" in err and "sac_steps: 1200 here vs 1100 asked" in err and "--force" in err
    finally:
        (tmp_path / "random-v0").rename(root / IDS["random"])


@pytest.mark.parametrize("env_id, message", [
    ("Foo-v0", "unknown Gymnasium env id 'Foo-v0'"),
    ("Pendulum-v99", "unknown Gymnasium env id 'Pendulum-v99'"),
    ("CartPole-v1", "CartPole-v1 has a Discrete action space; make_dataset needs a continuous (Box) action space"),
])
def test_bad_env_is_refused_and_nothing_written(env_id, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "root"))
    with pytest.raises(SystemExit) as exc:
        md.main(["--env", env_id])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "root").exists()


def test_interrupted_write_leaves_no_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    from minari.dataset._storages import hdf5_storage

    real, calls = hdf5_storage._add_episode_to_group, []

    def dies_on_second_episode(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C in the middle of writing
        return real(*a, **kw)

    monkeypatch.setattr(hdf5_storage, "_add_episode_to_group", dies_on_second_episode)
    with pytest.raises(KeyboardInterrupt):
        md._write_dataset("local/tiny-test/random-v0", "Pendulum-v1", _fake_episodes(3), algorithm_name="x",
                          description="x", ref_min=-1.0, ref_max=0.0, ref_episodes=1, force=False)
    assert len(calls) == 2  # it did die half-way through the file
    assert minari.list_local_datasets() == {}
    with pytest.raises(FileNotFoundError):
        minari.load_dataset("local/tiny-test/random-v0")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]
    assert os.environ[ENV_VAR] == str(tmp_path)  # restored


def test_force_replaces_a_dataset_whole(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    ds_id = "local/tiny-test/random-v0"
    for n, force in ((2, False), (3, True)):
        md._write_dataset(ds_id, "Pendulum-v1", _fake_episodes(n), algorithm_name="x", description="x",
                          ref_min=-1.0, ref_max=0.0, ref_episodes=1, force=force)
        assert minari.load_dataset(ds_id).total_episodes == n
    assert list(minari.list_local_datasets()) == [ds_id]
    from minari.namespace import list_local_namespaces

    assert "local/tiny-test" in list_local_namespaces()  # namespace metadata carried over from staging
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_interrupted_training_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    real = md.rollouts

    def interrupted(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(md, "rollouts", interrupted)  # dies at the first snapshot score
    with pytest.raises(KeyboardInterrupt):
        md.build_suite("pendulum-tiny", seed=0)
    monkeypatch.setattr(md, "rollouts", real)
    assert minari.list_local_datasets() == {}
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_preset_for_dataset_id():
    assert md.preset_for_dataset_id("local/pendulum/medium-v0") == "pendulum"
    assert md.preset_for_dataset_id("local/pendulum-tiny/random-v0") == "pendulum-tiny"
    assert md.preset_for_dataset_id(md.DEFAULT_DATASET_ID) == "pendulum"
    assert md.preset_for_dataset_id("local/hopper/medium-expert-v0") == "hopper"
    for other in ("mujoco/hopper/medium-v0", "D4RL/pen/human-v2", "local/pendulum/medium-v1",
                  "local/pendulum/simple-v0", "local/unknown/medium-v0", "pendulum/medium-v0"):
        assert md.preset_for_dataset_id(other) is None


def test_medium_replay_never_holds_a_cut_episode(built):
    """pendulum-tiny's medium snapshot lies mid-episode (not a multiple of 200): the episode running
    there must be left out, or its partial return would pass for an episode's return."""
    ds = minari.load_dataset(IDS["medium-replay"])
    assert _result(ds)["medium_step"] % 200 != 0  # the case this test is about
    from common.datasets import load_dataset

    data = load_dataset(IDS["medium-replay"], "cpu", verbose=False)
    assert (data.episode_lengths == data.max_episode_steps).all()
    full = [e.rewards.sum() for e in ds.iterate_episodes()]
    np.testing.assert_allclose(data.episode_returns.numpy(), full, rtol=1e-5)


def _snap(step, mean_return):
    return {"step": step, "returns": np.array([mean_return])}


def test_medium_is_the_first_snapshot_in_the_band():
    # normalised scores with ref 0..100: 0.1, 0.35 (first in band), 0.40 (closest to 0.4), 0.9, final
    snaps = [_snap(1, 10), _snap(2, 35), _snap(3, 40), _snap(4, 90), _snap(5, 100)]
    medium, score, in_band = md._pick_medium(snaps, 0.0, 100.0)
    assert medium["step"] == 2 and score == pytest.approx(0.35) and in_band
    # none in the band: the closest to the target, flagged
    snaps = [_snap(1, 10), _snap(2, 60), _snap(3, 100)]
    medium, _, in_band = md._pick_medium(snaps, 0.0, 100.0)
    assert medium["step"] == 2 and not in_band
    # the final snapshot (the expert) is never the medium one, even when it alone is in the band
    medium, _, _ = md._pick_medium([_snap(1, 0), _snap(2, 40)], 0.0, 100.0)
    assert medium["step"] == 1


def test_sac_steps_must_be_whole_rounds_of_train_freq(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    with pytest.raises(SystemExit) as e:  # rejected before SAC trains (the build would take minutes)
        md.main(["--preset", "pendulum", "--sac-steps", "251"])
    assert e.value.code == 2
    assert "must be a multiple of SAC's train_freq (4)" in capsys.readouterr().err
    assert not os.listdir(tmp_path)


def test_sac_stops_at_the_stop_return():
    cfg = dataclasses.replace(md.PRESETS["pendulum-tiny"], stop_return=-1e9)  # any snapshot reaches it
    model, rec = md._train(cfg, seed=0)
    assert [s["step"] for s in rec.snapshots] == [cfg.snapshot_every]
    assert model.num_timesteps == cfg.snapshot_every and rec.stopped_early
    cfg = dataclasses.replace(cfg, stop_return=None, sac_steps=300)
    _, rec = md._train(cfg, seed=0)
    assert [s["step"] for s in rec.snapshots] == [100, 200, 300] and not rec.stopped_early


def test_mujoco_presets_stop_at_d4rl_expert_reference():
    from common.datasets import D4RL_REFERENCE_SCORES

    for name in ("hopper", "halfcheetah", "walker2d"):
        assert md.PRESETS[name].stop_return == D4RL_REFERENCE_SCORES[name][1]
