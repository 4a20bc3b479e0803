#!/usr/bin/env bash
# Run Carrel's PSI benchmark and SecretFlow SPU's PSI side by side, in one script, on
# this machine: same cores, two processes per run on 127.0.0.1, N ids per side with
# half of them shared. Prints one JSON line per run and writes them to
# target/bench/psi-compare-<UTC time>.jsonl.
#
# Usage: scripts/bench/psi-compare.sh [N ...]      (default: 1000000)
#
# Environment:
#   CARREL   the carrel binary (default: target/release/carrel; build it with
#            `cargo build --release -p carrel` first)
#   SPU_RUNS protocols of spu to run (default: "ecdh rr22")
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
carrel="${CARREL:-$repo_root/target/release/carrel}"
protocols="${SPU_RUNS:-ecdh rr22}"
sizes=("$@")
if [[ ${#sizes[@]} -eq 0 ]]; then
    sizes=(1000000)
fi
if [[ ! -x "$carrel" ]]; then
    echo "error: $carrel is missing; run cargo build --release -p carrel first" >&2
    exit 1
fi

"$repo_root/scripts/bench/setup-spu.sh" >&2
python="${SPU_VENV:-$repo_root/target/bench/spu-venv}/bin/python"
out_dir="$repo_root/target/bench"
mkdir -p "$out_dir"
out="$out_dir/psi-compare-$(date -u +%Y%m%dT%H%M%S).jsonl"

for n in "${sizes[@]}"; do
    echo "carrel psi, $n ids per side (load $(cut -d' ' -f1 /proc/loadavg))" >&2
    "$carrel" --json bench psi --ids "$n" 2>/dev/null | python3 -c \
        'import json, sys; print(json.dumps(json.load(sys.stdin)))' | tee -a "$out"
    for protocol in $protocols; do
        echo "spu $protocol, $n ids per side (load $(cut -d' ' -f1 /proc/loadavg))" >&2
        # shellcheck disable=SC2086
        "$python" "$repo_root/scripts/bench/spu_psi.py" --n "$n" --protocols "$protocol" \
            2>/dev/null | tee -a "$out"
    done
done
echo "results in $out" >&2
