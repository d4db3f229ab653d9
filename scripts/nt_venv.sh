#!/usr/bin/env bash
# neural-tangents 0.6.5, the peer of `dlt theory kernels` in `dlt bench`, in a virtual environment
# of its own; prints its python. Idempotent: an environment that already imports these exact
# versions is reused. The pins are the set that installs and runs on CPython 3.11 today: the
# newest jax that neural-tangents 0.6.5 works with (0.4.30; later jax removed APIs it uses),
# numpy < 2 (that jaxlib is built against numpy 1) and tf2jax 0.3.6 (newer ones need a newer jax).
# pip also brings tensorflow (a tf2jax dependency; ≈ 600 MB, a few minutes the first time).
#   export DLT_NT_PYTHON=$(scripts/nt_venv.sh)   # then `dlt bench` runs the neural-tangents rows
set -euo pipefail
venv=${DLT_NT_VENV:-${DLT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dlt}/nt-venv}
py=$venv/bin/python
check='import importlib.metadata as m, sys
want = {"neural-tangents": "0.6.5", "jax": "0.4.30", "jaxlib": "0.4.30", "tf2jax": "0.3.6"}
bad = [k for k, v in want.items() if m.version(k) != v]
bad += [] if m.version("numpy").startswith("1.") else ["numpy"]
import jax, neural_tangents
sys.exit(1 if bad else 0)'
if [ -x "$py" ] && TF_CPP_MIN_LOG_LEVEL=3 "$py" -c "$check" >/dev/null 2>&1; then
  echo "$py"
  exit 0
fi
echo "nt_venv.sh: creating $venv" >&2
rm -rf "$venv"
${PYTHON:-python3} -m venv "$venv" >&2 || {
  echo "cannot create a Python virtual environment at $venv (install python3-venv)" >&2
  exit 1
}
"$py" -m pip install -q --upgrade pip >&2
"$py" -m pip install -q "neural-tangents==0.6.5" "jax==0.4.30" "jaxlib==0.4.30" "numpy<2" \
  "tf2jax==0.3.6" >&2
TF_CPP_MIN_LOG_LEVEL=3 "$py" -c "$check" >&2 || {
  echo "nt_venv.sh: $venv was built but does not import the pinned versions" >&2
  exit 1
}
echo "$py"
