"""common/make_maze.py: a tiny stitching dataset built into a temporary dataset root (never ~/.minari),
then checked the way the experiment needs it: the loader reads it, no episode goes from the start to
the goal, the pieces meet, the evaluation env starts at the start with the goal at the goal."""

import os

import minari
import numpy as np
import pytest

from common import make_maze as mm
from common.make_dataset import DatasetBuildError

ENV_VAR = "MINARI_DATASETS_PATH"
TINY = mm.Config(pieces=4, ref_episodes=3)
STITCH, WHOLE = mm.dataset_id("umaze"), mm.dataset_id("umaze-whole")
MAZE = mm.MAZES["umaze"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A dataset root of this module's own, restored afterwards."""
    old = os.environ.get(ENV_VAR)
    path = tmp_path_factory.mktemp("minari-make-maze")
    os.environ[ENV_VAR] = str(path)
    yield path
    if old is None:
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = old


@pytest.fixture(scope="module")
def built(root):
    return mm.build(seed=0, cfg=TINY)


def _cell(xy):
    # PointMaze's cell of a point (maze_size_scaling 1, the map centred on the origin), worked out here
    # rather than taken from the module under test
    rows, cols = len(MAZE.maze_map), len(MAZE.maze_map[0])
    return int(np.floor(rows / 2 - xy[1])), int(np.floor(xy[0] + cols / 2))


def _episodes(ds_id):
    return list(minari.load_dataset(ds_id).iterate_episodes())


def test_the_loader_loads_it_with_reference_scores(built, root):
    from common.datasets import load_dataset

    assert built == [STITCH, WHOLE]
    data = load_dataset(STITCH, "cpu", verbose=False)
    # Dict observation flattened in sorted keys: achieved_goal (2), desired_goal (2), observation (4)
    assert (data.obs_dim, data.act_dim, data.num_episodes) == (8, 2, len(mm.STITCH_PIECES) * TINY.pieces)
    assert data.ref_source == "dataset" and data.ref_min_score < data.ref_max_score
    assert data.max_episode_steps == 300
    np.testing.assert_allclose(data.observations[:, :2], data.observations[:, 4:6])  # achieved_goal = x, y
    env = data.make_env()
    obs, _ = env.reset(seed=1)
    assert obs.shape == (8,)
    mm._close(env)
    assert not [p for p in os.listdir(root) if p.startswith(".")]  # no staging leftovers


def test_no_episode_goes_from_the_start_to_the_goal(built):
    episodes = _episodes(STITCH)
    reached = starts = 0
    for e in episodes:
        pos, goal = e.observations["achieved_goal"], e.observations["desired_goal"]
        in_start = any(_cell(p) == MAZE.start for p in pos)
        at_goal = bool((np.linalg.norm(pos - goal, axis=1) <= 0.45).any())
        assert not (in_start and at_goal), f"episode {e.id} goes from the start cell {MAZE.start} to the goal"
        reached += at_goal
        starts += _cell(pos[0]) == MAZE.start
    # start-to-middle pieces and two round trips per round leave the start
    assert reached == TINY.pieces and starts == 3 * TINY.pieces, \
        f"expected {TINY.pieces} episodes reaching the goal and {3 * TINY.pieces} leaving the start, got {reached}, {starts}"
    # the control does hold whole start-to-goal episodes
    assert any(_cell(e.observations["achieved_goal"][0]) == MAZE.start and e.terminations[-1] for e in _episodes(WHOLE))


def test_at_the_middle_the_data_leaves_back_towards_the_start_at_least_as_often(built):
    """Plain BC copies the data's average action: at M the data must not favour the way to G, or BC
    finds the goal without any use of the rewards. Count every step that leaves M's cell, by the cell
    it goes to (G's, or the corridor's other end towards S)."""
    towards_goal = back = 0
    for e in _episodes(STITCH):
        cells = [_cell(p) for p in e.observations["achieved_goal"]]
        for a, b in zip(cells, cells[1:]):
            if a == MAZE.middle and b != a:
                towards_goal += b == MAZE.goal
                back += b == (MAZE.middle[0], MAZE.middle[1] + 1)
    assert towards_goal > 0 and back >= towards_goal, \
        f"steps leaving the middle cell: {towards_goal} towards the goal, {back} back towards the start"


def test_data_reaching_the_middle_at_speed_turns_back_at_least_as_often_as_it_goes_on(built):
    """Plain BC copies the data's action in states like its own, velocity included: a mass that comes round
    the U reaches M moving towards G, fast. Of the episodes that cross M's cell towards G at speed (vx < -1),
    at least as many must come back out of M towards S as go on into G's cell."""
    right_of_middle = (MAZE.middle[0], MAZE.middle[1] + 1)
    on = back = 0
    for e in _episodes(STITCH):
        o = e.observations["observation"]
        cells = [_cell(p) for p in o[:, :2]]
        fast = [t for t, c in enumerate(cells) if c == MAZE.middle and o[t, 2] < -1.0]
        if fast:
            after = cells[fast[0]:]
            on += MAZE.goal in after
            back += right_of_middle in after
    assert on > 0 and back >= on, f"episodes crossing the middle towards the goal at speed: {on} go on to the " \
                                  f"goal's cell, {back} turn back towards the start"


def test_round_trips_turn_back_at_the_middle(built):
    """Each round trip leaves the start, reaches M and comes back out of M the way it came, without
    reaching the goal; it ends truncated (at rest at the start or at the time limit)."""
    trips = [e for k, e in enumerate(_episodes(STITCH)) if mm.STITCH_PIECES[k % len(mm.STITCH_PIECES)]
             == "start-to-middle-to-start"]
    assert len(trips) == 2 * TINY.pieces
    for e in trips:
        cells = [_cell(p) for p in e.observations["achieved_goal"]]
        assert cells[0] == MAZE.start and MAZE.middle in cells and MAZE.goal not in cells
        first_in_middle = cells.index(MAZE.middle)
        assert (MAZE.middle[0], MAZE.middle[1] + 1) in cells[first_in_middle:], f"episode {e.id} stays in the middle"
        assert e.truncations[-1] and not e.terminations.any()


def test_pieces_meet(built):
    """Some state of a start-to-middle piece lies near some state of a middle-to-goal piece: position
    and velocity (x, y, vx, vy) within 0.3, in the units of the observation."""
    episodes = _episodes(STITCH)
    from_start = [e.observations["observation"] for e in episodes if _cell(e.observations["achieved_goal"][0]) == MAZE.start]
    to_goal = [e.observations["observation"] for e in episodes if e.terminations[-1]]
    a, b = np.concatenate(from_start), np.concatenate(to_goal)
    nearest = np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1).min()
    assert nearest < 0.3, f"the pieces never meet: closest states {nearest:.3f} apart (expected < 0.3)"


def test_ends_are_terminations_only_at_the_goal(built):
    for e in _episodes(STITCH):
        goal_hit = np.linalg.norm(e.observations["achieved_goal"][1:] - e.observations["desired_goal"][1:], axis=1) <= 0.45
        # the sparse reward: 1 exactly at the steps within the goal radius; only the last step can end
        np.testing.assert_array_equal(e.rewards, goal_hit.astype(float))
        assert not e.terminations[:-1].any() and not e.truncations[:-1].any()
        # a piece that stops short of the goal is cut (truncated), never ended: its value bootstraps
        assert e.terminations[-1] == goal_hit[-1] and e.truncations[-1] == (not goal_hit[-1]), \
            f"episode {e.id}: expected terminated={goal_hit[-1]}, truncated={not goal_hit[-1]}"


def test_the_evaluation_env_starts_at_the_start_with_the_fixed_goal(built):
    ds = minari.load_dataset(STITCH)
    env = ds.recover_environment(eval_env=True)
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        assert _cell(obs["achieved_goal"]) == MAZE.start and _cell(obs["desired_goal"]) == MAZE.goal
    # the episode ends at the goal, with reward 1
    env.unwrapped.point_env.set_state(obs["desired_goal"], np.zeros(2))
    _, r, terminated, truncated, _ = env.step(np.zeros(2, dtype=np.float32))
    assert (r, terminated, truncated) == (1.0, True, False)
    mm._close(env)


def test_shortest_path_and_the_pd_law():
    assert mm.shortest_path(MAZE.maze_map, (3, 1), (1, 1)) == [(3, 1), (3, 2), (3, 3), (2, 3), (1, 3), (1, 2), (1, 1)]

    class Grid:  # cell centres at integer coordinates, no jitter below
        @staticmethod
        def cell_rowcol_to_xy(rc):
            return np.array([rc[1], -rc[0]], dtype=float)

    cfg = mm.Config(waypoint_jitter=0.0)
    c = mm.WaypointController(Grid, [(0, 0), (0, 1), (0, 2)], np.array([2.0, 0.0]), cfg, np.random.default_rng(0))
    obs = {"achieved_goal": np.array([0.95, 0.0]), "observation": np.array([0.95, 0.0, 0.3, 0.2])}
    # 0.05 from the first waypoint (1, 0): on to the target (2, 0); a = 10 (2 - 0.95, 0) - (0.3, 0.2), clipped
    np.testing.assert_allclose(c(obs), [1.0, -0.2])
    obs = {"achieved_goal": np.array([1.95, 0.02]), "observation": np.array([1.95, 0.02, 0.1, 0.0])}
    np.testing.assert_allclose(c(obs), [10 * 0.05 - 0.1, 10 * -0.02])
    # a path that turns back at (0, 1): that cell's waypoint is the given point, not its centre; the path
    # goes on to the cell after it only once within waypoint_threshold of the point
    c = mm.WaypointController(Grid, [(0, 0), (0, 1), (0, 0)], np.array([0.0, 0.0]), cfg, np.random.default_rng(0),
                              turns={1: np.array([1.2, 0.1])})
    obs = {"achieved_goal": np.array([1.1, 0.08]), "observation": np.array([1.1, 0.08, 0.5, 0.0])}
    np.testing.assert_allclose(c(obs), [10 * 0.1 - 0.5, 10 * 0.02])  # 0.102 from the point: not there yet
    assert c.k == 0
    obs = {"achieved_goal": np.array([1.15, 0.05]), "observation": np.array([1.15, 0.05, 0.5, 0.0])}
    np.testing.assert_allclose(c(obs), [-1.0, 10 * -0.05])  # back to the start: 10 (0 - 1.15) - 0.5, clipped
    assert c.k == 1


def test_same_seed_same_data(built, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path))
    mm.build(["umaze"], seed=0, cfg=TINY)
    again, meta = _episodes(STITCH), minari.load_dataset(STITCH).storage.metadata
    monkeypatch.undo()
    first = _episodes(STITCH)
    assert len(first) == len(again)
    for a, b in zip(first, again):
        for k in a.observations:
            np.testing.assert_array_equal(a.observations[k], b.observations[k])
        np.testing.assert_array_equal(a.actions, b.actions)
    first_meta = minari.load_dataset(STITCH).storage.metadata
    assert (first_meta["ref_min_score"], first_meta["ref_max_score"]) == (meta["ref_min_score"], meta["ref_max_score"])
    assert first_meta["description"] == meta["description"]


def test_existing_datasets_are_reused(built, root, capsys):
    stamp = {p: p.stat().st_mtime_ns for p in root.rglob("*.hdf5")}
    assert mm.build(seed=0, cfg=TINY) == built
    assert capsys.readouterr().out.count("reusing existing") == 2
    assert stamp == {p: p.stat().st_mtime_ns for p in root.rglob("*.hdf5")}


@pytest.mark.parametrize("argv, message", [
    (["--kinds", "medium"], "invalid choice"),
    (["--pieces", "0"], "--pieces must be at least 1, got 0"),
    (["--action-noise", "-1"], "--action-noise must be non-negative, got -1.0"),
])
def test_bad_input_is_refused_and_nothing_written(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "root"))
    with pytest.raises(SystemExit) as exc:
        mm.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "root").exists()
    with pytest.raises(DatasetBuildError, match="unknown dataset kind"):
        mm.build(["medium"])
