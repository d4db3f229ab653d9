"""Two-input (A = training input, b = test input) leading-order statistics of the output
neuron, for depth L = 2 (sources only; exact at every width) and L = 3 (one propagation step
from layer-2 pair tensors, which are themselves pure sources).  See trained_test_input.md.
Gaussian expectations over (z_A, z_b) ~ N(0, K) by tensor Gauss-Hermite.
Conventions: C_b = 0, lambda_b = 0, C_W, lambda_W given; inputs |x|^2/n0 = 1, cosine c.
"""
import numpy as np
import netlib

NODES = 120
_x, _w = np.polynomial.hermite_e.hermegauss(NODES); _w = _w/np.sqrt(2*np.pi)
X1, X2 = np.meshgrid(_x, _x, indexing='ij'); WW = np.outer(_w, _w)


class Gauss2:
    """<g(z_A, z_b)> for (z_A, z_b) ~ N(0, K); K as dict with AA, Ab, bb."""
    def __init__(self, KAA, KAb, Kbb, f):
        M = np.array([[KAA, KAb], [KAb, Kbb]])
        ev, U = np.linalg.eigh(M); ev = np.clip(ev, 0, None)
        R = U*np.sqrt(ev)
        self.z = {'A': R[0, 0]*X1 + R[0, 1]*X2, 'b': R[1, 0]*X1 + R[1, 1]*X2}
        self.f = f
        self.cache = {}
        self.K = dict(AA=KAA, Ab=KAb, bA=KAb, bb=Kbb)

    def s(self, k, d):
        key = (k, d)
        if key not in self.cache:
            self.cache[key] = self.f(self.z[d], k)
        return self.cache[key]

    def E(self, *factors):
        """factors: (k, d) pairs, sigma^(k)(z_d); product's expectation."""
        p = WW
        for k, d in factors:
            p = p*self.s(k, d)
        return float(np.sum(p))

    def dE(self, factors, a):
        """<d/dz_a of prod(factors)> (product rule: raise the order of factors at input a)."""
        out = 0.0
        for i, (k, d) in enumerate(factors):
            if d == a:
                fs = list(factors); fs[i] = (k+1, d)
                out += self.E(*fs)
        return out


def key(d1, d2):
    return d1 + d2


def layer1(c, lamW=1.0, CW=1.0):
    K = dict(AA=CW, Ab=CW*c, bA=CW*c, bb=CW)
    Th = dict(AA=lamW, Ab=lamW*c, bA=lamW*c, bb=lamW)
    return K, Th


def next_K_Theta(g, K, Th, CW, lamW):
    Kn, Thn = {}, {}
    for d1 in 'Ab':
        for d2 in 'Ab':
            Kn[d1+d2] = CW*g.E((0, d1), (0, d2))
            Thn[d1+d2] = lamW*g.E((0, d1), (0, d2)) + CW*g.E((1, d1), (1, d2))*Th[d1+d2]
    return Kn, Thn


def sources_out(g, Th, CW, lamW):
    """Output statistics when the previous layer is layer 1 (Gaussian, deterministic NTK):
    returns dict in traj_beta's keys (Th1 = 0) plus K."""
    T = lambda a, b: Th[a+b]
    E = g.E
    s = {}
    # NTK covariance: 2 C_W^2 <s1 s1 s1 s1> Th Th + Cov_same(f_12, f_34), f = lamW s s + CW s1 s1 Th
    def cov_same(d1, d2, d3, d4):
        def f_terms(a, b):
            return [(lamW, [(0, a), (0, b)]), (CW*T(a, b), [(1, a), (1, b)])]
        c = 0.0
        for c1, f1 in f_terms(d1, d2):
            for c2, f2 in f_terms(d3, d4):
                c += c1*c2*(E(*(f1 + f2)) - E(*f1)*E(*f2))
        return c
    def ntkcov(d1, d2, d3, d4):
        return 2*CW**2*E((1, d1), (1, d2), (1, d3), (1, d4))*T(d1, d2)*T(d3, d4) + cov_same(d1, d2, d3, d4)
    s['VarA'] = ntkcov('A', 'A', 'A', 'A'); s['Covb'] = ntkcov('b', 'A', 'A', 'A')
    # dNTK: n E[dH_{d0 d1 d2} z_{d3}]
    def dntk(d0, d1, d2, d3):
        return (lamW*CW*(E((0, d1), (1, d0), (1, d2), (0, d3))*T(d2, d0)
                         + E((0, d2), (1, d0), (1, d1), (0, d3))*T(d1, d0))
                + 3*CW**2*E((2, d0), (1, d1), (1, d2), (0, d3))*T(d1, d0)*T(d2, d0))
    s['dA'] = dntk('A', 'A', 'A', 'A'); s['db1'] = dntk('b', 'A', 'A', 'A'); s['db2'] = dntk('A', 'b', 'A', 'A')
    s['dAb'] = dntk('A', 'A', 'A', 'b')
    # ddI_{d0 d1 d2 d3}
    def ddI(d0, d1, d2, d3):
        legs = [d1, d2, d3]
        out = 3*CW**2*E((3, d0), (1, d1), (1, d2), (1, d3))*T(d1, d0)*T(d2, d0)*T(d3, d0)
        for i in range(3):
            x = legs[i]; y, w = [legs[j] for j in range(3) if j != i]
            out += lamW*CW*E((0, x), (2, d0), (1, y), (1, w))*T(y, d0)*T(w, d0)
        return out
    s['IA'] = ddI('A', 'A', 'A', 'A'); s['Ib1'] = ddI('b', 'A', 'A', 'A'); s['Ib2'] = ddI('A', 'b', 'A', 'A')
    # ddII_{d1 d2 d3 d4}
    def ddII(d1, d2, d3, d4):
        return (3*CW**2*E((2, d1), (2, d2), (1, d3), (1, d4))*T(d1, d2)*T(d1, d3)*T(d2, d4)
                + lamW*CW*(E((1, d1), (1, d2), (1, d3), (1, d4))*T(d1, d3)*T(d2, d4)
                           + E((1, d1), (0, d3), (2, d2), (1, d4))*T(d1, d2)*T(d2, d4)
                           + E((1, d2), (0, d4), (2, d1), (1, d3))*T(d1, d2)*T(d1, d3))
                + lamW**2*E((1, d1), (1, d2), (0, d3), (0, d4))*T(d1, d2))
    s['IIA'] = ddII('A', 'A', 'A', 'A'); s['IIb1'] = ddII('b', 'A', 'A', 'A'); s['IIb3'] = ddII('A', 'A', 'b', 'A')
    s['IIb1_sym'] = ddII('A', 'b', 'A', 'A')
    s['Th1'] = 0.0; s['Th1b'] = 0.0
    return s


def output_L2(name, c, CW=1.0, lamW=1.0):
    f = netlib.act(name)
    K1, Th1 = layer1(c, lamW, CW)
    g = Gauss2(K1['AA'], K1['Ab'], K1['bb'], f)
    K2, Th2 = next_K_Theta(g, K1, Th1, CW, lamW)
    s = sources_out(g, Th1, CW, lamW)
    s.update(K=K2['AA'], Kb=K2['Ab'], Th=Th2['AA'], Thb=Th2['bA'])
    return s


if __name__ == '__main__':
    import sys
    for name in ('tanh', 'sin'):
        s = output_L2(name, 0.5)
        print(name, 'L=2', {k: round(v, 6) for k, v in s.items()})


def theta_inf(name, c, L, CW=1.0, lamW=1.0):
    """Infinite-width Theta at the output of depth L (2x2 dict)."""
    f = netlib.act(name)
    K, Th = layer1(c, lamW, CW)
    for l in range(1, L):
        g = Gauss2(K['AA'], K['Ab'], K['bb'], f)
        K, Th = next_K_Theta(g, K, Th, CW, lamW)
    return Th


# ---------------------------------------------------------------------------------------------
# Depth 3: layer-2 pair tensors (sources from the Gaussian layer 1) and the output step with
# propagation terms.  Factors are (k, d): sigma^(k)(z_d); inputs d in 'A', 'b'.
INP = 'Ab'
COORDS = [('A', 'A'), ('A', 'b'), ('b', 'b')]


def deriv(terms, a):
    """d/dz_a of a sum of (coef, factors) terms (product rule)."""
    out = []
    for c, fs in terms:
        for i, (k, d) in enumerate(fs):
            if d == a:
                f2 = list(fs); f2[i] = (k+1, d)
                out.append((c, f2))
    return out


def Et(g, terms):
    return sum(c*g.E(*fs) for c, fs in terms)


def Dp(terms, p):
    """d/dK_p acting inside <.>: (1/2) d_a d_a for a diagonal coordinate, d_a d_b otherwise."""
    a, b = p
    c0 = 0.5 if a == b else 1.0
    return [(c0*c, fs) for c, fs in deriv(deriv(terms, a), b)]


def dK(g, terms, p):
    """derivative of <terms> wrt the coordinate K_p (off-diagonal counted once)."""
    return Et(g, Dp(terms, p))


def dK2(g, terms, p, q):
    return Et(g, Dp(Dp(terms, p), q))


def dz(g, factors, a):
    """<d/dz_a prod(factors)>"""
    return Et(g, deriv([(1.0, list(factors))], a))


def layer2(c, f, CW=1.0, lamW=1.0):
    """Everything the depth-3 output step needs about layer 2 (leading order, 1/n-normalised)."""
    K1, T1 = layer1(c, lamW, CW)
    g1 = Gauss2(K1['AA'], K1['Ab'], K1['bb'], f)
    K2, T2 = next_K_Theta(g1, K1, T1, CW, lamW)
    T = lambda a, b: T1[a+b]
    E = g1.E
    st = dict(K=K2, Th=T2, g1=g1)
    st['B'] = lambda d1, d2, d3, d4: CW**2*E((1, d1), (1, d2), (1, d3), (1, d4))*T(d1, d2)*T(d3, d4)
    st['F'] = lambda d1, d2, a, b: CW**2*T(d1, d2)*E((1, d1), (1, d2), (0, a), (0, b))
    PP = lambda d0, d1, d2, a: CW**2*E((2, d0), (1, d1), (1, d2), (0, a))*T(d1, d0)*T(d2, d0)
    st['P'] = PP
    st['Q1'] = lambda d0, d1, d2, a: PP(d0, d1, d2, a) + lamW*CW*T(d2, d0)*E((0, d1), (1, d0), (1, d2), (0, a))
    st['Q2'] = lambda d0, d1, d2, a: PP(d0, d1, d2, a) + lamW*CW*T(d1, d0)*E((0, d2), (1, d0), (1, d1), (0, a))
    O3 = lambda d0, d1, d2, d3: CW**2*E((3, d0), (1, d1), (1, d2), (1, d3))*T(d1, d0)*T(d2, d0)*T(d3, d0)
    st['R1'] = lambda d0, d1, d2, d3: lamW*CW*E((0, d1), (2, d0), (1, d2), (1, d3))*T(d2, d0)*T(d3, d0) + O3(d0, d1, d2, d3)
    st['R2'] = lambda d0, d1, d2, d3: lamW*CW*E((0, d2), (2, d0), (1, d1), (1, d3))*T(d1, d0)*T(d3, d0) + O3(d0, d1, d2, d3)
    st['R3'] = lambda d0, d1, d2, d3: lamW*CW*E((0, d3), (2, d0), (1, d1), (1, d2))*T(d1, d0)*T(d2, d0) + O3(d0, d1, d2, d3)
    EE = lambda d1, d2, d3, d4: CW**2*E((2, d1), (2, d2), (1, d3), (1, d4))*T(d3, d1)*T(d1, d2)*T(d4, d2)
    st['S'] = lambda d1, d2, d3, d4: lamW*CW*E((1, d1), (1, d2), (1, d3), (1, d4))*T(d3, d1)*T(d4, d2) + EE(d1, d2, d3, d4)
    st['T'] = lambda d1, d2, d3, d4: (lamW**2*E((1, d1), (1, d2), (0, d3), (0, d4))*T(d1, d2)
                                       + lamW*CW*(E((1, d1), (0, d3), (2, d2), (1, d4))*T(d1, d2)*T(d4, d2)
                                                  + E((1, d2), (0, d4), (2, d1), (1, d3))*T(d1, d2)*T(d3, d1))
                                       + EE(d1, d2, d3, d4))
    st['U'] = EE
    # layer-averaged observables of one layer-2 neuron, as functions of a layer-1 neuron:
    # m_ab -> C_W s_a s_b ; H_dd' -> lamW s_d s_d' + C_W T1 s1_d s1_d'
    def obs(o):
        kind, a, b = o
        if kind == 'm':
            return [(CW, [(0, a), (0, b)])]
        return [(lamW, [(0, a), (0, b)]), (CW*T(a, b), [(1, a), (1, b)])]
    def cov1(t1, t2):
        return Et(g1, [(c1*c2, f1 + f2) for c1, f1 in t1 for c2, f2 in t2]) - Et(g1, t1)*Et(g1, t2)
    st['Vcal'] = lambda o1, o2: cov1(obs(o1), obs(o2))          # n Cov(O_j, O_k), j != k
    # same-neuron n Cov(H_jj;dd', z_a z_b) = 2F + D
    st['Csame'] = lambda d, dp, a, b: 2*CW**2*T(d, dp)*E((1, d), (1, dp), (0, a), (0, b)) + CW*cov1(obs(('H', d, dp)), [(1.0, [(0, a), (0, b)])])
    return st


def output_L3(name, c, CW=1.0, lamW=1.0, parts=False):
    f = netlib.act(name)
    st = layer2(c, f, CW, lamW)
    K, Th = st['K'], st['Th']
    g = Gauss2(K['AA'], K['Ab'], K['bb'], f)
    K3, Th3 = next_K_Theta(g, K, Th, CW, lamW)
    T = lambda a, b: Th[a+b]
    E = g.E
    B, F, P, Q1, Q2 = st['B'], st['F'], st['P'], st['Q1'], st['Q2']
    Fterm = lambda d1, d2, fa, fb: sum(F(d1, d2, a, b)*dz(g, fa, a)*dz(g, fb, b) for a in INP for b in INP)
    s = dict(K=K3['AA'], Kb=K3['Ab'], Th=Th3['AA'], Thb=Th3['bA'])
    # ---- Theta^1 (K^1 = Theta^1 = 0 at layer 2)
    def theta1(d1, d2):
        out = 0.0
        gs = [(1.0, [(0, d1), (0, d2)])]; gp = [(1.0, [(1, d1), (1, d2)])]
        for p in COORDS:
            for q in COORDS:
                V = st['Vcal'](('m',) + p, ('m',) + q)
                out += 0.5*V*(lamW*dK2(g, gs, p, q) + CW*T(d1, d2)*dK2(g, gp, p, q))
            out += CW*st['Csame'](d1, d2, *p)*dK(g, gp, p)
        return out
    s['Th1'] = theta1('A', 'A'); s['Th1b'] = theta1('b', 'A')
    # ---- NTK covariance
    def ntkcov(d1, d2, d3, d4):
        out = 2*CW**2*E((1, d1), (1, d2), (1, d3), (1, d4))*T(d1, d2)*T(d3, d4)
        out += CW**2*(E((1, d1), (1, d3))*E((1, d2), (1, d4))*B(d1, d2, d3, d4)
                      + E((1, d1), (1, d4))*E((1, d2), (1, d3))*B(d1, d2, d4, d3))
        f12 = [(lamW, [(0, d1), (0, d2)]), (CW*T(d1, d2), [(1, d1), (1, d2)])]
        f34 = [(lamW, [(0, d3), (0, d4)]), (CW*T(d3, d4), [(1, d3), (1, d4)])]
        out += Et(g, [(c1*c2, a1 + a2) for c1, a1 in f12 for c2, a2 in f34]) - Et(g, f12)*Et(g, f34)
        # distinct-neuron linear response through V, D, A of layer 2
        def grad(dd1, dd2, ff):
            gr = {('m',) + p: dK(g, ff, p) for p in COORDS}
            hk = ('H',) + tuple(sorted((dd1, dd2)))
            gr[hk] = CW*E((1, dd1), (1, dd2))
            return gr
        g12, g34 = grad(d1, d2, f12), grad(d3, d4, f34)
        for o1, v1 in g12.items():
            for o2, v2 in g34.items():
                out += v1*v2*st['Vcal'](o1, o2)
        return out
    s['VarA'] = ntkcov('A', 'A', 'A', 'A'); s['Covb'] = ntkcov('b', 'A', 'A', 'A')
    # ---- dNTK: n E[dH_{d0 d1 d2} z_{d3}]
    def dntk(d0, d1, d2, d3):
        out = 0.0
        for x, y in ((d1, d2), (d2, d1)):
            out += lamW*CW*(E((0, x), (1, d0), (1, y), (0, d3))*T(y, d0)
                            + Fterm(y, d0, [(1, y), (0, d3)], [(0, x), (1, d0)]))
        out += CW**2*sum(P(d0, d1, d2, a)*dz(g, [(1, d0), (0, d3)], a) for a in INP)*E((1, d1), (1, d2))
        out += CW**2*sum(Q1(d0, d1, d2, a)*dz(g, [(1, d2), (0, d3)], a) for a in INP)*E((1, d0), (1, d1))
        out += CW**2*sum(Q2(d0, d1, d2, a)*dz(g, [(1, d1), (0, d3)], a) for a in INP)*E((1, d0), (1, d2))
        out += 3*CW**2*E((2, d0), (1, d1), (1, d2), (0, d3))*T(d1, d0)*T(d2, d0)
        out += CW**2*B(d1, d0, d2, d0)*E((1, d1), (1, d2))*E((2, d0), (0, d3))
        out += CW**2*T(d1, d0)*Fterm(d2, d0, [(1, d2), (0, d3)], [(2, d0), (1, d1)])
        out += CW**2*T(d2, d0)*Fterm(d1, d0, [(1, d1), (0, d3)], [(2, d0), (1, d2)])
        return out
    s['dA'] = dntk('A', 'A', 'A', 'A'); s['db1'] = dntk('b', 'A', 'A', 'A'); s['db2'] = dntk('A', 'b', 'A', 'A')
    s['dAb'] = dntk('A', 'A', 'A', 'b')
    # ---- ddI_{d0 d1 d2 d3}
    def ddI(d0, d1, d2, d3):
        legs = [d1, d2, d3]
        out = 0.0
        for i in range(3):
            x = legs[i]; y, w = [legs[j] for j in range(3) if j != i]
            out += lamW*CW*(E((0, x), (2, d0), (1, y), (1, w))*T(y, d0)*T(w, d0)
                            + B(y, d0, w, d0)*E((1, y), (1, w))*E((0, x), (2, d0))
                            + sum(P(d0, y, w, a)*dz(g, [(0, x), (1, d0)], a) for a in INP)*E((1, y), (1, w)))
            # N Y G: Y over legs (y, w), G on leg x
            out += CW**2*T(x, d0)*sum(P(d0, y, w, a)*dz(g, [(2, d0), (1, x)], a) for a in INP)*E((1, y), (1, w))
            # O G G G: diagonal + B
            out += CW**2*E((3, d0), (1, d1), (1, d2), (1, d3))*T(d1, d0)*T(d2, d0)*T(d3, d0)
            out += CW**2*T(x, d0)*B(y, d0, w, d0)*E((3, d0), (1, x))*E((1, y), (1, w))
        out += CW**2*(st['R1'](d0, d1, d2, d3)*E((1, d0), (1, d1))*E((1, d2), (1, d3))
                      + st['R2'](d0, d1, d2, d3)*E((1, d0), (1, d2))*E((1, d1), (1, d3))
                      + st['R3'](d0, d1, d2, d3)*E((1, d0), (1, d3))*E((1, d1), (1, d2)))
        return out
    s['IA'] = ddI('A', 'A', 'A', 'A'); s['Ib1'] = ddI('b', 'A', 'A', 'A'); s['Ib2'] = ddI('A', 'b', 'A', 'A')
    # ---- ddII_{d1 d2 d3 d4}
    def ddII(d1, d2, d3, d4):
        out = lamW**2*(E((1, d1), (1, d2), (0, d3), (0, d4))*T(d1, d2)
                       + Fterm(d1, d2, [(1, d1), (0, d3)], [(1, d2), (0, d4)]))
        out += lamW*CW*(E((1, d1), (1, d2), (1, d3), (1, d4))*T(d3, d1)*T(d4, d2)
                        + B(d3, d1, d4, d2)*E((1, d3), (1, d4))*E((1, d1), (1, d2)))
        out += lamW*CW*(E((1, d1), (0, d3), (2, d2), (1, d4))*T(d4, d2)*T(d1, d2)
                        + T(d4, d2)*Fterm(d1, d2, [(1, d1), (0, d3)], [(2, d2), (1, d4)])
                        + sum(Q2(d2, d1, d4, a)*dz(g, [(1, d1), (0, d3)], a) for a in INP)*E((1, d2), (1, d4)))
        out += lamW*CW*(E((1, d2), (0, d4), (2, d1), (1, d3))*T(d3, d1)*T(d1, d2)
                        + T(d3, d1)*Fterm(d1, d2, [(2, d1), (1, d3)], [(1, d2), (0, d4)])
                        + sum(Q2(d1, d2, d3, a)*dz(g, [(1, d2), (0, d4)], a) for a in INP)*E((1, d1), (1, d3)))
        EEd = E((2, d1), (2, d2), (1, d3), (1, d4))*T(d3, d1)*T(d1, d2)*T(d4, d2)
        out += CW**2*(3*EEd + T(d3, d1)*T(d4, d2)*Fterm(d1, d2, [(2, d1), (1, d3)], [(2, d2), (1, d4)])
                      + T(d1, d2)*B(d3, d1, d4, d2)*E((1, d3), (1, d4))*E((2, d1), (2, d2)))
        out += CW**2*T(d3, d1)*sum(Q2(d2, d1, d4, a)*dz(g, [(2, d1), (1, d3)], a) for a in INP)*E((1, d2), (1, d4))
        out += CW**2*T(d4, d2)*sum(Q2(d1, d2, d3, a)*dz(g, [(2, d2), (1, d4)], a) for a in INP)*E((1, d1), (1, d3))
        out += CW**2*(st['S'](d1, d2, d3, d4)*E((1, d1), (1, d2))*E((1, d3), (1, d4))
                      + st['T'](d1, d2, d3, d4)*E((1, d1), (1, d3))*E((1, d2), (1, d4))
                      + st['U'](d1, d2, d3, d4)*E((1, d1), (1, d4))*E((1, d2), (1, d3)))
        return out
    s['IIA'] = ddII('A', 'A', 'A', 'A'); s['IIb1'] = ddII('b', 'A', 'A', 'A'); s['IIb3'] = ddII('A', 'A', 'b', 'A')
    s['IIb1_sym'] = ddII('A', 'b', 'A', 'A')
    return s
