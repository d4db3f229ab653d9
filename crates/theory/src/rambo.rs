//! RAMBO: uniform sampling of n-body massless phase space (Kleiss, Stirling, Ellis, *Comput.
//! Phys. Commun.* 40 (1986) 359), the background of the autoencoder study's mock bump hunt
//! (Batson, Haaf, Kahn, Roberts, arXiv 2102.08380; docs/derivations/autoencode.md#rambo).
//!
//! Algorithm (massless case, constant weight): draw n isotropic massless momenta q_i with
//! energies q⁰ = −ln(ρ₁ρ₂) (density q⁰e^{−q⁰}); with Q = Σ q_i, M = √(Q²), b = −Q⃗/M, γ = Q⁰/M,
//! a = 1/(1 + γ), x = √s/M, boost and scale them to the centre-of-mass frame:
//!   p⁰_i = x (γ q⁰_i + b·q⃗_i),   p⃗_i = x (q⃗_i + b q⁰_i + a (b·q⃗_i) b).
//! Then Σ p_i = (√s, 0⃗) and p_i² = 0 exactly up to rounding. For n = 3 the Dalitz plot is flat:
//! m²₁₂/s has density 2(1 − x) on [0, 1].

use rand::Rng;

/// A four-momentum (E, p_x, p_y, p_z).
pub type P4 = [f64; 4];

/// Minkowski square E² − |p⃗|².
pub fn mass2(p: &P4) -> f64 {
    p[0] * p[0] - p[1] * p[1] - p[2] * p[2] - p[3] * p[3]
}

/// One event of `n ≥ 2` massless particles at centre-of-mass energy `sqrt_s`.
pub fn event(n: usize, sqrt_s: f64, rng: &mut impl Rng) -> Vec<P4> {
    let q: Vec<P4> = (0..n)
        .map(|_| {
            let e = -(rng.random::<f64>() * rng.random::<f64>())
                .max(f64::MIN_POSITIVE)
                .ln();
            let q = isotropic(e, rng);
            [e, q[0], q[1], q[2]]
        })
        .collect();
    let mut tot = [0.0; 4];
    for p in &q {
        for k in 0..4 {
            tot[k] += p[k];
        }
    }
    let m = mass2(&tot).sqrt();
    let b = [-tot[1] / m, -tot[2] / m, -tot[3] / m];
    let g = tot[0] / m;
    let a = 1.0 / (1.0 + g);
    let x = sqrt_s / m;
    q.iter()
        .map(|qi| {
            let bq = b[0] * qi[1] + b[1] * qi[2] + b[2] * qi[3];
            [
                x * (g * qi[0] + bq),
                x * (qi[1] + b[0] * qi[0] + a * bq * b[0]),
                x * (qi[2] + b[1] * qi[0] + a * bq * b[1]),
                x * (qi[3] + b[2] * qi[0] + a * bq * b[2]),
            ]
        })
        .collect()
}

/// The norm N(p) = Σ_{i<n} |p⃗_i| + |Σ_{i<n} p⃗_i| of the first n − 1 three-momenta (p⃗_n =
/// −Σ_{i<n} p⃗_i eliminated): massless phase space at √s is the unit sphere of this norm on
/// ℝ^{3n−3}, i.e. homeomorphic to S^{3n−4}, with parity as the antipodal map
/// (docs/derivations/autoencode.md#phase-space-sphere).
pub fn phase_space_norm(ev: &[P4]) -> f64 {
    let n = ev.len();
    let mut sum = [0.0; 3];
    let mut s = 0.0;
    for p in &ev[..n - 1] {
        s += (p[1] * p[1] + p[2] * p[2] + p[3] * p[3]).sqrt();
        for k in 0..3 {
            sum[k] += p[k + 1];
        }
    }
    s + (sum[0] * sum[0] + sum[1] * sum[1] + sum[2] * sum[2]).sqrt()
}

/// The invariant mass √((p_i + p_j)²) of a pair.
pub fn pair_mass(a: &P4, b: &P4) -> f64 {
    let p = [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]];
    mass2(&p).max(0.0).sqrt()
}

/// An isotropic massless momentum of energy `e`.
fn isotropic(e: f64, rng: &mut impl Rng) -> [f64; 3] {
    let c = 2.0 * rng.random::<f64>() - 1.0;
    let s = (1.0 - c * c).max(0.0).sqrt();
    let f = 2.0 * std::f64::consts::PI * rng.random::<f64>();
    [e * s * f.cos(), e * s * f.sin(), e * c]
}

/// The mock signal of the bump hunt (arXiv 2102.08380 §5): the cascade 1 → R + p₃, R → p₁ + p₂
/// at centre-of-mass energy `sqrt_s`, both decays isotropic in their rest frames, with a
/// resonance of mass `m_r` ∈ (0, √s) and zero width, so m₁₂ = m_r exactly. In the CM frame
/// |p⃗_R| = |p⃗₃| = (s − m_r²)/(2√s), E_R = (s + m_r²)/(2√s); in R's rest frame |q⃗₁| = |q⃗₂| =
/// m_r/2; p₁, p₂ are q₁, q₂ boosted by β⃗ = p⃗_R/E_R:
///   E' = γ(E + b·q⃗),  with b = β⃗ and γ = 1/√(1 − b²),
///   q⃗' = q⃗ + b((γ − 1)(b·q⃗)/b² + γE).
pub fn resonance_event(m_r: f64, sqrt_s: f64, rng: &mut impl Rng) -> [P4; 3] {
    let s = sqrt_s * sqrt_s;
    let p = (s - m_r * m_r) / (2.0 * sqrt_s);
    let e_r = (s + m_r * m_r) / (2.0 * sqrt_s);
    let pr = isotropic(p, rng);
    let p3 = [p, -pr[0], -pr[1], -pr[2]];
    let b = [pr[0] / e_r, pr[1] / e_r, pr[2] / e_r];
    let b2 = b[0] * b[0] + b[1] * b[1] + b[2] * b[2];
    let g = 1.0 / (1.0 - b2).sqrt();
    let boost = |e: f64, q: [f64; 3]| -> P4 {
        let bq = b[0] * q[0] + b[1] * q[1] + b[2] * q[2];
        let k = if b2 > 0.0 {
            (g - 1.0) * bq / b2 + g * e
        } else {
            0.0
        };
        [
            g * (e + bq),
            q[0] + k * b[0],
            q[1] + k * b[1],
            q[2] + k * b[2],
        ]
    };
    let q = isotropic(m_r / 2.0, rng);
    [
        boost(m_r / 2.0, q),
        boost(m_r / 2.0, [-q[0], -q[1], -q[2]]),
        p3,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Massless, positive energies, Σp = (1, 0⃗) at √s = 1, and on the phase-space sphere, all to
    /// 1e-12 (rounding after the boosts; docs/derivations/autoencode.md#rambo).
    fn assert_physical(ev: &[P4]) {
        let mut tot = [0.0; 4];
        for p in ev {
            assert!(mass2(p).abs() < 1e-12, "p² = {}", mass2(p));
            assert!(p[0] > 0.0);
            for k in 0..4 {
                tot[k] += p[k];
            }
        }
        assert!((tot[0] - 1.0).abs() < 1e-12 && tot[1..].iter().all(|v| v.abs() < 1e-12));
        assert!((phase_space_norm(ev) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn events_conserve_momentum_and_are_massless() {
        // docs/derivations/autoencode.md#rambo: to ≤ 1e-12 (rounding of E² − |p⃗|² after the
        // boost and the rescaling by √s/M, which is large when the unboosted total mass M is
        // small).
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
        for n in [2, 3, 5] {
            for _ in 0..2000 {
                let ev = event(n, 1.0, &mut rng);
                assert_physical(&ev);
            }
        }
    }

    #[test]
    fn three_body_dalitz_plot_is_flat() {
        // m²₁₂ (√s = 1) has density 2(1 − x): with 2·10⁵ events in 10 bins each bin count is
        // binomial; allow 4 SE per bin (the smallest bin, p = 0.01, has a 2.2 % SE). A flat
        // Dalitz plot also makes (m²₁₂, m²₂₃) uniform on the triangle: the mean of m²₁₂ is 1/3.
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(2);
        let n = 200_000usize;
        let mut counts = [0usize; 10];
        let mut mean = 0.0;
        for _ in 0..n {
            let ev = event(3, 1.0, &mut rng);
            let p12 = [
                ev[0][0] + ev[1][0],
                ev[0][1] + ev[1][1],
                ev[0][2] + ev[1][2],
                ev[0][3] + ev[1][3],
            ];
            let x = mass2(&p12);
            mean += x / n as f64;
            counts[((x * 10.0) as usize).min(9)] += 1;
        }
        for (b, &c) in counts.iter().enumerate() {
            let (lo, hi) = (b as f64 / 10.0, (b + 1) as f64 / 10.0);
            let p = (2.0 * hi - hi * hi) - (2.0 * lo - lo * lo);
            let se = (n as f64 * p * (1.0 - p)).sqrt();
            assert!(
                (c as f64 - n as f64 * p).abs() < 4.0 * se,
                "bin {b}: {c} vs {}",
                n as f64 * p
            );
        }
        // SE of the mean: √(Var/n) with Var = 1/18 for density 2(1 − x): ≈ 5e-4.
        assert!((mean - 1.0 / 3.0).abs() < 2e-3, "{mean}");
    }

    #[test]
    fn resonance_events_sit_on_the_mass_shell_and_the_slice() {
        // Exact kinematics up to rounding: Σp = (√s, 0⃗), p_i² = 0, m₁₂ = m_R; and the events
        // lie on the phase-space sphere N(p) = 1 (the signal is inside the background's support).
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(3);
        for m_r in [0.2, 0.5, 0.9] {
            for _ in 0..2000 {
                let ev = resonance_event(m_r, 1.0, &mut rng);
                assert_physical(&ev);
                assert!((pair_mass(&ev[0], &ev[1]) - m_r).abs() < 1e-12);
            }
        }
        // Isotropy of the R decay: in the lab, ⟨cos θ₁₃⟩ between p₁ and p₃ is not symmetric, but
        // the p₁ ↔ p₂ exchange is: ⟨E₁ − E₂⟩ = 0 within 4 SE.
        let n = 20_000;
        let d: Vec<f64> = (0..n)
            .map(|_| {
                let ev = resonance_event(0.5, 1.0, &mut rng);
                ev[0][0] - ev[1][0]
            })
            .collect();
        let mean = d.iter().sum::<f64>() / n as f64;
        let sd = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
        assert!(
            mean.abs() < 4.0 * sd / (n as f64).sqrt(),
            "{mean} ± {}",
            sd / (n as f64).sqrt()
        );
    }
}
