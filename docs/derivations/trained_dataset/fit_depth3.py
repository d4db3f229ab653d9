"""Fit a + b/n (weighted least squares) to the mc_depth3.py output for n = 32, 64, 128 and
compare the intercept with the theory's values (three_layer_four_input_values).
Usage: python fit_depth3.py MC_LOG THEORY_LOG"""
import sys
import numpy as np

mc, ns = {}, []
for line in open(sys.argv[1]):
    if line.startswith('#'):
        ns.append(int(line.split('n=')[1].split()[0]))
        continue
    k, m, s = line.split()
    mc.setdefault(k, []).append((float(m), float(s)))
theory = {}
for line in open(sys.argv[2]):
    p = line.split()
    if len(p) == 2 and p[0] in mc:
        theory[p[0]] = float(p[1])
x = 1.0 / np.array(ns, float)
print(f"stat  | " + " | ".join(f"n={n}" for n in ns) + " | fit a ± SE | theory | dev/SE")
for k, v in mc.items():
    m, s = np.array(v).T
    A = np.stack([np.ones_like(x), x], 1) / s[:, None]
    cov = np.linalg.inv(A.T @ A)
    a = cov @ A.T @ (m / s)
    se = np.sqrt(cov[0, 0])
    cells = " | ".join(f"{mi:.5f}({si:.5f})" for mi, si in zip(m, s))
    print(f"{k} | {cells} | {a[0]:.5f} ± {se:.5f} | {theory[k]:.5f} | {(a[0] - theory[k]) / se:+.2f}")
