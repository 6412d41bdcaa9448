"""Decision Transformer speed: gradient steps/s, and a batched evaluation against one episode at a time.

    python -m benchmarks.speed_dt                 # ~5 min on the 2-core CPU
    python -m benchmarks.speed_dt --repeats 5 --steps 20

Gradient steps: decision_transformer.py's own pieces (sample_windows, DecisionTransformer,
action_loss, AdamW, clipping, warm-up) on Hopper-shaped tensors (obs 11, act 3, 1000-step episodes),
batch 64, context 20, 2 threads, at two sizes: the default (embed 128, 3 layers, 1 head) and
d3rlpy's DecisionTransformerConfig size (embed 256, 3 layers, 1 head), each with bf16 autocast on
and off. Evaluation: 10 Pendulum-v1 episodes of the default-size model, batched in one vector env
against ten evaluations of one episode each. The configurations alternate within each repeat and
medians are reported: the CPU may be shared, so single numbers are noisy.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests"))
os.environ.setdefault("MINARI_DATASETS_PATH", os.path.join(tempfile.gettempdir(), "offline-rl-bench-minari"))

import decision_transformer as dt  # noqa: E402

SIZES = {"default (embed 128)": 128, "d3rlpy size (embed 256)": 256}


def train_sps(embed_dim: int, bf16: bool, steps: int, batch=64, context=20, warmup_steps=3) -> float:
    """Gradient steps per second of the training step of decision_transformer.py (warm-up excluded)."""
    torch.manual_seed(0)
    obs_dim, act_dim, episodes, T = 11, 3, 20, 1000
    N = episodes * T
    starts = torch.arange(0, N, T)
    lengths = torch.full((episodes,), T)
    start_of = torch.repeat_interleave(starts, lengths)
    timesteps = torch.arange(N) - start_of
    rtg = dt.returns_to_go(torch.randn(N), starts, lengths) * 1e-3
    states, actions = torch.randn(N, obs_dim), torch.rand(N, act_dim) * 2 - 1
    model = dt.DecisionTransformer(obs_dim, act_dim, embed_dim, 3, 1, context, T, 0.1,
                                   -torch.ones(act_dim), torch.ones(act_dim))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: min(1.0, (k + 1) / 10_000))
    for i in range(steps + warmup_steps):
        if i == warmup_steps:
            t0 = time.perf_counter()
        end = torch.randint(0, N, (batch,))
        R, s, a, ts, mask = dt.sample_windows(end, context, start_of, rtg, states, actions, timesteps)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pred = model(R, s, a, ts, mask)
        loss = dt.action_loss(pred.float(), a, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
        optimizer.step()
        scheduler.step()
    return steps / (time.perf_counter() - t0)


def pendulum_data():
    """A small Pendulum-v1 dataset (random episodes): the evaluation only needs its env and shapes."""
    import testdata
    from common.datasets import load_dataset

    dataset_id = "bench/pendulum/random-v0"
    try:
        return load_dataset(dataset_id, "cpu", download=False, verbose=False)
    except Exception:
        episodes, _ = testdata.rollout_pendulum(5, 0.0, seed=0, random_fraction=1.0)
        testdata.write_dataset(dataset_id, episodes, "Pendulum-v1", ref_min_score=-1200.0, ref_max_score=-150.0)
        return load_dataset(dataset_id, "cpu", download=False, verbose=False)


def eval_times(data, model, bf16: bool, episodes=10) -> tuple[float, float]:
    """Seconds for `episodes` episodes: batched in one vector env, then one evaluation per episode."""
    seeds = dt.evaluation_seeds(0, 0, episodes)
    kw = dict(target_return=-150.0, reward_scale=1e-3, bf16=bf16)
    t0 = time.perf_counter()
    batched, _ = dt.evaluate(model, data, seeds, "cpu", **kw)
    t1 = time.perf_counter()
    alone = [dt.evaluate(model, data, [s], "cpu", **kw)[0][0] for s in seeds]
    t2 = time.perf_counter()
    assert len(alone) == len(batched)
    return t1 - t0, t2 - t1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed gradient steps per measurement")
    parser.add_argument("--threads", type=int, default=2)
    cli = parser.parse_args()
    dt.keep_freed_memory()  # as the script's main does
    torch.set_num_threads(cli.threads)
    bf16_ok = dt.use_bf16("cpu", True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, native CPU bf16: {bf16_ok}", flush=True)

    data = pendulum_data()
    torch.manual_seed(0)
    model = dt.DecisionTransformer(data.obs_dim, data.act_dim, 128, 3, 1, 20, 200, 0.1,
                                   data.action_low, data.action_high).eval()
    configs = [(name, dim, bf16) for name, dim in SIZES.items() for bf16 in ([False, True] if bf16_ok else [False])]
    sps = {c: [] for c in configs}
    evals = {"batched": [], "one at a time": []}
    for r in range(cli.repeats):
        for c in configs:  # interleaved: a burst of load from elsewhere hits every configuration alike
            sps[c].append(train_sps(c[1], c[2], cli.steps))
            print(f"repeat {r + 1}: {c[0]}, bf16 {c[2]}: {sps[c][-1]:.2f} steps/s", flush=True)
        b, a = eval_times(data, model, bf16_ok)
        evals["batched"].append(b)
        evals["one at a time"].append(a)
        print(f"repeat {r + 1}: evaluation of 10 episodes: batched {b:.1f} s, one at a time {a:.1f} s", flush=True)

    print(f"\nmedians over {cli.repeats} repeats (batch 64, context 20, 3 layers, 1 head, {cli.threads} threads):")
    for c in configs:
        print(f"  {c[0]:26s} bf16 {str(c[2]):5s}  {statistics.median(sps[c]):6.2f} gradient steps/s")
    b, a = statistics.median(evals["batched"]), statistics.median(evals["one at a time"])
    print(f"  evaluation, 10 episodes x 200 steps: batched {b:.1f} s, one at a time {a:.1f} s ({a / b:.1f}x)")
