"""Batched MLPs (no biases: C_b = 0 and lambda_b = 0, so biases are zero and frozen), NTK
parameterisation W^(l) ~ N(0, C_W/fan_in), learning rate lambda_W/fan_in per weight.
Output-neuron tensors of two inputs (A, beta) computed *from the definitions* by directional
derivatives in parameter space (no forward equations):
  v = lambda grad z_A, u = lambda grad z_beta,
  dH_{d0 d1 d2} = D^2 z_{d0}[lambda g_{d1}, lambda g_{d2}],  ddI = D^3 z_{d0}[...],
  ddII_{i1 i2 i3 i4} = (Hess z_{i1} lambda g_{i3})^T lambda (Hess z_{i2} lambda g_{i4}).
Third-order Taylor jets give D^3; Hessian-vector products come from back-propagating the
tangent network. Cost O(L n^2) per network.
"""
import numpy as np


def act(name):
    if name == 'tanh':
        P = np.polynomial.Polynomial
        polys = [P([0, 1])]
        for _ in range(7):
            polys.append(polys[-1].deriv()*P([1, 0, -1]))
        def f(z, k):
            return polys[k](np.tanh(z))
    elif name == 'sin':
        def f(z, k):
            return [np.sin, np.cos, lambda x: -np.sin(x), lambda x: -np.cos(x)][k % 4](z)
    else:
        raise ValueError(name)
    return f


def init(rng, S, n0, n, L, CW=1.0):
    """list of L weight arrays (S, out, in); widths n0 -> n ... n -> 1."""
    dims = [n0] + [n]*(L-1) + [1]
    return [np.sqrt(CW/dims[l])*rng.standard_normal((S, dims[l+1], dims[l])) for l in range(L)]


def lam(Ws, lamW=1.0):
    return [lamW/W.shape[2] for W in Ws]


def forward(Ws, x, f):
    """x (n0,) or (S, n0). Returns list of preactivations z_l (S, n_l), l = 1..L."""
    S = Ws[0].shape[0]
    h = np.broadcast_to(x, (S, Ws[0].shape[2]))
    zs = []
    for l, W in enumerate(Ws):
        z = np.einsum('soi,si->so', W, h)
        zs.append(z)
        h = f(z, 0)
    return zs


def grad(Ws, zs, x, f):
    """d z_L / dW_l for the single output: list of (S, out, in)."""
    L = len(Ws); S = Ws[0].shape[0]
    g = [None]*L
    delta = np.ones((S, 1))                        # dz_L/dz_L
    for l in range(L-1, -1, -1):
        inp = np.broadcast_to(x, (S, Ws[0].shape[2])) if l == 0 else f(zs[l-1], 0)
        g[l] = delta[:, :, None]*inp[:, None, :]
        if l > 0:
            delta = np.einsum('so,soi->si', delta, Ws[l])*f(zs[l-1], 1)
    return g


def jet3(Ws, Vs, x, f):
    """Taylor coefficients c1, c2, c3 of z_L(theta + s V) (output, shape (S,))."""
    S = Ws[0].shape[0]
    xx = np.broadcast_to(x, (S, Ws[0].shape[2]))
    c = [np.einsum('soi,si->so', Ws[0], xx), np.einsum('soi,si->so', Vs[0], xx), 0*Ws[0][:, :, 0], 0*Ws[0][:, :, 0]]
    for l in range(1, len(Ws)):
        c0, c1, c2, c3 = c
        d1, d2, d3 = f(c0, 1), f(c0, 2), f(c0, 3)
        e = [f(c0, 0), d1*c1, d1*c2 + 0.5*d2*c1*c1, d1*c3 + d2*c1*c2 + d3*c1**3/6]
        W, V = Ws[l], Vs[l]
        c = [np.einsum('soi,si->so', W, e[0])]
        for k in range(1, 4):
            c.append(np.einsum('soi,si->so', W, e[k]) + np.einsum('soi,si->so', V, e[k-1]))
    return c[1][:, 0], c[2][:, 0], c[3][:, 0]


def hvp(Ws, Vs, zs, x, f):
    """Gradient wrt all W of the tangent output Dz_L[V] (= Hess z_L . V): list (S, out, in)."""
    L = len(Ws); S = Ws[0].shape[0]
    xx = np.broadcast_to(x, (S, Ws[0].shape[2]))
    # tangent forward
    zd = [np.einsum('soi,si->so', Vs[0], xx)]
    for l in range(1, L):
        zd.append(np.einsum('soi,si->so', Vs[l], f(zs[l-1], 0))
                  + np.einsum('soi,si->so', Ws[l], f(zs[l-1], 1)*zd[l-1]))
    out = [None]*L
    a = np.zeros((S, 1)); ad = np.ones((S, 1))     # adjoints of z_L and zdot_L
    for l in range(L-1, -1, -1):
        if l == 0:
            out[0] = a[:, :, None]*xx[:, None, :]
            break
        s0, s1, s2 = f(zs[l-1], 0), f(zs[l-1], 1), f(zs[l-1], 2)
        out[l] = a[:, :, None]*s0[:, None, :] + ad[:, :, None]*(s1*zd[l-1])[:, None, :]
        WTad = np.einsum('so,soi->si', ad, Ws[l])
        a_new = s1*np.einsum('so,soi->si', a, Ws[l]) + s1*np.einsum('so,soi->si', ad, Vs[l]) + s2*zd[l-1]*WTad
        ad = s1*WTad
        a = a_new
    return out


def dot(g1, g2, lams):
    return sum(lm*np.einsum('soi,soi->s', a, b) for a, b, lm in zip(g1, g2, lams))


def scale(g, lams):
    return [lm*a for a, lm in zip(g, lams)]


def output_tensors(Ws, xA, xb, f, lamW=1.0):
    """Per-network output quantities (dict of arrays (S,))."""
    lams = lam(Ws, lamW)
    zA = forward(Ws, xA, f); zb = forward(Ws, xb, f)
    gA = grad(Ws, zA, xA, f); gb = grad(Ws, zb, xb, f)
    v = scale(gA, lams); u = scale(gb, lams)
    HvA = hvp(Ws, v, zA, xA, f)        # Hess z_A . v
    Hvb = hvp(Ws, v, zb, xb, f)        # Hess z_b . v
    HuA = hvp(Ws, u, zA, xA, f)        # Hess z_A . u
    o = dict(zA=zA[-1][:, 0], zb=zb[-1][:, 0], HAA=dot(gA, gA, lams), HbA=dot(gb, gA, lams))
    o['dAAA'] = sum(np.einsum('soi,soi->s', a, b) for a, b in zip(HvA, v))
    o['dbAA'] = sum(np.einsum('soi,soi->s', a, b) for a, b in zip(Hvb, v))
    o['dAbA'] = sum(np.einsum('soi,soi->s', a, b) for a, b in zip(HvA, u))
    o['IIAAAA'] = dot(HvA, HvA, lams)
    o['IIbAAA'] = dot(Hvb, HvA, lams)
    o['IIAAbA'] = dot(HuA, HvA, lams)
    # third derivatives from jets
    _, c2, c3 = jet3(Ws, v, xA, f); o['IAAAA'] = 6*c3; o['chk_dAAA'] = 2*c2
    _, c2, c3 = jet3(Ws, v, xb, f); o['IbAAA'] = 6*c3; o['chk_dbAA'] = 2*c2
    fp = 6*jet3(Ws, [a + b for a, b in zip(v, u)], xA, f)[2]
    fm = 6*jet3(Ws, [a - b for a, b in zip(v, u)], xA, f)[2]
    fu = 6*jet3(Ws, u, xA, f)[2]
    o['IAbAA'] = (fp - fm - 2*fu)/6
    return o
