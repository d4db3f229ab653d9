//! The single computations of `dlt theory criticality|profile|mc|kernels|predict` outside the
//! study: their `results.json` values, CSV tables, figures and `.npy` files, built here so the
//! command line only parses flags, calls these and prints.

use crate::output::{cell, OutDir};
use crate::plot::{Figure, Series};
use crate::study::StudyError;
use dlt_nn::data::npy;
use dlt_theory::criticality::Critical;
use dlt_theory::kernels::pair::closed_form;
use dlt_theory::kernels::{DatasetKernels, KernelConfig, NtkTime, PairMethod, Prediction};
use dlt_theory::mc::{McConfig, McLayer};
use dlt_theory::multi::MultiLayer;
use dlt_theory::profile::{Ensemble, Layer, LearningRates};
use serde_json::{json, Map, Value};
use std::path::Path;

/// The JSON of `dlt theory criticality`: the critical (C_b, C_W), the fixed point K*, the
/// universality class and its a₁ and p_⊥ (PDLT, arXiv 2106.10165 §5.3;
/// docs/derivations/theory.md#criticality, docs/derivations/theory.md#universality-classes).
pub fn criticality_results(c: &Critical) -> Value {
    json!({"activation": c.activation, "class": c.class.as_str(), "cb": c.cb, "cw": c.cw, "k_star": c.k_star, "a1": c.a1, "p_perp": c.p_perp})
}

/// The header of `dlt theory profile`'s `results.json`: the ensemble (activation, C_b, C_W,
/// init, residual γ and ξ), the depth and the NTK learning rates.
pub fn profile_header(e: &Ensemble, depth: usize, lr: &LearningRates) -> Value {
    json!({"activation": e.act.name(), "cb": e.cb, "cw": e.cw, "init": e.init, "depth": depth, "gamma": e.gamma, "xi": e.xi, "lambda_b": lr.lambda_b, "lambda_w": lr.lambda_w, "lambda_b_over_l": lr.b_over_l})
}

/// One layer of the single-input profile as JSON: every statistic of [`Layer`] plus the
/// normalised V/K², A/Θ², B/Θ², D/(KΘ), F/(KΘ) (docs/derivations/theory.md#four-point-vertex,
/// docs/derivations/theory.md#ntk-fluctuations).
fn layer_json(r: &Layer) -> Value {
    let mut m = serde_json::to_value(r).expect("plain data");
    let o = m.as_object_mut().expect("object");
    o.insert("V_over_K2".into(), json!(r.v_over_k2()));
    o.insert("A_over_theta2".into(), json!(r.a_over_theta2()));
    o.insert("B_over_theta2".into(), json!(r.b_over_theta2()));
    o.insert("D_over_Ktheta".into(), json!(r.d_over_ktheta()));
    o.insert("F_over_Ktheta".into(), json!(r.f_over_ktheta()));
    m
}

/// `results.json` of the single-input profile: `header` ([`profile_header`]) with K^(1),
/// V^(1) and the layer-by-layer K, χ_∥, χ_⊥, V, Θ, A, B, D, F of the recursions
/// (docs/derivations/theory.md#kernel-recursion, docs/derivations/theory.md#ntk-mean).
pub fn profile_results(header: Value, k1: f64, v1: f64, rows: &[Layer]) -> Value {
    let mut v = header;
    v["k1"] = json!(k1);
    v["v1"] = json!(v1);
    v["layers"] = json!(rows.iter().map(layer_json).collect::<Vec<_>>());
    v
}

/// Add the dNTK/ddNTK recursions (docs/derivations/dntk.md#recursions) to a single-input
/// profile's layers: `P`, `Q`, `R`, `S`, `T`, `U`, `K1`, `theta1` and the normalised
/// `P_over_theta2`, `Q_over_theta2`, `RK_over_theta3`, `SK_over_theta3`, `TK_over_theta3`,
/// `UK_over_theta3`; where they are not derived (orthogonal weights, residual networks, kinked
/// activations outside the ReLU family) those keys are null and `dntk_note` says why.
pub fn add_dntk(
    v: &mut Value,
    d: Result<Vec<dlt_theory::dntk::DntkLayer>, dlt_theory::TheoryError>,
) {
    let d = match d {
        Ok(d) => d,
        Err(e) => {
            v["dntk_note"] = json!(format!("dNTK recursions not derived here: {e}"));
            vec![]
        }
    };
    let Some(layers) = v["layers"].as_array_mut() else {
        return;
    };
    for (i, row) in layers.iter_mut().enumerate() {
        let x = d.get(i);
        let f = |g: fn(&dlt_theory::dntk::DntkLayer) -> f64| x.map(g);
        row["P"] = json!(f(|x| x.p));
        row["Q"] = json!(f(|x| x.q));
        row["R"] = json!(f(|x| x.r));
        row["S"] = json!(f(|x| x.s));
        row["T"] = json!(f(|x| x.t));
        row["U"] = json!(f(|x| x.u));
        row["K1"] = json!(f(|x| x.k1));
        row["theta1"] = json!(f(|x| x.theta1));
        row["P_over_theta2"] = json!(f(|x| x.p_over_theta2()));
        row["Q_over_theta2"] = json!(f(|x| x.q_over_theta2()));
        row["RK_over_theta3"] = json!(f(|x| x.r_k_over_theta3()));
        row["SK_over_theta3"] = json!(f(|x| x.s_k_over_theta3()));
        row["TK_over_theta3"] = json!(f(|x| x.t_k_over_theta3()));
        row["UK_over_theta3"] = json!(f(|x| x.u_k_over_theta3()));
    }
}

/// Write the single-input profile into `dir`: `profile.csv` (every statistic per layer),
/// `kernel.svg` (K and Θ), `vertex.svg` (V/K²), `ntk.svg` (the normalised NTK fluctuations,
/// when computed) and `results.json` (`v`, from [`profile_results`]).
pub fn write_profile(dir: &OutDir, rows: &[Layer], v: &Value) -> Result<(), StudyError> {
    let names = [
        "l",
        "K",
        "chi_par",
        "chi_perp",
        "V",
        "theta",
        "A",
        "B",
        "D",
        "F",
        "V_over_K2",
        "A_over_theta2",
        "B_over_theta2",
        "D_over_Ktheta",
        "F_over_Ktheta",
    ];
    let csv: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            names
                .iter()
                .map(|n| {
                    if *n == "l" {
                        r.l.to_string()
                    } else {
                        cell(r.stat(n))
                    }
                })
                .collect()
        })
        .collect();
    dir.write_csv("profile.csv", &names, &csv)?;
    let line = |name: &str, f: &dyn Fn(&Layer) -> Option<f64>| {
        Series::line(
            name,
            rows.iter()
                .filter_map(|r| f(r).map(|y| (r.l as f64, y)))
                .collect(),
        )
    };
    Figure::new("Kernel and NTK mean", "layer l", "value")
        .with(line("K", &|r| Some(r.k)))
        .with(line("Θ", &|r| Some(r.theta)))
        .save_svg(&dir.path("kernel.svg"))?;
    Figure::new("Normalised four-point vertex", "layer l", "V/K²")
        .with(line("V/K²", &|r| Some(r.v_over_k2())))
        .save_svg(&dir.path("vertex.svg"))?;
    if rows[0].a.is_some() {
        Figure::new("NTK fluctuations", "layer l", "normalised")
            .with(line("A/Θ²", &|r| r.a_over_theta2()))
            .with(line("B/Θ²", &|r| r.b_over_theta2()))
            .with(line("D/(KΘ)", &|r| r.d_over_ktheta()))
            .with(line("F/(KΘ)", &|r| r.f_over_ktheta()))
            .save_svg(&dir.path("ntk.svg"))?;
    }
    dir.write_json("results.json", v)?;
    Ok(())
}

/// `results.json` of the p-input profile: `header` ([`profile_header`]) with the p×p K^(1)
/// (row-major `k1`) and per layer the p×p kernel K, NTK Θ and the p⁴ four-point vertex V
/// (docs/derivations/theory.md#four-point-vertex).
pub fn profile_multi_results(header: Value, k1: &[f64], p: usize, rows: &[MultiLayer]) -> Value {
    let nest2 = |v: &[f64]| {
        (0..p)
            .map(|i| v[i * p..(i + 1) * p].to_vec())
            .collect::<Vec<_>>()
    };
    let layers: Vec<Value> = rows
        .iter()
        .map(|r| {
            let v4: Vec<Vec<Vec<Vec<f64>>>> = (0..p)
                .map(|i| {
                    (0..p)
                        .map(|j| {
                            (0..p)
                                .map(|k| (0..p).map(|l| r.v_at(i, j, k, l)).collect())
                                .collect()
                        })
                        .collect()
                })
                .collect();
            json!({"l": r.l, "K": nest2(&r.k), "theta": nest2(&r.theta), "V": v4})
        })
        .collect();
    let mut v = header;
    v["k1_matrix"] = json!(nest2(k1));
    v["layers"] = json!(layers);
    v
}

/// Write the p-input profile into `dir`: `profile_multi.csv` (l, a, b, K_ab, Θ_ab, V_aabb),
/// `kernel.svg` (every K_ab, a ≤ b, against depth) and `results.json` (`v`, from
/// [`profile_multi_results`]).
pub fn write_profile_multi(
    dir: &OutDir,
    p: usize,
    rows: &[MultiLayer],
    v: &Value,
) -> Result<(), StudyError> {
    let mut csv = vec![];
    for r in rows {
        for i in 0..p {
            for j in 0..p {
                csv.push(vec![
                    r.l.to_string(),
                    i.to_string(),
                    j.to_string(),
                    cell(r.k_at(i, j)),
                    cell(r.theta[i * p + j]),
                    cell(r.v_at(i, i, j, j)),
                ]);
            }
        }
    }
    dir.write_csv(
        "profile_multi.csv",
        &["l", "a", "b", "K", "theta", "V_aa_bb"],
        &csv,
    )?;
    let mut fig = Figure::new("Kernel entries vs depth", "layer l", "K_ab");
    for i in 0..p {
        for j in i..p {
            fig = fig.with(Series::line(
                format!("K_{i}{j}"),
                rows.iter().map(|r| (r.l as f64, r.k_at(i, j))).collect(),
            ));
        }
    }
    fig.save_svg(&dir.path("kernel.svg"))?;
    dir.write_json("results.json", v)?;
    Ok(())
}

/// `results.json` of `dlt theory mc`: the setting and, per layer, every Monte Carlo estimate
/// with its standard error, the 1/n theory and the z-score (MC − theory)/SE
/// (docs/derivations/theory.md#monte-carlo, docs/derivations/theory.md#mc-errors).
pub fn mc_results(cfg: &McConfig, seconds: f64, res: &[McLayer], theory: &[Layer]) -> Value {
    let layers: Vec<Value> = res
        .iter()
        .zip(theory)
        .map(|(m, t)| {
            let mut o = Map::new();
            o.insert("l".into(), json!(m.l));
            for (name, est) in &m.stats {
                let th = t.stat(name);
                o.insert(name.clone(), json!(est.value));
                o.insert(format!("{name}_se"), json!(est.se));
                o.insert(format!("{name}_theory"), json!(th));
                o.insert(
                    format!("{name}_z"),
                    json!(th.map(|th| if est.se > 0.0 {
                        (est.value - th) / est.se
                    } else {
                        0.0
                    })),
                );
            }
            Value::Object(o)
        })
        .collect();
    json!({
        "activation": cfg.ensemble.act.name(), "cb": cfg.ensemble.cb, "cw": cfg.ensemble.cw, "k1": cfg.k1,
        "width": cfg.width, "depth": cfg.depth, "networks": cfg.networks, "init": cfg.ensemble.init,
        "first_layer": cfg.first_layer, "ntk": cfg.ntk, "seed": cfg.seed, "sampler": cfg.sampler(), "seconds": seconds,
        "layers": layers,
    })
}

/// Write `dlt theory mc` into `dir`: `mc.csv` (per layer every estimate, its SE and the
/// theory), `kernel.svg`, `vertex.svg` (and with the NTK `theta.svg`, `A_over_theta2.svg`, …:
/// MC ± SE against the 1/n recursion) and `results.json` (`v`, from [`mc_results`]).
pub fn write_mc(
    dir: &OutDir,
    cfg: &McConfig,
    res: &[McLayer],
    theory: &[Layer],
    v: &Value,
) -> Result<(), StudyError> {
    let names: Vec<String> = res[0].stats.iter().map(|(n, _)| n.clone()).collect();
    let mut header = vec!["l".to_string()];
    for n in &names {
        header.extend([n.clone(), format!("{n}_se"), format!("{n}_theory")]);
    }
    let csv: Vec<Vec<String>> = res
        .iter()
        .zip(theory)
        .map(|(m, t)| {
            let mut row = vec![m.l.to_string()];
            for (n, est) in &m.stats {
                row.extend([cell(est.value), cell(est.se), cell(t.stat(n))]);
            }
            row
        })
        .collect();
    dir.write_csv(
        "mc.csv",
        &header.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        &csv,
    )?;
    let plot = |stat: &str, title: &str| {
        Figure::new(title, "layer l", stat)
            .with(Series::line(
                "theory (1/n recursion)",
                theory
                    .iter()
                    .filter_map(|t| t.stat(stat).map(|y| (t.l as f64, y)))
                    .collect(),
            ))
            .with(Series::points(
                format!("MC, n = {}", cfg.width),
                res.iter()
                    .filter_map(|m| m.get(stat).map(|e| (m.l as f64, e.value)))
                    .collect(),
                Some(
                    res.iter()
                        .filter_map(|m| m.get(stat).map(|e| e.se))
                        .collect(),
                ),
            ))
    };
    plot("K", "Kernel").save_svg(&dir.path("kernel.svg"))?;
    plot("V_over_K2", "Four-point vertex").save_svg(&dir.path("vertex.svg"))?;
    if cfg.ntk {
        for s in [
            "theta",
            "A_over_theta2",
            "B_over_theta2",
            "D_over_Ktheta",
            "F_over_Ktheta",
        ] {
            plot(s, s).save_svg(&dir.path(&format!("{s}.svg")))?;
        }
    }
    dir.write_json("results.json", v)?;
    Ok(())
}

/// The pair-integral method actually used (auto resolved: closed form, adaptive Mehler series
/// or kink-aware 2-D quadrature; docs/derivations/kernels.md#pair-integrals), for
/// `results.json`.
pub fn method_used(cfg: &KernelConfig, k: &DatasetKernels) -> &'static str {
    match cfg.method {
        PairMethod::Auto if closed_form(&*cfg.act).is_some() => "closed_form",
        PairMethod::Auto if k.mehler_bound.is_some() => "mehler_adaptive",
        PairMethod::Auto => "adaptive_2d",
        PairMethod::ClosedForm => "closed_form",
        PairMethod::Mehler { .. } => "mehler",
        PairMethod::MehlerAdaptive { .. } => "mehler_adaptive",
        PairMethod::GaussHermite2d { .. } => "quadrature",
        PairMethod::Adaptive2d => "adaptive_2d",
    }
}

/// The kernel configuration as given (`method`: the `--method` text) in `results.json`.
fn config_json(cfg: &KernelConfig, method: &str) -> Value {
    json!({"activation": cfg.act.name(), "cb": cfg.cb, "cw": cfg.cw, "lambda_b": cfg.lambda_b,
        "lambda_w": cfg.lambda_w, "depth": cfg.depth, "method": method, "threads": cfg.threads})
}

/// The Mehler series' error bound (σ, σ′) when it was used, else null
/// (docs/derivations/kernels.md#mehler-series).
fn mehler_json(k: &DatasetKernels) -> Value {
    match k.mehler_bound {
        Some((s, d)) => json!({"sigma": s, "sigma_prime": d}),
        None => Value::Null,
    }
}

/// `[[…], …]` of a row-major rows×cols block.
pub fn nested(v: &[f64], cols: usize) -> Value {
    json!(v.chunks(cols.max(1)).collect::<Vec<_>>())
}

/// Write a rows×cols block as `dir/name` (.npy); the file name.
fn write_npy(
    dir: &OutDir,
    name: &str,
    v: &[f64],
    rows: usize,
    cols: usize,
) -> Result<String, StudyError> {
    npy::write(&dir.path(name), &[rows, cols], v)?;
    Ok(name.to_string())
}

/// The JSON `dlt theory kernels` prints: the N×N NNGP kernel K and NTK Θ of the training inputs
/// (and, with test inputs, the M×N test × train blocks) of the infinitely wide MLP
/// (docs/derivations/kernels.md#recursion).
pub fn kernels_json(k: &DatasetKernels, n: usize, with_test: bool) -> Value {
    let mut v = json!({"nngp": nested(&k.k_train, n), "ntk": nested(&k.ntk_train, n)});
    if with_test {
        v["nngp_test_train"] = nested(&k.k_test_train, n);
        v["ntk_test_train"] = nested(&k.ntk_test_train, n);
    }
    v
}

/// Where the inputs of `dlt theory kernels` came from, for `results.json`.
pub struct KernelsInputs<'a> {
    /// The training inputs' file.
    pub inputs: &'a Path,
    /// Their shape (N, d).
    pub shape: [usize; 2],
    /// The test inputs' file and their shape (M, d), if given.
    pub inputs2: Option<(&'a Path, [usize; 2])>,
}

/// Write `dlt theory kernels` into `dir`: `nngp.npy`, `ntk.npy` (N×N) and with test inputs
/// `nngp_test_train.npy`, `ntk_test_train.npy` (M×N), and `results.json` (the configuration,
/// `method` as given and the method used, the inputs, the Mehler bound, the quadrature
/// fallbacks, `seconds` and the files).
pub fn write_kernels(
    dir: &OutDir,
    cfg: &KernelConfig,
    method: &str,
    k: &DatasetKernels,
    inputs: &KernelsInputs,
    seconds: f64,
) -> Result<(), StudyError> {
    let n = inputs.shape[0];
    let m = k.n_test;
    let mut files = vec![
        write_npy(dir, "nngp.npy", &k.k_train, n, n)?,
        write_npy(dir, "ntk.npy", &k.ntk_train, n, n)?,
    ];
    if inputs.inputs2.is_some() {
        files.push(write_npy(
            dir,
            "nngp_test_train.npy",
            &k.k_test_train,
            m,
            n,
        )?);
        files.push(write_npy(
            dir,
            "ntk_test_train.npy",
            &k.ntk_test_train,
            m,
            n,
        )?);
    }
    let mut r = config_json(cfg, method);
    r["command"] = json!("theory kernels");
    r["method_used"] = json!(method_used(cfg, k));
    r["inputs"] = json!(inputs.inputs.display().to_string());
    r["inputs_shape"] = json!(inputs.shape);
    r["inputs2"] = json!(inputs.inputs2.map(|(p, _)| p.display().to_string()));
    r["inputs2_shape"] = json!(inputs.inputs2.map(|(_, s)| s));
    r["mehler_bound"] = mehler_json(k);
    r["quadrature_fallbacks"] = json!(k.quadrature_fallbacks);
    r["seconds"] = json!(seconds);
    r["files"] = json!(files);
    dir.write_json("results.json", &r)?;
    Ok(())
}

/// The JSON `dlt theory predict` prints: the M×k predicted mean and the M×M covariance.
pub fn predict_json(pred: &Prediction, outputs: usize, m: usize) -> Value {
    json!({"mean": nested(&pred.mean, outputs), "cov": nested(&pred.cov, m)})
}

/// Where the data of `dlt theory predict` came from, their sizes and the kind of prediction,
/// for `results.json`.
pub struct PredictInputs<'a> {
    /// Training inputs' file.
    pub train_x: &'a Path,
    /// Training targets' file.
    pub train_y: &'a Path,
    /// Test inputs' file.
    pub test_x: &'a Path,
    /// N training inputs.
    pub n_train: usize,
    /// M test inputs.
    pub n_test: usize,
    /// Input dimension d.
    pub dim: usize,
    /// Outputs k.
    pub outputs: usize,
    /// The NTK ensemble's training time, or None for the NNGP posterior.
    pub ntk: Option<NtkTime>,
    /// The NNGP observation-noise variance.
    pub noise: f64,
}

/// Write `dlt theory predict` into `dir`: `mean.npy` (M×k), `cov.npy` (M×M) and
/// `results.json` (the configuration, the kind, the data, the NNGP noise, the NTK training
/// time — gradient flow τ, gradient-descent steps, or ∞ (docs/derivations/kernels.md#posterior,
/// docs/derivations/kernels.md#gradient-flow) — the Mehler bound, `seconds` and the files).
pub fn write_predict(
    dir: &OutDir,
    cfg: &KernelConfig,
    method: &str,
    k: &DatasetKernels,
    pred: &Prediction,
    data: &PredictInputs,
    seconds: f64,
) -> Result<(), StudyError> {
    let (m, outputs) = (data.n_test, data.outputs);
    let files = vec![
        write_npy(dir, "mean.npy", &pred.mean, m, outputs)?,
        write_npy(dir, "cov.npy", &pred.cov, m, m)?,
    ];
    let mut r = config_json(cfg, method);
    r["command"] = json!("theory predict");
    r["kind"] = json!(if data.ntk.is_some() { "ntk" } else { "nngp" });
    r["method_used"] = json!(method_used(cfg, k));
    r["train_x"] = json!(data.train_x.display().to_string());
    r["train_y"] = json!(data.train_y.display().to_string());
    r["test_x"] = json!(data.test_x.display().to_string());
    r["n_train"] = json!(data.n_train);
    r["n_test"] = json!(m);
    r["dim"] = json!(data.dim);
    r["outputs"] = json!(outputs);
    r["noise"] = json!(data.noise);
    r["time"] = match data.ntk {
        None => Value::Null,
        Some(NtkTime::Flow { tau }) => json!({"flow_tau": tau}),
        Some(NtkTime::Steps { eta, steps }) => json!({"steps": steps, "lr": eta}),
        Some(NtkTime::Infinity) => json!("infinity"),
    };
    r["mehler_bound"] = mehler_json(k);
    r["quadrature_fallbacks"] = json!(k.quadrature_fallbacks);
    r["seconds"] = json!(seconds);
    r["files"] = json!(files);
    dir.write_json("results.json", &r)?;
    Ok(())
}
