"""The same Hopper-shaped random data in both children (numpy only: both venvs have it). Speed does not
depend on what the numbers are, only on their shapes."""

import numpy as np

from benchmarks.peers.settings import ACT_DIM, EPISODE_LENGTH, EPISODES, OBS_DIM


def hopper_shaped(episodes: int = EPISODES, length: int = EPISODE_LENGTH, seed: int = 0) -> dict:
    """Flat arrays of episodes * length transitions, episodes one after another; observations and
    next_observations are the same per-episode sequence shifted by one step. Even episodes end in a
    termination, odd ones in a time limit."""
    rng = np.random.default_rng(seed)
    seq = rng.standard_normal((episodes, length + 1, OBS_DIM)).astype(np.float32)
    ends = np.zeros((episodes, length), np.float32)
    ends[:, -1] = 1.0
    even = (np.arange(episodes) % 2 == 0)[:, None]
    return dict(
        observations=seq[:, :-1].reshape(-1, OBS_DIM),
        next_observations=seq[:, 1:].reshape(-1, OBS_DIM),
        actions=rng.uniform(-1, 1, (episodes * length, ACT_DIM)).astype(np.float32),
        rewards=rng.standard_normal(episodes * length).astype(np.float32),
        terminals=(ends * even).reshape(-1),
        timeouts=(ends * ~even).reshape(-1),
        episode_length=length,
    )
