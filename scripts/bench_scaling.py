#!/usr/bin/env python3
"""numpy baseline for `dlt bench`: one seed of the scaling-law simulation at N = P (linear
features, ridge γ, M latent modes): draw w, U, X; Φ = XUᵀ; θ = (ΦᵀΦ + γI)⁻¹Φᵀy by Cholesky;
the exact population loss. Prints one JSON line with the seconds and the loss."""
import json, sys, time
import numpy as np

n = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
m = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
ridge = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-3
alpha = 1.0
t = time.perf_counter()
rng = np.random.default_rng(0)
lam = np.arange(1, m + 1, dtype=np.float64) ** -(1 + alpha)
w = rng.standard_normal(m) / np.sqrt(m)
U = rng.standard_normal((n, m)) / np.sqrt(m)
X = rng.standard_normal((n, m)) * np.sqrt(lam)
phi = X @ U.T
y = X @ w
G = phi.T @ phi + ridge * np.eye(n)
L = np.linalg.cholesky(G)
theta = np.linalg.solve(L.T, np.linalg.solve(L, phi.T @ y))
d = U.T @ theta - w
loss = float(d @ (lam * d))
print(json.dumps({"framework": "numpy " + np.__version__, "seconds": time.perf_counter() - t, "loss": loss}))
