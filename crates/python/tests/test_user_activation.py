"""A user's own σ as a Python callable, and the trained-trajectory coefficient."""

import math

import numpy as np
import pytest

from dltlab import theory


def _tanh_derivatives():
    def d1(z):
        return 1.0 - math.tanh(z) ** 2

    def d2(z):
        t = math.tanh(z)
        return -2.0 * t * (1.0 - t * t)

    def d3(z):
        t = math.tanh(z)
        return -2.0 * (1.0 - t * t) * (1.0 - 3.0 * t * t)

    return d1, d2, d3


STATS = ["K", "chi_par", "chi_perp", "V", "theta", "A", "B", "D", "F"]
DNTK = ["P", "Q", "R", "S", "T", "U", "K1", "theta1"]


def test_callable_with_derivatives_equals_the_builtin():
    # Same σ, σ', σ'', σ''' evaluated at the same quadrature nodes: equal to rounding (the
    # built-in tanh shares σ and σ' work; 1e-12 relative covers the different operation order).
    d1, d2, d3 = _tanh_derivatives()
    mine = theory.profile(math.tanh, 0.0, 1.0, 1.0, 6, lambda_b=0.0, d1=d1, d2=d2, d3=d3)
    ref = theory.profile("tanh", 0.0, 1.0, 1.0, 6, lambda_b=0.0)
    for k in STATS + DNTK:
        np.testing.assert_allclose(mine[k], ref[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_callable_without_derivatives_uses_central_differences():
    # σ' by central differences (h = 1e-5(1 + |z|)): error ~1e-11 per node, so the recursions
    # agree with the built-in to 1e-8 relative; without σ'' and σ''' the dNTK part says why.
    mine = theory.profile(lambda z: math.sin(z), 0.0, 1.0, 1.0, 5, lambda_b=0.0)
    ref = theory.profile("sin", 0.0, 1.0, 1.0, 5, lambda_b=0.0)
    for k in STATS:
        np.testing.assert_allclose(mine[k], ref[k], rtol=1e-8, atol=1e-10, err_msg=k)
    assert "P" not in mine and "dntk_note" in mine


def test_a_different_callable_gives_different_numbers():
    # The callable is really used: a scaled tanh is another activation.
    a = theory.profile(lambda z: 2.0 * math.tanh(z), 0.0, 1.0, 1.0, 4)
    b = theory.profile("tanh", 0.0, 1.0, 1.0, 4)
    assert abs(a["K"][-1] - b["K"][-1]) > 0.01


def test_callable_errors_are_reraised_and_bad_arguments_refused():
    def boom(z):
        if z > 0.5:
            raise ZeroDivisionError("user sigma failed")
        return z

    with pytest.raises(ZeroDivisionError, match="user sigma failed"):
        theory.profile(boom, 0.0, 1.0, 1.0, 3)
    with pytest.raises(ValueError, match="--activation"):
        theory.profile(3.0, 0.0, 1.0, 1.0, 3)
    with pytest.raises(ValueError, match="d1"):
        theory.profile(math.tanh, 0.0, 1.0, 1.0, 3, d1=2.0)
    with pytest.raises(ValueError, match="callable"):
        theory.profile("tanh", 0.0, 1.0, 1.0, 3, d2=math.cos)


def test_trajectory_first_step_from_the_profile():
    # At t = 1 the coefficient has a short closed form (docs/derivations/trained.md):
    # C(1) = yΘ¹η − y(P + 2Q)η² + (y³ + 3yK)·3R·η³/6, from the output layer's statistics.
    y, c = 0.8, 0.5
    tr = theory.trajectory("tanh", 1.0, 3, eta_theta=c, y=y, steps=6)
    p = theory.profile("tanh", 0.0, 1.0, 1.0, 3, lambda_b=0.0, lambda_w=1.0)
    th, k = p["theta"][-1], p["K"][-1]
    eta = c / th
    assert tr["eta"] == pytest.approx(eta, rel=1e-14)
    c1 = (y * p["theta1"][-1] * eta - y * (p["P"][-1] + 2 * p["Q"][-1]) * eta**2
          + (y**3 + 3 * y * k) * 3 * p["R"][-1] * eta**3 / 6)
    assert tr["coefficient"][1] == pytest.approx(c1, rel=1e-12)
    assert tr["coefficient"][0] == 0.0
    np.testing.assert_allclose(tr["infinite"], y * (1 - (1 - c) ** np.arange(7)), rtol=1e-13)
    parts = tr["theta1_term"] + tr["variance_term"] + tr["dntk_term"] + tr["ddntk_term"]
    np.testing.assert_allclose(parts, tr["coefficient"], rtol=1e-13, atol=1e-15)
    assert tr["stats"]["ntk_variance"] == pytest.approx(p["A"][-1] + 2 * p["B"][-1], rel=1e-13)
    with pytest.raises(ValueError, match="--eta"):
        theory.trajectory("tanh", 1.0, 3, eta_theta=2.5)


def test_trajectory_on_a_test_input():
    # docs/derivations/trained_test_input.md: E[z_β,t] = infinite + C_β(t)/n on a test input at
    # cosine c to the one training input. Long runs reach the t → ∞ limits: the training input's
    # C → 0 (every network fits y) while the test input's frozen-kernel part tends to
    # y[Θ¹_βA/Θ − Θ_βAΘ¹_AA/Θ² + Θ_βA Var_AA/Θ³ − Cov_βA/Θ²] (Jensen, not zero).
    y = 1.0
    tr = theory.trajectory("tanh", 1.0, 3, eta_theta=0.5, y=y, steps=400, test_cos=0.5)
    ti, s = tr["test_input"], tr["test_input"]["stats"]
    assert s["theta"] == pytest.approx(tr["stats"]["theta"], rel=1e-10)  # 2-D vs 1-D recursions
    assert s["ntk_variance"] == pytest.approx(tr["stats"]["ntk_variance"], rel=1e-9)
    assert abs(tr["coefficient"][-1]) < 1e-12
    th = s["theta"]
    frozen = y * (s["theta1_test"] / th - s["theta_test"] * s["theta1"] / th**2
                  + s["theta_test"] * s["ntk_variance"] / th**3 - s["ntk_covariance"] / th**2)
    assert ti["theta1_term"][-1] + ti["fluctuation_term"][-1] == pytest.approx(frozen, rel=1e-10)
    assert ti["infinite"][-1] == pytest.approx(y * s["theta_test"] / th, rel=1e-12)
    assert abs(ti["coefficient"][-1]) > 0.1
    parts = ti["theta1_term"] + ti["fluctuation_term"] + ti["dntk_term"] + ti["ddntk_term"]
    np.testing.assert_allclose(parts, ti["coefficient"], rtol=1e-12, atol=1e-14)
    # A test input almost on the training input has the training input's coefficient: the
    # β-statistics are smooth in the cosine, so 1 − c = 1e-6 moves them by O(1e-6).
    near = theory.trajectory("tanh", 1.0, 2, steps=8, test_cos=1 - 1e-6)
    np.testing.assert_allclose(near["test_input"]["coefficient"], near["coefficient"], atol=1e-5)
    # The same at depth 4, where the hidden layers' pair tensors are propagated twice.
    near4 = theory.trajectory("tanh", 1.0, 4, steps=8, test_cos=1 - 1e-6)
    np.testing.assert_allclose(near4["test_input"]["coefficient"], near4["coefficient"], atol=1e-5)
    assert abs(near4["test_input"]["stats"]["theta1_test"]) > 1e-2
    with pytest.raises(ValueError, match="--test-cos"):
        theory.trajectory("tanh", 1.0, 3, test_cos=0.5, cb=0.1)


def test_finite_width_on_a_set_matches_the_test_input_theory():
    # One training and one test input of unit norm at cosine 0.4: the data-set coefficient on
    # the test input equals the one-training-input closed form (another derivation of the
    # trajectory from the same statistics) at the same η; the training input's coefficient
    # vanishes at convergence.
    c, y = 0.4, 0.7
    r2 = math.sqrt(2.0)
    xa = np.array([[r2, 0.0]])
    xb = np.array([[r2 * c, r2 * math.sqrt(1 - c * c)]])
    fw = theory.finite_width(xa, np.array([y]), xb, "tanh", 400)
    assert fw["coefficient"].shape == (401, 1) and fw["train_coefficient"].shape == (401, 1)
    tr = theory.trajectory("tanh", 1.0, 2, eta_theta=0.5, y=y, steps=400, test_cos=c)
    np.testing.assert_allclose(fw["coefficient"][:, 0], tr["test_input"]["coefficient"], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(fw["train_coefficient"][:, 0], tr["coefficient"], rtol=1e-8, atol=1e-12)
    parts = sum(fw[k] for k in ["theta1_term", "variance_term", "dntk_term", "ddntk_term"])
    np.testing.assert_allclose(parts, fw["coefficient"], rtol=1e-12, atol=1e-14)
    assert abs(fw["train_coefficient"][-1, 0]) < 1e-10
    with pytest.raises(ValueError, match="--test-x"):
        theory.finite_width(xa, np.array([y]), np.ones((1, 3)), "tanh", 5)
    with pytest.raises(ValueError, match="--activation"):
        theory.finite_width(xa, np.array([y]), xb, "relu", 5)
    # Two hidden layers: the data-set trajectory (dual-number runs) against the two-input
    # closed form of `trajectory` on the same statistics; Θ¹ no longer vanishes.
    # Three hidden layers: the same through two propagation steps of the pair tensors.
    for depth in (3, 4):
        fw3 = theory.finite_width(xa, np.array([y]), xb, "tanh", 60, depth=depth)
        tr3 = theory.trajectory("tanh", 1.0, depth, eta_theta=0.5, y=y, steps=60, test_cos=c)
        np.testing.assert_allclose(fw3["coefficient"][:, 0], tr3["test_input"]["coefficient"], rtol=1e-7, atol=1e-10)
        assert np.abs(fw3["theta1_term"]).max() > 1e-3
    with pytest.raises(ValueError, match="--depth"):
        theory.finite_width(xa, np.array([y]), xb, "tanh", 5, depth=1)
