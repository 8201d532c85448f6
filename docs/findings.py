"""Print the README's table of the report's statements against a sweep's measurements.

Usage: python docs/findings.py [results/report]
Every number is read from the sweep's tables; nothing here is typed in by hand.
"""

import sys

import numpy as np

from fastbp import load_results
from fastbp.reference import predict


def main(directory="results/report"):
    res = load_results(directory)
    runs = res.runs[~res.runs["diverged"]]
    at50k = runs[runs["steps"] == 50_000]
    median = at50k.groupby(["lr", "bias"])["final_loss"].median().unstack()

    def m(lr, bias=True):
        return median.loc[lr, bias]

    # Unevenness: does the logged loss ever go up, and how sudden are its drops?
    curves = res.curves.merge(runs[["run_id", "lr"]], on="run_id").sort_values(["run_id", "step"])
    change = curves.groupby("run_id")["loss"].pct_change()
    rises = int((change > 0).sum())
    intervals = int(change.notna().sum())
    late = curves.assign(drop=-change)[curves["step"] > 500]  # past the first fast descent
    sudden = late.groupby(["run_id", "lr"])["drop"].max().groupby("lr").median()

    slow = runs[runs["lr"] == 1e-6]
    start = res.curves[res.curves["step"] == 0].set_index("run_id")["loss"]
    kept = (slow.set_index("run_id")["final_loss"] / start[slow["run_id"]]).median()

    order = median[True].sort_values()
    rank_1e4 = list(order.index).index(1e-4) + 1

    peak = {}
    for bias in (True, False):
        group = at50k[at50k["bias"] == bias]
        peak[bias] = np.median(
            [np.abs(predict(res.run_params(r), np.eye(8), "relu")).max() for r in group["run_id"]]
        )

    b1 = res.params[(res.params["layer"] == 1) & (res.params["kind"] == "b")]
    b1 = b1.merge(runs.loc[runs["bias"], ["run_id", "lr"]], on="run_id")
    negative = (b1["value"] < 0).mean()
    by_lr = b1.groupby("lr")["value"].apply(lambda v: (v < 0).mean())
    big = b1[b1["lr"] >= 1e-4]
    big_neg = (big["value"] < 0).mean()

    rows = [
        (
            "lr 1e-2 trained unevenly: the loss plot was not smooth (Figure 1)",
            ("Partly" if rises == 0 and sudden[1e-2] > 3 * sudden[1e-4] else "See")
            + f": the logged loss went up {rises} times in {intervals:,} intervals of "
            f"100 steps, but at 1e-2 it falls in steps, plateaus and sudden drops: the largest "
            f"drop over 100 steps is a median {sudden[1e-2]:.1%} of the loss at 1e-2 "
            f"({sudden[1e-3]:.1%} at 1e-3) against {sudden[1e-4]:.2%} at 1e-4.",
        ),
        (
            "Going from 1e-3 down to 1e-5 gave comparingly better results after 50,000 steps "
            "(Figure 2)",
            ("Yes" if m(1e-5) < m(1e-3) else "No")
            + f": median final loss {m(1e-3):.3g} at 1e-3 against {m(1e-5):.3g} at 1e-5 "
            f"(with biases; without: {m(1e-3, False):.3g} against {m(1e-5, False):.3g}).",
        ),
        (
            "A very small learning rate is required",
            (
                "No: the larger the learning rate, the lower the loss"
                if m(1e-2) < m(1e-3) < m(1e-4) < m(1e-5)
                else "Mixed: median final loss by learning rate"
            )
            + " after 50,000 steps: "
            + ", ".join(f"{lr:g}: {m(lr):.3g}" for lr in sorted(median.index, reverse=True))
            + ".",
        ),
        (
            "1e-4 was the best learning rate",
            ("Yes" if rank_1e4 == 1 else "Not here")
            + f": 1e-4 ranks {rank_1e4} of {len(order)} (median {m(1e-4):.3g}); "
            f"the best is {order.index[0]:g} (median {order.iloc[0]:.3g}).",
        ),
        (
            "1e-6 is still slow after 300,000 steps (Figure 3)",
            ("Yes" if kept > 0.5 else "No")
            + f": median final loss {slow['final_loss'].median():.3g}, still "
            f"{kept:.0%} of the initial loss.",
        ),
        (
            "Without biases the network gave very high outputs",
            ("Yes" if peak[False] > 2 * peak[True] else "No")
            + f": the largest output magnitude over the 8 inputs is {peak[False]:.2f} without "
            f"biases and {peak[True]:.2f} with them (medians over runs at 50,000 steps).",
        ),
        (
            "The first layer's biases were nearly always negative",
            ("Yes" if negative > 0.9 else "Mostly" if negative > 0.6 else "No")
            + f": {negative:.0%} of the trained first-layer biases are negative "
            f"({big_neg:.0%} for lr >= 1e-4; by lr: "
            + ", ".join(f"{lr:g}: {v:.0%}" for lr, v in by_lr.sort_index(ascending=False).items())
            + "). At 1e-5 and 1e-6 they have barely moved from their starting value, 0.",
        ),
    ]
    print("| the report said | the sweep measured |")
    print("|---|---|")
    for said, measured in rows:
        print(f"| {said} | {measured} |")

    # The floors: 4/64 with biases (affine in a 3-number code), 5/64 without (linear).
    stalled = runs[runs["bias"] & ((runs["final_loss"] - 5 / 64).abs() < 2e-3)]
    dead = sum(
        bool((np.maximum(res.run_params(r)[0][1] + res.run_params(r)[0][0], 0).max(0) <= 0).any())
        for r in stalled["run_id"]
    )
    print()
    print(
        f"Lowest final loss with biases: {runs.loc[runs['bias'], 'final_loss'].min():.5f} "
        f"(floor 4/64 = {4 / 64:.5f}); without: "
        f"{runs.loc[~runs['bias'], 'final_loss'].min():.5f} (floor 5/64 = {5 / 64:.5f})."
    )
    print(
        f"Runs with biases that stalled at 5/64: {len(stalled)}, of which {dead} have a "
        "hidden unit that fires for no input."
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
