//! The one description of where each named parameter lives in a flat buffer: names, shapes and
//! offsets, shared by the candle models (whose variables are copied in and out in this order)
//! and the hand-written kernels (which index the buffer only through it).

use std::ops::Range;

/// One named parameter: its shape (row-major) and where it starts in the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Name, e.g. `l1.w` or `h0.qkv.weight`.
    pub name: String,
    /// Shape, row-major.
    pub shape: Vec<usize>,
    /// Index of its first value in the flat buffer.
    pub offset: usize,
}

impl Entry {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// True for a parameter with no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Its range in the buffer.
    pub fn range(&self) -> Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Named parameters laid end to end in the order they were pushed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    entries: Vec<Entry>,
    len: usize,
}

impl Layout {
    /// Append a parameter of `shape` named `name`.
    pub fn push(&mut self, name: impl Into<String>, shape: &[usize]) -> &mut Self {
        let e = Entry {
            name: name.into(),
            shape: shape.to_vec(),
            offset: self.len,
        };
        self.len += e.len();
        self.entries.push(e);
        self
    }
    /// Total number of values.
    pub fn len(&self) -> usize {
        self.len
    }
    /// True when no values have been laid out.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Every parameter, in buffer order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }
    /// The `i`-th parameter.
    pub fn entry(&self, i: usize) -> &Entry {
        &self.entries[i]
    }
    /// The parameter called `name`.
    pub fn find(&self, name: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.name == name)
    }
    /// The `i`-th parameter's values in `buf`.
    pub fn slice<'a, T>(&self, buf: &'a [T], i: usize) -> &'a [T] {
        &buf[self.entries[i].range()]
    }
    /// The `i`-th parameter's values in `buf`, mutably.
    pub fn slice_mut<'a, T>(&self, buf: &'a mut [T], i: usize) -> &'a mut [T] {
        &mut buf[self.entries[i].range()]
    }
    /// Every parameter's values, mutably, in order.
    pub fn split_mut<'a, T>(&self, mut buf: &'a mut [T]) -> Vec<&'a mut [T]> {
        let mut out = Vec::with_capacity(self.entries.len());
        for e in &self.entries {
            let (head, rest) = std::mem::take(&mut buf).split_at_mut(e.len());
            out.push(head);
            buf = rest;
        }
        out
    }
    /// A flat buffer from one vector per parameter (in order), checking every length.
    pub fn gather<T: Copy>(&self, parts: &[Vec<T>]) -> Option<Vec<T>> {
        if parts.len() != self.entries.len()
            || parts
                .iter()
                .zip(&self.entries)
                .any(|(p, e)| p.len() != e.len())
        {
            return None;
        }
        Some(parts.concat())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_push_order_and_split_covers_the_buffer() {
        let mut l = Layout::default();
        l.push("w", &[3, 2]).push("b", &[3]).push("s", &[]);
        assert_eq!(l.len(), 10);
        assert_eq!(l.find("b").unwrap().range(), 6..9);
        assert_eq!(l.entry(2).range(), 9..10, "a scalar has one value");
        let mut buf: Vec<u32> = (0..10).collect();
        assert_eq!(l.slice(&buf, 1), &[6, 7, 8]);
        let parts = l.split_mut(&mut buf);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![6, 3, 1]
        );
        assert_eq!(
            l.gather(&[vec![0; 6], vec![1; 3], vec![2]]).unwrap().len(),
            10
        );
        assert!(l.gather(&[vec![0; 6], vec![1; 2], vec![2]]).is_none());
    }
}
