//! # dlt-python
//!
//! The Python package `dltlab` (PyO3 + maturin): the theory engine, the scaling-law model and
//! the studies of this workspace with numpy arrays in and out. The Python side lives in
//! `python/dltlab/` (the package, its `.pyi` stubs) and `tests/` (pytest); build it with
//! `scripts/test.sh` or `maturin develop --release -m crates/python/Cargo.toml`.
//!
//! Everything PyO3 is behind the `extension-module` feature, which only the maturin build turns
//! on (see `Cargo.toml`): without it this crate is empty, so `cargo test --workspace` neither
//! compiles PyO3 nor needs a Python interpreter or libpython.

#[cfg(feature = "extension-module")]
mod py;
