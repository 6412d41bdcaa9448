"""Gradient steps per second of td3_bc.py's update against a bare loop of the same networks' passes.

    python benchmarks/speed_td3_bc.py [--rounds 5] [--steps 300] [--threads 2]

Data: the Hopper-shaped synthetic dataset of benchmarks/synthetic.py (obs 11, act 3, 100k transitions,
built once under /tmp/offline-rl-bench-minari, as benchmarks/speed_bc.py does), loaded by the
project's loader and normalised as td3_bc.py does; batch 256, 2x256 networks, one process. Variants
run interleaved, round after round, and the medians are reported: the CPU may be shared, so single
numbers are noisy; steps per CPU-second of the process are reported beside them.

- td3_bc: td3_bc.TD3BC.update on batches drawn with torch.randint, exactly what td3_bc.py's main loop
          runs (critic step every iteration; actor step and Polyak update every 2nd; fused Adam;
          metrics as tensors).
- bare:   the same networks and the same passes on the same batches: target actor and both target
          critics without gradients, both critics forward/backward/Adam (PyTorch's default Adam), and
          every 2nd step the actor and critic 1 forward, the actor's backward and Adam, one
          torch._foreach_lerp_ for the Polyak update. No noise, no clipping, no metrics.
"""

import argparse
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.setdefault("MINARI_DATASETS_PATH", "/tmp/offline-rl-bench-minari")
DATASET = "bench/hopper-shaped/100k-v0"

import td3_bc  # noqa: E402
from benchmarks.synthetic import make_hopper_shaped  # noqa: E402
from common.datasets import load_dataset  # noqa: E402


def load():
    make_hopper_shaped(DATASET, episodes=100, episode_length=1000)
    data = load_dataset(DATASET, "cpu", verbose=False)
    return data, (data.normalize_obs(data.observations), data.actions, data.rewards,
                  data.normalize_obs(data.next_observations), data.terminals)


def td3_bc_runner(args, data, tensors):
    agent = td3_bc.TD3BC(data.obs_dim, data.act_dim, args, data.action_low, data.action_high, "cpu")

    def step():
        idx = torch.randint(0, data.size, (args.batch_size,))
        agent.update(*(x[idx] for x in tensors))
    return step


def bare_runner(args, data, tensors):
    obs_dim, act_dim, h = data.obs_dim, data.act_dim, args.hidden_dim
    actor, actor_t = (td3_bc.mlp(obs_dim, act_dim, h) for _ in range(2))
    q1, q2, q1_t, q2_t = (td3_bc.mlp(obs_dim + act_dim, 1, h) for _ in range(4))
    opt_actor = torch.optim.Adam(actor.parameters(), lr=args.learning_rate)
    opt_critic = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=args.learning_rate)
    online = [*actor.parameters(), *q1.parameters(), *q2.parameters()]
    target = [*actor_t.parameters(), *q1_t.parameters(), *q2_t.parameters()]
    actor_params = list(actor.parameters())
    it = [0]

    def step():
        it[0] += 1
        idx = torch.randint(0, data.size, (args.batch_size,))
        s, a, r, s2, d = (x[idx] for x in tensors)
        with torch.no_grad():
            sa2 = torch.cat([s2, actor_t(s2)], 1)
            y = r + 0.99 * (1 - d) * torch.min(q1_t(sa2), q2_t(sa2)).squeeze(-1)
        sa = torch.cat([s, a], 1)
        loss = F.mse_loss(q1(sa).squeeze(-1), y) + F.mse_loss(q2(sa).squeeze(-1), y)
        opt_critic.zero_grad(set_to_none=True)
        loss.backward()
        opt_critic.step()
        if it[0] % 2 == 0:
            pi = actor(s)
            loss = -q1(torch.cat([s, pi], 1)).mean() + F.mse_loss(pi, a)
            opt_actor.zero_grad(set_to_none=True)
            loss.backward(inputs=actor_params)
            opt_actor.step()
            with torch.no_grad():
                torch._foreach_lerp_(target, online, args.tau)
    return step


def time_it(step, steps):
    """(steps per wall-clock second, steps per CPU-second of this process). On a shared CPU the second
    is the steadier one: with one thread it estimates what a core of our own would do (it counts
    spinning threads too, so with more threads it flatters nothing)."""
    t, c = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t), steps / (time.process_time() - c)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=300,
                   help="timed steps per variant per round (even: whole actor cycles)")
    p.add_argument("--threads", type=int, default=2)
    cli = p.parse_args()
    td3_bc.keep_freed_memory()  # as the script's main does
    torch.set_num_threads(cli.threads)
    torch.manual_seed(0)
    args = td3_bc.Args()
    data, tensors = load()
    variants = {"td3_bc": td3_bc_runner(args, data, tensors), "bare": bare_runner(args, data, tensors)}
    for step in variants.values():  # warm-up
        time_it(step, 30)
    results = {name: [] for name in variants}
    for r in range(cli.rounds):
        for name, step in variants.items():
            results[name].append(time_it(step, cli.steps))
        print(f"round {r + 1}: " + "  ".join(f"{n} {v[-1][0]:.0f} ({v[-1][1]:.0f} per CPU-s)"
                                             for n, v in results.items()), flush=True)
    wall = {name: statistics.median(w for w, _ in v) for name, v in results.items()}
    cpu = {name: statistics.median(c for _, c in v) for name, v in results.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, hidden "
          f"{args.hidden_dim}, obs {data.obs_dim}, act {data.act_dim}, {cli.rounds} rounds x {cli.steps} steps, "
          f"load average {os.getloadavg()[0]:.1f}")
    for name in variants:
        print(f"median {name:8s} {wall[name]:7.1f} steps/s (min {min(w for w, _ in results[name]):.1f}, max "
              f"{max(w for w, _ in results[name]):.1f}); {cpu[name]:7.1f} steps per CPU-second")
    print(f"bare / td3_bc = {wall['bare'] / wall['td3_bc']:.2f}x (wall), {cpu['bare'] / cpu['td3_bc']:.2f}x (CPU time)")
