"""O(1/n) coefficient C_beta(t) of the GD-trained mean output on a TEST input x_beta, one
training input x_A (single output, target y), in terms of the output layer's statistics.

Statistics dict `s` (all at the output layer, one output neuron, n = width of the last hidden layer):
  K    : K_AA
  Th   : Theta_AA,   Thb : Theta_bA                          (infinite-width NTK)
  Th1  : Theta^1_AA, Th1b: Theta^1_bA                        (E[H] = Th + Th1/n)
  VarA : n Var(H_AA),  Covb : n Cov(H_bA, H_AA)
  dA   : n E[dH_AAA z_A],  db1 : n E[dH_bAA z_A],  db2 : n E[dH_AbA z_A]
  IA   : n E[ddI_AAAA],    Ib1 : n E[ddI_bAAA],    Ib2 : n E[ddI_AbAA]
  IIA  : n E[ddII_AAAA],   IIb1: n E[ddII_bAAA] (= n E[ddII_AbAA]),  IIb3: n E[ddII_AAbA] (= ddII_AAAb)
With beta = A every b-statistic equals its A-statistic and C_beta reduces to trained.md's C(t).
Run: python traj_beta.py   (checks the closed form against the first-order part of the exact
effective dynamics, Richardson in nu).
"""
import numpy as np


def coefficient(s, eta, y, T):
    """Returns dict of arrays over t = 0..T: m_inf, C (total) and its parts."""
    Th, Thb, K = s['Th'], s['Thb'], s['K']
    a = 1 - eta*Th
    tt = np.arange(T+1)
    # single-input responses (trained.md 4b) and their partial sums
    cd = np.zeros(T+1); cr = np.zeros(T+1); cs = np.zeros(T+1)
    S = np.zeros(T+1); W = np.zeros(T+1); V = np.zeros(T+1)
    for t in range(T):
        at, a2t = a**t, a**(2*t)
        cd[t+1] = a*cd[t] + eta**2*(2*at*S[t] + 0.5*a2t)
        cr[t+1] = a*cr[t] - eta**3*(at*(2*W[t] + V[t]) + 0.5*S[t]*a2t + a2t*at/6)
        cs[t+1] = a*cs[t] - eta**3*(at*(4*W[t] + V[t]) + S[t]*a2t)
        W[t+1] = W[t] + S[t]*at; V[t+1] = V[t] + a2t; S[t+1] = S[t] + at
    # frozen-kernel part: y[Th1b g + Thb Th1 g' + 1/2 Thb VarA g'' + Covb g']
    N = 1 - a**tt
    N1 = tt*eta*a**np.maximum(tt-1, 0)
    N2 = -tt*(tt-1)*eta**2*a**np.maximum(tt-2, 0)
    g = N/Th; g1 = N1/Th - N/Th**2; g2 = N2/Th - 2*N1/Th**2 + 2*N/Th**3
    th1 = y*(s['Th1b']*g + Thb*s['Th1']*g1)
    var = y*(0.5*Thb*s['VarA']*g2 + s['Covb']*g1)
    # dNTK: -2y[-eta Thb dA sum_{u<t} cd(u) + eta^2((db1 + db2) W_t + 1/2 db1 V_t)]
    Scd = np.concatenate([[0], np.cumsum(cd)[:-1]])
    dn = -2*y*(-eta*Thb*s['dA']*Scd + eta**2*((s['db1'] + s['db2'])*W + 0.5*s['db1']*V))
    # ddNTKs: E[eps0^3] = -(y^3 + 3yK) times
    # sum_{u<t} { -eta Thb (cr(u) IA + cs(u) IIA) - eta^3 a^u [J W_u + (Ib1/2 + Ib2/2 + IIb1) V_u]
    #             - eta^3/2 (Ib1 + 2 IIb1) S_u a^{2u} - eta^3/6 Ib1 a^{3u} }
    J = s['Ib1'] + s['Ib2'] + 3*s['IIb1'] + s['IIb3']
    au = a**tt
    step = (-eta*Thb*(cr*s['IA'] + cs*s['IIA'])
            - eta**3*au*(J*W + (0.5*s['Ib1'] + 0.5*s['Ib2'] + s['IIb1'])*V)
            - 0.5*eta**3*(s['Ib1'] + 2*s['IIb1'])*S*au**2 - eta**3/6*s['Ib1']*au**3)
    dd = -(y**3 + 3*y*K)*np.concatenate([[0], np.cumsum(step)[:-1]])
    return dict(t=tt, m_inf=Thb/Th*y*N, C=th1 + var + dn + dd, theta1=th1, variance=var,
                dntk=dn, ddntk=dd)


def coefficient_inf(s, y):
    """t -> infinity limit (only the frozen-kernel part and the drift integrals survive);
    evaluated numerically by a long run instead (see coefficient)."""
    raise NotImplementedError


def effective_mean(s, nu, eta, y, T, nodes=60):
    """E[z_beta,t] of the truncated per-network dynamics with every O(1/n) statistic scaled by nu:
    z_A0 ~ N(0,K) on Gauss-Hermite nodes (z_beta0 enters additively with mean 0, dropped),
    (h_A, h_b) = two-point +-sqrt(nu VarA) * (1, Covb/VarA), dH_X = nu c_X z_A/K, ddNTKs nu*const."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes); w = w/np.sqrt(2*np.pi)
    out = np.zeros(T+1)
    K = s['K']
    for sign in (-1.0, 1.0):
        z0 = np.sqrt(K)*x
        hA = s['Th'] + nu*s['Th1'] + sign*np.sqrt(nu*s['VarA'])
        hb = s['Thb'] + nu*s['Th1b'] + sign*np.sqrt(nu*s['VarA'])*s['Covb']/s['VarA']
        HA = hA + 0*z0; Hb = hb + 0*z0
        dA = nu*s['dA']*z0/K; db1 = nu*s['db1']*z0/K; db2 = nu*s['db2']*z0/K
        IA, IIA = nu*s['IA'], nu*s['IIA']
        Ib1, Ib2, IIb1, IIb3 = nu*s['Ib1'], nu*s['Ib2'], nu*s['IIb1'], nu*s['IIb3']
        e = z0 - y; zb = 0*z0
        for t in range(T+1):
            out[t] += 0.5*np.sum(w*zb)
            e2 = e*e
            zb_n = zb - eta*Hb*e + 0.5*eta**2*db1*e2 - eta**3/6*Ib1*e**3
            e_n = e - eta*HA*e + 0.5*eta**2*dA*e2 - eta**3/6*IA*e**3
            HA = HA - 2*eta*dA*e + eta**2*(IA + IIA)*e2
            Hb = Hb - eta*(db1 + db2)*e + eta**2*(0.5*Ib1 + 0.5*Ib2 + IIb1)*e2
            dA = dA - eta*(IA + 2*IIA)*e
            db1 = db1 - eta*(Ib1 + 2*IIb1)*e
            db2 = db2 - eta*(Ib2 + IIb1 + IIb3)*e
            zb, e = zb_n, e_n
    return out


if __name__ == '__main__':
    rng = np.random.default_rng(3)
    s = dict(K=0.236, Th=0.783, Thb=0.41, Th1=-0.052, Th1b=0.07, VarA=1.019, Covb=0.63,
             dA=-0.202, db1=-0.15, db2=0.11, IA=-2.97, Ib1=-1.3, Ib2=-0.8, IIA=1.047,
             IIb1=0.5, IIb3=0.3)
    eta, y, T = 0.5/s['Th'], 1.0, 12
    c = coefficient(s, eta, y, T)
    nu = 1e-4
    e0, e1, e2 = (effective_mean(s, v, eta, y, T) for v in (0.0, nu, 2*nu))
    assert np.allclose(e0, c['m_inf'], atol=1e-12)
    ce = 2*(e1 - e0)/nu - (e2 - e0)/(2*nu)
    print("t  C_closed  C_effective")
    for t in range(T+1):
        print(t, f"{c['C'][t]:.7f} {ce[t]:.7f}")
    print("max |diff| =", np.abs(ce - c['C']).max())
    # reduction to trained.md (beta = A)
    sA = dict(s); sA.update(Thb=s['Th'], Th1b=s['Th1'], Covb=s['VarA'], db1=s['dA'], db2=s['dA'],
                            Ib1=s['IA'], Ib2=s['IA'], IIb1=s['IIA'], IIb3=s['IIA'])
    cA = coefficient(sA, eta, y, T)
    # trained.md closed form
    a = 1 - eta*s['Th']; tt = cA['t']
    cd = np.zeros(T+1); cr = np.zeros(T+1); cs = np.zeros(T+1); S = W = V = 0.0
    for t in range(T):
        at, a2t = a**t, a**(2*t)
        cd[t+1] = a*cd[t] + eta**2*(2*at*S + 0.5*a2t)
        cr[t+1] = a*cr[t] - eta**3*(at*(2*W + V) + 0.5*S*a2t + a2t*at/6)
        cs[t+1] = a*cs[t] - eta**3*(at*(4*W + V) + S*a2t)
        W += S*at; V += a2t; S += at
    C1 = (y*(s['Th1']*tt*eta*a**np.maximum(tt-1, 0)
             - 0.5*s['VarA']*tt*(tt-1)*eta**2*a**np.maximum(tt-2, 0) - 2*s['dA']*cd)
          - (y**3 + 3*y*s['K'])*(s['IA']*cr + s['IIA']*cs))
    print("beta=A reduction max |diff| =", np.abs(C1 - cA['C']).max())
