"""Draw PDLT's depth profiles from dltlab.theory.profile.

The normalised four-point vertex V/K² and NTK fluctuation A/Θ² of critical MLPs grow linearly
with depth (PDLT arXiv 2106.10165 §5.4 and §8.3; docs/derivations/theory.md#four-point-vertex):
at width n the finite-width corrections are controlled by the aspect ratio L/n. This script draws
both for ReLU (scale-invariant class) and tanh (K* = 0 class) at criticality.

    python crates/python/examples/pdlt_profile.py [out.png]

With matplotlib it writes a PNG (default pdlt_profile.png); without it, a CSV (pdlt_profile.csv).
"""

import sys

import numpy as np

from dltlab import theory

DEPTH = 50
runs = {}
for act in ["relu", "tanh"]:
    c = theory.criticality(act)
    p = theory.profile(act, c["cb"], c["cw"], 1.0, DEPTH)
    runs[act] = p
    print(f"{act:5s} C_b={c['cb']:.3g} C_W={c['cw']:.6g}  V/K² at L={DEPTH}: {p['V_over_K2'][-1]:.4f}"
          f"  A/Θ² at L={DEPTH}: {p['A_over_theta2'][-1]:.4f}")

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    out = sys.argv[1] if len(sys.argv) > 1 else "pdlt_profile.csv"
    cols = ["l"] + [f"{a}_{k}" for a in runs for k in ("K", "V_over_K2", "A_over_theta2")]
    table = np.column_stack([runs["relu"]["l"]] + [runs[a][k] for a in runs
                                                   for k in ("K", "V_over_K2", "A_over_theta2")])
    np.savetxt(out, table, delimiter=",", header=",".join(cols), comments="")
    print(f"matplotlib not installed: wrote {out}")
    sys.exit(0)

out = sys.argv[1] if len(sys.argv) > 1 else "pdlt_profile.png"
fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
for act, p in runs.items():
    axes[0].plot(p["l"], p["V_over_K2"], label=act)
    axes[1].plot(p["l"], p["A_over_theta2"], label=act)
axes[0].set(xlabel="layer ℓ", ylabel="V/K²", title="four-point vertex (× 1/n)")
axes[1].set(xlabel="layer ℓ", ylabel="A/Θ²", title="NTK fluctuation (× 1/n)")
for ax in axes:
    ax.legend()
fig.tight_layout()
fig.savefig(out, dpi=120)
print(f"wrote {out}")
