"""Theta^1 by Monte Carlo: n (E[H] - Theta) for H_AA and H_bA at the output, only gradients needed.
Usage: python theta1_mc.py ACT L n S seed  -> prints n(mean H - Theta) +- SE (10 batch means)."""
import numpy as np, sys, time, netlib as nl, theory, mc_out
name, L, n, S, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
f = nl.act(name); xA, xb = mc_out.inputs(0.5)
Th = theory.theta_inf(name, 0.5, L)
rng = np.random.default_rng(seed); t0 = time.time()
nb = 10; per = S//nb; chunk = 20000
bm = []
for ib in range(nb):
    sA = sb = 0.0; done = 0
    while done < per:
        m = min(chunk, per - done)
        Ws = nl.init(rng, m, 2, n, L); lams = nl.lam(Ws)
        zA = nl.forward(Ws, xA, f); zb = nl.forward(Ws, xb, f)
        gA = nl.grad(Ws, zA, xA, f); gb = nl.grad(Ws, zb, xb, f)
        sA += nl.dot(gA, gA, lams).sum(); sb += nl.dot(gb, gA, lams).sum(); done += m
    bm.append((n*(sA/per - Th['AA']), n*(sb/per - Th['bA'])))
bm = np.array(bm); m = bm.mean(0); se = bm.std(0, ddof=1)/np.sqrt(nb)
print(f"{name} L={L} n={n} S={S} ({time.time()-t0:.0f}s): Th1_AA {m[0]:.4f} +- {se[0]:.4f}   Th1_bA {m[1]:.4f} +- {se[1]:.4f}")
