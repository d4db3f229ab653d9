//! IDX files (LeCun's MNIST format), plain or gzip-compressed, with full validation: magic
//! number (0x0000_08TT with TT = 0x08 for unsigned bytes), number of dimensions, and the exact
//! payload length implied by the dimensions.

use crate::NnError;
use flate2::read::GzDecoder;
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
        fix: "the file is corrupt or truncated: delete it and fetch again (`dlt data fetch fashion-mnist`)".into(),
    }
}

/// Read an IDX file (decompressing `.gz` by its magic bytes), expecting `ndim` dimensions.
pub fn read(path: &Path, ndim: usize) -> Result<Idx, NnError> {
    let raw = std::fs::read(path).map_err(|e| NnError::io(path, e))?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| bad(path, format!("gzip stream is corrupt or truncated ({e})")))?;
        out
    } else {
        raw
    };
    parse(&bytes, ndim).map_err(|p| bad(path, p))
}

/// Parse IDX bytes.
pub fn parse(bytes: &[u8], ndim: usize) -> Result<Idx, String> {
    if bytes.len() < 4 {
        return Err(format!(
            "{} bytes is too short for an IDX header",
            bytes.len()
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(format!(
            "wrong magic number {:02x}{:02x}{:02x}{:02x} (expected 000008{:02x}: unsigned bytes)",
            bytes[0], bytes[1], bytes[2], bytes[3], ndim
        ));
    }
    if bytes[3] as usize != ndim {
        return Err(format!("has {} dimensions, expected {ndim}", bytes[3]));
    }
    let header = 4 + 4 * ndim;
    if bytes.len() < header {
        return Err("truncated header".into());
    }
    let dims: Vec<usize> = (0..ndim)
        .map(|i| {
            u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize
        })
        .collect();
    let n: usize = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or("dimensions overflow")?;
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
}
