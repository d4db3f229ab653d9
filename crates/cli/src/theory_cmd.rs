//! `dlt theory …`: criticality, profile, mc and the study.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use dlt_studies::output::{cell, OutDir};
use dlt_studies::plot::{Figure, Series};
use dlt_theory::activation::parse;
use dlt_theory::criticality::criticality;
use dlt_theory::mc::{self, McConfig};
use dlt_theory::multi::profile_multi;
use dlt_theory::profile::{profile, Ensemble, Init, Layer, LearningRates, ProfileConfig};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum TheoryCmd {
    /// Critical (C_b, C_W), K* and universality class of an activation.
    Criticality {
        /// Activation: linear, relu, leaky_relu:A, tanh, sin, erf, sigmoid, softplus, gelu, silu|swish, elu[:A], selu, …
        #[arg(long)]
        activation: String,
        #[arg(long)]
        json: bool,
    },
    /// Layer-by-layer K, χ_∥, χ_⊥, V, Θ, A, B, D, F from the recursions.
    Profile(ProfileArgs),
    /// Monte Carlo over real networks beside the theory, with standard errors and z-scores.
    Mc(McArgs),
    /// Run the whole `theory` study (figures, CSV, results.json with claims).
    Study {
        #[arg(long, default_value = "out/theory")]
        out: PathBuf,
        #[arg(long)]
        quick: bool,
        #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
        seed: u64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct NetArgs {
    /// Activation name (see `dlt theory criticality --help`).
    #[arg(long)]
    activation: String,
    /// Bias variance C_b (≥ 0).
    #[arg(long, allow_negative_numbers = true)]
    cb: f64,
    /// Weight variance C_W (> 0); weights have variance C_W/fan_in.
    #[arg(long, allow_negative_numbers = true)]
    cw: f64,
    /// K^(1) = C_b + C_W|x|²/n₀ (required by `theory mc`; `theory profile` takes it or
    /// --k1-matrix).
    #[arg(long, allow_negative_numbers = true)]
    k1: Option<f64>,
    /// Number of layers L (≥ 1).
    #[arg(long, allow_negative_numbers = true)]
    depth: usize,
    /// Weight ensemble: gaussian or orthogonal (Haar).
    #[arg(long, default_value = "gaussian")]
    init: Init,
    /// NTK bias learning rate λ_b.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    lambda_b: f64,
    /// NTK weight learning rate λ_W.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    lambda_w: f64,
    /// Use λ_b^(l) = λ_b / l (the K* = 0 equivalence-principle scaling).
    #[arg(long)]
    lambda_b_over_l: bool,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Write results.json, CSV and SVG figures into this folder.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Args)]
pub struct ProfileArgs {
    #[command(flatten)]
    net: NetArgs,
    /// V^(1) (default 0: a Gaussian first layer).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    v1: f64,
    /// Residual skip weight γ: z' = γz + ξ(b + Wσ(z)).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0)]
    gamma: f64,
    /// Residual branch weight ξ.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1.0)]
    xi: f64,
    /// p inputs: K^(1) as a p×p matrix, rows separated by ';', e.g. "1,0.5;0.5,1".
    #[arg(long, conflicts_with = "k1")]
    k1_matrix: Option<String>,
    /// Gauss–Hermite order for 1-D expectations of smooth activations.
    #[arg(long, allow_negative_numbers = true, default_value_t = 192)]
    quad_order: usize,
}

#[derive(Args)]
pub struct McArgs {
    #[command(flatten)]
    net: NetArgs,
    /// Width n of every hidden layer (and of the input).
    #[arg(long, allow_negative_numbers = true)]
    width: usize,
    /// Number of sampled networks S.
    #[arg(long, allow_negative_numbers = true)]
    networks: usize,
    /// Measure the NTK with the exact forward equation (full weight matrices).
    #[arg(long)]
    ntk: bool,
    /// First-layer ensemble (default: same as --init).
    #[arg(long)]
    first_layer: Option<Init>,
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    seed: u64,
    /// Batches for batch-means standard errors.
    #[arg(long, allow_negative_numbers = true, default_value_t = 20)]
    batches: usize,
    /// Worker threads (0: all cores).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0)]
    threads: usize,
}

pub fn run(cmd: TheoryCmd) -> Result<()> {
    match cmd {
        TheoryCmd::Criticality { activation, json } => {
            let act = parse(&activation)?;
            let c = criticality(&*act);
            let v = json!({"activation": c.activation, "class": c.class.as_str(), "cb": c.cb, "cw": c.cw, "k_star": c.k_star, "a1": c.a1, "p_perp": c.p_perp});
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                let f = |x: Option<f64>| x.map_or("none".to_string(), |v| format!("{v:.10}"));
                println!(
                    "activation {}\nclass      {}\nC_b        {}\nC_W        {}\nK*         {}",
                    c.activation,
                    c.class.as_str(),
                    f(c.cb),
                    f(c.cw),
                    f(c.k_star)
                );
            }
            Ok(())
        }
        TheoryCmd::Profile(a) => run_profile(a),
        TheoryCmd::Mc(a) => run_mc(a),
        TheoryCmd::Study {
            out,
            quick,
            seed,
            json,
        } => {
            let dir = OutDir::create(&out)?;
            let r = dlt_studies::theory::run(
                &dlt_studies::theory::Config {
                    quick,
                    seed,
                    threads: 0,
                    quiet: json,
                },
                &dir,
            )?;
            crate::print_study(&r, &r.claims, json, &dir)?;
            Ok(())
        }
    }
}

fn ensemble(n: &NetArgs) -> Result<Ensemble> {
    Ok(Ensemble::new(parse(&n.activation)?, n.cb, n.cw).with_init(n.init))
}

fn lr(n: &NetArgs) -> Result<LearningRates> {
    for (flag, v) in [("--lambda-b", n.lambda_b), ("--lambda-w", n.lambda_w)] {
        anyhow::ensure!(
            v.is_finite() && v >= 0.0,
            "{flag}: learning rates must be finite and ≥ 0, got {v}"
        );
    }
    Ok(LearningRates {
        lambda_b: n.lambda_b,
        lambda_w: n.lambda_w,
        b_over_l: n.lambda_b_over_l,
    })
}

/// Parse "1,0.5;0.5,1" into (row-major values, p).
pub fn parse_matrix(s: &str) -> Result<(Vec<f64>, usize)> {
    let rows: Vec<Vec<f64>> = s
        .split(';')
        .map(|r| {
            r.split(',')
                .map(|v| v.trim().parse::<f64>())
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<_, _>>()
        .with_context(|| {
            format!("--k1-matrix: cannot parse '{s}' (expected numbers like \"1,0.5;0.5,1\")")
        })?;
    let p = rows.len();
    anyhow::ensure!(
        rows.iter().all(|r| r.len() == p),
        "--k1-matrix: the matrix must be square ({p} rows)"
    );
    Ok((rows.concat(), p))
}

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

/// Size flags of `theory profile`, checked before any work (issue 12): depth, quadrature
/// order (at most 4096 nodes: the rule's nodes cost O(order²) to compute, and beyond a few
/// hundred nodes the 1-D expectations no longer change), and the memory of the layer table.
fn check_profile(a: &ProfileArgs) -> Result<()> {
    use crate::limits::{at_least, at_most, check_memory, prod};
    at_least("--depth", a.net.depth, 1)?;
    at_least("--quad-order", a.quad_order, 8)?;
    at_most(
        "--quad-order",
        a.quad_order,
        4096,
        "more nodes do not change the 1-D expectations",
    )?;
    // p inputs: K, Θ (p² each), V (p⁴) per layer; one input: a few dozen numbers per layer.
    let p = a
        .k1_matrix
        .as_deref()
        .map_or(1, |m| m.split(';').count().max(1));
    check_memory(
        "theory profile",
        &[(
            "--depth",
            a.net.depth.to_string(),
            prod(&[a.net.depth, p, p, p, p, 8 * 4 + 512]),
        )],
    )
}

fn run_profile(a: ProfileArgs) -> Result<()> {
    check_profile(&a)?;
    let mut e = ensemble(&a.net)?;
    e.gamma = a.gamma;
    e.xi = a.xi;
    e.quad.gh1 = a.quad_order;
    let lr = lr(&a.net)?;
    let header = json!({"activation": e.act.name(), "cb": e.cb, "cw": e.cw, "init": e.init, "depth": a.net.depth, "gamma": e.gamma, "xi": e.xi, "lambda_b": lr.lambda_b, "lambda_w": lr.lambda_w, "lambda_b_over_l": lr.b_over_l});
    if let Some(m) = &a.k1_matrix {
        let (k1, p) = parse_matrix(m)?;
        let rows = profile_multi(&e, &k1, p, a.net.depth, &lr)?;
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
        v["k1_matrix"] = json!(nest2(&k1));
        v["layers"] = json!(layers);
        if let Some(out) = &a.net.out {
            let dir = OutDir::create(out)?;
            let mut csv = vec![];
            for r in &rows {
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
            dir.write_json("results.json", &v)?;
        }
        if a.net.json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            for r in &rows {
                println!("l={:<5} K={:?}", r.l, r.k);
            }
        }
        return Ok(());
    }
    let k1 = a
        .net
        .k1
        .context("--k1 is required (or --k1-matrix for several inputs)")?;
    let rows = profile(&ProfileConfig {
        ensemble: e,
        k1,
        v1: a.v1,
        depth: a.net.depth,
        lr,
    })?;
    let mut v = header;
    v["k1"] = json!(k1);
    v["v1"] = json!(a.v1);
    v["layers"] = json!(rows.iter().map(layer_json).collect::<Vec<_>>());
    if let Some(out) = &a.net.out {
        let dir = OutDir::create(out)?;
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
        dir.write_json("results.json", &v)?;
    }
    if a.net.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{:>6} {:>14} {:>10} {:>10} {:>12} {:>12} {:>12}",
            "l", "K", "chi_par", "chi_perp", "V/K^2", "theta", "A/theta^2"
        );
        let step = (rows.len() / 40).max(1);
        for r in rows
            .iter()
            .filter(|r| r.l == 1 || r.l % step == 0 || r.l == rows.len())
        {
            println!(
                "{:>6} {:>14.8e} {:>10.6} {:>10.6} {:>12.6} {:>12.6} {:>12}",
                r.l,
                r.k,
                r.chi_par,
                r.chi_perp,
                r.v_over_k2(),
                r.theta,
                r.a_over_theta2().map_or("-".into(), |x| format!("{x:.6}"))
            );
        }
    }
    Ok(())
}

/// Size flags of `theory mc`, checked before any work (issue 12): the weight matrices of every
/// worker (n² each; four with --ntk) and the per-batch sums of every layer must fit in memory.
fn check_mc(a: &McArgs) -> Result<()> {
    use crate::limits::{at_least, at_most, check_memory, prod};
    at_least("--depth", a.net.depth, 1)?;
    at_least("--batches", a.batches, 2)?;
    anyhow::ensure!(
        a.networks >= a.batches.saturating_mul(2),
        "--networks {}: need at least two networks per batch (networks ≥ 2 × --batches {})",
        a.networks,
        a.batches
    );
    at_least("--width", a.width, 1)?;
    at_most("--threads", a.threads, 4096, "one worker per thread")?;
    let cores = std::thread::available_parallelism().map_or(1, |v| v.get());
    let workers = if a.threads == 0 { cores } else { a.threads }.min(a.networks.max(1));
    check_memory(
        "theory mc",
        &[
            (
                "--width",
                a.width.to_string(),
                prod(&[workers, a.width, a.width, if a.ntk { 4 * 8 } else { 8 }]),
            ),
            (
                "--depth",
                a.net.depth.to_string(),
                prod(&[a.batches, a.net.depth, 64 * 8]),
            ),
        ],
    )?;
    crate::limits::check_work(
        "theory mc",
        "--networks",
        &a.networks.to_string(),
        prod(&[
            a.networks,
            a.net.depth,
            a.width,
            a.width,
            if a.ntk { a.width } else { 1 },
        ]),
    )
}

fn run_mc(a: McArgs) -> Result<()> {
    check_mc(&a)?;
    let e = ensemble(&a.net)?;
    let k1 = a.net.k1.context("--k1 is required")?;
    let cfg = McConfig {
        ensemble: e,
        k1,
        width: a.width,
        depth: a.net.depth,
        networks: a.networks,
        ntk: a.ntk,
        lr: lr(&a.net)?,
        first_layer: a.first_layer.unwrap_or(a.net.init),
        seed: a.seed,
        batches: a.batches,
        threads: a.threads,
    };
    anyhow::ensure!(
        a.batches >= 2,
        "--batches: need at least 2 batches for a standard error"
    );
    let theory = cfg.theory()?;
    let pb = dlt_studies::progress::bar(cfg.networks as u64, "networks", a.net.json);
    let t0 = std::time::Instant::now();
    let res = mc::run(&cfg, &|k| pb.inc(k));
    pb.finish_and_clear();
    let res = res?;
    let secs = t0.elapsed().as_secs_f64();
    let layers: Vec<Value> = res
        .iter()
        .zip(&theory)
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
    let v = json!({
        "activation": cfg.ensemble.act.name(), "cb": cfg.ensemble.cb, "cw": cfg.ensemble.cw, "k1": k1,
        "width": cfg.width, "depth": cfg.depth, "networks": cfg.networks, "init": cfg.ensemble.init,
        "first_layer": cfg.first_layer, "ntk": cfg.ntk, "seed": cfg.seed, "sampler": cfg.sampler(), "seconds": secs,
        "layers": layers,
    });
    if let Some(out) = &a.net.out {
        let dir = OutDir::create(out)?;
        let names: Vec<String> = res[0].stats.iter().map(|(n, _)| n.clone()).collect();
        let mut header = vec!["l".to_string()];
        for n in &names {
            header.extend([n.clone(), format!("{n}_se"), format!("{n}_theory")]);
        }
        let csv: Vec<Vec<String>> = res
            .iter()
            .zip(&theory)
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
        dir.write_json("results.json", &v)?;
    }
    if a.net.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{} networks of width {} in {:.2} s ({} sampler)",
            cfg.networks,
            cfg.width,
            secs,
            if cfg.ntk { "full" } else { "Gram" }
        );
        println!(
            "{:>4} {:>16} {:>24} {:>12} {:>7}",
            "l", "stat", "MC ± SE", "theory", "z"
        );
        for (m, t) in res.iter().zip(&theory) {
            for (name, est) in &m.stats {
                let th = t.stat(name).unwrap_or(f64::NAN);
                println!(
                    "{:>4} {:>16} {:>12.6} ± {:<9.6} {:>12.6} {:>7.2}",
                    m.l,
                    name,
                    est.value,
                    est.se,
                    th,
                    (est.value - th) / est.se
                );
            }
        }
    }
    Ok(())
}
