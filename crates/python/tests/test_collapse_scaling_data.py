"""dltlab.collapse, dltlab.scaling.spectrum, dltlab.theory.profile_multi and dltlab.data against
the Rust CLI on the same inputs (the same seed gives the same numbers, so equality is exact up to
JSON's shortest round-trip printing of f64) and against closed forms."""

import json
import math
import os
import pathlib
import subprocess

import numpy as np
import pytest

from dltlab import collapse, data, scaling, theory


def cli_json(dlt_bin, *args):
    out = subprocess.run([dlt_bin, *args, "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def test_collapse_closed_forms():
    # σ²d/(T−d−1) = 4·3/(20−4) = 0.75; replace n·base; accumulate base·Σ1/i².
    assert collapse.linear_base(3, 20, 2.0) == pytest.approx(0.75, rel=1e-15)
    assert collapse.linear_theory("replace", 4, 3, 20, 2.0) == pytest.approx(3.0, rel=1e-15)
    acc = collapse.linear_theory("accumulate", 3, 3, 20, 2.0)
    assert acc == pytest.approx(0.75 * (1 + 1 / 4 + 1 / 9), rel=1e-15)
    assert collapse.linear_theory("accumulate-subsample", 3, 3, 20) is None
    assert collapse.gaussian_trace(10, 3) == pytest.approx(0.9**3, rel=1e-15)


@pytest.mark.parametrize("policy", ["replace", "accumulate", "accumulate-subsample"])
def test_collapse_linear_equals_cli(dlt_bin, policy):
    r = collapse.linear(d=3, t=12, sigma=0.5, generations=4, policy=policy, seeds=40, seed=7)
    c = cli_json(dlt_bin, "collapse", "linear", "--d", "3", "--t", "12", "--sigma", "0.5",
                 "--generations", "4", "--policy", policy, "--seeds", "40", "--seed", "7")
    rows = c["generations"]
    assert r["g"].dtype == np.int64 and list(r["g"]) == [x["g"] for x in rows]
    for k in ["test_error", "test_error_se"]:
        assert r[k].dtype == np.float64 and r[k].shape == (4,) and r[k].flags.owndata
        assert r[k].tolist() == [x[k] for x in rows], k
    th = [x["theory"] if x["theory"] is not None else math.nan for x in rows]
    np.testing.assert_array_equal(r["theory"], th)
    assert (r["d"], r["t"], r["policy"], r["seeds"]) == (3, 12, policy, 40)


def test_collapse_gaussian_equals_cli(dlt_bin):
    r = collapse.gaussian(dim=2, t=8, generations=5, policy="replace", seeds=30, seed=3)
    rows = cli_json(dlt_bin, "collapse", "gaussian", "--dim", "2", "--t", "8", "--generations",
                    "5", "--seeds", "30", "--seed", "3")["generations"]
    for k in ["trace_ratio", "trace_ratio_se", "trace_ratio_median", "mean_sq_error", "theory"]:
        assert r[k].dtype == np.float64 and r[k].tolist() == [x[k] for x in rows], k
    # Under replace the closed form is ((T−1)/T)^(g+1).
    np.testing.assert_allclose(r["theory"], (7 / 8) ** (r["g"] + 1), rtol=1e-14)


def test_collapse_linear_mc_within_standard_errors():
    # 400 seeds: the mean test error at every generation within 4 SE (plus 1 % for the SE's own
    # noise) of the closed form; could fail if the simulation or the closed form were wrong.
    r = collapse.linear(d=4, t=30, generations=6, policy="accumulate", seeds=400, seed=1)
    assert np.all(np.abs(r["test_error"] - r["theory"]) < 4 * r["test_error_se"] + 0.01 * r["theory"])


@pytest.mark.parametrize("call, msg, exc", [
    (lambda: collapse.linear(d=5, t=6), "--t 6: OLS needs T ≥ d \\+ 2", ValueError),
    (lambda: collapse.linear(seeds=1), "--seeds 1: must be ≥ 2", ValueError),
    (lambda: collapse.linear(policy="keep"), "--policy: unknown policy 'keep'", ValueError),
    (lambda: collapse.linear(d=-1), "--d -1: must be ≥ 0", ValueError),
    (lambda: collapse.gaussian(dim=3, t=3), "--t 3: need more samples than dimensions", ValueError),
    (lambda: collapse.linear_theory("replace", 0, 3, 20), "--generations 0: must be ≥ 1", ValueError),
])
def test_collapse_errors(call, msg, exc):
    with pytest.raises(exc, match=msg):
        call()


@pytest.mark.parametrize("features", ["linear", "relu"])
def test_spectrum_equals_cli(dlt_bin, features):
    s = scaling.spectrum(1.0, 20, 40, features=features)
    c = cli_json(dlt_bin, "scaling", "spectrum", "--alpha", "1", "--m", "20", "--n", "40",
                 "--features", features)
    ev = s["eigenvalues"]
    assert ev.dtype == np.float64 and ev.shape == (40,) and ev.flags.owndata
    assert ev.tolist() == c["eigenvalues"]
    assert s["rank"] == c["rank"] and s["slopes"] == c["slopes"]
    if features == "linear":
        assert s["rank"] == 20  # UΛUᵀ has rank M
    else:
        assert s["rank"] > 20  # ReLU features extend the spectrum past M


def test_profile_multi_equals_cli_and_single_input(dlt_bin):
    k1 = np.array([[1.0, 0.3], [0.3, 0.8]])
    r = theory.profile_multi("tanh", 0.0, 1.0, k1, 5)
    assert r["K"].shape == (5, 2, 2) and r["theta"].shape == (5, 2, 2)
    assert r["V"].shape == (5, 2, 2, 2, 2) and r["V"].dtype == np.float64 and r["V"].flags.owndata
    assert r["l"].tolist() == [1, 2, 3, 4, 5]
    c = cli_json(dlt_bin, "theory", "profile", "--activation", "tanh", "--cb", "0", "--cw", "1",
                 "--k1-matrix", "1,0.3;0.3,0.8", "--depth", "5")
    assert r["K"].tolist() == [x["K"] for x in c["layers"]]
    assert r["theta"].tolist() == [x["theta"] for x in c["layers"]]
    assert r["V"].tolist() == [x["V"] for x in c["layers"]]
    # The diagonal is the single-input recursion of that input (same 1-D integrals: 1e-10).
    p = theory.profile("tanh", 0.0, 1.0, 1.0, 5)
    np.testing.assert_allclose(r["K"][:, 0, 0], p["K"], rtol=1e-10)
    np.testing.assert_allclose(r["V"][:, 0, 0, 0, 0], p["V"], rtol=1e-8, atol=1e-14)
    with pytest.raises(ValueError, match="--k1-matrix"):
        theory.profile_multi("tanh", 0.0, 1.0, [[1.0, 1.0], [1.0, 1.0]], 3)  # not positive definite
    with pytest.raises(ValueError, match="--k1-matrix: the matrix must be square"):
        theory.profile_multi("tanh", 0.0, 1.0, np.ones((2, 3)), 3)


# Each call against `dlt …` with the same sizes and DLT_MAX_MEMORY=1M: the same one-line error.
REFUSALS = [
    (lambda: theory.profile("tanh", 0.0, 1.0, 1.0, 100_000),
     ["theory", "profile", "--activation", "tanh", "--cb", "0", "--cw", "1", "--k1", "1", "--depth", "100000"]),
    (lambda: theory.profile_multi("tanh", 0.0, 1.0, np.eye(3) + 0.1, 2000),
     ["theory", "profile", "--activation", "tanh", "--cb", "0", "--cw", "1",
      "--k1-matrix", "1.1,0.1,0.1;0.1,1.1,0.1;0.1,0.1,1.1", "--depth", "2000"]),
    (lambda: theory.mc("tanh", 0.0, 1.0, 1.0, 3, 2000, 40),
     ["theory", "mc", "--activation", "tanh", "--cb", "0", "--cw", "1", "--k1", "1", "--depth", "3",
      "--width", "2000", "--networks", "40"]),
    (lambda: theory.mc("tanh", 0.0, 1.0, 1.0, 3, 10, 10**15),
     ["theory", "mc", "--activation", "tanh", "--cb", "0", "--cw", "1", "--k1", "1", "--depth", "3",
      "--width", "10", "--networks", str(10**15)]),
    (lambda: scaling.theory_loss(1.0, 1_000_000, 5, 5),
     ["scaling", "theory", "--alpha", "1", "--m", "1000000", "--n", "5", "--p", "5"]),
    (lambda: scaling.simulate(1.0, 100, 50, 3000, seeds=2),
     ["scaling", "simulate", "--alpha", "1", "--m", "100", "--n", "50", "--p", "3000", "--seeds", "2"]),
    (lambda: scaling.spectrum(1.0, 100, 1000),
     ["scaling", "spectrum", "--alpha", "1", "--m", "100", "--n", "1000"]),
    (lambda: collapse.linear(d=200, t=400, generations=5, seeds=10),
     ["collapse", "linear", "--d", "200", "--t", "400", "--generations", "5", "--seeds", "10"]),
    (lambda: collapse.gaussian(dim=1000, t=2000),
     ["collapse", "gaussian", "--dim", "1000", "--t", "2000"]),
]


@pytest.mark.parametrize("call, args", REFUSALS)
def test_impossible_sizes_refused_with_the_cli_message(dlt_bin, monkeypatch, call, args):
    monkeypatch.setenv("DLT_MAX_MEMORY", "1M")
    out = subprocess.run([dlt_bin, *args], capture_output=True, text=True,
                         env={**os.environ, "DLT_MAX_MEMORY": "1M"})
    assert out.returncode != 0
    want = out.stderr.strip().splitlines()[-1].removeprefix("error: ")
    assert "would need" in want or "would take" in want, want
    with pytest.raises(ValueError) as e:
        call()
    assert str(e.value) == want


def test_kernel_depth_work_bound():
    # depth × 10³ multiply-adds per pair over the CLI's 10¹⁷ bound.
    with pytest.raises(ValueError, match=r"--depth 200000000000000: the kernel recursion would take about 2\.0e17"):
        theory.kernels(np.ones((2, 2)), "relu", 0.0, 2.0, 200_000_000_000_000)


def test_data_paths(dlt_bin):
    names = data.names()
    assert names == ["fashion-mnist", "shakespeare", "smollm2", "gemma3", "benchmarks"]
    listed = data.list()
    cli = cli_json(dlt_bin, "data", "list")
    assert listed == cli
    assert isinstance(data.cache_dir(), pathlib.Path)
    for e in listed:
        if e["path"] is not None:
            assert data.path(e["name"]) == pathlib.Path(e["path"])
    with pytest.raises(ValueError, match="nope: unknown data set"):
        data.path("nope")


def test_data_missing_is_file_not_found(monkeypatch, tmp_path):
    # An empty cache and no variable: not present, and `path` does not fetch.
    monkeypatch.setenv("DLT_CACHE", str(tmp_path))
    monkeypatch.delenv("DLT_SHAKESPEARE", raising=False)
    with pytest.raises(FileNotFoundError, match="dlt data fetch shakespeare"):
        data.path("shakespeare")
    monkeypatch.setenv("DLT_SHAKESPEARE", str(tmp_path / "missing.txt"))
    with pytest.raises(FileNotFoundError, match="missing.txt: does not exist"):
        data.path("shakespeare")
