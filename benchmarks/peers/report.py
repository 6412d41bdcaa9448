"""The tables of docs/benchmarks.md that set our scripts beside d3rlpy, made from the committed JSON.

    python -m benchmarks.peers.report [--json benchmarks/results/speed/peers.json]
                                      [--matmuls-json benchmarks/results/speed/matmuls.json] [--page docs/benchmarks.md]
    python -m benchmarks.peers.report --check     # exit 1 if the page differs from what the JSON makes

Rewrites only the lines between each table's two marker comments on the page.
"""

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JSON = os.path.join(REPO, "benchmarks", "results", "speed", "peers.json")
PAGE = os.path.join(REPO, "docs", "benchmarks.md")
MATMULS_JSON = os.path.join(REPO, "benchmarks", "results", "speed", "matmuls.json")
BEGIN = "<!-- peers:begin (made by `python -m benchmarks.peers.report` from benchmarks/results/speed/peers.json) -->"
END = "<!-- peers:end -->"
MATMULS_BEGIN = ("<!-- matmuls:begin (made by `python -m benchmarks.peers.report` from "
                 "benchmarks/results/speed/matmuls.json) -->")
MATMULS_END = "<!-- matmuls:end -->"


def flags(args: dict) -> str:
    """Our Args overrides as the script's command-line flags (tyro's spelling)."""
    out = []
    for k, v in args.items():
        name = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            out.append(name if v else "--no-" + k.replace("_", "-"))
        elif isinstance(v, (list, tuple)):
            out.append(f"{name} {' '.join(str(x) for x in v)}")
        else:
            out.append(f"{name} {v}")
    return " ".join(out)


def config(entry: dict) -> str:
    return f"{entry['peer']}({', '.join(f'{k}={v}' for k, v in entry['peer_args'].items())})"


def rate(x: float) -> str:
    return f"{x:.1f}" if x >= 10 else f"{x:.2f}"


def render(results: dict) -> str:
    m, p = results["machine"], results["protocol"]
    lines = [
        BEGIN,
        "",
        f"{m['cpu']}, {m['cores']} cores, {m['threads']} torch thread{'s' * (m['threads'] != 1)} per process, "
        f"torch {m['torch']} on both sides, {results['peer']['name']} {results['peer']['version']}; "
        f"{p['rounds_done']} rounds (of {p['rounds']} asked) of {p['seconds']:g} s per side after "
        f"{p['warmup_seconds']:g} s of warm-up, started {p['started']} (load average "
        f"{m['load_average_at_start']:.1f}). Gradient steps per second, medians over the rounds; the ratio is "
        f"the median of the per-round ratios (its range over the rounds in brackets).",
        "",
        "| script | d3rlpy 2.8.1 | ours | d3rlpy `update` | **ours / d3rlpy** | d3rlpy sampler + `update` "
        "| ours / that |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in results["algorithms"].values():
        for label, s in e.get("summary", {}).items():
            variant = f" ({label.split(' ', 1)[1]})" if " " in label else ""
            fit = f"{rate(s['d3rlpy_fit_sps'])} | {s['ratio_fit']:.2f}x" if "d3rlpy_fit_sps" in s else " | "
            if "ratio_fit_min" in s:
                fit += f" ({s['ratio_fit_min']:.2f}-{s['ratio_fit_max']:.2f})"
            lines.append(
                f"| `{e['script']}`{variant} | `{config(e)}` | {rate(s['ours_sps'])} | {rate(s['d3rlpy_sps'])} "
                f"| **{s['ratio']:.2f}x** ({s['ratio_min']:.2f}-{s['ratio_max']:.2f}) | {fit} |")
    lines += ["", "The settings, and our script's flags for them:", ""]
    for e in results["algorithms"].values():
        variants = e.get("variant_args") or {"": {}}
        runs = " or ".join(f"`python {e['script']} {flags(e['ours_args'] | extra)}`" for extra in variants.values())
        lines.append(f"- `{e['script']}` beside `{config(e)}`: {e['setting']}. Ours: {runs}.")
    lines += ["", END]
    return "\n".join(lines)


def render_matmuls(results: dict) -> str:
    m, p = results["machine"], results["protocol"]
    lines = [
        MATMULS_BEGIN,
        "",
        f"{m['cpu']}, {m['cores']} cores, {m['threads']} torch thread{'s' * (m['threads'] != 1)} per process, "
        f"torch {m['torch']}; {p['rounds_done']} rounds (of {p['rounds']} asked), each side in a fresh process, "
        f"started {p['started']} (load average {m['load_average_at_start']:.1f}). Medians over the rounds.",
        "",
        "| script | GFLOP per step, ours / d3rlpy | steps/s, ours / d3rlpy | our products alone, ms per step "
        "| their share of our step | GFLOP/s in them | **ceiling: our products alone / d3rlpy's step** |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for e in results["algorithms"].values():
        for label, s in e.get("summary", {}).items():
            variant = f" ({label.split(' ', 1)[1]})" if " " in label else ""
            lines.append(
                f"| `{e['script']}`{variant} | {s['ours_gflop']:.2f} / {s['d3rlpy_gflop']:.2f} "
                f"| {rate(s['ours_sps'])} / {rate(s['d3rlpy_sps'])} ({s['ratio']:.2f}x) | {s['ours_product_ms']:.1f} "
                f"| {s['product_share']:.0%} | {s['product_gflops']:.0f} | **{s['ceiling_ratio']:.2f}x** |")
    lines += ["", MATMULS_END]
    return "\n".join(lines)


def splice(page: str, section: str, begin: str = BEGIN, end_marker: str = END) -> str:
    """The page with the text between the markers (markers included) replaced by `section`."""
    start, end = page.find(begin), page.find(end_marker)
    if start < 0 or end < start:
        raise ValueError(f"the page lacks the markers {begin!r} ... {end_marker!r}")
    return page[:start] + section + page[end + len(end_marker):]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default=JSON)
    p.add_argument("--matmuls-json", default=MATMULS_JSON)
    p.add_argument("--page", default=PAGE)
    p.add_argument("--check", action="store_true", help="only compare; exit 1 where the page is stale")
    cli = p.parse_args(argv)
    with open(cli.json) as f:
        section = render(json.load(f))
    with open(cli.page) as f:
        page = f.read()
    new = splice(page, section)
    if os.path.exists(cli.matmuls_json):
        with open(cli.matmuls_json) as f:
            new = splice(new, render_matmuls(json.load(f)), MATMULS_BEGIN, MATMULS_END)
    if cli.check:
        if new != page:
            print(f"{cli.page} differs from what {cli.json} makes: run python -m benchmarks.peers.report")
            return 1
        return 0
    with open(cli.page, "w") as f:
        f.write(new)
    print(f"wrote the d3rlpy tables of {cli.page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
