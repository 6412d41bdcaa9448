"""trajectory_transformer.py: the discretiser and its round trip, the values, windows and loss by hand, the
model's cache, causality and value masking, the beam score by hand, beam search on a hand-made model whose best
plan is known, the context the planner is fed, end to end with a checkpoint, a learning check, bad input."""

import math
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

import trajectory_transformer as tt
from common.datasets import load_dataset
from testdata import read_summary, run_script


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# A model and a planner small enough for the tests: the code paths are the same at any size.
SMALL = ["--embed-dim", 32, "--n-layers", 2, "--n-heads", 2, "--sequence-len", 4, "--batch-size", 16,
         "--n-bins", 20, "--horizon", 2, "--beam-width", 4, "--n-expand", 2]


# ---------------------------------------------------------------- the discretiser
@pytest.mark.exercise("trajectory_transformer.bin_edges")
def test_bin_edges_by_hand():
    # 9 values, skewed: 4 zeros, then 1, 2, 3, 10, 100; V = 4 bins.
    x = torch.tensor([3.0, 0.0, 100.0, 0.0, 1.0, 10.0, 0.0, 2.0, 0.0])[:, None]
    uniform = tt.bin_edges(x, 4, "uniform")
    assert uniform.shape == (5, 1), f"edges: expected (V + 1, D) = (5, 1), got {tuple(uniform.shape)}"
    assert uniform[:, 0].tolist() == pytest.approx([0.0, 25.0, 50.0, 75.0, 100.0]), (
        f"uniform edges: expected 4 bins of equal width from min 0 to max 100, got {uniform[:, 0].tolist()}")
    # quantile: the sorted data [0, 0, 0, 0, 1, 2, 3, 10, 100] at indices 0, 2, 4, 6, 8
    quantile = tt.bin_edges(x, 4, "quantile")
    assert quantile[:, 0].tolist() == pytest.approx([0.0, 0.0, 1.0, 3.0, 100.0]), (
        f"quantile edges: expected the sorted data at indices k (M - 1) / V = 0, 2, 4, 6, 8, i.e. "
        f"[0, 0, 1, 3, 100], got {quantile[:, 0].tolist()}")
    # each dimension on its own
    two = tt.bin_edges(torch.cat([x, -x], 1), 4, "quantile")
    assert two[:, 1].tolist() == pytest.approx([-100.0, -3.0, -1.0, 0.0, 0.0])


def round_trip_data():
    g = torch.Generator().manual_seed(0)
    smooth = torch.randn(2000, 1, generator=g) ** 3  # heavy tails
    ties = torch.randint(0, 4, (2000, 1), generator=g).float()  # four values: many equal edges
    sparse = (torch.rand(2000, 1, generator=g) < 0.02).float()  # a sparse reward
    return torch.cat([smooth, ties, sparse, torch.rand(2000, 1, generator=g) * 4 - 2], 1)


@pytest.mark.exercise("trajectory_transformer.bin_edges")
@pytest.mark.parametrize("kind", ["uniform", "quantile"])
def test_round_trip_is_within_half_a_bin(kind):
    x = round_trip_data()
    edges = tt.bin_edges(x, 25, kind)
    assert (edges[1:] >= edges[:-1]).all(), "edges must not decrease"
    assert torch.equal(edges[0], x.min(0).values) and torch.equal(edges[-1], x.max(0).values), (
        "the first and last edges must be the data's min and max")
    bins = tt.encode(x, edges)
    assert bins.dtype == torch.int64 and bins.min() >= 0 and bins.max() < 25
    back = tt.decode(bins, edges)
    width = (edges[1:] - edges[:-1]).gather(0, bins)  # the width of each value's own bin
    lo, hi = edges[:-1].gather(0, bins), edges[1:].gather(0, bins)
    assert ((x >= lo) & (x <= hi)).all(), "every value must lie in its bin"
    err = (back - x).abs()
    assert (err <= width / 2 + 1e-6).all(), (
        f"{kind}: decode(encode(x)) must be within half of x's bin of x; worst excess {(err - width / 2).max():.3g}")
    # decoding gives a bin's centre, which encodes to the same bin (for every bin that holds data)
    assert torch.equal(tt.encode(back, edges), bins)
    if kind == "quantile":  # about equally many values per bin on the smooth dimensions
        counts = torch.bincount(bins[:, 3], minlength=25)
        assert counts.min() >= 60 and counts.max() <= 100, counts.tolist()
    # A value the data repeats decodes exactly with quantile bins: it has bins of zero width to itself.
    if kind == "quantile":
        assert torch.equal(back[:, 1], x[:, 1]) and (back[:, 2][x[:, 2] == 0] == 0).all()


def test_values_outside_the_data_go_to_the_end_bins():
    edges = tt.bin_edges(torch.linspace(0, 1, 11)[:, None], 10, "uniform")
    assert tt.encode(torch.tensor([[-5.0], [0.0], [0.55], [1.0], [7.0]]), edges)[:, 0].tolist() == [0, 0, 5, 9, 9]


# ---------------------------------------------------------------- values, windows, loss
def test_discounted_values_by_hand():
    # Episodes [1, 2, 3] and [4, 5], gamma 0.5: R_t = sum_{k>=1} gamma^(k-1) r_{t+k}, 0 at an episode's end.
    values = tt.discounted_values(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]), torch.tensor([0, 3]),
                                  torch.tensor([3, 2]), 0.5)
    assert values.tolist() == pytest.approx([2.0 + 0.5 * 3.0, 3.0, 0.0, 5.0, 0.0]), values.tolist()


def test_termination_penalty_replaces_the_terminal_reward():
    data = SimpleNamespace(observations=torch.zeros(3, 1), actions=torch.zeros(3, 1),
                           rewards=torch.tensor([1.0, 1.0, 1.0]), terminals=torch.tensor([0.0, 0.0, 1.0]),
                           episode_starts=torch.tensor([0]), episode_lengths=torch.tensor([3]))
    vec = tt.transitions_as_vectors(data, 0.9, -100.0)
    assert vec[:, 2].tolist() == [1.0, 1.0, -100.0]
    assert vec[:, 3].tolist() == pytest.approx([1.0 + 0.9 * -100.0, -100.0, 0.0])
    assert tt.transitions_as_vectors(data, 0.9, None)[:, 2].tolist() == [1.0, 1.0, 1.0]


def test_windows_stay_in_their_episode():
    # Two episodes of 3 and 2 transitions, T = 2 tokens each; token = 10 * transition + dimension.
    tokens = torch.arange(5)[:, None] * 10 + torch.arange(2)
    episode_end = torch.tensor([3, 3, 3, 5, 5])
    window, real = tt.sample_windows(torch.tensor([0, 1, 3]), 3, episode_end, tokens)
    assert window.shape == (3, 6) and real.shape == (3, 6)
    assert window[0].tolist() == [0, 1, 10, 11, 20, 21]
    assert real.tolist() == [[True] * 6, [True] * 4 + [False] * 2, [True] * 4 + [False] * 2]
    assert window[1, :4].tolist() == [10, 11, 20, 21] and window[2, :4].tolist() == [30, 31, 40, 41]


def test_token_loss_by_hand():
    # Two targets in one row: bin 0 with logits (log 1, log 3) -> -log 1/4; bin 1 with equal logits -> log 2.
    logits = torch.log(torch.tensor([[[1.0, 3.0], [1.0, 1.0], [5.0, 5.0]]]))
    targets = torch.tensor([[0, 1, 0]])
    weights = torch.tensor([1.0, 5.0, 7.0])
    mask = torch.tensor([[True, True, False]])  # the third is past the episode's end
    got = float(tt.token_loss(logits, targets, weights, mask))
    expected = (1.0 * math.log(4.0) + 5.0 * math.log(2.0)) / 2
    assert got == pytest.approx(expected, rel=1e-5), (got, expected)


# ---------------------------------------------------------------- the model
def small_model(T=4, V=10, L=4, seed=0):
    torch.manual_seed(seed)
    return tt.TrajectoryTransformer(T, V, L, 32, 2, 2, 0.0).eval()


def test_the_cache_gives_the_logits_of_the_whole_sequence():
    model = small_model()
    x = torch.randint(0, 10, (3, model.block_size))
    full = model(x)
    cache = model.new_cache()
    parts = [model(x[:, :5], cache)] + [model(x[:, i:i + 1], cache) for i in range(5, x.shape[1])]
    torch.testing.assert_close(torch.cat(parts, 1), full, rtol=0, atol=1e-5)
    # and after select, the cache is that of the selected rows
    cache = model.new_cache()
    model(x[:, :7], cache)
    rows = torch.tensor([2, 2, 0])
    picked = cache.select(rows)
    torch.testing.assert_close(model(x[rows, 7:8], picked)[:, 0], full[rows, 7], rtol=0, atol=1e-5)


def test_causality_and_value_tokens_are_never_read():
    model = small_model()
    x = torch.randint(0, 10, (2, model.block_size))
    base = model(x)
    for i in range(x.shape[1]):
        y = x.clone()
        y[:, i] = (y[:, i] + 3) % 10
        moved = (model(y) - base).abs().amax((0, 2)) > 1e-6  # which positions' logits moved
        assert not moved[:i].any(), f"changing token {i} moved the logits of earlier tokens"
        if i % 4 == 3:  # a value token: no other token reads it (only its own output, through the residual)
            assert moved.nonzero().flatten().tolist() == [i], (i, moved.nonzero().flatten().tolist())
        elif i < x.shape[1] - 1:
            assert moved[i + 1:].any(), f"changing token {i} moved no later logits"


# ---------------------------------------------------------------- planning
@pytest.mark.exercise("trajectory_transformer.beam_score")
def test_beam_score_by_hand():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    value = torch.tensor([10.0, -4.0])
    got = tt.beam_score(rewards, value, 0.5)
    # 1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 10 = 4.0; 0.125 * -4 = -0.5
    assert got.tolist() == pytest.approx([4.0, -0.5]), (
        f"beam score: sum_k gamma^k r_k + gamma^(t+1) R_t should give [4.0, -0.5] for rewards [1, 2, 3] and "
        f"value 10, rewards 0 and value -4, gamma 0.5; got {got.tolist()}")
    assert tt.beam_score(torch.tensor([[2.0]]), torch.tensor([6.0]), 0.9).tolist() == pytest.approx([2.0 + 0.9 * 6.0])


def test_filter_logits_by_hand():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]]))
    # cdf 0.35: the least likely bins summing below 0.35 (0.1, then 0.1 + 0.2 = 0.3) are dropped
    kept = torch.isfinite(tt.filter_logits(logits, None, 0.35))
    assert kept.tolist() == [[False, False, True, True]]
    assert torch.isfinite(tt.filter_logits(logits, None, 0.05)).all()  # 0.1 alone is not below 0.05
    assert torch.isfinite(tt.filter_logits(logits, 2, None)).tolist() == [[False, False, True, True]]
    assert torch.isfinite(tt.filter_logits(logits, 1, 0.35)).tolist() == [[False, False, False, True]]
    bins = tt.sample_bins(logits.repeat(500, 1), None, 0.35, torch.Generator().manual_seed(0))
    assert set(bins.tolist()) == {2, 3}


class GridModel:
    """A hand-made stand-in for the transformer (same call as the real one without a cache): states and actions
    0..3, the action chooses the next state, rewards REWARD[s][a], the value bin value[next state]. It answers the last
    token of each sequence: any action equally likely, the reward, the value and the next state for sure."""

    REWARD = [[1, 0, 0, 0],   # from state 0: action 0 pays 1 now...
              [0, 0, 0, 3],   # ...action 1 pays nothing but leads to state 1, where action 3 pays 3
              [0, 0, 0, 0],
              [0, 2, 0, 0]]

    def __init__(self, value=(0, 0, 0, 0)):
        self.value, self.calls = torch.tensor(value), 0

    def __call__(self, tokens, cache=None):  # planned without a cache: it reads each whole sequence
        self.calls += 1
        B, n = tokens.shape
        nxt = n % 4  # the dimension of the token to predict: s, a, r, R
        if nxt == 1:
            return torch.zeros(B, 1, 4)
        if nxt == 2:
            target = torch.tensor(self.REWARD)[tokens[:, -2], tokens[:, -1]]
        elif nxt == 3:
            target = self.value[tokens[:, -2]]
        else:
            target = tokens[:, -3]  # the next state is the action taken
        return 20.0 * torch.nn.functional.one_hot(target, 4)[:, None].float()


# bin b decodes to b for states, actions and rewards, to 2b for values (so that the two cannot be swapped)
GRID_EDGES = (torch.arange(5.0)[:, None] - 0.5) * torch.tensor([1.0, 1.0, 1.0, 2.0])


def grid_plan(model, starts, horizon, gamma=0.99, beam_width=256, n_expand=1):
    return tt.beam_plan(model, torch.tensor(starts)[:, None], GRID_EDGES, 1, 1, horizon=horizon,
                        beam_width=beam_width, n_expand=n_expand, gamma=gamma, top_k_act=None, cdf_act=None,
                        top_k_obs=1, kv_cache=False, generator=torch.Generator().manual_seed(0))


def test_beam_search_finds_the_best_plan_of_a_hand_made_model():
    # Two envs planned at once, starting in states 0 and 1, horizon 2, values 0. From 0 the best plan is
    # [1, 3]: 0 + 0.99 * 3 = 2.97, better than the greedy [0, 0]: 1 + 0.99 = 1.99. From 1: [3, 1]: 3 + 0.99 * 2.
    # A beam wide enough to keep every first action (256 beams, one candidate each) finds both.
    first, plan, score = grid_plan(GridModel(), [0, 1], horizon=2)
    assert plan[:, :, 0].tolist() == [[1, 3], [3, 1]], plan[:, :, 0].tolist()
    assert first[:, 0].tolist() == [1.0, 3.0]
    assert score.tolist() == pytest.approx([0.99 * 3, 3 + 0.99 * 2], abs=1e-4)
    # One step ahead without values, the greedy action wins: planning depth matters.
    first, _, score = grid_plan(GridModel(), [0, 1], horizon=1)
    assert first[:, 0].tolist() == [0.0, 3.0] and score.tolist() == pytest.approx([1.0, 3.0], abs=1e-4)
    # A narrow beam (8 kept of 8 x 8 candidates) keeps the best partial scores after the first step, all of
    # them action 0 (score 1 against 0): without a value to say where state 1 leads, the better plan is pruned.
    _, plan, score = grid_plan(GridModel(), [0, 1], horizon=2, beam_width=8, n_expand=8)
    assert plan[:, :, 0].tolist() == [[0, 0], [3, 1]] and score[0] == pytest.approx(1.99, abs=1e-4)


def test_beam_search_adds_the_discounted_value():
    # Horizon 1, value 2 (bin 1) in state 2: from state 0 action 2 scores 0 + 0.9 * 2 = 1.8 > 1 (action 0);
    # from state 1 action 3 still wins (3 > 1.8).
    first, _, score = grid_plan(GridModel(value=(0, 0, 1, 0)), [0, 1], horizon=1, gamma=0.9)
    assert first[:, 0].tolist() == [2.0, 3.0] and score.tolist() == pytest.approx([1.8, 3.0], abs=1e-4)
    # gamma matters: at 0.4, 0.4 * 2 = 0.8 < 1 and the immediate reward wins
    first, _, _ = grid_plan(GridModel(value=(0, 0, 1, 0)), [0, 1], horizon=1, gamma=0.4)
    assert first[:, 0].tolist() == [0.0, 3.0]


def test_planning_with_and_without_the_cache_agree():
    model = small_model(T=5, V=10, L=4)
    edges = tt.bin_edges(torch.randn(500, 5), 10, "quantile")
    prefix = torch.randint(0, 10, (3, 5 + 2))  # one past transition and the current state (2 dims)
    out = [tt.beam_plan(model, prefix, edges, 2, 1, horizon=3, beam_width=4, n_expand=2, gamma=0.99, cdf_act=0.3,
                        kv_cache=kv, generator=torch.Generator().manual_seed(1)) for kv in (True, False)]
    assert torch.equal(out[0][1], out[1][1]), "the same plans with and without the KV cache"
    torch.testing.assert_close(out[0][2], out[1][2], rtol=0, atol=1e-5)


class StubEnv(gym.Env):
    """Observation (t, k), reward k * (t + 1), episodes of 3 + k steps, k the first reset's seed."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(0.0, 3.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            self.k = seed
        self.t = 0
        return np.array([self.t, self.k], np.float32), {}

    def step(self, action):
        reward = float(self.k * (self.t + 1))
        self.t += 1
        return np.array([self.t, self.k], np.float32), reward, self.t == 3 + self.k, False, {}


class RecordingModel(torch.nn.Module):
    """Records the first sequence of each plan (the prefix); always answers bin 1 (action 1 decodes to 1.0)."""

    def __init__(self):
        super().__init__()
        self.prefixes = []

    def forward(self, tokens, cache):
        if cache.length == 0:  # the first call of a plan reads the prefix
            self.prefixes.append(tokens.clone())
        cache.length += tokens.shape[1]
        return 20.0 * torch.nn.functional.one_hot(torch.ones_like(tokens), 10).float()

    def new_cache(self):
        cache = SimpleNamespace(length=0)
        cache.select = lambda rows: cache
        return cache


def test_evaluate_feeds_the_planner_the_last_transitions_and_the_state():
    # Two stub envs (k = 1: 4 steps, k = 2: 5 steps), edges = identity bins on 0..9 for every dimension, context
    # of 2 transitions: at step i the prefix is the tokens of (s, a, r, placeholder) of steps i-2, i-1, then s_i.
    edges = torch.arange(11.0)[:, None].repeat(1, 5) - 0.5
    data = SimpleNamespace(obs_dim=2, act_dim=1, make_eval_env=lambda render_mode=None: StubEnv(),
                           normalized_score=lambda returns: None)
    model = RecordingModel()
    plan = dict(horizon=1, beam_width=2, n_expand=1, gamma=0.9, top_k_act=None, cdf_act=None, top_k_obs=1,
                cdf_obs=None, kv_cache=True, max_context_transitions=2)
    returns, _ = tt.evaluate(model, data, [1, 2], "cpu", edges=edges, plan=plan)
    assert returns.tolist() == [1 + 2 + 3 + 4, 2 + 4 + 6 + 8 + 10]
    assert len(model.prefixes) == 5
    for i, prefix in enumerate(model.prefixes):
        for e, k in enumerate([1, 2]):
            if i >= 3 + k:
                continue
            want = []
            for p in range(max(0, i - 2), i):
                want += [p, k, 1, k * (p + 1), 0]  # s = (p, k), a = 1, r = k (p + 1), value placeholder 0
            want += [i, k]
            assert prefix[e].tolist() == want, (i, e, prefix[e].tolist(), want)


# ---------------------------------------------------------------- end to end
def test_end_to_end_checkpoint_reloads_with_same_returns(pendulum_expert, run_dir):
    out = run_script("trajectory_transformer.py", "--dataset-id", pendulum_expert, *SMALL, "--total-steps", 30,
                     "--eval-episodes", 2, "--save-model", "--no-cuda", cwd=run_dir)
    assert out.returncode == 0, out.stderr
    run, summary = read_summary(run_dir)
    assert summary["steps"] == 30 and len(summary["eval_history"]) == 1  # eval_freq defaults past the last step
    assert math.isfinite(summary["final_normalized_score"]) and summary["sps"] > 0
    assert list(run.glob("events.out.tfevents.*"))

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = EventAccumulator(str(run)).Reload().Tags()["scalars"]
    for tag in ("losses/token_loss", "losses/obs_ce", "losses/action_ce", "losses/reward_ce", "losses/value_ce",
                "charts/SPS", "eval/episodic_return", "eval/normalized_score"):
        assert tag in tags, tags

    ckpt = torch.load(run / "trajectory_transformer.pt", weights_only=True)
    assert ckpt["algorithm"] == "trajectory_transformer" and ckpt["edges"].shape == (21, 3 + 1 + 2)
    # --eval-checkpoint replays the final evaluation exactly (the planner's samples are seeded)
    eval_dir = run_dir / "eval"
    eval_dir.mkdir()
    out = run_script("trajectory_transformer.py", "--eval-checkpoint", run / "trajectory_transformer.pt", "--no-cuda",
                     cwd=eval_dir)
    assert out.returncode == 0, out.stderr
    _, ev = read_summary(eval_dir)
    assert ev["returns"] == summary["final_returns"]
    assert ev["planner"]["beam_width"] == ckpt["args"]["beam_width"] == 4
    # search flags given beside it replace the checkpoint's (the same model under another search); others stay
    eval_dir = run_dir / "eval-beam1"
    eval_dir.mkdir()
    out = run_script("trajectory_transformer.py", "--eval-checkpoint", run / "trajectory_transformer.pt", "--no-cuda",
                     "--beam-width", 1, "--n-expand=1", cwd=eval_dir)
    assert out.returncode == 0, out.stderr
    _, ev = read_summary(eval_dir)
    assert (ev["planner"]["beam_width"], ev["planner"]["n_expand"]) == (1, 1)
    assert ev["planner"]["horizon"] == ckpt["args"]["horizon"] and ev["planner"]["gamma"] == ckpt["args"]["gamma"]


@pytest.mark.learning("trajectory_transformer")
def test_tt_learns_the_dynamics_and_the_rewards(pendulum_expert):
    # A short learning check that can fail: with quantile bins every token's marginal is about uniform, so a
    # model that ignores the sequence scores log V. Pendulum's next state and reward are functions of the
    # state and action, so the cross-entropy of those tokens must fall far below log V.
    data = load_dataset(pendulum_expert, "cpu", verbose=False)
    vectors = tt.transitions_as_vectors(data, 0.99, None)
    V, L, T = 20, 3, 6
    edges = tt.bin_edges(vectors, V, "quantile")
    tokens = tt.encode(vectors, edges)
    episode_end = torch.repeat_interleave(data.episode_starts + data.episode_lengths, data.episode_lengths)
    torch.manual_seed(0)
    model = tt.TrajectoryTransformer(T, V, L, 32, 2, 2, 0.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    weights = torch.ones(L * T - 1)
    kind = torch.arange(1, L * T) % T
    ce_state_reward = []
    for _ in range(300):
        window, real = tt.sample_windows(torch.randint(0, data.size, (32,)), L, episode_end, tokens)
        logits = model(window[:, :-1])
        loss = tt.token_loss(logits, window[:, 1:], weights, real[:, 1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), window[:, 1:], reduction="none")
            sel = real[:, 1:] & ((kind < 3) | (kind == 4)) & (torch.arange(1, L * T) >= T)  # s and r, not the first s
            ce_state_reward.append(float(ce[sel].mean()))
    assert np.mean(ce_state_reward[:5]) > 0.9 * math.log(V)  # it starts knowing nothing...
    # ...and learns (about 0.4 log V after 300 steps when written)
    assert np.mean(ce_state_reward[-20:]) < 0.6 * math.log(V), (np.mean(ce_state_reward[-20:]), math.log(V))


# ---------------------------------------------------------------- bad input
# check_args reports every bad flag at once: one run checks several (each run costs seconds of imports).
@pytest.mark.parametrize("flags, messages", [
    (["--n-bins", "1", "--beam-width", "0", "--horizon", "0", "--eval-checkpoint", "nosuch.pt"],
     ["--n-bins must be at least 2 (got 1)", "--beam-width must be at least 1 (got 0)",
      "--horizon must be at least 1 (got 0)", "--eval-checkpoint: no such file 'nosuch.pt'"]),
    (["--cdf-act", "1.0", "--top-k-act", "0", "--gamma", "1.0", "--horizon", "8", "--max-context-transitions", "5"],
     ["--cdf-act must be in [0, 1) (got 1.0)", "--top-k-act must be at least 1 (got 0)",
      "--gamma must be in [0, 1) (got 1.0)", "must fit in --sequence-len (10)"]),
    (["--discretizer", "log"], ["discretizer"]),
])
def test_bad_input_is_a_clear_error_and_writes_nothing(flags, messages, pendulum_expert, run_dir):
    out = run_script("trajectory_transformer.py", "--dataset-id", pendulum_expert, "--no-cuda", *flags, cwd=run_dir)
    assert out.returncode != 0
    for message in messages:
        assert message in out.stderr + out.stdout
    assert "Traceback" not in out.stderr
    assert not (run_dir / "runs").exists()


def test_discrete_dataset_is_refused(discrete_dataset, run_dir):
    out = run_script("trajectory_transformer.py", "--dataset-id", discrete_dataset, "--no-cuda", cwd=run_dir)
    assert out.returncode != 0
    assert "action space Discrete(2)" in out.stderr and "continuous Box action space" in out.stderr
    assert not (run_dir / "runs").exists()
