//! Data sets: the real ones (fetched by [`fetch`]), an IDX reader ([`idx`]) and synthetic
//! generators ([`synthetic`]), all delivered as a plain in-memory [`Split`]; and NumPy `.npy`
//! arrays of floats ([`npy`]) for the commands that take or write arrays.

pub mod fetch;
pub mod idx;
pub mod npy;
pub mod synthetic;

use crate::NnError;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::path::Path;

/// Most bytes [`read_text`] reads (1 GiB).
pub const MAX_TEXT_BYTES: u64 = 1 << 30;

/// Refuse anything but a regular file: a device such as `/dev/zero`, a pipe or a folder would
/// be read until memory runs out, or block.
pub fn regular_file(path: &Path) -> Result<std::fs::Metadata, NnError> {
    let meta = std::fs::metadata(path).map_err(|e| NnError::io(path, e))?;
    if !meta.is_file() {
        return Err(NnError::Data {
            what: path.display().to_string(),
            problem: "is not a regular file (a device, pipe or folder cannot be read as data)"
                .into(),
            fix: "pass a regular file; copy the data into one first".into(),
        });
    }
    Ok(meta)
}

/// Read a whole regular file of at most `max` bytes: the size is checked before reading and
/// enforced while reading (in case the file grows); devices, pipes and folders are refused
/// ([`regular_file`]). Every error names the file, the problem and the fix.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, NnError> {
    use std::io::Read;
    let too_big = |n: u64| NnError::Data {
        what: path.display().to_string(),
        problem: format!("is {n} bytes, more than the {max} bytes dlt reads from such a file"),
        fix: "pass a smaller file (cut a long text first, e.g. with head -c)".into(),
    };
    let len = regular_file(path)?.len();
    if len > max {
        return Err(too_big(len));
    }
    let f = std::fs::File::open(path).map_err(|e| NnError::io(path, e))?;
    let mut bytes = Vec::with_capacity(len as usize);
    f.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| NnError::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Read a UTF-8 text file of at most [`MAX_TEXT_BYTES`] ([`read_bounded`]: checked before
/// reading and enforced while reading; devices and pipes are refused).
pub fn read_text(path: &Path) -> Result<String, NnError> {
    let bytes = read_bounded(path, MAX_TEXT_BYTES)?;
    String::from_utf8(bytes).map_err(|e| NnError::Data {
        what: path.display().to_string(),
        problem: format!(
            "is not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ),
        fix: "convert it to UTF-8 (e.g. iconv -f latin1 -t utf-8)".into(),
    })
}

/// Examples in memory: `x` is row-major `n × dim` (f32), `y` holds class labels (or is empty
/// for regression) and `targets` real-valued targets (`n × out`, regression only).
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Inputs, row-major n × dim.
    pub x: Vec<f32>,
    /// Input dimension.
    pub dim: usize,
    /// Class labels in 0..classes, one per example (empty for regression).
    pub y: Vec<u32>,
    /// Number of classes (0 for regression).
    pub classes: usize,
    /// Real targets, row-major n × out (empty for classification).
    pub targets: Vec<f32>,
    /// Output dimension: the number of classes, or of real targets.
    pub out: usize,
}

impl Split {
    /// Number of examples n.
    pub fn len(&self) -> usize {
        self.x.len().checked_div(self.dim).unwrap_or(0)
    }
    /// True when there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The first `n` examples after a seeded shuffle (a class-balanced-in-expectation subset).
    pub fn subset(&self, n: usize, seed: u64) -> Split {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.shuffle(&mut rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed));
        idx.truncate(n.min(self.len()));
        self.select(&idx)
    }
    /// The examples at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Split {
        let mut s = Split {
            x: Vec::with_capacity(idx.len() * self.dim),
            y: vec![],
            targets: vec![],
            ..self.clone()
        };
        for &i in idx {
            s.x.extend_from_slice(&self.x[i * self.dim..(i + 1) * self.dim]);
            if !self.y.is_empty() {
                s.y.push(self.y[i]);
            }
            if !self.targets.is_empty() {
                s.targets
                    .extend_from_slice(&self.targets[i * self.out..(i + 1) * self.out]);
            }
        }
        s
    }
}

impl TrainTest {
    /// Subtract the training set's per-feature mean from both splits and scale both by one
    /// number so that the training inputs have E|x|²/n₀ = 1 (so K^(1) = C_b + C_W, the
    /// normalisation the effective theory uses).
    pub fn standardize(&mut self) {
        let (d, n) = (self.train.dim, self.train.len());
        if n == 0 || d == 0 {
            return;
        }
        let mut mean = vec![0f64; d];
        for row in self.train.x.chunks(d) {
            mean.iter_mut().zip(row).for_each(|(m, &v)| *m += v as f64);
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let ms: f64 = self
            .train
            .x
            .chunks(d)
            .map(|row| {
                row.iter()
                    .zip(&mean)
                    .map(|(&v, m)| (v as f64 - m).powi(2))
                    .sum::<f64>()
            })
            .sum::<f64>()
            / (n * d) as f64;
        let scale = 1.0 / ms.sqrt().max(1e-12);
        for split in [&mut self.train, &mut self.test] {
            for row in split.x.chunks_mut(d) {
                row.iter_mut()
                    .zip(&mean)
                    .for_each(|(v, m)| *v = ((*v as f64 - m) * scale) as f32);
            }
        }
    }
}

/// Train and test splits.
#[derive(Debug, Clone)]
pub struct TrainTest {
    /// Training split.
    pub train: Split,
    /// Test split.
    pub test: Split,
}

/// Load Fashion-MNIST from an IDX folder: pixels scaled to [0, 1], 10 classes.
pub fn load_fashion_mnist(dir: &Path) -> Result<TrainTest, NnError> {
    let load = |img: &str, lab: &str| -> Result<Split, NnError> {
        let find = |name: &str| {
            let gz = dir.join(name);
            if gz.exists() {
                gz
            } else {
                dir.join(name.trim_end_matches(".gz"))
            }
        };
        let (ip, lp) = (find(img), find(lab));
        let images = idx::read(&ip, 3)?;
        let labels = idx::read(&lp, 1)?;
        if images.dims[0] != labels.dims[0] {
            return Err(NnError::Data {
                what: format!("{} and {}", ip.display(), lp.display()),
                problem: format!("{} images but {} labels", images.dims[0], labels.dims[0]),
                fix: "the files do not belong together: fetch them again (`dlt data fetch fashion-mnist`)".into(),
            });
        }
        if let Some(bad) = labels.data.iter().find(|&&l| l > 9) {
            return Err(NnError::Data {
                what: lp.display().to_string(),
                problem: format!("label {bad} is not in 0..=9"),
                fix: "fetch the labels again".into(),
            });
        }
        let dim = images.dims[1] * images.dims[2];
        Ok(Split {
            x: images.data.iter().map(|&p| p as f32 / 255.0).collect(),
            dim,
            y: labels.data.iter().map(|&l| l as u32).collect(),
            classes: 10,
            targets: vec![],
            out: 10,
        })
    };
    Ok(TrainTest {
        train: load("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz")?,
        test: load("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")?,
    })
}

/// Locate (fetching if needed) and load Fashion-MNIST.
pub fn fashion_mnist(explicit: Option<&Path>) -> Result<TrainTest, NnError> {
    let (dir, _) = fetch::locate(fetch::Dataset::FashionMnist, explicit, true)?;
    load_fashion_mnist(&dir)
}

#[cfg(test)]
mod tests {
    /// Issue 12, defect 12: `--text /dev/zero` is refused at once, not read until killed.
    #[cfg(unix)]
    #[test]
    fn read_text_refuses_devices_and_reads_regular_files() {
        let t0 = std::time::Instant::now();
        let e = super::read_text(std::path::Path::new("/dev/zero"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/dev/zero: is not a regular file") && e.contains("pass a regular file"),
            "{e}"
        );
        assert!(t0.elapsed().as_secs() < 2);
        let p = std::env::temp_dir().join(format!("dlt-text-{}.txt", std::process::id()));
        std::fs::write(&p, "to be or not").unwrap();
        assert_eq!(super::read_text(&p).unwrap(), "to be or not");
        std::fs::write(&p, [0xff, 0xfe]).unwrap();
        let e = super::read_text(&p).unwrap_err().to_string();
        assert!(e.contains("is not UTF-8"), "{e}");
        std::fs::remove_file(&p).unwrap();
    }
}
