"""Gradient steps per second of iql.py's update against a bare loop of the same networks.

    python benchmarks/speed_iql.py [--rounds 5] [--steps 300] [--threads 2] [--clock wall|cpu] [--d3rlpy]

Hopper-shaped random data (obs 11, act 3, 100k transitions), batch 256, one process. Variants run
interleaved, round after round, and the medians are reported: the CPU may be shared, so single numbers
are noisy. `--clock cpu` divides by the process's CPU time instead of the wall clock: with
`--threads 1` that is the step rate the process would have on a core of its own, little moved by other
jobs on the machine. Compare variants timed in the same run. The comparison with d3rlpy in its own
environment, each side in a fresh process, is `python -m benchmarks.peers.compare --algos iql`
(docs/benchmarks.md).

- iql:  iql.IQL.update, exactly what iql.py's main loop runs: V's step, Q's step, the Polyak update,
        pi's step (three backward passes, three fused Adams, the actor's cosine schedule), the metrics
        as tensors.
- bare: the same networks and the same forward passes (Q_hat(s,a), V(s), V(s'), Q(s,a), pi(s)), plain
        MSE losses, one backward and one default Adam each, the Polyak update; nothing else.
- d3rlpy (with --d3rlpy): d3rlpy 2.8.1's IQL on the same data, a batch from its buffer and its update,
        in this process (needs d3rlpy importable beside the project's packages).
"""

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import iql  # noqa: E402

OBS_DIM, ACT_DIM, N = 11, 3, 100_000


def make_data():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(N, OBS_DIM, generator=g), torch.rand(N, ACT_DIM, generator=g) * 2 - 1,
            torch.randn(N, generator=g), torch.randn(N, OBS_DIM, generator=g), torch.zeros(N))


def make_model(args):
    return iql.IQL(OBS_DIM, ACT_DIM, args, -torch.ones(ACT_DIM), torch.ones(ACT_DIM), "cpu")


def iql_runner(args, data):
    model = make_model(args)

    def step():
        idx = torch.randint(0, N, (args.batch_size,))
        model.update(*(x[idx] for x in data))
    return step


def bare_runner(args, data):
    model = make_model(args)
    opts = [torch.optim.Adam(m.parameters(), lr=3e-4) for m in (model.vf, model.qf, model.actor)]

    def backward_step(opt, loss):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def step():
        idx = torch.randint(0, N, (args.batch_size,))
        s, a, r, s2, _ = (x[idx] for x in data)
        with torch.no_grad():
            qt = torch.min(*model.qf_target(s, a))
        backward_step(opts[0], F.mse_loss(model.vf(s), qt))
        with torch.no_grad():
            v2 = model.vf(s2)
        backward_step(opts[1], sum(F.mse_loss(q, r + v2) for q in model.qf(s, a)))
        torch._foreach_lerp_(model.target_params, model.online_params, args.tau)
        backward_step(opts[2], F.mse_loss(model.actor(s), a))
    return step


def d3rlpy_runner(data):
    """d3rlpy's IQL (its defaults: 2x256, batch 256, expectile 0.7, beta 3), the inner step of its fit
    loop: a batch from its own buffer, then its update."""
    import numpy as np

    try:
        import d3rlpy
    except ImportError:
        sys.exit("error: --d3rlpy needs d3rlpy here (python -m benchmarks.peers.compare --algos iql times it "
                 "in a venv of its own instead): pip install d3rlpy==2.8.1 (it pins gymnasium 1.0.0: use "
                 "another environment, or pip install --no-deps --target DIR and put DIR on PYTHONPATH)")
    obs, act, rew = (x.numpy() for x in data[:3])
    timeouts = (np.arange(N) % 1000 == 999).astype(np.float32)  # episodes of 1000 steps, as Hopper's
    dataset = d3rlpy.dataset.MDPDataset(observations=obs, actions=act, rewards=rew, terminals=np.zeros(N),
                                        timeouts=timeouts)
    algo = d3rlpy.algos.IQLConfig(batch_size=256).create(device="cpu:0")
    algo.build_with_dataset(dataset)

    def step():
        algo.update(dataset.sample_transition_batch(256))
    return step


def time_it(step, steps, clock):
    t = clock()
    for _ in range(steps):
        step()
    return steps / (clock() - t)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=300, help="timed steps per variant per round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="steps per wall-clock second, or per CPU second of this process")
    p.add_argument("--deterministic-actor", action="store_true")
    p.add_argument("--d3rlpy", action="store_true", help="also time d3rlpy's IQL, interleaved (needs d3rlpy)")
    cli = p.parse_args()
    iql.keep_freed_memory()  # as the script's main does
    torch.set_num_threads(cli.threads)
    torch.manual_seed(0)
    clock = time.perf_counter if cli.clock == "wall" else time.process_time
    args = iql.Args(total_steps=10**9, deterministic_actor=cli.deterministic_actor)
    data = make_data()
    variants = {"iql": iql_runner(args, data), "bare": bare_runner(args, data)}
    if cli.d3rlpy:
        variants["d3rlpy"] = d3rlpy_runner(data)
    for step in variants.values():  # warm-up
        time_it(step, 30, clock)
    results = {name: [] for name in variants}
    for r in range(cli.rounds):
        for name, step in variants.items():
            results[name].append(time_it(step, cli.steps, clock))
        print(f"round {r + 1}: " + "  ".join(f"{n} {v[-1]:.0f}" for n, v in results.items()), flush=True)
    med = {name: statistics.median(v) for name, v in results.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"hidden {args.hidden_dim}, obs {OBS_DIM}, act {ACT_DIM}, {cli.rounds} rounds x {cli.steps} steps, "
          f"{cli.clock} clock")
    for name, v in med.items():
        print(f"median {name:12s} {v:7.1f} steps/s  (min {min(results[name]):.1f}, max {max(results[name]):.1f})")
    print(f"bare / iql = {med['bare'] / med['iql']:.2f}x")
    if cli.d3rlpy:
        ratios = [a / b for a, b in zip(results["iql"], results["d3rlpy"])]
        print(f"iql / d3rlpy = {med['iql'] / med['d3rlpy']:.2f}x (per round: {min(ratios):.2f}-{max(ratios):.2f}x)")
