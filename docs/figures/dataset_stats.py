"""Prints the tables of docs/datasets.md: what each local dataset holds (episodes, transitions, returns,
size on disk), from docs/figures/data/dataset_stats.json.

    python docs/figures/dataset_stats.py              # print the tables from the committed JSON
    python docs/figures/dataset_stats.py --collect    # read the local datasets, write the JSON, print

The datasets themselves are not committed: they are built on each machine, deterministically, by
`python -m common.make_dataset --preset pendulum` (and `--preset hopper`), `python -m common.make_maze`
and the subsets of docs/figures/model_based_small_data.py. --collect reads every local suite of
SUITES that is on disk (Minari's root: $MINARI_DATASETS_PATH or ~/.minari/datasets) and keeps, from the
committed JSON, the suites that are not. Returns are undiscounted episode returns; "normalised" is
100 (R - ref_min_score) / (ref_max_score - ref_min_score) with the dataset's own reference scores.
"""

import argparse
import json
import re
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "docs" / "figures" / "data" / "dataset_stats.json"
KINDS = ["random", "medium", "medium-replay", "expert", "medium-expert"]
SUITES = {  # suite -> its dataset names, in the order of the page's tables
    "pendulum": KINDS,
    "hopper": KINDS,
    "pendulum-subsets": ["medium-replay-25pct", "medium-replay-5pct"],
    "pointmaze-stitch": ["umaze", "umaze-whole"],
}
MAX_LISTED = 1000  # a dataset with at most this many episodes keeps every episode's return in the JSON


def stats(dataset_id: str) -> dict:
    """What one dataset holds, read from its episodes and its metadata."""
    import minari

    dataset = minari.load_dataset(dataset_id)
    meta = dataset.storage.metadata
    episodes = [(float(np.sum(e.rewards)), len(e.rewards)) for e in dataset.iterate_episodes()]
    returns, lengths = np.array([r for r, _ in episodes]), np.array([n for _, n in episodes])
    out = {"episodes": int(dataset.total_episodes), "transitions": int(dataset.total_steps),
           "return_mean": float(returns.mean()), "return_std": float(returns.std()),  # ddof 0
           "return_min": float(returns.min()), "return_max": float(returns.max()),
           "length_min": int(lengths.min()), "length_max": int(lengths.max()),
           "size_mb": float(meta["dataset_size"]), "algorithm_name": meta.get("algorithm_name")}
    if "ref_min_score" in meta and "ref_max_score" in meta:
        low, high = float(meta["ref_min_score"]), float(meta["ref_max_score"])
        out.update(ref_min_score=low, ref_max_score=high, ref_episodes=int(meta["num_episodes_average_score"]),
                   score_mean=float(np.mean(100 * (returns - low) / (high - low))),
                   score_max=float(100 * (returns.max() - low) / (high - low)))
    stop = re.search(r"; (stopped there|the cap came first)\)", meta.get("description", ""))
    if stop:  # a preset with a stop return: which rule ended SAC's training
        out["sac_stopped_early"] = stop.group(1) == "stopped there"
    build = re.search(r"^build-result: (\{.*\})$", meta.get("description", ""), re.M)
    if build:
        out["build_result"] = json.loads(build.group(1))
    if len(returns) <= MAX_LISTED:
        out["episode_returns"] = [round(float(r), 3) for r in returns]
    return out


def collect() -> dict:
    import minari

    on_disk = set(minari.list_local_datasets())
    data = json.loads(DATA.read_text()) if DATA.exists() else {"datasets": {}}
    for suite, names in SUITES.items():
        ids = [f"local/{suite}/{name}-v0" for name in names]
        if all(i in on_disk for i in ids):
            for i in ids:
                data["datasets"][i] = stats(i)
                print(f"read {i}")
        elif any(i in on_disk for i in ids):
            print(f"skipped local/{suite}: not all of {names} are on disk")
    data["datasets"] = {i: data["datasets"][i] for i in sorted(data["datasets"])}
    DATA.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {DATA.relative_to(ROOT)}")
    return data


def table(data: dict) -> None:
    """The tables of docs/datasets.md: the default (Pendulum) suite, then the Hopper suite if collected."""
    d = data["datasets"]
    print("\n| dataset | episodes | transitions | mean return (std) | size on disk |")
    print("| --- | --- | --- | --- | --- |")
    for kind in KINDS:
        s = d[f"local/pendulum/{kind}-v0"]
        print(f"| `local/pendulum/{kind}-v0` | {s['episodes']} | {s['transitions']:,} | "
              f"{s['return_mean']:.1f} ({s['return_std']:.1f}) | {s['size_mb']:.1f} MB |")
    if "local/hopper/medium-v0" not in d:
        return
    medium_step = d["local/hopper/medium-v0"]["build_result"]["medium_step"]
    print("\n| dataset | episodes | transitions | mean return |")
    print("| --- | --- | --- | --- |")
    for kind in KINDS:
        s = d[f"local/hopper/{kind}-v0"]
        mean = {"medium-replay": f"(the training episodes up to step {medium_step:,})",
                "medium-expert": "medium then expert"}.get(kind, f"{s['return_mean']:,.1f}")
        print(f"| `local/hopper/{kind}-v0` | {s['episodes']:,} | {s['transitions']:,} | {mean} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collect", action="store_true", help="read the local datasets and write the JSON first")
    args = parser.parse_args()
    table(collect() if args.collect else json.loads(DATA.read_text()))
