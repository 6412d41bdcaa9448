"""Gradient steps per second of iql.py's update against a bare loop of the same networks.

    python benchmarks/speed_iql.py [--rounds 5] [--steps 300] [--compile]

Hopper-shaped random data (obs 11, act 3, 100k transitions), batch 256, 2 threads, one process.
Variants run interleaved, round after round, and the medians are reported: the CPU may be shared,
so single numbers are noisy.

- iql:  iql.train_step, exactly what iql.py's main loop runs (losses, one backward, fused Adam,
        cosine schedule, Polyak update, metrics as tensors).
- bare: the same networks and the same forward passes (V(s), V(s'), Q_target(s,a), Q(s,a), pi(s)),
        plain MSE losses, one backward each, three default Adams, Polyak update; nothing else.
- iql+compile (with --compile): iql.train_step with torch.compile'd losses.
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
    return iql.IQL(OBS_DIM, ACT_DIM, args, -torch.ones(ACT_DIM), torch.ones(ACT_DIM))


def iql_runner(args, data, compiled=False):
    model = make_model(args)
    optimizer, scheduler = iql.make_optimizer(model, args)
    target, online = list(model.qf_target.parameters()), list(model.qf.parameters())
    loss_fn = torch.compile(model.losses) if compiled else model.losses

    def step():
        idx = torch.randint(0, N, (args.batch_size,))
        iql.train_step(model, loss_fn, optimizer, scheduler, target, online, args.tau, tuple(x[idx] for x in data))
    return step


def bare_runner(args, data):
    model = make_model(args)
    opts = [torch.optim.Adam(m.parameters(), lr=3e-4) for m in (model.vf, model.qf, model.actor)]
    target, online = list(model.qf_target.parameters()), list(model.qf.parameters())

    def step():
        idx = torch.randint(0, N, (args.batch_size,))
        s, a, r, s2, _ = (x[idx] for x in data)
        with torch.no_grad():
            qt = torch.min(*model.qf_target(s, a))
            v2 = model.vf(s2)
        losses = [F.mse_loss(model.vf(s), qt), sum(F.mse_loss(q, r + v2) for q in model.qf(s, a)),
                  F.mse_loss(model.actor(s), a)]
        for opt, loss in zip(opts, losses):
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch._foreach_lerp_(target, online, args.tau)
    return step


def time_it(step, steps):
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=300, help="timed steps per variant per round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also time iql with torch.compile'd losses")
    p.add_argument("--deterministic-actor", action="store_true")
    cli = p.parse_args()
    torch.set_num_threads(cli.threads)
    torch.manual_seed(0)
    args = iql.Args(total_steps=10**9, deterministic_actor=cli.deterministic_actor)
    data = make_data()
    variants = {"iql": iql_runner(args, data), "bare": bare_runner(args, data)}
    if cli.compile:
        t = time.perf_counter()
        variants["iql+compile"] = iql_runner(args, data, compiled=True)
        for _ in range(3):
            variants["iql+compile"]()
        print(f"compile warm-up: {time.perf_counter() - t:.1f}s")
    for step in variants.values():  # warm-up
        time_it(step, 30)
    results = {name: [] for name in variants}
    for r in range(cli.rounds):
        for name, step in variants.items():
            results[name].append(time_it(step, cli.steps))
        print(f"round {r + 1}: " + "  ".join(f"{n} {v[-1]:.0f}" for n, v in results.items()), flush=True)
    med = {name: statistics.median(v) for name, v in results.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"hidden {args.hidden_dim}, obs {OBS_DIM}, act {ACT_DIM}, {cli.rounds} rounds x {cli.steps} steps")
    for name, v in med.items():
        print(f"median {name:12s} {v:7.1f} steps/s  (min {min(results[name]):.1f}, max {max(results[name]):.1f})")
    print(f"bare / iql = {med['bare'] / med['iql']:.2f}x   iql / 75 (d3rlpy 2.8.1) = {med['iql'] / 75:.2f}x")
