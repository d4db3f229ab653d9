"""dltlab.theory against closed forms of PDLT and against the Rust CLI on the same inputs."""

import json
import subprocess
import threading

import numpy as np
import pytest

import dltlab
from dltlab import theory


def test_criticality_tanh_and_relu():
    c = theory.criticality("tanh")
    assert c["class"] == "k_star_zero"
    assert c["cb"] == 0.0 and c["cw"] == pytest.approx(1.0)
    assert c["k_star"] == 0.0
    r = theory.criticality("relu")
    assert r["class"] == "scale_invariant"
    assert r["cw"] == pytest.approx(2.0)


def test_profile_relu_critical_closed_forms():
    # ReLU at criticality (C_b = 0, C_W = 2): K stays K^(1), chi = 1; with λ_b = 0, λ_W = 1 and
    # K = 1: Θ^(l) = l/2 (PDLT §9.2), and the dNTK Q^(l) = (l³ − l)/12.
    depth = 12
    p = theory.profile("relu", 0.0, 2.0, 1.0, depth, lambda_b=0.0, lambda_w=1.0)
    l = np.arange(1, depth + 1, dtype=float)
    assert np.array_equal(p["l"], np.arange(1, depth + 1))
    np.testing.assert_allclose(p["K"], 1.0, rtol=1e-12)
    np.testing.assert_allclose(p["chi_perp"], 1.0, rtol=1e-12)
    np.testing.assert_allclose(p["theta"], l / 2, rtol=1e-12)
    np.testing.assert_allclose(p["Q"], (l**3 - l) / 12, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(p["P"], 0.0, atol=1e-12)
    # V/K² grows linearly at rate 5 for ReLU (PDLT eq. 5.109: (5 l − 5)·… at C_W = 2, n=1 units).
    np.testing.assert_allclose(np.diff(p["V_over_K2"]), 5.0, rtol=1e-10)


def test_profile_arrays_are_float64_owned_and_writeable():
    p = theory.profile("tanh", 0.0, 1.0, 1.0, 7)
    for k in ["K", "chi_par", "chi_perp", "V", "theta", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U"]:
        a = p[k]
        assert isinstance(a, np.ndarray), k
        assert a.dtype == np.float64 and a.shape == (7,), k
        assert a.flags.owndata and a.flags.writeable and a.flags.c_contiguous, k
    a = p["K"]
    a[0] = -1.0  # ours to change: a fresh array per call
    assert theory.profile("tanh", 0.0, 1.0, 1.0, 7)["K"][0] != -1.0


def test_profile_orthogonal_has_no_dntk():
    p = theory.profile("tanh", 0.0, 1.0, 1.0, 4, init="orthogonal")
    assert "A" not in p and "P" not in p
    assert "not derived" in p["dntk_note"]


def test_profile_matches_cli(dlt_bin):
    args = ["--activation", "gelu", "--cb", "0.1", "--cw", "1.3", "--k1", "0.8", "--depth", "9",
            "--lambda-b", "0.5", "--lambda-w", "2"]
    out = subprocess.run([dlt_bin, "theory", "profile", *args, "--json"], check=True,
                         capture_output=True, text=True).stdout
    cli = json.loads(out)["layers"]
    p = theory.profile("gelu", 0.1, 1.3, 0.8, 9, lambda_b=0.5, lambda_w=2.0)
    for key in ["K", "chi_par", "chi_perp", "V", "theta", "A", "B", "D", "F", "P", "Q", "R", "S", "T", "U"]:
        np.testing.assert_array_equal(p[key], [row[key] for row in cli], err_msg=key)


def test_criticality_matches_cli(dlt_bin):
    out = subprocess.run([dlt_bin, "theory", "criticality", "--activation", "swish", "--json"],
                         check=True, capture_output=True, text=True).stdout
    assert theory.criticality("swish") == json.loads(out)


def test_mc_estimates_and_standard_errors():
    r = theory.mc("tanh", 0.0, 1.0, 1.0, 3, width=32, networks=400, seed=1, batches=20)
    assert np.array_equal(r["l"], [1, 2, 3])
    for name in ["K", "V"]:
        v, se, th = r["value"][name], r["se"][name], r["theory"][name]
        assert v.dtype == np.float64 and v.shape == (3,)
        assert np.all(se > 0)
        # The 1/n theory within a few standard errors (plus the O(1/n²) it omits for K).
        assert np.all(np.abs(v - th) < 5 * se + 0.02 * np.abs(th) + 1e-9), (name, v, se, th)
    # Same seed, same numbers.
    r2 = theory.mc("tanh", 0.0, 1.0, 1.0, 3, width=32, networks=400, seed=1, batches=20)
    np.testing.assert_array_equal(r["value"]["K"], r2["value"]["K"])


def test_kernels_relu_closed_form_and_dtypes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3))
    # depth 1: K = C_b + C_W x·x'/d and Θ = λ_b + λ_W x·x'/d.
    k = theory.kernels(x, "relu", 0.1, 2.0, 1, lambda_b=0.3, lambda_w=0.7)
    g = x @ x.T / 3
    np.testing.assert_allclose(k["nngp"], 0.1 + 2.0 * g, rtol=1e-13)
    np.testing.assert_allclose(k["ntk"], 0.3 + 0.7 * g, rtol=1e-13)
    # float32 and Fortran-ordered input give the same as float64 C order (converted once).
    k64 = theory.kernels(x, "relu", 0.0, 2.0, 3)
    kf = theory.kernels(np.asfortranarray(x), "relu", 0.0, 2.0, 3)
    np.testing.assert_array_equal(k64["nngp"], kf["nngp"])
    k32 = theory.kernels(x.astype(np.float32), "relu", 0.0, 2.0, 3)
    np.testing.assert_allclose(k32["nngp"], k64["nngp"], rtol=1e-6)
    for a in k64.values():
        assert a.dtype == np.float64 and a.shape == (5, 5) and a.flags.owndata
    t = theory.kernels(x, "relu", 0.0, 2.0, 3, x2=x[:2])
    assert t["nngp_test_train"].shape == (2, 5)
    np.testing.assert_allclose(t["nngp_test_train"], k64["nngp"][:2], rtol=1e-13)


def test_kernels_from_npy_path(tmp_path):
    x = np.random.default_rng(1).normal(size=(4, 2))
    f = tmp_path / "x.npy"
    np.save(f, x)
    np.testing.assert_array_equal(theory.kernels(str(f), "erf", 0.0, 1.0, 2)["ntk"],
                                  theory.kernels(x, "erf", 0.0, 1.0, 2)["ntk"])
    np.testing.assert_array_equal(theory.kernels(f, "erf", 0.0, 1.0, 2)["ntk"],
                                  theory.kernels(x, "erf", 0.0, 1.0, 2)["ntk"])


def test_predict_nngp_interpolates_training_points():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 3))
    y = np.sin(x[:, 0])
    p = theory.predict(x, y, x, "nngp", "relu", 0.0, 2.0, 3)
    assert p["mean"].shape == (6,) and p["cov"].shape == (6, 6)
    np.testing.assert_allclose(p["mean"], y, atol=1e-6)
    q = theory.predict(x, y[:, None], x[:2], "ntk", "relu", 0.0, 2.0, 3)
    assert q["mean"].shape == (2, 1)
    np.testing.assert_allclose(q["mean"][:, 0], y[:2], atol=1e-6)


@pytest.mark.parametrize("call, msg", [
    (lambda: theory.criticality("nope"), "unknown activation 'nope'"),
    (lambda: theory.profile("tanh", 0.0, -1.0, 1.0, 3), "--cw"),
    (lambda: theory.profile("tanh", 0.0, 1.0, 1.0, 0), "--depth 0: must be ≥ 1"),
    (lambda: theory.profile("tanh", 0.0, 1.0, 1.0, 3, init="haar"), "--init"),
    (lambda: theory.profile("tanh", 0.0, 1.0, 1.0, 3, lambda_b=-1.0), "--lambda-b"),
    (lambda: theory.mc("tanh", 0.0, 1.0, 1.0, 3, width=8, networks=10), "--networks 10"),
    (lambda: theory.kernels(np.ones((2, 2)), "tanh", 0.0, 1.0, 2, method="closed"), "--method"),
    (lambda: theory.kernels(np.ones(3), "relu", 0.0, 2.0, 2), "expected 2-D"),
    (lambda: theory.predict(np.ones((2, 2)), np.ones(3), np.ones((1, 2)), "nngp", "relu", 0.0, 2.0, 2),
     "--train-y"),
])
def test_bad_arguments_raise_value_error(call, msg):
    with pytest.raises(ValueError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="--inputs"):
        theory.kernels(str(tmp_path / "missing.npy"), "relu", 0.0, 2.0, 2)
    with pytest.raises(FileNotFoundError):
        dltlab.studies.results(tmp_path / "nope" / "results.json")


def test_two_threads_give_the_sequential_results():
    x = np.random.default_rng(3).normal(size=(40, 4))
    args = (x, "gelu", 0.0, 1.0, 4)
    seq = [theory.kernels(*args)["ntk"] for _ in range(2)]
    seq_p = theory.profile("swish", 0.0, 1.0, 1.0, 50)["A"]
    out = {}

    def work(i):
        out[i] = (theory.kernels(*args)["ntk"], theory.profile("swish", 0.0, 1.0, 1.0, 50)["A"])

    ts = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    for i in range(2):
        np.testing.assert_array_equal(out[i][0], seq[i])
        np.testing.assert_array_equal(out[i][1], seq_p)


def test_import_submodules():
    import dltlab.theory as t
    from dltlab.scaling import theory_loss  # noqa: F401

    assert t is theory
    assert "tanh" in theory.activations()
