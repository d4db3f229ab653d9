//! A second rounding error: how much a quantised model's scores owe to its quantisation.
//!
//! A GGUF block type with one step per block of 32 weights — Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 —
//! stores each weight as w = d·q (+ m), q an integer, d the block's step (llama.cpp's
//! reference quantisers; `ggml-quants.c`). The full-precision weight it came from was rounded
//! to the nearest grid point, so it lay within d/2 of the stored value, and for weights spread
//! over many steps the rounding error is close to uniform on [−d/2, d/2], variance d²/12 (the
//! classical quantisation-noise model; tested on candle's Q4_1 quantiser below: 1.004 ± 0.007
//! of d²/12 away from the block's extremes, which Q4_1 stores exactly).
//!
//! [`add_rounding_noise`] adds independent u ~ √K · U[−d/2, d/2] to every stored weight: K·d²/12
//! per weight. The file's own rounding added a little less, since each block stores some
//! weights exactly (Q4_1, Q5_1: its min and max, 30 of 32 rounded; Q4_0, Q5_0, Q8_0: its
//! largest magnitude, 31 of 32): [`rounded_share`] gives the factor, so the rounding's variance
//! is K = 30/32 (Q4_1) of what K = 1 adds. A score that is smooth in the
//! weights changes under zero-mean noise at second order, in proportion to the noise variance
//! (the first-order term averages out), so the drop at K = 1, times [`rounded_share`],
//! estimates what the original rounding cost: the full-precision model's score is about the
//! quantised one plus that.
//! Scoring K = 1 and K = 2 checks the proportionality. Derivation:
//! `docs/derivations/prune.md#quantisation-noise`.
//!
//! Super-block types (the K-quants, e.g. Q4_K_M) have a step per sub-block coded in 6 bits and
//! are refused rather than approximated; f32/f16 tensors (norms) are left as they are.

use std::collections::BTreeMap;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::checkpoint::{Checkpoint, Source};
use crate::{LlmError, Result};

/// What [`add_rounding_noise`] did.
#[derive(Debug, Clone, Serialize)]
pub struct RoundingNoise {
    /// K: the added variance in units of each block's rounding variance d²/12.
    pub multiple: f64,
    /// Seed of the noise.
    pub seed: u64,
    /// Perturbed tensors by storage type, e.g. `{"Q4_1": 210, "Q8_0": 1}`.
    pub perturbed: BTreeMap<String, usize>,
    /// Weights perturbed.
    pub weights: usize,
    /// Root mean square of the added noise over all perturbed weights.
    pub rms_noise: f64,
    /// Root mean square of those weights before the noise.
    pub rms_weight: f64,
    /// Of the Q4_1 blocks, the share whose 32 codes use both ends of the grid (q = 0 and 15),
    /// as llama.cpp's reference quantiser makes every block (min → 0, max → 15); a share below
    /// 1 means another quantiser (e.g. one fitted with an importance matrix), for which the
    /// rounding model is less exact. Null without Q4_1 tensors.
    pub reference_grid_share: Option<f64>,
}

/// Of the weights of one block, the share the quantiser rounds (the rest it stores exactly):
/// 30/32 for Q4_1 and Q5_1 (min and max), 31/32 for Q4_0, Q5_0 and Q8_0 (the largest
/// magnitude); `None` for types without one step per block.
pub fn rounded_share(dt: GgmlDType) -> Option<f64> {
    match dt {
        GgmlDType::Q4_1 | GgmlDType::Q5_1 => Some(30.0 / 32.0),
        GgmlDType::Q4_0 | GgmlDType::Q5_0 | GgmlDType::Q8_0 => Some(31.0 / 32.0),
        _ => None,
    }
}

/// Check, before any scoring, that [`add_rounding_noise`] can run on `ck`: a GGUF whose
/// weight tensors are f32/f16/bf16 or one-step-per-block types, at least one of them quantised.
pub fn check_supported(ck: &Checkpoint) -> Result<()> {
    let Source::Gguf { path, content } = &ck.source else {
        return Err(LlmError::invalid(
            "--rounding-noise",
            "the model was not loaded from a quantised GGUF file, so it carries no rounding error to add to; pass a .gguf model",
        ));
    };
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut quantised = 0;
    for name in names {
        let dt = content.tensor_infos[name].ggml_dtype;
        if matches!(dt, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) {
            continue;
        }
        if rounded_share(dt).is_none() {
            return Err(LlmError::file(
                path,
                format!("tensor {name} is stored as {dt:?}, whose step is coded per sub-block"),
                "--rounding-noise models the rounding of Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 files (e.g. SmolLM2's Q4_1), not K-quants",
            ));
        }
        quantised += 1;
    }
    if quantised == 0 {
        return Err(LlmError::file(
            path,
            "no tensor of the model is quantised (all f32/f16), so there is no rounding error to add to",
            "pass the quantised GGUF the model was made from",
        ));
    }
    Ok(())
}

/// The share of Q4_1 blocks in `bytes` (stored blocks of 20 bytes: d, m, 16 bytes of nibbles)
/// whose codes include both 0 and 15.
fn q4_1_full_range_blocks(bytes: &[u8]) -> (usize, usize) {
    let mut full = 0;
    let mut total = 0;
    for b in bytes.chunks_exact(20) {
        let codes = b[4..].iter().flat_map(|&x| [x & 0xf, x >> 4]);
        let (lo, hi) = codes.fold((15u8, 0u8), |(l, h), q| (l.min(q), h.max(q)));
        full += usize::from(lo == 0 && hi == 15);
        total += 1;
    }
    (full, total)
}

/// The step d of every block of a one-step-per-block quantised tensor, read from its stored
/// bytes (the block's leading f16, the layout of all five types), or `None` for a type without
/// one step per block of 32.
pub fn block_steps(q: &QTensor) -> Result<Option<Vec<f32>>> {
    let dt = q.dtype();
    if !matches!(
        dt,
        GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1 | GgmlDType::Q8_0
    ) {
        return Ok(None);
    }
    let (size, bytes) = (dt.type_size(), q.data()?);
    if bytes.len() % size != 0 || bytes.len() / size * dt.block_size() != q.shape().elem_count() {
        return Err(LlmError::invalid(
            "quantised tensor",
            format!(
                "{} bytes do not hold {} {dt:?} blocks",
                bytes.len(),
                q.shape().elem_count() / dt.block_size()
            ),
        ));
    }
    let lead: Vec<u8> = bytes
        .chunks_exact(size)
        .flat_map(|b| [b[0], b[1]])
        .collect();
    let n = lead.len() / 2;
    let d = Tensor::from_raw_buffer(&lead, DType::F16, &[n], &Device::Cpu)?
        .to_dtype(DType::F32)?
        .to_vec1::<f32>()?;
    Ok(Some(d))
}

/// `w` (the dequantised values of a tensor stored with one step per block of `block`
/// elements, in storage order) plus √K · U[−d/2, d/2] per element, d = `steps[element /
/// block]`; returns the new values and the sum of squared noise.
pub fn perturb(
    w: &[f32],
    steps: &[f32],
    block: usize,
    multiple: f64,
    rng: &mut impl Rng,
) -> (Vec<f32>, f64) {
    let s = multiple.sqrt();
    let mut sq = 0.0;
    let out = w
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let u = s * f64::from(steps[i / block]) * (rng.random::<f64>() - 0.5);
            sq += u * u;
            x + u as f32
        })
        .collect();
    (out, sq)
}

/// Add K = `multiple` times each quantised weight's rounding variance to `ck`'s model (see the
/// module docs), reproducibly from `seed`. Errors: a model not loaded from GGUF or with no
/// quantised tensor (nothing was rounded), a tensor of a super-block type (named), a negative
/// or non-finite K.
pub fn add_rounding_noise(ck: &mut Checkpoint, multiple: f64, seed: u64) -> Result<RoundingNoise> {
    if !(multiple.is_finite() && multiple >= 0.0) {
        return Err(LlmError::invalid(
            "--rounding-noise",
            format!("{multiple} is not a variance multiple ≥ 0 (e.g. 1 or 1,2)"),
        ));
    }
    check_supported(ck)?;
    let Source::Gguf { path, content } = &ck.source else {
        return Err(LlmError::invalid(
            "--rounding-noise",
            "the model was not loaded from a GGUF file; pass a .gguf model",
        ));
    };
    let mut f = std::fs::File::open(path).map_err(|e| LlmError::io(path, e))?;
    let m = &mut ck.model;
    // Every matrix of the model with the name it has in the file, in a fixed order.
    let mut named: Vec<(String, &mut Tensor)> = vec![("token_embd.weight".into(), &mut m.embed)];
    if let Some(h) = m.lm_head.as_mut() {
        named.push(("output.weight".into(), h));
    }
    for (l, b) in m.blocks.iter_mut().enumerate() {
        for (g, lin) in [
            ("attn_q", &mut b.q),
            ("attn_k", &mut b.k),
            ("attn_v", &mut b.v),
            ("attn_output", &mut b.o),
            ("ffn_gate", &mut b.gate),
            ("ffn_up", &mut b.up),
            ("ffn_down", &mut b.down),
        ] {
            named.push((format!("blk.{l}.{g}.weight"), &mut lin.w));
        }
    }
    let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut report = RoundingNoise {
        multiple,
        seed,
        perturbed: BTreeMap::new(),
        weights: 0,
        rms_noise: 0.0,
        rms_weight: 0.0,
        reference_grid_share: None,
    };
    let (mut full_blocks, mut q4_1_blocks) = (0usize, 0usize);
    let (mut noise_sq, mut weight_sq) = (0.0, 0.0);
    for (name, t) in named {
        let q = content
            .tensor(&mut f, &name, &Device::Cpu)
            .map_err(|e| LlmError::file(path, crate::one_line(e), "fetch the model again"))?;
        let dt = q.dtype();
        if matches!(dt, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16) {
            continue;
        }
        let Some(steps) = block_steps(&q)? else {
            return Err(LlmError::file(
                path,
                format!("tensor {name} is stored as {dt:?}, whose step is coded per sub-block"),
                "--rounding-noise models the rounding of Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 files (e.g. SmolLM2's Q4_1), not K-quants",
            ));
        };
        if dt == GgmlDType::Q4_1 {
            let (f, n) = q4_1_full_range_blocks(&q.data()?);
            full_blocks += f;
            q4_1_blocks += n;
        }
        let shape = t.dims().to_vec();
        let w = t.flatten_all()?.to_vec1::<f32>()?;
        weight_sq += w.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>();
        let (v, sq) = perturb(&w, &steps, dt.block_size(), multiple, &mut rng);
        noise_sq += sq;
        report.weights += v.len();
        *t = Tensor::from_vec(v, shape, &Device::Cpu)?;
        *report.perturbed.entry(format!("{dt:?}")).or_insert(0) += 1;
    }
    let n = report.weights.max(1) as f64;
    report.reference_grid_share =
        (q4_1_blocks > 0).then(|| full_blocks as f64 / q4_1_blocks as f64);
    report.rms_noise = (noise_sq / n).sqrt();
    report.rms_weight = (weight_sq / n).sqrt();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal_tensor(rows: usize, cols: usize, seed: u64) -> Tensor {
        use rand_distr::{Distribution, StandardNormal};
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        let v: Vec<f32> = (0..rows * cols)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap()
    }

    /// The premise: candle's Q4_1 rounds to the nearest grid point, so away from each block's
    /// min and max (stored exactly) the error e = w − dequant(w) has E[e²] = d²/12. The
    /// estimator r = mean(12 e²/d²) has per-element variance 144·Var(U²) = 0.8 for U uniform
    /// on [−½, ½], so SE = √(0.8/n); we allow 4 SE. Also |e| ≤ d/2 everywhere, up to the f16
    /// storage of d and m (the quantiser rounds on the f32 grid, 2⁻¹¹ relative: ≤ 2⁻¹¹(15d + |m|)).
    #[test]
    fn q4_1_rounding_error_is_uniform_with_the_stored_step() {
        let t = normal_tensor(64, 256, 7);
        let q = QTensor::quantize(&t, GgmlDType::Q4_1).unwrap();
        let d = block_steps(&q).unwrap().unwrap();
        assert_eq!(d.len(), 64 * 256 / 32);
        let w = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let back = q
            .dequantize(&Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let (mut sum, mut n) = (0.0, 0usize);
        for (b, chunk) in w.chunks(32).enumerate() {
            let (lo, hi) = chunk
                .iter()
                .fold((f32::MAX, f32::MIN), |(a, c), &x| (a.min(x), c.max(x)));
            let step = f64::from(d[b]);
            // The stored step is the block's range over 15 (f16-rounded).
            assert!((step - f64::from(hi - lo) / 15.0).abs() < 1e-3 * step);
            for (k, &x) in chunk.iter().enumerate() {
                let e = f64::from(x - back[b * 32 + k]);
                let f16_shift = (15.0 * step + f64::from(lo.abs())) / 2048.0;
                assert!(
                    e.abs() <= 0.5 * step + f16_shift + 1e-6,
                    "block {b}: |e| = {e}"
                );
                if x != lo && x != hi {
                    sum += 12.0 * e * e / (step * step);
                    n += 1;
                }
            }
        }
        let (r, se) = (sum / n as f64, (0.8 / n as f64).sqrt());
        eprintln!("E[12e²/d²] = {r:.4} ± {se:.4} over {n} weights");
        assert!((r - 1.0).abs() < 4.0 * se, "E[12e²/d²] = {r} ± {se}");
    }

    /// The added noise: bounded by √K·d/2, variance K·d²/12 within 4 SE (per-element variance
    /// of 12u²/(K d²) is 0.8 as above), the same for the same seed, other for another.
    #[test]
    fn perturbation_has_k_times_the_rounding_variance() {
        let t = normal_tensor(32, 256, 3);
        let q = QTensor::quantize(&t, GgmlDType::Q8_0).unwrap();
        let d = block_steps(&q).unwrap().unwrap();
        let w = vec![0.5f32; 32 * 256];
        for k in [1.0, 2.0] {
            let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
            let (v, sq) = perturb(&w, &d, 32, k, &mut rng);
            let mut r = 0.0;
            for (i, (&a, &b)) in v.iter().zip(&w).enumerate() {
                let (u, step) = (f64::from(a - b), f64::from(d[i / 32]));
                assert!(u.abs() <= 0.5 * k.sqrt() * step * (1.0 + 1e-5));
                r += 12.0 * u * u / (k * step * step);
            }
            let n = w.len() as f64;
            assert!((r / n - 1.0).abs() < 4.0 * (0.8 / n).sqrt(), "{}", r / n);
            assert!(sq > 0.0);
            let mut again = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(1);
            assert_eq!(perturb(&w, &d, 32, k, &mut again).0, v);
            let mut other = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(2);
            assert_ne!(perturb(&w, &d, 32, k, &mut other).0, v);
        }
    }

    /// candle's Q4_1 quantiser maps every block's min to 0 and max to 15, so every block uses
    /// the whole grid (the check `reference_grid_share` applies to the file's blocks).
    #[test]
    fn reference_quantiser_blocks_use_the_whole_grid() {
        let t = normal_tensor(16, 64, 5);
        let q = QTensor::quantize(&t, GgmlDType::Q4_1).unwrap();
        assert_eq!(q4_1_full_range_blocks(&q.data().unwrap()), (32, 32));
        // A block whose codes stop at 14 is counted as not using the whole grid.
        let mut bytes = q.data().unwrap().to_vec();
        for x in &mut bytes[4..20] {
            *x = 0x0e; // codes 14 and 0
        }
        assert_eq!(q4_1_full_range_blocks(&bytes), (31, 32));
    }

    #[test]
    fn super_block_types_have_no_single_step() {
        let t = normal_tensor(4, 256, 1);
        let q = QTensor::quantize(&t, GgmlDType::Q4K).unwrap();
        assert!(block_steps(&q).unwrap().is_none());
    }
}
