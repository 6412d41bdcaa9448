"""Trajectory Transformer speed: the planner with and without the attention (KV) cache, and a training step.

    python -m benchmarks.speed_tt                  # ~3 min on a 2-core CPU with no other load
    python -m benchmarks.speed_tt --repeats 5 --plans 3

Planning: trajectory_transformer.py's own beam_plan at the default size (embed 128, 4 layers, 4 heads,
100 bins, windows of 10 transitions) on Pendulum-shaped tokens (obs 3, act 1: 6 tokens per transition),
the default planner (horizon 5, beam 32 x 2, 5 past transitions of context), 5 envs planned at once as
the default evaluation does, float32 and bf16 autocast, with the cache and without (every token then
recomputes the whole sequence). The weights are random: the cost of a plan does not depend on them. Each
configuration also checks that both ways give the same plans. Training: the default step (batch 64).
Times are CPU seconds of this process (time.process_time, one torch thread), medians over the repeats:
on a shared machine wall time measures the other jobs too.
"""

import argparse
import os
import statistics
import sys
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import trajectory_transformer as tt  # noqa: E402


def plan_time(model, prefix, edges, kv_cache: bool, bf16: bool, plans: int):
    """CPU seconds per plan, and the plans themselves (to compare)."""
    out = []
    t0 = time.process_time()
    for i in range(plans):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out.append(tt.beam_plan(model, prefix, edges, 3, 1, horizon=5, beam_width=32, n_expand=2, gamma=0.99,
                                    cdf_act=0.6, kv_cache=kv_cache, generator=torch.Generator().manual_seed(i))[1])
    return (time.process_time() - t0) / plans, out


def train_step_time(model, steps: int, batch=64, L=10, T=6, V=100) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4)
    weights = torch.ones(L * T - 1)
    model.train()
    t0 = time.process_time()
    for _ in range(steps):
        x = torch.randint(0, V, (batch, L * T))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=tt.use_bf16("cpu", True)):
            logits = model(x[:, :-1])
        loss = tt.token_loss(logits, x[:, 1:], weights, torch.ones(batch, L * T - 1, dtype=torch.bool))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return (time.process_time() - t0) / steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--plans", type=int, default=2, help="plans per configuration and repeat (with the cache)")
    p.add_argument("--steps", type=int, default=5, help="training steps per repeat")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    T, V, L = 6, 100, 10
    model = tt.TrajectoryTransformer(T, V, L, 128, 4, 4, 0.1).eval()
    edges = tt.bin_edges(torch.randn(5000, T), V, "quantile")
    prefix = torch.randint(0, V, (5, 5 * T + 3))  # 5 envs: 5 past transitions and the current state
    plan_time(model, prefix, edges, True, False, 1)  # warm-up
    results = {}
    for r in range(a.repeats):
        for bf16 in (False, True):
            cached, plans_c = plan_time(model, prefix, edges, True, bf16, a.plans)
            full, plans_f = plan_time(model, prefix, edges, False, bf16, 1)
            same = all(torch.equal(x, y) for x, y in zip(plans_c[:1], plans_f))
            results.setdefault(("cache", bf16), []).append(cached)
            results.setdefault(("no cache", bf16), []).append(full)
            print(f"repeat {r}: bf16 {bf16}: {cached:.3f} s per plan with the cache, {full:.3f} s without "
                  f"({full / cached:.1f}x); same plans: {same}", flush=True)
        results.setdefault("train", []).append(train_step_time(model, a.steps))
    load = os.getloadavg()[0]
    print(f"\nCPU seconds, medians over {a.repeats} repeats (load average {load:.1f} at the end):")
    print("| planner | float32 | bf16 autocast |\n| --- | --- | --- |")
    for way in ("cache", "no cache"):
        print(f"| {way} | {statistics.median(results[(way, False)]):.3f} | {statistics.median(results[(way, True)]):.3f} |")
    print(f"training step, batch 64, bf16 autocast {'on' if tt.use_bf16('cpu', True) else 'off (no native bf16)'}: "
          f"{statistics.median(results['train']):.3f} s")


if __name__ == "__main__":
    main()
