//! The O(1/n) correction to the mean gradient-descent trajectory of a network trained on one
//! input (PDLT, Roberts–Yaida–Hanin, arXiv 2106.10165, ch. ∞: the finite-width dynamics built
//! from the NTK fluctuation, the dNTK and the two ddNTKs). The single-input form and its
//! derivation are ours: docs/derivations/trained.md#finite-width-trajectory.
//!
//! Set-up: one input x with one output, targets y, ℒ = ½(z − y)², full-batch GD with global step
//! η and the NTK learning rates, ε_t = z_t − y. Taylor-expanding z(θ_t − ηε_t λ∇z) to the third
//! order and the NTK and dNTK to the second and first (the definitions of
//! docs/derivations/dntk.md#definitions, single output):
//!
//!   ε_{t+1} = ε_t − ηH_tε_t + ½η² dH_t ε_t² − ⅙η³ ddI ε_t³,
//!   H_{t+1} = H_t − 2η dH_t ε_t + η²(ddI + ddII) ε_t²,
//!   dH_{t+1} = dH_t − η(ddI + 2 ddII) ε_t,
//!
//! with the single-output expectations (isotropy of the Gaussian last layer)
//! E[H_0] = Θ + Θ¹/n, Var H_0 = (A + 2B)/n, E[dH_0 z_0] = (P + 2Q)/n, E[ddI] = 3R/n,
//! E[ddII] = (S + T + U)/n. Expanding E[ε_t] to O(1/n) (second order in the NTK fluctuation,
//! first order in the rest; parity under flipping the last layer removes every other term) gives
//!
//!   E[z_t] = y(1 − a^t) + C(t)/n,   a = 1 − ηΘ,
//!   C(t) = y[Θ¹ tη a^{t−1} − ½(A + 2B) t(t−1) η² a^{t−2} − 2(P + 2Q) c_d(t)]
//!          − (y³ + 3yK)[3R c_r(t) + (S + T + U) c_s(t)],
//!
//! where c_d, c_r, c_s solve linear recursions driven by the zeroth-order trajectory a^t (see
//! [`mean_trajectory`]). C(t) → 0 as t → ∞: at convergence z = y for every network.

use crate::dntk::dntk_profile;
use crate::profile::{profile, ProfileConfig};
use crate::TheoryError;
use serde::{Deserialize, Serialize};

pub mod dataset;
pub mod test_input;

/// The output layer's statistics that the trajectory needs (single input; the notation of
/// [`crate::dntk::DntkLayer`] and [`crate::profile::Layer`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OutputStats {
    /// K at the output.
    #[serde(rename = "K")]
    pub k: f64,
    /// Θ, the infinite-width NTK.
    pub theta: f64,
    /// Θ¹: E[Ĥ] = Θ + Θ¹/n.
    pub theta1: f64,
    /// A + 2B: n Var Ĥ for one output.
    pub ntk_variance: f64,
    /// P + 2Q: n E[dĤ z] for one output.
    pub dntk: f64,
    /// 3R: n E[ddIĤ] for one output.
    pub ddntk_i: f64,
    /// S + T + U: n E[ddIIĤ] for one output.
    pub ddntk_ii: f64,
}

impl OutputStats {
    /// The statistics at the last layer of `cfg` from the recursions ([`profile`] for K, Θ, A, B;
    /// [`dntk_profile`] for Θ¹, P, Q, R, S, T, U).
    pub fn at_output(cfg: &ProfileConfig) -> Result<Self, TheoryError> {
        let rows = profile(cfg)?;
        let d = dntk_profile(cfg)?;
        let (last, dl) = (rows.last(), d.last());
        let (Some(last), Some(dl)) = (last, dl) else {
            return Err(TheoryError::Invalid {
                flag: "--depth",
                msg: "the trajectory needs at least one layer".into(),
            });
        };
        let (Some(a), Some(b)) = (last.a, last.b) else {
            return Err(TheoryError::Invalid {
                flag: "--lambda-w",
                msg: "the NTK variance (A, B) was not propagated; give NTK learning rates".into(),
            });
        };
        Ok(Self {
            k: last.k,
            theta: last.theta,
            theta1: dl.theta1,
            ntk_variance: a + 2.0 * b,
            dntk: dl.p + 2.0 * dl.q,
            ddntk_i: 3.0 * dl.r,
            ddntk_ii: dl.s + dl.t + dl.u,
        })
    }
}

/// One step of the mean trajectory: the infinite-width value and the O(1/n) coefficient, split
/// by origin (the four terms add up to `coefficient`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrajectoryPoint {
    /// GD step t.
    pub t: usize,
    /// Infinite-width mean y(1 − a^t).
    pub infinite: f64,
    /// C(t): E[z_t] = infinite + C(t)/n + O(1/n²).
    pub coefficient: f64,
    /// The NTK mean shift's part, yΘ¹tηa^{t−1}.
    pub theta1_term: f64,
    /// The NTK fluctuation's part, −½y(A + 2B)t(t−1)η²a^{t−2} (the sign follows from
    /// E[(1 − ηH)^t] > (1 − ηΘ)^t for a fluctuating H; docs/derivations/trained.md).
    pub variance_term: f64,
    /// The dNTK's part, −2y(P + 2Q)c_d(t).
    pub dntk_term: f64,
    /// The two ddNTKs' part, −(y³ + 3yK)(3R c_r + (S + T + U)c_s).
    pub ddntk_term: f64,
}

/// E[z_t] for t = 0..=steps at infinite width and its O(1/n) coefficient (module docs) for GD
/// with step `eta` towards target `y`. The zeroth-order trajectory is ε⁰_t = a^t ε_0; with
/// S_t = Σ_{u<t} a^u, W_t = Σ_{u<t} S_u a^u and V_t = Σ_{u<t} a^{2u} the first-order responses
/// (coefficients of ε_0², ε_0³ in ε_t per unit dNTK, ddI, ddII) obey, from c(0) = 0,
///
///   c_d(t+1) = a c_d + η²(2a^t S_t + ½a^{2t}),
///   c_r(t+1) = a c_r − η³[a^t(2W_t + V_t) + ½S_t a^{2t} + ⅙a^{3t}],
///   c_s(t+1) = a c_s − η³[a^t(4W_t + V_t) + S_t a^{2t}],
///
/// and E[ε_0²]-type averages use z_0 ~ N(0, K): E[dH ε_0²] = −2y(P + 2Q)/n,
/// E[ε_0³] = −(y³ + 3yK). Requires 0 < ηΘ < 2 (GD converges at infinite width).
pub fn mean_trajectory(
    s: &OutputStats,
    eta: f64,
    y: f64,
    steps: usize,
) -> Result<Vec<TrajectoryPoint>, TheoryError> {
    let a = 1.0 - eta * s.theta;
    if !(eta > 0.0 && a > -1.0 && a < 1.0) {
        return Err(TheoryError::Invalid {
            flag: "--eta",
            msg: format!(
                "ηΘ = {} is outside (0, 2): gradient descent does not converge; choose η < 2/Θ = {}",
                eta * s.theta,
                2.0 / s.theta
            ),
        });
    }
    if !y.is_finite() {
        return Err(TheoryError::Invalid {
            flag: "--y",
            msg: format!("the target must be finite, got {y}"),
        });
    }
    let eps3 = y * y * y + 3.0 * y * s.k;
    let resp = responses(a, eta, steps);
    let e2 = eta * eta;
    let mut out = Vec::with_capacity(steps + 1);
    for (t, r) in resp.iter().enumerate() {
        let (cd, cr, cs) = (r.cd, r.cr, r.cs);
        let tf = t as f64;
        let theta1_term = if t == 0 {
            0.0
        } else {
            y * s.theta1 * tf * eta * a.powi(t as i32 - 1)
        };
        let variance_term = if t < 2 {
            0.0
        } else {
            -0.5 * y * s.ntk_variance * tf * (tf - 1.0) * e2 * a.powi(t as i32 - 2)
        };
        let dntk_term = -2.0 * y * s.dntk * cd;
        let ddntk_term = -eps3 * (s.ddntk_i * cr + s.ddntk_ii * cs);
        out.push(TrajectoryPoint {
            t,
            infinite: y * (1.0 - a.powi(t as i32)),
            coefficient: theta1_term + variance_term + dntk_term + ddntk_term,
            theta1_term,
            variance_term,
            dntk_term,
            ddntk_term,
        });
    }
    Ok(out)
}

/// One step of [`responses`]: the first-order responses and the partial sums that drive them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Response {
    /// c_d(t), per unit dNTK.
    pub cd: f64,
    /// c_r(t), per unit ddI.
    pub cr: f64,
    /// c_s(t), per unit ddII.
    pub cs: f64,
    /// S_t = Σ_{u<t} a^u.
    pub s: f64,
    /// W_t = Σ_{u<t} S_u a^u.
    pub w: f64,
    /// V_t = Σ_{u<t} a^{2u}.
    pub v: f64,
}

/// The first-order responses c_d(t), c_r(t), c_s(t) of [`mean_trajectory`]'s recursions and the
/// sums S_t, W_t, V_t, t = 0..=steps, for a = 1 − ηΘ.
pub fn responses(a: f64, eta: f64, steps: usize) -> Vec<Response> {
    let (e2, e3) = (eta * eta, eta * eta * eta);
    let (mut cd, mut cr, mut cs) = (0.0f64, 0.0f64, 0.0f64);
    let (mut s_t, mut w_t, mut v_t) = (0.0f64, 0.0f64, 0.0f64);
    let mut out = Vec::with_capacity(steps + 1);
    for t in 0..=steps {
        out.push(Response {
            cd,
            cr,
            cs,
            s: s_t,
            w: w_t,
            v: v_t,
        });
        // Advance the responses from step t to t + 1 (sources use S_t, W_t, V_t of step t).
        let (at, a2t) = (a.powi(t as i32), a.powi(2 * t as i32));
        cd = a * cd + e2 * (2.0 * at * s_t + 0.5 * a2t);
        cr = a * cr - e3 * (at * (2.0 * w_t + v_t) + 0.5 * s_t * a2t + a2t * at / 6.0);
        cs = a * cs - e3 * (at * (4.0 * w_t + v_t) + s_t * a2t);
        w_t += s_t * at;
        v_t += a2t;
        s_t += at;
    }
    out
}

#[cfg(test)]
mod tests;
