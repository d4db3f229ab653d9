#!/usr/bin/env bash
# The Python package `dltlab` (crates/python): build it into a cached virtual environment with
# maturin, check that the wheel installs into a clean virtual environment and imports with
# nothing else, and run its pytest suite. It does not run `cargo test` (the caller does).
#
#   scripts/test.sh [pytest args…]
#
# Environment: DLT_PY_VENV (default ~/.cache/dlt/py-venv), PYTHON (default python3, ≥ 3.9),
# CARGO_TARGET_DIR (shared with cargo, so the workspace's compiled crates are reused).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${DLT_PY_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/dlt/py-venv}
py=${PYTHON:-python3}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import numpy, maturin, pytest" 2>/dev/null; then
  echo "test.sh: creating $venv" >&2
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q numpy maturin pytest
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
# Build a release wheel (maturin turns on the crate feature extension-module) and install it,
# as a user's `pip install` of the wheel would.
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
"$venv/bin/maturin" build --release --quiet -m crates/python/Cargo.toml -i "$venv/bin/python" -o "$wheels"
"$venv/bin/pip" install -q --force-reinstall --no-deps "$wheels"/dltlab-*.whl
# The wheel on its own: a fresh virtual environment (no pip of its own, nothing preinstalled),
# `pip install` of the wheel with its declared dependencies (numpy, from pip's cache or PyPI),
# then an import and one call that returns arrays, run outside the source tree.
clean=$(mktemp -d)
trap 'rm -rf "$wheels" "$clean"' EXIT
"$py" -m venv --without-pip "$clean/venv"
"$venv/bin/pip" --python "$clean/venv/bin/python" install -q --disable-pip-version-check "$wheels"/dltlab-*.whl
(cd "$clean" && "$clean/venv/bin/python" -c 'import dltlab; p = dltlab.theory.profile("relu", 0.0, 2.0, 1.0, 3); assert p["K"].shape == (3,); print("clean venv: import dltlab", dltlab.__version__, "ok")')
"$venv/bin/python" -m pytest -q crates/python/tests "$@"
