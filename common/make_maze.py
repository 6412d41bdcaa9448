"""Build a D4RL maze2d-style dataset whose way to the goal exists only in pieces, in Minari's format.

D4RL's maze2d sets (Fu et al. 2020, https://arxiv.org/abs/2004.07219) drive a point mass through a
maze with a waypoint controller: the shortest path between two cells, waypoints at the cell centres
(jittered), a PD law a = 10 (waypoint - position) - 1 * velocity clipped to [-1, 1], and Gaussian
noise (std 0.5) on every action (d4rl/pointmaze/waypoint_controller.py and
scripts/generation/generate_maze2d_datasets.py; Minari's `D4RL/pointmaze/*` were regenerated the same
way on Gymnasium-Robotics' PointMaze). Its reference scores are a random policy and that controller.

Here the same controller drives `PointMaze_UMaze-v3`, but only along pieces of the way from the
evaluation start S (bottom-left cell) round the wall to the goal G (top-left cell):

    #####      S start (3, 1), G goal (1, 1), M middle (1, 2), cells as (row, col)
    #GM.#      start-to-middle: S -> M, round the U; ends at rest at M (truncated)
    ###.#      middle-to-goal:  M -> G; ends at the goal (terminated, reward 1)
    #S..#      middle-to-start: M -> S; ends at rest at S (truncated)
    #####      start-to-middle-to-start: S -> M, turns back there without waiting, towards S; two per
               round, cut by the 300-step time limit on the way back (truncated)

No episode goes from the start cell to the goal (a piece that would is drawn again), but pieces meet
at M, where one ends at rest and the next starts at rest (a reset has zero velocity). An algorithm
that propagates values through shared states (IQL, CQL) can join them; filtered BC keeps only the
episodes with the best returns, which start at M and show nothing of the way from S, and DT is asked
for a return that no episode from S ever had.

The last two pieces are there for plain BC, which copies the data's mean action in states like its
own: at M the data must lead back towards S more often than on to G. Middle-to-start pieces do so
from rest; but a mass that comes round the U reaches M at speed, and there the middle-to-goal pieces,
which speed up through M towards G, outweighed the start-to-middle pieces braking to a stop: a cloned
policy that arrived too fast carried on to the goal. The round trips add data that arrives at M at
speed and turns back (their turning point is spread over M as a piece's end target).

Rewards are sparse (1 on reaching the goal, where the episode ends), so an episode's return is
whether it reached the goal and the normalised score is a success rate: ref_min_score is a uniform
random policy, ref_max_score the noise-free controller, both from the evaluation start.

    python -m common.make_maze                      # local/pointmaze-stitch/umaze-v0 and umaze-whole-v0
    python -m common.make_maze --kinds umaze --pieces 100 --force

`umaze-whole` is the control: the same controller, but whole start-to-goal trajectories in place of
the start-to-middle and middle-to-goal pieces (and no round trips). See docs/overview.md (stitching).
"""

from __future__ import annotations

import copy
import json
import os
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import tyro

from common import make_dataset as md
from common.make_dataset import DatasetBuildError, Episode

NAME = "pointmaze-stitch"
R, G = "r", "g"


@dataclass(frozen=True)
class Maze:
    env_id: str
    maze_map: list
    """Gymnasium-Robotics' map with one reset cell 'r' (the evaluation start) and one goal cell 'g'"""
    middle: tuple[int, int]
    """the cell where the pieces meet"""

    def cell(self, mark: str) -> tuple[int, int]:
        return next((i, j) for i, row in enumerate(self.maze_map) for j, c in enumerate(row) if c == mark)

    @property
    def start(self) -> tuple[int, int]:
        return self.cell(R)

    @property
    def goal(self) -> tuple[int, int]:
        return self.cell(G)


# Gymnasium-Robotics' U_MAZE (D4RL's maze2d-umaze) with the reset and goal cells of Minari's D4RL
# antmaze-umaze port (minari-dataset-generation-scripts: G at (1, 1), R at (3, 1)): the way goes round
# the wall. The pieces meet one cell before the goal, so the pieces that reach the goal show nothing
# of the way from the start. With the meeting point at the corner (1, 3), filtered BC trained on the
# corner-to-goal pieces found the way from the start anyway (pushing up against the wall and sliding
# along it to the corridor: 90-100% success in each of 3 seeds); so it did in the Medium maze from
# (1, 1) to (6, 6), meeting at (3, 4) (80-100%, one seed), whose way is a staircase. Walls guide a
# point mass that pushes roughly towards the goal.
MAZES = {
    "umaze": Maze("PointMaze_UMaze-v3", [[1, 1, 1, 1, 1],
                                         [1, G, 0, 0, 1],
                                         [1, 1, 1, 0, 1],
                                         [1, R, 0, 0, 1],
                                         [1, 1, 1, 1, 1]], middle=(1, 2)),
}
# the pieces of each kind of dataset: the cells they go through, among "start", "middle", "goal"; a
# piece turns back at a cell in between without stopping there
PIECES = {
    "start-to-middle": ("start", "middle"),
    "middle-to-goal": ("middle", "goal"),
    "middle-to-start": ("middle", "start"),
    "start-to-middle-to-start": ("start", "middle", "start"),
    "start-to-goal": ("start", "goal"),  # the control only
}
# one round of episodes of each kind of dataset, in order; the round trip twice (module docstring)
STITCH_PIECES = ("start-to-middle", "middle-to-goal", "middle-to-start", "start-to-middle-to-start",
                 "start-to-middle-to-start")
WHOLE_PIECES = ("start-to-goal", "middle-to-start")
KINDS = tuple(k for m in MAZES for k in (m, f"{m}-whole"))
Kind = Literal["umaze", "umaze-whole"]
REACH_RADIUS = 0.45  # PointMaze's success radius
# a piece that is not bound for the goal ends once it is within REACH_RADIUS of its target and this
# slow: at rest, as the pieces that start there (a reset has zero velocity)
REST_SPEED = 0.5


def maze_of(kind: str) -> Maze:
    return MAZES[kind.removesuffix("-whole")]


def pieces_of(kind: str) -> tuple[str, ...]:
    return WHOLE_PIECES if kind.endswith("-whole") else STITCH_PIECES


@dataclass(frozen=True)
class Config:
    pieces: int = 300
    """rounds: each round holds one episode of each piece kind of the dataset (two round trips)"""
    action_noise: float = 0.5
    """std of the Gaussian noise added to the controller's action (D4RL's noisy maze2d: 0.5)"""
    p_gain: float = 10.0
    """PD gains (D4RL's waypoint controller)"""
    d_gain: float = -1.0
    waypoint_threshold: float = 0.1
    """move on to the next waypoint this close to it (D4RL; Minari's controller)"""
    waypoint_jitter: float = 0.2
    """waypoints are cell centres minus U(0, jitter) in each coordinate (D4RL)"""
    target_noise: float = 0.25
    """a piece's end target: its last cell's centre plus U(-x, x), as PointMaze places goals"""
    ref_episodes: int = 100
    """episodes behind ref_min_score and ref_max_score"""


def dataset_id(kind: str) -> str:
    return md.dataset_id(NAME, kind)


def eval_env_spec(maze: Maze) -> gym.envs.registration.EnvSpec:
    """The maze's PointMaze env that always starts in the start cell with the goal in the goal cell
    (both jittered by PointMaze's +-0.25 per coordinate), with the sparse reward and an episode that
    ends at the goal (continuing_task False). The data is collected in this same env."""
    import gymnasium_robotics

    gym.register_envs(gymnasium_robotics)
    spec = copy.deepcopy(gym.spec(maze.env_id))
    spec.kwargs = {**spec.kwargs, "maze_map": maze.maze_map, "reward_type": "sparse", "continuing_task": False,
                   "reset_target": False}
    return spec


def _close(env: gym.Env) -> None:
    # Gymnasium-Robotics writes each maze's MuJoCo model to a temporary XML file and leaves it there
    path = getattr(env.unwrapped, "tmp_xml_file_path", None)
    env.close()
    if path and os.path.exists(path):
        os.remove(path)


def _seed_base(seed: int, purpose: int) -> int:
    # disjoint episode-seed ranges: 1 data, 2 random reference, 3 controller reference
    return (seed * 10 + purpose) * 1_000_000


# ---------------------------------------------------------------------------------------------------
# The controller


def shortest_path(maze_map: list, start: tuple[int, int], goal: tuple[int, int]) -> list[tuple[int, int]]:
    """Cells from start to goal (both included) on a shortest 4-connected path through free cells
    (breadth-first search; D4RL runs Q-iteration on the same grid, which finds shortest paths too)."""
    prev = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            path = [cell]
            while prev[path[-1]] is not None:
                path.append(prev[path[-1]])
            return path[::-1]
        i, j = cell
        for nxt in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)):
            if maze_map[nxt[0]][nxt[1]] != 1 and nxt not in prev:
                prev[nxt] = cell
                queue.append(nxt)
    raise DatasetBuildError(f"no path from cell {start} to cell {goal}")


class WaypointController:
    """Follows the waypoints of one path, then heads for `target_xy`. Observations are PointMaze's
    Dict: achieved_goal = (x, y), observation = (x, y, vx, vy)."""

    def __init__(self, maze, path: list[tuple[int, int]], target_xy: np.ndarray, cfg: Config,
                 rng: np.random.Generator, turns: dict[int, np.ndarray] | None = None):
        """`turns` {index in path: point}: where the path turns back, the waypoint of that cell is the given
        point (spread over the cell as a piece's end target) rather than its jittered centre."""
        turns = turns or {}
        # the first cell is where we are; the last is replaced by the target itself
        self.waypoints = [np.asarray(turns[i], dtype=np.float64) if i in turns else
                          maze.cell_rowcol_to_xy(np.array(c)) - rng.uniform(size=2) * cfg.waypoint_jitter
                          for i, c in enumerate(path[1:-1], start=1)] + [np.asarray(target_xy, dtype=np.float64)]
        self.k = 0
        self.cfg = cfg

    def __call__(self, obs: dict) -> np.ndarray:
        pos, vel = obs["achieved_goal"], obs["observation"][2:]
        if self.k < len(self.waypoints) - 1 and np.linalg.norm(self.waypoints[self.k] - pos) <= self.cfg.waypoint_threshold:
            self.k += 1
        # a = K_p (waypoint - position) + K_d velocity   (D4RL's PD law, K_d < 0)
        action = self.cfg.p_gain * (self.waypoints[self.k] - pos) + self.cfg.d_gain * vel
        return np.clip(action, -1.0, 1.0)


# ---------------------------------------------------------------------------------------------------
# Collection


def _cell(env_maze, xy) -> tuple[int, int]:
    return tuple(int(v) for v in env_maze.cell_xy_to_rowcol(np.asarray(xy)))


def run_piece(env: gym.Env, maze: Maze, piece: str, seed: int, cfg: Config) -> Episode:
    """One episode of `piece`: reset in its first cell, drive through its cells to its last one (turning
    back at any cell in between, without waiting there); the episode ends at rest there (truncated: the MDP goes on), at
    the goal (the env terminates) or at the time limit."""
    cells = [getattr(maze, p) for p in PIECES[piece]]
    first, last = cells[0], cells[-1]
    env_maze = env.unwrapped.maze
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed, options={"reset_cell": np.array(first)})

    def somewhere_in(cell):  # a piece's end or turning point: the cell's centre + U(-x, x), as PointMaze's goals
        return env_maze.cell_rowcol_to_xy(np.array(cell)) + rng.uniform(-cfg.target_noise, cfg.target_noise, 2)

    to_goal = last == maze.goal
    target = obs["desired_goal"].copy() if to_goal else somewhere_in(last)
    path, turns = [_cell(env_maze, obs["achieved_goal"])], {}
    for cell in cells[1:]:
        if len(path) > 1:
            turns[len(path) - 1] = somewhere_in(path[-1])
        path += shortest_path(maze.maze_map, path[-1], cell)[1:]
    controller = WaypointController(env_maze, path, target, cfg, rng, turns)
    dtype = env.action_space.dtype
    keys = sorted(obs)
    obs_lists = {k: [obs[k]] for k in keys}
    actions, rewards, terms, truncs = [], [], [], []
    while True:
        action = np.clip(controller(obs) + cfg.action_noise * rng.standard_normal(2), -1.0, 1.0).astype(dtype)
        obs, reward, terminated, truncated, _ = env.step(action)
        at_rest = (not to_goal and controller.k == len(controller.waypoints) - 1
                   and np.linalg.norm(obs["achieved_goal"] - target) <= REACH_RADIUS
                   and np.linalg.norm(obs["observation"][2:]) <= REST_SPEED)
        for k in keys:
            obs_lists[k].append(obs[k])
        actions.append(action)
        rewards.append(reward)
        terms.append(terminated)
        truncs.append(truncated or (at_rest and not terminated))
        if terminated or truncated or at_rest:
            break
    return Episode({k: np.stack(v) for k, v in obs_lists.items()}, np.stack(actions),
                   np.asarray(rewards, dtype=np.float64), np.asarray(terms, dtype=bool),
                   np.asarray(truncs, dtype=bool), seed=seed)


def goes_start_to_goal(maze: Maze, observations: dict) -> bool:
    """Whether an episode both visits the start cell and comes within REACH_RADIUS of its goal."""
    pos, goal = np.asarray(observations["achieved_goal"]), np.asarray(observations["desired_goal"])
    cells = np.floor(np.stack([len(maze.maze_map) / 2 - pos[:, 1], pos[:, 0] + len(maze.maze_map[0]) / 2], 1))
    in_start = bool((cells == np.array(maze.start)).all(axis=1).any())
    return in_start and bool((np.linalg.norm(pos - goal, axis=1) <= REACH_RADIUS).any())


def collect(kind: str, cfg: Config, seed: int) -> tuple[list[Episode], dict]:
    """The episodes of one dataset kind, pieces interleaved (round k holds pieces_of(kind)[p] as episode
    k * len(pieces) + p). In the stitching kinds, a piece that happens to go from the start cell to the
    goal is dropped and drawn again with the next seed: the point of the data is that none does."""
    maze = maze_of(kind)
    env = gym.make(eval_env_spec(maze))
    seed_k = _seed_base(seed, 1)
    episodes = []
    stats = {p: {"episodes": 0, "transitions": 0, "reached_goal": 0, "redrawn": 0} for p in pieces_of(kind)}
    try:
        for _ in range(cfg.pieces):
            for piece in pieces_of(kind):
                while True:
                    ep = run_piece(env, maze, piece, seed_k, cfg)
                    seed_k += 1
                    if kind.endswith("-whole") or not goes_start_to_goal(maze, ep.observations):
                        break
                    stats[piece]["redrawn"] += 1
                    if stats[piece]["redrawn"] > cfg.pieces:
                        raise DatasetBuildError(f"most {piece} pieces go from the start to the goal; "
                                                "lower --action-noise")
                episodes.append(ep)
                s = stats[piece]
                s["episodes"] += 1
                s["transitions"] += len(ep.rewards)
                s["reached_goal"] += int(ep.terminations.any())
    finally:
        _close(env)
    return episodes, stats


def reference_scores(maze: Maze, cfg: Config, seed: int) -> tuple[float, float]:
    """(uniform random policy, noise-free controller): mean returns over cfg.ref_episodes episodes
    each of the evaluation env, from its own start (D4RL's reference policies for maze2d)."""
    env = gym.make(eval_env_spec(maze))
    dtype = env.action_space.dtype
    returns = {"random": [], "controller": []}
    try:
        rng = np.random.default_rng(_seed_base(seed, 2))
        for who, purpose in (("random", 2), ("controller", 3)):
            for k in range(cfg.ref_episodes):
                s = _seed_base(seed, purpose) + k
                obs, _ = env.reset(seed=s)
                if who == "controller":
                    path = shortest_path(maze.maze_map, _cell(env.unwrapped.maze, obs["achieved_goal"]), maze.goal)
                    policy = WaypointController(env.unwrapped.maze, path, obs["desired_goal"], cfg,
                                                np.random.default_rng(s))
                else:
                    policy = lambda _: rng.uniform(-1.0, 1.0, 2)
                ret, done = 0.0, False
                while not done:
                    obs, r, terminated, truncated, _ = env.step(policy(obs).astype(dtype))
                    ret, done = ret + float(r), terminated or truncated
                returns[who].append(ret)
    finally:
        _close(env)
    return float(np.mean(returns["random"])), float(np.mean(returns["controller"]))


# ---------------------------------------------------------------------------------------------------
# Building


def _config_record(cfg: Config, seed: int) -> dict:
    return {**asdict(cfg), "seed": seed}


def check_config(cfg: Config) -> None:
    for f in ("pieces", "ref_episodes"):
        if getattr(cfg, f) < 1:
            raise DatasetBuildError(f"--{f.replace('_', '-')} must be at least 1, got {getattr(cfg, f)}")
    for f in ("action_noise", "waypoint_jitter", "target_noise"):
        if not getattr(cfg, f) >= 0:
            raise DatasetBuildError(f"--{f.replace('_', '-')} must be non-negative, got {getattr(cfg, f)}")
    if cfg.target_noise >= 0.5:
        raise DatasetBuildError(f"--target-noise must be below 0.5 (half a cell), got {cfg.target_noise}")
    if not (cfg.p_gain > 0 and cfg.waypoint_threshold > 0):
        raise DatasetBuildError("--p-gain and --waypoint-threshold must be positive")


def _require_robotics() -> None:
    try:
        import gymnasium_robotics  # noqa: F401
    except ImportError:
        raise DatasetBuildError("PointMaze needs Gymnasium-Robotics: pip install gymnasium-robotics==1.4.2") from None


def build(kinds: tuple[str, ...] | list[str] = KINDS, *, seed: int = 0, force: bool = False,
          cfg: Config = Config()) -> list[str]:
    """Build (or reuse) the datasets of `kinds`; returns their ids."""
    kinds = list(dict.fromkeys(kinds))
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise DatasetBuildError(f"unknown dataset kind(s) {bad}; choose from {list(KINDS)}")
    check_config(cfg)
    _require_robotics()
    config = _config_record(cfg, seed)
    todo = []
    for k in kinds:
        if force or not md._exists(dataset_id(k)):
            todo.append(k)
            continue
        stored = md._stored_config(dataset_id(k))
        if stored != config:
            print(f"[make_maze] note: {dataset_id(k)} exists but was built with other settings "
                  f"({md._diff(stored, config)}); reusing it (--force rebuilds)", flush=True)
        print(f"[make_maze] reusing existing {dataset_id(k)} (--force rebuilds it)", flush=True)
    if not todo:
        return [dataset_id(k) for k in kinds]

    import gymnasium_robotics
    import minari

    t0 = time.time()
    refs = {}
    for k in todo:
        maze = maze_of(k)
        if maze.env_id not in refs:  # one pair of reference scores per maze
            refs[maze.env_id] = reference_scores(maze, cfg, seed)
            print(f"[make_maze] {maze.env_id}: ref_min_score {refs[maze.env_id][0]:.3f} (uniform random), "
                  f"ref_max_score {refs[maze.env_id][1]:.3f} (noise-free controller), {cfg.ref_episodes} "
                  "episodes each from the evaluation start", flush=True)
        ref_min, ref_max = refs[maze.env_id]
        if not ref_max > ref_min:
            raise DatasetBuildError(f"on {maze.env_id} the controller (mean return {ref_max:.3f}) does not beat "
                                    f"the random policy ({ref_min:.3f}) from the evaluation start")
        spec = eval_env_spec(maze)
        episodes, stats = collect(k, cfg, seed)
        n = sum(len(e.rewards) for e in episodes)
        cells = {"start": maze.start, "middle": maze.middle, "goal": maze.goal}
        pieces = "; ".join(
            f"{p} {' -> '.join(str(cells[c]) for c in PIECES[p])}: {s['episodes']} episodes, {s['transitions']} "
            f"transitions, {s['reached_goal']} reached the goal" + (f", {s['redrawn']} redrawn" if s["redrawn"] else "")
            for p, s in stats.items())
        what = ("pieces of the way only: no episode goes from the start cell to the goal (a piece that did was "
                "drawn again with the next seed)" if not k.endswith("-whole") else
                "the control: whole start-to-goal trajectories in place of the start-to-middle and middle-to-goal "
                "pieces")
        desc = (
            f"Stitching dataset '{k}' on {maze.env_id} (Gymnasium-Robotics {gymnasium_robotics.__version__}), "
            f"built locally by common/make_maze.py: {what}. Episode k * {len(pieces_of(k))} + p is piece p of "
            f"round k, a round being ({', '.join(pieces_of(k))}). "
            f"Cells (row, col): start {maze.start}, middle {maze.middle}, goal {maze.goal}; {pieces}. "
            f"Behaviour: D4RL's maze2d waypoint controller, rewritten (shortest path, waypoints at cell centres "
            f"minus U(0, {cfg.waypoint_jitter}), a = {cfg.p_gain} (waypoint - xy) + {cfg.d_gain} v clipped to "
            f"[-1, 1], next waypoint within {cfg.waypoint_threshold}), plus N(0, {cfg.action_noise}^2) action noise, "
            f"clipped. A piece that turns back at a cell has there, in place of the jittered centre, a waypoint "
            f"at the cell's centre + U(-{cfg.target_noise}, {cfg.target_noise}). "
            f"Each piece is reset with options reset_cell = its first cell; it ends at rest (within "
            f"{REACH_RADIUS} of its target, its last cell's centre + U(-{cfg.target_noise}, {cfg.target_noise}), at "
            f"speed <= {REST_SPEED}; truncated), at the goal (terminated, reward 1) or at the time limit "
            f"(truncated). Env and eval env: {maze.env_id} with the maze_map marking 'r' at the start and 'g' at the "
            f"goal, reward_type sparse, continuing_task False (the episode ends at the goal): a return is 1 if the "
            f"goal was reached, else 0. ref_min_score = mean return of a uniform random policy ({ref_min:.3f}), "
            f"ref_max_score = mean return of the noise-free controller ({ref_max:.3f}), {cfg.ref_episodes} episodes "
            f"each from the evaluation start. {len(episodes)} episodes, {n} transitions, seed {seed}. Software: "
            f"gymnasium {gym.__version__}, minari {minari.__version__}, numpy {np.__version__}.\n"
            f"build-config: {json.dumps(config)}")
        # _write_dataset records its env argument as both env and eval_env: the spec above
        md._write_dataset(dataset_id(k), spec, episodes, algorithm_name="D4RL-style waypoint controller + noise",
                          description=desc, ref_min=ref_min, ref_max=ref_max, ref_episodes=cfg.ref_episodes,
                          force=force)
        print(f"[make_maze] wrote {dataset_id(k)}: {len(episodes)} episodes, {n} transitions ({pieces})", flush=True)
    print(f"[make_maze] done in {time.time() - t0:.0f} s", flush=True)
    return [dataset_id(k) for k in kinds]


# ---------------------------------------------------------------------------------------------------
# CLI


@dataclass
class Args:
    kinds: tuple[Kind, ...] = KINDS
    """the datasets to build: umaze (pieces only) and umaze-whole (the control)"""
    seed: int = 0
    """seeds every reset, the controller's jitter and its action noise"""
    force: bool = False
    """rebuild datasets that exist (otherwise they are reused)"""
    pieces: int = Config.pieces
    """rounds: each holds one episode of each piece kind (two round trips)"""
    action_noise: float = Config.action_noise
    """std of the Gaussian action noise (D4RL: 0.5)"""
    ref_episodes: int = Config.ref_episodes
    """episodes behind each reference score"""


def main(argv: list[str] | None = None) -> list[str]:
    args = tyro.cli(Args, args=argv)
    cfg = Config(pieces=args.pieces, action_noise=args.action_noise, ref_episodes=args.ref_episodes)
    try:
        return build(args.kinds, seed=args.seed, force=args.force, cfg=cfg)
    except DatasetBuildError as e:
        print(f"make_maze: error: {e}", file=sys.stderr)
        raise SystemExit(2)


if __name__ == "__main__":
    main()
