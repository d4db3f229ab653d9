//! The layer recursion for K and Θ over a data set (docs/derivations/kernels.md#recursion).
//!
//! Inputs are the training rows A (N of them) and optionally test rows B (M). Per layer the
//! state is the diagonal q_δ = K_δδ, Θ_δδ of every input, and the blocks AA (N×N, symmetric,
//! upper triangle computed then mirrored), BA (M×N) and, on request, BB (M×M). Each block entry
//! is updated from its own previous value and the two diagonal entries only, so the blocks are
//! independent and rows are split across threads (`std::thread::scope`) in chunks of equal
//! work; every entry is computed by the same code whatever the partition, so the result is
//! bitwise independent of the thread count. Memory: the blocks themselves, O((N + M)·N) f64,
//! plus (M_terms + 1)·2 coefficients per input for the Mehler series.

use super::pair::{
    adaptive_pair, closed_form, closed_pair, correlation, gauss_hermite_pair, kinked, mehler_pair,
    mehler_pair_to, mehler_point, mehler_point_until, ClosedForm, MehlerPoint,
};
use crate::activation::{Act, Activation};
use crate::gauss::QuadConfig;
use crate::TheoryError;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How the pair integrals E\[σσ\], E\[σ'σ'\] are computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PairMethod {
    /// The closed form when the activation has one ([`super::pair::closed_form`]: ReLU family,
    /// erf, sin); otherwise, for smooth σ, [`PairMethod::MehlerAdaptive`] with tol = 1e-13,
    /// max_terms = 300, nodes = 200, and for σ with a kink at zero (ELU, SELU, user types) the
    /// kink-aware 2-D quadrature (accurate, but ≈10⁴–10⁵ activations per pair: slow beyond a
    /// few hundred inputs; the Mehler series converges only algebraically across a kink).
    Auto,
    /// Closed form; an error if the activation has none.
    ClosedForm,
    /// Mehler series truncated after `terms` (M) Hermite orders, coefficients by a 1-D rule
    /// with `nodes` Gauss–Hermite nodes (composite Gauss–Legendre when K > 1 or σ has a kink,
    /// as [`crate::gauss::rule1`]). Cost per layer: (N+M)·M·nodes activations plus 4M flops
    /// per pair. Error per pair ≤ √(tail_a tail_b) (Cauchy–Schwarz on the Parseval tails,
    /// docs/derivations/kernels.md#mehler-series); [`DatasetKernels::mehler_bound`] reports
    /// the largest tail met. Measured for tanh (max over ρ ∈ [−0.95, 1], |ΔE| / |ΔE'|):
    /// K = 0.3–0.5: M = 20 → 4e-9 / 9e-8, M = 60 → 1e-14; K = 1: M = 60 → 1e-10 / 5e-9,
    /// M = 100 → 1e-13 / 9e-12. It converges geometrically for smooth σ, slower as K grows
    /// (K = 3, M = 100: ≈ 2e-8 / 6e-7), and only algebraically across a kink.
    Mehler {
        /// Highest Hermite order M kept.
        terms: usize,
        /// Gauss–Hermite nodes of the 1-D coefficient integrals.
        nodes: usize,
    },
    /// Mehler series with the order chosen per input: the smallest M ≤ `max_terms` whose
    /// Parseval tails of σ and σ' are both ≤ `tol`, so every pair of such inputs is within
    /// `tol` of its exact value (Cauchy–Schwarz). Pairs involving an input that needs more than
    /// `max_terms` (large K, or a kink) fall back to [`PairMethod::Adaptive2d`].
    MehlerAdaptive {
        /// Absolute error target per pair integral (E and E').
        tol: f64,
        /// Largest M tried.
        max_terms: usize,
        /// Gauss–Hermite nodes of the 1-D coefficient integrals.
        nodes: usize,
    },
    /// Direct 2-D Gauss–Hermite with `nodes`² nodes per pair: the reference for smooth σ
    /// (N²·nodes² activations per layer).
    GaussHermite2d {
        /// Nodes per dimension.
        nodes: usize,
    },
    /// Kink-aware 2-D quadrature ([`crate::gauss::expect_nd`]: polar sectors split where a
    /// preactivation changes sign). Accurate for any σ, slow (≈10⁴–10⁵ activations per pair).
    Adaptive2d,
}

impl PairMethod {
    /// Parse the CLI's `--method` (also the Python `method=`): `auto`, `closed`,
    /// `mehler:M[:NODES]` (1 ≤ M ≤ 2000, 2 ≤ NODES ≤ 4000; NODES defaults to 200),
    /// `quadrature:N` (2 ≤ N ≤ 512) or `adaptive`. Errors name `--method`; `closed` is refused
    /// for an activation without a closed form.
    pub fn parse(s: &str, act: &dyn Activation) -> Result<Self, TheoryError> {
        let bad = |why: &str| {
            TheoryError::Invalid {
            flag: "--method",
            msg: format!(
                "{why} in '{s}'; use auto, closed, mehler:M[:NODES] (1 ≤ M ≤ 2000, 2 ≤ NODES ≤ 4000), quadrature:N (2 ≤ N ≤ 512) or adaptive"
            ),
        }
        };
        let num = |v: &str, lo: usize, hi: usize, what: &str| -> Result<usize, TheoryError> {
            let n: usize = v
                .trim()
                .parse()
                .map_err(|_| bad(&format!("{what} '{v}' is not a whole number")))?;
            if !(lo..=hi).contains(&n) {
                return Err(bad(&format!("{what} {n} is outside {lo}..={hi}")));
            }
            Ok(n)
        };
        let parts: Vec<&str> = s.split(':').collect();
        Ok(match parts[..] {
            ["auto"] => PairMethod::Auto,
            ["closed"] => {
                if closed_form(act).is_none() {
                    return Err(TheoryError::Invalid {
                        flag: "--method",
                        msg: format!(
                            "{} has no closed-form kernel (closed forms: relu, leaky_relu, linear, erf, sin); use auto, mehler:M or quadrature:N",
                            act.name()
                        ),
                    });
                }
                PairMethod::ClosedForm
            }
            ["mehler", m] => PairMethod::Mehler {
                terms: num(m, 1, 2000, "the order M")?,
                nodes: 200,
            },
            ["mehler", m, n] => PairMethod::Mehler {
                terms: num(m, 1, 2000, "the order M")?,
                nodes: num(n, 2, 4000, "NODES")?,
            },
            ["quadrature", n] => PairMethod::GaussHermite2d {
                nodes: num(n, 2, 512, "the node count N")?,
            },
            ["adaptive"] => PairMethod::Adaptive2d,
            _ => return Err(bad("unknown method")),
        })
    }
}

/// Hyperparameters of the kernel recursion.
#[derive(Debug, Clone)]
pub struct KernelConfig {
    /// Activation σ.
    pub act: Act,
    /// Bias variance C_b ≥ 0.
    pub cb: f64,
    /// Weight variance C_W > 0.
    pub cw: f64,
    /// Bias learning rate λ_b ≥ 0.
    pub lambda_b: f64,
    /// Weight learning rate λ_W ≥ 0 (per-weight rate λ_W/n_{l−1}).
    pub lambda_w: f64,
    /// Number of Dense layers L ≥ 1 (the output is z^(L)).
    pub depth: usize,
    /// Pair-integral method.
    pub method: PairMethod,
    /// Worker threads (0: all available cores).
    pub threads: usize,
}

impl KernelConfig {
    /// The neural-tangents convention λ_b = C_b, λ_W = C_W, [`PairMethod::Auto`], all cores.
    pub fn new(act: Act, cb: f64, cw: f64, depth: usize) -> Self {
        Self {
            act,
            cb,
            cw,
            lambda_b: cb,
            lambda_w: cw,
            depth,
            method: PairMethod::Auto,
            threads: 0,
        }
    }

    /// Check every hyperparameter (what [`dataset_kernels`] does first), so that a caller can
    /// refuse bad flags before reading any data. Errors name the CLI flag.
    pub fn validate(&self) -> Result<(), TheoryError> {
        let bad = |flag: &'static str, msg: String| Err(TheoryError::Invalid { flag, msg });
        if !(self.cb >= 0.0 && self.cb.is_finite()) {
            return bad(
                "--cb",
                format!("C_b must be a finite number ≥ 0, got {}", self.cb),
            );
        }
        if !(self.cw > 0.0 && self.cw.is_finite()) {
            return bad(
                "--cw",
                format!("C_W must be a finite number > 0, got {}", self.cw),
            );
        }
        if !(self.lambda_b >= 0.0 && self.lambda_b.is_finite()) {
            return bad(
                "--lambda-b",
                format!("λ_b must be finite and ≥ 0, got {}", self.lambda_b),
            );
        }
        if !(self.lambda_w >= 0.0 && self.lambda_w.is_finite()) {
            return bad(
                "--lambda-w",
                format!("λ_W must be finite and ≥ 0, got {}", self.lambda_w),
            );
        }
        if self.depth == 0 {
            return bad(
                "--depth",
                "depth must be ≥ 1 (the number of Dense layers)".into(),
            );
        }
        match self.method {
            PairMethod::MehlerAdaptive { tol, .. } if !(tol > 0.0 && tol.is_finite()) => bad(
                "--tol",
                format!("the Mehler tolerance must be finite and > 0, got {tol}"),
            ),
            PairMethod::Mehler { nodes, .. }
            | PairMethod::MehlerAdaptive { nodes, .. }
            | PairMethod::GaussHermite2d { nodes }
                if nodes < 2 =>
            {
                bad("--quad-order", format!("need at least 2 quadrature nodes, got {nodes}"))
            }
            PairMethod::ClosedForm if closed_form(&*self.act).is_none() => bad(
                "--activation",
                format!(
                    "{} has no closed-form kernel (closed forms: relu, leaky_relu, linear, erf, sin); use the Mehler series or a quadrature",
                    self.act.name()
                ),
            ),
            _ => Ok(()),
        }
    }
}

/// A set of inputs: `rows`×`dim` row-major.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The values, row-major, `rows * dim` of them.
    pub data: &'a [f64],
    /// Number of inputs.
    pub rows: usize,
    /// Input dimension d (n₀).
    pub dim: usize,
}

impl<'a> Inputs<'a> {
    /// Wrap a row-major slice.
    pub fn new(data: &'a [f64], rows: usize, dim: usize) -> Self {
        Self { data, rows, dim }
    }
    fn validate(&self, flag: &'static str) -> Result<(), TheoryError> {
        let bad = |msg: String| Err(TheoryError::Invalid { flag, msg });
        if self.rows == 0 || self.dim == 0 {
            return bad(format!(
                "need at least one input of dimension ≥ 1, got {}×{}",
                self.rows, self.dim
            ));
        }
        if self.data.len() != self.rows * self.dim {
            return bad(format!(
                "{} values do not form a {}×{} array",
                self.data.len(),
                self.rows,
                self.dim
            ));
        }
        if let Some(i) = self.data.iter().position(|v| !v.is_finite()) {
            return bad(format!(
                "non-finite value at row {}, column {}",
                i / self.dim,
                i % self.dim
            ));
        }
        Ok(())
    }
}

/// Output-layer kernels. Matrices are row-major; N = train rows, M = test rows.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetKernels {
    /// N.
    pub n_train: usize,
    /// M (0 without test inputs).
    pub n_test: usize,
    /// NNGP K_AA, N×N, exactly symmetric.
    pub k_train: Vec<f64>,
    /// NTK Θ_AA, N×N, exactly symmetric.
    pub ntk_train: Vec<f64>,
    /// K_BA, M×N (empty without test inputs).
    pub k_test_train: Vec<f64>,
    /// Θ_BA, M×N.
    pub ntk_test_train: Vec<f64>,
    /// diag K_BB (M).
    pub k_test_diag: Vec<f64>,
    /// diag Θ_BB (M).
    pub ntk_test_diag: Vec<f64>,
    /// K_BB, M×M, when requested.
    pub k_test: Option<Vec<f64>>,
    /// Θ_BB, M×M, when requested.
    pub ntk_test: Option<Vec<f64>>,
    /// Mehler series only: the largest Parseval tails (of σ, of σ') met over all inputs and
    /// layers; each pair integral E\[σσ\] (E\[σ'σ'\]) of a layer is within this of its exact value.
    pub mehler_bound: Option<(f64, f64)>,
    /// [`PairMethod::MehlerAdaptive`]: how many pair integrals (summed over layers) the
    /// adaptive 2-D quadrature did because an input needed more than `max_terms` orders and the
    /// pair's own bound |ρ|^(m+1)·√(T_a(m) T_b(m)) exceeded the tolerance (near-duplicate pairs).
    pub quadrature_fallbacks: usize,
}

/// The resolved pair method.
#[derive(Clone, Copy)]
enum Resolved {
    Closed(ClosedForm),
    Mehler {
        terms: usize,
        nodes: usize,
    },
    MehlerAdaptive {
        tol: f64,
        max_terms: usize,
        nodes: usize,
    },
    Gh2 {
        nodes: usize,
    },
    Adaptive,
}

/// Per-input data for one layer.
#[derive(Clone)]
struct PointData {
    /// E\[σ²\], E\[σ'²\] at q.
    s2: f64,
    d2: f64,
    mehler: Option<Arc<MehlerPoint>>,
}

struct Ctx<'a> {
    cfg: &'a KernelConfig,
    method: Resolved,
    kinked: bool,
    quad: QuadConfig,
    /// Pair integrals done by the adaptive rule under [`Resolved::MehlerAdaptive`].
    adaptive_pairs: AtomicUsize,
}

impl Ctx<'_> {
    fn point(&self, q: f64) -> PointData {
        let act = &*self.cfg.act;
        match self.method {
            Resolved::Closed(cf) => {
                let (s2, d2) = closed_pair(cf, q, q, q);
                PointData {
                    s2,
                    d2,
                    mehler: None,
                }
            }
            Resolved::Mehler { terms, nodes } => {
                let m = mehler_point(act, self.kinked, q, terms, nodes);
                PointData {
                    s2: m.s2,
                    d2: m.d2,
                    mehler: Some(Arc::new(m)),
                }
            }
            Resolved::MehlerAdaptive {
                tol,
                max_terms,
                nodes,
            } => {
                let m = mehler_point_until(act, self.kinked, q, max_terms, nodes, tol)
                    .unwrap_or_else(|m| m);
                PointData {
                    s2: m.s2,
                    d2: m.d2,
                    mehler: Some(Arc::new(m)),
                }
            }
            Resolved::Gh2 { .. } | Resolved::Adaptive => {
                let m = mehler_point(act, self.kinked, q, 0, self.quad.gh1);
                PointData {
                    s2: m.s2,
                    d2: m.d2,
                    mehler: None,
                }
            }
        }
    }

    /// (E\[σσ\], E\[σ'σ'\]) for the pair (a, b) with covariance c.
    #[inline]
    fn pair(&self, qa: f64, qb: f64, c: f64, pa: &PointData, pb: &PointData) -> (f64, f64) {
        let act = &*self.cfg.act;
        if qa == qb && c == qa {
            // Identical inputs (e.g. a test point that is also a training point): the exact
            // diagonal values, so that the kernel stays exactly singular there and the
            // posterior reproduces training targets.
            return (pa.s2, pa.d2);
        }
        match self.method {
            Resolved::Closed(cf) => closed_pair(cf, qa, qb, c),
            Resolved::Mehler { .. } => {
                let (a, b) = (pa.mehler.as_ref().unwrap(), pb.mehler.as_ref().unwrap());
                mehler_pair(a, b, correlation(qa, qb, c))
            }
            Resolved::MehlerAdaptive { tol, .. } => {
                let (a, b) = (pa.mehler.as_ref().unwrap(), pb.mehler.as_ref().unwrap());
                let rho = correlation(qa, qb, c);
                let within = |p: &MehlerPoint| p.tail_s <= tol && p.tail_d <= tol;
                if within(a) && within(b) {
                    // Both at the layer's order with tails ≤ tol: error ≤ tol (Cauchy–Schwarz).
                    return mehler_pair(a, b, rho);
                }
                // An input past the order cap: sum to the smaller order m and bound the rest
                // by |ρ|^(m+1)·√(T_a(m) T_b(m)) (docs/derivations/kernels.md#mehler-series).
                let m = a.order.min(b.order);
                let ((sa, da), (sb, db)) = (a.tails_at(m), b.tails_at(m));
                let r = rho.abs().powi(m as i32 + 1);
                if r * (sa * sb).sqrt() <= tol && r * (da * db).sqrt() <= tol {
                    mehler_pair_to(a, b, rho, m)
                } else {
                    self.adaptive_pairs.fetch_add(1, Ordering::Relaxed);
                    adaptive_pair(act, self.kinked, qa, qb, c, &self.quad)
                }
            }
            Resolved::Gh2 { nodes } => gauss_hermite_pair(act, qa, qb, c, nodes),
            Resolved::Adaptive => adaptive_pair(act, self.kinked, qa, qb, c, &self.quad),
        }
    }
}

/// One rectangular block of global input indices rows × cols, dense row-major.
struct Block {
    rows: Range<usize>,
    cols: Range<usize>,
    /// Rows and cols are the same set: compute j ≥ i only, then mirror.
    sym: bool,
    k: Vec<f64>,
    th: Vec<f64>,
}

fn threads(requested: usize) -> usize {
    if requested > 0 {
        requested
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Split 0..rows into at most `parts` contiguous ranges of about equal work (row r costs
/// `work(r)`).
fn split_rows(rows: usize, parts: usize, work: impl Fn(usize) -> usize) -> Vec<Range<usize>> {
    let total: usize = (0..rows).map(&work).sum();
    let per = total.div_ceil(parts.max(1)).max(1);
    let mut out = vec![];
    let (mut start, mut acc) = (0, 0);
    for r in 0..rows {
        acc += work(r);
        if acc >= per || r + 1 == rows {
            out.push(start..r + 1);
            start = r + 1;
            acc = 0;
        }
    }
    out
}

/// The update of a row range of one block: (rows, K rows, Θ rows).
type RowFn<'a> = dyn Fn(Range<usize>, &mut [f64], &mut [f64]) + Sync + 'a;

/// Run `f(row_range, k_rows, th_rows)` over row chunks of a block on `nt` threads.
fn par_rows(
    nt: usize,
    ncols: usize,
    chunks: &[Range<usize>],
    k: &mut [f64],
    th: &mut [f64],
    f: &RowFn<'_>,
) {
    if nt <= 1 || chunks.len() <= 1 {
        for r in chunks {
            let (a, b) = (r.start * ncols, r.end * ncols);
            f(r.clone(), &mut k[a..b], &mut th[a..b]);
        }
        return;
    }
    std::thread::scope(|s| {
        let (mut krest, mut trest) = (k, th);
        for r in chunks {
            let len = (r.end - r.start) * ncols;
            let (kc, kr) = std::mem::take(&mut krest).split_at_mut(len);
            let (tc, tr) = std::mem::take(&mut trest).split_at_mut(len);
            krest = kr;
            trest = tr;
            let r = r.clone();
            s.spawn(move || f(r, kc, tc));
        }
    });
}

/// `f(0..n)` on `nt` threads, in order.
fn par_map<T: Send>(n: usize, nt: usize, f: &(dyn Fn(usize) -> T + Sync)) -> Vec<T> {
    if nt <= 1 || n <= 1 {
        return (0..n).map(f).collect();
    }
    let chunk = n.div_ceil(nt);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .step_by(chunk)
            .map(|st| s.spawn(move || (st..(st + chunk).min(n)).map(f).collect::<Vec<_>>()))
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Per-input data for one layer, computed once per distinct K_δδ (normalised inputs share
/// one). For [`PairMethod::MehlerAdaptive`] all inputs of a layer share one order M, so that
/// every pair can run its Horner sum to M: the largest K that reaches the tolerance within
/// `max_terms` sets M (the needed order grows with K), every input is then computed at M, and
/// any input whose tails still exceed the tolerance (a σ for which the order is not monotone
/// in K) raises M and the layer is redone. Inputs that cannot reach the tolerance use the
/// adaptive 2-D rule for their pairs.
fn layer_points(ctx: &Ctx, qd: &[f64], nt: usize) -> Vec<PointData> {
    let mut uniq: Vec<u64> = qd.iter().map(|q| q.to_bits()).collect();
    uniq.sort_unstable();
    uniq.dedup();
    let data = match ctx.method {
        Resolved::MehlerAdaptive {
            tol,
            max_terms,
            nodes,
        } => adaptive_points(ctx, &uniq, nt, tol, max_terms, nodes),
        _ => par_map(uniq.len(), nt, &|u| ctx.point(f64::from_bits(uniq[u]))),
    };
    qd.iter()
        .map(|q| data[uniq.binary_search(&q.to_bits()).expect("present")].clone())
        .collect()
}

fn adaptive_points(
    ctx: &Ctx,
    uniq: &[u64],
    nt: usize,
    tol: f64,
    max_terms: usize,
    nodes: usize,
) -> Vec<PointData> {
    let act = &*ctx.cfg.act;
    let data = |m: MehlerPoint| PointData {
        s2: m.s2,
        d2: m.d2,
        mehler: Some(Arc::new(m)),
    };
    // Non-negative f64 bit patterns sort like the values: the last is the largest K.
    let qs: Vec<f64> = uniq.iter().map(|b| f64::from_bits(*b)).collect();
    let n = qs.len();
    // Inputs past the order cap keep their coefficients up to `max_terms`; their pairs are
    // bounded one by one in `Ctx::pair`.
    let mut over: Vec<Option<MehlerPoint>> = vec![None; n];
    let mut order = None;
    for u in (0..n).rev() {
        match mehler_point_until(act, ctx.kinked, qs[u], max_terms, nodes, tol) {
            Ok(mu) => {
                order = Some(mu.order);
                break;
            }
            Err(m) => over[u] = Some(m),
        }
    }
    let Some(mut order) = order else {
        return over
            .into_iter()
            .map(|m| data(m.expect("every input is past the cap")))
            .collect();
    };
    loop {
        let ov = &over;
        let res = par_map(n, nt, &|u| {
            ov[u]
                .is_none()
                .then(|| mehler_point(act, ctx.kinked, qs[u], order, nodes))
        });
        let mut raised = order;
        for (u, m) in res.iter().enumerate() {
            if let Some(m) = m {
                if m.tail_s > tol || m.tail_d > tol {
                    match mehler_point_until(act, ctx.kinked, qs[u], max_terms, nodes, tol) {
                        Ok(mu) => raised = raised.max(mu.order),
                        Err(mu) => over[u] = Some(mu),
                    }
                }
            }
        }
        if raised > order {
            order = raised;
            continue;
        }
        return res
            .into_iter()
            .zip(over)
            .map(|(m, o)| data(o.or(m).expect("computed unless past the cap")))
            .collect();
    }
}

/// K and Θ of the network output for the training inputs `train` and, optionally, the test
/// inputs `test` (test × train block, test diagonal, and the full test × test block when
/// `test_test`). Errors name the offending input; a layer whose kernel overflows or goes
/// non-finite is reported as [`TheoryError::Diverged`].
pub fn dataset_kernels(
    cfg: &KernelConfig,
    train: Inputs,
    test: Option<Inputs>,
    test_test: bool,
) -> Result<DatasetKernels, TheoryError> {
    cfg.validate()?;
    train.validate("--inputs")?;
    if let Some(t) = &test {
        t.validate("--inputs2")?;
        if t.dim != train.dim {
            return Err(TheoryError::Invalid {
                flag: "--inputs2",
                msg: format!(
                    "test inputs have dimension {} but training inputs {}; both must be N×d with the same d",
                    t.dim, train.dim
                ),
            });
        }
    }
    let kink = kinked(&*cfg.act);
    let method = match cfg.method {
        PairMethod::Auto => match closed_form(&*cfg.act) {
            Some(cf) => Resolved::Closed(cf),
            None if kink => Resolved::Adaptive,
            None => Resolved::MehlerAdaptive {
                tol: 1e-13,
                max_terms: 300,
                nodes: 200,
            },
        },
        PairMethod::ClosedForm => Resolved::Closed(closed_form(&*cfg.act).expect("validated")),
        PairMethod::Mehler { terms, nodes } => Resolved::Mehler { terms, nodes },
        PairMethod::MehlerAdaptive {
            tol,
            max_terms,
            nodes,
        } => Resolved::MehlerAdaptive {
            tol,
            max_terms,
            nodes,
        },
        PairMethod::GaussHermite2d { nodes } => Resolved::Gh2 { nodes },
        PairMethod::Adaptive2d => Resolved::Adaptive,
    };
    // gh2 = 160: the 2-D Gauss–Hermite part of the adaptive rule (K ≤ 1, smooth σ) is then
    // converged to ≈1e-15 (80, the crate default, leaves ≈1e-9 at K = 1).
    let quad = QuadConfig {
        gh2: 160,
        ..QuadConfig::default()
    };
    let ctx = Ctx {
        cfg,
        method,
        kinked: kink,
        quad,
        adaptive_pairs: AtomicUsize::new(0),
    };
    let nt = threads(cfg.threads);

    // All inputs, train first.
    let (n, d) = (train.rows, train.dim);
    let m = test.map_or(0, |t| t.rows);
    let p = n + m;
    let x = |i: usize| -> &[f64] {
        if i < n {
            &train.data[i * d..(i + 1) * d]
        } else {
            let t = test.as_ref().unwrap();
            &t.data[(i - n) * d..(i - n + 1) * d]
        }
    };
    let dot = |i: usize, j: usize| -> f64 {
        x(i).iter().zip(x(j)).map(|(a, b)| a * b).sum::<f64>() / d as f64
    };
    let mut blocks = vec![Block {
        rows: 0..n,
        cols: 0..n,
        sym: true,
        k: vec![],
        th: vec![],
    }];
    if m > 0 {
        blocks.push(Block {
            rows: n..p,
            cols: 0..n,
            sym: false,
            k: vec![],
            th: vec![],
        });
        if test_test {
            blocks.push(Block {
                rows: n..p,
                cols: n..p,
                sym: true,
                k: vec![],
                th: vec![],
            });
        }
    }
    // Layer 1.
    let mut qd: Vec<f64> = (0..p).map(|i| cfg.cb + cfg.cw * dot(i, i)).collect();
    let mut td: Vec<f64> = (0..p)
        .map(|i| cfg.lambda_b + cfg.lambda_w * dot(i, i))
        .collect();
    for b in &mut blocks {
        let (nr, nc) = (b.rows.len(), b.cols.len());
        b.k = vec![0.0; nr * nc];
        b.th = vec![0.0; nr * nc];
        for (ri, i) in b.rows.clone().enumerate() {
            for (ci, j) in b.cols.clone().enumerate() {
                if b.sym && ci < ri {
                    continue;
                }
                let g = if i == j { dot(i, i) } else { dot(i, j) };
                b.k[ri * nc + ci] = cfg.cb + cfg.cw * g;
                b.th[ri * nc + ci] = cfg.lambda_b + cfg.lambda_w * g;
            }
        }
    }
    let mut bound: Option<(f64, f64)> = None;
    for layer in 2..=cfg.depth {
        // Per-input data at the previous layer's diagonal.
        let pts = layer_points(&ctx, &qd, nt);
        if let Resolved::Mehler { .. } | Resolved::MehlerAdaptive { .. } = method {
            // Under the adaptive order, a pair with an input past the cap is either within
            // tol by its own bound or done by the adaptive rule: it counts as tol.
            let cap = match method {
                Resolved::MehlerAdaptive { tol, .. } => tol,
                _ => f64::INFINITY,
            };
            let (bs, bd) = pts
                .iter()
                .filter_map(|pt| pt.mehler.as_ref())
                .fold((0.0f64, 0.0f64), |acc, mp| {
                    (acc.0.max(mp.tail_s.min(cap)), acc.1.max(mp.tail_d.min(cap)))
                });
            let old = bound.unwrap_or((0.0, 0.0));
            bound = Some((old.0.max(bs), old.1.max(bd)));
        }
        // Off-diagonal entries of every block.
        for b in &mut blocks {
            let nc = b.cols.len();
            let (r0, c0, sym) = (b.rows.start, b.cols.start, b.sym);
            let chunks = split_rows(b.rows.len(), nt, |r| if sym { nc - r } else { nc });
            let (ctx, pts, qd) = (&ctx, &pts, &qd);
            let f = move |rows: Range<usize>, k: &mut [f64], th: &mut [f64]| {
                let cfg = ctx.cfg;
                for (li, ri) in rows.clone().enumerate() {
                    let i = r0 + ri;
                    let start = if sym { ri } else { 0 };
                    for ci in start..nc {
                        let j = c0 + ci;
                        let idx = li * nc + ci;
                        let (e, ed) = if i == j {
                            (pts[i].s2, pts[i].d2)
                        } else {
                            ctx.pair(qd[i], qd[j], k[idx], &pts[i], &pts[j])
                        };
                        k[idx] = cfg.cb + cfg.cw * e;
                        th[idx] = cfg.lambda_b + cfg.lambda_w * e + cfg.cw * ed * th[idx];
                    }
                }
            };
            par_rows(nt, nc, &chunks, &mut b.k, &mut b.th, &f);
        }
        for i in 0..p {
            let pt = &pts[i];
            td[i] = cfg.lambda_b + cfg.lambda_w * pt.s2 + cfg.cw * pt.d2 * td[i];
            qd[i] = cfg.cb + cfg.cw * pt.s2;
            if !(qd[i].is_finite()
                && td[i].is_finite()
                && qd[i].abs() < 1e300
                && td[i].abs() < 1e300)
            {
                return Err(TheoryError::Diverged {
                    layer,
                    what: format!(
                        "K or Θ of input {i} overflowed (K = {:e}, Θ = {:e}); lower the depth or move towards criticality (χ = 1)",
                        qd[i], td[i]
                    ),
                });
            }
        }
    }
    // Mirror the symmetric blocks.
    for b in &mut blocks {
        if b.sym {
            let nc = b.cols.len();
            for r in 0..nc {
                for c in 0..r {
                    b.k[r * nc + c] = b.k[c * nc + r];
                    b.th[r * nc + c] = b.th[c * nc + r];
                }
            }
        }
    }
    let mut it = blocks.into_iter();
    let aa = it.next().expect("train block");
    let ba = it.next();
    let bb = it.next();
    let (k_test_train, ntk_test_train) = ba.map_or((vec![], vec![]), |b| (b.k, b.th));
    let (k_test, ntk_test) = bb.map_or((None, None), |b| (Some(b.k), Some(b.th)));
    Ok(DatasetKernels {
        n_train: n,
        n_test: m,
        k_train: aa.k,
        ntk_train: aa.th,
        k_test_train,
        ntk_test_train,
        k_test_diag: qd[n..].to_vec(),
        ntk_test_diag: td[n..].to_vec(),
        k_test,
        ntk_test,
        mehler_bound: bound,
        quadrature_fallbacks: ctx.adaptive_pairs.load(Ordering::Relaxed),
    })
}
