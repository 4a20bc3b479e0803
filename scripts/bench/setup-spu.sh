#!/usr/bin/env bash
# Create a Python virtual environment with SecretFlow SPU for the PSI baseline
# benchmark, scripts/bench/spu_psi.py.
#
# spu 0.9.5 requires numpy<2 and jax<=0.4.34, so it gets a venv of its own. Running
# the script again does nothing once the requested version imports.
#
# Environment:
#   SPU_VENV     venv folder (default: target/bench/spu-venv under the repository root)
#   SPU_VERSION  spu version to install from PyPI (default: 0.9.5)
#   PYTHON       interpreter that creates the venv (default: python3.11, else python3)
#
# PyPI has spu 0.9.5 wheels for CPython 3.10 and 3.11 but none for 3.12 or 3.13
# (checked with `pip index versions`), so the interpreter must be 3.10 or 3.11.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${SPU_VENV:-$repo_root/target/bench/spu-venv}"
version="${SPU_VERSION:-0.9.5}"

if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then
        PYTHON=python3.11
    else
        PYTHON=python3
    fi
fi

installed_version() {
    "$venv/bin/python" - <<'EOF' 2>/dev/null
import importlib.metadata

import spu.psi  # noqa: F401  (fails when the native library does not load)

print(importlib.metadata.version("spu"))
EOF
}

if [[ -x "$venv/bin/python" ]] && [[ "$(installed_version || true)" == "$version" ]]; then
    echo "spu $version is already installed in $venv"
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]]; then
    python_version="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    if [[ "$python_version" != "3.10" && "$python_version" != "3.11" ]]; then
        echo "error: $PYTHON is Python $python_version, but spu wheels need 3.10 or 3.11; set PYTHON" >&2
        exit 1
    fi
    echo "creating venv $venv with $("$PYTHON" --version 2>&1)"
    mkdir -p "$(dirname "$venv")"
    "$PYTHON" -m venv "$venv"
fi

"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install "spu==$version"

actual="$(installed_version || true)"
if [[ "$actual" != "$version" ]]; then
    echo "error: spu $version did not import from $venv (found: '${actual:-none}')" >&2
    exit 1
fi
echo "spu $version installed in $venv"
