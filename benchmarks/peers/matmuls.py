"""The matrix products of one training step: counted, recorded, and timed alone (torch only: both venvs).

A training step at these settings spends most of its time in matrix products (mm, addmm, bmm, baddbmm,
and attention kernels). This module answers how fast a step could go at most on this CPU:

1. count the floating-point operations of one step (torch.utils.flop_counter, forward and backward);
2. record every matrix-product call of one step (operator, operand shapes, strides and dtypes);
3. replay those calls alone, on operands made once with the same layouts, and time them.

The replay's time per step is a floor for the step on this machine: the same products at the speed
this CPU's libraries reach on their shapes, with nothing else. Its inverse is a ceiling on steps/s
that no change short of doing less arithmetic (or doing it in a lower precision) can pass.
"""

import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten
PRODUCTS = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default}
for _name in ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention_for_cpu_backward"):
    if hasattr(aten, _name):
        PRODUCTS.add(getattr(aten, _name).default)


class Layout:
    """What a replay needs of an operand: its shape, strides and dtype (never its values)."""

    def __init__(self, t: torch.Tensor):
        self.shape, self.stride, self.dtype = tuple(t.shape), tuple(t.stride()), t.dtype

    def make(self) -> torch.Tensor:
        # filled through a flat storage: a broadcast operand (stride 0) has elements that share memory
        size = 0 if 0 in self.shape else 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride))
        flat = torch.empty(size, dtype=self.dtype)
        flat = flat.uniform_(-1, 1) if flat.dtype.is_floating_point else flat.zero_()
        return flat.as_strided(self.shape, self.stride)


class Recorder(TorchDispatchMode):
    """Records each matrix-product call made under it (forward and backward) and lets it run."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in PRODUCTS:
            layout = lambda x: Layout(x) if isinstance(x, torch.Tensor) else x  # noqa: E731
            self.calls.append((func, tree_map(layout, args), tree_map(layout, kwargs)))
        return func(*args, **kwargs)


def step_flops(step) -> int:
    """Floating-point operations of one call of `step` (matrix products and attention, forward and backward)."""
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def record(step) -> list:
    recorder = Recorder()
    with recorder:
        step()
    return recorder.calls


def replay_seconds(calls: list, seconds: float, warmup: int = 2) -> float:
    """Seconds per replay of `calls`: operands made once, then the calls in order, repeated for `seconds`."""
    made = lambda x: x.make() if isinstance(x, Layout) else x  # noqa: E731
    ready = [(func, tree_map(made, args), tree_map(made, kwargs)) for func, args, kwargs in calls]

    def once():
        for func, args, kwargs in ready:
            func(*args, **kwargs)

    for _ in range(warmup):
        once()
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds:
        once()
        n += 1
    return (time.perf_counter() - t0) / n


def analyse(step, seconds: float) -> dict:
    """The step's FLOPs, its matrix products alone (seconds per step), and the step's own rate (steps/s),
    the last two timed alternately in slices so that a change in the machine's load reaches both."""
    flops, calls = step_flops(step), record(step)
    product_s, step_n, step_t = [], 0, 0.0
    for _ in range(4):
        product_s.append(replay_seconds(calls, seconds / 8))
        t0 = time.perf_counter()
        while step_n == 0 or time.perf_counter() - t0 < seconds / 8:
            step()
            step_n += 1
        step_t += time.perf_counter() - t0
    product = sorted(product_s)[len(product_s) // 2]
    return {"gflop": flops / 1e9, "products": len(calls), "product_seconds": product, "sps": step_n / step_t,
            "dtypes": sorted({str(a.dtype) for _, args, _ in calls for a in args if isinstance(a, Layout)})}
