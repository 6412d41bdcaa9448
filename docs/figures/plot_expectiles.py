"""Draws docs/img/iql_expectiles.png: what an expectile is (docs/iql.md).

    python docs/figures/plot_expectiles.py [--out docs/img/iql_expectiles.png]

Left: the asymmetric squared loss L2^tau(u) = |tau - 1(u < 0)| u^2 for several tau.
Right: a sample of Q(s, a) over the actions a data set holds in one state, and its tau-expectiles:
the value V that minimises E[L2^tau(Q - V)]. tau = 0.5 is the mean; as tau -> 1 the expectile climbs
towards the largest value in the sample, which is how IQL's V approximates max_a Q(s, a) in-data.
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

TAUS = (0.1, 0.5, 0.7, 0.9, 0.99)


def expectile(x: np.ndarray, tau: float, iters: int = 100) -> float:
    """Bisection on the first-order condition tau E[(x - m)_+] = (1 - tau) E[(m - x)_+]."""
    lo, hi = float(x.min()), float(x.max())
    for _ in range(iters):
        m = (lo + hi) / 2
        if tau * np.maximum(x - m, 0).mean() > (1 - tau) * np.maximum(m - x, 0).mean():
            lo = m
        else:
            hi = m
    return (lo + hi) / 2


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/img/iql_expectiles.png")
    out = p.parse_args().out

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(TAUS)))
    u = np.linspace(-2, 2, 401)
    for tau, c in zip(TAUS, colors):
        ax1.plot(u, np.abs(tau - (u < 0)) * u**2, color=c, label=f"tau = {tau}")
    ax1.set(xlabel="u = Q(s,a) - V(s)", ylabel="L2^tau(u)", title="Asymmetric squared loss", ylim=(0, 4))
    ax1.legend()

    # A skewed, two-humped sample: most data actions are mediocre, a few are good.
    rng = np.random.default_rng(0)
    q = np.concatenate([rng.normal(0.0, 1.0, 8000), rng.normal(4.0, 0.5, 2000)])
    ax2.hist(q, bins=80, color="0.8", density=True)
    for tau, c in zip(TAUS, colors):
        m = expectile(q, tau)
        ax2.axvline(m, color=c, lw=2, label=f"{tau}-expectile = {m:.2f}" + (" (mean)" if tau == 0.5 else ""))
    ax2.axvline(q.max(), color="k", ls="--", label=f"max = {q.max():.2f}")
    ax2.set(xlabel="Q(s, a) over the data set's actions in one state", ylabel="density",
            title="Expectiles of a sample")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
