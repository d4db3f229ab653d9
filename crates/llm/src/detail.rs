//! Detail fields: per-token losses and per-item right/wrong vectors that `results.json` leaves
//! out (tens of thousands of numbers per model) but that a stage checkpoint must keep, because
//! the paired comparisons behind the claims are computed from them. A field marked
//! `#[serde(default, skip_serializing_if = "dlt_llm::detail::hidden")]` is written only while
//! [`with_detail`] runs, and read back when present.

use std::cell::Cell;

thread_local! {
    static DETAIL: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` (a serialisation) with the detail fields written.
pub fn with_detail<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the previous state, also when `f` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            DETAIL.with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(DETAIL.with(|d| d.replace(true)));
    f()
}

/// Whether detail fields are left out of the serialisation in progress (serde's
/// `skip_serializing_if`).
pub fn hidden<T: ?Sized>(_: &T) -> bool {
    !DETAIL.with(Cell::get)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Row {
        a: f64,
        #[serde(default, skip_serializing_if = "hidden")]
        tokens: Vec<f64>,
    }

    #[test]
    fn detail_is_written_only_inside_with_detail_and_read_back() {
        let r = Row {
            a: 1.5,
            tokens: vec![0.25, 3.0],
        };
        let plain = serde_json::to_string(&r).unwrap();
        assert_eq!(plain, r#"{"a":1.5}"#);
        let full = with_detail(|| serde_json::to_string(&r).unwrap());
        assert_eq!(full, r#"{"a":1.5,"tokens":[0.25,3.0]}"#);
        assert_eq!(serde_json::from_str::<Row>(&full).unwrap(), r);
        // Back to hidden after with_detail, also after a panic inside it.
        let _ = std::panic::catch_unwind(|| with_detail(|| panic!("inside")));
        assert_eq!(serde_json::to_string(&r).unwrap(), plain);
    }
}
