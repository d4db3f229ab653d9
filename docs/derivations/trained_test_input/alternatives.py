"""How far the trained-ensemble extrapolation D_beta(inf) is from C_beta and from alternatives:
frozen (Theta^1 + NTK variance only), no-ddNTK, variance sign flipped, and the 'ratio' guess
C_A(t) * Theta_bA/Theta_AA.  Usage: python alternatives.py ACT L n1,n2 s1,s2"""
import numpy as np, sys, theory, traj_beta, compare
name, L = sys.argv[1], int(sys.argv[2])
widths = [int(w) for w in sys.argv[3].split(',')]; seeds = [int(s) for s in sys.argv[4].split(',')]
s = getattr(theory, f'output_L{L}')(name, 0.5)
runs = [compare.load(name, L, n, sd) for n, sd in zip(widths, seeds)]
eta = float(runs[0]['eta']); T = len(runs[0]['ub']) - 1
c = traj_beta.coefficient(s, eta, 1.0, T); cA = traj_beta.coefficient(compare.as_A(s), eta, 1.0, T)
D = [n*(r['ub'] - c['m_inf']) for n, r in zip(widths, runs)]; SE = [n*r['seb'] for n, r in zip(widths, runs)]
n1, n2 = widths[-2:]
Dinf = (n2*D[-1] - n1*D[-2])/(n2 - n1); SEinf = np.sqrt((n2*SE[-1])**2 + (n1*SE[-2])**2)/(n2 - n1)
def swapped(**kw):
    s2 = dict(s)
    for a, b in kw.items():
        s2[a], s2[b] = s[b], s[a]
    return traj_beta.coefficient(s2, eta, 1.0, T)['C']
alts = {'P_b1 <-> P_b2': swapped(db1='db2'), 'I_b1 <-> I_b2': swapped(Ib1='Ib2'), 'J_b1 <-> J_b3': swapped(IIb1='IIb3'),
        'C_beta': c['C'], 'frozen only': c['theta1'] + c['variance'], 'no ddNTK': c['C'] - c['ddntk'],
        'variance sign flipped': c['C'] - 2*c['variance'], 'ratio C_A*Thb/Th': cA['C']*s['Thb']/s['Th']}
print(f"# {name} L={L}: (D_beta(inf) - X)/SE at t = 1..{T}; max |.| over t")
for k, v in alts.items():
    z = (Dinf[1:] - v[1:])/SEinf[1:]
    print(f"{k:22s} max {np.abs(z).max():6.1f}  " + ' '.join(f"{x:6.1f}" for x in z))
