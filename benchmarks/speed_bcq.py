"""Gradient steps per second of bcq.py's update against a bare loop of the same networks' passes.

    python benchmarks/speed_bcq.py [--rounds 5] [--threads 2]    (threads: $OMP_NUM_THREADS if set, else 2)

Hopper-shaped random data (obs 11, act 3, 100k transitions), one process. Two settings:

- default: bcq.py's defaults: batch 100, VAE 750x750 (latent 6), perturbation and critics 400x300,
           10 candidates per next state.
- d3rlpy:  the setting of d3rlpy 2.8.1's BCQ we compare with: batch 256, every network 256x256,
           100 candidates per next state (d3rlpy itself beside: python -m benchmarks.peers.compare
           --algos bcq).

For each, two variants, run interleaved round after round (the CPU may be shared, so single numbers
are noisy; medians are reported):

- bcq:  bcq.BCQ.update, exactly what bcq.py's main loop runs, on batches drawn with torch.randint.
- bare: the same networks and the same passes on fixed random tensors of the same shapes: VAE
        forward/backward/Adam on B rows; target decoder, target perturbation, two target critics on
        B*n rows without gradients, in bcq.py's blocks (at most bcq.BLOCK_ROWS rows); two critics
        forward/backward/Adam on B rows; decoder (no grad), perturbation and critic 1
        forward/backward/Adam on B rows; Polyak update. No BCQ glue (concatenations, clipping,
        repeat, max over candidates).

The allocator's state is per process: a setting's speed can depend on what ran before it in the same
process (docs/bcq.md, Speed). For numbers to compare, run one setting per process (--settings).
"""

import argparse
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import bcq  # noqa: E402

OBS_DIM, ACT_DIM, N = 11, 3, 100_000
SETTINGS = {
    "default": dict(batch_size=100, hidden_dims=(400, 300), vae_hidden_dims=(750, 750), num_candidates=10),
    "d3rlpy": dict(batch_size=256, hidden_dims=(256, 256), vae_hidden_dims=(256, 256), num_candidates=100),
}


def make_data():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(N, OBS_DIM, generator=g), torch.rand(N, ACT_DIM, generator=g) * 2 - 1,
            torch.randn(N, generator=g), torch.randn(N, OBS_DIM, generator=g), torch.zeros(N))


def bcq_runner(args, data):
    agent = bcq.BCQ(OBS_DIM, ACT_DIM, -torch.ones(ACT_DIM), torch.ones(ACT_DIM), args, "cpu")

    def step():
        idx = torch.randint(0, N, (args.batch_size,))
        agent.update(*(x[idx] for x in data))
    return step


def bare_runner(args):
    latent = 2 * ACT_DIM
    vae_enc = bcq.mlp(OBS_DIM + ACT_DIM, args.vae_hidden_dims, 2 * latent)
    vae_dec = bcq.mlp(OBS_DIM + latent, args.vae_hidden_dims, ACT_DIM)
    actor, actor_t = (bcq.mlp(OBS_DIM + ACT_DIM, args.hidden_dims, ACT_DIM) for _ in range(2))
    q1, q2, q1_t, q2_t = (bcq.mlp(OBS_DIM + ACT_DIM, args.hidden_dims, 1) for _ in range(4))
    opt_vae = torch.optim.Adam([*vae_enc.parameters(), *vae_dec.parameters()], lr=1e-3)
    opt_actor = torch.optim.Adam(actor.parameters(), lr=1e-3)
    opt_critic = torch.optim.Adam([*q1.parameters(), *q2.parameters()], lr=1e-3)
    online = [*actor.parameters(), *q1.parameters(), *q2.parameters()]
    target = [*actor_t.parameters(), *q1_t.parameters(), *q2_t.parameters()]
    B, n = args.batch_size, args.num_candidates
    sa, sz, y = torch.randn(B, OBS_DIM + ACT_DIM), torch.randn(B, OBS_DIM + latent), torch.randn(B, 1)
    rows = max(1, bcq.BLOCK_ROWS // n) * n  # the candidate passes in bcq.py's blocks of whole states
    big_sa = torch.randn(B * n, OBS_DIM + ACT_DIM).split(rows)
    big_sz = torch.randn(B * n, OBS_DIM + latent).split(rows)

    def step():
        out = vae_enc(sa)
        loss = F.mse_loss(vae_dec(sz), sa[:, :ACT_DIM]) + out.pow(2).mean()
        opt_vae.zero_grad(set_to_none=True)
        loss.backward()
        opt_vae.step()
        with torch.no_grad():
            for block_sa, block_sz in zip(big_sa, big_sz):
                vae_dec(block_sz)
                actor_t(block_sa)
                q1_t(block_sa)
                q2_t(block_sa)
        loss = F.mse_loss(q1(sa), y) + F.mse_loss(q2(sa), y)
        opt_critic.zero_grad(set_to_none=True)
        loss.backward()
        opt_critic.step()
        with torch.no_grad():
            vae_dec(sz)
        loss = -q1(torch.cat([sa[:, :OBS_DIM], actor(sa)], 1)).mean()
        opt_actor.zero_grad(set_to_none=True)
        loss.backward(inputs=list(actor.parameters()))
        opt_actor.step()
        with torch.no_grad():
            torch._foreach_lerp_(target, online, 0.005)
    return step


def time_it(step, seconds):
    """(steps per wall-clock second, steps per CPU-second of this process, page faults per step) over
    at least `seconds` and 3 steps. On a shared CPU the second is the steadier one: with one thread it
    estimates what a core of our own would do (it counts spinning threads too, so it flatters nothing).
    The third counts memory the allocator gave back to the OS and had to fault in again."""
    t, c, steps = time.perf_counter(), time.process_time(), 0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    while steps < 3 or time.perf_counter() - t < seconds:
        step()
        steps += 1
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return steps / (time.perf_counter() - t), steps / (time.process_time() - c), faults / steps


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=8.0, help="timed seconds per variant per round")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS") or 2),
                   help="torch threads (default: $OMP_NUM_THREADS if set, else 2)")
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--block-rows", type=int, default=bcq.BLOCK_ROWS,
                   help="override bcq.BLOCK_ROWS, the rows per candidate pass (a huge value: one pass)")
    cli = p.parse_args()
    bcq.keep_freed_memory()  # as bcq.py's main does: both sides of the bare-loop comparison get it
    bcq.BLOCK_ROWS = cli.block_rows
    torch.set_num_threads(cli.threads)
    torch.manual_seed(0)
    data = make_data()
    variants = {}
    for name in cli.settings:
        args = bcq.Args(**SETTINGS[name])
        variants[f"{name}/bcq"] = bcq_runner(args, data)
        variants[f"{name}/bare"] = bare_runner(args)
    for step in variants.values():  # warm-up
        time_it(step, 1.0)
    results = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    faults = {name: [] for name in variants}
    for r in range(cli.rounds):
        for name, step in variants.items():
            wall, per_cpu, per_step = time_it(step, cli.seconds)
            results[name].append(wall)
            cpu[name].append(per_cpu)
            faults[name].append(per_step)
        print(f"round {r + 1}: " + "  ".join(f"{n} {v[-1]:.1f}" for n, v in results.items()), flush=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, obs {OBS_DIM}, act {ACT_DIM}, "
          f"blocks of {bcq.BLOCK_ROWS} rows, "
          f"{cli.rounds} rounds x {cli.seconds:.0f} s per variant; load average {os.getloadavg()[0]:.1f}")
    med = {name: statistics.median(v) for name, v in results.items()}
    for name, v in med.items():
        print(f"median {name:14s} {v:7.2f} steps/s  (min {min(results[name]):.2f}, max {max(results[name]):.2f})"
              f"  | {statistics.median(cpu[name]):7.2f} steps per CPU-second"
              f"  | {statistics.median(faults[name]):7.0f} page faults per step")
    for name in cli.settings:
        print(f"{name}: bare / bcq = {med[name + '/bare'] / med[name + '/bcq']:.2f}x")
