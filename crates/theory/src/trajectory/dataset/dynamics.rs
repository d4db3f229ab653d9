//! One network's gradient-descent dynamics, expanded to the order the O(1/n) mean needs
//! (docs/derivations/trained_dataset.md#dynamics). Inputs 0..n_a are trained on, n_a..n are read
//! only. With ε_α = z_α − y_α (training inputs α; every sum below runs over them) and the
//! λ-weighted derivative tensors of docs/derivations/dntk.md#definitions at the one output:
//!
//!   z_δ'       = z_δ − η Σ H_δα ε_α + ½η² Σ dH_δαα' ε_α ε_α' − ⅙η³ Σ ddI_δαα'α'' ε_α ε_α' ε_α''
//!   H_ab'      = H_ab − η Σ (dH_abα + dH_baα) ε_α + η² Σ (½ddI_abαα' + ½ddI_baαα' + ddII_abαα') ε_α ε_α'
//!   dH_abc'    = dH_abc − η Σ (ddI_abcα + ddII_abcα + ddII_acbα) ε_α
//!
//! (a Taylor expansion of z, λ∇z_a·∇z_b and ∇²z_a[λ∇z_b, λ∇z_c] at θ − ηΣ ε_α λ∇z_α; the ddNTKs'
//! own drift and higher derivatives are O(1/n²)). Only entries with at most one read-only index
//! are ever needed (a test output is never multiplied by anything), so only those are updated:
//! the others keep whatever they held and are never read.

use super::dual::Scalar;

/// Flat index helpers for n inputs.
#[derive(Debug, Clone, Copy)]
pub(super) struct Idx {
    /// All inputs.
    pub n: usize,
    /// Training inputs (the first n_a).
    pub na: usize,
}

impl Idx {
    pub fn i2(&self, a: usize, b: usize) -> usize {
        a * self.n + b
    }
    pub fn i3(&self, a: usize, b: usize, c: usize) -> usize {
        (a * self.n + b) * self.n + c
    }
    pub fn i4(&self, a: usize, b: usize, c: usize, d: usize) -> usize {
        ((a * self.n + b) * self.n + c) * self.n + d
    }
    /// Number of read-only (test) inputs among `ix`.
    pub fn tests(&self, ix: &[usize]) -> usize {
        ix.iter().filter(|&&i| i >= self.na).count()
    }
}

/// The per-network state: outputs on every input, the NTK and (when the run tracks it) the
/// dNTK; the ddNTKs are constant.
#[derive(Debug, Clone)]
pub(super) struct Net<T> {
    /// z_δ, n entries.
    pub z: Vec<T>,
    /// H_ab, n×n.
    pub h: Vec<T>,
    /// dH_abc, n³ (None: identically zero and never sourced).
    pub dh: Option<Vec<T>>,
}

/// The constant ddNTKs of a run (None: zero).
#[derive(Debug, Clone, Copy)]
pub(super) struct Fixed<'a, T> {
    pub ddi: Option<&'a [T]>,
    pub ddii: Option<&'a [T]>,
}

impl<T> Fixed<'_, T> {
    /// No ddNTKs.
    pub fn none() -> Self {
        Self {
            ddi: None,
            ddii: None,
        }
    }
}

/// Run `steps` GD steps from `net` with targets `y` (n_a entries) and step `eta`; returns z
/// on every input at t = 0..=steps.
pub(super) fn run<T: Scalar>(
    mut net: Net<T>,
    fixed: Fixed<'_, T>,
    y: &[f64],
    eta: f64,
    ix: Idx,
    steps: usize,
) -> Vec<Vec<T>> {
    let mut out = Vec::with_capacity(steps + 1);
    out.push(net.z.clone());
    for _ in 0..steps {
        net = step(&net, fixed, y, eta, ix);
        out.push(net.z.clone());
    }
    out
}

/// One GD step (module docs); every right-hand side uses the state before the step.
fn step<T: Scalar>(net: &Net<T>, fixed: Fixed<'_, T>, y: &[f64], eta: f64, ix: Idx) -> Net<T> {
    let (n, na) = (ix.n, ix.na);
    let zero = T::constant(0.0);
    let eps: Vec<T> = (0..na).map(|a| net.z[a] - T::constant(y[a])).collect();
    let ee: Vec<T> = (0..na * na).map(|k| eps[k / na] * eps[k % na]).collect();
    // Σ_α X[.., α] ε_α and Σ_αα' X[.., α, α'] ε_α ε_α' over the trailing training slots.
    let dot1 = |x: &[T], base: usize| -> T {
        let mut s = zero;
        for (a, &e) in eps.iter().enumerate() {
            s += x[base + a] * e;
        }
        s
    };
    let dot2 = |x: &[T], base: usize| -> T {
        let mut s = zero;
        for a in 0..na {
            for b in 0..na {
                s += x[base + a * n + b] * ee[a * na + b];
            }
        }
        s
    };

    // The ddNTKs contracted with ε ε on their last two slots, for every pair (a, b).
    let mut ddi2 = vec![zero; n * n];
    let mut ddii2 = vec![zero; n * n];
    for a in 0..n {
        for b in 0..n {
            if ix.tests(&[a, b]) > 1 {
                continue;
            }
            if let Some(d) = fixed.ddi {
                ddi2[ix.i2(a, b)] = dot2(d, ix.i4(a, b, 0, 0));
            }
            if let Some(d) = fixed.ddii {
                ddii2[ix.i2(a, b)] = dot2(d, ix.i4(a, b, 0, 0));
            }
        }
    }

    let mut z = net.z.clone();
    for (d, zd) in z.iter_mut().enumerate() {
        let mut dz = zero - dot1(&net.h, ix.i2(d, 0)) * eta;
        if let Some(dh) = &net.dh {
            dz += dot2(dh, ix.i3(d, 0, 0)) * (0.5 * eta * eta);
        }
        if fixed.ddi.is_some() {
            let mut s = zero;
            for (a, &e) in eps.iter().enumerate() {
                s += ddi2[ix.i2(d, a)] * e;
            }
            dz += s * (-eta * eta * eta / 6.0);
        }
        *zd += dz;
    }

    let mut h = net.h.clone();
    for a in 0..n {
        for b in 0..n {
            if ix.tests(&[a, b]) > 1 {
                continue;
            }
            let mut dh_ab = zero;
            if let Some(dh) = &net.dh {
                dh_ab = (dot1(dh, ix.i3(a, b, 0)) + dot1(dh, ix.i3(b, a, 0))) * (-eta);
            }
            let second = (ddi2[ix.i2(a, b)] + ddi2[ix.i2(b, a)]) * 0.5 + ddii2[ix.i2(a, b)];
            h[ix.i2(a, b)] += dh_ab + second * (eta * eta);
        }
    }

    let dh = net.dh.as_ref().map(|dh| {
        let mut next = dh.clone();
        if fixed.ddi.is_none() && fixed.ddii.is_none() {
            return next;
        }
        for a in 0..n {
            for b in 0..n {
                for c in 0..n {
                    if ix.tests(&[a, b, c]) > 1 {
                        continue;
                    }
                    let mut s = zero;
                    if let Some(d) = fixed.ddi {
                        s += dot1(d, ix.i4(a, b, c, 0));
                    }
                    if let Some(d) = fixed.ddii {
                        s += dot1(d, ix.i4(a, b, c, 0)) + dot1(d, ix.i4(a, c, b, 0));
                    }
                    next[ix.i3(a, b, c)] += s * (-eta);
                }
            }
        }
        next
    });
    Net { z, h, dh }
}
