"""Test fixtures. Every dataset lives under a temporary MINARI_DATASETS_PATH made for this pytest
session, set before anything imports Minari, so the tests never read or write ~/.minari."""

import os
import shutil
import sys
import tempfile
from pathlib import Path

_ROOT = tempfile.mkdtemp(prefix="offline-rl-tests-minari-")
os.environ["MINARI_DATASETS_PATH"] = _ROOT
os.environ.setdefault("MUJOCO_GL", "egl")
# One torch thread for the tests and the scripts they start: with other jobs on the cores, two
# threads per process were 5-25x slower (spinning OpenMP threads); the tests time nothing.
os.environ.setdefault("OMP_NUM_THREADS", "1")
REPO = Path(__file__).resolve().parents[1]
# The scripts under test: this repository's, or a student's copy when the grader (course/grade.py)
# points OFFLINE_RL_ROOT at it. The same checks serve both.
ROOT = Path(os.environ.get("OFFLINE_RL_ROOT", REPO)).resolve()
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import testdata  # noqa: E402

# Pendulum data from a competent controller (expert-like) and a mix with random episodes.
PENDULUM_EXPERT_ID = "test/pendulum/expert-v0"
PENDULUM_MIXED_ID = "test/pendulum/mixed-v0"
PENDULUM_RANDOM_ID = "test/pendulum/random-v0"


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "exercise(name): a check of the course exercise `name` (course/exercises.py); "
        "the grader runs these against a student's copy")
    config.addinivalue_line(
        "markers", "learning(script): the short learning check of `script`, which the grader reports")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def pendulum_refs():
    """(random mean return, controller mean return), the reference scores of the test datasets."""
    _, ctrl = testdata.rollout_pendulum(20, 0.0, seed=7)
    return testdata.random_pendulum_return(20, seed=123), float(ctrl.mean())


@pytest.fixture(scope="session")
def pendulum_expert(pendulum_refs):
    """20 episodes (4000 transitions) of the controller with action noise 0.2."""
    episodes, _ = testdata.rollout_pendulum(20, 0.2, seed=1)
    testdata.write_dataset(PENDULUM_EXPERT_ID, episodes, "Pendulum-v1",
                           ref_min_score=pendulum_refs[0], ref_max_score=pendulum_refs[1])
    return PENDULUM_EXPERT_ID


@pytest.fixture(scope="session")
def pendulum_mixed(pendulum_refs):
    """30 episodes: about half uniform-random, the rest the controller with strong noise (0.5)."""
    episodes, _ = testdata.rollout_pendulum(30, 0.5, seed=2, random_fraction=0.5)
    testdata.write_dataset(PENDULUM_MIXED_ID, episodes, "Pendulum-v1",
                           ref_min_score=pendulum_refs[0], ref_max_score=pendulum_refs[1])
    return PENDULUM_MIXED_ID


@pytest.fixture(scope="session")
def pendulum_random(pendulum_refs):
    episodes, _ = testdata.rollout_pendulum(20, 0.0, seed=3, random_fraction=1.0)
    testdata.write_dataset(PENDULUM_RANDOM_ID, episodes, "Pendulum-v1",
                           ref_min_score=pendulum_refs[0], ref_max_score=pendulum_refs[1])
    return PENDULUM_RANDOM_ID


@pytest.fixture(scope="session")
def discrete_dataset():
    """CartPole (Discrete(2) actions): every script must refuse it."""
    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(0)
    episodes = []
    for e in range(2):
        obs, _ = env.reset(seed=e)
        O, A, R, TE, TR = [obs], [], [], [], []
        done = False
        while not done:
            a = int(rng.integers(2))
            obs, r, te, tr, _ = env.step(a)
            O.append(obs); A.append(a); R.append(r); TE.append(te); TR.append(tr)
            done = te or tr
        episodes.append(dict(observations=np.array(O), actions=np.array(A), rewards=np.array(R),
                             terminations=np.array(TE), truncations=np.array(TR)))
    testdata.write_dataset("test/cartpole/random-v0", episodes, "CartPole-v1")
    return "test/cartpole/random-v0"


@pytest.fixture
def run_dir(tmp_path):
    """A working directory for a script run; its runs/ folder is inspected by the tests."""
    return tmp_path
