"""Compare trained ensembles with C_beta(t) (and C_A(t)).
Usage: python compare.py ACT L stats_source n1,n2[,n3] seeds...
stats_source: 'theory' (theory.output_L{L}) or an npz prefix of MC-measured, width-extrapolated
statistics (see extrap_stats.py)."""
import numpy as np, sys, json, traj_beta, theory


def load(name, L, n, seed):
    return dict(np.load(f'train_{name}_L{L}_n{n}_s{seed}.npz'))


def as_A(s):
    sA = dict(s)
    sA.update(Thb=s['Th'], Th1b=s['Th1'], Covb=s['VarA'], db1=s['dA'], db2=s['dA'],
              Ib1=s['IA'], Ib2=s['IA'], IIb1=s['IIA'], IIb3=s['IIA'])
    return sA


def report(name, L, s, widths, seeds, y=1.0, out=None):
    runs = [load(name, L, n, sd) for n, sd in zip(widths, seeds)]
    eta = float(runs[0]['eta']); T = len(runs[0]['ub']) - 1
    cb = traj_beta.coefficient(s, eta, y, T); cA = traj_beta.coefficient(as_A(s), eta, y, T)
    cinf = traj_beta.coefficient(s, eta, y, 400)
    lines = []
    P = lambda *a: lines.append(' '.join(str(x) for x in a))
    P(f"# {name} L={L} eta*Theta_AA={eta*s['Th']:.3f} widths={widths} pairs={[int(r['P']) for r in runs]}")
    P(f"# C_beta(inf) = {cinf['C'][-1]:.4f} (parts: theta1 {cinf['theta1'][-1]:.4f}, variance {cinf['variance'][-1]:.4f}, "
      f"dNTK {cinf['dntk'][-1]:.4f}, ddNTK {cinf['ddntk'][-1]:.4f}); at t=8..400 converged to {abs(cinf['C'][-1]-cinf['C'][-2]):.1e}")
    res = {}
    for lab, key, sek, c, minf in (('beta', 'ub', 'seb', cb, cb['m_inf']), ('A', 'uA', 'seA', cA, cA['m_inf'])):
        P(f"## input {lab}: t | D(n) +- SE ... | D(inf) two largest +- SE | C(t) | dev/SE | parts th1 var dntk ddntk")
        D = [n*(r[key] - minf) for n, r in zip(widths, runs)]
        SE = [n*r[sek] for n, r in zip(widths, runs)]
        n1, n2 = widths[-2], widths[-1]
        Dinf = (n2*D[-1] - n1*D[-2])/(n2 - n1)
        SEinf = np.sqrt((n2*SE[-1])**2 + (n1*SE[-2])**2)/(n2 - n1)
        for t in range(1, T+1):
            ds = ' '.join(f"{D[i][t]: .4f}({SE[i][t]:.4f})" for i in range(len(widths)))
            P(f"{t} | {ds} | {Dinf[t]: .4f} +- {SEinf[t]:.4f} | {c['C'][t]: .4f} | {(Dinf[t]-c['C'][t])/SEinf[t]: .2f} | "
              f"{c['theta1'][t]: .4f} {c['variance'][t]: .4f} {c['dntk'][t]: .4f} {c['ddntk'][t]: .4f}")
        res[lab] = dict(D=[d.tolist() for d in D], SE=[e.tolist() for e in SE], Dinf=Dinf.tolist(),
                        SEinf=SEinf.tolist(), C=c['C'].tolist())
    txt = '\n'.join(lines)
    print(txt)
    if out:
        open(out, 'w').write(txt + '\n')
    return res


if __name__ == '__main__':
    name, L, src = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    widths = [int(w) for w in sys.argv[4].split(',')]
    seeds = [int(s) for s in sys.argv[5].split(',')]
    if src == 'theory':
        s = getattr(theory, f'output_L{L}')(name, 0.5)
    else:
        s = json.load(open(src))
    report(name, L, s, widths, seeds, out=f'compare_{name}_L{L}_{src.replace("/", "_")}.txt')
