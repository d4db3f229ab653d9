"""Monte Carlo of depth-3 output statistics on four inputs with all indices distinct (and a few
with three), from the definitions (netlib of ../trained_test_input: gradients, Hessian-vector
products and third-order jets; no forward equations), for comparison with the data-set theory's
depth-3 tensors (crates/theory/src/trajectory/dataset/three_layer.rs; test
`three_layer_four_input_values`, which prints the same entries).

Inputs: n0 = 4, x_a = 2 L_a with L the Cholesky factor of the Gram matrix G below, so that
x_a . x_b / n0 = G_ab. Tanh, C_W = lambda_W = 1, zero biases, one output.
Entries (n = hidden width; i.e. n times the expectations):
  G0123 = n E[dH_{012} z_3],  G0112 = n E[dH_{011} z_2],  G1203 = n E[dH_{120} z_3]
  I0123 = n E[ddI_{0123}] (polarisation of D^3 z_0 along v1, v2, v3 from four jets)
  J0123 = n E[ddII_{0123}],   J0213 = n E[ddII_{0213}]
  V0123 = n Cov(H_01, H_23),  V0102 = n Cov(H_01, H_02)
Usage: python mc_depth3.py n S [seed]  ->  one line per entry: mean +- SE (10 batch means).
"""
import sys, time
import numpy as np
sys.path.insert(0, __file__.rsplit('/', 2)[0] + '/trained_test_input')
import netlib as nl

G = np.array([[1.0, 0.31, -0.12, 0.45],
              [0.31, 1.0, 0.22, 0.05],
              [-0.12, 0.22, 1.0, 0.38],
              [0.45, 0.05, 0.38, 1.0]])
X = 2.0 * np.linalg.cholesky(G)          # rows x_a, |x|^2/4 = G_aa
KEYS = ['G0123', 'G0112', 'G1203', 'I0123', 'J0123', 'J0213', 'V0123', 'V0102']


def sdot(a, b):
    return sum(np.einsum('soi,soi->s', p, q) for p, q in zip(a, b))


def per_network(Ws, f):
    lams = nl.lam(Ws)
    zs = [nl.forward(Ws, X[a], f) for a in range(4)]
    gs = [nl.grad(Ws, zs[a], X[a], f) for a in range(4)]
    v = [nl.scale(g, lams) for g in gs]
    z = [zs[a][-1][:, 0] for a in range(4)]
    H = lambda a, b: nl.dot(gs[a], gs[b], lams)
    hv = lambda a, b: nl.hvp(Ws, v[b], zs[a], X[a], f)       # Hess z_a . lambda g_b
    o = {}
    h01, h02, h23 = H(0, 1), H(0, 2), H(2, 3)
    o['H01'], o['H02'], o['H23'] = h01, h02, h23
    o['H01H23'], o['H01H02'] = h01 * h23, h01 * h02
    H0v1, H0v2, H1v3, H1v2 = hv(0, 1), hv(0, 2), hv(1, 3), hv(1, 2)
    o['G0123'] = sdot(H0v1, v[2]) * z[3]
    o['G0112'] = sdot(H0v1, v[1]) * z[2]
    o['G1203'] = sdot(H1v2, v[0]) * z[3]
    o['J0123'] = nl.dot(H0v2, H1v3, lams)
    o['J0213'] = nl.dot(H0v1, nl.hvp(Ws, v[3], zs[2], X[2], f), lams)
    acc = 0.0
    for s in (1, -1):
        for r in (1, -1):
            d = [p + s * q + r * w for p, q, w in zip(v[1], v[2], v[3])]
            acc = acc + s * r * 6.0 * nl.jet3(Ws, d, X[0], f)[2]
    o['I0123'] = acc / 24.0
    return o


def main():
    n, S = int(sys.argv[1]), int(sys.argv[2])
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    f = nl.act('tanh')
    rng = np.random.default_rng(seed)
    nb, chunk = 10, 1000
    rows = []
    t0 = time.time()
    for _ in range(nb):
        acc, done = [], 0
        while done < S // nb:
            m = min(chunk, S // nb - done)
            acc.append(per_network(nl.init(rng, m, 4, n, 3), f))
            done += m
        o = {k: np.concatenate([a[k] for a in acc]) for k in acc[0]}
        N = len(o['H01'])
        c = N / (N - 1)
        row = {k: n * o[k].mean() for k in ['G0123', 'G0112', 'G1203', 'I0123', 'J0123', 'J0213']}
        row['V0123'] = n * c * (o['H01H23'].mean() - o['H01'].mean() * o['H23'].mean())
        row['V0102'] = n * c * (o['H01H02'].mean() - o['H01'].mean() * o['H02'].mean())
        rows.append(row)
    print(f"# tanh L=3 n={n} S={S} seed={seed} ({time.time() - t0:.0f}s)")
    for k in KEYS:
        a = np.array([r[k] for r in rows])
        print(f"{k} {a.mean(): .5f} {a.std(ddof=1) / np.sqrt(nb):.5f}")


if __name__ == '__main__':
    main()
