"""Synthetic Hopper-shaped datasets for speed benchmarks: Hopper-v5's spaces (obs 11 float64,
action 3), random contents. Speed does not depend on what the numbers are."""

from __future__ import annotations

import minari
import numpy as np
from minari.data_collector import EpisodeBuffer


def make_hopper_shaped(dataset_id: str, episodes: int, episode_length: int, seed: int = 0):
    """Build (or reuse) `dataset_id` with episodes * episode_length transitions."""
    try:
        return minari.load_dataset(dataset_id)
    except FileNotFoundError:
        pass
    rng = np.random.default_rng(seed)
    buffers = []
    for e in range(episodes):
        T = episode_length
        buffers.append(EpisodeBuffer(
            id=e,
            observations=rng.standard_normal((T + 1, 11)),  # float64, as Hopper stores them
            actions=rng.uniform(-1, 1, (T, 3)).astype(np.float32),
            rewards=list(rng.standard_normal(T)),
            terminations=[False] * (T - 1) + [e % 2 == 0],
            truncations=[False] * (T - 1) + [e % 2 == 1],
        ))
    return minari.create_dataset_from_buffers(
        dataset_id, buffers, env="Hopper-v5", algorithm_name="synthetic", author="benchmarks",
        author_email="benchmarks@localhost", code_permalink="benchmarks/synthetic.py",
        description="random numbers in Hopper-v5's spaces, for speed benchmarks",
        ref_min_score=-20.272305, ref_max_score=3234.3,
    )
