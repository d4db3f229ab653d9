//! Cross-sections of decision cells (Hoffman, Roberts, Yaida, arXiv 1908.02729, Fig. 1): the
//! predicted class on the plane x₀ + s·e₁ + t·e₂, |s|, |t| ≤ R, through a test input x₀, with
//! e₁, e₂ orthonormal random directions (Gram–Schmidt on two Gaussian vectors; the same plane for
//! every model, so panels in a column are comparable). Drawn as a categorical map, one row of
//! panels per model and one column per test input.

use crate::output::{write_atomic, OutputError};
use crate::study::StudyError;
use dlt_nn::attack::Classifier;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::fmt::Write as _;
use std::path::Path;

/// Fashion-MNIST class names, label order.
pub const CLASSES: [&str; 10] = [
    "T-shirt/top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

/// Ten distinguishable colours: the Okabe–Ito palette without black, then three of Paul Tol's
/// (colour-blind-safe sets).
const COLOURS: [&str; 10] = [
    "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#882255",
    "#117733", "#BBBBBB",
];

/// Two orthonormal directions in ℝ^d, seeded.
pub fn plane(d: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut a: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
    let mut b: Vec<f64> = (0..d).map(|_| rng.sample(StandardNormal)).collect();
    let na = a.iter().map(|v| v * v).sum::<f64>().sqrt();
    a.iter_mut().for_each(|v| *v /= na);
    let ab: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    b.iter_mut().zip(&a).for_each(|(v, x)| *v -= ab * x);
    let nb = b.iter().map(|v| v * v).sum::<f64>().sqrt();
    b.iter_mut().for_each(|v| *v /= nb);
    (a, b)
}

/// The predicted class on a `grid` × `grid` lattice of [−R, R]² (row j = t from +R down to −R,
/// column i = s from −R to R) through `x0` along (e₁, e₂).
pub fn section(
    model: &impl Classifier,
    theta: &[f64],
    x0: &[f64],
    dirs: &(Vec<f64>, Vec<f64>),
    radius: f64,
    grid: usize,
) -> Result<Vec<u8>, StudyError> {
    let d = x0.len();
    let step = |k: usize| -radius + 2.0 * radius * k as f64 / (grid - 1) as f64;
    let mut xs = Vec::with_capacity(grid * grid * d);
    for j in 0..grid {
        let t = -step(j);
        for i in 0..grid {
            let s = step(i);
            xs.extend((0..d).map(|k| x0[k] + s * dirs.0[k] + t * dirs.1[k]));
        }
    }
    let z = model.logits(theta, &xs)?;
    let c = model.classes().max(1);
    Ok(z.chunks_exact(c)
        .map(|r| dlt_nn::mlp::argmax(r).0 as u8)
        .collect())
}

/// Fraction of the lattice points inside the disc s² + t² ≤ R² whose class is the class at the
/// centre (the cell's share of the disc, as seen in this plane).
pub fn area_fraction(map: &[u8], grid: usize) -> f64 {
    let mid = grid / 2;
    let centre = map[mid * grid + mid];
    let (mut inside, mut same) = (0usize, 0usize);
    for j in 0..grid {
        for i in 0..grid {
            let (a, b) = (i as f64 - mid as f64, j as f64 - mid as f64);
            if a * a + b * b <= (mid * mid) as f64 {
                inside += 1;
                same += usize::from(map[j * grid + i] == centre);
            }
        }
    }
    same as f64 / inside as f64
}

/// One SVG of panels: `rows[r] = (row label, maps for each column)`, `cols[k]` = column title.
pub fn save_svg(
    path: &Path,
    title: &str,
    rows: &[(String, Vec<Vec<u8>>)],
    cols: &[String],
    grid: usize,
    radius: f64,
) -> Result<(), OutputError> {
    let (panel, gap, left, top, legend) = (150.0, 12.0, 150.0, 56.0, 130.0);
    let ncol = cols.len() as f64;
    let width = left + ncol * (panel + gap) + legend;
    let height = top + rows.len() as f64 * (panel + gap) + 40.0;
    let px = panel / grid as f64;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12" shape-rendering="crispEdges"><rect width="100%" height="100%" fill="white"/><text x="{}" y="20" text-anchor="middle" font-size="15">{title}</text>"#,
        width / 2.0
    );
    for (k, c) in cols.iter().enumerate() {
        let x = left + k as f64 * (panel + gap) + panel / 2.0;
        let _ = write!(
            s,
            r#"<text x="{x}" y="{}" text-anchor="middle">{c}</text>"#,
            top - 8.0
        );
    }
    for (r, (label, maps)) in rows.iter().enumerate() {
        let y0 = top + r as f64 * (panel + gap);
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{label}</text>"#,
            left - 8.0,
            y0 + panel / 2.0
        );
        for (k, map) in maps.iter().enumerate() {
            let x0 = left + k as f64 * (panel + gap);
            // Runs of equal class along a row become one rectangle.
            for j in 0..grid {
                let mut i = 0;
                while i < grid {
                    let cl = map[j * grid + i];
                    let mut e = i + 1;
                    while e < grid && map[j * grid + e] == cl {
                        e += 1;
                    }
                    let _ = write!(
                        s,
                        r##"<rect x="{:.2}" y="{:.2}" width="{:.2}" height="{:.2}" fill="{}"/>"##,
                        x0 + i as f64 * px,
                        y0 + j as f64 * px,
                        (e - i) as f64 * px + 0.3,
                        px + 0.3,
                        COLOURS[cl as usize % 10]
                    );
                    i = e;
                }
            }
            let (cx, cy) = (x0 + panel / 2.0, y0 + panel / 2.0);
            let _ = write!(
                s,
                r##"<path d="M{} {cy}h8M{cx} {}v8" stroke="black" stroke-width="2"/><rect x="{x0}" y="{y0}" width="{panel}" height="{panel}" fill="none" stroke="#444"/>"##,
                cx - 4.0,
                cy - 4.0
            );
        }
    }
    let lx = left + ncol * (panel + gap) + 8.0;
    for (k, name) in CLASSES.iter().enumerate() {
        let y = top + k as f64 * 18.0;
        let _ = write!(
            s,
            r##"<rect x="{lx}" y="{y}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{name}</text>"##,
            COLOURS[k],
            lx + 18.0,
            y + 10.0
        );
    }
    let _ = write!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">each panel: s, t ∈ [−{radius}, {radius}] (L2 pixel units) along two random orthonormal directions; + marks the test input</text></svg>"#,
        left + ncol * (panel + gap) / 2.0,
        height - 14.0
    );
    write_atomic(path, s.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plane_is_orthonormal_and_the_area_of_a_half_plane_cell_is_one_half() {
        let (a, b) = plane(50, 3);
        let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>();
        // Gram–Schmidt in f64: orthonormal to rounding (≈ 1e-16 · √d).
        assert!((dot(&a, &a) - 1.0).abs() < 1e-12 && (dot(&b, &b) - 1.0).abs() < 1e-12);
        assert!(dot(&a, &b).abs() < 1e-12);
        // A map split by the vertical line through the centre: the centre's column belongs to
        // the centre's class, so the disc fraction is ½ plus the centre column's share
        // (2·mid + 1 of the ≈ π mid² lattice points): within 2/(π·mid) of ½.
        let grid = 101;
        let map: Vec<u8> = (0..grid * grid)
            .map(|k| u8::from(k % grid > grid / 2))
            .collect();
        let f = area_fraction(&map, grid);
        assert!((f - 0.5).abs() < 2.0 / (std::f64::consts::PI * 50.0), "{f}");
    }
}
