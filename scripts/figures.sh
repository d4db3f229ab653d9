#!/usr/bin/env bash
# Regenerate the README figures (docs/figures/) from a quick run of each study.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
cargo run --release -p dlt -- reproduce --quick --out "$tmp"
for f in vertex_mc ntk_mc orthogonal relu_exact kernel dntk; do
  cp "$tmp/theory/$f.svg" docs/figures/
done
for f in accuracy_vs_depth ensemble_deviation; do
  cp "$tmp/trained/$f.svg" "docs/figures/trained_$f.svg"
done
# docs/figures/trained_trajectory.svg shows the full-scale setting (three widths), drawn by the
# command the README gives for it: `dlt trained --trajectory-widths 32,64,128 --trajectory-pairs 40000`.
for f in fig3_b_over_theta2 fig3_a_over_theta2 fig3_dntk fig3_ddntk vertex_wide ntk_candle ntk_spread training_loss accuracy_vs_depth; do
  cp "$tmp/orthogonal/$f.svg" "docs/figures/orthogonal_$f.svg"
done
for f in loss_vs_n_alpha1 exponents heatmap_alpha1; do
  cp "$tmp/scaling/$f.svg" "docs/figures/scaling_$f.svg"
done
for f in linear gaussian lm vae diffusion; do
  cp "$tmp/collapse/$f.svg" "docs/figures/collapse_$f.svg"
done
for p in replace accumulate; do
  cp "$tmp/collapse/vae_samples_$p.png" "docs/figures/collapse_vae_samples_$p.png"
done
for f in distances perplexity distance_n1 healing; do
  cp "$tmp/prune/$f.svg" "docs/figures/prune_$f.svg"
done
for f in ftop ftop_optimisers eigenvalues overlap dom_bulk; do
  cp "$tmp/hessian/$f.svg" "docs/figures/hessian_$f.svg"
done
for f in one_step sgd_vs_gd; do
  cp "$tmp/sgd-gap/$f.svg" "docs/figures/sgd_gap_$f.svg"
done
for f in noise pgd; do
  cp "$tmp/jacobian/$f.svg" "docs/figures/jacobian_$f.svg"
done
for f in circle_error circle_code rare_arc bump_roc bump_m12 bump_parity; do
  cp "$tmp/autoencode/$f.svg" "docs/figures/autoencode_$f.svg"
done
rm -rf "$tmp"
