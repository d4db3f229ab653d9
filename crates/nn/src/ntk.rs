//! Empirical NTK of a candle model at one input (PDLT eq. (7.17) with the learning-rate tensor
//! of §7.1): Ĥ_ij = Σ_μ λ_μ ∂z_i/∂θ_μ ∂z_j/∂θ_μ, with λ = λ_b for biases and λ_W/fan_in for
//! weights (λ_b^(l) may depend on the layer, e.g. λ_b/l). One backward pass per output neuron.

use crate::model::{Model, ParamKind};
use crate::NnError;
use candle_core::{DType, Tensor};
use dlt_theory::LearningRates;

/// Outputs z (n_L) and the n_L × n_L NTK (row-major) at a single input `x` (1 × n₀).
pub fn empirical_ntk(
    model: &dyn Model,
    x: &Tensor,
    lr: &LearningRates,
) -> Result<(Vec<f64>, Vec<f64>), NnError> {
    let out = model.forward(x)?;
    let nl = out.dim(1)?;
    let z: Vec<f64> = out.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
    // grads[i] = concatenated, √λ-scaled gradient of z_i.
    let mut grads: Vec<Vec<f64>> = Vec::with_capacity(nl);
    for i in 0..nl {
        let gs = out.narrow(1, i, 1)?.sum_all()?.backward()?;
        let mut flat = vec![];
        for p in model.params() {
            let (lambda_b, lambda_w) = lr.at(p.layer);
            let s = match p.kind {
                ParamKind::Weight { fan_in } => (lambda_w / fan_in as f64).sqrt(),
                ParamKind::Bias => lambda_b.sqrt(),
            };
            match gs.get(p.var.as_tensor()) {
                Some(g) => flat.extend(
                    g.to_dtype(DType::F64)?
                        .flatten_all()?
                        .to_vec1::<f64>()?
                        .into_iter()
                        .map(|v| v * s),
                ),
                None => flat.extend(std::iter::repeat_n(0.0, p.var.as_tensor().elem_count())),
            }
        }
        grads.push(flat);
    }
    let mut h = vec![0.0; nl * nl];
    for i in 0..nl {
        for j in i..nl {
            let v: f64 = grads[i].iter().zip(&grads[j]).map(|(a, b)| a * b).sum();
            h[i * nl + j] = v;
            h[j * nl + i] = v;
        }
    }
    Ok((z, h))
}
