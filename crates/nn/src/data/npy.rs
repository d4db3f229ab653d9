//! NumPy `.npy` files of floating-point arrays: read (format versions 1.0, 2.0 and 3.0;
//! `<f4`, `>f4`, `<f8`, `>f8`, `=f4`, `=f8`; C order) and write (version 1.0, `<f8`).
//!
//! Hand-written rather than a crate: the format is a magic string, a length and a Python dict
//! literal with three keys (numpy's `lib/format.py`), so reading and writing the two dtypes dlt
//! needs is a few hundred lines. `npyz` and `ndarray-npy` both bring a general Python-literal
//! parser (`py_literal`, with `pest` and `num-bigint`) and, for `ndarray-npy`, `ndarray` itself;
//! and neither lets the reader refuse, before allocating, a header whose shape does not match
//! the file size, or name the file and the fix in one line.
//!
//! Reading is bounded: only regular files are read (a device such as `/dev/zero` or a pipe is
//! refused, as [`super::read_text`] does), the header is at most [`MAX_HEADER`] bytes, and the
//! shape it declares is checked (with overflow-checked products) against the file's size before
//! anything is allocated for the data. Refused, each with one line naming the file, the problem
//! and the fix: a bad magic string or version, a malformed header, an unsupported dtype (object
//! arrays, integers, complex, structured), Fortran order, a file longer or shorter than its
//! shape, a wrong number of dimensions ([`read_ndim`]) and non-finite values.
//!
//! Writing ([`write`]) goes to a temporary file in the same folder that is then renamed, so a
//! reader never sees a half-written file.

use crate::NnError;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The magic string that starts every `.npy` file.
pub const MAGIC: &[u8; 6] = b"\x93NUMPY";

/// Largest header accepted (bytes of the dict literal). numpy itself refuses headers above
/// 10 000 bytes unless asked; a three-key dict with a shape of 32 dimensions is under 1 KiB.
pub const MAX_HEADER: usize = 1 << 16;

/// Element type on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// 32-bit IEEE float.
    F4,
    /// 64-bit IEEE float.
    F8,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F4 => 4,
            Dtype::F8 => 8,
        }
    }
}

/// A decoded array, its values widened to f64 (exact for f32).
#[derive(Debug, Clone, PartialEq)]
pub struct Npy {
    /// Dimension sizes, outermost first (`()` for a 0-d scalar).
    pub shape: Vec<usize>,
    /// Values in C (row-major) order, Π shape of them.
    pub data: Vec<f64>,
    /// The dtype on disk.
    pub dtype: Dtype,
    /// True if the file was big-endian.
    pub big_endian: bool,
}

impl Npy {
    /// `(rows, cols)` of a 2-D array.
    pub fn dims2(&self) -> Option<(usize, usize)> {
        match self.shape[..] {
            [r, c] => Some((r, c)),
            _ => None,
        }
    }
}

fn err(name: &str, problem: impl Into<String>, fix: impl Into<String>) -> NnError {
    NnError::Data {
        what: name.to_string(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

const RESAVE: &str =
    "save it again with numpy: np.save(path, np.ascontiguousarray(x, dtype=np.float64))";

/// A short, printable rendering of header text for an error message.
fn show(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]);
    let mut out: String = s.chars().flat_map(char::escape_debug).collect();
    if bytes.len() > 60 {
        out.push('…');
    }
    out
}

/// `(shape, dtype, big_endian, fortran_order)` from the header dict.
struct Header {
    shape: Vec<usize>,
    descr: Vec<u8>,
    fortran: bool,
}

/// The Python values a header dict may hold.
enum Lit {
    Str(Vec<u8>),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// A tiny parser for numpy's header dict literal: `{'descr': '<f8', 'fortran_order': False,
/// 'shape': (3, 4), }` (keys in any order, single or double quotes, optional trailing commas,
/// spaces; tuple items are non-negative integers, optionally with a trailing `L` as Python 2's
/// numpy wrote them).
struct P<'a> {
    b: &'a [u8],
    i: usize,
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> Result<(), String> {
        match self.peek() {
            Some(x) if x == c => {
                self.i += 1;
                Ok(())
            }
            Some(x) => Err(format!(
                "expected '{}' at byte {} of the header, found '{}'",
                c as char,
                self.i,
                show(&[x])
            )),
            None => Err(format!(
                "expected '{}' at byte {}, the header ended",
                c as char, self.i
            )),
        }
    }
    fn string(&mut self) -> Result<Vec<u8>, String> {
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted string at byte {}", self.i)),
        };
        self.i += 1;
        let start = self.i;
        while self.i < self.b.len() && self.b[self.i] != q {
            if self.b[self.i] == b'\\' {
                return Err("escapes in header strings are not supported".into());
            }
            self.i += 1;
        }
        if self.i >= self.b.len() {
            return Err("unterminated string in the header".into());
        }
        let s = self.b[start..self.i].to_vec();
        self.i += 1;
        Ok(s)
    }
    fn int(&mut self) -> Result<usize, String> {
        self.ws();
        let start = self.i;
        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        if start == self.i {
            return Err(format!(
                "expected a non-negative integer in the shape at byte {}",
                self.i
            ));
        }
        let digits = std::str::from_utf8(&self.b[start..self.i]).expect("ASCII digits");
        if self.b.get(self.i) == Some(&b'L') {
            self.i += 1;
        }
        digits
            .parse::<usize>()
            .map_err(|_| format!("shape entry {digits} is too large"))
    }
    fn value(&mut self) -> Result<Lit, String> {
        match self.peek() {
            Some(b'\'' | b'"') => Ok(Lit::Str(self.string()?)),
            Some(b'(') => {
                self.i += 1;
                let mut v = vec![];
                loop {
                    if self.peek() == Some(b')') {
                        self.i += 1;
                        break;
                    }
                    if v.len() >= 64 {
                        return Err("the shape has more than 64 dimensions".into());
                    }
                    v.push(self.int()?);
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(b')') => {}
                        _ => {
                            return Err(format!(
                                "expected ',' or ')' in the shape at byte {}",
                                self.i
                            ))
                        }
                    }
                }
                Ok(Lit::Tuple(v))
            }
            _ => {
                let rest = &self.b[self.i..];
                for (word, val) in [(&b"True"[..], true), (&b"False"[..], false)] {
                    if rest.starts_with(word) {
                        self.i += word.len();
                        return Ok(Lit::Bool(val));
                    }
                }
                Err(format!(
                    "unexpected value at byte {} of the header: '{}'",
                    self.i,
                    show(&rest[..rest.len().min(20)])
                ))
            }
        }
    }
}

fn parse_header(text: &[u8]) -> Result<Header, String> {
    let mut p = P { b: text, i: 0 };
    p.eat(b'{')?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        if p.peek() == Some(b'}') {
            p.i += 1;
            break;
        }
        let key = p.string()?;
        p.eat(b':')?;
        let val = p.value()?;
        let dup = || format!("the key '{}' appears twice", show(&key));
        match (&key[..], val) {
            (b"descr", Lit::Str(s)) => {
                if descr.replace(s).is_some() {
                    return Err(dup());
                }
            }
            (b"descr", Lit::Tuple(_)) | (b"descr", Lit::Bool(_)) => {
                return Err("'descr' is not a plain dtype string (a structured array?)".into())
            }
            (b"fortran_order", Lit::Bool(f)) => {
                if fortran.replace(f).is_some() {
                    return Err(dup());
                }
            }
            (b"shape", Lit::Tuple(s)) => {
                if shape.replace(s).is_some() {
                    return Err(dup());
                }
            }
            (b"fortran_order" | b"shape", _) => {
                return Err(format!("'{}' has the wrong type", show(&key)))
            }
            _ => return Err(format!("unexpected key '{}' in the header", show(&key))),
        }
        match p.peek() {
            Some(b',') => p.i += 1,
            Some(b'}') => {}
            _ => {
                return Err(format!(
                    "expected ',' or '}}' at byte {} of the header",
                    p.i
                ))
            }
        }
    }
    // After the dict: only padding (spaces, a final newline), as numpy writes it.
    p.ws();
    if p.i != text.len() && !text[p.i..].iter().all(|&c| c == 0) {
        return Err(format!(
            "unexpected text after the header dict: '{}'",
            show(&text[p.i..])
        ));
    }
    match (descr, fortran, shape) {
        (Some(descr), Some(fortran), Some(shape)) => Ok(Header {
            shape,
            descr,
            fortran,
        }),
        _ => Err("the header lacks one of 'descr', 'fortran_order', 'shape'".into()),
    }
}

/// Dtype and endianness from a descr string such as `<f8`.
fn dtype(name: &str, descr: &[u8]) -> Result<(Dtype, bool), NnError> {
    let native_big = cfg!(target_endian = "big");
    let (order, kind) = match descr {
        [o @ (b'<' | b'>' | b'=' | b'|'), rest @ ..] => (*o, rest),
        rest => (b'=', rest),
    };
    let big = match order {
        b'>' => true,
        b'<' => false,
        _ => native_big,
    };
    match kind {
        b"f8" | b"d" if order != b'|' => Ok((Dtype::F8, big)),
        b"f4" | b"f" if order != b'|' => Ok((Dtype::F4, big)),
        b"O" => Err(err(
            name,
            "holds an object array (pickled Python objects), which dlt does not read",
            "convert it to a float array first: np.save(path, np.asarray(x, dtype=np.float64))",
        )),
        _ => Err(err(
            name,
            format!(
                "has dtype '{}'; dlt reads float32 or float64 arrays only",
                show(descr)
            ),
            "convert it: np.save(path, x.astype(np.float64))",
        )),
    }
}

/// Decode `.npy` bytes held in memory (`name` labels errors). The data section is checked
/// against the header's shape before it is decoded.
pub fn parse(name: &str, bytes: &[u8]) -> Result<Npy, NnError> {
    let (header, data_at) = split_header(name, bytes)?;
    let (h, dt, big, n) = check_header(name, &header, (bytes.len() - data_at) as u64)?;
    decode(
        name,
        &h.shape,
        dt,
        big,
        &bytes[data_at..data_at + n * dt.size()],
    )
}

/// Prefix bytes before the dict: magic, version, length field.
fn prefix_len(name: &str, pre: &[u8]) -> Result<(usize, usize), NnError> {
    if pre.len() < 10 || &pre[..6] != MAGIC {
        return Err(err(
            name,
            "is not a .npy file (it does not start with the magic string \\x93NUMPY)",
            "pass an array saved by np.save (not np.savez, a text file or a pickle)",
        ));
    }
    let len_bytes = match (pre[6], pre[7]) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        (a, b) => {
            return Err(err(
                name,
                format!("has .npy format version {a}.{b}; dlt reads versions 1.0, 2.0 and 3.0"),
                RESAVE,
            ))
        }
    };
    if pre.len() < 8 + len_bytes {
        return Err(err(name, "is truncated inside its header", RESAVE));
    }
    let hlen = if len_bytes == 2 {
        u16::from_le_bytes([pre[8], pre[9]]) as usize
    } else {
        u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]]) as usize
    };
    if hlen > MAX_HEADER {
        return Err(err(
            name,
            format!("declares a header of {hlen} bytes, more than the {MAX_HEADER} dlt reads"),
            RESAVE,
        ));
    }
    Ok((8 + len_bytes, hlen))
}

fn split_header(name: &str, bytes: &[u8]) -> Result<(Vec<u8>, usize), NnError> {
    let (start, hlen) = prefix_len(name, &bytes[..bytes.len().min(12)])?;
    if bytes.len() < start + hlen {
        return Err(err(
            name,
            format!(
                "is truncated: its header needs {} bytes, the file has {}",
                start + hlen,
                bytes.len()
            ),
            RESAVE,
        ));
    }
    Ok((bytes[start..start + hlen].to_vec(), start + hlen))
}

/// Parse and check the header against `data_len` bytes of data; returns the element count.
fn check_header(
    name: &str,
    header: &[u8],
    data_len: u64,
) -> Result<(Header, Dtype, bool, usize), NnError> {
    let h = parse_header(header)
        .map_err(|p| err(name, format!("has a malformed .npy header: {p}"), RESAVE))?;
    let (dt, big) = dtype(name, &h.descr)?;
    if h.fortran && h.shape.len() >= 2 {
        return Err(err(
            name,
            "is stored in Fortran (column-major) order",
            "save a C-ordered copy: np.save(path, np.ascontiguousarray(x))",
        ));
    }
    let shape_s = shape_str(&h.shape);
    let n = h
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .filter(|n| n.checked_mul(dt.size()).is_some())
        .ok_or_else(|| {
            err(
                name,
                format!("declares shape {shape_s}, too large to address"),
                RESAVE,
            )
        })?;
    let want = (n * dt.size()) as u64;
    if want != data_len {
        let problem = if want > data_len {
            format!("is truncated: shape {shape_s} needs {want} bytes of data, the file holds {data_len}")
        } else {
            format!(
                "has {} bytes after the {want} bytes of data its shape {shape_s} needs",
                data_len - want
            )
        };
        return Err(err(name, problem, RESAVE));
    }
    Ok((h, dt, big, n))
}

fn shape_str(shape: &[usize]) -> String {
    match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn decode(name: &str, shape: &[usize], dt: Dtype, big: bool, raw: &[u8]) -> Result<Npy, NnError> {
    let data: Vec<f64> = match dt {
        Dtype::F8 => raw
            .chunks_exact(8)
            .map(|c| {
                let b: [u8; 8] = c.try_into().expect("8 bytes");
                if big {
                    f64::from_be_bytes(b)
                } else {
                    f64::from_le_bytes(b)
                }
            })
            .collect(),
        Dtype::F4 => raw
            .chunks_exact(4)
            .map(|c| {
                let b: [u8; 4] = c.try_into().expect("4 bytes");
                (if big {
                    f32::from_be_bytes(b)
                } else {
                    f32::from_le_bytes(b)
                }) as f64
            })
            .collect(),
    };
    if let Some(i) = data.iter().position(|v| !v.is_finite()) {
        // The multi-index of element i in C order.
        let mut idx = vec![0; shape.len()];
        let mut r = i;
        for (k, &d) in shape.iter().enumerate().rev() {
            idx[k] = r % d.max(1);
            r /= d.max(1);
        }
        return Err(err(
            name,
            format!(
                "holds a non-finite value ({}) at index {}",
                data[i],
                shape_str(&idx)
            ),
            "remove or impute NaN/inf entries before saving (e.g. np.nan_to_num, or drop those rows)",
        ));
    }
    Ok(Npy {
        shape: shape.to_vec(),
        data,
        dtype: dt,
        big_endian: big,
    })
}

/// Read a `.npy` file of float32 or float64 values (any number of dimensions). Only regular
/// files are read, and nothing is allocated for the data before the header's shape has been
/// checked against the file's size.
pub fn read(path: &Path) -> Result<Npy, NnError> {
    let name = path.display().to_string();
    let file_len = super::regular_file(path)?.len();
    let mut f = std::fs::File::open(path).map_err(|e| NnError::io(path, e))?;
    let mut pre = Vec::with_capacity(12);
    (&mut f)
        .take(12)
        .read_to_end(&mut pre)
        .map_err(|e| NnError::io(path, e))?;
    let (start, hlen) = prefix_len(&name, &pre)?;
    if file_len < (start + hlen) as u64 {
        return Err(err(
            &name,
            format!(
                "is truncated: its header needs {} bytes, the file has {file_len}",
                start + hlen
            ),
            RESAVE,
        ));
    }
    f.seek(SeekFrom::Start(start as u64))
        .map_err(|e| NnError::io(path, e))?;
    let mut header = Vec::with_capacity(hlen);
    (&mut f)
        .take(hlen as u64)
        .read_to_end(&mut header)
        .map_err(|e| NnError::io(path, e))?;
    if header.len() != hlen {
        return Err(err(&name, "is truncated inside its header", RESAVE));
    }
    let data_len = file_len - (start + hlen) as u64;
    let (h, dt, big, n) = check_header(&name, &header, data_len)?;
    let bytes = n * dt.size();
    let mut raw = Vec::with_capacity(bytes);
    (&mut f)
        .take(bytes as u64)
        .read_to_end(&mut raw)
        .map_err(|e| NnError::io(path, e))?;
    if raw.len() != bytes {
        return Err(err(
            &name,
            format!(
                "changed while being read (expected {bytes} bytes of data, got {})",
                raw.len()
            ),
            "read it again once nothing is writing to it",
        ));
    }
    decode(&name, &h.shape, dt, big, &raw)
}

/// [`read`], then require one of the numbers of dimensions in `ndims` (e.g. `&[2]` for an
/// N×d matrix, `&[1, 2]` for targets).
pub fn read_ndim(path: &Path, ndims: &[usize]) -> Result<Npy, NnError> {
    let a = read(path)?;
    if !ndims.contains(&a.shape.len()) {
        let want = ndims
            .iter()
            .map(|d| format!("{d}-D"))
            .collect::<Vec<_>>()
            .join(" or ");
        let fix = if ndims.contains(&2) {
            "reshape it to rows × columns before saving, e.g. np.save(path, x.reshape(len(x), -1))"
        } else {
            "reshape it before saving"
        };
        return Err(err(
            &path.display().to_string(),
            format!(
                "is a {}-D array of shape {}; expected {want}",
                a.shape.len(),
                shape_str(&a.shape)
            ),
            fix,
        ));
    }
    Ok(a)
}

/// Encode a row-major f64 array of `shape` as a version-1.0 `.npy` file (`<f8`, C order; the
/// header padded with spaces to a multiple of 64 bytes, as numpy does). Panics if
/// `data.len() != Π shape`.
pub fn encode(shape: &[usize], data: &[f64]) -> Vec<u8> {
    assert_eq!(
        shape.iter().product::<usize>(),
        data.len(),
        "npy::encode: data does not match the shape"
    );
    let mut dict = format!(
        "{{'descr': '<f8', 'fortran_order': False, 'shape': {}, }}",
        shape_str(shape)
    );
    // magic (6) + version (2) + length (2) + dict + padding + '\n' ≡ 0 (mod 64).
    let total = (10 + dict.len() + 1).div_ceil(64) * 64;
    while 10 + dict.len() + 1 < total {
        dict.push(' ');
    }
    dict.push('\n');
    let mut out = Vec::with_capacity(total + 8 * data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Write `data` (row-major, `shape`) to `path` as `.npy` ([`encode`]), atomically: to a
/// temporary file in the same folder, synced, then renamed over `path`.
pub fn write(path: &Path, shape: &[usize], data: &[f64]) -> Result<(), NnError> {
    if shape.iter().product::<usize>() != data.len() {
        return Err(NnError::Invalid {
            what: path.display().to_string(),
            fix: format!(
                "{} values do not fill shape {}",
                data.len(),
                shape_str(shape)
            ),
        });
    }
    let bytes = encode(shape, data);
    let mut tmp = PathBuf::from(path);
    let mut fname = path
        .file_name()
        .map(|s| s.to_os_string())
        .unwrap_or_default();
    fname.push(format!(".tmp{}", std::process::id()));
    tmp.set_file_name(fname);
    let go = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    };
    go().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        NnError::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dlt-npy-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    /// A file with a given version, header text and payload, built by hand from numpy's
    /// format description (NEP 1 / numpy.lib.format).
    fn raw(version: u8, header: &str, payload: &[u8]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&[version, 0]);
        if version == 1 {
            b.extend_from_slice(&(header.len() as u16).to_le_bytes());
        } else {
            b.extend_from_slice(&(header.len() as u32).to_le_bytes());
        }
        b.extend_from_slice(header.as_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn round_trip_through_a_file() {
        let p = tmp("rt.npy");
        let data: Vec<f64> = (0..12).map(|i| i as f64 * 0.1 - 0.5).collect();
        write(&p, &[3, 4], &data).unwrap();
        let a = read(&p).unwrap();
        assert_eq!(a.shape, vec![3, 4]);
        assert_eq!(a.data, data);
        assert_eq!((a.dtype, a.big_endian), (Dtype::F8, false));
        assert_eq!(a.dims2(), Some((3, 4)));
        // numpy's alignment: the data starts at a multiple of 64.
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!((bytes.len() - 12 * 8) % 64, 0);
        assert_eq!(bytes[bytes.len() - 12 * 8 - 1], b'\n');
        // 1-D and 0-d shapes, and no temporary file left behind.
        write(&p, &[3], &data[..3]).unwrap();
        assert_eq!(read(&p).unwrap().shape, vec![3]);
        write(&p, &[], &data[..1]).unwrap();
        assert_eq!(read(&p).unwrap().shape, Vec::<usize>::new());
        let left: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
            .collect();
        assert!(left.is_empty());
        assert!(write(&p, &[2, 2], &data[..3]).is_err());
    }

    #[test]
    fn hand_written_headers_of_every_version_and_byte_order() {
        // np.save of np.array([[1.5, -2.0]], dtype='>f8') with format version 2.0; 0x3FF8… = 1.5.
        let mut be = vec![];
        for v in [1.5f64, -2.0] {
            be.extend_from_slice(&v.to_be_bytes());
        }
        let h = "{'descr': '>f8', 'fortran_order': False, 'shape': (1, 2), }          \n";
        let a = parse("be.npy", &raw(2, h, &be)).unwrap();
        assert_eq!(
            (a.shape.clone(), a.data.clone()),
            (vec![1, 2], vec![1.5, -2.0])
        );
        assert!(a.big_endian);
        // Version 3.0 (UTF-8 header), double quotes, keys reordered, float32 little-endian.
        let mut le = vec![];
        for v in [0.25f32, 3.0, -1.0] {
            le.extend_from_slice(&v.to_le_bytes());
        }
        let h = "{\"shape\": (3,), \"fortran_order\": False, \"descr\": \"<f4\"}\n";
        let a = parse("f4.npy", &raw(3, h, &le)).unwrap();
        assert_eq!(a.data, vec![0.25, 3.0, -1.0]);
        assert_eq!(a.dtype, Dtype::F4);
        // Version 1.0, big-endian float32, Python 2 long integers.
        let mut be4 = vec![];
        for v in [1.0f32, 2.0] {
            be4.extend_from_slice(&v.to_be_bytes());
        }
        let h = "{'descr': '>f4', 'fortran_order': False, 'shape': (2L, 1L), }\n";
        let a = parse("be4.npy", &raw(1, h, &be4)).unwrap();
        assert_eq!(
            (a.shape.clone(), a.data.clone()),
            (vec![2, 1], vec![1.0, 2.0])
        );
        // Our writer's bytes are exactly what this header layout describes.
        let enc = encode(&[1, 2], &[1.5, -2.0]);
        let h = "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2), }";
        assert_eq!(&enc[..10], b"\x93NUMPY\x01\x00\x76\x00");
        assert_eq!(&enc[10..10 + h.len()], h.as_bytes());
        assert_eq!(enc.len(), 128 + 16);
    }

    fn refused(bytes: Vec<u8>, needles: &[&str]) {
        let e = parse("bad.npy", &bytes).unwrap_err().to_string();
        assert!(e.starts_with("bad.npy: "), "{e}");
        assert!(!e.chars().any(|c| c.is_control()), "{e:?}");
        for n in needles {
            assert!(e.contains(n), "expected '{n}' in: {e}");
        }
    }

    #[test]
    fn every_refusal_names_the_file_the_problem_and_the_fix() {
        let ok = |shape: &str, descr: &str, n: usize| {
            raw(
                1,
                &format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}\n"),
                &vec![0u8; n],
            )
        };
        refused(
            b"PK\x03\x04 zipped".to_vec(),
            &["not a .npy file", "np.save"],
        );
        refused(
            b"\x93NUMPY\x04\x00\x10\x00".to_vec(),
            &["version 4.0", "np.save"],
        );
        let mut big_header = b"\x93NUMPY\x02\x00".to_vec();
        big_header.extend_from_slice(&u32::MAX.to_le_bytes());
        refused(big_header, &["header of 4294967295 bytes"]);
        refused(ok("(2, 2)", "<f8", 8 * 4)[..40].to_vec(), &["truncated"]);
        refused(
            ok("(2, 2)", "<f8", 31),
            &["truncated", "needs 32 bytes", "holds 31"],
        );
        refused(ok("(2, 2)", "<f8", 33), &["1 bytes after"]);
        refused(
            ok("(2, 2)", "|O", 32),
            &["object array", "dtype=np.float64"],
        );
        refused(ok("(2, 2)", "<i8", 32), &["dtype '<i8'", "astype"]);
        refused(ok("(2, 2)", "<c16", 64), &["dtype '<c16'"]);
        refused(
            ok("(99999999999, 99999999999, 99999999999)", "<f8", 8),
            &["too large to address"],
        );
        refused(
            ok("(2, -2)", "<f8", 32),
            &["malformed", "non-negative integer"],
        );
        refused(
            raw(
                1,
                "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }\n",
                &[0; 32],
            ),
            &["Fortran", "np.ascontiguousarray"],
        );
        refused(
            raw(
                1,
                "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }\n",
                &[0; 8],
            ),
            &["malformed"],
        );
        refused(
            raw(1, "{'descr': '<f8', 'shape': (1,), }\n", &[0; 8]),
            &["lacks one of"],
        );
        refused(
            raw(
                1,
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'x': 'y'}\n",
                &[0; 8],
            ),
            &["unexpected key"],
        );
        refused(
            raw(
                1,
                "{'descr': '<f8', 'fortran_order': False, 'shape': (1,)} junk\n",
                &[0; 8],
            ),
            &["after the header"],
        );
        // Non-finite values: the index in C order.
        let mut nan = vec![];
        for v in [1.0, 2.0, 3.0, f64::NAN] {
            nan.extend_from_slice(&v.to_le_bytes());
        }
        refused(
            raw(
                1,
                "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }\n",
                &nan,
            ),
            &["non-finite value (NaN) at index (1, 1)", "nan_to_num"],
        );
        let inf = f32::INFINITY.to_le_bytes();
        refused(
            raw(
                1,
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n",
                &inf,
            ),
            &["non-finite value (inf) at index (0,)"],
        );
    }

    #[test]
    fn read_refuses_devices_wrong_dimensions_and_missing_files() {
        #[cfg(unix)]
        {
            let e = read(Path::new("/dev/zero")).unwrap_err().to_string();
            assert!(e.contains("/dev/zero: is not a regular file"), "{e}");
        }
        let e = read(Path::new("/nonexistent/x.npy"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/x.npy"), "{e}");
        let p = tmp("three.npy");
        write(&p, &[1, 2, 2], &[0.0; 4]).unwrap();
        let e = read_ndim(&p, &[2]).unwrap_err().to_string();
        assert!(
            e.contains("three.npy: is a 3-D array of shape (1, 2, 2); expected 2-D")
                && e.contains("reshape"),
            "{e}"
        );
        assert_eq!(read_ndim(&p, &[3]).unwrap().shape, vec![1, 2, 2]);
        let e = read_ndim(&p, &[1, 2]).unwrap_err().to_string();
        assert!(e.contains("expected 1-D or 2-D"), "{e}");
        // A file whose shape claims far more data than it holds is refused before allocating.
        let big = raw(
            1,
            "{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000,), }\n",
            &[0; 16],
        );
        std::fs::write(&p, big).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains("is truncated: shape (100000000000,) needs"),
            "{e}"
        );
    }
}
