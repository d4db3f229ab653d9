//! Checks of a GGUF file that candle's reader does not make, run before the file is handed to
//! it: `general.alignment` (candle divides by it), and every tensor's element count, byte size
//! and extent (candle multiplies the dimensions unchecked). Together with the bounds candle
//! itself checks (string, array and tensor counts against the bytes left in the file), no header
//! can make the reader panic or allocate more than the file holds.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::quantized::gguf_file::Content;

use crate::{LlmError, Result};

/// A bounded cursor over the header.
struct Cursor<'a> {
    r: BufReader<&'a std::fs::File>,
    pos: u64,
    len: u64,
}

type Walk<T> = std::result::Result<T, ()>;

impl Cursor<'_> {
    fn skip(&mut self, n: u64) -> Walk<()> {
        if n > self.len - self.pos {
            return Err(());
        }
        self.r.seek_relative(n as i64).map_err(|_| ())?;
        self.pos += n;
        Ok(())
    }
    fn bytes<const N: usize>(&mut self) -> Walk<[u8; N]> {
        if N as u64 > self.len - self.pos {
            return Err(());
        }
        let mut b = [0u8; N];
        self.r.read_exact(&mut b).map_err(|_| ())?;
        self.pos += N as u64;
        Ok(b)
    }
    fn u32(&mut self) -> Walk<u32> {
        self.bytes::<4>().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Walk<u64> {
        self.bytes::<8>().map(u64::from_le_bytes)
    }
}

/// Size on disk of a scalar GGUF value type; `None` for strings and arrays.
fn scalar_size(t: u32) -> Walk<Option<u64>> {
    Ok(match t {
        0 | 1 | 7 => Some(1),
        2 | 3 => Some(2),
        4..=6 => Some(4),
        10..=12 => Some(8),
        8 | 9 => None,
        _ => return Err(()),
    })
}

/// Walk the metadata and return the alignment candle would use, if the file sets one that
/// candle reads (an unsigned or non-negative signed integer of at most 32 bits). `Err` when the
/// header cannot be walked: candle then reports the problem itself.
fn declared_alignment(f: &std::fs::File, len: u64) -> Walk<Option<i64>> {
    let mut c = Cursor {
        r: BufReader::new(f),
        pos: 0,
        len,
    };
    let magic = c.u32()?;
    if magic != 0x4655_4747 && magic != 0x4747_5546 {
        return Err(());
    }
    let v1 = match c.u32()? {
        1 => true,
        2 | 3 => false,
        _ => return Err(()),
    };
    let length = |c: &mut Cursor| -> Walk<u64> {
        if v1 {
            c.u32().map(u64::from)
        } else {
            c.u64()
        }
    };
    let _tensors = length(&mut c)?;
    let kvs = length(&mut c)?;
    let mut found = None;
    for _ in 0..kvs {
        let klen = length(&mut c)?;
        let is_alignment = if klen == "general.alignment".len() as u64 {
            &c.bytes::<17>()? == b"general.alignment"
        } else {
            c.skip(klen)?;
            false
        };
        let t = c.u32()?;
        if is_alignment {
            found = match t {
                0 => Some(c.bytes::<1>()?[0] as i64),
                1 => Some(c.bytes::<1>()?[0] as i8 as i64),
                2 => Some(u16::from_le_bytes(c.bytes::<2>()?) as i64),
                3 => Some(i16::from_le_bytes(c.bytes::<2>()?) as i64),
                4 => Some(c.u32()? as i64),
                5 => Some(c.u32()? as i32 as i64),
                _ => {
                    skip_value(&mut c, t, v1, 0)?;
                    None
                }
            };
        } else {
            skip_value(&mut c, t, v1, 0)?;
        }
    }
    Ok(found)
}

fn skip_value(c: &mut Cursor, t: u32, v1: bool, depth: usize) -> Walk<()> {
    if depth > 64 {
        return Err(());
    }
    let length = |c: &mut Cursor| -> Walk<u64> {
        if v1 {
            c.u32().map(u64::from)
        } else {
            c.u64()
        }
    };
    match (t, scalar_size(t)?) {
        (_, Some(n)) => c.skip(n),
        (8, None) => {
            let n = length(c)?;
            c.skip(n)
        }
        _ => {
            let et = c.u32()?;
            let n = length(c)?;
            match scalar_size(et)? {
                Some(sz) => c.skip(n.checked_mul(sz).ok_or(())?),
                None => {
                    // Each element takes at least one byte: the loop is bounded by the file.
                    if n > c.len - c.pos {
                        return Err(());
                    }
                    for _ in 0..n {
                        skip_value(c, et, v1, depth + 1)?;
                    }
                    Ok(())
                }
            }
        }
    }
}

/// Refuse a `general.alignment` candle would divide by, or that is not a power of two.
pub(crate) fn check_alignment(path: &Path, f: &mut std::fs::File, len: u64) -> Result<()> {
    let found = declared_alignment(f, len);
    f.seek(SeekFrom::Start(0))
        .map_err(|e| LlmError::io(path, e))?;
    match found {
        Ok(Some(a)) if a >= 0 && (a as u64).is_power_of_two() => Ok(()),
        Ok(Some(a)) => Err(LlmError::file(
            path,
            format!("metadata general.alignment = {a} is not a power of two (GGUF requires one; the default is 32)"),
            "the file is corrupt: fetch or export it again, or set general.alignment to 32",
        )),
        // No alignment (candle uses 32), or a header candle will reject with its own error.
        _ => Ok(()),
    }
}

/// Check every tensor's element count and byte extent before any tensor is read.
pub(crate) fn check_tensors(path: &Path, content: &Content, len: u64) -> Result<()> {
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    for name in names {
        let info = &content.tensor_infos[name];
        let dims = info.shape.dims();
        let dt = info.ggml_dtype;
        let bad = |problem: String| {
            LlmError::file(
                path,
                format!("tensor {} {problem}", crate::one_line(name)),
                "the file is truncated or corrupt: fetch or export it again",
            )
        };
        let elems = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| bad(format!("has dimensions {dims:?} whose product overflows")))?;
        // candle reads a tensor's bytes through a pointer cast that is undefined behaviour
        // (an abort in debug builds) for an empty buffer; no model has an empty tensor.
        if elems == 0 {
            return Err(bad(format!("has dimensions {dims:?}: no elements")));
        }
        let block = dt.block_size();
        let inner = dims.last().copied().unwrap_or(1);
        if inner % block != 0 {
            return Err(bad(format!(
                "has rows of {inner} values, not a multiple of the {block}-value blocks of {dt:?}"
            )));
        }
        let bytes = (elems / block)
            .checked_mul(dt.type_size())
            .ok_or_else(|| bad(format!("of shape {dims:?} has a byte size that overflows")))?;
        let start = content.tensor_data_offset.checked_add(info.offset);
        let end = start.and_then(|s| s.checked_add(bytes as u64));
        if end.is_none_or(|e| e > len) {
            return Err(bad(format!(
                "({dt:?}, shape {dims:?}, {bytes} bytes at offset {}) extends past the end of the file ({len} bytes)",
                content.tensor_data_offset as u128 + info.offset as u128
            )));
        }
    }
    Ok(())
}
