"""Build D4RL-style offline datasets on your own machine, in Minari's format.

D4RL (Fu et al. 2020, https://arxiv.org/abs/2004.07219) made its locomotion datasets by training SAC
online and keeping what it saw. This file repeats that protocol for any Gymnasium env with a
continuous (Box) action space:

1. train a behaviour policy online with Stable-Baselines3 SAC, snapshotting the actor every
   `snapshot_every` env steps and scoring each snapshot on a few episodes;
2. reference scores: mean return of a uniform random policy (`ref_min_score`) and of the final,
   "expert" policy (`ref_max_score`), over `ref_episodes` episodes each;
3. "medium" = the first snapshot whose normalised score lies inside [1/3, 1/2] (as D4RL stopped at
   the first policy reaching its medium level); SAC itself may stop early at a target return;
4. collect `steps_per_kind` transitions with stochastic actions from each policy, many episodes side
   by side in a vector env: `random`, `medium`, `expert`; `medium-replay` = every training
   episode completed by the medium snapshot; `medium-expert` = medium episodes + expert episodes;
5. write each dataset into a hidden staging dir and rename it into place, so that an interrupted
   build never leaves a half-written dataset behind.

    python -m common.make_dataset                       # the default `pendulum` suite (2-6 min)
    python -m common.make_dataset --preset hopper       # D4RL-sized, about an hour
    python -m common.make_dataset --env Pendulum-v1 --name pendulum-short --sac-steps 6000

Datasets are `local/<name>/<kind>-v0`. See docs/datasets.md.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import random
import re
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal, Optional

import gymnasium as gym
import numpy as np
import torch
import tyro

KINDS = ("random", "medium", "medium-replay", "expert", "medium-expert")
Kind = Literal["random", "medium", "medium-replay", "expert", "medium-expert"]
NAMESPACE = "local"  # never clashes with Minari's remote namespaces (mujoco/, D4RL/, ...)
DEFAULT_DATASET_ID = "local/pendulum/medium-replay-v0"
# D4RL's medium policy sits at about a third of the expert: the first snapshot inside [1/3, 1/2] is
# the medium one (the one closest to 0.4 when none lands inside)
MEDIUM_TARGET = 0.4
MEDIUM_BAND = (1 / 3, 1 / 2)


class DatasetBuildError(ValueError):
    """Bad input or a build that cannot produce a sensible suite."""


@dataclass(frozen=True)
class SACConfig:
    """SB3 SAC hyperparameters. Defaults: rl-baselines3-zoo's MuJoCo settings, i.e. SB3's defaults with
    learning_starts raised from 100 to 10k."""

    learning_rate: float = 3e-4
    buffer_size: int = 1_000_000
    learning_starts: int = 10_000
    batch_size: int = 256
    tau: float = 0.005
    gamma: float = 0.99
    gradient_steps: int = 1
    """gradient steps per update"""
    train_freq: int = 1
    """env steps between updates (>1 slows learning per env step: a longer, larger medium-replay)"""
    net_arch: tuple[int, ...] = (256, 256)


@dataclass(frozen=True)
class Preset:
    env_id: str
    sac_steps: int
    """online SAC env steps (D4RL: 1M)"""
    snapshot_every: int
    """keep (and score) an actor snapshot every this many env steps"""
    snapshot_eval_episodes: int
    """episodes per snapshot score (stochastic actions, same seeds for every snapshot)"""
    steps_per_kind: int
    """transitions collected for random, medium and expert (whole episodes, at least this many)"""
    ref_episodes: int
    """episodes behind ref_min_score and ref_max_score"""
    num_envs: int
    """episodes collected side by side"""
    sac: SACConfig = field(default_factory=SACConfig)
    stop_return: Optional[float] = None
    """stop SAC early at the first snapshot whose mean return reaches this (None: run all sac_steps)"""
    log_every: int = 1000
    build_time: str = "unknown"
    """how long a build takes, for ensure_dataset's message"""


# Pendulum: zoo's settings (lr 1e-3), but one gradient step every 4 env steps. With one per env step
# the policy leaves random play after ~1.5k steps and is medium by ~2.2k, so medium-replay held only
# 11 episodes; updating every 4 steps stretches the same learning over 4x the env steps (~40 episodes
# up to medium) at the same number of gradient steps. 100 episodes per kind.
_PENDULUM_SAC = SACConfig(learning_rate=1e-3, buffer_size=100_000, learning_starts=100, train_freq=4)
# MuJoCo suites: D4RL's 1M transitions per kind and zoo's SAC settings, but SAC stops at the first
# snapshot whose mean return (10 episodes, stochastic actions) reaches D4RL's expert reference return
# for the env, or after 300k env steps: D4RL trained for 1M steps, about 3 CPU hours here, and SAC
# reaches the reference on Hopper long before. Snapshots every 5k steps, so that one lands in the
# medium band before the policy moves past it.
_MUJOCO = dict(sac_steps=300_000, snapshot_every=5_000, snapshot_eval_episodes=10,
               steps_per_kind=1_000_000, ref_episodes=100, num_envs=20, log_every=10_000)
# D4RL's expert reference returns (d4rl/infos.py REF_MAX_SCORE)
_D4RL_EXPERT = {"hopper": 3234.3, "halfcheetah": 12135.0, "walker2d": 4592.3}

PRESETS: dict[str, Preset] = {
    "pendulum": Preset("Pendulum-v1", sac_steps=40_000, snapshot_every=500, snapshot_eval_episodes=20,
                       steps_per_kind=20_000, ref_episodes=50, num_envs=20, sac=_PENDULUM_SAC,
                       log_every=1000, build_time="about 2 minutes, 7 on a busy machine"),
    # for the tests: small nets, 2 gradient steps per env step and gamma 0.98 make the expert beat
    # random after ~1000 env steps (SB3's defaults need ~2500)
    "pendulum-tiny": Preset("Pendulum-v1", sac_steps=1200, snapshot_every=100, snapshot_eval_episodes=2,
                            steps_per_kind=600, ref_episodes=6, num_envs=3, log_every=400,
                            sac=SACConfig(learning_rate=1e-3, buffer_size=1200, learning_starts=100, batch_size=64,
                                          gamma=0.98, gradient_steps=2, net_arch=(64, 64)),
                            build_time="10-20 seconds"),
    "hopper": Preset("Hopper-v5", **_MUJOCO, stop_return=_D4RL_EXPERT["hopper"],
                     build_time="about an hour on the 2-core CPU"),
    "halfcheetah": Preset("HalfCheetah-v5", **_MUJOCO, stop_return=_D4RL_EXPERT["halfcheetah"],
                          build_time="about an hour and a half on the 2-core CPU (estimated)"),
    "walker2d": Preset("Walker2d-v5", **_MUJOCO, stop_return=_D4RL_EXPERT["walker2d"],
                       build_time="about an hour and a half on the 2-core CPU (estimated)"),
}

# settings for an env given with --env that no preset covers
_GENERIC = dict(sac_steps=100_000, snapshot_every=2_000, snapshot_eval_episodes=10, steps_per_kind=100_000,
                ref_episodes=50, num_envs=10, log_every=5_000)


def dataset_id(name: str, kind: str) -> str:
    return f"{NAMESPACE}/{name}/{kind}-v0"


def preset_for_dataset_id(dataset_id: str) -> str | None:
    """`local/pendulum/medium-v0` -> "pendulum"; None for anything not built by a preset."""
    m = re.fullmatch(rf"{NAMESPACE}/([^/]+)/([a-z-]+)-v0", dataset_id)
    if m and m.group(1) in PRESETS and m.group(2) in KINDS:
        return m.group(1)
    return None


def _datasets_root() -> Path:
    # minari's get_dataset_path rule, re-read at each call, but without creating the dir
    path = os.environ.get("MINARI_DATASETS_PATH")
    return Path(path) if path is not None else Path.home() / ".minari" / "datasets"


def _exists(ds_id: str) -> bool:
    return (_datasets_root() / ds_id / "data").is_dir()


def _seed_base(seed: int, purpose: int) -> int:
    # disjoint episode-seed ranges: 1 random, 2 medium, 3 expert, 4 ref scores, 5 snapshot scores
    return (seed * 10 + purpose) * 1_000_000


def check_env(env_id: str) -> None:
    """Fail early, before anything is trained or written, on envs this protocol cannot handle."""
    try:
        gym.spec(env_id)
    except gym.error.Error as e:
        raise DatasetBuildError(f"unknown Gymnasium env id {env_id!r} ({e})") from None
    try:
        env = gym.make(env_id)
    except Exception as e:  # e.g. a missing optional dependency (box2d, ...)
        raise DatasetBuildError(f"cannot make env {env_id!r}: {type(e).__name__}: {e}") from None
    try:
        act, obs = env.action_space, env.observation_space
        if not isinstance(act, gym.spaces.Box):
            raise DatasetBuildError(
                f"{env_id} has a {type(act).__name__} action space; make_dataset needs a continuous (Box) "
                "action space (the behaviour policy is SAC)")
        if not (np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high))):
            raise DatasetBuildError(f"{env_id}'s action space is unbounded; SAC and the uniform random "
                                    "policy need finite bounds")
        if not isinstance(obs, gym.spaces.Box):
            raise DatasetBuildError(f"{env_id} has a {type(obs).__name__} observation space; make_dataset "
                                    "needs a flat Box observation space")
    finally:
        env.close()


# ---------------------------------------------------------------------------------------------------
# Rollouts: many episodes side by side, each with its own recorded seed


@dataclass
class Episode:
    observations: np.ndarray  # (T+1, *obs_shape)
    actions: np.ndarray  # (T, *act_shape)
    rewards: np.ndarray  # (T,)
    terminations: np.ndarray  # (T,) bool
    truncations: np.ndarray  # (T,) bool
    seed: Optional[int]

    @property
    def ret(self) -> float:
        return float(self.rewards.sum())


def rollouts(env_id: str, act_fn: Callable[[np.ndarray], np.ndarray], num_envs: int, seed_base: int, *,
             episodes: int | None = None, min_steps: int | None = None, label: str = "") -> list[Episode]:
    """Run whole episodes until `episodes` were started, or until `min_steps` transitions were taken;
    started episodes always run to their end, so no episode is cut short and none is favoured for being
    short. Episode k is reset with seed `seed_base + k`; the list is in k order."""
    assert (episodes is None) != (min_steps is None)
    n = num_envs if episodes is None else max(1, min(num_envs, episodes))
    # autoreset off: we reset finished sub-envs ourselves, each with its own seed
    envs = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.DISABLED})
    obs_dtype = envs.single_observation_space.dtype
    act_dtype = envs.single_action_space.dtype
    done: dict[int, Episode] = {}
    steps = launched = 0
    t0 = last_print = time.time()

    def want_more() -> bool:
        return launched < episodes if episodes is not None else steps < min_steps

    def new_buf(o):
        return {"obs": [np.array(o, dtype=obs_dtype)], "act": [], "rew": [], "term": [], "trunc": []}

    try:
        launched = n  # n <= episodes, and min_steps > 0: every sub-env starts one
        slot = list(range(n))  # episode index run by each sub-env, -1 once idle
        obs, _ = envs.reset(seed=[seed_base + i for i in range(n)])
        bufs = [new_buf(obs[i]) for i in range(n)]
        while any(k >= 0 for k in slot):
            actions = np.asarray(act_fn(obs), dtype=act_dtype)
            next_obs, rew, term, trunc, _ = envs.step(actions)
            mask = np.zeros(n, dtype=bool)
            seeds: list[int | None] = [None] * n
            # count this step of every running episode before deciding whether to start more
            steps += sum(k >= 0 for k in slot)
            for i in range(n):
                if term[i] or trunc[i]:
                    mask[i] = True  # idle sub-envs are reset too; their data is dropped
                if slot[i] < 0:
                    continue
                b = bufs[i]
                b["act"].append(actions[i]); b["rew"].append(rew[i])
                b["term"].append(term[i]); b["trunc"].append(trunc[i])
                b["obs"].append(np.array(next_obs[i], dtype=obs_dtype))
                if term[i] or trunc[i]:
                    done[slot[i]] = Episode(np.stack(b["obs"]), np.stack(b["act"]).astype(act_dtype),
                                            np.asarray(b["rew"], dtype=np.float64),
                                            np.asarray(b["term"], dtype=bool), np.asarray(b["trunc"], dtype=bool),
                                            seed=seed_base + slot[i])
                    if want_more():
                        slot[i], seeds[i] = launched, seed_base + launched
                        launched += 1
                    else:
                        slot[i] = -1
            if mask.any():
                # only masked sub-envs are reset; the others keep their step observation
                next_obs, _ = envs.reset(seed=seeds, options={"reset_mask": mask})
                for i in np.flatnonzero(mask):
                    bufs[i] = new_buf(next_obs[i])
            obs = next_obs
            if label and time.time() - last_print > 15:
                last_print = time.time()
                print(f"  [{label}] {steps} steps, {len(done)} episodes, {steps / (last_print - t0):.0f} steps/s",
                      flush=True)
    finally:
        envs.close()
    return [done[k] for k in sorted(done)]


def _sb3_act_fn(policy) -> Callable[[np.ndarray], np.ndarray]:
    # stochastic actions, as D4RL collected its data
    return lambda obs: policy.predict(obs, deterministic=False)[0]


def _random_act_fn(space: gym.spaces.Box, rng: np.random.Generator) -> Callable:
    return lambda obs: rng.uniform(space.low, space.high, size=(len(obs), *space.shape))


# ---------------------------------------------------------------------------------------------------
# Training the behaviour policy, with the replay recorded and snapshots kept


def _make_recorder(cfg: Preset, seed: int):
    from stable_baselines3.common.callbacks import BaseCallback

    class Recorder(BaseCallback):
        """Records every training transition in order (the replay buffer, with episodes intact),
        keeps an actor snapshot every `snapshot_every` steps with a short score, prints progress."""

        def _init_callback(self) -> None:
            n = cfg.sac_steps
            obs_space, act_space = self.model.observation_space, self.model.action_space
            self.obs = np.zeros((n, *obs_space.shape), dtype=obs_space.dtype)  # obs before step i
            self.act = np.zeros((n, *act_space.shape), dtype=act_space.dtype)
            self.rew = np.zeros(n, dtype=np.float64)
            self.term = np.zeros(n, dtype=bool)
            self.trunc = np.zeros(n, dtype=bool)
            self.final_obs: dict[int, np.ndarray] = {}  # step index -> last obs of an episode
            self.snapshots: list[dict] = []
            self.stopped_early = False
            self.ep_returns: list[float] = []
            self._ret = 0.0
            self._t_last, self._n_last = time.time(), 0

        def _on_step(self) -> bool:
            i = self.num_timesteps - 1
            # _last_obs is still the pre-step obs here: SB3 updates it after the callback
            self.obs[i] = self.model._last_obs[0]
            self.act[i] = self.locals["actions"][0]  # env-space action (unscaled)
            self.rew[i] = self.locals["rewards"][0]
            self._ret += float(self.rew[i])
            if self.locals["dones"][0]:
                info = self.locals["infos"][0]
                self.trunc[i] = bool(info.get("TimeLimit.truncated", False))
                self.term[i] = not self.trunc[i]
                self.final_obs[i] = np.array(info["terminal_observation"], dtype=self.obs.dtype)
                self.ep_returns.append(self._ret)
                self._ret = 0.0
            t = self.num_timesteps
            snap = t % cfg.snapshot_every == 0 or t == cfg.sac_steps
            if snap:
                self._snapshot(t)
            if snap or t % cfg.log_every == 0:
                self._log(t)
            if snap and cfg.stop_return is not None and self.snapshots[-1]["returns"].mean() >= cfg.stop_return:
                self.stopped_early = t < cfg.sac_steps
                print(f"[sac] snapshot at step {t} reached the stop return {cfg.stop_return}: training ends here",
                      flush=True)
                return False  # SB3 stops learn() when a callback returns False
            return True

        def _snapshot(self, t: int) -> None:
            actor = {k: v.detach().clone() for k, v in self.model.policy.actor.state_dict().items()}
            # scoring draws actions from torch's RNG: save and restore it so training does not depend
            # on how the snapshots are scored
            rng = torch.get_rng_state()
            torch.manual_seed(_seed_base(seed, 5))
            eps = rollouts(cfg.env_id, _sb3_act_fn(self.model.policy), cfg.num_envs, _seed_base(seed, 5),
                           episodes=cfg.snapshot_eval_episodes)
            torch.set_rng_state(rng)
            self.snapshots.append({"step": t, "actor": actor, "returns": np.array([e.ret for e in eps])})

        def _log(self, t: int) -> None:
            now = time.time()
            sps = (t - self._n_last) / max(now - self._t_last, 1e-9)
            self._t_last, self._n_last = now, t
            recent = f"{np.mean(self.ep_returns[-10:]):.1f}" if self.ep_returns else "-"
            line = (f"[sac] step {t}/{cfg.sac_steps} | {sps:.0f} env steps/s | training return (last 10 "
                    f"episodes) {recent}")
            if self.snapshots and self.snapshots[-1]["step"] == t:
                line += f" | snapshot score {self.snapshots[-1]['returns'].mean():.1f}"
            eta = (cfg.sac_steps - t) / max(sps, 1e-9)
            print(f"{line} | eta {eta / 60:.1f} min", flush=True)

    return Recorder()


def _train(cfg: Preset, seed: int):
    import stable_baselines3
    from stable_baselines3 import SAC

    np.random.seed(seed)
    torch.manual_seed(seed)
    s = cfg.sac
    # CPU: small MLPs train as fast there, and the results are reproducible
    model = SAC("MlpPolicy", gym.make(cfg.env_id), learning_rate=s.learning_rate,
                buffer_size=min(s.buffer_size, cfg.sac_steps), learning_starts=s.learning_starts,
                batch_size=s.batch_size, tau=s.tau, gamma=s.gamma, train_freq=s.train_freq, gradient_steps=s.gradient_steps,
                policy_kwargs={"net_arch": list(s.net_arch)}, seed=seed, device="cpu", verbose=0)
    rec = _make_recorder(cfg, seed)
    print(f"[sac] training SB3 {stable_baselines3.__version__} SAC on {cfg.env_id} for {cfg.sac_steps} steps "
          f"(seed {seed}), snapshot every {cfg.snapshot_every}", flush=True)
    model.learn(total_timesteps=cfg.sac_steps, callback=rec)
    return model, rec


def _training_episodes(rec, cutoff: int, seed: int) -> list[Episode]:
    """The training episodes that ended within the first `cutoff` env steps. The episode still running
    at the cutoff is left out: its return would pass for a whole episode's (DT's target, IQL's reward
    scale and filtered BC all read episode returns)."""
    eps, start = [], 0
    for i in range(cutoff):
        if rec.term[i] or rec.trunc[i]:
            # SB3 seeds only the first reset of the training env
            eps.append(Episode(np.concatenate([rec.obs[start:i + 1], rec.final_obs[i][None]]),
                               rec.act[start:i + 1].copy(), rec.rew[start:i + 1].copy(),
                               rec.term[start:i + 1].copy(), rec.trunc[start:i + 1].copy(),
                               seed=seed if start == 0 else None))
            start = i + 1
    if not eps:
        raise DatasetBuildError(f"no training episode ended within the first {cutoff} env steps, so "
                                "medium-replay would be empty: use a smaller --snapshot-every")
    return eps


def _pick_medium(snapshots: list[dict], ref_min: float, ref_max: float):
    """The first snapshot whose normalised score lies inside MEDIUM_BAND, as D4RL stopped at the first
    policy that reached its medium level (medium-replay is then the replay up to that point). If none
    lands there, the one closest to MEDIUM_TARGET (the caller warns). The final snapshot is the expert
    and never the medium one."""
    cands = snapshots[:-1] or snapshots
    scores = [(s["returns"].mean() - ref_min) / (ref_max - ref_min) for s in cands]
    in_band = [j for j, sc in enumerate(scores) if MEDIUM_BAND[0] <= sc <= MEDIUM_BAND[1]]
    j = in_band[0] if in_band else min(range(len(cands)), key=lambda j: (abs(scores[j] - MEDIUM_TARGET), j))
    return cands[j], float(scores[j]), bool(in_band)


# ---------------------------------------------------------------------------------------------------
# Writing: staged in a hidden dir, then renamed into place


def _write_dataset(ds_id: str, env_id: str, episodes: list[Episode], *, algorithm_name: str,
                   description: str, ref_min: float, ref_max: float, ref_episodes: int, force: bool) -> None:
    import minari
    from minari.data_collector import EpisodeBuffer

    root = _datasets_root()
    root.mkdir(parents=True, exist_ok=True)
    _clean_stale_staging(root)
    staging = root / f".staging-{os.getpid()}-{ds_id.replace('/', '_')}"
    shutil.rmtree(staging, ignore_errors=True)
    buffers = [EpisodeBuffer(id=k, seed=e.seed, observations=e.observations, actions=e.actions,
                             rewards=e.rewards, terminations=e.terminations, truncations=e.truncations)
               for k, e in enumerate(episodes)]
    old = os.environ.get("MINARI_DATASETS_PATH")
    try:
        try:
            # minari writes to $MINARI_DATASETS_PATH/<id>; its listings skip hidden dirs
            os.environ["MINARI_DATASETS_PATH"] = str(staging)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*author_email.*")
                minari.create_dataset_from_buffers(
                    ds_id, buffer=buffers, env=env_id, eval_env=env_id, algorithm_name=algorithm_name,
                    author="common/make_dataset.py (local build)", code_permalink="common/make_dataset.py",
                    ref_min_score=ref_min, ref_max_score=ref_max, num_episodes_average_score=ref_episodes,
                    description=description)
        finally:
            if old is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = old
        _publish(staging, root, ds_id, force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, root: Path, ds_id: str, force: bool) -> None:
    # namespace metadata files (local/, local/<name>/) that create_namespace wrote in staging
    parts = ds_id.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        ns = Path(*parts[:depth])
        (root / ns).mkdir(parents=True, exist_ok=True)
        src, dst = staging / ns / "namespace_metadata.json", root / ns / "namespace_metadata.json"
        if src.exists() and not dst.exists():
            tmp = dst.with_name(f".{dst.name}.{os.getpid()}")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
    final, trash = root / ds_id, None
    if final.exists():
        if not force:
            raise DatasetBuildError(f"{ds_id} appeared while building (another process?); left as it was")
        trash = root / f".trash-{os.getpid()}-{ds_id.replace('/', '_')}"
        os.rename(final, trash)
    os.rename(staging / ds_id, final)  # the dataset appears whole or not at all
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def _clean_stale_staging(root: Path) -> None:
    # leftovers of killed builds (hidden, so minari never sees them): remove those whose process is gone
    for d in root.glob(".staging-*"):
        m = re.match(r"\.staging-(\d+)-", d.name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass


# ---------------------------------------------------------------------------------------------------
# The suite


def _config_record(cfg: Preset, seed: int) -> dict:
    rec = dataclasses.asdict(cfg)
    rec.pop("log_every"), rec.pop("build_time")
    rec["sac"]["net_arch"] = list(rec["sac"]["net_arch"])
    rec["seed"] = seed
    return rec


def _stored_config(ds_id: str) -> dict | None:
    import minari

    desc = minari.load_dataset(ds_id).storage.metadata.get("description", "")
    m = re.search(r"^build-config: (\{.*\})$", desc, flags=re.M)
    return json.loads(m.group(1)) if m else None


def _build_suite(cfg: Preset, name: str, *, seed: int, kinds: list[str] | None, force: bool) -> list[str]:
    kinds = list(dict.fromkeys(kinds or KINDS))
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise DatasetBuildError(f"unknown dataset kind(s) {bad}; choose from {list(KINDS)}")
    if not re.fullmatch(r"[-_\w]+", name):
        raise DatasetBuildError(f"bad suite name {name!r}: use letters, digits, '-' and '_'")
    check_env(cfg.env_id)
    ids = {k: dataset_id(name, k) for k in kinds}
    config = _config_record(cfg, seed)
    todo = kinds if force else [k for k in kinds if not _exists(ids[k])]
    for k in kinds:
        if k in todo:
            continue
        stored = _stored_config(ids[k])
        if stored != config:
            msg = (f"{ids[k]} exists but was built with other settings ({_diff(stored, config)})")
            if todo:  # mixing would give one suite two behaviour policies and two sets of ref scores
                raise DatasetBuildError(f"{msg}; rebuild the suite with --force, or use another --name")
            print(f"[make_dataset] note: {msg}; reusing it (--force rebuilds)", flush=True)
        print(f"[make_dataset] reusing existing {ids[k]} (--force rebuilds it)", flush=True)
    if todo:
        # one thread: SB3's small MLPs gain nothing from more, and torch's threads stall badly when
        # other processes share the cores (2.7 vs 38 env steps/s measured on a busy 2-core machine);
        # a fixed count also keeps the floating point, hence the data, the same from machine to machine
        threads = torch.get_num_threads()
        # a script that calls ensure_dataset after seeding must not see its random streams moved
        rng_states = random.getstate(), np.random.get_state(), torch.get_rng_state()
        torch.set_num_threads(1)
        try:
            _make(cfg, name, seed, kinds, todo, ids, config, force)
        finally:
            torch.set_num_threads(threads)
            random.setstate(rng_states[0]), np.random.set_state(rng_states[1]), torch.set_rng_state(rng_states[2])
    return [ids[k] for k in kinds]


def _make(cfg: Preset, name: str, seed: int, kinds: list[str], todo: list[str], ids: dict[str, str],
          config: dict, force: bool) -> None:
    t_start = time.time()
    env = gym.make(cfg.env_id)
    act_space = env.action_space
    env.close()
    model, rec = _train(cfg, seed)
    t_train = time.time() - t_start
    final = rec.snapshots[-1]
    model.policy.actor.load_state_dict(final["actor"])

    # reference scores: random and expert, on the same episode seeds
    ref_seeds = _seed_base(seed, 4)
    rand_ref = rollouts(cfg.env_id, _random_act_fn(act_space, np.random.default_rng(ref_seeds)),
                        cfg.num_envs, ref_seeds, episodes=cfg.ref_episodes)
    torch.manual_seed(ref_seeds)
    exp_ref = rollouts(cfg.env_id, _sb3_act_fn(model.policy), cfg.num_envs, ref_seeds, episodes=cfg.ref_episodes,
                       label="ref expert")
    ref_min = float(np.mean([e.ret for e in rand_ref]))
    ref_max = float(np.mean([e.ret for e in exp_ref]))
    print(f"[make_dataset] ref_min_score {ref_min:.1f} (uniform random, {cfg.ref_episodes} episodes), "
          f"ref_max_score {ref_max:.1f} (expert, {cfg.ref_episodes} episodes)", flush=True)
    if not ref_max > ref_min:
        raise DatasetBuildError(
            f"the expert policy (mean return {ref_max:.1f}) does not beat the uniform random policy "
            f"({ref_min:.1f}): SAC did not learn in {cfg.sac_steps} steps; train longer (--sac-steps)")

    medium, medium_score, in_band = _pick_medium(rec.snapshots, ref_min, ref_max)
    band = f"[{MEDIUM_BAND[0]:.3f}, {MEDIUM_BAND[1]:.3f}]"
    print(f"[make_dataset] medium = snapshot at step {medium['step']}, normalised score {medium_score:.3f}"
          + ("" if in_band else f" -- WARNING: no snapshot scored inside {band}; took the closest to "
             f"{MEDIUM_TARGET}. Use a smaller --snapshot-every or more --snapshot-eval-episodes."), flush=True)
    behaviour = copy.deepcopy(model.policy)

    def collect(kind: str) -> list[Episode]:
        purpose = {"random": 1, "medium": 2, "expert": 3}[kind]
        base = _seed_base(seed, purpose)
        if kind == "random":
            act_fn = _random_act_fn(act_space, np.random.default_rng(base))
        else:
            behaviour.actor.load_state_dict((medium if kind == "medium" else final)["actor"])
            act_fn = _sb3_act_fn(behaviour)
        torch.manual_seed(base)  # each kind's data does not depend on which others were built
        eps = rollouts(cfg.env_id, act_fn, cfg.num_envs, base, min_steps=cfg.steps_per_kind, label=kind)
        print(f"[make_dataset] collected {kind}: {len(eps)} episodes, {sum(len(e.rewards) for e in eps)} "
              f"transitions, mean return {np.mean([e.ret for e in eps]):.1f}", flush=True)
        return eps

    need = {k for k in todo if k in ("random", "medium", "expert")}
    if "medium-expert" in todo:
        need |= {"medium", "expert"}
    data = {k: collect(k) for k in ("random", "medium", "expert") if k in need}
    if "medium-replay" in todo:
        data["medium-replay"] = _training_episodes(rec, medium["step"], seed)
    if "medium-expert" in todo:
        data["medium-expert"] = data["medium"] + data["expert"]

    import minari
    import stable_baselines3

    s = cfg.sac
    stop_rule = (f"at most {cfg.sac_steps}" if cfg.stop_return is None else
                 f"stopping at the first snapshot whose mean return reached {cfg.stop_return}, at most "
                 f"{cfg.sac_steps}; {'stopped there' if rec.stopped_early else 'the cap came first'}")
    common = (
        f"Behaviour policy: Stable-Baselines3 {stable_baselines3.__version__} SAC (MlpPolicy {list(s.net_arch)}, "
        f"lr {s.learning_rate}, batch {s.batch_size}, {s.gradient_steps} gradient step(s) every {s.train_freq} env step(s), buffer {min(s.buffer_size, cfg.sac_steps)}, learning_starts "
        f"{s.learning_starts}, tau {s.tau}, gamma {s.gamma}, auto entropy), trained online on {cfg.env_id} for "
        f"{final['step']} env steps with seed {seed} ({stop_rule}); actor snapshots every {cfg.snapshot_every} steps, each "
        f"scored on {cfg.snapshot_eval_episodes} episodes with stochastic actions. 'medium' = the first snapshot "
        f"scoring inside {band} of the expert: step {medium['step']}, normalised score {medium_score:.3f}"
        f"{'' if in_band else f' (NO snapshot landed in the band; this is the closest to {MEDIUM_TARGET})'}; 'expert' = the final "
        f"policy at step {final['step']}. ref_min_score = mean return of the uniform random policy over "
        f"{cfg.ref_episodes} episodes ({ref_min:.2f}); ref_max_score = mean return of the expert policy with "
        f"stochastic actions over {cfg.ref_episodes} episodes ({ref_max:.2f}). Data collected with stochastic "
        f"actions, whole episodes until at least {cfg.steps_per_kind} transitions per kind. Software: "
        f"gymnasium {gym.__version__}, minari {minari.__version__}, torch {torch.__version__}, "
        f"numpy {np.__version__}.")
    what = {
        "random": ("uniform random policy", "uniform random actions"),
        "medium": (f"SB3-SAC snapshot at step {medium['step']}", "the medium snapshot's stochastic actions"),
        "medium-replay": (f"SB3-SAC training replay, episodes ended by step {medium['step']}",
                          f"every episode SAC completed during training up to the medium snapshot "
                          f"(step {medium['step']}), in order; the episode still running at that step is left "
                          "out, so every episode is whole; only the first episode has a recorded seed (SB3 "
                          "seeds only the first reset)"),
        "expert": (f"SB3-SAC final policy at step {final['step']}", "the expert's stochastic actions"),
        "medium-expert": (f"SB3-SAC snapshot at step {medium['step']} + final policy at step {final['step']}",
                          "the medium episodes followed by the expert episodes"),
    }
    result = {"medium_step": medium["step"], "medium_score": round(medium_score, 6), "medium_in_band": in_band,
              "ref_min_score": ref_min, "ref_max_score": ref_max}
    built = []
    for k in kinds:
        if k not in todo:
            continue
        eps = data[k]
        n_steps = sum(len(e.rewards) for e in eps)
        desc = (f"D4RL-style '{k}' dataset for {cfg.env_id}, built locally by common/make_dataset.py (suite "
                f"'{name}'). This dataset: {what[k][1]}; {len(eps)} episodes, {n_steps} transitions, mean return "
                f"{np.mean([e.ret for e in eps]):.2f}. {common}\n"
                f"build-result: {json.dumps(result)}\nbuild-config: {json.dumps(config)}")
        _write_dataset(ids[k], cfg.env_id, eps, algorithm_name=what[k][0], description=desc,
                       ref_min=ref_min, ref_max=ref_max, ref_episodes=cfg.ref_episodes, force=force)
        ds = minari.load_dataset(ids[k])  # read back what was written
        assert ds.total_episodes == len(eps) and ds.total_steps == n_steps, ids[k]
        ds.recover_environment(eval_env=True).close()
        built.append(ids[k])
        print(f"[make_dataset] wrote {ids[k]}: {len(eps)} episodes, {n_steps} transitions", flush=True)
    print(f"[make_dataset] done in {time.time() - t_start:.0f} s (SAC training {t_train:.0f} s)", flush=True)


def _diff(stored: dict | None, config: dict) -> str:
    if stored is None:
        return "no build-config recorded"
    keys = sorted(k for k in set(stored) | set(config) if stored.get(k) != config.get(k))
    return ", ".join(f"{k}: {stored.get(k)} here vs {config.get(k)} asked" for k in keys)


def build_suite(preset: str, *, force: bool = False, seed: int = 0, kinds: list[str] | None = None) -> list[str]:
    """Build (or reuse) a preset's datasets; returns their ids."""
    if preset not in PRESETS:
        raise DatasetBuildError(f"unknown preset {preset!r}; choose from {list(PRESETS)}")
    return _build_suite(PRESETS[preset], preset, seed=seed, kinds=kinds, force=force)


def ensure_dataset(dataset_id: str) -> None:
    """Build a preset's suite if `dataset_id` belongs to one and is missing locally; else do nothing."""
    preset = preset_for_dataset_id(dataset_id)
    if preset is None or _exists(dataset_id):
        return
    print(f"[make_dataset] {dataset_id} is not built yet: building the '{preset}' suite now "
          f"({PRESETS[preset].build_time}) ...", flush=True)
    build_suite(preset)


# ---------------------------------------------------------------------------------------------------
# CLI


@dataclass
class Args:
    preset: Literal["pendulum", "pendulum-tiny", "hopper", "halfcheetah", "walker2d"] = "pendulum"
    """preset suite (env and sizes); see PRESETS"""
    env: Optional[str] = None
    """a Gymnasium env id (Box actions) instead of --preset: uses that env's preset if one exists, else generic settings"""
    name: Optional[str] = None
    """suite name in the ids local/<name>/<kind>-v0 (default: the preset's, or the env's name)"""
    kinds: tuple[Kind, ...] = KINDS
    """the kinds to build (a subset builds only those, still training the whole behaviour policy)"""
    seed: int = 0
    """seeds SAC, torch, numpy and every env reset"""
    force: bool = False
    """rebuild datasets that exist (otherwise they are reused)"""
    # overrides of the preset; None keeps the preset's value
    sac_steps: Optional[int] = None
    """online SAC env steps"""
    snapshot_every: Optional[int] = None
    """env steps between actor snapshots"""
    snapshot_eval_episodes: Optional[int] = None
    """episodes scoring each snapshot"""
    steps_per_kind: Optional[int] = None
    """transitions collected for random, medium, expert (whole episodes)"""
    ref_episodes: Optional[int] = None
    """episodes behind each reference score"""
    num_envs: Optional[int] = None
    """episodes collected side by side"""
    learning_rate: Optional[float] = None
    """SAC learning rate"""
    learning_starts: Optional[int] = None
    """SAC random-action warm-up steps"""
    batch_size: Optional[int] = None
    """SAC batch size"""
    buffer_size: Optional[int] = None
    """SAC replay buffer size"""


def _env_name(env_id: str) -> str:
    # "HalfCheetah-v5" -> "halfcheetah", "ALE/Foo-v5" -> "foo"
    return re.sub(r"-v\d+$", "", env_id.split("/")[-1]).lower()


def resolve(args: Args) -> tuple[Preset, str]:
    """The settings and suite name that the command line asks for."""
    name, cfg = args.preset, PRESETS[args.preset]
    if args.env is not None:
        check_env(args.env)
        match = [p for p in PRESETS if PRESETS[p].env_id == args.env and not p.endswith("-tiny")]
        if match:
            name, cfg = match[0], PRESETS[match[0]]
        else:
            name, cfg = _env_name(args.env), Preset(args.env, **_GENERIC)
    over = {f: getattr(args, f) for f in ("sac_steps", "snapshot_every", "snapshot_eval_episodes",
                                          "steps_per_kind", "ref_episodes", "num_envs")
            if getattr(args, f) is not None}
    sac_over = {f: getattr(args, f) for f in ("learning_rate", "learning_starts", "batch_size", "buffer_size")
                if getattr(args, f) is not None}
    cfg = dataclasses.replace(cfg, **over, sac=dataclasses.replace(cfg.sac, **sac_over))
    for f in ("sac_steps", "snapshot_every", "snapshot_eval_episodes", "steps_per_kind", "ref_episodes",
              "num_envs"):
        if getattr(cfg, f) < 1:
            raise DatasetBuildError(f"--{f.replace('_', '-')} must be at least 1, got {getattr(cfg, f)}")
    if cfg.sac_steps % cfg.sac.train_freq:
        raise DatasetBuildError(f"--sac-steps ({cfg.sac_steps}) must be a multiple of SAC's train_freq "
                                f"({cfg.sac.train_freq}): SB3 runs whole rounds of {cfg.sac.train_freq} env steps")
    if cfg.snapshot_every >= cfg.sac_steps:
        raise DatasetBuildError(f"--snapshot-every ({cfg.snapshot_every}) must be below --sac-steps "
                                f"({cfg.sac_steps}): the medium policy is an earlier snapshot")
    return cfg, args.name or name


def main(argv: list[str] | None = None) -> list[str]:
    args = tyro.cli(Args, args=argv)
    try:
        cfg, name = resolve(args)
        return _build_suite(cfg, name, seed=args.seed, kinds=list(args.kinds), force=args.force)
    except DatasetBuildError as e:
        print(f"make_dataset: error: {e}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
