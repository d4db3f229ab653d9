//! The normalised dNTK/ddNTK correlators vs depth on sampled tanh networks (C_W = 1, λ_b = 1/l,
//! λ_W = 1, K^(1) = 1), Gaussian or Haar weights, beside the Gaussian recursion
//! (docs/derivations/dntk.md#haar):
//! `cargo run --release -p dlt-theory --example ddntk_depth -- gaussian|orthogonal WIDTH DEPTH NETWORKS [SEED]`.
use dlt_theory::activation::parse;
use dlt_theory::dntk::dntk_profile;
use dlt_theory::mc::dntk::ddntk_pair_means;
use dlt_theory::mc::McConfig;
use dlt_theory::profile::{Ensemble, Init, LearningRates, ProfileConfig};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let init = if a[0] == "orthogonal" {
        Init::Orthogonal
    } else {
        Init::Gaussian
    };
    let (n, depth, networks): (usize, usize, usize) = (
        a[1].parse().unwrap(),
        a[2].parse().unwrap(),
        a[3].parse().unwrap(),
    );
    let seed = a.get(4).map_or(1, |s| s.parse().unwrap());
    let lr = LearningRates {
        lambda_b: 1.0,
        lambda_w: 1.0,
        b_over_l: true,
    };
    let ensemble = Ensemble::new(parse("tanh").unwrap(), 0.0, 1.0);
    let th = dntk_profile(&ProfileConfig {
        ensemble: ensemble.clone(),
        k1: 1.0,
        v1: 0.0,
        depth,
        lr,
    })
    .unwrap();
    let t0 = std::time::Instant::now();
    let mc = ddntk_pair_means(&McConfig {
        ensemble: ensemble.with_init(init),
        k1: 1.0,
        width: n,
        depth,
        networks,
        ntk: true,
        lr,
        first_layer: init,
        seed,
        batches: 20,
        threads: 0,
    })
    .unwrap();
    println!("{:.1} s", t0.elapsed().as_secs_f64());
    for (m, t) in mc.iter().zip(&th).skip(1) {
        print!("l={:2}", m.l);
        for (k, name) in ["P", "Q", "R", "S", "T", "U"].iter().enumerate() {
            let norm = if k < 2 {
                t.theta * t.theta
            } else {
                t.theta.powi(3) / t.k
            };
            let e = m.get(name).unwrap();
            print!(
                " {name} {:7.3}±{:.3}({:7.3})",
                e.value / norm,
                e.se / norm,
                t.stat(name).unwrap() / norm
            );
        }
        println!();
    }
}
