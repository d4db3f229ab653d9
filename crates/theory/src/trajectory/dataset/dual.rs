//! Dual numbers v + d·s (s² = 0): the first-order response of the per-network dynamics to one
//! statistic, computed exactly by running the dynamics once in this arithmetic (forward-mode
//! differentiation; no finite differences, so no truncation error).

use std::ops::{Add, AddAssign, Mul, Sub};

/// The arithmetic the per-network dynamics runs in: plain f64 or [`Dual`].
pub trait Scalar:
    Copy
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + AddAssign
    + Mul<f64, Output = Self>
{
    /// The constant c.
    fn constant(c: f64) -> Self;
}

impl Scalar for f64 {
    fn constant(c: f64) -> Self {
        c
    }
}

/// v + d·s with s² = 0.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Dual {
    /// Value at s = 0.
    pub v: f64,
    /// Derivative with respect to s.
    pub d: f64,
}

impl Dual {
    /// v + d·s.
    pub fn new(v: f64, d: f64) -> Self {
        Self { v, d }
    }
}

impl Add for Dual {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Self::new(self.v + o.v, self.d + o.d)
    }
}

impl Sub for Dual {
    type Output = Self;
    fn sub(self, o: Self) -> Self {
        Self::new(self.v - o.v, self.d - o.d)
    }
}

impl Mul for Dual {
    type Output = Self;
    fn mul(self, o: Self) -> Self {
        Self::new(self.v * o.v, self.v * o.d + self.d * o.v)
    }
}

impl Mul<f64> for Dual {
    type Output = Self;
    fn mul(self, c: f64) -> Self {
        Self::new(self.v * c, self.d * c)
    }
}

impl AddAssign for Dual {
    fn add_assign(&mut self, o: Self) {
        self.v += o.v;
        self.d += o.d;
    }
}

impl Scalar for Dual {
    fn constant(c: f64) -> Self {
        Self::new(c, 0.0)
    }
}
