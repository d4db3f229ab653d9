"""Fit a + b/n to the two-input MC output statistics of mc_out.py at any depth L and print the
fitted a +- SE per statistic (the theory is compared in the Rust test that holds these values as
reference data: crates/theory/src/trajectory/test_input/tests.rs, depth four).
Usage: python fit_deep.py ACT L n1:seed1 n2:seed2 ..."""
import numpy as np, sys
name, L = sys.argv[1], int(sys.argv[2])
runs = [(int(a.split(':')[0]), int(a.split(':')[1])) for a in sys.argv[3:]]
data = {n: dict(np.load(f'mc_{name}_L{L}_n{n}_s{sd}.npz')) for n, sd in runs}
ns = np.array([n for n, _ in runs], float)


def fit(vals, ses):
    X = np.stack([np.ones_like(ns), 1/ns], 1); w = 1/np.asarray(ses)**2
    A = X.T @ (w[:, None]*X); cov = np.linalg.inv(A); p = cov @ (X.T @ (w*np.asarray(vals)))
    chi2 = float(np.sum(w*(X @ p - vals)**2))
    return p[0], np.sqrt(cov[0, 0]), chi2, p[1], np.sqrt(cov[1, 1])


keys = ['Th', 'Thb', 'VarA', 'Covb', 'dA', 'db1', 'db2', 'IA', 'Ib1', 'Ib2', 'IIA', 'IIb1', 'IIb3']
print(f"# {name} L={L}, widths {list(ns.astype(int))}; fit a + b/n (weighted)")
print("stat | " + " | ".join(f"n={int(n)}" for n in ns) + " | fit a")
for k in keys:
    vals = [data[n][k][0] for n in ns.astype(int)]; ses = [data[n][k][1] for n in ns.astype(int)]
    a, sa, chi2, b, sb = fit(vals, ses)
    slope = f"  slope b = {b: .4f} +- {sb:.4f} (= Θ¹)" if k in ('Th', 'Thb') else ""
    print(f"{k:5s} | " + " | ".join(f"{v: .5f}({s:.5f})" for v, s in zip(vals, ses))
          + f" | {a: .5f} +- {sa:.5f}  chi2={chi2:.1f}{slope}")
