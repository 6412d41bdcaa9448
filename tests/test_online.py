"""--online-steps in iql.py, awac.py and cql.py: a dataset that records an env spec whose env is not
installed where the script runs is a clear error before anything is written. (Each script's own test
file covers a dataset with no env spec at all, the online buffer and runner, and a short run whose
summary holds both phases.)"""

import sys
import textwrap
import warnings

import gymnasium as gym
import pytest
from gymnasium.envs.registration import EnvSpec

from testdata import rollout_pendulum, run_script, write_dataset

SCRIPTS = ["iql.py", "awac.py", "cql.py"]
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
