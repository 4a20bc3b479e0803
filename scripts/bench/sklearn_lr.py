"""Pooled scikit-learn logistic regression on the shipped FATE data, the reference of
`carrel bench learn`.

For each vertical data set and each of the ten splits in data/fate/splits/, fits
LogisticRegression(C=1.0, max_iter=5000) on the training rows with every feature (guest
and host joined on id) and with the guest's features only; then fits the same model on the
three horizontal credit files and scores the held-out file. Prints one JSON line per fit
with the test AUC and the fit time in seconds (the best of --repeats fits, so that a
noisy neighbour on a shared machine inflates it less).
"""

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score


def read(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def table(path, label):
    header, rows = read(path)
    ids = [r[0] for r in rows]
    cols = [i for i, h in enumerate(header) if h not in ("id", "y")]
    x = np.array([[float(r[i]) for i in cols] for r in rows])
    y = np.array([float(r[header.index("y")]) for r in rows]) if label else None
    return ids, x, y


def fit(x, y, repeats):
    best, model = None, None
    for _ in range(repeats):
        start = time.perf_counter()
        model = LogisticRegression(C=1.0, max_iter=5000).fit(x, y)
        elapsed = time.perf_counter() - start
        best = elapsed if best is None else min(best, elapsed)
    return model, best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="data/fate")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = Path(args.data)
    for name in ("breast", "default_credit"):
        gids, gx, y = table(root / f"{name}_hetero_guest.csv", True)
        hids, hx, _ = table(root / f"{name}_hetero_host.csv", False)
        hrow = {i: k for k, i in enumerate(hids)}
        hx = hx[[hrow[i] for i in gids]]
        header, split_rows = read(root / "splits" / f"{name}_hetero_splits.csv")
        split = {r[0]: r[1:] for r in split_rows}
        for seed in range(10):
            test = np.array([split[i][seed] == "test" for i in gids])
            for features, x in (("pooled", np.hstack([gx, hx])), ("guest", gx)):
                model, seconds = fit(x[~test], y[~test], args.repeats)
                auc = roc_auc_score(y[test], model.decision_function(x[test]))
                print(json.dumps({"data": name, "seed": seed, "features": features,
                                  "auc": round(auc, 6), "seconds": seconds}), flush=True)
    parts = [table(root / f"default_credit_homo_{p}.csv", True)
             for p in ("guest", "host_1", "host_2")]
    x = np.vstack([p[1] for p in parts])
    y = np.concatenate([p[2] for p in parts])
    _, tx, ty = table(root / "default_credit_homo_test.csv", True)
    model, seconds = fit(x, y, args.repeats)
    auc = roc_auc_score(ty, model.decision_function(tx))
    print(json.dumps({"data": "default_credit_homo", "seed": None, "features": "pooled",
                      "auc": round(auc, 6), "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
