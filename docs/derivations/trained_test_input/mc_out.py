"""Monte Carlo of the output-layer statistics that C_beta(t) needs, from the definitions
(netlib.output_tensors), for MLPs of depth L, hidden width n, n0 = 2, inputs with |x|^2/n0 = 1
and cosine `cos`. Batch means (nb batches) give the SE.
Usage: python mc_out.py ACT n L S [seed] [cos]   -> prints and saves mc_ACT_L{L}_n{n}.npz
"""
import numpy as np, sys, time, netlib as nl

KEYS = ['Th', 'Thb', 'VarA', 'Covb', 'dA', 'db1', 'db2', 'IA', 'Ib1', 'Ib2', 'IIA', 'IIb1', 'IIb3', 'K', 'Kb', 'dAb']


def inputs(cos):
    xA = np.sqrt(2.0)*np.array([1.0, 0.0])
    xb = np.sqrt(2.0)*np.array([cos, np.sqrt(1 - cos*cos)])
    return xA, xb


def batch_stats(o, n):
    """Per-batch estimators: first moments (means over networks) as a vector; variances are
    assembled from moments so that the batch means are (nearly) unbiased."""
    return dict(Th=o['HAA'].mean(), Thb=o['HbA'].mean(), HAA2=(o['HAA']**2).mean(),
                HbAHAA=(o['HbA']*o['HAA']).mean(),
                dA=n*(o['dAAA']*o['zA']).mean(), db1=n*(o['dbAA']*o['zA']).mean(),
                db2=n*(o['dAbA']*o['zA']).mean(), dAb=n*(o['dAAA']*o['zb']).mean(),
                IA=n*o['IAAAA'].mean(), Ib1=n*o['IbAAA'].mean(), Ib2=n*o['IAbAA'].mean(),
                IIA=n*o['IIAAAA'].mean(), IIb1=n*o['IIbAAA'].mean(), IIb3=n*o['IIAAbA'].mean(),
                K=(o['zA']**2).mean(), Kb=(o['zA']*o['zb']).mean(), Nets=len(o['zA']))


def run(name, n, L, S, seed=0, cos=0.5, nb=10, chunk=2000):
    f = nl.act(name)
    xA, xb = inputs(cos)
    rng = np.random.default_rng(seed)
    per = S//nb
    rows = []
    for ib in range(nb):
        acc = []
        done = 0
        while done < per:
            m = min(chunk, per - done)
            Ws = nl.init(rng, m, 2, n, L)
            acc.append(nl.output_tensors(Ws, xA, xb, f))
            done += m
        o = {k: np.concatenate([a[k] for a in acc]) for k in acc[0]}
        rows.append(batch_stats(o, n))
    return rows


def combine(rows, n):
    """mean +- SE over batches for each statistic; VarA, Covb from batch moments."""
    out = {}
    arr = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    nb = len(rows)
    arr['VarA'] = n*(arr['HAA2'] - arr['Th']**2)*arr['Nets']/(arr['Nets'] - 1)
    arr['Covb'] = n*(arr['HbAHAA'] - arr['HbA' if 'HbA' in arr else 'Thb']*arr['Th'])*arr['Nets']/(arr['Nets'] - 1)
    for k in KEYS:
        out[k] = (arr[k].mean(), arr[k].std(ddof=1)/np.sqrt(nb))
    return out


if __name__ == '__main__':
    name, n, L, S = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    seed = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    cos = float(sys.argv[6]) if len(sys.argv) > 6 else 0.5
    t0 = time.time()
    rows = run(name, n, L, S, seed, cos)
    res = combine(rows, n)
    np.savez(f'mc_{name}_L{L}_n{n}_s{seed}.npz', **{k: np.array(v) for k, v in res.items()})
    print(f"# {name} L={L} n={n} S={S} seed={seed} cos={cos} ({time.time()-t0:.0f}s)")
    for k in KEYS:
        print(f"{k:5s} {res[k][0]: .5f} +- {res[k][1]:.5f}")
