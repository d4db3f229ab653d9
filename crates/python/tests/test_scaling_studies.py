"""dltlab.scaling and dltlab.studies."""

import numpy as np
import pytest

from dltlab import scaling, studies


def test_theory_loss_and_simulation_agree():
    t = scaling.theory_loss(1.0, 200, 40, 120)
    assert t["loss"] > 0 and t["kappa"] > 0
    s = scaling.simulate(1.0, 200, 40, 120, seeds=8, seed=0)
    assert s["losses"].dtype == np.float64 and s["losses"].shape == (8,)
    assert s["loss"] == pytest.approx(np.mean(s["losses"]), rel=1e-12)
    # The deterministic equivalent within 5 standard errors (and 10 %) of the simulation.
    assert abs(s["loss"] - t["loss"]) < 5 * s["loss_se"] + 0.1 * t["loss"]


def test_scaling_errors():
    with pytest.raises(ValueError, match="--alpha"):
        scaling.theory_loss(-1.0, 10, 5, 5)
    with pytest.raises(ValueError, match="--m 0: must be ≥ 1"):
        scaling.theory_loss(1.0, 0, 5, 5)
    with pytest.raises(ValueError, match="--features"):
        scaling.simulate(1.0, 10, 5, 5, features="cubic")
    with pytest.raises(ValueError, match="--ridge"):
        scaling.theory_loss(1.0, 100, 20, 20)  # N = P, γ = 0: the double-descent peak


def test_studies_list_and_unknown():
    names = [s["name"] for s in studies.list()]
    assert "theory" in names and "scaling" in names
    with pytest.raises(ValueError, match="unknown study 'nope'"):
        studies.run("nope", out="/tmp/unused")


def test_run_a_study_quick(tmp_path):
    # jacobian is the cheapest study on real data (quick ≈ 15 s); its claims must hold, as in
    # `dlt reproduce --quick` (CI pins every verdict).
    r = studies.run("jacobian", quick=True, out=str(tmp_path), seed=0)
    assert (tmp_path / "jacobian" / "results.json").is_file()
    assert r["claims"] and all(c["holds"] for c in r["claims"]), [
        c["id"] for c in r["claims"] if not c["holds"]
    ]
    assert r == studies.results(tmp_path / "jacobian" / "results.json")
