"""Draw PDLT's depth profiles from dltlab.theory.profile.

The normalised four-point vertex V/K² and NTK fluctuation A/Θ² of critical MLPs grow linearly
with depth (PDLT arXiv 2106.10165 §5.4 and §8.3; docs/derivations/theory.md#four-point-vertex):
at width n the finite-width corrections are controlled by the aspect ratio L/n. This script draws
both for ReLU (scale-invariant class) and tanh (K* = 0 class) at criticality.

    python crates/python/examples/pdlt_profile.py [out.png]

With matplotlib it writes the figure (PNG, or SVG for a .svg name; default pdlt_profile.png);
without it, a CSV (pdlt_profile.csv).
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
    from matplotlib.ticker import NullFormatter
except ImportError:
    out = sys.argv[1] if len(sys.argv) > 1 else "pdlt_profile.csv"
    cols = ["l"] + [f"{a}_{k}" for a in runs for k in ("K", "V_over_K2", "A_over_theta2")]
    table = np.column_stack([runs["relu"]["l"]] + [runs[a][k] for a in runs
                                                   for k in ("K", "V_over_K2", "A_over_theta2")])
    np.savetxt(out, table, delimiter=",", header=",".join(cols), comments="")
    print(f"matplotlib not installed: wrote {out}")
    sys.exit(0)

out = sys.argv[1] if len(sys.argv) > 1 else "pdlt_profile.png"
# Okabe–Ito colours (colour-blind safe), light grids, legends off the curves; log–log axes
# (labelled 10^k), on which linear growth in ℓ is a line of slope 1. The recursions are
# theory, not measurements: lines without markers. V^(1) = 0, so ℓ starts at 2.
colours = {"relu": "#0072B2", "tanh": "#D55E00"}
styles = {"relu": "-", "tanh": "--"}
plt.rcParams.update({"svg.fonttype": "none", "font.size": 10})
fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
for act, p in runs.items():
    l = p["l"][1:]
    kw = dict(color=colours[act], linestyle=styles[act], label=act)
    axes[0].plot(l, p["V_over_K2"][1:], **kw)
    axes[1].plot(l, p["A_over_theta2"][1:], **kw)
axes[0].set(xlabel="layer ℓ", ylabel="V/K²  (× 1/n)", title="four-point vertex at criticality")
axes[1].set(xlabel="layer ℓ", ylabel="A/Θ²  (× 1/n)", title="NTK fluctuation at criticality")
for ax in axes:
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # only the 10^k labels
    ax.grid(True, which="major", color="0.88")
    ax.legend(loc="upper left", frameon=False)
fig.suptitle("dltlab.theory.profile: finite-width corrections grow linearly in depth (L/n)", fontsize=10)
fig.tight_layout()
fig.savefig(out, dpi=110)
print(f"wrote {out}")
