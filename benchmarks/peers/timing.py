"""Timing and the protocol between the parent and its children: standard library only (both venvs)."""

import json
import resource
import time

MARKER = "PEERS_RESULT "  # the child's last line: MARKER + JSON


def measure(step, seconds: float, warmup_seconds: float, min_steps: int = 3) -> dict:
    """Warm up for `warmup_seconds` (at least 2 steps), then run `step` for at least `seconds` and
    `min_steps`. Steps per wall-clock second, per CPU second of the process, and minor page faults
    per step (memory the allocator gave back to the OS and faulted in again)."""
    t0, warm = time.perf_counter(), 0
    while warm < 2 or time.perf_counter() - t0 < warmup_seconds:
        step()
        warm += 1
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    c0, t0, n = time.process_time(), time.perf_counter(), 0
    while n < min_steps or time.perf_counter() - t0 < seconds:
        step()
        n += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {"sps": n / wall, "steps": n, "seconds": wall, "cpu_sps": n / cpu, "faults_per_step": faults / n,
            "warmup_steps": warm}


def emit(result: dict) -> None:
    print(MARKER + json.dumps(result), flush=True)


def parse(stdout: str) -> dict:
    """The child's result: its last MARKER line."""
    lines = [line for line in stdout.splitlines() if line.startswith(MARKER)]
    if not lines:
        raise ValueError("the child printed no result line")
    return json.loads(lines[-1][len(MARKER):])
