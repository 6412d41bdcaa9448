"""benchmarks/peers (our scripts beside d3rlpy): the ratio and median logic, the children's default
environment, our side's step for every algorithm, the matrix-product count and replay, and
docs/benchmarks.md against the committed JSON.
Needs neither the peers venv nor d3rlpy nor the network."""

import json
import os
import subprocess
import sys

import pytest
import torch

import testdata

# benchmarks/ is the repository's, never a student's copy (see test_sweep.py)
sys.path.insert(0, str(testdata.REPO))
from benchmarks.peers import compare, matmuls, ours, report, settings, timing  # noqa: E402
from benchmarks.peers import data as peer_data  # noqa: E402

sys.path.remove(str(testdata.REPO))


def side(sps, fit=None):
    """A child's result; steps per CPU second = per wall second, for simplicity."""
    return {"sps": sps, "cpu_sps": sps} | ({"fit_step": {"sps": fit, "cpu_sps": fit}} if fit is not None else {})


def test_summarize_takes_the_median_of_per_round_ratios():
    rounds = [{"ours": side(10.0), "d3rlpy": side(5.0, fit=4.0)},   # 2.0x, fit 2.5x
              {"ours": side(12.0), "d3rlpy": side(4.0, fit=3.0)},   # 3.0x, fit 4.0x
              {"ours": side(9.0), "d3rlpy": side(9.0, fit=6.0)}]    # 1.0x, fit 1.5x
    s = compare.summarize(rounds, ["ours"])["ours"]
    assert s["ratio"] == pytest.approx(2.0), f"median of the ratios 2, 3, 1 is 2, got {s['ratio']}"
    assert (s["ratio_min"], s["ratio_max"]) == pytest.approx((1.0, 3.0)), f"ratio range should be 1-3, got {s}"
    # not the ratio of the medians (10 / 5 = 2 here too), so check the sides separately
    assert (s["ours_sps"], s["d3rlpy_sps"]) == pytest.approx((10.0, 5.0)), f"medians of each side: {s}"
    assert s["ratio_fit"] == pytest.approx(2.5), f"median of fit ratios 2.5, 4, 1.5 is 2.5, got {s['ratio_fit']}"
    assert s["rounds"] == 3


def test_summarize_pairs_sides_within_rounds():
    # the median of per-round ratios (1.0) differs from the ratio of medians (100 / 10 = 10)
    rounds = [{"ours": side(1.0), "d3rlpy": side(1.0)},
              {"ours": side(100.0), "d3rlpy": side(100.0)},
              {"ours": side(1000.0), "d3rlpy": side(10.0)},
              {"ours": side(100.0)}]  # an unfinished round: skipped
    s = compare.summarize(rounds, ["ours"])["ours"]
    assert s["ratio"] == pytest.approx(1.0), f"per-round ratios 1, 1, 100 have median 1, got {s['ratio']}"
    assert s["rounds"] == 3, f"the round without d3rlpy must be skipped, got {s['rounds']} rounds"


def test_summarize_several_variants():
    rounds = [{"ours float32": side(3.0), "ours bf16": side(6.0), "d3rlpy": side(2.0)}]
    s = compare.summarize(rounds, compare.labels("dt"))
    assert compare.labels("dt") == ["ours float32", "ours bf16"]
    assert (s["ours float32"]["ratio"], s["ours bf16"]["ratio"]) == pytest.approx((1.5, 3.0))


def test_children_get_no_malloc_variables(monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "33554432")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1073741824")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=33554432")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    seen = []

    def fake_run(cmd, **kw):
        seen.append(kw["env"])
        return subprocess.CompletedProcess(cmd, 0, stdout=timing.MARKER + json.dumps({"sps": 1.0}) + "\n", stderr="")

    monkeypatch.setattr(compare.subprocess, "run", fake_run)
    assert compare.run_child(["python", "-c", "pass"], timeout=10) == {"sps": 1.0}
    env = seen[0]
    leaked = sorted(k for k in env if k.startswith("MALLOC_") or k in ("GLIBC_TUNABLES", "OMP_NUM_THREADS"))
    assert not leaked, f"the children must run in the default environment, but got {leaked}"
    assert env.get("PATH") == os.environ.get("PATH"), "the rest of the environment must be passed on"


def test_rounds_alternate_which_side_goes_first():
    assert compare.round_order("cql", 0) == ["ours", "d3rlpy"]
    assert compare.round_order("cql", 1) == ["d3rlpy", "ours"]
    assert compare.round_order("dt", 1) == ["d3rlpy", "ours bf16", "ours float32"]


def test_commands_use_each_sides_python():
    cli = compare.parse_args(["--algos", "dt", "--threads", "2"])
    theirs = compare.command("dt", "d3rlpy", cli)
    mine = compare.command("dt", "ours bf16", cli)
    assert theirs[0].startswith(os.path.join("benchmarks", "peers", ".venv")) or ".venv" in theirs[0]
    assert theirs[:3] == [compare.peers_setup.PYTHON, "-m", "benchmarks.peers.theirs"]
    assert mine[:3] == [sys.executable, "-m", "benchmarks.peers.ours"]
    assert mine[-2:] == ["--variant", "bf16"], f"our variant must reach the child: {mine}"
    assert mine[mine.index("--threads") + 1] == "2"


def test_parse_takes_the_last_marker_line():
    out = f"noise\n{timing.MARKER}{{\"sps\": 1}}\nmore noise\n{timing.MARKER}{{\"sps\": 2}}\n"
    assert timing.parse(out) == {"sps": 2}
    with pytest.raises(ValueError):
        timing.parse("a child that crashed before printing\n")


def test_measure_counts_steps_after_warm_up():
    calls = []
    r = timing.measure(lambda: calls.append(1), seconds=0.01, warmup_seconds=0.0, min_steps=5)
    assert r["warmup_steps"] >= 2 and r["steps"] >= 5
    assert len(calls) == r["warmup_steps"] + r["steps"], "warm-up steps must not be counted as timed"
    assert r["sps"] == pytest.approx(r["steps"] / r["seconds"])


def test_data_has_the_same_transitions_on_both_sides():
    d = peer_data.hopper_shaped(episodes=3, length=4)
    assert d["observations"].shape == (12, settings.OBS_DIM) and d["actions"].shape == (12, settings.ACT_DIM)
    # next_observations are the observations one step on, within each episode
    assert (d["next_observations"][0:3] == d["observations"][1:4]).all()
    assert (d["terminals"] + d["timeouts"]).tolist() == [0, 0, 0, 1] * 3, "each episode ends exactly once"
    assert d["terminals"][3] == 1 and d["timeouts"][7] == 1


@pytest.mark.parametrize("algo,variant", [(a, v) for a in settings.ALGOS for v in settings.SETTINGS[a]["variants"]])
def test_our_step_runs_and_trains(algo, variant, monkeypatch):
    """Our side of each comparison: the script's own pieces at d3rlpy's setting take a training step
    that changes the networks (fails when a script's API moves on and benchmarks/peers does not)."""
    module = __import__(settings.SETTINGS[algo]["script"][:-3])
    monkeypatch.setattr(module, "keep_freed_memory", lambda: True)  # not in the test process
    if variant == "bf16" and not module.use_bf16("cpu", True):
        pytest.skip("no native bf16 on this CPU")
    torch.manual_seed(0)
    small = dict(batch_size=8) | (dict(num_candidates=4) if algo == "bcq" else {})  # the same code, less work
    step = ours.make_step(algo, variant, ours.offline_dataset(peer_data.hopper_shaped(episodes=2)), **small)
    params = [p for net in step.networks for p in net.parameters()]
    start = [p.detach().clone() for p in params]
    for _ in range(2):  # TD3+BC's actor steps every 2nd update
        step()
    changed = sum(not torch.equal(a, p) for a, p in zip(start, params))
    assert changed > 0, f"{algo}: a step should change the networks' parameters (none of {len(params)} changed)"


def test_flags_are_the_scripts_spelling():
    assert report.flags({"batch_size": 256, "cql_lagrange": True, "hidden_dims": (256, 256), "bf16": False}) == (
        "--batch-size 256 --cql-lagrange --hidden-dims 256 256 --no-bf16")


def test_variants_reach_the_scripts_args(monkeypatch):
    """DT's float32 side must train with bf16 off and its bf16 side with it on."""
    import decision_transformer
    seen = []
    monkeypatch.setattr(ours, "build_step", lambda module, algo, data, args: seen.append(args.bf16) or (lambda: None))
    monkeypatch.setattr(decision_transformer, "keep_freed_memory", lambda: True)
    for variant in ("float32", "bf16"):
        ours.make_step("dt", variant, data=None)
    assert seen == [False, True], f"float32 then bf16 should give bf16=False, True; got {seen}"


def test_splice_replaces_only_between_markers():
    page = f"intro\n{report.BEGIN}\nold\n{report.END}\noutro\n"
    new = f"{report.BEGIN}\nnew\n{report.END}"
    assert report.splice(page, new) == f"intro\n{new}\noutro\n", "only the marked lines should change"
    with pytest.raises(ValueError):
        report.splice("no markers", "x")


def test_benchmarks_page_matches_the_committed_json():
    speed = testdata.REPO / "benchmarks" / "results" / "speed"
    page = (testdata.REPO / "docs" / "benchmarks.md").read_text()
    expected = report.splice(page, report.render(json.loads((speed / "peers.json").read_text())))
    expected = report.splice(expected, report.render_matmuls(json.loads((speed / "matmuls.json").read_text())),
                             report.MATMULS_BEGIN, report.MATMULS_END)
    assert page == expected, ("docs/benchmarks.md's d3rlpy tables differ from what benchmarks/results/speed/"
                              "peers.json and matmuls.json make: run `python -m benchmarks.peers.report`")


def test_flops_of_a_step_by_hand():
    x, w = torch.randn(8, 4), torch.randn(5, 4, requires_grad=True)
    b = torch.randn(5, requires_grad=True)

    def step():
        (torch.nn.functional.linear(x, w, b) ** 2).sum().backward()

    # forward x w^T: 2 * 8 * 4 * 5 = 320; backward: dL/dw = g^T x, 320 more; x needs no gradient
    assert matmuls.step_flops(step) == 640
    calls = matmuls.record(step)
    assert [str(f) for f, _, _ in calls] == ["aten.addmm.default", "aten.mm.default"], calls
    (bias, left, right), (grad_left, grad_right) = calls[0][1], calls[1][1]
    assert (bias.shape, left.shape, right.shape, right.stride) == ((5,), (8, 4), (4, 5), (1, 4)), "w^T is a view"
    assert (grad_left.shape, grad_left.stride, grad_right.shape) == ((5, 8), (1, 5), (8, 4)), "g^T is a view"


def test_replay_runs_the_recorded_products_alone():
    big = torch.randn(512, 512)

    def step():
        big @ big  # the step is one product: its replay takes about as long as the step
        torch.ones(1).add_(1)

    calls = matmuls.record(step)
    assert len(calls) == 1 and calls[0][1][0].shape == (512, 512)
    broadcast = matmuls.Layout(torch.zeros(5).expand(3, 5)).make()
    assert broadcast.shape == (3, 5) and broadcast.stride() == (0, 1), "a stride-0 operand keeps its layout"
    seen = []
    layout = matmuls.Layout(torch.randn(4, 3).t())
    seconds = matmuls.replay_seconds([(lambda a, k=0: seen.append((a.shape, a.stride(), k)), (layout,), {"k": 7})],
                                     seconds=0.01, warmup=2)
    assert len(seen) >= 5 and set(seen) == {((3, 4), (1, 3), 7)}, "each replay calls the op on its layout"
    assert 0 < seconds < 1
    r = matmuls.analyse(step, seconds=0.4)
    assert r["gflop"] == pytest.approx(2 * 512 ** 3 / 1e9) and r["products"] == 1
    # wide bounds: the machine may be shared; a replay that skipped the product would give ~0
    assert 0.2 < r["product_seconds"] * r["sps"] < 3, f"the product is nearly all of this step: {r}"
    assert r["dtypes"] == ["torch.float32"]


def test_summarize_matmuls_by_hand():
    def side(sps, gflop, product_seconds):
        return {"sps": sps, "gflop": gflop, "product_seconds": product_seconds, "dtypes": ["torch.float32"]}

    rounds = [{"ours": side(10.0, 7.0, 0.08), "d3rlpy": side(8.0, 7.2, 0.09)},   # ceiling 12.5 / 8 = 1.5625
              {"ours": side(11.0, 7.0, 0.05), "d3rlpy": side(10.0, 7.2, 0.06)},  # 20 / 10 = 2.0
              {"ours": side(9.0, 7.0, 0.08), "d3rlpy": side(9.0, 7.2, 0.09)}]    # 12.5 / 9 = 1.389
    s = compare.summarize_matmuls(rounds, ["ours"])["ours"]
    assert s["ceiling_ratio"] == pytest.approx(12.5 / 8), f"median of the per-round ceilings: {s}"
    assert (s["ours_gflop"], s["d3rlpy_gflop"], s["ours_sps"], s["ratio"]) == pytest.approx((7.0, 7.2, 10.0, 1.1))
    assert s["product_share"] == pytest.approx(0.72) and s["ours_product_ms"] == pytest.approx(80.0)
    assert s["product_gflops"] == pytest.approx(87.5) and s["rounds"] == 3
