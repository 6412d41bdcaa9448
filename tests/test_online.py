"""--online-steps in iql.py, awac.py, cql.py and cal_ql.py: a dataset that records an env spec whose env
is not installed where the script runs is a clear error before anything is written; the online
transitions, once stored, reach the gradient steps. (Each script's own test file covers a dataset with
no env spec at all, the online buffer and runner, and a short run whose summary holds both phases.)"""

import sys
import textwrap
import warnings

import gymnasium as gym
import pytest
from gymnasium.envs.registration import EnvSpec

from testdata import read_summary, rollout_pendulum, run_script, write_dataset

SCRIPTS = ["iql.py", "awac.py", "cql.py", "cal_ql.py"]
DATASET_ID = "test/pendulum/env-not-installed-v0"


@pytest.fixture(scope="module")
def dataset_with_uninstalled_env(tmp_path_factory, pendulum_refs):
    """Pendulum episodes stored with the spec of an env from a module that only this test process can
    import: minari builds the env once while writing the dataset, the scripts (other processes,
    without that module) cannot."""
    folder = tmp_path_factory.mktemp("env_only_here")
    (folder / "env_only_here_pendulum.py").write_text(textwrap.dedent("""\
        from gymnasium.envs.classic_control.pendulum import PendulumEnv


        class OnlyHerePendulum(PendulumEnv):
            pass
        """))
    sys.path.insert(0, str(folder))
    try:
        spec = EnvSpec(id="OnlyHerePendulum-v0", entry_point="env_only_here_pendulum:OnlyHerePendulum",
                       max_episode_steps=200)
        episodes, _ = rollout_pendulum(2, 0.2, seed=4)
        env = gym.make("Pendulum-v1")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            write_dataset(DATASET_ID, episodes, spec, observation_space=env.observation_space,
                          action_space=env.action_space, ref_min_score=pendulum_refs[0],
                          ref_max_score=pendulum_refs[1])
    finally:
        sys.path.remove(str(folder))
    return DATASET_ID


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_env_that_is_not_installed_is_a_clear_error_before_training(script, dataset_with_uninstalled_env,
                                                                        run_dir):
    out = run_script(script, "--dataset-id", dataset_with_uninstalled_env, "--online-steps", 100,
                     "--total-steps", 100, "--no-cuda", cwd=run_dir)
    assert out.returncode != 0, f"{script} should refuse a dataset whose env cannot be made; it exited 0"
    assert f"cannot make the environment of '{dataset_with_uninstalled_env}'" in out.stderr, (
        f"{script}: expected the error 'cannot make the environment of ...', got:\n{out.stderr[-2000:]}")
    assert "env_only_here_pendulum" in out.stderr, \
        f"{script}: the error should name what failed (the env's module cannot be imported):\n{out.stderr[-2000:]}"
    assert "Traceback" not in out.stderr, f"{script}: a clear error, not a traceback:\n{out.stderr[-2000:]}"
    assert not (run_dir / "runs").exists(), f"{script}: nothing may be written before the error"


# ---------------------------------------------------------------- online transitions reach the update

BONUS_ID = "test/pendulum/bonus-online-v0"
BONUS = 1000.0


@pytest.fixture(scope="module")
def bonus_env_dataset(tmp_path_factory, pendulum_refs):
    """Pendulum episodes (rewards <= 0) stored with the spec of a Pendulum whose every reward is raised by
    +1000 and whose episodes last 20 steps: online transitions carry rewards no offline row has. The env's
    module is made importable by the scripts through PYTHONPATH."""
    folder = tmp_path_factory.mktemp("bonus_env")
    (folder / "bonus_pendulum.py").write_text(textwrap.dedent(f"""\
        from gymnasium.envs.classic_control.pendulum import PendulumEnv


        class BonusPendulum(PendulumEnv):
            def step(self, action):
                obs, reward, terminated, truncated, info = super().step(action)
                return obs, reward + {BONUS}, terminated, truncated, info
        """))
    sys.path.insert(0, str(folder))
    try:
        spec = EnvSpec(id="BonusPendulum-v0", entry_point="bonus_pendulum:BonusPendulum", max_episode_steps=20)
        episodes, _ = rollout_pendulum(5, 0.5, seed=6)
        env = gym.make("Pendulum-v1")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            write_dataset(BONUS_ID, episodes, spec, observation_space=env.observation_space,
                          action_space=env.action_space, ref_min_score=pendulum_refs[0],
                          ref_max_score=pendulum_refs[1])
    finally:
        sys.path.remove(str(folder))
    return BONUS_ID, folder


# the value each script logs on its training batch (iql, awac) or on offline rows (cql, cal_ql)
Q_TAG = {"iql.py": "values/q", "awac.py": "values/q", "cql.py": "values/q_data", "cal_ql.py": "values/q_data"}
SMALL_NETS = {"iql.py": ["--hidden-dim", 32], "awac.py": ["--hidden-dim", 32],
              "cql.py": ["--hidden-dim", 32, "--cql-n-actions", 3], "cal_ql.py": ["--hidden-dim", 32, "--cql-n-actions", 3]}


@pytest.mark.parametrize("script", SCRIPTS)
def test_stored_online_transitions_reach_the_gradient_steps(script, bonus_env_dataset, run_dir, monkeypatch):
    """Offline rewards are <= 0; every online reward is above 980. Trained on batches that hold online rows,
    Q climbs far above anything the offline data support; on batches drawn from the offline rows alone, it
    stays where the offline phase left it. Fails if the online rows are stored but never sampled."""
    dataset_id, folder = bonus_env_dataset
    monkeypatch.setenv("PYTHONPATH", str(folder))
    out = run_script(script, "--dataset-id", dataset_id, "--total-steps", 200, "--online-steps", 400,
                     "--eval-freq", 200, "--eval-episodes", 1, "--batch-size", 64, "--no-cuda", *SMALL_NETS[script],
                     cwd=run_dir)
    assert out.returncode == 0, out.stderr[-3000:]
    run, summary = read_summary(run_dir)
    assert len(summary["online_episode_returns"]) == 20 and min(r for _, r in summary["online_episode_returns"]) > 19000

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    q = {e.step: e.value for e in events.Scalars(Q_TAG[script])}
    print(script, q)
    assert q[600] > q[200] + 10, (
        f"{script}: {Q_TAG[script]} was {q[200]:.1f} at the switch and {q[600]:.1f} after 400 online steps whose "
        f"rewards all exceed 980: the online transitions do not reach the gradient steps")
