//! Optimisers over flat parameter slices, for every training path (the trainer's parameter store,
//! whichever of the MLP kernel or candle's autograd gave the gradient; the GPT step): plain (S)GD, heavy-ball momentum, Adam and AdamW, in f32 or f64.
//!
//! Conventions (PyTorch's, which candle's `AdamW` follows): momentum buf ← β·buf + g,
//! θ ← θ − η·buf; Adam (Kingma & Ba, arXiv 1412.6980, Algorithm 1) m ← β₁m + (1−β₁)g,
//! v ← β₂v + (1−β₂)g², θ ← θ − η·(m·ĉ₁)/(√(v·ĉ₂) + ε) with ĉᵢ = 1/(1 − βᵢᵗ); AdamW
//! (Loshchilov & Hutter, arXiv 1711.05101) first decays θ ← θ(1 − η·λ).

use crate::real::Real;
use crate::NnError;
use serde::{Deserialize, Serialize};

/// An update rule (the step size is given per call, so that per-parameter rates — the NTK
/// scaling of PDLT §7.1 — and schedules stay outside).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    /// Full-batch gradient descent (the batch is the whole training set).
    Gd,
    /// Mini-batch stochastic gradient descent, θ ← θ − η·g.
    Sgd,
    /// SGD with heavy-ball momentum β.
    Momentum {
        /// Momentum coefficient β in [0, 1) (buf ← β·buf + g).
        beta: f64,
    },
    /// Adam (Kingma & Ba, arXiv 1412.6980) with bias correction.
    Adam {
        /// Decay β₁ of the first-moment average.
        beta1: f64,
        /// Decay β₂ of the second-moment average.
        beta2: f64,
        /// ε added to √v̂ in the denominator.
        eps: f64,
    },
    /// Adam with decoupled weight decay λ.
    AdamW {
        /// Decay β₁ of the first-moment average.
        beta1: f64,
        /// Decay β₂ of the second-moment average.
        beta2: f64,
        /// ε added to √v̂ in the denominator.
        eps: f64,
        /// Decoupled weight decay λ: θ ← θ(1 − η·λ) before the Adam step.
        weight_decay: f64,
    },
}

impl Optimizer {
    /// Adam with β = (0.9, 0.999), ε = 1e-8.
    pub const ADAM: Optimizer = Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };

    /// From a command-line name: gd, sgd, momentum (β = 0.9), adam.
    pub fn parse(s: &str) -> Result<Self, NnError> {
        Ok(match s {
            "gd" => Self::Gd,
            "sgd" => Self::Sgd,
            "momentum" => Self::Momentum { beta: 0.9 },
            "adam" => Self::ADAM,
            _ => {
                return Err(NnError::Invalid {
                    what: format!("--optimizer {s}"),
                    fix: "use gd, sgd, momentum or adam".into(),
                })
            }
        })
    }

    /// Whether the rule keeps a first and a second moment.
    pub fn moments(&self) -> (bool, bool) {
        match self {
            Self::Gd | Self::Sgd => (false, false),
            Self::Momentum { .. } => (true, false),
            Self::Adam { .. } | Self::AdamW { .. } => (true, true),
        }
    }
}

/// One update of the parameters `p` with gradient `g` and the rule's moments `m`, `v` (same
/// length; untouched where the rule keeps none), step size `lr`, at step `t` (from 1; Adam's
/// bias correction).
#[inline(always)]
pub fn update<T: Real>(
    opt: Optimizer,
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    lr: f64,
    t: i32,
) {
    let lr_t = T::of(lr);
    match opt {
        Optimizer::Gd | Optimizer::Sgd => p.iter_mut().zip(g).for_each(|(p, &g)| *p -= lr_t * g),
        Optimizer::Momentum { beta } => {
            let beta = T::of(beta);
            for ((p, &g), m) in p.iter_mut().zip(g).zip(m.iter_mut()) {
                *m = *m * beta + g;
                *p -= lr_t * *m;
            }
        }
        Optimizer::Adam { beta1, beta2, eps } => adam(p, g, m, v, (beta1, beta2, eps), lr, t),
        Optimizer::AdamW {
            beta1,
            beta2,
            eps,
            weight_decay,
        } => {
            let decay = T::of(1.0 - lr * weight_decay);
            p.iter_mut().for_each(|p| *p *= decay);
            adam(p, g, m, v, (beta1, beta2, eps), lr, t)
        }
    }
}

#[inline(always)]
fn adam<T: Real>(
    p: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    (beta1, beta2, eps): (f64, f64, f64),
    lr: f64,
    t: i32,
) {
    let (b1, b2, eps, lr) = (T::of(beta1), T::of(beta2), T::of(eps), T::of(lr));
    let (one_b1, one_b2) = (T::ONE - b1, T::ONE - b2);
    let c1 = T::of(1.0 / (1.0 - beta1.powi(t)));
    let c2 = T::of(1.0 / (1.0 - beta2.powi(t)));
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        *m = *m * b1 + g * one_b1;
        *v = *v * b2 + g * g * one_b2;
        *p -= lr * ((*m * c1) / ((*v * c2).sqrt() + eps));
    }
}

/// A rule's moments over one flat parameter vector, and the step count.
#[derive(Debug, Clone, Default)]
pub struct State<T> {
    /// First moment (momentum buffer, or Adam's m), one entry per parameter.
    pub m: Vec<T>,
    /// Adam's second moment v, one entry per parameter.
    pub v: Vec<T>,
    /// Steps taken so far (Adam's bias correction uses t after the increment, from 1).
    pub t: i32,
}

impl<T: Real> State<T> {
    /// One step θ ← update(θ, g) (moments sized on first use).
    pub fn step(&mut self, opt: Optimizer, theta: &mut [T], g: &[T], lr: f64) {
        if self.m.len() != theta.len() {
            self.m = vec![T::ZERO; theta.len()];
            self.v = vec![T::ZERO; theta.len()];
        }
        self.t += 1;
        update(opt, theta, g, &mut self.m, &mut self.v, lr, self.t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_first_step_moves_each_weight_by_the_learning_rate() {
        // At t = 1 the bias-corrected m̂ = g and v̂ = g², so the step is η·g/(|g| + ε): η·sign(g)
        // up to η·ε/|g| (≤ 5e-9 here) — for any g, which a wrong bias correction would break.
        let mut st = State::<f64>::default();
        let mut th = vec![1.0, -2.0, 0.5];
        st.step(Optimizer::ADAM, &mut th, &[0.3, -4.0, 2e-2], 0.01);
        for (a, b) in th.iter().zip([0.99, -1.99, 0.49]) {
            assert!((a - b).abs() < 1e-8, "{a} vs {b}");
        }
    }

    #[test]
    fn momentum_accumulates_and_adamw_decays() {
        let mut st = State::<f32>::default();
        let mut th = vec![0.0f32];
        for _ in 0..3 {
            st.step(Optimizer::Momentum { beta: 0.5 }, &mut th, &[1.0], 1.0);
        }
        // buf = 1, 1.5, 1.75 → θ = −4.25.
        assert_eq!(th[0], -4.25);
        // AdamW with g = 0 only decays: θ(1 − ηλ).
        let mut st = State::<f64>::default();
        let mut th = vec![2.0];
        let opt = Optimizer::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
        };
        st.step(opt, &mut th, &[0.0], 0.5);
        assert!((th[0] - 2.0 * 0.95).abs() < 1e-15);
    }
}
