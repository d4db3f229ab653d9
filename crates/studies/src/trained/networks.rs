//! Finite-width networks trained the way the kernel theory describes them: an MLP with weights
//! W ~ N(0, C_W/fan_in), zero biases (C_b = 0), trained by full-batch gradient descent on
//! ℒ = ½ Σ_α Σ_i (z_{i;α} − y_{i;α})² with the NTK learning rates of PDLT §7.1 (a weight of layer
//! l steps by η·λ_W/n_{l−1}, a bias by η·λ_b). Its infinite-width limit is the frozen-NTK
//! dynamics of [`dlt_theory::kernels::ntk_mean`] at the same η and step count.
//!
//! Antithetic pairs (docs/derivations/trained.md#antithetic-pairs): each network has a partner
//! whose last-layer weights and biases are negated, so z(0) → −z(0) with the same NTK; for the
//! linearised model the pair mean is exactly Θ̂_BAΘ̂_AA⁻¹U_t y, so the O(1) spread of the initial
//! function cancels and only the finite-width fluctuations remain.

use crate::study::StudyError;
use dlt_nn::mlp::{Batch, Mlp, Workspace};
use dlt_nn::model::ActKind;

/// One architecture and its training rule.
#[derive(Debug, Clone)]
pub struct GdSetup {
    /// The MLP (input, hidden widths, outputs).
    pub net: Mlp,
    /// Weight variance C_W (every layer).
    pub cw: f64,
    /// λ_W (weights step by η·λ_W/fan_in).
    pub lambda_w: f64,
    /// Global step η (in the units of ℒ = ½ Σ, as in the kernel theory).
    pub eta: f64,
    /// Full-batch steps.
    pub steps: usize,
}

impl GdSetup {
    /// `depth` Dense layers (depth − 1 hidden layers of `width`) from `dim` inputs to `outputs`.
    pub fn new(
        act: ActKind,
        dim: usize,
        width: usize,
        depth: usize,
        outputs: usize,
        (cw, lambda_w): (f64, f64),
        (eta, steps): (f64, usize),
    ) -> Result<Self, StudyError> {
        let mut widths = vec![dim];
        widths.extend(std::iter::repeat_n(width, depth - 1));
        widths.push(outputs);
        Ok(Self {
            net: Mlp::new(widths, act)?,
            cw,
            lambda_w,
            eta,
            steps,
        })
    }

    /// Initial parameters of network `seed`: W ~ N(0, C_W/fan_in), b = 0; with `partner` the
    /// last layer's weights are negated (biases are zero already).
    pub fn init(&self, seed: u64, partner: bool) -> Vec<f64> {
        let s = self.cw.sqrt();
        let mut theta: Vec<f64> = self.net.init(seed).into_iter().map(|v| v * s).collect();
        if partner {
            let last = self.net.layout().entries().len() - 2;
            theta[self.net.layout().entry(last).range()]
                .iter_mut()
                .for_each(|v| *v = -*v);
        }
        theta
    }

    /// Train θ for `steps` full-batch GD steps on (x, y) (N rows); the network's gradient is of
    /// the batch-mean loss, so each step is scaled by N to follow ℒ = ½ Σ. A non-finite loss is
    /// [`dlt_nn::NnError::Diverged`].
    pub fn train(&self, theta: &mut [f64], x: &[f64], y: &[f64]) -> Result<(), StudyError> {
        self.train_observed(theta, x, y, &mut |_| Ok(()))
    }

    /// [`GdSetup::train`] on (x, y), returning the outputs on the inputs `seen` (M rows, training
    /// inputs or others) before every step and after the last: (steps + 1)·M·outputs values.
    pub fn train_observing(
        &self,
        theta: &mut [f64],
        (x, y): (&[f64], &[f64]),
        seen: &[f64],
    ) -> Result<Vec<f64>, StudyError> {
        let mut out = Vec::with_capacity((self.steps + 1) * seen.len());
        self.train_observed(theta, x, y, &mut |th| {
            out.extend(self.net.logits(th, seen)?);
            Ok(())
        })?;
        out.extend(self.net.logits(theta, seen)?);
        Ok(out)
    }

    /// The GD loop, calling `observe(θ)` before every step.
    fn train_observed(
        &self,
        theta: &mut [f64],
        x: &[f64],
        y: &[f64],
        observe: &mut dyn FnMut(&[f64]) -> Result<(), StudyError>,
    ) -> Result<(), StudyError> {
        let outputs = *self.net.widths.last().expect("validated MLP");
        let n = y.len() / outputs;
        let rates: Vec<f64> = self
            .net
            .layout()
            .entries()
            .iter()
            .map(|e| match e.shape.as_slice() {
                [_, fan_in] => self.eta * self.lambda_w * n as f64 / *fan_in as f64,
                _ => 0.0, // biases: λ_b = C_b = 0
            })
            .collect();
        let mut ws = Workspace::default();
        for step in 0..self.steps {
            observe(theta)?;
            let pt = self
                .net
                .at_with(theta, Batch::values(x, y, outputs), ws, false)?;
            if !pt.loss.is_finite() {
                return Err(StudyError::Nn(dlt_nn::NnError::Diverged {
                    step,
                    loss: pt.loss,
                }));
            }
            ws = pt.into_workspace();
            for (e, &r) in self.net.layout().entries().iter().zip(&rates) {
                for (t, g) in theta[e.range()].iter_mut().zip(&ws.grad[e.range()]) {
                    *t -= r * g;
                }
            }
        }
        Ok(())
    }

    /// Test outputs (M×outputs) of the pair (network `seed`, its partner) after training.
    pub fn train_pair(
        &self,
        seed: u64,
        (x, y): (&[f64], &[f64]),
        test_x: &[f64],
    ) -> Result<[Vec<f64>; 2], StudyError> {
        let mut out: [Vec<f64>; 2] = [vec![], vec![]];
        for (k, partner) in [false, true].into_iter().enumerate() {
            let mut theta = self.init(seed, partner);
            self.train(&mut theta, x, y)?;
            out[k] = self.net.logits(&theta, test_x)?;
        }
        Ok(out)
    }
}

/// The largest eigenvalue of a symmetric PSD N×N matrix by power iteration (200 steps from a
/// fixed, non-symmetric start vector): used for the step η = c/λ_max; a slight underestimate
/// only makes η·λ_max slightly above c < 2.
pub fn largest_eigenvalue(a: &[f64], n: usize) -> f64 {
    let mut v: Vec<f64> = (0..n)
        .map(|i| 1.0 + ((i * 7919) % 13) as f64 / 26.0)
        .collect();
    let mut lam = 0.0;
    for _ in 0..200 {
        let w: Vec<f64> = a
            .chunks_exact(n)
            .map(|row| row.iter().zip(&v).map(|(a, b)| a * b).sum())
            .collect();
        let norm = w.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm == 0.0 {
            return 0.0;
        }
        lam = v.iter().zip(&w).map(|(a, b)| a * b).sum();
        v = w.into_iter().map(|x| x / norm).collect();
    }
    lam
}
