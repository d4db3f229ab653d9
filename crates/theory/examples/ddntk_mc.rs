//! Measure the dNTK/ddNTK correlators on sampled networks at several widths and fit a + b/n
//! (docs/derivations/dntk.md#mc-tolerances):
//! `cargo run --release -p dlt-theory --example ddntk_mc -- ACT DEPTH NETWORKS@WIDTH... [SEED]`,
//! e.g. `tanh 3 3000@8 1500@12 600@16`. tanh: C_W = 1, λ_b = 1/l, λ_W = 1; sin: C_W = 1, λ_b = 0,
//! λ_W = 1 (C_b = 0, K^(1) = 1 for both).
use dlt_theory::activation::parse;
use dlt_theory::dntk::dntk_profile;
use dlt_theory::mc::dntk::{ddntk_pair_means, fit_inverse_width};
use dlt_theory::mc::McConfig;
use dlt_theory::profile::{Ensemble, Init, LearningRates, ProfileConfig};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let act = args[0].clone();
    let depth: usize = args[1].parse().expect("DEPTH");
    let mut runs: Vec<(usize, usize)> = vec![];
    let mut seed = 1u64;
    for a in &args[2..] {
        match a.split_once('@') {
            Some((s, n)) => runs.push((n.parse().unwrap(), s.parse().unwrap())),
            None => seed = a.parse().unwrap(),
        }
    }
    let lr = LearningRates {
        lambda_b: if act == "tanh" { 1.0 } else { 0.0 },
        lambda_w: 1.0,
        b_over_l: act == "tanh",
    };
    let ensemble = Ensemble::new(parse(&act).unwrap(), 0.0, 1.0);
    let th = dntk_profile(&ProfileConfig {
        ensemble: ensemble.clone(),
        k1: 1.0,
        v1: 0.0,
        depth,
        lr,
    })
    .unwrap();
    let mut per: Vec<Vec<(usize, dlt_theory::mc::Estimate)>> = vec![vec![]; 6];
    let names = ["P", "Q", "R", "S", "T", "U"];
    for (i, &(n, networks)) in runs.iter().enumerate() {
        let t0 = std::time::Instant::now();
        let mc = ddntk_pair_means(&McConfig {
            ensemble: ensemble.clone(),
            k1: 1.0,
            width: n,
            depth,
            networks,
            ntk: true,
            lr,
            first_layer: Init::Gaussian,
            seed: seed + i as u64,
            batches: 10,
            threads: 0,
        })
        .unwrap();
        let last = &mc[depth - 1];
        print!("n={n} S={networks} ({:.1} s):", t0.elapsed().as_secs_f64());
        for (k, name) in names.iter().enumerate() {
            let e = last.get(name).unwrap();
            per[k].push((n, e));
            print!(" {name} {:.4}±{:.4}", e.value, e.se);
        }
        println!();
    }
    let t = &th[depth - 1];
    for (k, name) in names.iter().enumerate() {
        let f = fit_inverse_width(&per[k]).unwrap();
        let want = t.stat(name).unwrap();
        println!(
            "l={depth} {name}: fit {:.4} ± {:.4}  recursion {want:.4}  dev {:.1} SE ({:+.1} %)",
            f.value,
            f.se,
            (f.value - want) / f.se,
            100.0 * (f.value / want - 1.0)
        );
    }
}
