#!/usr/bin/env bash
# Regenerate the README figures (docs/figures/) from a quick run of each study.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
cargo run --release -p dlt -- reproduce --quick --out "$tmp"
for f in vertex_mc ntk_mc orthogonal relu_exact kernel; do
  cp "$tmp/theory/$f.svg" docs/figures/
done
rm -rf "$tmp"
