"""Child process, peers venv (benchmarks/peers/.venv): d3rlpy 2.8.1's update at the same setting, timed.

    benchmarks/peers/.venv/bin/python -m benchmarks.peers.theirs --algo cql [--seconds 8] [--threads 2]

The data (benchmarks/peers/data.py) goes into a d3rlpy MDPDataset; the algorithm is built from the
config of benchmarks/peers/settings.py. Timed: `algo.update(batch)`, d3rlpy's public one-step update
(the batch's conversion to tensors, the impl's update, the metrics as floats), on batches sampled from
the dataset before the timing and used in turn. Then, for half as long, the inner step of d3rlpy's
`fit`: a batch from d3rlpy's own sampler and the update (`fit_step`). Never timed: the rest of `fit`
(logging, metrics averaging, the progress bar).
"""

import argparse
import os

import d3rlpy
import torch

from benchmarks.peers import data as peer_data
from benchmarks.peers import matmuls
from benchmarks.peers.settings import SETTINGS
from benchmarks.peers.timing import emit, measure

POOL = 16  # batches sampled before timing and used in turn


def build(algo: str, arrays: dict):
    s = SETTINGS[algo]
    dataset = d3rlpy.dataset.MDPDataset(observations=arrays["observations"], actions=arrays["actions"],
                                        rewards=arrays["rewards"], terminals=arrays["terminals"],
                                        timeouts=arrays["timeouts"])
    config = getattr(d3rlpy.algos, s["peer"])(**s["peer_args"])
    model = config.create(device="cpu:0")
    model.build_with_dataset(dataset)
    if algo == "dt":
        context = model.config.context_size

        def sample():
            return dataset.sample_trajectory_batch(model.config.batch_size, length=context)
    else:
        def sample():
            return dataset.sample_transition_batch(model.config.batch_size)
    return model, sample


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--algo", required=True, choices=list(SETTINGS))
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds (not timed)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--episodes", type=int, default=None, help="fewer episodes of data (tests)")
    p.add_argument("--matmuls", action="store_true",
                   help="instead of timing alone: FLOPs per step and the step's matrix products timed alone "
                        "(benchmarks/peers/matmuls.py)")
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="instead of timing: the top operators of N updates after the warm-up (torch.profiler)")
    cli = p.parse_args()
    torch.set_num_threads(cli.threads)
    d3rlpy.seed(0)
    kw = {} if cli.episodes is None else {"episodes": cli.episodes}
    model, sample = build(cli.algo, peer_data.hopper_shaped(**kw))
    pool = [sample() for _ in range(POOL)]
    it = [0]

    def step():
        model.update(pool[it[0] % POOL])
        it[0] += 1

    if cli.profile:
        measure(step, 0.0, cli.warmup)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(cli.profile):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
        raise SystemExit(0)
    if cli.matmuls:
        measure(step, 0.0, cli.warmup)
        emit({**matmuls.analyse(step, cli.seconds), "torch": torch.__version__, "d3rlpy": d3rlpy.__version__,
              "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0]})
        raise SystemExit(0)
    result = measure(step, cli.seconds, cli.warmup)
    fit_step = measure(lambda: model.update(sample()), cli.seconds / 2, 0.0)  # warm already
    emit({**result, "fit_step": fit_step, "torch": torch.__version__, "d3rlpy": d3rlpy.__version__,
          "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
          "batch_size": model.config.batch_size})
