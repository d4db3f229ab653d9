"""The solvable model of neural scaling laws (Maloney, Roberts, Sully, arXiv 2210.16859;
docs/derivations/scaling.md): a power-law spectrum λ_I = λ₊ I^−(1+α), I = 1..M, a teacher w, P
random features φ = σ(Ux) and N training samples. Bad arguments raise ValueError with the
message of ``dlt scaling …``; sizes whose memory the machine cannot afford are refused the
same way, before any work."""

from typing import Any, Literal, TypedDict

import numpy as np
import numpy.typing as npt

class TheoryPoint(TypedDict):
    loss: float
    kappa: float

class SimPoint(TypedDict):
    loss: float
    loss_se: float
    median: float
    losses: npt.NDArray[np.float64]

def theory_loss(alpha: float, m: int, n: int, p: int, noise: float = 0.0, ridge: float = 0.0) -> TheoryPoint:
    """Expected test loss ⟨L⟩(N, P; γ) of linear features from the deterministic equivalent, with
    the renormalised ridge κ solving eq. A1 (arXiv 2210.16859 eqs. A1–A4;
    docs/derivations/scaling.md#deterministic-equivalent). At N = P with γ = 0 the loss is infinite
    (double descent): ValueError naming --ridge. ``dlt scaling theory``."""

def simulate(
    alpha: float,
    m: int,
    n: int,
    p: int,
    noise: float = 0.0,
    ridge: float = 0.0,
    features: Literal["linear", "relu", "tanh"] = "linear",
    seeds: int = 10,
    seed: int = 0,
    test: int = 4000,
) -> SimPoint:
    """Population loss of the fitted model over ``seeds`` independent draws (w, U, X): exact,
    (Uᵀθ − w)ᵀΛ(Uᵀθ − w) + σ_ε², for linear features; for nonlinear ones the MSE on ``test`` fresh
    samples plus σ_ε². ``loss`` (mean), ``loss_se``, ``median``, ``losses`` (float64, one per
    seed). ``dlt scaling simulate``."""

class SpectrumResult(TypedDict):
    alpha: float
    m: int
    n: int
    features: str
    rank: int
    slopes: list[dict[str, Any]]
    eigenvalues: npt.NDArray[np.float64]

def spectrum(
    alpha: float,
    m: int,
    n: int,
    features: Literal["linear", "relu", "tanh"] = "relu",
    samples: int = 20000,
    seed: int = 0,
) -> SpectrumResult:
    """Eigenvalues (descending, float64, length ``n``) of the second-moment matrix E[φφᵀ] of N
    random features φ = σ(Ux) of the model with latent spectrum λ_I ∝ I^−(1+α), I = 1..M: linear
    features stop at rank M, nonlinear ones extend the power law past M (arXiv 2210.16859;
    docs/derivations/scaling.md#feature-spectrum). Linear and ReLU are exact (arc-cosine kernel);
    tanh is a Monte Carlo over ``samples`` draws with ``seed``. Also ``rank`` (eigenvalues above
    1e-10 of the largest) and ``slopes`` (the fitted slope of log λ against log rank over ranks
    5…100 and 250…600, those that fit in N). The same numbers as ``dlt scaling spectrum --json``."""
