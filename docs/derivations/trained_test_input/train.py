"""Trained ensembles: antithetic pairs (last layer negated) of MLPs (depth L, hidden width n,
n0 = 2, no biases, lambda_W = 1 per layer divided by fan-in), full-batch GD with step eta on
L = 1/2 (z_A - y)^2 for T steps; records the pair means of z_A(t) and z_beta(t).
Usage: python train.py ACT L n P T seed [etaTh] [cos] [y]
eta = etaTh / Theta_AA(infinite width, from theory).  Saves train_ACT_L{L}_n{n}_s{seed}.npz
with per-pair-mean sums over chunks (for SE).
"""
import numpy as np, sys, time, netlib as nl, theory, mc_out

name, L, n, P, T, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
etaTh = float(sys.argv[7]) if len(sys.argv) > 7 else 0.5
cos = float(sys.argv[8]) if len(sys.argv) > 8 else 0.5
y = float(sys.argv[9]) if len(sys.argv) > 9 else 1.0
f = nl.act(name)
xA, xb = mc_out.inputs(cos)
ThAA = theory.theta_inf(name, cos, L)['AA']
eta = etaTh/ThAA
rng = np.random.default_rng(seed)
chunk = 1000 if n <= 64 else 500
t0 = time.time()
uA, ub = [], []            # pair means (P, T+1)
done = 0
while done < P:
    m = min(chunk, P - done)
    Ws = nl.init(rng, m, 2, n, L)
    Wn = [W.copy() for W in Ws]; Wn[-1] = -Wn[-1]
    Ws = [np.concatenate([a, b]) for a, b in zip(Ws, Wn)]     # 2m networks: pairs (i, i+m)
    lams = nl.lam(Ws)
    zA_t = np.zeros((2*m, T+1)); zb_t = np.zeros((2*m, T+1))
    for t in range(T+1):
        zs = nl.forward(Ws, xA, f)
        zA = zs[-1][:, 0]
        zA_t[:, t] = zA
        zb_t[:, t] = nl.forward(Ws, xb, f)[-1][:, 0]
        if t == T:
            break
        g = nl.grad(Ws, zs, xA, f)
        eps = zA - y
        Ws = [W - eta*lm*eps[:, None, None]*gg for W, gg, lm in zip(Ws, g, lams)]
    uA.append(0.5*(zA_t[:m] + zA_t[m:])); ub.append(0.5*(zb_t[:m] + zb_t[m:]))
    done += m
uA = np.concatenate(uA); ub = np.concatenate(ub)
np.savez(f'train_{name}_L{L}_n{n}_s{seed}.npz', uA=uA.mean(0), ub=ub.mean(0),
         seA=uA.std(0, ddof=1)/np.sqrt(P), seb=ub.std(0, ddof=1)/np.sqrt(P), P=P, eta=eta, y=y,
         covAb=np.array([np.cov(uA[:, t], ub[:, t])[0, 1]/P for t in range(T+1)]))
print(f"# {name} L={L} n={n} P={P} T={T} eta={eta:.5f} ({time.time()-t0:.0f}s)")
