"""Prune SmolLM2-135M-Instruct by angular distance and print the perplexity table.

The angular distance between the residual stream before block l and before block l + n,
d = arccos(cos∠(x^(l), x^(l+n)))/π at the last token, picks the n consecutive blocks whose
removal changes the representation least (Gromov et al., arXiv 2403.17887 §3.2;
docs/derivations/prune.md). This script probes the held-out 10 % of a text, drops the best block
of n = 2, 4, 6, 8 and, as the paper's simple baseline, the last n blocks before the final one,
and prints the perplexity of each pruned model on the same held-out tokens.

    python crates/python/examples/prune_smollm2.py [MODEL.gguf|HF_DIR] [TEXT.txt]

Without arguments: SmolLM2-135M-Instruct (Q4_1 GGUF) and Shakespeare's plays, fetched into the
cache if missing (dltlab.data.fetch). About a minute on 2 cores.
"""

import sys

from dltlab import prune

model = prune.load(sys.argv[1] if len(sys.argv) > 1 else None)
_, held = prune.split_text(sys.argv[2] if len(sys.argv) > 2 else None)
ids = model.tokenize(held)
EVAL, CTX = 512, 256
evaluate, probe = ids[:EVAL], ids[EVAL:]
print(f"{model!r}: {len(ids)} held-out tokens; perplexity on the first {EVAL} (windows of {CTX})")

d = model.distances(probe, samples=8, len=128)
base = model.perplexity(evaluate, ctx=CTX)
L = model.n_layers
print(f"\n{'n':>3} {'rule':>8} {'blocks':>9} {'distance':>9} {'perplexity':>11} {'nll ± se (nats)':>16}")


def row(n, rule, blocks, dist, r):
    print(f"{n:>3} {rule:>8} {blocks:>9} {dist:>9} {r['perplexity']:>11.2f}"
          f" {r['nll']:>9.3f} ± {r['nll_se']:.3f}")


row(0, "-", "-", "-", base)
for n in (2, 4, 6, 8):
    best = d["best"][n - 1]
    for rule, start in (("angular", best["start"]), ("last", L - 1 - n)):
        r = model.drop(start, start + n).perplexity(evaluate, ctx=CTX)
        row(n, rule, f"{start}..{start + n}", f"{d['table'][n - 1][start]:.4f}", r)
