"""Model collapse when each generation is fitted on the previous generation's output and the
data either *replace* the old data, *accumulate* with them, or accumulate with a fixed training
size (*accumulate-subsample*): Gerstgrasser et al., "Is Model Collapse Inevitable? Breaking the
Curse of Recursion by Accumulating Real and Synthetic Data", arXiv 2404.01413;
docs/derivations/collapse.md. Bad arguments raise ValueError with the message of
``dlt collapse linear|gaussian`` (naming the flag); sizes whose memory or work the machine cannot
afford are refused the same way."""

from typing import Literal, Optional, TypedDict

import numpy as np
import numpy.typing as npt

Policy = Literal["replace", "accumulate", "accumulate-subsample"]

def linear_base(d: int, t: int, sigma: float = 1.0) -> float:
    """σ²d/(T − d − 1): the expected test error E‖ŵ − w*‖² of one OLS fit on T Gaussian samples
    in d dimensions with label noise σ (inverse-Wishart mean;
    docs/derivations/collapse.md#linear-setting). Needs T ≥ d + 2."""

def linear_theory(policy: Policy, n: int, d: int, t: int, sigma: float = 1.0) -> Optional[float]:
    """Closed form of the expected test error at generation n ≥ 1 (arXiv 2404.01413;
    docs/derivations/collapse.md#replace, docs/derivations/collapse.md#accumulate): replace
    n·σ²d/(T−d−1) (grows without bound), accumulate σ²d/(T−d−1)·Σ_{i≤n} 1/i² ≤ (π²/6)σ²d/(T−d−1)
    (bounded); None for accumulate-subsample (no closed form)."""

def gaussian_trace(t: int, n: int) -> float:
    """E[tr Σ̂_n]/tr Σ₀ = ((T−1)/T)^n: a Gaussian refitted n times by maximum likelihood on its own
    T samples under replace (docs/derivations/collapse.md#gaussian-collapse)."""

class LinearRun(TypedDict):
    d: int
    t: int
    sigma: float
    policy: str
    seeds: int
    g: npt.NDArray[np.int64]
    test_error: npt.NDArray[np.float64]
    test_error_se: npt.NDArray[np.float64]
    theory: npt.NDArray[np.float64]

class GaussianRun(TypedDict):
    dim: int
    t: int
    policy: str
    seeds: int
    g: npt.NDArray[np.int64]
    trace_ratio: npt.NDArray[np.float64]
    trace_ratio_se: npt.NDArray[np.float64]
    trace_ratio_median: npt.NDArray[np.float64]
    mean_sq_error: npt.NDArray[np.float64]
    theory: npt.NDArray[np.float64]

def linear(
    d: int = 10,
    t: int = 100,
    sigma: float = 1.0,
    generations: int = 20,
    policy: Policy = "replace",
    seeds: int = 2000,
    seed: int = 0,
) -> LinearRun:
    """Monte Carlo of linear regression refitted on its own labels (arXiv 2404.01413;
    docs/derivations/collapse.md#linear-setting): ``seeds`` independent runs (each a fresh design
    X ~ N(0, I) and teacher w* ~ N(0, I)), generations g = 1..G (generation 1 fits the real
    labels). Per generation (float64 arrays): the mean test error ‖ŵ_g − w*‖², its standard error
    over seeds, and the closed form (``linear_theory``; NaN for accumulate-subsample). The same
    numbers as ``dlt collapse linear --json`` with the same arguments (its ``generations``
    rows)."""

def gaussian(
    dim: int = 1,
    t: int = 100,
    generations: int = 100,
    policy: Policy = "replace",
    seeds: int = 300,
    seed: int = 0,
) -> GaussianRun:
    """Monte Carlo of a dim-dimensional Gaussian refitted by maximum likelihood on T samples of
    its predecessor (arXiv 2404.01413; docs/derivations/collapse.md#gaussian-collapse),
    generations g = 0..G−1 (g = 0 fitted on the real sample): mean, standard error and median
    over seeds of tr Σ̂_g / tr Σ₀, the mean ‖μ̂_g − μ₀‖², and the closed form ((T−1)/T)^(g+1)
    under replace (NaN otherwise). The same numbers as ``dlt collapse gaussian --json``. Needs
    T > dim."""
