//! Runtime choice of the instruction set for the hand-written element-wise loops of
//! [`crate::gpt_kernel`] and [`crate::mlp`].
//!
//! Written by hand (a few dozen lines) rather than through a SIMD crate: those loops are plain
//! Rust that LLVM vectorises once it may use wide registers, but the default x86-64 target
//! allows only SSE2 and leaves `exp`/`erf`/`tanh` scalar. Rust forms no fused multiply-adds
//! implicitly, so every instruction set gives bit-identical numbers (tested in `gpt_kernel`).

/// An instruction set the loops can be compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isa {
    /// The target's default (SSE2 on x86-64).
    Baseline,
    /// AVX2 with FMA.
    Avx2,
    /// AVX-512 (F, VL, BW, DQ).
    Avx512,
}

impl Isa {
    /// Whether this CPU can run code compiled for `self`.
    pub fn available(self) -> bool {
        match self {
            Isa::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.available()
                    && std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512dq")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The widest instruction set this CPU has.
    pub fn best() -> Isa {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .find(|i| i.available())
            .unwrap_or(Isa::Baseline)
    }
}

/// Runs `f` with its inlined body compiled for `isa`, or for the baseline when this CPU
/// lacks `isa`.
#[inline(always)]
pub fn with_isa<R>(isa: Isa, f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")]
        fn v4<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        fn v3<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        match isa {
            // SAFETY: the features v4 is compiled for were detected on this CPU.
            Isa::Avx512 if isa.available() => return unsafe { v4(f) },
            // SAFETY: as above, for v3.
            Isa::Avx2 if isa.available() => return unsafe { v3(f) },
            _ => {}
        }
    }
    let _ = isa;
    f()
}
