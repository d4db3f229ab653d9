"""Fit a + b/n to the depth-3 MC output statistics and compare a with the theory (output_L3).
Usage: python fit_L3.py ACT n1:seed1 n2:seed2 ..."""
import numpy as np, sys, json, theory
name = sys.argv[1]
runs = [(int(a.split(':')[0]), int(a.split(':')[1])) for a in sys.argv[2:]]
th = theory.output_L3(name, 0.5)
data = {n: dict(np.load(f'mc_{name}_L3_n{n}_s{sd}.npz')) for n, sd in runs}
ns = np.array([n for n, _ in runs], float)
def fit(vals, ses):
    X = np.stack([np.ones_like(ns), 1/ns], 1); w = 1/np.asarray(ses)**2
    A = X.T @ (w[:, None]*X); cov = np.linalg.inv(A); p = cov @ (X.T @ (w*np.asarray(vals)))
    chi2 = float(np.sum(w*(X @ p - vals)**2))
    return p[0], np.sqrt(cov[0, 0]), chi2
rows = []; out = {}
keys = [('Th1', 'Th'), ('Th1b', 'Thb'), 'VarA', 'Covb', 'dA', 'db1', 'db2', 'IA', 'Ib1', 'Ib2', 'IIA', 'IIb1', 'IIb3']
print(f"# {name} L=3, widths {list(ns.astype(int))}; fit a + b/n (weighted); theory = output_L3")
print("stat | " + " | ".join(f"n={int(n)}" for n in ns) + " | fit a | theory | dev/SE | dev %")
for k in keys:
    if isinstance(k, tuple):
        k1, k0 = k
        vals = [n*(data[n][k0][0] - th[k0]) for n in ns.astype(int)]
        ses = [n*data[n][k0][1] for n in ns.astype(int)]
        k = k1
    else:
        vals = [data[n][k][0] for n in ns.astype(int)]; ses = [data[n][k][1] for n in ns.astype(int)]
    a, sa, chi2 = fit(vals, ses)
    out[k] = a
    dev = (a - th[k])/sa
    print(f"{k:5s} | " + " | ".join(f"{v: .4f}({s:.4f})" for v, s in zip(vals, ses))
          + f" | {a: .4f} +- {sa:.4f} | {th[k]: .4f} | {dev: .2f} | {100*(a/th[k]-1): .1f}%  chi2={chi2:.1f}")
for k in ('Th', 'Thb', 'K'):
    out[k] = th[k]
json.dump(out, open(f'mcfit_{name}_L3.json', 'w'))
