//! Residual-stream angular distances and block selection (Gromov et al. 2024, §3.2, eq. (7)):
//!   d(x^(l), x^(l+n)) = (1/π) arccos( x^(l)_T · x^(l+n)_T / (‖x^(l)_T‖ ‖x^(l+n)_T‖) ),
//! averaged over sequences, where x^(l) is the input of block l (x^(0) the embedding output,
//! x^(L) the output of the last block, before the final norm) and T the last token. For each
//! block size n the block to drop starts at l*(n) = argmin_l d(x^(l), x^(l+n)), l ∈ [0, L − n].

use candle_core::Tensor;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::model::Llama;
use crate::{LlmError, Result};

/// Which positions of a sequence enter the distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    /// The last token only (the paper's choice).
    LastToken,
    /// The mean distance over all tokens of the sequence.
    AllTokens,
}

/// The (n, l) table of mean angular distances.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Distances {
    /// Number of blocks L of the model.
    pub n_layers: usize,
    /// `table[n - 1][l]` = mean d(x^(l), x^(l+n)) for l = 0..=L−n.
    pub table: Vec<Vec<f64>>,
    /// Standard errors across sequences, same layout.
    pub se: Vec<Vec<f64>>,
    /// Number of sequences averaged over.
    pub samples: usize,
    /// Tokens in each sequence.
    pub tokens_per_sample: usize,
    /// Which token positions the distances are taken at.
    pub position: Position,
}

fn angular(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    (ab / (aa.sqrt() * bb.sqrt())).clamp(-1.0, 1.0).acos() / std::f64::consts::PI
}

/// Angular distances of `model` on `sequences` (token ids, each of the same length).
pub fn angular_distances(
    model: &Llama,
    sequences: &[Vec<u32>],
    position: Position,
    mut progress: impl FnMut(usize, usize),
) -> Result<Distances> {
    let l_tot = model.blocks.len();
    if sequences.is_empty() || sequences[0].is_empty() {
        return Err(LlmError::invalid(
            "probe text",
            "no sequences to probe: give a longer text",
        ));
    }
    let t = sequences[0].len();
    let d = model.cfg.hidden;
    let mut sum: Vec<Vec<f64>> = (1..=l_tot).map(|n| vec![0.0; l_tot - n + 1]).collect();
    let mut sum2 = sum.clone();
    let blocks = model.all_blocks();
    for (s, seq) in sequences.iter().enumerate() {
        if seq.len() != t {
            return Err(LlmError::invalid(
                "probe sequences",
                "sequences differ in length",
            ));
        }
        let ids = Tensor::new(seq.as_slice(), &model.device())?.unsqueeze(0)?;
        // states[k] = the chosen positions of x^(k), flattened [positions * d].
        let mut states: Vec<Vec<f32>> = Vec::with_capacity(l_tot + 1);
        model.residual_stream(&ids, &blocks, false, |_, x| {
            let x = x.squeeze(0)?;
            let x = match position {
                Position::LastToken => x.narrow(0, t - 1, 1)?,
                Position::AllTokens => x,
            };
            states.push(x.flatten_all()?.to_vec1::<f32>()?);
            Ok(())
        })?;
        // The same check as perplexity's: a non-finite residual stream means broken weights
        // (every distance would be NaN and the "best" block meaningless).
        if let Some(k) = states.iter().position(|x| x.iter().any(|v| !v.is_finite())) {
            return Err(LlmError::invalid(
                "model",
                format!(
                    "non-finite hidden state after block {k} on probe sequence {s}: the weights are broken"
                ),
            ));
        }
        let npos = states[0].len() / d;
        for n in 1..=l_tot {
            for l in 0..=l_tot - n {
                let mut v = 0.0;
                for p in 0..npos {
                    v += angular(
                        &states[l][p * d..(p + 1) * d],
                        &states[l + n][p * d..(p + 1) * d],
                    );
                }
                v /= npos as f64;
                sum[n - 1][l] += v;
                sum2[n - 1][l] += v * v;
            }
        }
        progress(s + 1, sequences.len());
    }
    let m = sequences.len() as f64;
    let table: Vec<Vec<f64>> = sum
        .iter()
        .map(|r| r.iter().map(|x| x / m).collect())
        .collect();
    let se = sum2
        .iter()
        .zip(&table)
        .map(|(r2, r)| {
            r2.iter()
                .zip(r)
                .map(|(s2, mu)| {
                    if m > 1.0 {
                        ((s2 / m - mu * mu).max(0.0) * m / (m - 1.0) / m).sqrt()
                    } else {
                        f64::NAN
                    }
                })
                .collect()
        })
        .collect();
    Ok(Distances {
        n_layers: l_tot,
        table,
        se,
        samples: sequences.len(),
        tokens_per_sample: t,
        position,
    })
}

impl Distances {
    /// l*(n) and its distance.
    pub fn best(&self, n: usize) -> Result<(usize, f64)> {
        let row = self.table.get(n.wrapping_sub(1)).ok_or_else(|| {
            LlmError::invalid(
                "block size",
                format!("n = {n} not in 1..={}", self.n_layers),
            )
        })?;
        Ok(row.iter().enumerate().fold(
            (0, f64::INFINITY),
            |b, (l, &v)| if v < b.1 { (l, v) } else { b },
        ))
    }
}

/// How to choose the block of n layers to drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// l*(n) from the angular-distance table.
    Angular,
    /// The deepest n blocks before the final one: start = L − 1 − n (the paper's heuristic).
    Last,
    /// A uniformly random start in [0, L − n] (control).
    Random,
}

impl Rule {
    /// Parse `angular`, `last` or `random`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "angular" => Ok(Rule::Angular),
            "last" => Ok(Rule::Last),
            "random" => Ok(Rule::Random),
            _ => Err(LlmError::invalid(
                "--rule",
                format!("{s:?} is not one of angular, last, random"),
            )),
        }
    }
    /// The CLI name of the rule.
    pub fn name(&self) -> &'static str {
        match self {
            Rule::Angular => "angular",
            Rule::Last => "last",
            Rule::Random => "random",
        }
    }
}

/// Check that n of L blocks can be dropped.
pub fn check_drop(n_layers: usize, n: usize) -> Result<()> {
    if n == 0 || n >= n_layers {
        return Err(LlmError::invalid(
            "--drop",
            format!(
                "{n} blocks of {n_layers}: must be between 1 and {} (at least one block stays)",
                n_layers - 1
            ),
        ));
    }
    Ok(())
}

/// Start of the block of `n` to drop under `rule`.
pub fn choose_start(
    rule: Rule,
    n_layers: usize,
    n: usize,
    distances: Option<&Distances>,
    seed: u64,
) -> Result<usize> {
    check_drop(n_layers, n)?;
    Ok(match rule {
        Rule::Angular => {
            distances
                .ok_or_else(|| LlmError::invalid("angular rule", "needs the distance table"))?
                .best(n)?
                .0
        }
        Rule::Last => n_layers - 1 - n,
        Rule::Random => {
            rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed).random_range(0..=n_layers - n)
        }
    })
}

/// Blocks kept after dropping `start..start + n` (0-based, end-exclusive).
pub fn kept_blocks(n_layers: usize, start: usize, n: usize) -> Vec<usize> {
    (0..n_layers)
        .filter(|&l| l < start || l >= start + n)
        .collect()
}

/// Cut `tokens` into `count` non-overlapping sequences of `len` tokens, evenly spread.
pub fn sequences(tokens: &[u32], len: usize, count: usize) -> Result<Vec<Vec<u32>>> {
    let avail = tokens.len() / len.max(1);
    if len == 0 || avail == 0 || count == 0 {
        return Err(LlmError::invalid(
            "probe text",
            format!(
                "{} tokens cannot give {count} sequences of {len}; give a longer text",
                tokens.len()
            ),
        ));
    }
    let count = count.min(avail);
    let stride = avail / count;
    Ok((0..count)
        .map(|i| tokens[i * stride * len..(i * stride + 1) * len].to_vec())
        .collect())
}
