"""Tiny datasets the tests build with Minari's own creation API (no jax), and a competent
Pendulum controller to make "expert" data without training anything."""

from __future__ import annotations

import gymnasium as gym
import minari
import numpy as np
from minari.data_collector import EpisodeBuffer


def write_dataset(dataset_id, episodes, env_id, observation_space=None, action_space=None,
                  ref_min_score=None, ref_max_score=None, eval_env=None):
    """episodes: list of dicts with observations (T+1, ...) or dict of those, actions (T, ...),
    rewards, terminations, truncations."""
    buffers = [
        EpisodeBuffer(id=i, observations=ep["observations"], actions=ep["actions"],
                      rewards=list(ep["rewards"]), terminations=list(ep["terminations"]),
                      truncations=list(ep["truncations"]))
        for i, ep in enumerate(episodes)
    ]
    return minari.create_dataset_from_buffers(
        dataset_id, buffers, env=env_id, eval_env=eval_env or env_id,
        observation_space=observation_space, action_space=action_space,
        ref_min_score=ref_min_score, ref_max_score=ref_max_score,
        algorithm_name="test", author="tests", author_email="tests@localhost",
        code_permalink="tests/testdata.py", description="built by the test suite",
    )


def pendulum_controller(obs: np.ndarray) -> np.ndarray:
    """Energy-pumping swing-up, then a PD controller near the top. obs: (n, 3) = cos, sin, thdot."""
    cos, sin, thdot = obs[:, 0], obs[:, 1], obs[:, 2]
    theta = np.arctan2(sin, cos)  # 0 = upright
    # Pendulum-v1: thddot = 15 sin(th) + 3 u, so E = thdot^2 / 2 + 15 cos(th) is 15 at rest upright.
    energy = 0.5 * thdot**2 + 15.0 * cos
    pump = np.where(energy < 15.0, 2.0 * np.sign(thdot + 1e-6), -2.0 * np.sign(thdot + 1e-6))
    pd = -8.0 * theta - 2.0 * thdot
    u = np.where(cos > 0.8, pd, pump)
    return np.clip(u, -2.0, 2.0)[:, None].astype(np.float32)


def rollout_pendulum(num_episodes, noise_std, seed, random_fraction=0.0):
    """Episodes of the controller with Gaussian action noise; a `random_fraction` of the episodes
    uses uniform random actions instead. Returns (episodes, returns)."""
    rng = np.random.default_rng(seed)
    env = gym.make("Pendulum-v1")
    episodes, returns = [], []
    for e in range(num_episodes):
        obs, _ = env.reset(seed=seed * 1000 + e)
        random_ep = rng.random() < random_fraction
        O, A, R, TE, TR = [obs], [], [], [], []
        done = False
        while not done:
            if random_ep:
                a = rng.uniform(-2, 2, size=(1,)).astype(np.float32)
            else:
                a = pendulum_controller(obs[None])[0] + noise_std * rng.standard_normal(1).astype(np.float32)
                a = np.clip(a, -2, 2).astype(np.float32)
            obs, r, term, trunc, _ = env.step(a)
            O.append(obs); A.append(a); R.append(float(r)); TE.append(term); TR.append(trunc)
            done = term or trunc
        episodes.append(dict(observations=np.array(O), actions=np.array(A), rewards=np.array(R),
                             terminations=np.array(TE), truncations=np.array(TR)))
        returns.append(sum(R))
    env.close()
    return episodes, np.array(returns)


def random_pendulum_return(num_episodes=20, seed=123):
    _, returns = rollout_pendulum(num_episodes, 0.0, seed, random_fraction=1.0)
    return float(returns.mean())


REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
# the scripts under test (a student's copy when the grader sets OFFLINE_RL_ROOT; see conftest.py)
ROOT = __import__("pathlib").Path(__import__("os").environ.get("OFFLINE_RL_ROOT", REPO)).resolve()


def run_script(script, *args, cwd, timeout=600):
    """Run `python <script> <args>` from the scripts' root in `cwd` (its runs/ folder lands there)."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, check=False,
                          capture_output=True, text=True, timeout=timeout)


def read_summary(cwd):
    """The summary.json of the only run under cwd/runs."""
    import json

    runs = list((__import__("pathlib").Path(cwd) / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0], json.loads((runs[0] / "summary.json").read_text())
