"""BC speed: bc.py's gradient steps/s against a bare loop of the same network.

    python -m benchmarks.speed_bc

The bare loop does only the forward, backward and Adam step of bc.py's Actor on a batch of random
tensors made once. bc.py runs as a script, on a Hopper-shaped synthetic dataset (obs 11, act 3,
100k transitions), batch 256, 2 threads; its SPS is read from summary.json (evaluation excluded).
Runs alternate (bare, script, bare, script, ...) and medians are reported.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ["MINARI_DATASETS_PATH"] = "/tmp/offline-rl-bench-minari"
DATASET = "bench/hopper-shaped/100k-v0"
STEPS = 3000


def bare_loop(steps=STEPS, batch=256):
    import bc

    torch.set_num_threads(2)
    actor = bc.Actor(11, 3, 256, -torch.ones(3), torch.ones(3))
    opt = torch.optim.Adam(actor.parameters(), lr=3e-4)
    obs, act = torch.randn(batch, 11), torch.rand(batch, 3) * 2 - 1
    for i in range(steps + 200):
        if i == 200:  # warm-up excluded
            t0 = time.perf_counter()
        loss = F.mse_loss(actor(obs), act)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps / (time.perf_counter() - t0)


def script_sps(steps=STEPS):
    with tempfile.TemporaryDirectory() as cwd:
        subprocess.run([sys.executable, os.path.join(REPO, "bc.py"), "--dataset-id", DATASET, "--no-cuda",
                        "--total-steps", str(steps), "--eval-freq", str(steps), "--eval-episodes", "2"],
                       cwd=cwd, check=True, capture_output=True)
        (run,) = os.listdir(os.path.join(cwd, "runs"))
        with open(os.path.join(cwd, "runs", run, "summary.json")) as f:
            return json.load(f)["sps"]


if __name__ == "__main__":
    from benchmarks.synthetic import make_hopper_shaped

    make_hopper_shaped(DATASET, episodes=100, episode_length=1000)
    bare, script = [], []
    for _ in range(3):
        bare.append(bare_loop())
        script.append(script_sps())
        print(f"bare loop {bare[-1]:.0f} steps/s | bc.py {script[-1]:.0f} steps/s", flush=True)
    b, s = statistics.median(bare), statistics.median(script)
    print(f"median: bare loop {b:.0f} steps/s, bc.py {s:.0f} steps/s, ratio {b / s:.2f}x "
          f"(torch {torch.__version__}, {torch.get_num_threads()} threads)")
