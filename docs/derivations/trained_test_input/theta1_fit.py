"""Fit a + b/n to theta1_mc.py output (theta1.log) and compare with theory.output_L3."""
import re, numpy as np, theory
rows = {}
for line in open('theta1.log'):
    m = re.match(r'(\w+) L=3 n=(\d+) S=\d+ \(\d+s\): Th1_AA (\S+) \+- (\S+)\s+Th1_bA (\S+) \+- (\S+)', line)
    if m:
        a, n = m.group(1), int(m.group(2)); rows.setdefault(a, []).append((n,) + tuple(float(m.group(i)) for i in range(3, 7)))
def fit(ns, v, s):
    ns = np.array(ns, float); X = np.stack([np.ones_like(ns), 1/ns], 1); w = 1/np.array(s)**2
    cov = np.linalg.inv(X.T @ (w[:, None]*X)); p = cov @ (X.T @ (w*np.array(v))); return p[0], np.sqrt(cov[0, 0])
for a, r in rows.items():
    th = theory.output_L3(a, 0.5)
    ns = [x[0] for x in r]
    for j, k in ((1, 'Th1'), (3, 'Th1b')):
        f, se = fit(ns, [x[j] for x in r], [x[j+1] for x in r])
        print(f"{a} {k}: fit a+b/n over n={ns}: {f:.4f} +- {se:.4f}  theory {th[k]:.4f}  dev {(f-th[k])/se:.2f} SE")
