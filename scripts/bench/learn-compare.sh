#!/usr/bin/env bash
# Run Carrel's federated training and scikit-learn's pooled logistic regression side by
# side, in one script, on this machine: the ten splits of the breast and credit data and
# the three horizontal credit files. Prints a summary per data set and writes every JSON
# line to target/bench/learn-compare-<UTC time>.jsonl.
#
# Usage: scripts/bench/learn-compare.sh
#
# Environment:
#   CARREL   the carrel binary (default: target/release/carrel; build it with
#            `cargo build --release -p carrel` first)
#   SKLEARN_VENV  venv folder with scikit-learn (default: target/bench/sklearn-venv;
#                 created with pip when missing)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
carrel="${CARREL:-$repo_root/target/release/carrel}"
venv="${SKLEARN_VENV:-$repo_root/target/bench/sklearn-venv}"
if [[ ! -x "$carrel" ]]; then
    echo "error: $carrel is missing; run cargo build --release -p carrel first" >&2
    exit 1
fi
if ! "$venv/bin/python" -c 'import sklearn' >/dev/null 2>&1; then
    echo "creating $venv with scikit-learn" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet scikit-learn numpy
fi
out_dir="$repo_root/target/bench"
mkdir -p "$out_dir"
out="$out_dir/learn-compare-$(date -u +%Y%m%dT%H%M%S).jsonl"
cd "$repo_root"

echo "scikit-learn $("$venv/bin/python" -c 'import sklearn; print(sklearn.__version__)') (load $(cut -d' ' -f1 /proc/loadavg))" >&2
"$venv/bin/python" scripts/bench/sklearn_lr.py --data data/fate \
    | sed 's/^/{"tool": "sklearn", "row": /; s/$/}/' >>"$out"
echo "carrel bench learn (load $(cut -d' ' -f1 /proc/loadavg))" >&2
"$carrel" --json bench learn --data data/fate 2>/dev/null \
    | python3 -c 'import json, sys; print(json.dumps({"tool": "carrel", "row": json.load(sys.stdin)}))' \
    >>"$out"

python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
sk = [r["row"] for r in rows if r["tool"] == "sklearn"]
carrel = next(r["row"] for r in rows if r["tool"] == "carrel")
def mean(xs):
    return sum(xs) / len(xs)
summary = []
for name in ("breast", "default_credit"):
    ours = [r for r in carrel["vertical"] if r["data"] == name]
    pooled = {r["seed"]: r for r in sk if r["data"] == name and r["features"] == "pooled"}
    guest = {r["seed"]: r for r in sk if r["data"] == name and r["features"] == "guest"}
    seeds = [r["seed"] for r in ours]
    beats = sum(r["vertical"]["auc"] > guest[r["seed"]]["auc"] for r in ours)
    sk_time = sum(pooled[s]["seconds"] for s in seeds)
    our_time = sum(r["vertical"]["seconds"] for r in ours)
    summary.append({
        "data": name, "splits": len(seeds),
        "vertical_auc": round(mean([r["vertical"]["auc"] for r in ours]), 4),
        "sklearn_pooled_auc": round(mean([pooled[s]["auc"] for s in seeds]), 4),
        "sklearn_guest_only_auc": round(mean([guest[s]["auc"] for s in seeds]), 4),
        "newton_pooled_auc": round(mean([r["pooled"]["auc"] for r in ours]), 4),
        "splits_beating_guest_only": beats,
        "vertical_seconds_per_training": round(our_time / len(seeds), 4),
        "sklearn_seconds_per_fit": round(sk_time / len(seeds), 4),
        "overhead": round(our_time / sk_time, 2),
    })
h = carrel["horizontal"]
sk_h = next(r for r in sk if r["data"] == "default_credit_homo")
summary.append({
    "data": "default_credit_homo", "horizontal_auc": round(h["horizontal"]["auc"], 4),
    "sklearn_pooled_auc": round(sk_h["auc"], 4), "newton_pooled_auc": round(h["pooled"]["auc"], 4),
    "rounds": h["horizontal"]["rounds"],
    "horizontal_seconds": round(h["horizontal"]["seconds"], 4),
    "sklearn_seconds": round(sk_h["seconds"], 4),
    "overhead": round(h["horizontal"]["seconds"] / sk_h["seconds"], 2),
})
for line in summary:
    print(json.dumps(line))
PY
echo "results in $out" >&2
