"""Numbers in the docs' prose that come from runs, checked against the committed data they come from
(docs/figures/data/*.json, benchmarks/results/**/summary.json) or recomputed from the script that made
them. Each claim is the page's sentence as the data makes it: a run redone, or a sentence edited, that
no longer agrees fails here. Tables pasted from the figure scripts are checked by test_docs_tables.py."""

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
DATA = DOCS / "figures" / "data"


def _json(name):
    return json.loads((DATA / f"{name}.json").read_text())


def _cql_run(label, dataset, seed=1):
    runs = [r for r in _json("cql_alpha")["runs"]
            if r["label"] == label and r["dataset_id"] == f"local/pendulum/{dataset}-v0" and r["seed"] == seed]
    assert len(runs) == 1, (label, dataset, seed)
    return runs[0]


def _summaries(folder: str, dataset: str):
    return [json.loads(p.read_text()) for p in sorted((REPO / "benchmarks" / "results").glob(
        f"{folder}/{dataset.replace('/', '-')}/seed*/runs/*/summary.json"))]


def f(x, digits=1):
    return f"{x:.{digits}f}"


def cql_lagrangian_overview():
    e, r, m, rnd = (_cql_run("lag", d) for d in ("expert", "medium-replay", "medium", "random"))
    return [
        f"({f(e['final_alpha'], 2)} on expert, {f(r['final_alpha'], 2)} on medium-replay, "
        f"{f(m['final_alpha'])} on medium data)",
        f"({f(e['final'])}, {f(r['final'])} and {f(m['final'])}, after {f(e['best'])}, {f(r['best'])} and "
        f"{f(m['best'])})",
        f"the gap is {f(e['final_cql_gap'], 2)}, {f(r['final_cql_gap'], 2)} and {f(m['final_cql_gap'], 2)} (on random "
        f"data {f(rnd['final_cql_gap'], 2)}, with $\\alpha$ at {f(rnd['final_alpha'])})",
    ]


def cql_lagrangian_page():
    e, r, m, rnd = (_cql_run("lag", d) for d in ("expert", "medium-replay", "medium", "random"))
    return [
        f"from 5 to {f(e['final_alpha'], 2)} (expert), {f(r['final_alpha'], 2)} (replay) and {f(m['final_alpha'])} (medium)",
        f"they end at {f(e['final'], 0)}, {f(r['final'], 0)} and {f(m['final'], 0)}, after peaks of {f(e['best'], 0)}, "
        f"{f(r['best'], 0)} and {f(m['best'], 0)}",
        f"it is {f(e['final_cql_gap'], 2)} (expert), {f(r['final_cql_gap'], 2)} (replay) and {f(m['final_cql_gap'], 2)} "
        f"(medium)",
        f"stays near 5 ({f(rnd['final_alpha'])}) and the run ends at {f(rnd['final'], 0)}, {f(rnd['final_cql_gap'], 2)}",
    ]


def cql_default_values():
    cql, sac = _cql_run("a5", "medium-replay"), _cql_run("a0", "medium-replay")
    last = {k: v[-1][1] for k, v in cql["curves"].items()}
    return [
        f"(`values/mc_return`, about {f(last['values/mc_return'], 0)})",
        f"CQL's `values/q_data` ends at {f(last['values/q_data'], 0)}, offline SAC's stops higher, at "
        f"{f(sac['curves']['values/q_data'][-1][1], 0)}",
        f"CQL ends at {f(cql['final'])}, offline SAC at {f(sac['final'])} (seed 1)",
    ]


def cql_page_default_values():
    last = _cql_run("a5", "medium-replay")["curves"]["values/q_data"][-1]
    return [f"CQL's `q_data` is still at {f(last[1], 0)} at step {last[0]:,}"]


def bcq_phi():
    spec = importlib.util.spec_from_file_location("bcq_phi", DOCS / "figures" / "bcq_phi.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    steps, runs = module.phi_runs(_json("bcq_phi"))  # the Phi table's runs: the default's up to `steps`
    final = {}
    for r in runs:
        final.setdefault(float(r["phi"]), []).append(r["eval_history"][-1][2])
    default = sorted(final[0.05])
    assert steps == 3000 and len(default) == 3
    return [f"{f(final[0.0][0])} with $\\Phi = 0$, {f(default[0])} to {f(default[-1])} for the default's three seeds"]


def dt_default():
    runs = _summaries("pendulum/dt", "local/pendulum/medium-replay-v0")
    assert len(runs) == 3
    best, median = runs[0]["target_returns"]
    scores = {t: np.mean([r["final_per_target"][str(t)]["normalized_score"] for r in runs]) for t in (best, median)}
    # the dataset's reference returns, from one run's two (return, score) pairs: score is linear in return
    (r1, s1), (r2, s2) = [(runs[0]["final_per_target"][str(t)]["return_mean"],
                           runs[0]["final_per_target"][str(t)]["normalized_score"]) for t in (best, median)]
    best_score = s1 + (best - r1) * (s2 - s1) / (r2 - r1)
    return [f"data's best return\n({f(best, 0)})", f"its median ({f(median, 0)})",
            f"({f(scores[best])} against {f(scores[median])}\nnormalised, mean of 3 seeds)",
            f"the data's best\nepisode scores {f(best_score, 0)}"]


def awac_online_sag():
    for r in _json("offline_to_online")["runs"]:
        if r["label"] == "awac":
            ev = json.loads(r["eval"]) if isinstance(r["eval"], str) else r["eval"]
            off = int(r["offline_steps"])
            step, low = min(((s, v) for s, v in ev if s >= off), key=lambda t: t[1])
            if low < 50:
                return [f"sags to {f(low)} later, at step {step:,}"]
    raise AssertionError("no AWAC seed falls below 50 online")


def iql_100k():
    (run,) = _summaries("hopper-long/iql_100k", "local/hopper/medium-v0")
    assert run["steps"] == 100_000
    return [f"({f(run['final_normalized_score'])} on `local/hopper/medium-v0`\nat 100,000 steps, one seed)"]


def expectiles():
    spec = importlib.util.spec_from_file_location("plot_expectiles", DOCS / "figures" / "plot_expectiles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rng = np.random.default_rng(0)  # the figure's sample, drawn as plot_expectiles.py draws it
    q = np.concatenate([rng.normal(0.0, 1.0, 8000), rng.normal(4.0, 0.5, 2000)])
    return [f"{f(module.expectile(q, 0.7), 2)} against a mean of {f(module.expectile(q, 0.5), 2)} and a maximum of\n"
            f"{f(q.max(), 2)}"]


def iql_default_data():
    runs = _json("iql_expectile")["default_data"]["runs"]
    default = [r["final"] for r in runs if r["label"] == "iql"]
    (e9,) = [r for r in runs if r["label"] == "iql_e0.9"]
    step, best = max(e9["eval_history"], key=lambda h: h[1])
    return [f"IQL with its defaults ends at {f(min(default), 0)}-{f(max(default), 0)} from data",
            f"the policy peaked at {f(best)} at {step // 1000}k steps and then declined (final {f(e9['final'])})"]


def rlpd_online_episodes():
    """Each seed's online episodes from the first that returns more than -200 on: the range of those above
    -200, and those below it (seed, env step, return)."""
    good, weak = [], []
    for r in _json("rlpd_default")["runs"]:
        episodes = r["online_episode_returns"]
        first = next(i for i, (_, ret) in enumerate(episodes) if ret > -200)
        for step, ret in episodes[first:]:
            (good if ret > -200 else weak).append((r["seed"], step, ret))
    assert len(weak) == 2 and weak[0][1] == weak[1][1], weak
    return [f"most returns lie between {f(max(g[2] for g in good), 0)} and {f(min(g[2] for g in good), 0)}, with one "
            f"weaker episode at env step {weak[0][1]:,} for seeds {weak[0][0]} and {weak[1][0]} "
            f"({f(weak[0][2], 0)}, {f(weak[1][2], 0)})"]


def tt_against_bc():
    runs = _json("tt_default")["default_runs"]
    tt, bc = (np.mean([r["final"] for r in runs[k]]) for k in ("tt", "bc"))
    assert all(t["final"] > b["final"] for t, b in zip(runs["tt"], runs["bc"]))
    return [f"TT's default run ends above BC's on every seed, by {f(tt - bc, 0)} points on average"]


def dt_knob():
    knob = _json("dt_targets")["knob_runs"]
    achieved = [r["per_target"]["-671.3"]["return_mean"] for r in knob]
    return [f"(-{f(-max(achieved), 0)} to -{f(-min(achieved), 0)} when asked for -671.3)"]


def awac_default_data():
    d = _json("awac_lambda")["default_data"]
    finals, bests = [r["final"] for r in d["committed"]], [r["best"] for r in d["committed"]]
    (lam,) = [r for r in d["runs"] if r["label"] == "awac_l0.3333" and r["seed"] == 1]
    step, best = max(lam["eval_history"], key=lambda h: h[1])
    q = dict(map(tuple, lam["batches"]["values/q"]))
    clipped = dict(map(tuple, lam["batches"]["values/awac_weight_clipped_frac"]))
    assert clipped[1000] == 0
    return [f"ends at {f(min(finals), 0)}-{f(max(finals), 0)} (mean {f(np.mean(finals))} over three seeds)",
            f"reach {f(min(bests), 0)}-{f(max(bests), 0)}",
            f"peaked higher ({f(best)} at {step // 1000}k steps) and ended lower ({f(lam['final'])})",
            f"goes from {f(q[1000], 0)} to {f(q[10000], 0)}",
            f"{f(100 * clipped[10000])}% of the batch at the clip at 10k, none at 1k"]


def awac_learning_check():
    runs = {r["label"]: r for r in _json("awac_lambda")["mixed_data"]["runs"]}
    return [f"requires more than 55: it scores {f(runs['check']['final'])}",
            f"the same run scores {f(runs['check_w1']['final'])}"]


def model_based_small_data():
    data = _json("model_based_small_data")
    run = {(r["script"], r["fraction"], r["seed"]): r for r in data["runs"]}
    mean = {(k, fr): np.mean([r["final_normalized_score"] for (s, q, _), r in run.items() if (s, q) == (k, fr)])
            for k in ("mopo", "cql", "iql") for fr in (0.05, 1.0)}
    nll = {fr: np.mean([r["model_holdout_nll"] for (s, q, _), r in run.items() if (s, q) == ("mopo", fr)])
           for fr in (0.05, 1.0)}
    seeds = ", ".join(f(run[("mopo", 0.05, k)]["final_normalized_score"]) for k in data["seeds"][:-1])
    last = f(run[("mopo", 0.05, data["seeds"][-1])]["final_normalized_score"])
    return [
        f"(IQL at {f(mean[('iql', 1.0)])} needs more than these 10,000 steps)",
        f"MOPO keeps {f(mean[('mopo', 0.05)])} (seeds at {seeds} and {last}) while CQL falls to "
        f"{f(mean[('cql', 0.05)])} and IQL to {f(mean[('iql', 0.05)])}",
        f"held-out NLL is {f(nll[0.05], 2)} nats per dimension against {f(nll[1.0], 2)} on the full set",
    ]


CLAIMS = [
    ("overview.md", model_based_small_data),
    ("overview.md", cql_lagrangian_overview),
    ("cql.md", cql_lagrangian_page),
    ("teaching.md", cql_default_values),
    ("cql.md", cql_page_default_values),
    ("teaching.md", bcq_phi),
    ("teaching.md", dt_default),
    ("iql.md", awac_online_sag),
    ("overview.md", iql_100k),
    ("overview.md", expectiles),
    ("iql.md", iql_default_data),
    ("rlpd.md", rlpd_online_episodes),
    ("trajectory_transformer.md", tt_against_bc),
    ("decision_transformer.md", dt_knob),
    ("awac.md", awac_default_data),
    ("awac.md", awac_learning_check),
]


def _flat(text: str) -> str:
    return re.sub(r"\s+", " ", text)


@pytest.mark.parametrize("page, claim", CLAIMS, ids=[f"{p}:{c.__name__}" for p, c in CLAIMS])
def test_the_pages_numbers_are_the_committed_datas(page, claim):
    text = _flat((DOCS / page).read_text())
    for sentence in claim():
        assert _flat(sentence) in text, (
            f"docs/{page} should say, as its committed data does: {_flat(sentence)!r} ({claim.__doc__ or claim.__name__})")


def test_a_changed_number_is_caught():
    text = _flat((DOCS / "overview.md").read_text())
    sentence = _flat(cql_lagrangian_overview()[2])
    assert sentence in text and "7.27" in sentence
    assert sentence not in text.replace("7.27", "4.27"), "a page whose gap reads 4.27 must not match the data's 7.27"
