"""Gradient steps per second of awac.py's update against a bare loop of the same networks.

    python benchmarks/speed_awac.py [--rounds 5] [--steps 300] [--threads 2]

Hopper-shaped random data (obs 11, act 3, 100k transitions), batch 256, one process. Variants run
interleaved, round after round, and the medians are reported: the CPU may be shared, so single
numbers are noisy.

- awac:   awac.AWAC.update on a batch from awac.ReplayBuffer.sample, exactly what awac.py's offline
          loop runs (critic step, actor step, Polyak update, metrics as tensors).
- bare:   the same networks and the same forward passes (pi(s'), Q_target(s', a'), Q(s, a), then
          Q(s, a), pi(s), Q(s, a~), pi(s) again for log pi), plain squared-error losses, two default
          Adams, the Polyak update; nothing else.
- online: one iteration of awac.py's online phase: an env step of the sampled policy in Hopper-v5
          (MuJoCo), the transition appended, then the same update (with --online; needs MuJoCo).
Each line also gives steps per CPU second of the process: with --threads 1 on a busy machine, that
estimates the rate of an idle core better than the wall clock does.
"""

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import awac  # noqa: E402

OBS_DIM, ACT_DIM, N = 11, 3, 100_000


class RandomData:
    """The fields of common.datasets.OfflineDataset that awac.ReplayBuffer reads, filled at random."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.observations = torch.randn(N, OBS_DIM, generator=g)
        self.next_observations = torch.randn(N, OBS_DIM, generator=g)
        self.actions = torch.rand(N, ACT_DIM, generator=g) * 2 - 1
        self.rewards = torch.randn(N, generator=g)
        self.terminals = torch.zeros(N)
        self.obs_mean, self.obs_std = torch.zeros(OBS_DIM), torch.ones(OBS_DIM)
        self.size = N

    def normalize_obs(self, obs):
        return (obs - self.obs_mean) / self.obs_std


def make_model(args):
    return awac.AWAC(OBS_DIM, ACT_DIM, args, -torch.ones(ACT_DIM), torch.ones(ACT_DIM), "cpu")


def awac_runner(args, data):
    model, buffer = make_model(args), awac.ReplayBuffer(data, 0)

    def step():
        model.update(*buffer.sample(args.batch_size))
    return step


def bare_runner(args, data):
    model, buffer = make_model(args), awac.ReplayBuffer(data, 0)
    actor, qf, qf_target = model.actor, model.qf, model.qf_target
    q_opt, pi_opt = torch.optim.Adam(qf.parameters(), lr=3e-4), torch.optim.Adam(actor.parameters(), lr=3e-4)
    target, online = list(qf_target.parameters()), list(qf.parameters())

    def step():
        s, a, r, s2, d = buffer.sample(args.batch_size)
        with torch.no_grad():
            y = r + 0.99 * (1 - d) * torch.min(*qf_target(s2, actor(s2)))
        q1, q2 = qf(s, a)
        loss = ((q1 - y) ** 2).mean() + ((q2 - y) ** 2).mean()
        q_opt.zero_grad(set_to_none=True)
        loss.backward()
        q_opt.step()
        with torch.no_grad():
            w = torch.min(*qf(s, a)) - torch.min(*qf(s, actor(s)))
        loss = (w * ((actor(s) - a) ** 2).sum(-1)).mean()
        pi_opt.zero_grad(set_to_none=True)
        loss.backward()
        pi_opt.step()
        torch._foreach_lerp_(target, online, 0.005)
    return step


def online_runner(args, data):
    import gymnasium as gym

    model, buffer = make_model(args), awac.ReplayBuffer(data, 10**6)
    runner = awac.OnlineRunner(gym.make("Hopper-v5"), buffer, seed=0)

    def step():
        runner.step(model.actor)
        model.update(*buffer.sample(args.batch_size))
    return step


def time_it(step, steps):
    """(steps per wall-clock second, steps per CPU second of this process). On a shared machine the
    second, with --threads 1, estimates what an idle core would do."""
    t, c = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t), steps / (time.process_time() - c)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=300, help="timed steps per variant per round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--online", action="store_true", help="also time an online iteration (env step + update)")
    cli = p.parse_args()
    awac.keep_freed_memory()  # as the script's main does
    torch.set_num_threads(cli.threads)
    torch.manual_seed(0)
    args = awac.Args()
    data = RandomData()
    variants = {"awac": awac_runner(args, data), "bare": bare_runner(args, data)}
    if cli.online:
        variants["online"] = online_runner(args, data)
    for step in variants.values():  # warm-up
        time_it(step, 30)
    results = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    for r in range(cli.rounds):
        for name, step in variants.items():
            wall, per_cpu = time_it(step, cli.steps)
            results[name].append(wall)
            cpu[name].append(per_cpu)
        print(f"round {r + 1}: " + "  ".join(f"{n} {v[-1]:.0f}" for n, v in results.items()), flush=True)
    med = {name: statistics.median(v) for name, v in results.items()}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, hidden "
          f"{args.actor_layers}x{args.hidden_dim} (actor) and {args.critic_layers}x{args.hidden_dim} (critics), "
          f"obs {OBS_DIM}, act {ACT_DIM}, {cli.rounds} rounds x {cli.steps} steps, load average "
          f"{os.getloadavg()[0]:.1f}")
    for name, v in med.items():
        print(f"median {name:8s} {v:7.1f} steps/s  (min {min(results[name]):.1f}, max {max(results[name]):.1f})"
              f"  | {statistics.median(cpu[name]):7.1f} steps per CPU second")
    print(f"bare / awac = {med['bare'] / med['awac']:.2f}x")
