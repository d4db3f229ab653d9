//! Single-input training-side recursions: the dNTK tensors P, Q, the ddNTK tensors R, S, T, U,
//! and the O(1/n) mean shifts K¹ (kernel) and Θ¹ (NTK), layer by layer.
//!
//! Sources: PDLT (Roberts, Yaida, Hanin, arXiv 2106.10165) ch. 11 "Representation learning"
//! (§11.2, the dNTK forward equation, the book's eq. (11.24), and its recursion) and ch. ∞
//! (§∞.3, the ddNTKs), ch. 4 for K¹. The single-input forms implemented here are **derived for
//! this project** and were not compared line by line with the book; see
//! docs/derivations/dntk.md for the definitions, the derivation rules, the checks and what is
//! unverified (notably one term of T, docs/derivations/dntk.md#t-term).
//!
//! Scope: plain MLPs with Gaussian weights and equal widths (the carried-over terms would get a
//! factor n_l/n_{l−1} otherwise); activations that are either smooth with σ'' and σ''' (see
//! [`crate::activation::Activation::d3`]) or scale-invariant (ReLU family, where σ'' = σ''' = 0
//! almost everywhere and the σ''-terms drop, docs/derivations/dntk.md#relu).

use crate::activation::{scale_invariant_slopes, Activation};
use crate::gauss::{hermite, rule1, Rule1};
use crate::profile::{profile, Init, ProfileConfig};
use crate::TheoryError;
use serde::{Deserialize, Serialize};

/// The Gaussian expectations at z ~ N(0, K) that the training-side recursions need beyond
/// [`crate::moments::Moments1`] (docs/derivations/dntk.md#moments).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DntkMoments {
    /// The variance K > 0 at which the expectations are taken.
    pub k: f64,
    /// ⟨σσ'²σ''⟩
    pub s_d2_dd: f64,
    /// ⟨σσ''⟩
    pub s_dd: f64,
    /// ⟨σ'³σ'''⟩
    pub d3_ddd: f64,
    /// ⟨σ'σ'''⟩
    pub d_ddd: f64,
    /// ⟨σ'⁴⟩
    pub d4: f64,
    /// ⟨σ'²σ''²⟩
    pub d2_dd2: f64,
    /// ⟨σ''²⟩
    pub dd2: f64,
    /// ⟨σ'²(z² − K)⟩ (so h = C_W·d2_z2/(4K²))
    pub d2_z2: f64,
    /// ⟨σ²(z⁴ − 6Kz² + 3K²)⟩ (so ∂²_K⟨σ²⟩ = s2_h4/(4K⁴))
    pub s2_h4: f64,
    /// ⟨σ'²(z⁴ − 6Kz² + 3K²)⟩ (so ∂²_K⟨σ'²⟩ = d2_h4/(4K⁴))
    pub d2_h4: f64,
}

impl DntkMoments {
    /// h = (C_W/(4K²))⟨σ'²(z² − K)⟩ = ½ ∂χ_⊥/∂K.
    pub fn h(&self, cw: f64) -> f64 {
        cw * self.d2_z2 / (4.0 * self.k * self.k)
    }
    /// ∂h/∂K = (C_W/2) ∂²_K⟨σ'²⟩.
    pub fn dh_dk(&self, cw: f64) -> f64 {
        cw * self.d2_h4 / (8.0 * self.k.powi(4))
    }
    /// ∂χ_∥/∂K = C_W ∂²_K⟨σ²⟩.
    pub fn dchi_par_dk(&self, cw: f64) -> f64 {
        cw * self.s2_h4 / (4.0 * self.k.powi(4))
    }
}

/// How [`dntk_moments`] evaluates the expectations for an activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DntkMethod {
    /// σ(z) = a₊z (z > 0), a₋z (z < 0): σ'' = σ''' = 0 almost everywhere, closed forms.
    ScaleInvariant {
        /// Slope for z > 0.
        a_plus: f64,
        /// Slope for z < 0.
        a_minus: f64,
    },
    /// Smooth σ with σ'' and σ''': quadrature (the rules of [`crate::gauss::rule1`]).
    Smooth,
}

impl DntkMethod {
    /// The method for `act`, or an error naming `--activation` when neither applies (a kinked
    /// activation that is not scale-invariant, e.g. ELU, or one without σ''/σ''').
    pub fn for_activation(act: &dyn Activation) -> Result<Self, TheoryError> {
        if let Some((a_plus, a_minus)) = scale_invariant_slopes(act) {
            return Ok(DntkMethod::ScaleInvariant { a_plus, a_minus });
        }
        let probe = [-1.3, 0.2, 0.9];
        if !act.kink_at_zero()
            && probe
                .iter()
                .all(|&z| act.d2(z).is_some() && act.d3(z).is_some())
        {
            return Ok(DntkMethod::Smooth);
        }
        Err(TheoryError::Invalid {
            flag: "--activation",
            msg: format!(
                "the dNTK/ddNTK recursions need a smooth activation with σ'' and σ''' or a \
                 scale-invariant one (ReLU family); '{}' is neither",
                act.name()
            ),
        })
    }
}

/// The expectations of [`DntkMoments`] at K > 0.
pub fn dntk_moments(
    act: &dyn Activation,
    method: DntkMethod,
    quad: &crate::gauss::QuadConfig,
    k: f64,
) -> DntkMoments {
    match method {
        DntkMethod::ScaleInvariant { a_plus, a_minus } => DntkMoments {
            k,
            // Every σ''/σ''' term vanishes almost everywhere. ⟨σ'²(z² − K)⟩, ⟨σ'²He₄⟩ and
            // ⟨σ²He₄⟩ vanish too: σ'² is constant and σ² ∝ z² on each half-line, and the
            // half-line moments of z^0 and z^2 against He₂ and He₄ are zero.
            d4: 0.5 * (a_plus.powi(4) + a_minus.powi(4)),
            ..Default::default()
        },
        DntkMethod::Smooth => {
            // Products of up to four derivatives of a saturating σ have nearer complex
            // singularities than the forward moments: Gauss–Hermite with the forward order (192)
            // leaves ~1e-9 relative error at K = 1 for tanh, twice that order ≤ 1e-12
            // (test `moments_satisfy_stein_identities_and_are_converged`). Above K = 1 the
            // composite rule of [`rule1`] is used as for the forward moments.
            let rule = if k <= 1.0 {
                hermite(2 * quad.gh1)
            } else {
                rule1(false, k, quad)
            };
            moments_with_rule(act, &rule, k)
        }
    }
}

/// [`DntkMoments`] of a smooth activation by the rule Σᵢ wᵢ g(√K xᵢ) for E[g(z)].
pub fn moments_with_rule(act: &dyn Activation, rule: &Rule1, k: f64) -> DntkMoments {
    let sk = k.sqrt();
    let mut o = DntkMoments {
        k,
        ..Default::default()
    };
    let unwrap = |v: Option<f64>| v.unwrap_or(f64::NAN);
    for (&x, &w) in rule.x.iter().zip(&rule.w) {
        let z = sk * x;
        let (s, d1) = act.f_d1(z);
        let (d2, d3) = (unwrap(act.d2(z)), unwrap(act.d3(z)));
        let dsq = d1 * d1;
        let (x2, he4) = (x * x, x * x * x * x - 6.0 * x * x + 3.0);
        o.s_d2_dd += w * s * dsq * d2;
        o.s_dd += w * s * d2;
        o.d3_ddd += w * dsq * d1 * d3;
        o.d_ddd += w * d1 * d3;
        o.d4 += w * dsq * dsq;
        o.d2_dd2 += w * dsq * d2 * d2;
        o.dd2 += w * d2 * d2;
        o.d2_z2 += w * dsq * (x2 - 1.0);
        o.s2_h4 += w * s * s * he4;
        o.d2_h4 += w * dsq * he4;
    }
    // The Hermite polynomials were taken in x = z/√K: restore the powers of K.
    o.d2_z2 *= k;
    o.s2_h4 *= k * k;
    o.d2_h4 *= k * k;
    o
}

/// One row of the training-side profile: statistics of layer l.
///
/// With i ≠ j distinct neurons of layer l and n its (equal) width, a single input, dĤ the dNTK
/// and ddIĤ, ddIIĤ the two ddNTKs of PDLT ch. 11 and ∞ (definitions in
/// docs/derivations/dntk.md#definitions): P = n E[dĤ_ijj z_i], Q = n E[dĤ_iij z_j],
/// R = n E[ddIĤ_iijj], S = n E[ddIIĤ_iijj], T = n E[ddIIĤ_ijij], U = n E[ddIIĤ_ijji];
/// E[z_i²] = K + K¹/n and E[Ĥ_ii] = Θ + Θ¹/n.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DntkLayer {
    /// Layer index l (1-based).
    pub l: usize,
    /// Kernel K^(l).
    #[serde(rename = "K")]
    pub k: f64,
    /// NTK mean Θ^(l).
    pub theta: f64,
    /// dNTK tensor P.
    #[serde(rename = "P")]
    pub p: f64,
    /// dNTK tensor Q.
    #[serde(rename = "Q")]
    pub q: f64,
    /// ddNTK tensor R (ddIĤ).
    #[serde(rename = "R")]
    pub r: f64,
    /// ddNTK tensor S (ddIIĤ).
    #[serde(rename = "S")]
    pub s: f64,
    /// ddNTK tensor T (ddIIĤ).
    #[serde(rename = "T")]
    pub t: f64,
    /// ddNTK tensor U (ddIIĤ).
    #[serde(rename = "U")]
    pub u: f64,
    /// O(1/n) kernel shift K¹.
    #[serde(rename = "K1")]
    pub k1: f64,
    /// O(1/n) NTK-mean shift Θ¹.
    pub theta1: f64,
}

impl DntkLayer {
    /// P/Θ².
    pub fn p_over_theta2(&self) -> f64 {
        self.p / (self.theta * self.theta)
    }
    /// Q/Θ².
    pub fn q_over_theta2(&self) -> f64 {
        self.q / (self.theta * self.theta)
    }
    /// R K/Θ³.
    pub fn r_k_over_theta3(&self) -> f64 {
        self.r * self.k / self.theta.powi(3)
    }
    /// S K/Θ³.
    pub fn s_k_over_theta3(&self) -> f64 {
        self.s * self.k / self.theta.powi(3)
    }
    /// T K/Θ³.
    pub fn t_k_over_theta3(&self) -> f64 {
        self.t * self.k / self.theta.powi(3)
    }
    /// U K/Θ³.
    pub fn u_k_over_theta3(&self) -> f64 {
        self.u * self.k / self.theta.powi(3)
    }
    /// A statistic by name (raw: `P` … `U`, `K1`, `theta1`; normalised: `P_over_theta2`,
    /// `Q_over_theta2`, `RK_over_theta3`, `SK_over_theta3`, `TK_over_theta3`, `UK_over_theta3`,
    /// `K1_over_K`, `theta1_over_theta`).
    pub fn stat(&self, name: &str) -> Option<f64> {
        Some(match name {
            "K" => self.k,
            "theta" => self.theta,
            "P" => self.p,
            "Q" => self.q,
            "R" => self.r,
            "S" => self.s,
            "T" => self.t,
            "U" => self.u,
            "K1" => self.k1,
            "theta1" => self.theta1,
            "P_over_theta2" => self.p_over_theta2(),
            "Q_over_theta2" => self.q_over_theta2(),
            "RK_over_theta3" => self.r_k_over_theta3(),
            "SK_over_theta3" => self.s_k_over_theta3(),
            "TK_over_theta3" => self.t_k_over_theta3(),
            "UK_over_theta3" => self.u_k_over_theta3(),
            "K1_over_K" => self.k1 / self.k,
            "theta1_over_theta" => self.theta1 / self.theta,
            _ => return None,
        })
    }
}

/// Solve the training-side single-input recursions for layers 1..=depth
/// (docs/derivations/dntk.md#recursions).
///
/// Uses [`profile`] for K, χ_∥, χ_⊥, V, Θ, B, D, F and the same learning rates: the λ_W in the
/// step l → l+1 is λ_W^(l+1) (λ_b never enters: biases have no second derivatives). Every
/// tensor starts at 0 at layer 1. Errors for orthogonal weights and residual networks (not
/// derived) and for activations that [`DntkMethod::for_activation`] rejects.
pub fn dntk_profile(cfg: &ProfileConfig) -> Result<Vec<DntkLayer>, TheoryError> {
    let e = &cfg.ensemble;
    if e.init != Init::Gaussian || e.is_residual() {
        return Err(TheoryError::Invalid {
            flag: if e.is_residual() { "--gamma" } else { "--init" },
            msg: "the dNTK/ddNTK recursions are derived only for plain MLPs with Gaussian weights"
                .into(),
        });
    }
    let method = DntkMethod::for_activation(&*e.act)?;
    let rows = profile(cfg)?;
    let cw = e.cw;
    let mut out = Vec::with_capacity(rows.len());
    let mut cur = DntkLayer {
        l: 1,
        k: rows[0].k,
        theta: rows[0].theta,
        p: 0.0,
        q: 0.0,
        r: 0.0,
        s: 0.0,
        t: 0.0,
        u: 0.0,
        k1: 0.0,
        theta1: 0.0,
    };
    for pair in rows.windows(2) {
        let (row, next) = (&pair[0], &pair[1]);
        out.push(cur);
        let m = dntk_moments(&*e.act, method, &e.quad, row.k);
        let (_, lw) = cfg.lr.at(row.l + 1);
        let (xp, xq) = (row.chi_par, row.chi_perp);
        let th = row.theta;
        let missing = || TheoryError::Diverged {
            layer: row.l,
            what: "the NTK fluctuations B, D, F are missing (not derived for this ensemble)".into(),
        };
        let b = row.b.ok_or_else(missing)?;
        let d = row.d.ok_or_else(missing)?;
        let f = row.f.ok_or_else(missing)?;
        let f_next = next.f.ok_or_else(missing)?;
        let h = m.h(cw);
        let lr = lw / cw;
        // docs/derivations/dntk.md#recursions
        let src_p = cw * cw * m.s_d2_dd * th * th;
        let p = xp * xq * cur.p + src_p + xq * cw * m.s_dd * b;
        let q = xp * xq * cur.q + src_p + 2.0 * h * xp * th * f + lr * f_next;
        let r = xq * xq * cur.r
            + lw * cw * m.s_d2_dd * th * th
            + lw * xq * m.s_dd * b
            + lr * xp * xq * cur.p
            + cw * cw * m.d3_ddd * th.powi(3)
            + xq * cw * m.d_ddd * th * b
            + 2.0 * h * xq * th * cur.p;
        let src_u = cw * cw * m.d2_dd2 * th.powi(3);
        let s = xq * xq * cur.s
            + lw * cw * m.d4 * th * th
            + lr * xq * xq * b
            + src_u
            + xq * cw * m.dd2 * th * b;
        // docs/derivations/dntk.md#t-term: the 2·(λ_W/C_W)·χ_∥·2hΘF term is the unverified one.
        let t = xq * xq * cur.t
            + lr * lr * f_next
            + 2.0 * lw * cw * m.s_d2_dd * th * th
            + 2.0 * lr * xp * (2.0 * h * th * f + xq * cur.q)
            + src_u
            + 4.0 * h * h * th * th * f
            + 4.0 * h * xq * th * cur.q;
        let u = xq * xq * cur.u + src_u;
        // docs/derivations/dntk.md#mean-shifts
        let k1 = xp * cur.k1 + 0.5 * row.v * m.dchi_par_dk(cw);
        let theta1 = xq * cur.theta1
            + lr * (xp * cur.k1 + 0.5 * row.v * m.dchi_par_dk(cw))
            + th * (2.0 * h * cur.k1 + row.v * m.dh_dk(cw))
            + 2.0 * h * (d + 2.0 * f);
        cur = DntkLayer {
            l: next.l,
            k: next.k,
            theta: next.theta,
            p,
            q,
            r,
            s,
            t,
            u,
            k1,
            theta1,
        };
        for (name, v) in [("P", p), ("Q", q), ("R", r), ("S", s), ("T", t), ("U", u)] {
            if !v.is_finite() || v.abs() > 1e300 {
                return Err(TheoryError::Diverged {
                    layer: next.l,
                    what: format!("{name} overflowed ({v:e}); lower the depth or move towards criticality (χ = 1)"),
                });
            }
        }
    }
    out.push(cur);
    Ok(out)
}

#[cfg(test)]
mod tests;
