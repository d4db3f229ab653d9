"""The effective theory of deep MLPs at large but finite width (PDLT: Roberts, Yaida, Hanin,
arXiv 2106.10165), from the Rust crate dlt-theory. Bad arguments raise ValueError with the
message of the matching ``dlt theory …`` command (it names the CLI flag); a recursion that leaves
its domain raises ArithmeticError; a missing .npy file FileNotFoundError. Sizes whose memory
(against DLT_MAX_MEMORY or MemAvailable) or arithmetic (over 10¹⁷ multiply-adds) the machine
cannot afford are refused before any work with the CLI's ValueError message naming the flag."""

import os
from typing import Any, Callable, Literal, Optional, Union

import numpy as np
import numpy.typing as npt

ArrayLike = Union[npt.ArrayLike, str, os.PathLike[str]]
F64 = npt.NDArray[np.float64]

def activations() -> list[str]:
    """Activation names accepted everywhere (``A`` stands for a number, e.g. ``leaky_relu:0.1``)."""

def criticality(activation: str) -> dict[str, Any]:
    """Critical initialisation of an activation (PDLT §5.3; docs/derivations/theory.md#criticality):
    keys ``activation``, ``class`` (``scale_invariant``, ``k_star_zero``, …), ``cb``, ``cw``
    (critical C_b, C_W: χ_∥(K*) = χ_⊥(K*) = 1), ``k_star`` (fixed point K*), ``a1`` and ``p_perp``
    (universality-class exponents); None where they do not exist. Same dict as
    ``dlt theory criticality --json``."""

def profile(
    activation: Union[str, Callable[[float], float]],
    cb: float,
    cw: float,
    k1: float,
    depth: int,
    lambda_b: float = 1.0,
    lambda_w: float = 1.0,
    lambda_b_over_l: bool = False,
    init: Literal["gaussian", "orthogonal"] = "gaussian",
    v1: float = 0.0,
    gamma: float = 0.0,
    xi: float = 1.0,
    quad_order: int = 192,
    d1: Optional[Callable[[float], float]] = None,
    d2: Optional[Callable[[float], float]] = None,
    d3: Optional[Callable[[float], float]] = None,
    kink_at_zero: bool = False,
) -> dict[str, Any]:
    """Single-input recursions for layers l = 1..depth, one float64 array of length ``depth`` per
    statistic (``l`` is int64).

    ``activation`` is a name (``activations()``) or your own σ as a callable float → float,
    evaluated by the same quadrature at the same nodes. Give ``d1`` (σ') or it is taken by
    central differences (h = 1e-5(1 + |z|), about 1e-11 accurate for σ of order one); ``d2`` and
    ``d3`` (σ'', σ''') are needed for the dNTK/ddNTK rows; ``kink_at_zero=True`` for σ with a kink
    at 0 (ReLU-like: the quadrature splits at zero). An exception raised by the callable is
    re-raised. The statistics:

    * ``K``: K^(l+1) = C_b + C_W ⟨σ²⟩_{K^(l)} (PDLT eq. 4.90; docs/derivations/theory.md#kernel-recursion);
    * ``chi_par``, ``chi_perp``: χ_∥ = C_W ∂_K⟨σ²⟩, χ_⊥ = C_W⟨σ'²⟩ at K^(l) (PDLT §5.1);
    * ``V``, ``V_over_K2``: four-point vertex, V^(l+1) = χ_∥² V^(l) + C_W²(⟨σ⁴⟩ − ⟨σ²⟩²) (PDLT eq. 4.118;
      docs/derivations/theory.md#four-point-vertex);
    * ``theta``: NTK mean Θ^(l+1) = λ_b + λ_W⟨σ²⟩ + χ_⊥ Θ^(l) (PDLT eq. 8.63; docs/derivations/theory.md#ntk-mean);
    * ``A``, ``B``, ``D``, ``F`` and ``A_over_theta2``, ``B_over_theta2``, ``D_over_Ktheta``,
      ``F_over_Ktheta``: NTK fluctuations (PDLT §8.3; docs/derivations/theory.md#ntk-fluctuations);
      absent for orthogonal weights and residual networks (not derived);
    * ``P``, ``Q``, ``R``, ``S``, ``T``, ``U``, ``K1``, ``theta1`` and their normalised forms: the dNTK
      and ddNTK recursions (PDLT ch. 11; docs/derivations/dntk.md#recursions); when not derived they
      are absent and ``dntk_note`` (str) says why.

    ``init="orthogonal"`` uses the Haar-orthogonal results of Day, Kahn, Roberts (arXiv 2310.07765);
    ``gamma``, ``xi`` give the residual MLP z' = γz + ξ(b + Wσ(z)). Learning rates λ_b^(l) = λ_b
    (or λ_b/l with ``lambda_b_over_l``), λ_W^(l) = λ_W (PDLT §7.1). Same numbers as
    ``dlt theory profile --json``. Example: ReLU at C_b = 0, C_W = 2, K^(1) = 1, λ_b = 0, λ_W = 1 gives
    K = 1, Θ^(l) = l/2, Q^(l) = (l³ − l)/12."""

def mc(
    activation: str,
    cb: float,
    cw: float,
    k1: float,
    depth: int,
    width: int,
    networks: int,
    ntk: bool = False,
    lambda_b: float = 1.0,
    lambda_w: float = 1.0,
    lambda_b_over_l: bool = False,
    init: Literal["gaussian", "orthogonal"] = "gaussian",
    first_layer: Optional[Literal["gaussian", "orthogonal"]] = None,
    seed: int = 0,
    batches: int = 20,
    threads: int = 0,
) -> dict[str, Any]:
    """Monte Carlo over ``networks`` real MLPs of width ``width`` on one input with
    |x|²/n₀ = (K^(1) − C_b)/C_W (crates/theory/src/mc.rs): ``l`` (int64), and dicts ``value``,
    ``se`` (batch-means standard error over ``batches`` batches) and ``theory`` (the 1/n
    prediction of :func:`profile`), each mapping a statistic (``K``, ``V``, ``V_over_K2``; with
    ``ntk=True`` also ``theta``, ``A``, ``B``, ``D``, ``F`` and ratios) to a float64 array per layer;
    ``seconds``. The same seed gives the same numbers for any ``threads`` (0: all cores).
    ``dlt theory mc``."""

def kernels(
    x: ArrayLike,
    activation: str,
    cb: float,
    cw: float,
    depth: int,
    x2: Optional[ArrayLike] = None,
    lambda_b: Optional[float] = None,
    lambda_w: Optional[float] = None,
    method: str = "auto",
    threads: int = 0,
) -> dict[str, F64]:
    """NNGP kernel K and NTK Θ of the output z^(L) of an infinitely wide MLP with ``depth`` Dense
    layers on the N×d inputs ``x`` (an array, float32 or float64, or a .npy path): ``nngp`` and
    ``ntk`` (N×N); with ``x2`` (M×d) also ``nngp_test_train`` and ``ntk_test_train`` (M×N).
    K^(1)_{ab} = C_b + C_W x_a·x_b/d, K^(l+1) = C_b + C_W⟨σσ⟩_{K^(l)}, Θ^(l+1) = λ_b + λ_W⟨σσ⟩ +
    C_W⟨σ'σ'⟩Θ^(l) (PDLT §4.3, §8; Lee et al. arXiv 1711.00165; Jacot et al. arXiv 1806.07572;
    docs/derivations/kernels.md). λ_b, λ_W default to C_b, C_W (neural-tangents' NTK
    parameterisation). ``method``: auto, closed, mehler:M[:NODES], quadrature:N, adaptive.
    ``dlt theory kernels``."""

def predict(
    x_train: ArrayLike,
    y_train: ArrayLike,
    x_test: ArrayLike,
    kind: Literal["nngp", "ntk"],
    activation: str,
    cb: float,
    cw: float,
    depth: int,
    time: Optional[float] = None,
    steps: Optional[int] = None,
    lr: Optional[float] = None,
    noise: float = 0.0,
    lambda_b: Optional[float] = None,
    lambda_w: Optional[float] = None,
    method: str = "auto",
    threads: int = 0,
) -> dict[str, F64]:
    """Infinite-width predictions on ``x_test``: ``mean`` (M, or M×k when ``y_train`` is N×k) and
    ``cov`` (M×M). ``kind="nngp"``: the exact Bayesian posterior, mean = K_{*X}(K_XX + noise·I)⁻¹Y
    (Lee et al. arXiv 1711.00165); ``kind="ntk"``: the ensemble of networks trained by gradient flow
    to ``time`` (τ = lr·time; default ∞) or by ``steps`` of gradient descent with ``lr``,
    mean = Θ_{*X}Θ_XX⁻¹(I − e^{−τΘ_XX})Y (Lee et al. arXiv 1902.06720 eq. 16;
    docs/derivations/kernels.md). ``dlt theory predict``."""

def finite_width(
    x_train: Any,
    y_train: Any,
    x_test: Any,
    activation: str,
    steps: int,
    cw: float = 1.0,
    lambda_w: Optional[float] = None,
    lr: Optional[float] = None,
    nodes: int = 32,
    depth: int = 2,
) -> dict[str, Any]:
    """The O(1/n) correction of the mean output of networks with ``depth`` − 1 ≥ 1 hidden layers
    of width n,
    trained by full-batch GD (step ``lr``, default 0.5/λ_max(Θ_AA)) on ``x_train`` (N_A×d) with
    targets ``y_train`` (N_A), read on ``x_test`` (N_B×d); N_A + N_B ≤ 24, an activation with σ''
    and σ''' (docs/derivations/trained_dataset.md; ``dlt theory finite-width``). E[z_t] =
    ``infinite`` + ``coefficient``/n + O(1/n²). Returns ``t`` (int64, 0..steps), float64 arrays
    of shape (steps + 1, N_B) ``infinite``, ``coefficient`` and its parts ``theta1_term`` (zero at
    depth 2), ``variance_term``, ``dntk_term``, ``ddntk_term``; (steps + 1, N_A) arrays
    ``train_infinite`` and ``train_coefficient``; the floats ``eta`` and ``lambda_max``. Each
    hidden layer beyond the first is one more pass of (N_A + N_B)⁴ four-dimensional integrals."""
    ...

def trajectory(
    activation: Union[str, Callable[[float], float]],
    cw: float,
    depth: int,
    eta_theta: float = 0.5,
    y: float = 1.0,
    steps: int = 8,
    cb: float = 0.0,
    k1: Optional[float] = None,
    lambda_b: float = 0.0,
    lambda_w: Optional[float] = None,
    test_cos: Optional[float] = None,
) -> dict[str, Any]:
    """The O(1/n) coefficient of the mean gradient-descent trajectory of a network trained on one
    input (PDLT arXiv 2106.10165 ch. ∞; docs/derivations/trained.md#finite-width-trajectory):
    E[z_t] = ``infinite`` + ``coefficient``/n + O(1/n²), ``infinite`` = y(1 − a^t), a = 1 − ηΘ,
    η = ``eta_theta``/Θ, and C(t) = yΘ¹tηa^(t−1) − ½y(A + 2B)t(t−1)η²a^(t−2) − 2y(P + 2Q)c_d(t)
    − (y³ + 3yK)(3R c_r(t) + (S + T + U)c_s(t)), from the output layer's recursions (K^(1) =
    ``k1``, default C_b + C_W; λ_W defaults to C_W). Returns float64 arrays ``t`` (int64),
    ``infinite``, ``coefficient``, ``theta1_term``, ``variance_term``, ``dntk_term``,
    ``ddntk_term`` (the four terms add up to the coefficient), the float ``eta`` and the dict
    ``stats`` (K, theta, theta1, ntk_variance = A + 2B, dntk = P + 2Q, ddntk_i = 3R,
    ddntk_ii = S + T + U). With ``test_cos`` (``cb`` = ``lambda_b`` = 0) the dict
    ``test_input`` adds the same on a test input of equal norm at that cosine to the training
    input, which GD never sees (docs/derivations/trained_test_input.md): ``t``, ``infinite`` =
    (Θ_βA/Θ_AA)y(1 − a^t), ``coefficient`` C_β(t) and its parts ``theta1_term``,
    ``fluctuation_term``, ``dntk_term``, ``ddntk_term``, and ``stats`` (the fifteen two-input
    statistics). Unlike C(t), C_β(t) stays finite as t → ∞. Validated on trained ensembles by the
    ``trained`` study (part 3)."""

def profile_multi(
    activation: str,
    cb: float,
    cw: float,
    k1: ArrayLike,
    depth: int,
    lambda_b: float = 1.0,
    lambda_w: float = 1.0,
    lambda_b_over_l: bool = False,
    init: Literal["gaussian", "orthogonal"] = "gaussian",
    quad_order: int = 192,
) -> dict[str, Any]:
    """Multi-input recursions for p inputs at layers l = 1..depth (PDLT eqs. 4.118–4.119 in the
    raised-index form of docs/derivations/theory.md#four-point-vertex; orthogonal weights by
    Weingarten calculus, docs/derivations/orthogonal.md#haar-vertex-multi), from K^(1) = ``k1``, a
    symmetric positive-definite p×p matrix (array or .npy path; K^(1)_{ab} = C_b + C_W x_a·x_b/n₀),
    V^(1) = 0 and Θ^(1)_{ab} = λ_b + λ_W x_a·x_b/n₀:

    * ``K``: float64 (depth, p, p), K^(l+1)_{ab} = C_b + C_W ⟨σ_a σ_b⟩_{K^(l)};
    * ``theta``: float64 (depth, p, p), the NTK mean Θ^(l)_{ab};
    * ``V``: float64 (depth, p, p, p, p), the four-point vertex V^(l)_{(ab)(cd)};
    * ``l``: int64 (depth,).

    The same numbers as ``dlt theory profile --k1-matrix "…" --json`` (its ``layers``). Integrals
    of up to 2 inputs are exact to rounding; 3- and 4-input ones for a kinked σ (ReLU) use tensor
    Gauss–Hermite and are accurate to about 1e-3. A matrix that is not symmetric positive
    definite, or a residual network: ValueError naming ``--k1-matrix``. A layer table that does
    not fit in memory (depth·p⁴ numbers): ValueError naming ``--depth``, as the CLI."""
