#!/usr/bin/env bash
# Build llama.cpp (the peer of `dlt prune`: perplexity, prefill speed, loading our exported GGUF)
# from the PyPI sdist of llama-cpp-python, which vendors it, and print its bin folder.
# Cached in ${DLT_CACHE:-$XDG_CACHE_HOME/dlt}/llama.cpp-VERSION (build tools in a virtual
# environment beside it); ≈ 5 min on 2 cores the first time.
#   export DLT_LLAMA_CPP=$(scripts/llama_cpp.sh)   # then the tests and `dlt bench` use it
set -euo pipefail
version=0.3.36
cache=${DLT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dlt}/llama.cpp-$version
bin=$cache/build/bin
if [ -x "$bin/llama-perplexity" ] && [ -x "$bin/llama-bench" ] && [ -x "$bin/llama-tokenize" ]; then
  echo "$bin"
  exit 0
fi
# The build tools go into a virtual environment of our own: a stock Debian/Ubuntu Python refuses
# `pip install` into the system (PEP 668), and we do not want to touch it anyway.
venv=$cache-venv
if [ ! -x "$venv/bin/python" ]; then
  ${PYTHON:-python3} -m venv "$venv" >&2 || {
    echo "cannot create a Python virtual environment at $venv (install python3-venv)" >&2
    exit 1
  }
fi
py=$venv/bin/python
export PATH=$venv/bin:$PATH
if ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
  "$py" -m pip install -q cmake ninja >&2
fi
"$py" -m pip install -q scikit-build-core >&2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$py" -m pip download -q --no-deps --no-binary llama-cpp-python --no-build-isolation \
  "llama-cpp-python==$version" -d "$tmp" >&2
tar xzf "$tmp"/llama_cpp_python-$version.tar.gz -C "$tmp"
rm -rf "$cache"
mkdir -p "$(dirname "$cache")"
mv "$tmp/llama_cpp_python-$version/vendor/llama.cpp" "$cache"
cmake -S "$cache" -B "$cache/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TESTS=OFF >&2
cmake --build "$cache/build" -j2 --target llama-perplexity llama-bench llama-tokenize >&2
echo "$bin"
