"""The tiny loader every script imports: a Minari dataset id in, tensors on the training device out.

    data = load_dataset("local/pendulum/medium-replay-v0", device)
    idx = torch.randint(0, data.size, (256,), device=device)
    s, a, r, s2, d = data.observations[idx], data.actions[idx], ...

Conventions (docs/datasets.md):
- A Minari episode stores T+1 observations and T actions. Transition t of an episode is
  (obs[t], act[t], rew[t], obs[t+1], terminated[t]); transitions are built per episode and then
  joined, so a next observation never belongs to another episode.
- `terminals` is 1.0 only where the episode terminated (a true end of the MDP). A truncation (time
  limit) is not a terminal: the last transition of a truncated episode still bootstraps from its
  next observation.
- Dict observations are flattened: keys in sorted order, recursively, each leaf flattened in C order,
  concatenated. The evaluation env is wrapped to return the same flat vector.
- Normalised score: 100 * (R - R_random) / (R_expert - R_random), D4RL's convention (Minari's own
  `get_normalized_score` returns the fraction, without the 100).
"""

from __future__ import annotations

import re
import socket
import time
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import gymnasium as gym
import numpy as np
import torch

# D4RL's reference returns (d4rl/infos.py: REF_MIN_SCORE / REF_MAX_SCORE, the same for every dataset
# of an environment). Used for Minari's hosted mujoco/* sets, which carry no reference scores of
# their own, and labelled "D4RL reference" wherever they are used.
D4RL_REFERENCE_SCORES = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
}

OBS_STD_FLOOR = 1e-3
# What every script trains on by default; built on the spot by common/make_dataset.py when missing.
DEFAULT_DATASET_ID = "local/pendulum/medium-replay-v0"
_ID_PATTERN = re.compile(r"^[\w.:-]+(/[\w.:-]+)*-v\d+$")


class DatasetError(ValueError):
    """A dataset that cannot be used, with a message that says why and what to do."""


@dataclass
class OfflineDataset:
    """A Minari dataset as flat tensors on one device, plus what evaluation needs."""

    dataset_id: str
    observations: torch.Tensor  # (N, obs_dim) float32, raw (not normalised)
    actions: torch.Tensor  # (N, act_dim) float32
    rewards: torch.Tensor  # (N,) float32
    next_observations: torch.Tensor  # (N, obs_dim) float32
    terminals: torch.Tensor  # (N,) float32, 1.0 only at terminations
    truncations: torch.Tensor  # (N,) float32, 1.0 at the last step of a truncated episode
    episode_starts: torch.Tensor  # (E,) int64, index of each episode's first transition
    episode_lengths: torch.Tensor  # (E,) int64
    episode_returns: torch.Tensor  # (E,) float32, undiscounted
    obs_mean: torch.Tensor  # (obs_dim,)
    obs_std: torch.Tensor  # (obs_dim,), floored at OBS_STD_FLOOR
    action_low: torch.Tensor  # (act_dim,)
    action_high: torch.Tensor  # (act_dim,)
    ref_min_score: Optional[float]
    ref_max_score: Optional[float]
    ref_source: str  # "dataset", "D4RL reference", or "none" (raw returns only)
    max_episode_steps: Optional[int]  # the env's time limit (from the dataset's env spec), if it has one
    make_env: Callable[..., gym.Env]  # make_env(render_mode=None, **overrides) -> the data's env, flat observations
    # Evaluation-only changes of the env (--eval-env-kwargs), e.g. {"m": 1.3}: a dynamics-shift test.
    eval_env_kwargs: dict = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.observations.shape[0]

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def act_dim(self) -> int:
        return self.actions.shape[1]

    @property
    def num_episodes(self) -> int:
        return self.episode_starts.shape[0]

    def make_eval_env(self, render_mode: Optional[str] = None) -> gym.Env:
        """The evaluation env: the data's env with `eval_env_kwargs` applied."""
        return self.make_env(render_mode=render_mode, **self.eval_env_kwargs)

    def set_eval_env_kwargs(self, overrides: dict) -> None:
        """Evaluate in a changed env. Each key is an argument of the env's constructor (Hopper's
        `reset_noise_scale`, Pendulum's `g`) or an attribute of the unwrapped env (Pendulum's `m`, `l`).
        A key that is neither raises DatasetError here, before any training."""
        try:
            env = self.make_env(**overrides)
            env.reset(seed=0)
            env.step(env.action_space.sample())  # a value of the wrong type fails here, not mid-training
            env.close()
        except DatasetError:
            raise
        except Exception as e:
            raise DatasetError(f"--eval-env-kwargs {overrides}: the env cannot run with them "
                               f"({type(e).__name__}: {e})") from e
        self.eval_env_kwargs = dict(overrides)

    def normalize_obs(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_mean) / self.obs_std

    def normalized_score(self, returns) -> Optional[np.ndarray]:
        """100 * (R - R_random) / (R_expert - R_random); None when there is no reference."""
        if self.ref_min_score is None or self.ref_max_score is None:
            return None
        returns = np.asarray(returns, dtype=np.float64)
        return 100.0 * (returns - self.ref_min_score) / (self.ref_max_score - self.ref_min_score)


def flatten_observation(obs, lead_dims: int = 0) -> np.ndarray:
    """Flatten a Box or (nested) Dict observation: sorted keys, each leaf in C order, concatenated.

    `lead_dims` leading axes are kept (1 for a stacked episode of T+1 observations).
    """
    if isinstance(obs, dict):
        return np.concatenate([flatten_observation(obs[k], lead_dims) for k in sorted(obs)], axis=-1)
    obs = np.asarray(obs)
    return obs.reshape(obs.shape[:lead_dims] + (-1,))


def _flat_size(space: gym.Space) -> int:
    if isinstance(space, gym.spaces.Dict):
        return sum(_flat_size(space[k]) for k in sorted(space.keys()))
    if isinstance(space, gym.spaces.Box):
        return int(np.prod(space.shape))
    raise DatasetError(f"observation space {space} is not supported: only Box and (nested) Dict of Box")


class FlattenDictObservation(gym.ObservationWrapper):
    """Makes an env with Dict observations return the loader's flat vector (same key order)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        n = _flat_size(env.observation_space)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (n,), np.float32)

    def observation(self, observation):
        return flatten_observation(observation).astype(np.float32)


def _env_name(dataset_id: str) -> str:
    """'mujoco/hopper/medium-v0' -> 'hopper'; 'D4RL/pen/human-v2' -> 'pen'."""
    parts = dataset_id.split("/")
    return parts[-2].lower() if len(parts) >= 2 else parts[0].lower()


def _network_reachable(timeout: float = 3.0) -> bool:
    # Minari's remote retries for ~20 s when offline; a quick probe lets us fail within seconds.
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _build_hint(dataset_id: str, force: bool = False) -> str:
    """How the project builds a local dataset: the PointMaze stitching sets or a D4RL-style suite."""
    parts = dataset_id.split("/")
    again = " --force" if force else ""
    if len(parts) == 3 and parts[0] == "local" and parts[1] == "pointmaze-stitch":
        return f"build it with `python -m common.make_maze --kinds {parts[2].rsplit('-v', 1)[0]}{again}` (docs/overview.md)"
    preset = parts[1] if len(parts) == 3 and parts[0] == "local" else "pendulum"
    return (f"build it with `python -m common.make_dataset --preset {preset}{again}` (D4RL-style ids "
            f"local/<env>/<random|medium|medium-replay|expert|medium-expert>-v0; see docs/datasets.md)")


def _missing_dataset_message(dataset_id: str, why: str) -> str:
    remote = (
        f"  - A remote Minari dataset: on a machine with internet run `minari download {dataset_id}` "
        f"(needs `pip install \"minari[hf]\"`), then copy ~/.minari/datasets/{dataset_id} here "
        f"(or point MINARI_DATASETS_PATH at it).\n"
    )
    return (
        f"Dataset '{dataset_id}' is not on this machine ({why}).\n"
        + ("" if dataset_id.startswith("local/") else remote)
        + f"  - A local dataset: {_build_hint(dataset_id)}.\n"
        f"  - Datasets on this machine: `minari list local`."
    )


def _dataset_dir(dataset_id: str):
    from minari.storage import get_dataset_path

    return get_dataset_path(dataset_id)


def _damaged_dataset_message(dataset_id: str, error: Exception) -> str:
    try:
        where = str(_dataset_dir(dataset_id) / "data" / "main_data.hdf5")
    except Exception:
        where = f"the files of '{dataset_id}'"
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    if dataset_id.startswith("local/"):
        how = f"re{_build_hint(dataset_id, force=True)}, or delete {Path(where).parents[1]}"
    else:
        how = f"download it again: `minari download {dataset_id} --force` (on a machine with internet)"
    return f"Dataset '{dataset_id}' is damaged: cannot read {where} ({first}).\n  To fix it, {how}."


def _open_minari(dataset_id: str, download: bool):
    import minari

    if not _ID_PATTERN.match(dataset_id):
        raise DatasetError(
            f"'{dataset_id}' is not a Minari dataset id: ids look like 'namespace/name-vN', "
            f"e.g. 'mujoco/hopper/medium-v0' or 'local/pendulum/medium-v0'."
        )
    if dataset_id.startswith("local/"):
        from common import make_dataset

        # The project's own datasets are built on the spot (this is how `python bc.py` runs offline).
        make_dataset.ensure_dataset(dataset_id)
    try:
        return minari.load_dataset(dataset_id)
    except FileNotFoundError:
        pass
    except OSError as e:  # h5py: a truncated or corrupted file
        raise DatasetError(_damaged_dataset_message(dataset_id, e)) from None
    if dataset_id.startswith("local/"):
        raise DatasetError(_missing_dataset_message(dataset_id, "local ids are built, never downloaded"))
    if not download:
        raise DatasetError(_missing_dataset_message(dataset_id, "downloads are off"))
    # Every way a download cannot happen ends in the same message, with and without a network.
    try:
        import huggingface_hub  # noqa: F401  (what Minari's hf extra installs)
    except ImportError:
        raise DatasetError(_missing_dataset_message(
            dataset_id, "downloading needs Minari's hf extra: pip install \"minari[hf]\"")) from None
    if not _network_reachable():
        raise DatasetError(_missing_dataset_message(dataset_id, "no network to download it from"))
    print(f"[datasets] {dataset_id} not found locally; downloading it from Minari's remote...", flush=True)
    try:
        return minari.load_dataset(dataset_id, download=True)
    except Exception as e:  # unknown remote id, connection dropped, ...
        raise DatasetError(_missing_dataset_message(dataset_id, f"download failed: {e}")) from e


def _split_overrides(ds, overrides: dict) -> tuple[dict, dict]:
    """Sort env overrides into constructor arguments and public attributes of the unwrapped env."""
    if not overrides:
        return {}, {}
    env = ds.recover_environment(eval_env=True)
    cls = type(env.unwrapped)
    params = {name for name, p in inspect.signature(cls.__init__).parameters.items()
              if name not in ("self", "render_mode") and p.kind is not p.VAR_KEYWORD and p.kind is not p.VAR_POSITIONAL}
    public = {name for name in vars(env.unwrapped) if not name.startswith("_")}
    env.close()
    unknown = sorted(set(overrides) - params - public)
    if unknown:
        raise DatasetError(
            f"--eval-env-kwargs: {', '.join(map(repr, unknown))} is neither an argument of {cls.__name__} "
            f"nor one of its attributes; arguments: {', '.join(sorted(params)) or 'none'}; "
            f"attributes: {', '.join(sorted(public)) or 'none'}")
    constructor_args = {k: v for k, v in overrides.items() if k in params}
    return constructor_args, {k: v for k, v in overrides.items() if k not in params}


def load_dataset(
    dataset_id: str,
    device: torch.device | str = "cpu",
    download: bool = True,
    verbose: bool = True,
) -> OfflineDataset:
    """Load a Minari dataset into flat float32 tensors on `device` (see the module docstring)."""
    t0 = time.time()
    ds = _open_minari(dataset_id, download)

    if not isinstance(ds.action_space, gym.spaces.Box):
        raise DatasetError(
            f"Dataset '{dataset_id}' has action space {ds.action_space}; these scripts need a "
            f"continuous Box action space."
        )
    obs_dim = _flat_size(ds.observation_space)
    act_dim = int(np.prod(ds.action_space.shape))
    n, num_eps = int(ds.total_steps), int(ds.total_episodes)

    # Preallocate float32 arrays and fill them one episode at a time: peak memory stays near the
    # final size even when the file stores float64 (MuJoCo observations are float64).
    obs = np.empty((n, obs_dim), np.float32)
    next_obs = np.empty((n, obs_dim), np.float32)
    act = np.empty((n, act_dim), np.float32)
    rew = np.empty((n,), np.float32)
    term = np.zeros((n,), np.float32)
    trunc = np.zeros((n,), np.float32)
    starts = np.empty((num_eps,), np.int64)
    lengths = np.empty((num_eps,), np.int64)
    returns = np.empty((num_eps,), np.float32)

    i = 0
    try:
        episodes = list(ds.storage.get_episodes(ds.episode_indices))
    except (OSError, KeyError) as err:  # a file that opens but whose episodes cannot be read
        raise DatasetError(_damaged_dataset_message(dataset_id, err)) from None
    for e, ep in enumerate(episodes):
        ep_obs = flatten_observation(ep["observations"], lead_dims=1)  # (T+1, obs_dim)
        T = len(ep["rewards"])
        if ep_obs.shape[0] != T + 1:
            raise DatasetError(f"episode {e} of '{dataset_id}' has {ep_obs.shape[0]} observations for {T} steps")
        obs[i : i + T] = ep_obs[:-1]
        next_obs[i : i + T] = ep_obs[1:]
        act[i : i + T] = np.asarray(ep["actions"]).reshape(T, act_dim)
        rew[i : i + T] = ep["rewards"]
        term[i : i + T] = ep["terminations"]
        trunc[i : i + T] = ep["truncations"]
        starts[e], lengths[e] = i, T
        returns[e] = np.sum(ep["rewards"], dtype=np.float64)
        i += T
    if i != n or e + 1 != num_eps:
        raise DatasetError(f"'{dataset_id}' says {n} steps in {num_eps} episodes, read {i} in {e + 1}")

    mean = obs.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = np.maximum(obs.std(axis=0, dtype=np.float64), OBS_STD_FLOOR).astype(np.float32)

    meta = ds.storage.metadata
    ref_min, ref_max = meta.get("ref_min_score"), meta.get("ref_max_score")
    if ref_min is not None and ref_max is not None:
        ref_source = "dataset"
        ref_min, ref_max = float(ref_min), float(ref_max)
    elif _env_name(dataset_id) in D4RL_REFERENCE_SCORES:
        ref_min, ref_max = D4RL_REFERENCE_SCORES[_env_name(dataset_id)]
        ref_source = "D4RL reference"
        print(
            f"[datasets] '{dataset_id}' has no reference scores; normalising with D4RL's reference "
            f"returns for {_env_name(dataset_id)} (random {ref_min}, expert {ref_max}). These are not "
            f"D4RL numbers: the data differs from D4RL's.",
            flush=True,
        )
    else:
        ref_min = ref_max = None
        ref_source = "none"
        print(f"[datasets] '{dataset_id}' has no reference scores; reporting raw returns only.", flush=True)

    dict_obs = isinstance(ds.observation_space, gym.spaces.Dict)
    spec = ds.env_spec
    max_episode_steps = int(spec.max_episode_steps) if spec is not None and spec.max_episode_steps else None

    def make_env(render_mode: Optional[str] = None, **overrides) -> gym.Env:
        kwargs = {"render_mode": render_mode} if render_mode else {}
        constructor_args, attributes = _split_overrides(ds, overrides)
        env = ds.recover_environment(eval_env=True, **kwargs, **constructor_args)
        for name, value in attributes.items():
            setattr(env.unwrapped, name, value)
        return FlattenDictObservation(env) if dict_obs else env

    low = np.broadcast_to(ds.action_space.low, ds.action_space.shape).reshape(-1)
    high = np.broadcast_to(ds.action_space.high, ds.action_space.shape).reshape(-1)

    def t(x):  # from_numpy shares memory; .to() copies only when the device differs
        return torch.from_numpy(x).to(device)

    data = OfflineDataset(
        dataset_id=dataset_id,
        observations=t(obs),
        actions=t(act),
        rewards=t(rew),
        next_observations=t(next_obs),
        terminals=t(term),
        truncations=t(trunc),
        episode_starts=t(starts),
        episode_lengths=t(lengths),
        episode_returns=t(returns),
        obs_mean=t(mean),
        obs_std=t(std),
        action_low=t(low.astype(np.float32)),
        action_high=t(high.astype(np.float32)),
        ref_min_score=ref_min,
        ref_max_score=ref_max,
        ref_source=ref_source,
        max_episode_steps=max_episode_steps,
        make_env=make_env,
    )
    if verbose:
        print(
            f"[datasets] {dataset_id}: {n} transitions, {num_eps} episodes, obs {obs_dim}, act {act_dim}, "
            f"loaded in {time.time() - t0:.1f}s",
            flush=True,
        )
    return data
