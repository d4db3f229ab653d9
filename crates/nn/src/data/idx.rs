//! IDX files (LeCun's MNIST format), plain or gzip-compressed, with full validation: magic
//! number (0x0000_08TT with TT = 0x08 for unsigned bytes), number of dimensions, and the exact
//! payload length implied by the dimensions. A gzip file may hold several members (as written
//! by `cat a.gz b.gz`, `pigz`, `bgzip`); all are decoded. What is read is bounded by the size
//! the header declares, so no file makes the reader allocate more than its data needs.

use crate::NnError;
use flate2::read::MultiGzDecoder;
use std::io::Read;
use std::path::Path;

/// A decoded IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Idx {
    /// Dimension sizes from the header, outermost first (e.g. [n, 28, 28]).
    pub dims: Vec<usize>,
    /// Payload bytes, row-major, of length Π dims.
    pub data: Vec<u8>,
}

fn bad(path: &Path, problem: impl Into<String>) -> NnError {
    NnError::Data {
        what: path.display().to_string(),
        problem: problem.into(),
        fix: "the file is corrupt or truncated: fetch it again (`dlt data fetch fashion-mnist` replaces a cached file that is missing or fails its SHA-256), or fix your own copy".into(),
    }
}

/// Deflate expands at most 1032:1; a gzip file of `n` bytes cannot hold more than this.
fn gzip_capacity(n: usize) -> u64 {
    (n as u64).saturating_mul(1032).saturating_add(1 << 16)
}

/// Read an IDX file (decompressing `.gz` by its magic bytes), expecting `ndim` dimensions.
/// Only regular files are read (a device such as `/dev/zero` or a pipe is refused).
pub fn read(path: &Path, ndim: usize) -> Result<Idx, NnError> {
    crate::data::regular_file(path)?;
    let raw = std::fs::read(path).map_err(|e| NnError::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let gz_err =
            |e: std::io::Error| bad(path, format!("gzip stream is corrupt or truncated ({e})"));
        let mut dec = MultiGzDecoder::new(&raw[..]);
        // The header first, then exactly the payload it declares (plus one byte, to tell a
        // longer file): the allocation never exceeds what a valid file needs.
        let header = 4 + 4 * ndim;
        let mut out = Vec::with_capacity(header);
        (&mut dec)
            .take(header as u64)
            .read_to_end(&mut out)
            .map_err(gz_err)?;
        let want = declared_len(&out, ndim)
            .map_err(|p| bad(path, p))?
            .unwrap_or(0);
        let cap = gzip_capacity(raw.len());
        if want as u64 > cap {
            return Err(bad(
                path,
                format!(
                    "the header declares {want} bytes of data, more than a {}-byte gzip file can hold",
                    raw.len()
                ),
            ));
        }
        dec.take(want as u64 + 1)
            .read_to_end(&mut out)
            .map_err(gz_err)?;
        out
    } else {
        raw
    };
    parse(&bytes, ndim).map_err(|p| bad(path, p))
}

/// The payload length the header declares (`None` when the header is incomplete: [`parse`]
/// then reports it); an error for a header [`parse`] would reject.
fn declared_len(bytes: &[u8], ndim: usize) -> Result<Option<usize>, String> {
    if bytes.len() < 4 + 4 * ndim {
        return Ok(None);
    }
    check_magic(bytes, ndim)?;
    Ok(Some(dims_len(bytes, ndim)?.1))
}

fn check_magic(bytes: &[u8], ndim: usize) -> Result<(), String> {
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(format!(
            "wrong magic number {:02x}{:02x}{:02x}{:02x} (expected 000008{:02x}: unsigned bytes)",
            bytes[0], bytes[1], bytes[2], bytes[3], ndim
        ));
    }
    if bytes[3] as usize != ndim {
        return Err(format!("has {} dimensions, expected {ndim}", bytes[3]));
    }
    Ok(())
}

fn dims_len(bytes: &[u8], ndim: usize) -> Result<(Vec<usize>, usize), String> {
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let n: usize = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("dimensions overflow")?;
    Ok((dims, n))
}

/// Parse IDX bytes.
pub fn parse(bytes: &[u8], ndim: usize) -> Result<Idx, String> {
    if bytes.len() < 4 {
        return Err(format!(
            "{} bytes is too short for an IDX header",
            bytes.len()
        ));
    }
    check_magic(bytes, ndim)?;
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err("truncated header".into());
    }
    let (dims, n) = dims_len(bytes, ndim)?;
    let payload = bytes.len() - header;
    if payload != n {
        return Err(format!(
            "dimensions {dims:?} imply {n} bytes of data but the file has {payload}{}",
            if payload < n { " (truncated)" } else { "" }
        ));
    }
    Ok(Idx {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Encode bytes as IDX (used by tests and by users who export data).
pub fn encode(dims: &[usize], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend((*d as u32).to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_validation() {
        let data: Vec<u8> = (0..24).collect();
        let bytes = encode(&[2, 3, 4], &data);
        assert_eq!(
            parse(&bytes, 3).unwrap(),
            Idx {
                dims: vec![2, 3, 4],
                data
            }
        );
        assert!(parse(&bytes, 1).unwrap_err().contains("dimensions"));
        assert!(parse(&bytes[..bytes.len() - 1], 3)
            .unwrap_err()
            .contains("truncated"));
        let mut wrong = bytes.clone();
        wrong[2] = 0x0d;
        assert!(parse(&wrong, 3).unwrap_err().contains("magic"));
        assert!(parse(&[0, 0], 3).is_err());
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn tmp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("dlt-idx-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// Issue 12, defect 11: `cat a.gz b.gz` (pigz, bgzip) is a valid gzip file.
    #[test]
    fn a_multi_member_gzip_idx_is_read_whole() {
        let data: Vec<u8> = (0..60).collect();
        let bytes = encode(&[5, 3, 4], &data);
        let mut two = gz(&bytes[..20]);
        two.extend(gz(&bytes[20..]));
        let p = tmp("multi.gz", &two);
        let idx = read(&p, 3).unwrap();
        assert_eq!(idx.data, data);
        std::fs::remove_file(&p).unwrap();
    }

    /// Issue 12, defect 4: a header that claims more than the file can hold is refused before
    /// anything is allocated for it, and a longer stream than the header declares is an error.
    #[test]
    fn a_gzip_idx_header_is_checked_against_the_file() {
        let mut huge = vec![0, 0, 8, 3];
        for d in [0xffff_ffffu32, 0xffff, 2] {
            huge.extend(d.to_be_bytes());
        }
        let p = tmp("huge.gz", &gz(&huge));
        let t0 = std::time::Instant::now();
        let e = read(&p, 3).unwrap_err().to_string();
        assert!(e.contains("more than a") && e.contains("huge.gz"), "{e}");
        assert!(t0.elapsed().as_secs() < 2);
        let long = [encode(&[2, 2, 2], &[1; 8]), vec![7; 100]].concat();
        let p2 = tmp("long.gz", &gz(&long));
        let e = read(&p2, 3).unwrap_err().to_string();
        assert!(
            e.contains("imply 8 bytes of data but the file has 9"),
            "{e}"
        );
        std::fs::remove_file(&p).unwrap();
        std::fs::remove_file(&p2).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_device_is_refused() {
        let e = read(Path::new("/dev/zero"), 3).unwrap_err().to_string();
        assert!(e.contains("/dev/zero: is not a regular file"), "{e}");
    }
}
