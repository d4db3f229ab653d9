import numpy as np, netlib as nl
rng = np.random.default_rng(0)
f = nl.act('tanh')
# derivative formulas of tanh vs finite differences
z = np.linspace(-2, 2, 7); h = 1e-4
for k in range(6):
    fd = (f(z+h, k) - f(z-h, k))/(2*h)
    assert np.abs(fd - f(z, k+1)).max() < 1e-6, k
Ws = nl.init(rng, 3, 2, 5, 3)
xA = np.array([np.sqrt(2), 0.0]); xb = np.sqrt(2)*np.array([0.5, np.sqrt(3)/2])
o = nl.output_tensors(Ws, xA, xb, f)
print('jet vs hvp dAAA', np.abs(o['dAAA'] - o['chk_dAAA']).max(), 'dbAA', np.abs(o['dbAA'] - o['chk_dbAA']).max())
# finite differences in parameter space for ddI_AbAA and ddII_AAbA
lams = nl.lam(Ws)
def zout(Wp, x): return nl.forward(Wp, x, f)[-1][:, 0]
zA = nl.forward(Ws, xA, f); zb = nl.forward(Ws, xb, f)
v = nl.scale(nl.grad(Ws, zA, xA, f), lams); u = nl.scale(nl.grad(Ws, zb, xb, f), lams)
def shift(Wp, d, s): return [a + s*b for a, b in zip(Wp, d)]
e = 1e-3
# D^2 z_A[u, v] via FD of the gradient along v then dot u
def Dz(Wp, x, d):
    zz = nl.forward(Wp, x, f); g = nl.grad(Wp, zz, x, f)
    return sum(np.einsum('soi,soi->s', a, b) for a, b in zip(g, d))
d2 = (Dz(shift(Ws, v, e), xA, u) - Dz(shift(Ws, v, -e), xA, u))/(2*e)
print('dAbA FD', d2, o['dAbA'])
# D^3 z_A[u,v,v] = d^2/ds^2 of Dz_A[u] along v
d3 = (Dz(shift(Ws, v, e), xA, u) - 2*Dz(Ws, xA, u) + Dz(shift(Ws, v, -e), xA, u))/e**2
print('IAbAA FD', d3, o['IAbAA'])
# ddII_AAbA = (Hess_A u)^T lam (Hess_A v): Hess_A u = d/ds grad z_A(theta + s u)
def gA(Wp): zz = nl.forward(Wp, xA, f); return nl.grad(Wp, zz, xA, f)
Hu = [(a - b)/(2*e) for a, b in zip(gA(shift(Ws, u, e)), gA(shift(Ws, u, -e)))]
Hv = [(a - b)/(2*e) for a, b in zip(gA(shift(Ws, v, e)), gA(shift(Ws, v, -e)))]
print('IIAAbA FD', nl.dot(Hu, Hv, lams), o['IIAAbA'])
def gb(Wp): zz = nl.forward(Wp, xb, f); return nl.grad(Wp, zz, xb, f)
Hvb = [(a - b)/(2*e) for a, b in zip(gb(shift(Ws, v, e)), gb(shift(Ws, v, -e)))]
print('IIbAAA FD', nl.dot(Hvb, Hv, lams), o['IIbAAA'])
d3b = (Dz(shift(Ws, v, e), xb, v) - 2*Dz(Ws, xb, v) + Dz(shift(Ws, v, -e), xb, v))/e**2
print('IbAAA FD', d3b, o['IbAAA'])
